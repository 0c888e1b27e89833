"""Whether the decorators between ``@cached`` and a function pass a call's positional
arguments on in their places, read from their bytecode (CPython 3.10 to 3.13).

A call of a decorated function is bound by the signature ``inspect.signature`` gives, the
innermost function's (it follows ``__wrapped__``), but it runs the outermost wrapper, which
may move the arguments: ``fn(SESSION, *args, **kwargs)`` runs ``f(5, 1)`` with 5 as ``x``,
not as ``session``. Where each wrapper is read as passing them on in place, the parameter
the signature puts at a position is the one the call's argument there is; anywhere else,
``ignore=`` leaves out only what a keyword gives (``_keys._shaped``).

A wrapper passes them on in place when:

- it is ``functools.lru_cache``'s or ``functools.singledispatch``'s (they call with the
  arguments as given);
- or its code (a function's, the ``__call__`` of a class of ``functools.update_wrapper``,
  wrapt's ``wrapper(wrapped, instance, args, kwargs)``) loads the function it wraps only to
  call it as ``fn(*args, ...)`` or ``fn(a, b, *args, ...)``, with its own positional
  parameters in order and its ``*args`` as they came, nothing between, and does so at
  least once; and it never assigns those names, never hands them to a nested function
  (a cell), and never reaches its frame's variables by name (``eval``, ``locals()``).

Anything else (a partial of the function, a lambda or an inner function calling it, a
runner it is handed to, a call spelling the arguments out) is not read as in place: the
cost is an extra computation, never another call's value.
"""

from __future__ import annotations

import dis
import functools
import inspect
from types import FunctionType
from typing import Any

__all__ = ["passes_on_in_place"]

# What may come between a wrapper's ``*args`` loaded and the call that takes them: the
# call's keywords (``**kwargs``, ``extra=1``), never positional arguments.
_KEYWORDS_PART = frozenset({"BUILD_MAP", "DICT_MERGE", "DICT_UPDATE", "LOAD_FAST",
                            "LOAD_FAST_LOAD_FAST", "LOAD_CONST", "LOAD_GLOBAL", "LOAD_DEREF"})
# Instructions that move nothing on the stack the reading cares about.
_SKIPPED = frozenset({"CACHE", "PUSH_NULL", "EXTENDED_ARG", "NOP", "RESUME", "COPY_FREE_VARS",
                      "MAKE_CELL"})
# Names by which code reaches its own frame's variables: such a wrapper is not read.
_FRAME_READERS = frozenset({"eval", "exec", "locals", "vars", "globals", "_getframe",
                            "f_locals", "currentframe"})
_DEPTH = 32  # decorators read down a ``__wrapped__`` chain at most


def passes_on_in_place(target: Any) -> bool:
    """Whether every wrapper from ``target`` down its ``__wrapped__`` chain passes the
    call's positional arguments on in their places (see the module's docstring); False for
    a callable that wraps nothing, or one whose chain declares a ``__signature__``."""
    level = target
    for _ in range(_DEPTH):
        if "__signature__" in getattr(level, "__dict__", ()):
            return False  # (the call is bound by that, not by the innermost function's)
        wrapped = getattr(level, "__wrapped__", None)
        if wrapped is None:
            return level is not target
        if not _wrapper_in_place(level, wrapped):
            return False
        level = wrapped
    return False


def _wrapper_in_place(wrapper: Any, wrapped: Any) -> bool:
    if isinstance(wrapper, functools._lru_cache_wrapper):
        return True
    if type(wrapper) is FunctionType:
        if hasattr(wrapper, "registry") and hasattr(wrapper, "dispatch"):
            return True  # functools.singledispatch's
        code = wrapper.__code__
        if not code.co_flags & inspect.CO_VARARGS:
            return False
        own = code.co_varnames[:code.co_argcount]
        star = code.co_varnames[code.co_argcount + code.co_kwonlyargcount]
        callee = _names_holding(wrapper, wrapped)
        return bool(callee) and _calls_in_place(code, own, star, callee)
    function = getattr(wrapper, "_self_wrapper", None)  # wrapt's
    if type(function) is FunctionType and function.__code__.co_argcount == 4:
        code = function.__code__
        return _calls_in_place(code, (), code.co_varnames[2], {code.co_varnames[0]})
    call = vars(type(wrapper)).get("__call__")  # a class of functools.update_wrapper
    if type(call) is FunctionType and call.__code__.co_flags & inspect.CO_VARARGS:
        code = call.__code__
        if code.co_argcount < 1:
            return False
        attributes = {name for name, value in getattr(wrapper, "__dict__", {}).items()
                      if value is wrapped and name != "__wrapped__"}
        star = code.co_varnames[code.co_argcount + code.co_kwonlyargcount]
        return bool(attributes) and _calls_in_place(
            code, code.co_varnames[1:code.co_argcount], star, attributes,
            holder=code.co_varnames[0])
    return False


