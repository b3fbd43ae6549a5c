"""Connections flujo opens never warn: closed by ``aclose()``, or quietly when dropped.

Python 3.13 warns (``ResourceWarning``) about a SQLite connection collected open.
Each case runs a script in a fresh interpreter with warnings as errors and
``-X dev``, where an unraisable warning from a finalizer would show on stderr.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPTS = {
    "run_async without aclose": """
        import asyncio
        from flujo import Flujo, Step

        async def echo(x):
            return x

        async def main():
            runner = Flujo(Step.from_callable(echo, name="echo"))
            assert (await runner.run_async(1)).success

        asyncio.run(main())
    """,
    "run, runner dropped": """
        from flujo import Flujo, Step

        def echo(x):
            return x

        runner = Flujo(Step.from_callable(echo, name="echo"))
        assert runner.run(1).success
        del runner
    """,
    "a SQLite provider never closed": """
        import asyncio, os
        from flujo.providers import SQLiteStateProvider

        async def main():
            provider = SQLiteStateProvider(os.path.join(os.environ["XDG_STATE_HOME"], "kg.db"))
            await provider.save("k", [1])
            assert await provider.load("k") == [1]

        asyncio.run(main())
    """,
    "a backend left open at exit": """
        import asyncio, os
        from flujo.state import SQLiteBackend
        from flujo.testing import make_run

        backend = SQLiteBackend(os.path.join(os.environ["XDG_STATE_HOME"], "runs.db"))
        asyncio.run(backend.save_run(make_run("r")))
        KEEP = backend  # still referenced when the interpreter exits
    """,
}


@pytest.mark.parametrize("case", sorted(SCRIPTS))
def test_no_resource_warning(case: str, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPTS[case]) + "\nimport gc; gc.collect()\nprint('done')\n")
    env = {"PATH": "/usr/bin:/bin", "XDG_STATE_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "ResourceWarning" not in done.stderr, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
