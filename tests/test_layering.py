"""Dependencies point inward: domain <- application <- containers -> infra."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = SOURCE_ROOT / "flujo"

# The composition root and the public facade of built-in providers name infra classes.
# The composition root, and the two front doors that name built-in parts for users.
MAY_IMPORT_INFRA = {"flujo/containers.py", "flujo/providers.py", "flujo/state.py"}


def _module_name(path: Path, root: Path = SOURCE_ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path = SOURCE_ROOT) -> set[str]:
    """Every module ``path`` imports, at any level (module, function, TYPE_CHECKING).

    ``from a import b`` counts as importing both ``a`` and ``a.b`` (``b`` may be a module).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _flujo_imports(path: Path, root: Path = SOURCE_ROOT) -> set[str]:
    return {m for m in _imports(path, root) if _is_under(m, "flujo")}


def _is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _modules(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(SOURCE_ROOT).as_posix()


def test_the_layers_exist() -> None:
    assert _modules("domain") and _modules("application") and _modules("infra")


@pytest.mark.parametrize("path", _modules("domain"), ids=_rel)
def test_domain_imports_only_domain(path: Path) -> None:
    # ``from flujo import X`` counts too: it would load the runner and the container.
    outside = {m for m in _flujo_imports(path) if not _is_under(m, "flujo.domain")}
    assert outside == set(), f"{_rel(path)} imports {sorted(outside)}"


@pytest.mark.parametrize("path", _modules("application"), ids=_rel)
def test_application_never_imports_infra(path: Path) -> None:
    infra = {m for m in _flujo_imports(path) if _is_under(m, "flujo.infra")}
    assert infra == set(), f"{_rel(path)} imports {sorted(infra)}"


def test_only_the_composition_root_imports_infra() -> None:
    importers = {
        _rel(path)
        for path in PACKAGE.rglob("*.py")
        if not _is_under(_module_name(path), "flujo.infra")
        and any(_is_under(m, "flujo.infra") for m in _flujo_imports(path))
    }
    assert "flujo/containers.py" in importers  # the finder does see real imports
    unexpected = sorted(importers - MAY_IMPORT_INFRA)
    assert unexpected == [], f"modules outside the composition root import infra: {unexpected}"


def test_the_import_finder_sees_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "flujo" / "application"
    package.mkdir(parents=True)
    sample = package / "mod.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from flujo.infra.caches import X\n"
        "def f():\n"
        "    from ..infra import serialization\n"
        "    import flujo.infra.usage\n"
        "    from flujo import infra\n",
        encoding="utf-8",
    )
    found = _flujo_imports(sample, root=tmp_path)
    assert {
        "flujo.infra.caches",
        "flujo.infra.serialization",
        "flujo.infra.usage",
        "flujo.infra",
    } <= found
