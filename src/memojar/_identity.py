"""Function identity: a stable name and a fingerprint of the function's code.

The fingerprint changes when the code does (bytecode, constants, names, nested functions)
and not when the function only moves, or its comments or docstring change: line numbers,
the line table, the file name and the docstring are left out. Frozenset constants (from
``x in {"a", "b"}``) are sorted, since their order depends on ``PYTHONHASHSEED``.

Instructions are fingerprinted with their constants resolved by value, not by index into
``co_consts``: before 3.14 the docstring (or ``None``) is ``co_consts[0]``, so adding or
removing a docstring shifts the index of every other constant (``None`` in a ``with``
block, say) and with it the raw ``co_code``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import BuiltinFunctionType, CodeType
from typing import Any

import xxhash

_CO_HAS_DOCSTRING = 0x4000000  # 3.14+: set when the function has a docstring


def function_name(func: Callable[..., Any]) -> str:
    """``module.qualname``, the name the cache and the command line know a function by."""
    module = getattr(func, "__module__", None) or "__unknown__"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    return f"{module}.{qualname}"


def code_fingerprint(func: Callable[..., Any]) -> str:
    """A 16-digit hex digest of ``func``'s code, the same in every process.

    A closure's captured values count as code: ``make(2)`` and ``make(3)`` of a factory
    share a name and bytecode but must never share results.
    """
    code = getattr(func, "__code__", None)
    if code is None:  # a builtin or a callable object: its qualified name is all we have
        return xxhash.xxh3_64_hexdigest(function_name(func).encode())
    shape: Any = _code_shape(code, top=True)
    closure = getattr(func, "__closure__", None)
    if closure:
        shape = (shape, tuple(_cell_shape(cell) for cell in closure))
    return xxhash.xxh3_64_hexdigest(repr(shape).encode())


def _cell_shape(cell: Any) -> Any:
    """A captured value as the fingerprint sees it, when the function is decorated.

    Plain immutable data (numbers, strings, bytes, None, and tuples and frozensets of them)
    counts by value, functions by their code, classes and builtins by name. Anything else
    (a list, a dict, a model, a lock) counts by type alone, like a global: hashing it would
    pickle arbitrary objects at decoration time, and change with every mutation of a
    captured accumulator.
    """
    try:
        value = cell.cell_contents
    except ValueError:  # an empty cell: a name assigned later in the enclosing function
        return ("empty",)
    code = getattr(value, "__code__", None)
    if isinstance(code, CodeType):
        return ("function", function_name(value), _code_shape(code, top=True))
    if isinstance(value, (type, BuiltinFunctionType)):
        return ("named", function_name(value))
    if _plain(value):
        from ._keys import make_key

        return ("value", make_key((value,)))
    return ("type", type(value).__module__, type(value).__qualname__)


_PLAIN = (int, float, complex, str, bytes, bool, type(None), range)


def _plain(value: Any) -> bool:
    if isinstance(value, (tuple, frozenset)):
        return all(_plain(v) for v in value)
    return type(value) in _PLAIN


def _code_shape(code: CodeType, top: bool = False) -> tuple:
    flags = code.co_flags & ~_CO_HAS_DOCSTRING
    return (
        code.co_name,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        flags,
        _instructions(code),
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
    )


def _instructions(code: CodeType) -> tuple:
    """The bytecode with each constant operand replaced by the constant's shape.

    The docstring is not an operand of any instruction, so it is left out by construction,
    whatever the Python version keeps in ``co_consts[0]``.
    """
    import dis  # not at import time: it costs milliseconds and only decorating needs it

    has_const = frozenset(dis.hasconst)
    return tuple(
        (ins.opcode, _const_shape(ins.argval) if ins.opcode in has_const else ins.arg)
        for ins in dis.get_instructions(code)
    )


def _const_shape(const: Any) -> Any:
    if isinstance(const, CodeType):
        return ("code", _code_shape(const))
    if isinstance(const, frozenset):
        return ("frozenset", tuple(sorted(repr(_const_shape(c)) for c in const)))
    if isinstance(const, tuple):
        return ("tuple", tuple(_const_shape(c) for c in const))
    return (type(const).__name__, repr(const))


_MAIN_MODULES = ("__main__", "__mp_main__")  # a spawn/forkserver worker runs the script as
# ``__mp_main__``, with the parent's ``__file__``: the same scope as the script itself


def scope_of(func: Callable[..., Any]) -> str:
    """Where a function of ``__main__`` was defined: its notebook or script; else ``""``.

    Two scripts or two notebooks that each define ``load`` share the name ``__main__.load``;
    the scope keeps their entries apart (it salts the key and is recorded in the entry
    header). Importable modules have no scope: their name says where they live. Looked up in
    the function's own globals, in this order: ``__vsc_ipynb_file__`` (VS Code's notebook),
    ``__session__`` (ipykernel's copy of ``JPY_SESSION_NAME``, the notebook's path as Jupyter
    Server passes it), ``__file__`` (a script, resolved), then ``$JPY_SESSION_NAME`` itself
    (a notebook function copied by cloudpickle to a worker keeps ``__file__`` but not
    ``__session__``). An interactive session with none of these has the empty scope.
    """
    target = func
    for _ in range(100):  # through wrappers, bound methods and partials to the function
        inner = getattr(target, "__wrapped__", None) or getattr(target, "__func__", None)
        if inner is None and isinstance(target, functools.partial):
            inner = target.func
        if inner is None:
            break
        target = inner
    if getattr(target, "__module__", None) not in _MAIN_MODULES:
        return ""
    namespace = getattr(target, "__globals__", None)
    if namespace is None:  # a callable instance: its class's __call__ was defined there
        namespace = getattr(type(target).__call__, "__globals__", None)
    if not isinstance(namespace, dict):
        import sys

        main = sys.modules.get("__main__")
        namespace = getattr(main, "__dict__", {})
    for name in ("__vsc_ipynb_file__", "__session__"):
        value = namespace.get(name)
        if isinstance(value, str) and value:
            return _resolved(value)
    import os

    path = namespace.get("__file__")
    if isinstance(path, str) and path:
        return os.path.realpath(path)  # a relative one (runpy.run_path) from the cwd
    return _resolved(os.environ.get("JPY_SESSION_NAME", ""))


def _resolved(path: str) -> str:
    """An absolute path with its links resolved; anything else (a relative notebook path as
    Jupyter Server may pass it, a session name) as it is."""
    import os

    if os.path.isabs(path):
        return os.path.realpath(path)
    return path
