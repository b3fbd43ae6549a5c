"""A runner whose steps go to workers checks, when it is built, that every leaf step travels."""

from __future__ import annotations

import functools
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from flujo import ConfigurationError, Flujo, Step
from flujo.application.travel import check_travels, leaf_steps
from flujo.backends import RayExecutionBackend
from flujo.containers import FlujoContainer


def plain(x: int) -> int:
    return x + 1


class Client:
    """Stands for a client holding a connection."""

    def __init__(self) -> None:
        self.session = {"pool": [threading.Lock()]}

    def fetch(self, x: int) -> int:
        return x


def _holding_a_lock() -> Step[Any, Any]:
    lock = threading.Lock()

    def locked(x: int) -> int:
        with lock:
            return x

    return Step.from_callable(locked, name="locked")


def test_a_closure_holding_a_lock_is_named() -> None:
    with pytest.raises(
        ConfigurationError, match=r"step 'locked'.*closure variable 'lock' is a _thread\.lock"
    ):
        check_travels([_holding_a_lock()])


def test_a_socket_in_a_partial_argument_is_named() -> None:
    sock = socket.socket()
    try:
        step = Step.from_callable(functools.partial(lambda s, x: x, sock), name="sends")
        with pytest.raises(ConfigurationError, match=r"'sends'.*argument 0 is a socket\.socket"):
            check_travels([step])
    finally:
        sock.close()


def test_a_bound_methods_object_is_searched_to_the_lock() -> None:
    step = Step.from_callable(Client().fetch, name="fetch")
    with pytest.raises(ConfigurationError) as caught:
        check_travels([step])
    assert "the object of its bound method.session['pool'][0] is a _thread.lock" in str(
        caught.value
    )


def test_a_file_open_for_writing_nested_in_a_map_inside_a_branch_is_found(tmp_path: Path) -> None:
    opened = (tmp_path / "out.txt").open("w", encoding="utf-8")
    try:

        def reads(x: int) -> int:
            return len(opened.name) + x

        inner = Step.map_over(
            Step.from_callable(reads, name="reads"), items_from=lambda d, c: [1], name="m"
        )
        branch = Step.branch_on(lambda out, ctx: "a", {"a": inner}, name="b")
        with pytest.raises(ConfigurationError, match=r"step 'reads'.*closure variable 'opened'"):
            check_travels([Step.from_callable(plain, name="ok"), branch])
    finally:
        opened.close()


def test_steps_that_travel_pass_and_every_leaf_is_walked() -> None:
    fallback = Step.from_callable(plain, name="backup")
    loop = Step.loop_until(
        Step.from_callable(plain, name="body").fallback(fallback),
        lambda o, c: True,
        max_loops=2,
        name="loop",
    )
    par = Step.parallel({"x": Step.from_callable(plain, name="px")}, name="par")
    check_travels([Step.from_callable(lambda x: x, name="lambda"), loop, par])
    names = sorted(s.name for s in leaf_steps([loop, par]))
    assert names == ["backup", "body", "px"]


def test_a_runner_on_the_ray_backend_fails_construction_for_a_step_that_cannot_travel() -> None:
    with pytest.raises(ConfigurationError, match="closure variable 'lock'"):
        Flujo(_holding_a_lock(), backend=RayExecutionBackend(), persist_state=False)


def test_the_container_selecting_ray_checks_too_and_local_does_not() -> None:
    container = FlujoContainer()
    container.config.from_dict({"execution": {"backend": "ray"}})
    with pytest.raises(ConfigurationError, match="'locked' cannot be shipped"):
        Flujo(_holding_a_lock(), container=container, persist_state=False)
    Flujo(_holding_a_lock(), persist_state=False)  # in-process: nothing travels
