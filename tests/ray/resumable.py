"""A runner the resume-elsewhere test drives from two interpreters (``tests.ray.resumable:runner``).

Run state in PostgreSQL, the log in a PostgreSQL provider, steps on the Ray
cluster, taken from the environment the test sets. The input is the path of a
file (Ray workers do not see the driver's environment): each step appends its
name there when it runs, and to the referenced log with ``set()``; ``slow``
sleeps two minutes the first time it runs, and not again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.backends import RayExecutionBackend
from flujo.containers import FlujoContainer
from flujo.providers import PostgresStateProvider


class Notes(PipelineContext):
    log: ContextReference[list[str]] = ContextReference(provider_id="pg", key="log")


def _note(path: str, name: str) -> None:
    with open(path, "a", encoding="utf-8") as ran:
        ran.write(name + "\n")


def _mark(path: str, name: str, context: Notes) -> None:
    _note(path, name)
    context.log.set([*(context.log.get() or []), name])


def first(data: str, *, context: Notes) -> str:
    _mark(data, "first", context)
    return data


def slow(data: str, *, context: Notes) -> str:
    _note(data, "slow-started")
    once = Path(data + ".slept")
    if not once.exists():
        once.write_text("")
        time.sleep(120)  # process A is killed during this
    _mark(data, "slow", context)
    return data


def last(data: str, *, context: Notes) -> str:
    _mark(data, "last", context)
    return data


def _runner() -> Flujo[Any, Any, Notes]:
    dsn = os.environ["FLUJO_TEST_RESUME_DSN"]
    container = FlujoContainer()
    container.config.from_dict(
        {
            "state": {"backend": "postgres", "uri": dsn, "lease_s": 2.0, "heartbeat_s": 0.5},
            "execution": {"backend": "ray", "address": os.environ["FLUJO_TEST_RAY_ADDRESS"]},
        }
    )
    pipeline = (
        Step.from_callable(first, name="first")
        >> Step.from_callable(slow, name="slow")
        >> Step.from_callable(last, name="last")
    )
    return Flujo(
        pipeline,
        context_model=Notes,
        state_providers={"pg": PostgresStateProvider(dsn, namespace="resume-elsewhere")},
        container=container,
    )


runner = _runner() if "FLUJO_TEST_RESUME_DSN" in os.environ else None
"""Made only where the test set the environment (an import elsewhere builds nothing)."""

assert RayExecutionBackend  # the backend the container's execution settings select
