"""Dependencies point inward: domain <- application <- containers -> infra; no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = SOURCE_ROOT / "flujo"

# The composition root (the container and the defaults seam beside it), and the two
# front doors that name built-in parts for users.
MAY_IMPORT_INFRA = {
    "flujo/containers.py",
    "flujo/defaults.py",
    "flujo/backends.py",
    "flujo/providers.py",
    "flujo/state.py",
}

# Import circles known to exist, as sorted tuples of module names, each with its reason;
# nothing else may join, and an entry whose circle is gone must go. None is left.
KNOWN_CIRCLES: set[tuple[str, ...]] = set()


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


# --- module-level imports and import circles -------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(body: list[ast.stmt], *, module_level_only: bool) -> list[ast.stmt]:
    """Import statements in ``body``, outside ``if TYPE_CHECKING:`` blocks.

    Module level means what runs when the module is imported: the body, ``if``/``try``/
    ``with``/loop blocks and class bodies, but not function bodies.
    """
    found: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            found += _import_nodes(node.orelse, module_level_only=module_level_only)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not module_level_only:
                found += _import_nodes(node.body, module_level_only=False)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    statements = [c for c in children if isinstance(c, ast.stmt)]
                    found += _import_nodes(statements, module_level_only=module_level_only)
                    for handler in children:
                        if isinstance(handler, ast.ExceptHandler | ast.match_case):
                            found += _import_nodes(
                                handler.body, module_level_only=module_level_only
                            )
    return found


def _imported_modules(
    path: Path, root: Path, modules: set[str], *, module_level_only: bool
) -> set[str]:
    """Which of ``modules`` ``path`` imports (``from a import b`` names ``a.b`` or ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(tree.body, module_level_only=module_level_only):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        assert isinstance(node, ast.ImportFrom)
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, node.module] if node.module else base)
        else:
            module = node.module or ""
        for alias in node.names:
            found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
    return found & modules


def _import_graph(root: Path, *, module_level_only: bool = False) -> dict[str, set[str]]:
    paths = {_module_name(p, root): p for p in sorted((root / "flujo").rglob("*.py"))}
    names = set(paths)
    return {
        name: _imported_modules(path, root, names, module_level_only=module_level_only) - {name}
        for name, path in paths.items()
    }


def _circles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _container_importers(root: Path) -> list[str]:
    graph = _import_graph(root, module_level_only=True)
    return sorted(
        name
        for name, targets in graph.items()
        if _is_under(name, "flujo.application") and "flujo.containers" in targets
    )


def test_the_application_never_imports_the_container_at_module_level() -> None:
    # The engine gets its parts from the container per run; importing it at module level
    # would make `flujo.application` depend on the composition root it is wired by.
    assert _container_importers(SOURCE_ROOT) == []


def test_the_module_level_check_sees_if_and_try_but_not_type_checking(tmp_path: Path) -> None:
    core = tmp_path / "flujo" / "application" / "core"
    core.mkdir(parents=True)
    (tmp_path / "flujo" / "containers.py").write_text("", encoding="utf-8")
    lines = {
        "plain.py": "from flujo.containers import FlujoContainer\n",
        "relative.py": "from ... import containers\n",
        "in_if.py": "import sys\nif sys.version_info > (3,):\n    import flujo.containers\n",
        "in_try.py": "try:\n    from flujo import containers\nexcept ImportError:\n    pass\n",
        "in_except.py": "try:\n    pass\nexcept ImportError:\n    import flujo.containers\n",
        "in_class.py": "class A:\n    from flujo.containers import FlujoContainer\n",
        "else_of_tc.py": "if TYPE_CHECKING:\n    pass\nelse:\n    import flujo.containers\n",
        "type_checking.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from flujo.containers import FlujoContainer\n",
        "typing_dot.py": "import typing\nif typing.TYPE_CHECKING:\n    import flujo.containers\n",
        "in_function.py": "def f():\n    from flujo.containers import FlujoContainer\n",
    }
    for name, text in lines.items():
        (core / name).write_text(text, encoding="utf-8")
    bad = {"plain", "relative", "in_if", "in_try", "in_except", "in_class", "else_of_tc"}
    assert _container_importers(tmp_path) == sorted(f"flujo.application.core.{m}" for m in bad)


def _against_known(
    circles: set[tuple[str, ...]], known: set[tuple[str, ...]]
) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """Return (circles not known, known circles that no longer exist)."""
    return circles - known, known - circles


def test_no_import_circles_among_flujo_modules() -> None:
    # Every level counts (a function-level import that closes a circle only hides it
    # until a refactoring moves it); TYPE_CHECKING blocks do not, as they never run.
    new, gone = _against_known(_circles(_import_graph(SOURCE_ROOT)), KNOWN_CIRCLES)
    assert new == set(), f"import circles: {sorted(new)}"
    # A known exception that no longer exists must go, so it cannot hide a new circle.
    assert gone == set(), f"known circles that no longer exist, remove them: {sorted(gone)}"


def test_the_known_circles_excuse_only_themselves() -> None:
    found = {("a", "b"), ("c", "d", "e")}
    assert _against_known(found, {("a", "b")}) == ({("c", "d", "e")}, set())
    assert _against_known(found, {("a", "b"), ("c", "d", "e"), ("x", "y")}) == (
        set(),
        {("x", "y")},
    )
    assert _against_known(set(), set()) == (set(), set())


def test_the_circle_finder_sees_function_level_and_indirect_circles(tmp_path: Path) -> None:
    package = tmp_path / "flujo"
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "core" / "__init__.py").write_text("", encoding="utf-8")
    files = {
        # a -> b at module level, b -> a inside a function: a circle.
        "core/a.py": "from flujo.core import b\n",
        "core/b.py": "def f():\n    from flujo.core.a import thing\n",
        # c -> d -> e -> c through a relative import: one circle of three.
        "core/c.py": "from . import d\n",
        "core/d.py": "import flujo.core.e\n",
        "core/e.py": "def g():\n    from .c import x\n",
        # f <-> g only under TYPE_CHECKING on one side: no circle.
        "core/f.py": "from flujo.core import g\n",
        "core/g.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from flujo.core.f import F\n",
        # a module importing from its own package's __init__ and back.
        "core/h.py": "from flujo import thing\n",
        "__init__.py": "def lazy():\n    from flujo.core.h import H\n",
    }
    for name, text in files.items():
        (package / name).write_text(text, encoding="utf-8")
    assert _circles(_import_graph(tmp_path)) == {
        ("flujo.core.a", "flujo.core.b"),
        ("flujo.core.c", "flujo.core.d", "flujo.core.e"),
        ("flujo", "flujo.core.h"),
    }
