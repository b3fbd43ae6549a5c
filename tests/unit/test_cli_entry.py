"""The doors into the command (``--version``, ``python -m flujo``) and its hints naming flags."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import flujo
from tests.unit.cli_support import (
    ROOT,
    enter_project,
    error_lines,
    invoke,
    json_after_completed,
    run_id_of,
    subprocess_env,
)

PIPES = textwrap.dedent(
    """
    import json
    from pathlib import Path

    from pydantic import BaseModel

    from flujo import ContextReference, Flujo, PipelineContext, Step

    STORE = Path(__file__).with_name("store.json")


    class Crash(BaseException):
        '''Stands in for the process dying in the middle of a save.'''


    class FileProvider:
        async def load(self, key):
            return json.loads(STORE.read_text()).get(key) if STORE.exists() else None

        async def save(self, key, data):
            if Path("CRASH").exists():
                Path("CRASH").unlink()
                raise Crash("the process died while saving")
            stored = json.loads(STORE.read_text()) if STORE.exists() else {}
            STORE.write_text(json.dumps({**stored, key: data}))


    class Log(PipelineContext):
        log: ContextReference[list] = ContextReference(provider_id="kg", key="log")


    def add(name):
        def fn(data, *, context: Log):
            context.log.set([*(context.log.get() or []), name])
            return data

        return Step.from_callable(fn, name=name)


    class Answer(BaseModel):
        ok: bool


    def double(x):
        return x * 2


    pipeline = Step.from_callable(double, name="double")
    review = pipeline >> Step.human_in_the_loop("Approve?", Answer, name="approve")
    refs = Flujo(
        add("one") >> add("two"),
        context_model=Log,
        state_providers={"kg": FileProvider()},
        pipeline_name="refs",
    )
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from enter_project(tmp_path, monkeypatch, {"pipes.py": PIPES})


# --- --version and python -m flujo ------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert flujo.__version__ == pyproject["project"]["version"]
    for flag in ("--version", "-V"):
        result = invoke(flag)
        assert result.exit_code == 0, result.stderr
        assert result.stdout == f"flujo {flujo.__version__}\n"


def test_version_wins_over_a_command() -> None:
    result = invoke("--version", "runs", "list")
    assert result.stdout == f"flujo {flujo.__version__}\n"


def _module(project: Path, state_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flujo", *args],
        cwd=project,
        env=subprocess_env(state_home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_python_dash_m_flujo_is_the_command(project: Path, isolated_state_home: Path) -> None:
    version = _module(project, isolated_state_home, "--version")
    assert version.returncode == 0 and version.stdout == f"flujo {flujo.__version__}\n"

    ran = _module(project, isolated_state_home, "run", "pipes.py:pipeline", "--input", "21")
    assert ran.returncode == 0, ran.stderr
    assert json_after_completed(ran.stdout) == 42


def test_python_dash_m_flujo_alone_shows_its_help(project: Path, isolated_state_home: Path) -> None:
    shown = _module(project, isolated_state_home)
    assert shown.returncode == 2
    assert "Usage: python -m flujo" in shown.stdout + shown.stderr
    assert "--version" in shown.stdout + shown.stderr


# --- hints name the command's flags -------------------------------------------------


def test_resuming_a_paused_run_without_an_answer_names_the_flag_and_command(
    project: Path,
) -> None:
    run_id = run_id_of(invoke("run", "pipes.py:review", "--input", "1"))
    result = invoke("runs", "resume", run_id, "pipes.py:review")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "ResumeError" in line and "Approve?" in line
    assert f"flujo runs resume {run_id} pipes.py:review --human-input '<json>'" in line
    assert "human_input=" not in line and "resume_async" not in line


def test_the_hint_for_a_paused_run_keeps_the_profile(project: Path, tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    profile = tmp_path / "on-disk.yaml"
    profile.write_text(f"state:\n  uri: sqlite:///{database}\n", encoding="utf-8")
    paused = invoke("run", "pipes.py:review", "--input", "1", "--profile", str(profile))
    run_id = run_id_of(paused)
    assert f"--profile {profile} --human-input" in paused.stdout
    result = invoke("runs", "resume", run_id, "pipes.py:review", "--profile", str(profile))
    (line,) = error_lines(result)
    assert f"pipes.py:review --profile {profile} --human-input '<json>'" in line


def test_a_step_stopped_while_saving_is_settled_with_the_on_pending_flag(project: Path) -> None:
    (project / "CRASH").touch()
    with pytest.raises(BaseException) as crashed:  # the "process" dies: nothing catches it
        invoke("run", "pipes.py:refs", "--input", "1", "--run-id", "refs-1")
    assert type(crashed.value).__name__ == "Crash", crashed.value

    stuck = invoke("runs", "resume", "refs-1", "pipes.py:refs")
    assert stuck.exit_code == 1
    (line,) = error_lines(stuck)
    assert "StateConflictError" in line and "step 'one'" in line
    assert "--on-pending rerun" in line and "--on-pending accept" in line
    assert "on_pending=" not in line

    done = invoke("runs", "resume", "refs-1", "pipes.py:refs", "--on-pending", "rerun")
    assert done.exit_code == 0, done.stderr
    assert (project / "store.json").read_text(encoding="utf-8") == '{"log": ["one", "two"]}'
