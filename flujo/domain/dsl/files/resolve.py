"""Import paths of a pipeline file (``package.module:attr``) turned into the objects they name.

Resolving a path **imports its module**, running that module's top-level code, as
``import package.module`` would: a pipeline file is as trusted as the code it names.
A path that does not resolve is a ``Failure`` naming what was tried — the module, or
the attribute and what the module does have — never an exception. Each path is
resolved once per load.

``signature_problem`` tells whether a callable can be called the way flujo will call it
(``condition(input, context)``, ``validator(output)``, ...), before anything runs.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flujo.domain.dsl.files.format import closest

__all__ = ["Failure", "Resolver", "add_import_folder", "signature_problem"]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an import path did not resolve."""

    message: str


def add_import_folder(folder: Path) -> None:
    """Make modules beside a pipeline file importable, as ``python file.py`` does for a script."""
    entry = str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)


@dataclass
class Resolver:
    """Resolves import paths, each once; a failure is remembered as well."""

    found: dict[str, Any] = field(default_factory=dict)

    def resolve(self, path: str) -> Any:
        """Return what ``path`` names, or a ``Failure`` saying why it cannot be found."""
        if path not in self.found:
            self.found[path] = _resolve(path)
        return self.found[path]


def _resolve(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            return Failure(f"cannot import {path!r}: no module named {missing!r}")
        return Failure(f"cannot import {path!r}: importing {module_name!r} failed: {_one(exc)}")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the module's own code may fail in any way, sys.exit too
        return Failure(f"cannot import {path!r}: importing {module_name!r} raised {_one(exc)}")
    target: Any = module
    walked = module_name
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = [n for n in dir(target) if not n.startswith("_")]
            return Failure(
                f"cannot import {path!r}: {_what(target, walked)} has no attribute "
                f"{part!r}{closest(part, names)}"
            )
        walked = f"{walked}:{part}" if walked == module_name else f"{walked}.{part}"
    return target


def _what(target: Any, walked: str) -> str:
    kind = "module" if inspect.ismodule(target) else type(target).__name__
    return f"{kind} {walked!r}"


def _one(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()
    return text[0] if text else type(exc).__name__


def signature_problem(
    fn: Callable[..., Any], positional: int, keywords: Sequence[str] = ()
) -> str | None:
    """Say why ``fn(*positional args, **keywords)`` cannot be called, or ``None`` if it can.

    Keywords ``fn`` does not declare are left out (flujo passes ``context`` and
    ``resources`` only to callables that declare them); a callable without a readable
    signature (a builtin) is given the benefit of the doubt.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    parameters = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    given = {name: None for name in keywords if name in parameters or takes_any}
    try:
        signature.bind(*([None] * positional), **given)
    except TypeError as exc:
        return str(exc)
    return None
