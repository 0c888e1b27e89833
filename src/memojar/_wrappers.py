"""Whether the decorators between ``@cached`` and a function pass a call's positional
arguments on in their places, read from their bytecode (CPython 3.10 to 3.13).

A call of a decorated function is bound by the signature ``inspect.signature`` gives, the
innermost function's (it follows ``__wrapped__``), but it runs the outermost wrapper, which
may move the arguments: ``fn(SESSION, *args, **kwargs)`` runs ``f(5, 1)`` with 5 as ``x``,
not as ``session``. Where each wrapper is read as passing them on in place, the parameter
the signature puts at a position is the one the call's argument there is; anywhere else,
``ignore=`` leaves out only what a keyword gives (``_keys._shaped``).

A wrapper is read as passing them on in place when it is ``functools.lru_cache``'s (which
calls with the arguments as given), or a function (wrapt's wrapper function too) whose
code uses its ``*args`` and its own positional parameters only as ``fn(*args, ...)`` or
``fn(a, b, *args, ...)``, in order and nothing between, the keywords loading none of them,
where ``fn`` holds the function it wraps (a free variable or global holding it when
decorated; wrapt's ``wrapped``); loads ``fn`` only for those calls or for its
``__name__``, ``__qualname__``, ``__module__`` or ``__doc__``; calls it so at least once,
with no jump into such a call (``(partial_ or fn)(*args)``); names its own positional
parameters as the signature does in their places, if at all (``def wrapper(session=None,
*args)`` takes a ``session=5`` and passes it on first); never assigns those names, never
hands them to a nested function (a cell), and never reaches its frame's variables by name
(``eval``, ``locals()``).

Anything else is not read as in place: ``*args`` handed to anything else (a partial of the
function, a lambda, a runner such as tenacity's, a logger), spelled out (``args[0]``), a
class's ``__call__``, ``singledispatch`` (whose implementations may put their parameters
elsewhere), a ``__signature__`` declared anywhere on the chain. The cost is an extra
computation, never another call's value. Not seen: a name holding the function rebound
after decoration by other code (a sibling closure's ``nonlocal``, a module reassigning the
global), as a partial of it.
"""

from __future__ import annotations

import dis
import functools
import inspect
import sys
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
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    places = {p.name: at for at, p in enumerate(p for p in params if p.kind in kinds)}
    level = target
    for _ in range(_DEPTH):
        try:
            if getattr(level, "__signature__", None) is not None:
                return False  # (the call is bound by that, not by the innermost function's)
            wrapped = getattr(level, "__wrapped__", None)
        except Exception:  # noqa: BLE001 - a property of the user's raising: not read
            return False
        if wrapped is None:
            return level is not target
        if not _wrapper_in_place(level, wrapped, places):
            return False
        level = wrapped
    return False


def _wrapper_in_place(wrapper: Any, wrapped: Any, places: dict[str, int]) -> bool:
    """Whether ``wrapper`` passes its positional arguments on to ``wrapped`` in place;
    ``places``: where the innermost signature puts each positional parameter, which the
    wrapper's own must keep (``def wrapper(session=None, *args)`` takes ``session=5`` and
    passes it on first, where ``a`` is)."""
    if isinstance(wrapper, functools._lru_cache_wrapper):
        return True
    if type(wrapper) is FunctionType:
        code = wrapper.__code__
        if not code.co_flags & inspect.CO_VARARGS:
            return False
        own = code.co_varnames[:code.co_argcount]
        if any(places.get(name, at) != at for at, name in enumerate(own)):
            return False
        star = code.co_varnames[code.co_argcount + code.co_kwonlyargcount]
        callee = _names_holding(wrapper, wrapped)
        return bool(callee) and _calls_in_place(code, own, star, callee)
    if _is_wrapts(wrapper):
        function = wrapper._self_wrapper
        if type(function) is FunctionType and function.__code__.co_argcount == 4:
            code = function.__code__  # wrapper(wrapped, instance, args, kwargs)
            return _calls_in_place(code, (), code.co_varnames[2], {code.co_varnames[0]})
    return False


def _is_wrapts(wrapper: Any) -> bool:
    """Whether ``wrapper`` is a wrapt ``FunctionWrapper`` itself (not a subclass, nor an
    object lending its ``_self_wrapper``)."""
    wrapt = sys.modules.get("wrapt")
    return wrapt is not None and type(wrapper) in (
        getattr(wrapt, "FunctionWrapper", None), getattr(wrapt, "BoundFunctionWrapper", None))


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


