"""flujo's pytest plugin: its fixtures through real pytest runs, its entry point, its inertness.

Each session runs in a subprocess with plugin autoloading off and the plugin named
with ``-p``, so what is installed in the environment running this suite (an
editable install made before the entry point existed, say) does not matter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import flujo.testing.pytest_plugin as plugin

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "flujo.testing.pytest_plugin"
FIXTURES = ["flujo_clock", "flujo_container", "flujo_override", "flujo_run_ids", "flujo_runner"]


def pytest_session(
    folder: Path, files: dict[str, str], *options: str, plugin_on: bool = True
) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error", "-v"]
    if plugin_on:
        command += ["-p", PLUGIN]
    return subprocess.run(
        [*command, *options], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )


def counts(output: str) -> dict[str, int]:
    last = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error|errors)", last)}


USING_THE_FIXTURES = """
    import asyncio

    from flujo import Step
    from flujo.state import InMemoryBackend
    from flujo.testing import Faults, FaultyStateBackend


    def plus_one(data: int) -> int:
        return data + 1


    def test_the_container_is_the_testing_profile(flujo_container):
        settings = flujo_container.settings()
        assert settings.state.resolved_backend == "memory"
        assert settings.cache.backend == "memory"


    def test_a_runner_on_that_container(flujo_runner, flujo_container):
        runner = flujo_runner(Step.from_callable(plus_one, name="plus_one"))
        assert runner.container is flujo_container
        result = runner.run(1)
        assert result.success and result.output == 2
        assert isinstance(flujo_container.state_backend(), InMemoryBackend)


    def test_runner_arguments_pass_through(flujo_runner):
        runner = flujo_runner(Step.from_callable(plus_one, name="p"), persist_state=False)
        assert runner.run(41).output == 42


    def test_clock_and_run_ids(flujo_runner, flujo_clock, flujo_run_ids):
        runner = flujo_runner(Step.from_callable(plus_one, name="plus_one"))
        first = runner.run(1)
        flujo_clock.advance(60)
        second = runner.run(2)
        assert (first.run_id, second.run_id) == ("run-1", "run-2")
        record = asyncio.run(runner.container.state_backend().load_run("run-2"))
        assert record.created_at == flujo_clock.now


    def test_override_swaps_a_part(flujo_runner, flujo_override, flujo_container):
        faulty = FaultyStateBackend(InMemoryBackend(), create_run=Faults.always())
        flujo_override(state_backend=faulty)
        runner = flujo_runner(Step.from_callable(plus_one, name="plus_one"))
        try:
            runner.run(1)
        except Exception as exc:
            assert "injected fault: create_run call 1" in str(exc)
        else:
            raise AssertionError("the faulty backend was not used")
        assert faulty.calls["create_run"] == 1


    async def test_async_tests_use_the_fixtures_too(flujo_runner, flujo_run_ids):
        runner = flujo_runner(Step.from_callable(plus_one, name="plus_one"))
        async with runner:
            result = await runner.run_async(1)
        assert result.run_id == "run-1" and result.output == 2
