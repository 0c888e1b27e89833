"""Whether the decorators between ``@cached`` and a function pass a call on unchanged,
read from their bytecode (CPython 3.10 to 3.13).

A call of a decorated function is bound by the signature ``inspect.signature`` gives, the
innermost function's (it follows ``__wrapped__``), but it runs the outermost wrapper, which
may pass an argument on as another parameter: ``fn(SESSION, *args, **kwargs)`` runs ``f(5,
1)`` with 5 as ``x``, not as ``session``. Only where every wrapper passes the call on
unchanged does ``ignore=`` leave a parameter out of the key (``_decorator._warn_unread``).

A wrapper is read as passing the call on unchanged when it is a function (wrapt's
wrapper function too) that has no
keyword-only parameters, whose own positional parameters are named as the signature names
them in their places, or by names it does not take (``_places``), and whose code uses
them, its ``*args`` and its ``**kwargs`` only as ``fn(a, b, *args,
**kwargs)`` (or ``fn(*args, **kwargs)``), in order, with nothing between, where ``fn``
holds the function it wraps (a free variable or global holding it when decorated; wrapt's
``wrapped``); loads ``fn`` only for those calls or for its ``__name__``, ``__qualname__``,
``__module__`` or ``__doc__``; calls it so at least once, with no jump into such a call
(``(partial_ or fn)(*args)``); never assigns those names, never hands them to a nested
function (a cell), and never reaches its frame's variables by name (``eval``,
``locals()``).

Anything else is not read so: ``*args`` or ``**kwargs`` handed to anything else (a partial
of the function, a lambda, a runner such as tenacity's, a logger) or changed
(``kwargs.pop``), a class's ``__call__``, ``singledispatch`` (whose implementations may
put their parameters elsewhere), ``lru_cache`` (whose ``__wrapped__`` a
``functools.wraps`` over it may point elsewhere than the function it calls), a
``functools.partialmethod``, a ``__signature__`` declared anywhere on the chain.
Ignored parameters then count in the key: an extra computation, never another call's
value. Not seen: a name holding the function rebound after decoration by other code (a
sibling closure's ``nonlocal``, a module reassigning the global), as a partial of it; a
function the wrapper calls that reaches the wrapper's frame (``sys._getframe(1)``) and
changes its ``kwargs``.
"""

from __future__ import annotations

import dis
import sys
from types import FunctionType
from typing import Any

__all__ = ["made_by_partialmethod", "passes_on_unchanged"]

# Instructions that move nothing on the stack the reading cares about.
_SKIPPED = frozenset({"CACHE", "PUSH_NULL", "EXTENDED_ARG", "NOP", "RESUME", "COPY_FREE_VARS",
                      "MAKE_CELL"})
# Names by which code reaches its own frame's variables: such a wrapper is not read.
_FRAME_READERS = frozenset({"eval", "exec", "locals", "vars", "globals", "_getframe",
                            "f_locals", "currentframe"})
_DEPTH = 32  # decorators read down a ``__wrapped__`` chain at most


_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08  # inspect's, without importing it


def passes_on_unchanged(target: Any) -> bool:
    """Whether every wrapper from ``target`` down its ``__wrapped__`` chain passes the
    call on unchanged (see the module's docstring), down to a plain function; False for a
    callable that wraps nothing, one whose chain has a ``__signature__`` (even None:
    ``inspect`` stops there and reads that wrapper's own code), or ends in anything but a
    function (a partial, an instance, a class: ``inspect`` goes on into their functions'
    chains, which are not read)."""
    import inspect  # at decoration time only: it costs milliseconds to import

    try:
        params = inspect.signature(target).parameters.values()
    except Exception:  # noqa: BLE001 - none, or what a __getattr__ of the user's raised
        return False
    places = _places(params)
    level = target
    for _ in range(_DEPTH):
        try:
            if hasattr(level, "__signature__") or made_by_partialmethod(level):
                return False  # (the call is bound by that, not by the innermost function's)
            wrapped = getattr(level, "__wrapped__", None)
        except Exception:  # noqa: BLE001 - a property of the user's raising: not read
            return False
        if wrapped is None:
            return level is not target and type(level) is FunctionType
        if not _wrapper_in_place(level, wrapped, places):
            return False
        level = wrapped
    return False


def made_by_partialmethod(func: Any) -> bool:
    """Whether ``func`` is the function a ``functools.partialmethod`` makes, whose
    signature ``inspect`` takes from the partialmethod's ``func`` and its chain."""
    try:
        return any(name in getattr(func, "__dict__", ())
                   for name in ("_partialmethod", "__partialmethod__"))
    except Exception:  # noqa: BLE001 - a __dict__ property of the user's raising
        return False


