"""FlujoContainer: the composition root, its profiles, overrides and embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dependency_injector import containers, providers

from flujo import ConfigurationError, ContextReference, Flujo, PipelineContext, Step
from flujo.application.core.executor_core import ExecutorCore
from flujo.application.core.factories import ExecutorFactory
from flujo.containers import FlujoContainer, load_profile
from flujo.domain.interfaces import RunRecord
from flujo.infra.state.memory import InMemoryBackend
from flujo.profiles import shipped_profiles
from tests.helpers import DictCache, DictStateProvider, RecordingTelemetry
from tests.integration.postgres import postgres_dsn

PROFILES = shipped_profiles()

PROVIDERS = [
    "config",
    "settings",
    "serializer",
    "hasher",
    "cache_backend",
    "telemetry",
    "usage_meter",
    "state_providers",
    "state_backend",
    "executor",
    "execution_backend",
]


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The defaults under test are the code's, not the machine's.
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)


def _echo() -> Step[Any, Any]:
    def echo(x: Any) -> Any:
        return x

    return Step.from_callable(echo)


# --- every provider resolves -------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
def test_every_public_provider_exists(name: str) -> None:
    container = FlujoContainer()
    provider = getattr(container, name)
    assert isinstance(provider, providers.Provider), name


def test_default_container_resolves_every_part(isolated_state_home: Path) -> None:
    c = FlujoContainer()
    config = c.config()
    assert config in ({}, None)
    settings = c.settings()
    assert settings.cache.max_entries > 0
    assert c.serializer().loads(c.serializer().dumps({"a": [1, 2]})) == {"a": [1, 2]}
    digest = c.hasher().digest(b"abc")
    assert isinstance(digest, str) and digest == c.hasher().digest(b"abc")
    assert digest != c.hasher().digest(b"abd")
    cache = c.cache_backend()
    assert hasattr(cache, "get") and hasattr(cache, "set")
    telemetry = c.telemetry()
    assert hasattr(telemetry, "start_span") and hasattr(telemetry, "warning")
    meter = c.usage_meter()
    assert meter.totals() == (0.0, 0)
    assert dict(c.state_providers()) == {}
    backend = c.state_backend()
    assert hasattr(backend, "save_run") and hasattr(backend, "load_run")
    assert type(backend).__name__ == "SQLiteBackend"  # the embedded default
    executor = c.executor()
    assert isinstance(executor, ExecutorCore)
    execution_backend = c.execution_backend()
    assert hasattr(execution_backend, "execute_step")
    # resolving the state backend must not touch the disk yet
    assert not isolated_state_home.exists() or not any(isolated_state_home.rglob("*"))


def test_singletons_and_per_call_parts() -> None:
    c = FlujoContainer()
    assert c.serializer() is c.serializer()
    assert c.cache_backend() is c.cache_backend()
    assert c.state_backend() is c.state_backend()
    # each executor (one per run) gets its own usage meter
    assert c.executor() is not c.executor()
    assert c.executor().usage_meter is not c.executor().usage_meter


def test_executor_is_wired_with_the_container_parts() -> None:
    c = FlujoContainer()
    executor = c.executor()
    assert executor.serializer is c.serializer()
    assert executor.hasher is c.hasher()
    assert executor.cache_backend is c.cache_backend()
    assert executor.telemetry is c.telemetry()


async def test_execution_backend_runs_a_step() -> None:
    backend = FlujoContainer().execution_backend()
    result = await backend.execute_step(_echo(), 5, context=None, resources=None)
    assert result.success and result.output == 5


def test_two_containers_share_nothing() -> None:
    a, b = FlujoContainer(), FlujoContainer()
    assert a.cache_backend() is not b.cache_backend()
    assert a.state_backend() is not b.state_backend()
    a.state_providers.override(providers.Object({"p": DictStateProvider()}))
    assert dict(b.state_providers()) == {}


# --- configuration -----------------------------------------------------------------------


def test_config_values_reach_the_settings() -> None:
    c = FlujoContainer()
    c.config.from_dict({"cache": {"max_entries": 7}, "state": {"backend": "memory"}})
    assert c.settings().cache.max_entries == 7
    assert type(c.state_backend()).__name__ == "InMemoryBackend"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"cache": {"max_entrys": 5}}, "max_entrys"),
        ({"stat": {"backend": "memory"}}, "stat"),
        ({"state": {"backnd": "memory"}}, "backnd"),
        ({"telemetry": {"logger": "x"}}, "logger"),
    ],
)
def test_misspelt_config_key_is_an_error_naming_it(raw: dict[str, Any], key: str) -> None:
    c = FlujoContainer()
    c.config.from_dict(raw)
    with pytest.raises(ConfigurationError, match=key):
        c.settings()


def test_bad_config_value_is_an_error_naming_the_key() -> None:
    c = FlujoContainer()
    c.config.from_dict({"state": {"backend": "floppy"}})
    with pytest.raises(ConfigurationError, match="backend"):
        c.settings()


def test_misspelt_config_key_fails_flujo_construction() -> None:
    c = FlujoContainer()
    c.config.from_dict({"cache": {"max_entrys": 5}})
    with pytest.raises(ConfigurationError, match="max_entrys"):
        Flujo(_echo(), container=c)


# --- profiles ----------------------------------------------------------------------------


def test_the_shipped_profiles_include_default_and_testing() -> None:
    assert {"default", "testing"} <= set(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_shipped_profile_loads_and_resolves(profile: str) -> None:
    c = FlujoContainer.from_profile(profile)
    c.settings()
    assert isinstance(c.executor(), ExecutorCore)
    for name in PROVIDERS:
        if name == "state_backend":
            continue  # some profiles name servers; resolving them is each backend's own test
        getattr(c, name)()


@pytest.mark.parametrize("profile", PROFILES)
async def test_every_shipped_profile_runs_a_pipeline(
    profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = load_profile(profile).get("state") or {}
    if state.get("backend") == "postgres" and not state.get("uri"):
        # The profile takes its DSN from the environment: point it at the test server
        # (skipped with instructions outside CI when there is none; a failure in CI).
        monkeypatch.setenv("FLUJO_STATE_URI", await postgres_dsn())
    c = FlujoContainer.from_profile(profile)
    if load_profile(profile).get("execution", {}).get("backend") == "ray":
        # Here ray.init() would start a cluster on the machine's own address: the ray
        # profile's steps run on the loopback test head in tests/ray/test_ray_profile.py.
        c.config.from_dict({"execution": {"backend": "local"}})
    async with Flujo(_echo(), container=c) as runner:
        result = await runner.run_async("hi")
    assert result.success and result.output == "hi"


def test_default_profile_uses_sqlite_under_xdg_state_home(isolated_state_home: Path) -> None:
    c = FlujoContainer.from_profile("default")
    assert c.settings().state.backend == "sqlite"
    assert type(c.state_backend()).__name__ == "SQLiteBackend"
    assert Path(c.state_backend().path) == isolated_state_home / "flujo" / "runs.db"


async def test_testing_profile_keeps_run_state_in_memory(isolated_state_home: Path) -> None:
    c = FlujoContainer.from_profile("testing")
    backend = c.state_backend()
    assert type(backend).__name__ == "InMemoryBackend"
    async with Flujo(_echo(), container=c) as runner:
        result = await runner.run_async(1)
        record = await runner.container.state_backend().load_run(result.run_id)
    assert isinstance(record, RunRecord) and record.status == "completed"
    assert not isolated_state_home.exists() or not any(isolated_state_home.rglob("*.db"))


def test_profile_accepts_a_string_path(tmp_path: Path) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text("state:\n  backend: memory\n", encoding="utf-8")
    c = FlujoContainer.from_profile(str(profile))
    assert c.settings().state.backend == "memory"


def test_bad_yaml_profile_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cache: [unclosed\n  backend: memory: :\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"bad\.yaml"):
        FlujoContainer.from_profile(bad)


@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_profile_is_a_configuration_error(tmp_path: Path, content: str) -> None:
    profile = tmp_path / "list.yaml"
    profile.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match="mapping"):
        FlujoContainer.from_profile(profile)


def test_unknown_key_in_profile_is_a_configuration_error(tmp_path: Path) -> None:
    profile = tmp_path / "typo.yaml"
    profile.write_text("cache:\n  backend: memory\n  max_entires: 10\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="max_entires"):
        FlujoContainer.from_profile(profile)


def test_missing_profile_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nope\.yaml"):
        FlujoContainer.from_profile(tmp_path / "nope.yaml")


def test_empty_profile_means_defaults(tmp_path: Path) -> None:
    profile = tmp_path / "empty.yaml"
    profile.write_text("# nothing\n", encoding="utf-8")
    c = FlujoContainer.from_profile(profile)
    assert c.settings().cache.max_entries == 1024


# --- overrides ---------------------------------------------------------------------------


def test_override_swaps_a_part_and_reset_restores_it() -> None:
    c = FlujoContainer()
    original = c.cache_backend()
    fake = DictCache()
    with c.cache_backend.override(fake):
        assert c.cache_backend() is fake
        assert c.executor().cache_backend is fake
    assert c.cache_backend() is original
    assert c.executor().cache_backend is original


def test_override_with_a_provider() -> None:
    c = FlujoContainer()
    telemetry = RecordingTelemetry()
    with c.telemetry.override(providers.Object(telemetry)):
        assert c.executor().telemetry is telemetry
    assert c.executor().telemetry is not telemetry


def test_state_providers_override_reaches_the_executor() -> None:
    c = FlujoContainer()
    provider = DictStateProvider()
    with c.state_providers.override(providers.Object({"kg": provider})):
        assert c.executor().state_providers["kg"] is provider
    assert "kg" not in c.executor().state_providers


async def test_override_on_runner_container_swaps_the_cache_for_runs() -> None:
    runner = Flujo(_echo(), persist_state=False)
    fake = DictCache()
    with runner.container.cache_backend.override(fake):
        assert runner.container.executor().cache_backend is fake
        assert (await runner.run_async(1)).success


# --- embedding in a host container -------------------------------------------------------


class KGProvider:
    """A provider a host application builds, with its own dependency."""

    def __init__(self, pool: dict[str, Any]) -> None:
        self.pool = pool

    async def load(self, key: str) -> Any | None:
        return self.pool.get(key)

    async def save(self, key: str, data: Any) -> None:
        self.pool[key] = data


class Host(containers.DeclarativeContainer):
    config = providers.Configuration()
    db_pool = providers.Singleton(dict, {"doc": {"title": "hello"}})
    flujo = providers.Container(
        FlujoContainer,
        config=config.flujo,
        state_providers=providers.Dict(kg=providers.Singleton(KGProvider, pool=db_pool)),
    )


class KGCtx(PipelineContext):
    doc: ContextReference[dict[str, Any]] = ContextReference(provider_id="kg", key="doc")


def _host() -> Host:
    app = Host()
    app.config.from_dict({"flujo": {"state": {"backend": "memory"}}})
    return app


async def test_embedded_container_sees_the_host_provider_registry() -> None:
    app = _host()
    runner = Flujo(_echo(), container=app.flujo())
    assert isinstance(runner.state_providers["kg"], KGProvider)
    assert runner.state_providers["kg"].pool is app.db_pool()
    assert type(runner.container.state_backend()).__name__ == "InMemoryBackend"
    result = await runner.run_async("x")
    assert result.success and result.output == "x"


async def test_embedded_container_hydrates_references_from_the_host_provider() -> None:
    app = _host()

    def title(x: Any, *, context: KGCtx) -> Any:
        doc = context.doc.get()
        assert doc is not None
        return doc["title"]

    runner = Flujo(Step.from_callable(title), context_model=KGCtx, container=app.flujo())
    result = await runner.run_async(None)
    assert result.success, result.feedback or result.error
    assert result.output == "hello"


def test_embedded_container_takes_the_host_config() -> None:
    app = Host()
    app.config.from_dict({"flujo": {"cache": {"max_entries": 3}}})
    assert app.flujo().settings().cache.max_entries == 3
    app2 = Host()
    app2.config.from_dict({"flujo": {"cache": {"max_entrys": 3}}})
    with pytest.raises(ConfigurationError, match="max_entrys"):
        Flujo(_echo(), container=app2.flujo())


def test_flujo_state_providers_argument_reaches_only_that_runner() -> None:
    c1, c2 = FlujoContainer(), FlujoContainer()
    provider = DictStateProvider()
    one = Flujo(_echo(), container=c1, state_providers={"p": provider})
    two = Flujo(_echo(), container=c2)
    assert one.state_providers["p"] is provider
    assert "p" not in two.state_providers
    assert dict(c1.state_providers()) == {} and c1.state_providers.overridden == ()


# --- a runner never changes a container it was handed ------------------------------------


class TenantCtx(PipelineContext):
    doc: ContextReference[dict[str, Any]] = ContextReference(provider_id="kg", key="doc")
    notes: ContextReference[list[str]] = ContextReference(provider_id="tenant_a", key="notes")


def _overrides(container: Any) -> dict[str, tuple[Any, ...]]:
    """What overrides each part of ``container`` (the host's own embedding included)."""
    names = ("state_providers", "state_backend", "telemetry", "cache_backend", "executor")
    return {name: getattr(container, name).overridden for name in names}


async def test_two_runners_on_one_host_container_each_see_only_their_own_providers() -> None:
    app = _host()
    host = app.flujo()
    before = _overrides(host)
    tenant_a, tenant_b = DictStateProvider({"notes": ["a"]}), DictStateProvider()
    seen: list[Any] = []

    def look(data: Any, *, context: TenantCtx) -> Any:
        seen.append((context.doc.get(), context.notes.get()))
        return data

    step = Step.from_callable(look, name="look")
    runner_a = Flujo(
        step, context_model=TenantCtx, container=host, state_providers={"tenant_a": tenant_a}
    )
    runner_b = Flujo(
        step, context_model=TenantCtx, container=host, state_providers={"tenant_b": tenant_b}
    )

    kg = host.state_providers()["kg"]
    assert dict(runner_a.state_providers) == {"kg": kg, "tenant_a": tenant_a}
    assert dict(runner_b.state_providers) == {"kg": kg, "tenant_b": tenant_b}
    assert dict(host.state_providers()) == {"kg": kg}
    assert _overrides(host) == before
    assert (await runner_a.run_async(1)).success
    assert seen == [({"title": "hello"}, ["a"])]
    with pytest.raises(ConfigurationError, match="'tenant_a'") as info:
        await runner_b.run_async(1)  # tenant_a is runner_a's, not the host's nor runner_b's
    assert "'tenant_b'" in str(info.value) and "'kg'" in str(info.value)


async def test_state_backend_given_with_a_host_container_is_that_runners_only() -> None:
    app = _host()
    host = app.flujo()
    before = _overrides(host)
    mine = InMemoryBackend()
    runner = Flujo(_echo(), container=host, state_backend=mine)
    other = Flujo(_echo(), container=host)
    done, theirs = await runner.run_async(1), await other.run_async(2)
    assert await mine.load_run(done.run_id) is not None
    assert await mine.load_run(theirs.run_id) is None
    assert host.state_backend() is not mine
    assert await host.state_backend().load_run(theirs.run_id) is not None
    assert [r.run_id for r in await runner.list_runs()] == [done.run_id]
    assert _overrides(host) == before


async def test_executor_factory_given_with_a_host_container_is_that_runners_only() -> None:
    host = FlujoContainer()
    before = _overrides(host)
    telemetry, cache, provider = RecordingTelemetry(), DictCache(), DictStateProvider()
    factory = ExecutorFactory(
        telemetry=telemetry, cache_backend=cache, state_providers={"p": provider}
    )
    cached = Step.from_callable(lambda x: x, name="s", cache=True)
    runner = Flujo(cached, container=host, executor_factory=factory, persist_state=False)
    other = Flujo(cached, container=host, persist_state=False)
    assert (await runner.run_async(1)).success and (await other.run_async(1)).success
    assert telemetry.step_names == ["s"]  # only the factory's runner traced into it
    assert len(cache.data) == 1  # and only it cached there
    assert runner.state_providers["p"] is provider and "p" not in other.state_providers
    assert host.executor().telemetry is not telemetry
    assert _overrides(host) == before == dict.fromkeys(before, ())


# --- configuration changed after construction --------------------------------------------


def test_settings_stay_one_object_until_the_config_changes() -> None:
    c = FlujoContainer()
    first = c.settings()
    assert c.settings() is first
    c.config.from_dict({"cache": {"max_entries": 5}})
    assert c.settings() is not first and c.settings().cache.max_entries == 5
    c.config.cache.max_entries.from_value(6)
    assert c.settings().cache.max_entries == 6


def test_a_bad_config_change_is_an_error_at_the_next_resolution_and_is_not_kept() -> None:
    c = FlujoContainer()
    c.settings()
    c.config.from_dict({"cache": {"max_entrys": 5}})
    with pytest.raises(ConfigurationError, match="max_entrys"):
        c.settings()
    with pytest.raises(ConfigurationError, match="max_entrys"):
        c.executor()  # every part resolved from the settings says so too
    c.config.reset_override()  # back to the defaults
    assert c.settings().cache.max_entries == 1024


def test_a_part_is_made_again_only_when_its_own_settings_change() -> None:
    c = FlujoContainer()
    cache, telemetry = c.cache_backend(), c.telemetry()
    c.config.from_dict({"telemetry": {"logger_name": "other"}})
    assert c.cache_backend() is cache  # its arguments did not change: entries are kept
    assert c.telemetry() is not telemetry
    c.config.from_dict({"cache": {"max_entries": 2}})
    assert c.cache_backend() is not cache
    assert c.executor().cache_backend is c.cache_backend()
    other = FlujoContainer()
    assert other.cache_backend() is not c.cache_backend()  # each container its own parts


async def test_a_config_change_on_the_runner_container_takes_effect_from_the_next_run() -> None:
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        return x

    runner = Flujo(Step.from_callable(body, name="s", cache=True), persist_state=False)
    for x in (1, 2, 1):
        await runner.run_async(x)
    assert calls == [1, 2]  # the default LRU keeps both
    runner.container.config.from_dict({"cache": {"max_entries": 1}})
    for x in (1, 2, 1):
        await runner.run_async(x)
    assert calls == [1, 2, 1, 2, 1]  # a new cache of one entry: 2 evicted 1
    runner.container.config.from_dict({"telemetry": {"backend": "null"}})
    assert type(runner._parts().telemetry).__name__ == "NullTelemetry"


async def test_a_bad_config_change_on_the_runner_container_fails_the_next_run() -> None:
    runner = Flujo(_echo(), persist_state=False)
    assert (await runner.run_async(1)).success
    runner.container.config.from_dict({"telemetry": {"backend": "loud"}})
    with pytest.raises(ConfigurationError, match=r"telemetry\.backend"):
        await runner.run_async(1)


def test_a_host_config_change_reaches_the_embedded_container() -> None:
    app = _host()
    runner = Flujo(_echo(), container=app.flujo())
    assert runner.container.settings().cache.max_entries == 1024
    app.config.from_dict({"flujo": {"cache": {"max_entries": 4}}})
    assert runner.container.settings().cache.max_entries == 4
    assert runner.container.cache_backend() is runner._parts().executor.cache_backend
