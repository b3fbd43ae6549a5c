"""What a step runs, named so that it is stable across processes: for cache keys.

Two steps sharing a name may run different code (two pipelines on one container,
or one Redis cache), so a step's cache key holds its identity too: the qualified
name of its callable (``module.qualname``; for an agent, the agent's type) and a
digest of the code itself — bytecode, constants, names, and what the function
closes over or defaults to when that is plain data or other code. Line numbers
and file names are left out, so moving a function does not change its digest;
the digest is blake2b over a ``repr`` of those values with sets sorted, so the
same source gives the same digest in every process, whatever ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import functools
import hashlib
import types
from collections.abc import Iterable

__all__ = ["code_digest", "qualified_name"]

_PLAIN = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))


def qualified_name(target: object) -> str:
    """``module.qualname`` of a function, method, class or callable object (its type)."""
    while isinstance(target, functools.partial):
        target = target.func
    if isinstance(target, types.MethodType):
        target = target.__func__
    if not isinstance(target, type) and not hasattr(target, "__qualname__"):
        target = type(target)
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', type(target).__qualname__)}"


def code_digest(*targets: object) -> str:
    """Hex digest of the code of ``targets`` (callables, or plain values among them)."""
    seen: set[int] = set()
    material = [_material(target, seen) for target in targets]
    return hashlib.blake2b(repr(material).encode(), digest_size=16).hexdigest()


def _material(target: object, seen: set[int]) -> object:
    """Return plain values (nested tuples) standing for what ``target`` runs."""
    if isinstance(target, _PLAIN):
        return target
    if isinstance(target, tuple | list):
        return tuple(_material(item, seen) for item in target)
    if isinstance(target, frozenset | set):
        return ("set", tuple(sorted(repr(_material(item, seen)) for item in target)))
    if isinstance(target, dict):
        items = ((repr(_material(k, seen)), _material(v, seen)) for k, v in target.items())
        return ("dict", tuple(sorted(items, key=lambda kv: kv[0])))
    if isinstance(target, types.CodeType):
        return _code(target, seen)
    if isinstance(target, type):
        return ("type", qualified_name(target))
    if id(target) in seen:
        return ("again", qualified_name(target))  # a recursive closure or default
    seen.add(id(target))
    if isinstance(target, types.FunctionType):
        cells = tuple(_cell(cell) for cell in target.__closure__ or ())
        return (
            "fn",
            qualified_name(target),
            _code(target.__code__, seen),
            _material(target.__defaults__ or (), seen),
            _material(target.__kwdefaults__ or {}, seen),
            _material(cells, seen),
        )
    if isinstance(target, types.MethodType):
        return ("method", _material(target.__func__, seen), qualified_name(target.__self__))
    if isinstance(target, functools.partial):
        parts = (target.func, target.args, target.keywords)
        return ("partial", *(_material(part, seen) for part in parts))
    call = getattr(type(target), "__call__", None)  # noqa: B004 - a callable object's own code
    if isinstance(call, types.FunctionType):
        return ("object", qualified_name(target), _material(call, seen))
    # A builtin, or an object whose state is its own: its type is all that can be named.
    return ("opaque", qualified_name(target))


def _cell(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # a cell not filled yet
        return None


def _code(code: types.CodeType, seen: set[int]) -> tuple[object, ...]:
    consts: Iterable[object] = code.co_consts
    return (
        code.co_code,
        code.co_flags,
        code.co_argcount,
        code.co_kwonlyargcount,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        tuple(_material(const, seen) for const in consts),
    )
