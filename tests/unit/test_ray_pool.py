"""The Ray backend's actor pool and settings, without a cluster (a stand-in for ``ray``).

The pool grows only when every actor it has is busy, up to its size (by default
the cluster's CPUs), hands a step to the least busy actor, and forgets and kills
an actor it retires. The same on a real cluster: tests/ray/test_actor_pool.py.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flujo import ConfigurationError
from flujo.backends import RayExecutionBackend
from flujo.containers import FlujoContainer
from flujo.infra.ray_pool import ActorPool


class FakeActorClass:
    def __init__(self, made: list[object]) -> None:
        self.made = made
        self.placement: list[str] = []

    def options(self, *, scheduling_strategy: str) -> FakeActorClass:
        self.placement.append(scheduling_strategy)
        return self

    def remote(self) -> object:
        actor = object()
        self.made.append(actor)
        return actor


class FakeRay:
    """Records what the pool asks of Ray: actors made, options, kills."""

    def __init__(self, cpus: float = 4.0) -> None:
        self.cpus = cpus
        self.made: list[object] = []
        self.killed: list[object] = []
        self.options: dict[str, Any] = {}
        self.actor_class = FakeActorClass(self.made)

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus}

    def remote(self, **options: Any) -> Any:
        self.options = options
        return lambda cls: self.actor_class

    def kill(self, actor: object, *, no_restart: bool) -> None:
        assert no_restart
        self.killed.append(actor)


def test_a_sequential_use_keeps_one_actor() -> None:
    ray, pool = FakeRay(), ActorPool()
    for _ in range(5):
        slot = pool.take(ray)
        pool.done(slot)
    assert len(ray.made) == 1 and pool.actors() == ray.made
    assert ray.actor_class.placement == ["SPREAD"]
    assert ray.options == {"max_restarts": 0, "max_task_retries": 0}, "no CPU held by default"


def test_busy_actors_make_new_ones_up_to_the_cluster_cpus() -> None:
    ray, pool = FakeRay(cpus=3.0), ActorPool()
    slots = [pool.take(ray) for _ in range(5)]
    assert pool.size == 3 and len(ray.made) == 3
    # Past the size, steps queue on the least busy actors, one more each.
    assert sorted(slot.busy for slot in set(slots)) == [1, 2, 2]
    pool.done(slots[0])
    assert pool.take(ray) is slots[0], "the least busy actor takes the next step"


def test_num_cpus_is_held_by_each_actor_and_sizes_the_pool() -> None:
    ray, pool = FakeRay(cpus=4.0), ActorPool(num_cpus=2.0)
    pool.take(ray)
    assert pool.size == 2
    assert ray.options["num_cpus"] == 2.0


def test_a_retired_actor_is_killed_and_replaced_by_a_new_one() -> None:
    ray, pool = FakeRay(), ActorPool(size=1)
    slot = pool.take(ray)
    pool.retire(ray, slot)
    pool.done(slot)
    assert slot.killed and ray.killed == [slot.actor] and pool.actors() == []
    again = pool.take(ray)
    assert again is not slot and again.actor is ray.made[1]


def test_close_kills_every_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    ray, pool = FakeRay(), ActorPool(size=2)
    slots = [pool.take(ray), pool.take(ray)]
    monkeypatch.setitem(sys.modules, "ray", ray)
    pool.close()
    assert ray.killed == ray.made and all(slot.killed for slot in slots)
    assert pool.actors() == []


def test_threads_sharing_a_pool_never_exceed_its_size() -> None:
    ray, pool = FakeRay(cpus=2.0), ActorPool()
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        for _ in range(200):
            pool.done(pool.take(ray))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ray.made) <= 2
    assert all(slot.busy == 0 for slot in pool._slots)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"workers": "processes"}, "workers"),
        ({"num_cpus": 0}, "num_cpus"),
        ({"actors": 0}, "actors"),
        ({"on_worker_lost": "ignore"}, "on_worker_lost"),
        ({"worker_retries": -1}, "worker_retries"),
    ],
)
def test_bad_backend_settings_are_configuration_errors(kwargs: Any, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        RayExecutionBackend(**kwargs)


def test_every_run_of_a_backend_shares_its_actor_pool() -> None:
    backend = RayExecutionBackend(actors=3)
    assert backend.for_run(_executor()).pool is backend.pool
    assert backend.pool.size == 3


def test_the_container_shares_one_pool_across_runs_and_reads_the_settings() -> None:
    container = FlujoContainer.from_profile("ray")
    container.config.from_dict({"execution": {"actors": 4, "workers": "tasks"}})
    first = container.execution_backend(executor=_executor())
    second = container.execution_backend(executor=_executor())
    assert first is not second and first.pool is second.pool
    assert first.workers == "tasks" and first.pool.size == 4


def _executor() -> Any:
    from flujo.application.core.executor_core import ExecutorCore

    return ExecutorCore()