def _names_holding(func: FunctionType, value: Any) -> set[str]:
    """The free variables and globals of ``func`` that hold ``value``."""
    names = {name for name, cell in zip(func.__code__.co_freevars, func.__closure__ or (),
                                        strict=True)
             if _content(cell) is value}
    names.update(name for name in func.__code__.co_names
                 if func.__globals__.get(name) is value)
    return names


def _content(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _calls_in_place(code: Any, own: tuple[str, ...], star: str, callee: set[str],
                    holder: str | None = None) -> bool:
    """Whether ``code`` loads ``callee`` (variables, or attributes of its parameter
    ``holder``) only to call it as ``callee(*own, *star, ...)``, at least once, and never
    assigns ``own``, ``star`` or ``callee`` nor hands them to a nested function."""
    kept = {*own, star}
    if kept & set(code.co_cellvars) or _FRAME_READERS & set(code.co_names):
        return False
    if holder is not None and holder in code.co_cellvars:
        return False
    ops = [op for op in dis.get_instructions(code) if op.opname not in _SKIPPED]
    calls = 0
    for at, op in enumerate(ops):
        value = op.argval
        names = tuple(n for n in (value if isinstance(value, tuple) else (value,))
                      if isinstance(n, str))
        if op.opname.startswith(("STORE", "DELETE")):
            stored = names[:1] if op.opname == "STORE_FAST_LOAD_FAST" else names
            if kept.intersection(stored) or callee.intersection(stored) or (
                    holder is not None and holder in stored):
                return False
            continue
        if not callee.intersection(names) or op.opname in ("LOAD_CONST", "KW_NAMES"):
            continue
        # A load of the function wrapped: only as the callee of the call in place.
        if holder is None:
            start = at + 1 if op.opname in ("LOAD_DEREF", "LOAD_GLOBAL", "LOAD_FAST") else -1
        else:
            start = at + 1 if (op.opname == "LOAD_ATTR" and at and ops[at - 1].opname
                               == "LOAD_FAST" and ops[at - 1].argval == holder) else -1
        if start < 0 or not _passes_in_place(ops, start, own, star):
            return False
        calls += 1
    return calls > 0


def _passes_in_place(ops: list[Any], at: int, own: tuple[str, ...], star: str) -> bool:
    """Whether ``ops[at:]`` is ``own`` and ``*star`` passed positionally, then keywords
    only, then the call: ``LOAD_FAST a, LOAD_FAST b, BUILD_LIST 2, LOAD_FAST args,
    LIST_EXTEND, LIST_TO_TUPLE, ..., CALL_FUNCTION_EX`` (``LOAD_FAST args`` alone without
    ``own``)."""
    loaded: list[str] = []
    while at < len(ops) and ops[at].opname in ("LOAD_FAST", "LOAD_FAST_LOAD_FAST") \
            and ops[at].argval != star:
        value = ops[at].argval
        loaded.extend(value if isinstance(value, tuple) else (value,))
        at += 1
    if tuple(loaded) != own:
        return False
    if own:
        if at >= len(ops) or ops[at].opname != "BUILD_LIST" or ops[at].arg != len(own):
            return False
        at += 1
    if at >= len(ops) or ops[at].opname != "LOAD_FAST" or ops[at].argval != star:
        return False
    at += 1
    if own:
        if at + 1 >= len(ops) or ops[at].opname != "LIST_EXTEND" or not (
                ops[at + 1].opname == "LIST_TO_TUPLE"
                or ops[at + 1].argrepr == "INTRINSIC_LIST_TO_TUPLE"):
            return False
        at += 2
    while at < len(ops) and ops[at].opname in _KEYWORDS_PART:
        at += 1
    return at < len(ops) and ops[at].opname == "CALL_FUNCTION_EX"
