"""Managed state with ContextReference on the embedded SQLite provider: four demos.

1. basic: a reference is loaded before the first step and saved after the step that
   changed it, so a second run sees what the first one wrote;
2. multiple providers: one context points into two stores; only what changed is written;
3. a custom ExecutorFactory(state_providers=...) passed as Flujo(executor_factory=...);
4. flujo embedded in a host DeclarativeContainer, its provider registry declared there.

Provider data lives in a temporary directory (printed below) that is removed at the end.
Run state goes where it always goes by default: $XDG_STATE_HOME/flujo/runs.db
(~/.local/state/flujo/runs.db). Each demo asserts its outcome, so a regression makes
this script exit non-zero.

    python examples/state_providers_demo.py
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dependency_injector import containers, providers

from flujo import ContextReference, Flujo, PipelineContext, step
from flujo.application.core.factories import ExecutorFactory
from flujo.containers import FlujoContainer
from flujo.domain.interfaces import Write
from flujo.providers import SQLiteStateProvider

# --- 1. basic ------------------------------------------------------------------------


class ResearchContext(PipelineContext):
    """The context holds a pointer; the list of facts lives in the provider."""

    knowledge: ContextReference[list[dict[str, Any]]] = ContextReference(
        provider_id="kg", key="research_graph"
    )


@step
async def add_fact(topic: str, *, context: ResearchContext) -> int:
    facts = context.knowledge.get() or []  # None until something was saved
    facts.append({"topic": topic})
    context.knowledge.set(facts)  # marks the value changed: saved after this step
    return len(facts)


async def demo_basic(workdir: Path) -> None:
    print("\n1. basic: hydrate before the first step, persist after the step that changed it")
    kg = SQLiteStateProvider(workdir / "knowledge.db")
    runner = Flujo(add_fact, context_model=ResearchContext, state_providers={"kg": kg})

    first = await runner.run_async("rivers")
    second = await runner.run_async("mountains")
    print(f"   run 1 -> {first.output} fact(s); run 2 -> {second.output} fact(s)")
    assert first.success and second.success, (first.feedback, second.feedback)
    assert (first.output, second.output) == (1, 2)

    stored = await kg.load("research_graph")
    print(f"   stored in {kg.path.name}: {stored}")
    assert stored == [{"topic": "rivers"}, {"topic": "mountains"}]

    context = second.final_pipeline_context
    assert context is not None
    dumped = context.model_dump()["knowledge"]
    print(f"   the run's context serializes the pointer only: {dumped}")
    assert dumped == {"provider_id": "kg", "key": "research_graph"}

    run_state = runner.container.settings().state.sqlite_path
    print(f"   run state of both runs: {run_state}")
    await runner.aclose()
    await kg.close()


# --- 2. multiple providers ------------------------------------------------------------


class CountingSQLiteProvider(SQLiteStateProvider):
    """The SQLite provider, counting its writes."""

    def __init__(self, path: Path, *, namespace: str) -> None:
        super().__init__(path, namespace=namespace)
        self.saves = 0

    async def save(self, key: str, data: Any) -> None:
        self.saves += 1
        await super().save(key, data)

    async def save_versioned(self, writes: Sequence[Write[Any]]) -> list[int]:
        # flujo saves through compare-and-swap when a provider offers it.
        self.saves += len(writes)
        return await super().save_versioned(writes)


class SupportContext(PipelineContext):
    profile: ContextReference[dict[str, Any]] = ContextReference(
        provider_id="profiles", key="user-42"
    )
    history: ContextReference[list[str]] = ContextReference(provider_id="history", key="user-42")


@step
def greet(message: str, *, context: SupportContext) -> str:
    profile = context.profile.get() or {}  # read, never changed
    return f"{profile.get('name', 'there')}: {message}"


@step
def remember(line: str, *, context: SupportContext) -> str:
    lines = context.history.get() or []
    context.history.set([*lines, line])
    return line


async def demo_multiple(workdir: Path) -> None:
    print("\n2. multiple providers: two stores in one file, only what changed is written")
    path = workdir / "support.db"  # two namespaces share one SQLite file
    profiles = CountingSQLiteProvider(path, namespace="profiles")
    history = CountingSQLiteProvider(path, namespace="history")
    await profiles.save("user-42", {"name": "Ada"})
    profiles.saves = 0

    runner = Flujo(
        greet >> remember,
        context_model=SupportContext,
        state_providers={"profiles": profiles, "history": history},
    )
    result = await runner.run_async("where is my order?")
    print(f"   output: {result.output!r}")
    print(f"   writes: profiles={profiles.saves}, history={history.saves}")
    assert result.success, result.feedback
    assert result.output == "Ada: where is my order?"
    assert profiles.saves == 0  # read but unchanged: no write at all
    assert history.saves == 1
    assert await history.load("user-42") == ["Ada: where is my order?"]
    await runner.aclose()
    await profiles.close()
    await history.close()


# --- 3. custom ExecutorFactory ----------------------------------------------------------


async def demo_executor_factory(workdir: Path) -> None:
    print("\n3. custom ExecutorFactory(state_providers=...) as Flujo(executor_factory=...)")
    kg = SQLiteStateProvider(workdir / "factory.db")
    await kg.save("research_graph", [{"topic": "seed"}])
    factory = ExecutorFactory(state_providers={"kg": kg})

    runner = Flujo(add_fact, context_model=ResearchContext, executor_factory=factory)
    print(f"   the runner's registry: {sorted(runner.state_providers)}")
    assert runner.state_providers["kg"] is kg  # the factory's provider reached the runner

    result = await runner.run_async("glaciers")
    assert result.success, result.feedback
    stored = await kg.load("research_graph")
    print(f"   stored: {stored}")
    assert stored == [{"topic": "seed"}, {"topic": "glaciers"}]
    await runner.aclose()
    await kg.close()


# --- 4. embedding in a host container ---------------------------------------------------


def make_host_container(workdir: Path) -> Any:
    """A host application's container: flujo is one line of it."""

    class Application(containers.DeclarativeContainer):
        config = providers.Configuration()
        flujo = providers.Container(
            FlujoContainer,
            config=config.flujo,
            state_providers=providers.Dict(
                kg=providers.Singleton(SQLiteStateProvider, path=workdir / "host-kg.db"),
            ),
        )

    app = Application()
    # flujo's settings come from the host's configuration, validated like a profile.
    app.config.from_dict({"flujo": {"state": {"uri": str(workdir / "host-runs.db")}}})
    return app


async def demo_host_container(workdir: Path) -> None:
    print("\n4. flujo embedded in a host DeclarativeContainer")
    app = make_host_container(workdir)
    runner = Flujo(add_fact, context_model=ResearchContext, container=app.flujo())

    result = await runner.run_async("deltas")
    assert result.success, result.feedback
    kg = app.flujo().state_providers()["kg"]  # the host's singleton
    assert runner.state_providers["kg"] is kg
    stored = await kg.load("research_graph")
    print(f"   stored through the host's provider: {stored}")
    assert stored == [{"topic": "deltas"}]

    run_state = runner.container.settings().state.sqlite_path
    print(f"   run state, as the host configured it: {run_state.name}")
    assert run_state == workdir / "host-runs.db"
    assert run_state.exists()
    await runner.aclose()
    await kg.close()


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="flujo-demo-") as tmp:
        workdir = Path(tmp)
        print(f"provider files go to {workdir} (removed at the end)")
        await demo_basic(workdir)
        await demo_multiple(workdir)
        await demo_executor_factory(workdir)
        await demo_host_container(workdir)
    print("\nall four demos passed")


if __name__ == "__main__":
    asyncio.run(main())