"""


def test_the_fixtures_work_in_a_real_pytest_session(tmp_path: Path) -> None:
    files = {"test_user.py": USING_THE_FIXTURES}
    done = pytest_session(
        tmp_path,
        files,
        "-p",
        "pytest_asyncio.plugin",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert counts(done.stdout) == {"passed": 6}


def test_overrides_are_undone_when_the_test_ends(tmp_path: Path) -> None:
    files = {
        "conftest.py": """
            import pytest
            from flujo.testing import in_memory_container

            SHARED = in_memory_container()

            @pytest.fixture
            def flujo_container():
                return SHARED  # one container for the session: overrides must not leak
        """,
        "test_order.py": """
            from conftest import SHARED

            def test_1_overrides(flujo_override, flujo_clock):
                flujo_override(run_id=lambda: "fixed")
                assert SHARED.run_id() == "fixed" and SHARED.clock() == flujo_clock.now

            def test_2_sees_the_real_parts_again():
                assert SHARED.run_id() != "fixed"
                assert not SHARED.run_id.overridden and not SHARED.clock.overridden
        """,
    }
    done = pytest_session(tmp_path, files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert counts(done.stdout) == {"passed": 2}


def test_a_session_that_uses_no_fixture_runs_as_without_the_plugin(tmp_path: Path) -> None:
    files = {
        "test_plain.py": """
            import pytest

            def test_no_flujo_fixture_applies(request):
                assert not [n for n in request.fixturenames if n.startswith("flujo")]

            def test_fails_as_usual():
                assert 1 == 2

            @pytest.mark.parametrize("n", [1, 2])
            def test_parametrized(n):
                assert n
        """,
    }
    with_plugin = pytest_session(tmp_path, files)
    without = pytest_session(tmp_path, files, plugin_on=False)
    assert counts(with_plugin.stdout) == counts(without.stdout) == {"passed": 3, "failed": 1}
    assert with_plugin.returncode == without.returncode == 1

    def outcomes(output: str) -> list[str]:
        return [line.split(" ")[0] for line in output.splitlines() if "::" in line and "%]" in line]

    assert outcomes(with_plugin.stdout) == outcomes(without.stdout)
    assert len(outcomes(with_plugin.stdout)) == 4


def test_the_fixtures_are_listed_and_turning_the_plugin_off_removes_them(tmp_path: Path) -> None:
    files = {"test_x.py": "def test_x(): pass\n"}
    listed = pytest_session(tmp_path, files, "--fixtures")
    assert listed.returncode == 0, listed.stderr
    for name in FIXTURES:
        assert re.search(rf"^{name}\b", listed.stdout, re.M), name
    off = pytest_session(tmp_path, files, "--fixtures", plugin_on=False)
    assert "flujo_runner" not in off.stdout


def test_the_plugin_defines_fixtures_only() -> None:
    assert [name for name in dir(plugin) if name.startswith("pytest_")] == []
    for name in FIXTURES:
        assert name in plugin.__all__ and callable(getattr(plugin, name))


def test_importing_the_plugin_adds_no_module_beyond_flujo_itself() -> None:
    code = (
        "import sys\n"
        "import pytest, flujo\n"
        "before = set(sys.modules)\n"
        f"import {PLUGIN}\n"
        "print(sorted(set(sys.modules) - before))\n"
        "print('flujo.containers' in sys.modules, 'yaml' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    added, heavy = shown.stdout.strip().splitlines()
    assert added == "['flujo.testing', 'flujo.testing.pytest_plugin']"
    assert heavy == "False False"  # no container built, no profile read at import


def test_the_entry_point_registers_the_plugin_as_flujo() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"]["pytest11"] == {"flujo": PLUGIN}


def test_pytest_loads_the_plugin_through_the_entry_point_and_no_flujo_turns_it_off(
    tmp_path: Path,
) -> None:
    # What an install of pyproject's entry points writes, beside the code: pytest's
    # autoload finds it as it finds an installed flujo's (no build, no network here).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    site = tmp_path / "site"
    dist = site / "flujo_entry_point_probe-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: flujo-entry-point-probe\nVersion: 0\n", encoding="utf-8"
    )
    lines = [f"{name} = {target}" for name, target in project["entry-points"]["pytest11"].items()]
    (dist / "entry_points.txt").write_text("[pytest11]\n" + "\n".join(lines) + "\n", "utf-8")
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_ep.py").write_text(
        "from flujo import Step\n\n"
        "def test_uses(flujo_runner, flujo_run_ids):\n"
        "    runner = flujo_runner(Step.from_callable(lambda x: x + 1, name='p'))\n"
        "    assert runner.run(1).run_id == 'run-1'\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts="]
    command += ["-o", "asyncio_default_fixture_loop_scope=function", "test_ep.py"]

    def run(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *options], cwd=tests, env=env, capture_output=True, text=True, timeout=120
        )

    loaded = run()
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert counts(loaded.stdout) == {"passed": 1}
    off = run("-p", "no:flujo")
    assert off.returncode == 1 and "fixture 'flujo_runner' not found" in off.stdout


@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_is_documented(name: str) -> None:
    assert name in (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    assert name in (plugin.__doc__ or "")
