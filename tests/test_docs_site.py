"""The site's configuration: every page in the navigation, every API page naming a real module.

``mkdocs build --strict`` (in .ci/run) checks links and renders the pages; these
checks run with the suite, without mkdocs installed, so a page added without a
place in the navigation fails at once.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API_TARGET = re.compile(r"^::: (?P<module>[\w.]+)\s*$", re.MULTILINE)


class _ConfigLoader(yaml.SafeLoader):
    """Reads mkdocs.yml, whose ``!!python/name:`` tags name functions by their path."""


def _python_name(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> str:
    return f"python/name:{suffix}"


_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", _python_name)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_ConfigLoader)
    assert isinstance(loaded, dict)
    return loaded


def _pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _pages(value)]
    raise AssertionError(f"unexpected nav entry {nav!r}")


def test_the_navigation_holds_every_page_once(config: dict[str, Any]) -> None:
    listed = _pages(config["nav"])
    assert len(listed) == len(set(listed)), f"pages listed twice: {listed}"
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk


def test_the_build_is_strict_and_checks_links_and_omitted_pages(config: dict[str, Any]) -> None:
    assert config["strict"] is True
    assert config["validation"]["nav"]["omitted_files"] == "warn"  # strict turns it into an error
    assert config["validation"]["links"]["anchors"] == "warn"


def test_mermaid_blocks_are_drawn(config: dict[str, Any]) -> None:
    fences = next(
        ext["pymdownx.superfences"]["custom_fences"]
        for ext in config["markdown_extensions"]
        if isinstance(ext, dict) and "pymdownx.superfences" in ext
    )
    assert {
        "name": "mermaid",
        "class": "mermaid",
        "format": "python/name:pymdownx.superfences.fence_code_format",
    } in fences
    assert config["theme"]["name"] == "material"  # its script renders .mermaid blocks


def _api_targets() -> list[str]:
    return [
        match["module"]
        for page in sorted((DOCS / "api").glob("*.md"))
        for match in API_TARGET.finditer(page.read_text(encoding="utf-8"))
    ]


@pytest.mark.parametrize("module", _api_targets())
def test_every_api_page_renders_a_module_that_exists(module: str) -> None:
    assert importlib.import_module(module).__doc__, f"{module} has no docstring to render"


def test_every_module_the_reference_names_has_an_api_page() -> None:
    reference = (DOCS / "reference.md").read_text(encoding="utf-8")
    named = set(re.findall(r"^## `(flujo[\w.]*)`$", reference, re.MULTILINE))
    rendered = set(_api_targets())
    # `flujo` itself re-exports names documented at their own modules.
    assert named - {"flujo"} <= rendered, sorted(named - rendered)
