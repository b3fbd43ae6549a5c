"""Shipped container profiles: package data found by name from any folder; paths stay paths."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import flujo
from flujo import ConfigurationError
from flujo.cli.app import app
from flujo.containers import FlujoContainer, load_profile
from flujo.profiles import is_profile_name, locate_profile, shipped_profiles

PACKAGE = Path(flujo.__file__).resolve().parent


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Far from the repository: nothing may be found relative to a clone.
    folder = tmp_path / "somewhere" / "else"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)
    return folder


def test_the_shipped_profiles_are_default_postgres_ray_and_testing() -> None:
    assert shipped_profiles() == ["default", "postgres", "ray", "testing"]


def test_the_profiles_live_inside_the_package_so_every_wheel_holds_them() -> None:
    # pyproject ships the `flujo` folder whole (hatch: packages = ["flujo"]).
    for name in shipped_profiles():
        assert (PACKAGE / "profiles" / f"{name}.yaml").is_file(), name


def test_a_clone_keeps_the_profiles_at_the_top_in_containers_as_links_to_the_shipped_ones() -> None:
    # The layout DESIGN.md gives (containers/ at the top), with one copy of each file:
    # a link into the package, so the two can never differ.
    folder = PACKAGE.parent / "containers"
    assert sorted(path.stem for path in folder.glob("*.yaml")) == shipped_profiles()
    for path in folder.glob("*.yaml"):
        assert path.is_symlink(), path
        assert path.resolve() == (PACKAGE / "profiles" / path.name).resolve()
        loaded = FlujoContainer.from_profile(path).settings()
        assert loaded == FlujoContainer.from_profile(path.stem).settings()


@pytest.mark.parametrize(
    ("profile", "backend"), [("testing", "memory"), ("default", "sqlite"), ("postgres", "postgres")]
)
def test_a_name_finds_the_shipped_profile_from_any_folder(profile: str, backend: str) -> None:
    assert FlujoContainer.from_profile(profile).settings().state.backend == backend
    assert load_profile(profile)["state"]["backend"] == backend


@pytest.mark.parametrize(
    ("text", "is_name"),
    [
        ("testing", True),
        ("my_profile-2", True),
        ("testing.yaml", False),
        ("./testing", False),
        ("conf/testing", False),
        ("", False),
        ("two words", False),
    ],
)
def test_a_bare_word_is_a_name_and_anything_else_a_path(text: str, is_name: bool) -> None:
    assert is_profile_name(text) is is_name


def test_a_path_object_is_always_a_path(_elsewhere: Path) -> None:
    assert not is_profile_name(Path("testing"))
    with pytest.raises(ConfigurationError, match="cannot read container profile testing"):
        FlujoContainer.from_profile(Path("testing"))


def test_a_file_named_like_a_shipped_profile_does_not_shadow_it(_elsewhere: Path) -> None:
    (_elsewhere / "testing").write_text("state:\n  backend: sqlite\n", encoding="utf-8")
    (_elsewhere / "testing.yaml").write_text("state:\n  backend: sqlite\n", encoding="utf-8")
    assert FlujoContainer.from_profile("testing").settings().state.backend == "memory"
    # Written as a path, the local file is what loads.
    assert FlujoContainer.from_profile("./testing").settings().state.backend == "sqlite"
    assert FlujoContainer.from_profile("testing.yaml").settings().state.backend == "sqlite"


def test_a_relative_path_is_read_from_the_working_directory(_elsewhere: Path) -> None:
    (_elsewhere / "conf").mkdir()
    (_elsewhere / "conf" / "ci.yml").write_text("cache:\n  max_entries: 7\n", encoding="utf-8")
    assert FlujoContainer.from_profile("conf/ci.yml").settings().cache.max_entries == 7


def test_an_unknown_name_lists_the_shipped_profiles() -> None:
    with pytest.raises(ConfigurationError) as caught:
        FlujoContainer.from_profile("testng")
    message = str(caught.value)
    assert "'testng'" in message
    assert "default, postgres, ray, testing" in message
    assert "./testng.yaml" in message  # how to give a file of one's own instead


def test_a_missing_path_names_the_path_as_written() -> None:
    with pytest.raises(ConfigurationError, match=r"container profile \./nope\.yaml"):
        FlujoContainer.from_profile("./nope.yaml")


def test_locate_returns_the_packaged_file_for_a_name() -> None:
    located = locate_profile("testing")
    assert located.is_file() and "backend: memory" in located.read_text(encoding="utf-8")


def test_the_profiles_are_found_through_importlib_resources_in_a_zipped_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An installation that is not a folder (a zip on sys.path) still finds them by name.
    archive = tmp_path / "flujo_profiles.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(PACKAGE / "profiles" / "__init__.py", "zipped_flujo/profiles/__init__.py")
        zipped.writestr("zipped_flujo/__init__.py", "")
        for name in shipped_profiles():
            zipped.write(
                PACKAGE / "profiles" / f"{name}.yaml", f"zipped_flujo/profiles/{name}.yaml"
            )
    monkeypatch.syspath_prepend(str(archive))
    try:
        import zipped_flujo.profiles as zipped_profiles

        assert zipped_profiles.shipped_profiles() == shipped_profiles()
        assert "memory" in zipped_profiles.locate_profile("testing").read_text(encoding="utf-8")
    finally:
        for module in [m for m in sys.modules if m.startswith("zipped_flujo")]:
            del sys.modules[module]


def test_the_cli_takes_a_profile_by_name_from_any_folder(
    _elsewhere: Path, isolated_state_home: Path
) -> None:
    (_elsewhere / "flow.py").write_text(
        "from flujo import Step\nflow = Step.from_callable(lambda x: x + 1, name='inc')\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app, ["run", "flow.py:flow", "--input", "1", "--profile", "testing"]
    )
    assert result.exit_code == 0, result.output
    assert "completed run" in result.stdout
    assert not (isolated_state_home / "flujo" / "runs.db").exists()  # the testing profile


def test_the_cli_names_the_shipped_profiles_for_an_unknown_name(_elsewhere: Path) -> None:
    result = CliRunner().invoke(app, ["runs", "list", "--profile", "tesing"])
    assert result.exit_code == 1
    assert "default, postgres, ray, testing" in result.stderr
