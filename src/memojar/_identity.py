"""Function identity: a stable name and a fingerprint of the function's code.

The fingerprint changes when the code does (bytecode, constants, names, nested functions)
and not when the function only moves, or its comments or docstring change: line numbers,
the line table, the file name and the docstring are left out. Frozenset constants (from
``x in {"a", "b"}``) are sorted, since their order depends on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType
from typing import Any

import xxhash

_CO_HAS_DOCSTRING = 0x4000000  # 3.14+: co_consts[0] is the docstring only with this flag
_DOCSTRING_FLAG_VERSION = (3, 14)


def function_name(func: Callable[..., Any]) -> str:
    """``module.qualname``, the name the cache and the command line know a function by."""
    module = getattr(func, "__module__", None) or "__unknown__"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    return f"{module}.{qualname}"


def code_fingerprint(func: Callable[..., Any]) -> str:
    """A 16-digit hex digest of ``func``'s code, the same in every process."""
    code = getattr(func, "__code__", None)
    if code is None:  # a builtin or a callable object: its qualified name is all we have
        return xxhash.xxh3_64_hexdigest(function_name(func).encode())
    return xxhash.xxh3_64_hexdigest(repr(_code_shape(code, top=True)).encode())


def _code_shape(code: CodeType, top: bool = False) -> tuple:
    consts = list(code.co_consts)
    if _has_docstring(code, top) and consts:
        consts = consts[1:]
    flags = code.co_flags & ~_CO_HAS_DOCSTRING
    return (
        code.co_name,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        flags,
        code.co_code,
        tuple(_const_shape(c) for c in consts),
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
    )


def _has_docstring(code: CodeType, top: bool) -> bool:
    if sys.version_info >= _DOCSTRING_FLAG_VERSION:
        return bool(code.co_flags & _CO_HAS_DOCSTRING)
    # Before 3.14 every ``def`` keeps its docstring (or None) as co_consts[0]; lambdas,
    # comprehensions and class bodies (names like "<lambda>") do not.
    return top or not code.co_name.startswith("<")


def _const_shape(const: Any) -> Any:
    if isinstance(const, CodeType):
        return ("code", _code_shape(const))
    if isinstance(const, frozenset):
        return ("frozenset", tuple(sorted(repr(_const_shape(c)) for c in const)))
    if isinstance(const, tuple):
        return ("tuple", tuple(_const_shape(c) for c in const))
    return (type(const).__name__, repr(const))