def _places(params: Any) -> dict[str, tuple[int, bool] | None]:
    """For each name a wrapper's own positional parameter may have, where the innermost
    signature's positional parameter of that name is and whether it is only positional:
    the wrapper's must be the same (``def wrapper(session=None, *args)`` takes a
    ``session=5`` and passes it on first, where ``a`` is; ``def wrapper(a, *args)`` over
    ``f(a=0, /, **kw)`` takes the ``a=`` that ``kw`` would). None for a name it must not
    have: of another parameter (``f(a=0, *, session=None)``), or any name not the
    signature's where a ``**kw`` takes every keyword; a name absent from the mapping,
    otherwise (a keyword of it is refused by the signature: ``def wrapper(obj, *args)``
    over a method's ``self``)."""
    from inspect import Parameter

    kinds = (Parameter.POSITIONAL_ONLY, Parameter.POSITIONAL_OR_KEYWORD)
    places: dict[str, tuple[int, bool] | None] = {}
    for at, p in enumerate(p for p in params if p.kind in kinds):
        places[p.name] = (at, p.kind is Parameter.POSITIONAL_ONLY)
    for p in params:
        places.setdefault(p.name, None)
    if any(p.kind is Parameter.VAR_KEYWORD for p in params):
        places[""] = None  # (no parameter's name: any other name is refused)
    return places


def _wrapper_in_place(wrapper: Any, wrapped: Any,
                      places: dict[str, tuple[int, bool] | None]) -> bool:
    """Whether ``wrapper`` passes the call on to ``wrapped`` unchanged, its own positional
    parameters named as ``places`` allows (``_places``)."""
    if type(wrapper) is FunctionType:
        code = wrapper.__code__
        if not code.co_flags & _CO_VARARGS or code.co_kwonlyargcount:
            return False
        own = code.co_varnames[:code.co_argcount]
        for at, name in enumerate(own):
            mine = (at, at < code.co_posonlyargcount)
            if places.get(name, places.get("", mine)) != mine:
                return False
        star = code.co_varnames[code.co_argcount]
        stars = code.co_varnames[code.co_argcount + 1] \
            if code.co_flags & _CO_VARKEYWORDS else None
        callee = _names_holding(wrapper, wrapped)
        return bool(callee) and _calls_in_place(code, own, star, stars, callee)
    if _is_wrapts(wrapper):
        function = wrapper._self_wrapper
        if type(function) is FunctionType and function.__code__.co_argcount == 4:
            code = function.__code__  # wrapper(wrapped, instance, args, kwargs)
            names = code.co_varnames
            return _calls_in_place(code, (), names[2], names[3], {names[0]})
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


def _calls_in_place(code: Any, own: tuple[str, ...], star: str, stars: str | None,
                    callee: set[str]) -> bool:
    """Whether ``code`` uses ``own``, ``star`` and ``stars`` only in calls of ``callee``
    as ``callee(*own, *star, **stars)``, makes one, loads ``callee`` for nothing else but
    its name, never assigns them nor hands them to a nested function, and never jumps
    into such a call (``(partial_ or fn)(*args)`` calls one or the other)."""
    kept = {*own, star} | ({stars} if stars else set())
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
        call = _passes_in_place(ops, at + 1, own, star, stars)
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


def _passes_in_place(ops: list[Any], at: int, own: tuple[str, ...], star: str,
                     stars: str | None) -> list[int] | None:
    """If ``ops[at:]`` is ``own`` and ``*star`` passed positionally, then ``**stars`` as
    the keywords (``BUILD_MAP 0, LOAD_FAST kwargs, DICT_MERGE``), then the call
    (``LOAD_FAST a, LOAD_FAST b, BUILD_LIST 2, LOAD_FAST args, LIST_EXTEND,
    LIST_TO_TUPLE, BUILD_MAP 0, LOAD_FAST kwargs, DICT_MERGE, CALL_FUNCTION_EX``;
    ``LOAD_FAST args`` alone without ``own``): the indexes of its loads of ``own``,
    ``star`` and ``stars``, and of the call last; else None. No other keyword."""
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
    if stars is not None and at + 2 < len(ops) and ops[at].opname == "BUILD_MAP" \
            and ops[at].arg == 0 and ops[at + 1].opname == "LOAD_FAST" \
            and ops[at + 1].argval == stars and ops[at + 2].opname == "DICT_MERGE":
        indexes.append(at + 1)
        at += 3
    if at >= len(ops) or ops[at].opname != "CALL_FUNCTION_EX":
        return None
    return [*indexes, at]