# What a wrapper may read of the function it wraps besides calling it: what a log line says.
_NAMING = frozenset({"__name__", "__qualname__", "__module__", "__doc__"})


def _calls_in_place(code: Any, own: tuple[str, ...], star: str, callee: set[str]) -> bool:
    """Whether ``code`` uses ``own`` and ``star`` only in calls of ``callee`` as
    ``callee(*own, *star, ...)``, makes one, loads ``callee`` for nothing else but its
    name, never assigns them nor hands them to a nested function, and never jumps into
    such a call (``(partial_ or fn)(*args)`` calls one or the other)."""
    kept = {*own, star}
    if kept & set(code.co_cellvars) or _FRAME_READERS & set(code.co_names):
        return False
    every = list(dis.get_instructions(code))
    targets = [op.offset for op in every if op.is_jump_target]
    ops = [op for op in every if op.opname not in _SKIPPED]
    in_calls: set[int] = set()  # the indexes of the loads of ``kept`` in calls in place
    for at, op in enumerate(ops):
        value = op.argval
        names = tuple(n for n in (value if isinstance(value, tuple) else (value,))
                      if isinstance(n, str))
        if op.opname.startswith(("STORE", "DELETE")):
            stored = names[:1] if op.opname == "STORE_FAST_LOAD_FAST" else names
            if kept.intersection(stored) or callee.intersection(stored):
                return False
            continue
        if op.opname in ("LOAD_CONST", "KW_NAMES") or not callee.intersection(names):
            continue
        if op.opname not in ("LOAD_DEREF", "LOAD_GLOBAL", "LOAD_FAST"):
            return False  # (handed to a nested function, or another name's)
        following = ops[at + 1] if at + 1 < len(ops) else None
        if following is not None and following.opname == "LOAD_ATTR" \
                and following.argval in _NAMING:
            continue
        call = _passes_in_place(ops, at + 1, own, star)
        if call is None or any(op.offset < t <= ops[call[-1]].offset for t in targets):
            return False
        in_calls.update(call[:-1])
    loads = {at for at, op in enumerate(ops) if kept.intersection(_loaded(op))}
    return bool(in_calls) and loads == in_calls


def _loaded(op: Any) -> tuple[str, ...]:
    """The local variables ``op`` loads (one, two for 3.13's ``LOAD_FAST_LOAD_FAST``)."""
    if not op.opname.startswith("LOAD_FAST") and op.opname != "STORE_FAST_LOAD_FAST":
        return ()
    value = op.argval
    if op.opname == "STORE_FAST_LOAD_FAST":
        return (value[1],)
    return value if isinstance(value, tuple) else (value,)


def _passes_in_place(ops: list[Any], at: int, own: tuple[str, ...], star: str
                     ) -> list[int] | None:
    """If ``ops[at:]`` is ``own`` and ``*star`` passed positionally, then keywords only,
    then the call (``LOAD_FAST a, LOAD_FAST b, BUILD_LIST 2, LOAD_FAST args,
    LIST_EXTEND, LIST_TO_TUPLE, ..., CALL_FUNCTION_EX``; ``LOAD_FAST args`` alone without
    ``own``): the indexes of its loads of ``own`` and ``star``, and of the call last; else
    None. The keywords may load no more of them (``y=a``)."""
    kept = {*own, star}
    loaded: list[str] = []
    indexes: list[int] = []
    while at < len(ops) and ops[at].opname in ("LOAD_FAST", "LOAD_FAST_LOAD_FAST") \
            and ops[at].argval != star:
        value = ops[at].argval
        loaded.extend(value if isinstance(value, tuple) else (value,))
        indexes.append(at)
        at += 1
    if tuple(loaded) != own:
        return None
    if own:
        if at >= len(ops) or ops[at].opname != "BUILD_LIST" or ops[at].arg != len(own):
            return None
        at += 1
    if at >= len(ops) or ops[at].opname != "LOAD_FAST" or ops[at].argval != star:
        return None
    indexes.append(at)
    at += 1
    if own:
        if at + 1 >= len(ops) or ops[at].opname != "LIST_EXTEND" or not (
                ops[at + 1].opname == "LIST_TO_TUPLE"
                or ops[at + 1].argrepr == "INTRINSIC_LIST_TO_TUPLE"):
            return None
        at += 2
    while at < len(ops) and ops[at].opname in _KEYWORDS_PART:
        if kept.intersection(_loaded(ops[at])):
            return None
        at += 1
    if at >= len(ops) or ops[at].opname != "CALL_FUNCTION_EX":
        return None
    return [*indexes, at]
