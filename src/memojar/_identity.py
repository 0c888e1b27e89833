"""Function identity: a stable name and a fingerprint of the function's code.

The fingerprint changes when the code does (bytecode, constants, names, nested functions,
the exception table, defaults, what a closure captures, the functions a decorator wraps) and
not when the function only moves, or its comments or docstring change: line numbers, the
line table, the file name and the docstring are left out. Frozenset constants (from
``x in {"a", "b"}``) are sorted, since their order depends on ``PYTHONHASHSEED``.

Instructions are fingerprinted with their constants resolved by value, from ``co_consts``
(``dis`` leaves ``KW_NAMES``' operand unresolved on 3.11), not by index: before 3.14 the
docstring (or ``None``) is ``co_consts[0]``, so adding or removing a docstring shifts the
index of every other constant.

Every kind of callable is a plain function plus what is bound to it (``split``): a bound
method is its function and its instance, a ``functools.partial`` its function and bound
arguments, a callable instance its class's ``__call__`` and the instance. Names come from
the function, never from a ``repr`` (which holds a memory address).
"""

from __future__ import annotations

import abc
import collections
import contextlib
import contextvars
import dis
import enum
import functools
import gc
import itertools
import operator
import os
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from types import (
    BuiltinFunctionType,
    ClassMethodDescriptorType,
    CodeType,
    FunctionType,
    GetSetDescriptorType,
    MappingProxyType,
    MemberDescriptorType,
    MethodDescriptorType,
    MethodType,
    MethodWrapperType,
    ModuleType,
    SimpleNamespace,
    WrapperDescriptorType,
)
from typing import Any, NamedTuple, TypeVar

import xxhash

from ._entry import CACHE_WRAPPER
from ._errors import the_callers, warn

_CO_HAS_DOCSTRING = 0x4000000  # 3.14+: set when the function has a docstring
_CO_GENERATOR = 0x20 | 0x200  # inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


# The globals of the module whose code a state being hashed comes from (a function's
# defaults or captures, a module's or a class's value): ``_keys`` names a bare ``object()``
# in it (a sentinel, ``MISSING = object()``) by its first name there, the same in every
# process whatever else it imported. Before, every ``object()`` hashed alike: ``def
# helper(x=MISSING)`` edited to ``x=ALL`` returned the old value.
near_globals: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "memojar_near_globals", default=None)


# The key of a value inside a function's identity (what a closure captures, a default, a
# bound argument, a module constant) is its key as a call argument: ``_keys.make_key``, which
# ``_keys`` sets here when it is imported (``memojar/__init__`` imports it, so before any
# function here runs). A mutual recursion (``make_key`` keys a function passed as an argument
# by ``function_identity`` here) without an import cycle: ``_keys`` imports this module,
# never the other way.
def value_key(values: tuple[Any, ...]) -> str:  # replaced by _keys.make_key
    raise RuntimeError("memojar._identity is used before memojar._keys is imported")


def state_key(value: Any) -> str | None:  # replaced by _keys.state_key
    raise RuntimeError("memojar._identity is used before memojar._keys is imported")


def function_name(func: Callable[..., Any]) -> str:
    """``module.qualname``, the name the cache and the command line know a function by.

    A partial, bound method or callable instance is named by the function that runs; no
    name holds a memory address. ``__mp_main__`` (spawn and forkserver workers) is
    ``__main__``, so a script and its workers share entries.
    """
    target, _, _ = split(func)
    module = attribute(target, "__module__", str)
    qualname = (class_qualname(target) if isinstance(target, type) else None) or attribute(
        target, "__qualname__", str) or attribute(target, "__name__", str)
    if not isinstance(qualname, str):  # an object without a name: its class's name
        module, qualname = type(target).__module__, type(target).__qualname__
    if not isinstance(module, str) or not module:
        module = "__unknown__"
    if module == "__mp_main__":
        module = "__main__"
    return encodable(f"{module}.{qualname}")


def class_qualname(cls: type) -> Any:
    """A class's ``__qualname__``, as where it was defined: a class cloudpickle sent by
    value (a class a function made, ``make.<locals>.Local``; a class nested in a class of
    ``__main__``) is made again in a worker with its bare name as qualname (``Local``),
    while its functions keep theirs (``make.<locals>.Local.m``): a bare qualname is taken
    from the first function defined in its body (a class of none keeps its bare one).
    Before, such a class was ``__main__.Local`` in a loky or dask worker and
    ``__main__.make.<locals>.Local`` in its sender, so an instance of it (``self`` of a
    cached method) keyed differently there and no worker hit the sender's entries; and
    its data attributes, which count in the fingerprint of a class a function makes
    (``class_shape``), did not in the worker."""
    qualname = cls.__qualname__
    if not isinstance(qualname, str) or "." in qualname:
        return qualname
    try:
        members = list(vars(cls).items())
    except Exception as exc:  # noqa: BLE001 - a class whose members cannot be read
        _passed_over(exc)
        return qualname
    tail = f".{cls.__name__}"
    for name, member in members:  # in the order of the class body, which a copy keeps
        inner = getattr(member, "fget", None) if isinstance(member, property) else (
            _unwrapped(member))
        memo = _memo_of(inner)
        inner = inner if memo is None else memo.func
        if type(inner) is not FunctionType or inner.__name__ != name:
            continue
        owner, _, own = inner.__qualname__.rpartition(".")
        if own == name:  # the first function defined in its body says where it was
            return owner if owner.endswith(tail) else qualname
    return qualname


def split(func: Any) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """``func`` as the callable that runs plus the arguments bound in front of the call's.

    ``partial(f, 1, b=2)`` is ``(f, (1,), {"b": 2})``, ``obj.method`` is
    ``(Class.method, (obj,), {})``, a callable instance ``obj`` is
    ``(type(obj).__call__, (obj,), {})``; anything else is itself with nothing bound.
    """
    if isinstance(func, functools.partial):
        target, args, kwargs = split(func.func)
        return target, (*args, *func.args), {**kwargs, **func.keywords}
    if isinstance(func, MethodType):
        target, args, kwargs = split(func.__func__)
        return target, (*args, func.__self__), kwargs
    # type(), not isinstance: a ``Mock(spec=f)`` says its ``__class__`` is a function's,
    # and was taken for one, with what runs it (its ``side_effect``) nowhere in its key.
    if (
        not issubclass(type(func), (FunctionType, BuiltinFunctionType, type))
        and not has_wrapped(func)
    ):
        call = call_of(type(func))
        if isinstance(call, FunctionType):
            return type(func).__call__, (func,), {}
        if isinstance(call, staticmethod):  # runs its function alone, the instance unseen
            return split(call.__func__)
        if isinstance(call, classmethod):  # runs its function with the class
            return split(call.__get__(func, type(func)))
        if isinstance(call, functools.partial) and binds_as_partial(call):
            # ``__call__ = partial(f, 0)``: before 3.14 a partial is no method descriptor
            # (3.13's ``__get__`` returns it as it is, with a FutureWarning), so ``obj(5)``
            # runs ``f(0, 5)``, the instance unseen; from 3.14 it binds as a function does,
            # ``f(0, obj, 5)``. Before, the instance was bound by ``inspect.signature``,
            # which (3.10 to 3.12) drops the partial's first parameter left as if it were
            # ``self``: ``obj(5)`` was refused, "takes 0 positional arguments".
            if sys.version_info < (3, 14):
                return split(call)
            return split(MethodType(call, func))
    return func, (), {}


def binds_as_partial(call: functools.partial[Any]) -> bool:
    """Whether a ``partial`` found as a class's ``__call__`` is bound to an instance as
    ``functools.partial`` itself is (``split``): not a subclass's own ``__get__``."""
    return getattr(type(call), "__get__", None) is getattr(functools.partial, "__get__", None)


def has_wrapped(func: Any) -> bool:
    """``hasattr(func, "__wrapped__")``, False where its ``__getattr__`` raises another
    error (before, it failed the call of a function given such an object in
    ``depends_on=``), and where only its ``__getattr__`` answers it (a proxy answering
    every name, 42; or passing a lookup on to what it holds): it wraps nothing of its own,
    and is a callable instance, its class's ``__call__`` plus the instance, in the key.
    Before, such an object was taken for a wrapper of what it answered (42), whose state
    was read once, at its first call, and nothing it holds was watched: after
    ``inner.__code__ = other.__code__`` it returned the old code's value."""
    try:
        if not hasattr(func, "__wrapped__"):
            return False
        if _proxy(func):  # wrapt's (its pure Python one keeps ``__wrapped__`` in an instance
            return True  # dict its ``__dict__`` property hides: before, taken for none)
        mro = type(func).__mro__
        if not any("__getattr__" in vars(klass) for klass in mro[:-1]):
            return True
        if any("__wrapped__" in vars(klass) for klass in mro):
            return True  # (a descriptor of its class: wrapt's proxies)
        own = object.__getattribute__(func, "__dict__")  # (not through its __getattr__)
    except Exception as exc:  # noqa: BLE001 - whatever its __getattr__ or property raised
        _passed_over(exc)  # (an AttributeError: it has no __dict__ of its own)
        return False
    return isinstance(own, dict) and "__wrapped__" in own


def attribute(obj: Any, name: str, kind: type | tuple[type, ...] = object) -> Any:
    """``getattr(obj, name, None)`` for what identifies a callable (``__code__``,
    ``__wrapped__``, ``__module__``...), read from an object of the user's: None where
    looking it up raises anything (a ``__getattr__`` or property of the user's raising a
    RuntimeError, as werkzeug's ``LocalProxy`` does outside its context), and where what
    it answers is not a ``kind`` (a proxy whose ``__getattr__`` answers every name, as a
    ``Mock(spec=f)`` answers ``__code__``): absent, as for ``has_wrapped``. Before, such
    an object failed its decoration inside memojar (``'int' object has no attribute
    'co_flags'``)."""
    try:
        value = getattr(obj, name, None)
    except Exception as exc:  # noqa: BLE001 - whatever its __getattr__ or property raised
        _passed_over(exc)
        return None
    return value if isinstance(value, kind) else None


def _memo_of(func: Any) -> Any:
    """The memo of ``func`` if it is memojar's own wrapper (``make_wrapper``), or a method
    bound of one; else None. Its ``__memojar__`` alone does not say so: ``functools.wraps``
    copies a function's ``__dict__``, so a user's decorator above ``@cached`` (``@scaled
    @cached def helper``) makes a wrapper carrying the memo too. Memojar's wrapper wraps
    the memo's function (``update_wrapper(wrapper, memo.func)``); the user's wraps
    memojar's. Told by that, not by the memo's ``wrapper`` reference, which a copy
    cloudpickle sent has not (its ``__wrapped__`` and memo arrive together). Before, the
    user's wrapper counted as the function it wraps: an edit of its code, or of a global
    it reads (``return fn(*args) * FACTOR``), left the callers of ``helper`` stale."""
    memo = attribute(func, "__memojar__")
    if memo is None or attribute(func, "__wrapped__") is not getattr(memo, "func", _ABSENT):
        return None
    return memo


def call_of(cls: type) -> Any:
    """The ``__call__`` a class defines or inherits (a plain function for Python classes)."""
    for klass in cls.__mro__:
        if "__call__" in vars(klass):
            return vars(klass)["__call__"]
    return None


def code_fingerprint(func: Callable[..., Any]) -> str:
    """A 16-digit hex digest of ``func``'s code, the same in every process.

    What a closure captures counts as code, recursively: ``make(2)`` and ``make(3)`` of a
    factory share a name and bytecode but must never share results, and neither may
    ``make(adder(2))`` and ``make(adder(3))``. Defaults count, and so do the functions that
    decorators between ``@cached`` and the function wrap (``__wrapped__``). For a partial,
    bound method or callable instance, this is the fingerprint of the function that runs:
    what is bound to it belongs in the key (see ``split``).
    """
    target, _, _ = split(func)
    return xxhash.xxh3_64_hexdigest(repr(_callable_shape(target, set())).encode())


SIBLING = "\x1d"  # in a scope: the place (script, notebook or ""), then the sibling


def ambiguous(name: str) -> bool:
    """Whether a qualname (or ``module.qualname``) may name several functions at once."""
    return "<locals>" in name or "<lambda>" in name


def sibling_of(func: Callable[..., Any]) -> str:
    """What tells ``func`` apart from other functions of its name and scope, or ``""``
    when its name does (a function of a module or a class body: one ``def``, one function).

    A name holding ``<locals>`` or ``<lambda>`` can name several functions at once: the
    closures one factory makes (``make(1)``, ``make(2)``) differ in what they capture and
    in their defaults, the lambdas of one scope in their code too. This is two 16-digit
    digests, of the function's bare code (its code without what it captures or its
    defaults, through the wrappers decorators put around it: ``code_fingerprint(...,
    bare=True)``) and of what it captures and its defaults; it salts the function's keys
    and goes in its entries' scope, so each keeps entries of its own (``family_of`` says
    which supersede which). Taken once, when the function is decorated, or at its first
    call if a cell was empty then (a helper defined after it, the decorated function's
    own name in a recursive closure: ``unfilled``); the identity takes the captures at the
    first call.
    """
    if not ambiguous(function_name(func)):
        return ""
    target = split(func)[0]
    try:
        return _walked(lambda: _sibling_of(target),
                       f"telling {function_name(func)} apart from its siblings")
    except Exception as exc:  # noqa: BLE001 - decorating must not fail for a fingerprint (as
        _passed_over(exc)
        return "0" * 32  # ``ident``): siblings then share keys, as before, never a value


def _sibling_of(target: Any) -> str:
    large: list[bool] = []
    with _noting_too_large(large):
        sibling = _sibling_parts(target)
    if not large[0]:
        return sibling
    # What tells it apart is too large to hash, whole or in part (counted by its type):
    # this closure's part is its own, random. Before, ``make(A)`` and ``make(B)`` over two
    # dicts of 200,000 items had one scope, and ``make(B)(3)`` returned ``make(A)(3)``'s
    # value (a new process too, after the data changed). Its results are this closure's
    # only: no other closure or process shares them (its copies sent to workers do).
    name = function_name(target)
    if name not in _TOO_LARGE_TO_TELL:
        _TOO_LARGE_TO_TELL.add(name)
        warn(f"{name} captures a value too large to tell its closures apart by (over 16 MB "
             "of pickle, 1 GB of arrays or 100,000 items): each closure made keeps results "
             "of its own, shared with no other closure or process; pass that value as an "
             "argument (hashed at each call) to share them")
    return sibling[:16] + os.urandom(8).hex()


_TOO_LARGE_TO_TELL: set[str] = set()  # functions warned of (``_sibling_of``)


def _sibling_parts(target: Any) -> str:
    seen: set[int] = set()
    bare = _callable_shape(target, seen, bare=True)
    owner = _local_class(target)
    if owner is None:
        code = xxhash.xxh3_64_hexdigest(repr(bare).encode())
        return code + captured_digest(target)
    # A method of a class a function defines, its class noted at its first call
    # (``note_owner``): the classes one factory makes (``make(2)``, ``make(5)``) are then
    # siblings as its closures are, the methods' bare code its family's code, and what
    # tells them apart (their data, ``K = k``, what their methods capture) the rest.
    # Before, the class counted in the identity alone: each class's first store swept the
    # other's entries as older code's, and every process computed both again.
    code = xxhash.xxh3_64_hexdigest(repr((bare, class_shape(owner, set(), bare=True))).encode())
    return code + xxhash.xxh3_64_hexdigest(
        repr((captured_digest(target), class_shape(owner, set()))).encode())


def captured_digest(target: Any) -> str:
    """A 16-digit digest of what ``target`` (and the functions it wraps) captures and its
    defaults, by state (``sibling_of``'s second part). Memojar's own wrapper on the way
    (``@scaled @cached def helper``) counts as its memo's function: its cells hold the
    memo, whose counters change with every call. Before, they counted, and a caller of
    ``helper`` missed in the next process whenever ``helper`` had been called first."""
    captured = []
    accumulators: set[int] = set()
    for _ in range(100):  # through the wrappers decorators put around it to the function
        memo = _memo_of(target)
        if memo is not None:
            target = memo.func
        inner = attribute(target, "__wrapped__")
        if _proxy(target):  # a wrapt proxy: what its wrapper captures and is bound to, its
            captured.append(_proxy_shape(  # own state (not its wrapped's, passed through)
                target, _Captured(accumulators), bare=False, inner=False))
        else:
            accumulators.update(_accumulators(target))
        cells = [cell for cell in attribute(target, "__closure__", tuple) or ()
                 if not (_filled(cell) and cell.cell_contents is inner)]
        # a captured sentinel by its name in the function's module (before, as any other:
        # ``f = make(ALL)`` edited to ``make(MISSING)`` returned the old value)
        near = near_globals.set(attribute(target, "__globals__", dict))
        try:
            captured.append((
                tuple(_cell_shape(cell, _Captured(accumulators)) for cell in cells),
                _value_shape(attribute(target, "__defaults__", tuple),
                             _Captured(accumulators), True),
                _value_shape(attribute(target, "__kwdefaults__", dict),
                             _Captured(accumulators), True)))
        finally:
            near_globals.reset(near)
        if inner is None or not callable(inner):
            break
        target = inner
    return xxhash.xxh3_64_hexdigest(repr(captured).encode())


class _Captured(set[int]):
    """The ``seen`` of ``sibling_of``'s walk of what a function captures, which every step
    of the walk hands down (``_shape_of``): what the identity counts by type counts by
    state there, but for the ``accumulators`` (ids). Carried by the walk itself, not by a
    flag of the thread: a signal handler that decorated a closure while its thread walked
    another's captures (pickling one for its state) ended its own walk by clearing the
    thread's flag, and the rest of the interrupted walk counted by type: ``make(["a"])``
    and ``make(["b"])`` got one scope, and the second returned the first's values; and a
    handler's walk of another kind (a function's identity) ran with the flag set."""

    __slots__ = ("accumulators",)

    def __init__(self, accumulators: set[int]) -> None:
        super().__init__()
        self.accumulators = accumulators


# Methods that change a list, dict, set or deque in place: a closure calling one on what it
# captures (``calls.append(x)``) keeps an accumulator, not data it depends on.
_MUTATORS = frozenset({
    "append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem", "remove",
    "discard", "clear", "appendleft", "extendleft", "sort", "reverse", "__setitem__",
    "__delitem__",
})
_MUTABLE = (list, dict, set, bytearray, collections.deque)


def _accumulators(func: Any) -> set[int]:
    """The ids of the lists, dicts, sets and deques ``func`` captures and changes in place
    (``calls.append(x)``, ``count[k] += 1``, also in a function it defines): accumulators,
    counted by type in what tells siblings apart, so that a closure made again after it
    filled one keeps its entries. A container it only reads (``make(["a"])``'s columns)
    counts by its contents."""
    code = attribute(func, "__code__", CodeType)
    closure = attribute(func, "__closure__", tuple)
    if not isinstance(code, CodeType) or not closure:
        return set()
    mutated = _mutated_names(code)
    return {id(cell.cell_contents) for name, cell in zip(code.co_freevars, closure, strict=False)
            if name in mutated and _filled(cell)
            and isinstance(cell.cell_contents, _MUTABLE)}


def _mutated_names(code: CodeType, loads: frozenset[str] = frozenset({"LOAD_DEREF"}),
                   ) -> frozenset[str]:
    """The variables ``code`` (and code it defines) changes in place, of those loaded by
    ``loads`` (free and cell variables; globals): one loaded and then a mutating method
    looked up on it (``calls.append``), or itself (or an item of it) the container of a
    subscript stored, deleted or updated (``count[k] += 1``, ``memo[a, b] = v``,
    ``memo[k].append(v)``). Followed on the stack: before, any subscript store on its line
    counted, so a closure storing what it captures (``out["cols"] = cols``) or an item of
    it (``out[cfg["k"]] = x``) took it for an accumulator, counted it by type, and
    ``make(["b"])`` returned ``make(["a"])``'s value. For globals, an attribute of one
    changed so is named with it (``helpers.LOG.append``: ``helpers.LOG``)."""
    names: set[str] = set()
    instructions = [i for i in dis.get_instructions(code) if i.opname not in _SKIPPED]
    chained = "LOAD_DEREF" not in loads
    for at, instruction in enumerate(instructions):
        if instruction.opname not in loads:
            continue
        pushed, loaded = _pushes(instruction), instruction.argval
        pairs: tuple[tuple[str, int], ...]
        if pushed == 2 and type(loaded) is tuple and len(loaded) == 2:
            # 3.13's LOAD_FAST_LOAD_FAST: the second on top, the first below it
            pairs = ((loaded[1], 0), (loaded[0], 1))
        elif pushed == 1:
            pairs = ((loaded, 0),)
        else:
            continue
        for name, above in pairs:
            attribute = _changes_in_place(instructions, at + 1, chained, above)
            if attribute is not None:
                names.add(name + attribute)
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            names |= _mutated_names(constant, loads)
    return frozenset(names)


def mutated_locals(code: CodeType) -> frozenset[str]:
    """The parameters and local variables ``code`` (and code it defines) changes in place
    (``_cache[key] = value``, ``calls.append(x)``): a decorator's accumulators."""
    return _mutated_names(code, _LOCAL_LOADS)


_LOCAL_LOADS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_LOAD_FAST",
                          "LOAD_FAST_BORROW", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"})


@functools.lru_cache(maxsize=4096)
def _mutated_globals(code: CodeType) -> frozenset[str]:
    """The globals (``LOG``, ``helpers.LOG``) ``code`` changes in place, once per code."""
    return _mutated_names(code, frozenset({"LOAD_GLOBAL", "LOAD_NAME"}))


_SKIPPED = frozenset({"CACHE", "NOP", "EXTENDED_ARG", "PRECALL"})
# Instructions that only push: what a subscript's key is made of.
_LOADS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_LOAD_FAST", "LOAD_CONST",
                    "LOAD_SMALL_INT", "LOAD_DEREF", "LOAD_GLOBAL", "LOAD_NAME",
                    "LOAD_FAST_BORROW", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"})
_BINARY = frozenset({"BINARY_OP", "BINARY_ADD", "BINARY_SUBTRACT", "BINARY_MULTIPLY",
                     "BINARY_TRUE_DIVIDE", "BINARY_FLOOR_DIVIDE", "BINARY_MODULO"})


def _pushes(instruction: dis.Instruction) -> int:
    return dis.stack_effect(instruction.opcode, instruction.arg) if (
        instruction.opcode >= dis.HAVE_ARGUMENT) else dis.stack_effect(instruction.opcode)


def _changes_in_place(instructions: list[dis.Instruction], at: int, chained: bool,
                      above: int = 0) -> str | None:
    """Whether the value just pushed (before ``instructions[at]``) is changed in place by
    what follows: ``""`` if so, ``".name"`` if an attribute of it is (``chained``: looked
    up on it directly, ``helpers.LOG.append``), None if not. ``above`` counts what is on the
    stack above it (or above the item of it that a subscript took, ``memo[k]``): at first,
    what the instruction that pushed it pushed after it."""
    attribute = ""
    subscripted = False
    for instruction in instructions[at:at + 40]:
        name = instruction.opname
        if name in ("LOAD_ATTR", "LOAD_METHOD"):
            if above == 0:  # an attribute of it: a mutating method, or nothing of ours
                if instruction.argval in _MUTATORS:
                    return attribute
                if not (chained and not subscripted and _pushes(instruction) == 0):
                    return None
                attribute += f".{instruction.argval}"  # ``helpers.LOG``: that one's then
                continue
            above += _pushes(instruction)
        elif name in _LOADS:
            above += _pushes(instruction)
        elif name in ("STORE_SUBSCR", "DELETE_SUBSCR", "STORE_SLICE"):
            container = 2 if name == "STORE_SLICE" else 1  # below the key (and end)
            return attribute if above == container else None
        elif name in ("COPY", "DUP_TOP_TWO"):  # ``x[k] += v``: the container and key copied
            copied = above == 1 and (name == "DUP_TOP_TWO" or instruction.arg == 2)
            return attribute if copied else None
        elif name in ("BUILD_TUPLE", "BUILD_SLICE") and (instruction.arg or 0) <= above:
            above -= (instruction.arg or 0) - 1
        elif name == "BINARY_SUBSCR" or (name == "BINARY_OP" and instruction.argrepr == "[]"):
            if above == 1:  # an item of it (``memo[k]``): changing that changes it
                above = 0
                subscripted = True
            elif above >= 2:
                above -= 1
            else:  # it is the key
                return None
        elif name in _BINARY and above >= 2:
            above -= 1
        else:  # anything else (a call, a jump, a store) ends the look: not changed here
            return None
    return None


# While ``sibling_of`` walks what a function captures (its ``seen`` is a ``_Captured``):
# a captured object the identity counts by type (a list, dict or set the function only
# reads, an instance, a Decimal, a date, a numpy array or frame), also inside a captured
# list, dict or closure, counts by its state when the function is decorated, and a
# module by its name: ``make(["a"])`` and
# ``make(["b"])``, ``make(Config(2))`` and ``make(Config(5))``, ``make(math)`` and
# ``make(cmath)`` are different functions. An accumulator it changes in place
# (``_accumulators``), one too large to hash (``state_key``) or that
# cannot be pickled (a lock, a connection) still counts by type.
# ``_walk.met``: the objects a global's digest met (``_walk_object``, ``met``).
# ``_walk.changes``: the tables and sets this thread's walks met changed by another thread
# (``_changed_meanwhile``), and ``_walk.named`` the globals they were in (``_named``).
_walk = threading.local()


def _changed_meanwhile(exc: BaseException) -> None:
    """Note ``exc`` if it is a table's or set's iteration meeting another thread's change of
    it ("dictionary changed size during iteration": the walk runs Python code between its
    items, where another thread may run), so that the walk is made again (``_walked``) and
    nothing made of it is kept (``function_identity``, ``class_identity``). Before, the
    object counted by its type, silently: its state was missing from the identity (a later
    change of it returned the old value), and from what tells closures apart."""
    if changed_during_iteration(exc):
        _walk.changes = _changes() + 1
        _walk.change = f"{type(exc).__name__}: {exc}"


def _passed_over(exc: BaseException) -> None:
    """An exception the walk goes on past (counting an object by its type, or skipping
    it): raised again if it is the caller's (``the_callers``: a signal handler's deadline),
    noted if it is another thread's change (``_changed_meanwhile``). Before, a deadline
    landing in the walk of the first call (a global slow to pickle) was passed over: the
    call ran past it, and the identity counted that global by its type, one later calls of
    other values of it hit (a wrong value) and whose entries swept the others'."""
    if the_callers(exc):
        raise exc
    _changed_meanwhile(exc)


def changed_during_iteration(exc: BaseException) -> bool:
    """Whether ``exc`` is a table's, set's or deque's iteration meeting a change of it
    ("dictionary changed size during iteration", "deque mutated during iteration"): by
    another thread, while Python code ran between its items (pickling it, normalising it)."""
    return isinstance(exc, RuntimeError) and str(exc).endswith("during iteration")


def _changes() -> int:
    """How many changes by another thread this thread's walks met (``_changed_meanwhile``)."""
    return getattr(_walk, "changes", 0)


def _named() -> list[str]:
    """The globals of those changes, innermost first (``_walk_value``; ``_walk.named_at``:
    the count of changes when the last was named)."""
    try:
        found: list[str] = _walk.named
    except AttributeError:
        found = _walk.named = []
    return found


def unfilled(func: Callable[..., Any]) -> bool:
    """Whether a cell of ``func`` (or of a function it wraps) is empty: a name the enclosing
    function assigns later (a helper defined after it, the decorated function's own name in
    a recursive closure). What tells it apart (``sibling_of``) is then taken again at its
    first call, when they are filled."""
    target = split(func)[0]
    for _ in range(100):
        if not all(_filled(cell) for cell in attribute(target, "__closure__", tuple) or ()):
            return True
        target = attribute(target, "__wrapped__")
        if target is None or not callable(target):
            return False
    return False


def place_of(scope: str) -> str:
    """The script or notebook of an entry's scope (``""`` for a module's function)."""
    return scope.partition(SIBLING)[0]


def family_of(function: str, scope: str) -> tuple[str, str]:
    """The entries of ``function`` whose code supersedes each other's, for an entry's
    scope: ``(family, code)``. A function its name tells apart is one family per scope (and
    Python); its code is the identity's business. The closures of one name in one place
    are one family, whatever they capture: one ``def`` is one code, and entries of another
    code than the newest are of an edited function. Each lambda's code is a family of its
    own: an edited lambda cannot be told from another lambda of the same name."""
    place, separator, sibling = scope.partition(SIBLING)
    if not separator:
        return scope, ""
    code = sibling[:16]
    return (f"{place}{SIBLING}{code}" if function.endswith("<lambda>") else place), code


def _callable_shape(func: Any, seen: set[int], bare: bool = False) -> Any:
    """A callable as the fingerprint sees it; ``seen`` stops cycles (a recursive closure).
    ``bare``: without what the function (and the functions it wraps) capture and their
    defaults (``sibling_of``)."""
    if id(func) in seen:
        return ("seen", function_name(func))
    seen.add(id(func))
    met(func)
    memo = _memo_of(func)
    if memo is not None:
        # A function memojar decorated counts as the function it wraps: its wrapper's
        # closure holds the memo, whose state (counters, the sweep flag) changes with calls.
        # And as what it was decorated with (``_cached_options``).
        rows, callables = _cached_options(func)
        inner = ("cached", _callable_shape(memo.func, seen, bare))
        if rows or callables:
            return (*inner, tuple(rows), tuple(_callable_shape(c, seen) for c in callables))
        return inner
    if _proxy(func):  # (before the others: its ``__class__`` says function, or method)
        return _proxy_shape(func, seen, bare)
    if isinstance(func, functools.partial):
        return ("partial", _callable_shape(func.func, seen),
                _by_state(func.args, seen), _by_state(func.keywords, seen))
    if isinstance(func, MethodType):
        if _exported(func):  # ``random.choice``: by its name, as a global bound to it (its
            return ("named", function_name(func))  # instance is seeded anew in each process:
            # before, in a table or a closure, every process missed)
        return ("method", _callable_shape(func.__func__, seen), _by_state(func.__self__, seen))
    if isinstance(func, type):
        return class_shape(func, seen)
    code = attribute(func, "__code__", CodeType)
    shape: list[Any] = [function_name(func)]
    if isinstance(code, CodeType):
        shape.append(_code_shape(code, func))
        closure = attribute(func, "__closure__", tuple)
        defaults = attribute(func, "__defaults__", tuple)
        kwdefaults = attribute(func, "__kwdefaults__", dict)
        # a sentinel it captures or defaults to, by its name in its module (before, one it
        # captured hashed as any other: ``make(ALL)`` edited to ``make(MISSING)``)
        near = near_globals.set(attribute(func, "__globals__", dict))
        try:
            if closure and not bare:
                shape.append(tuple(_cell_shape(cell, seen) for cell in closure))
            if (defaults or kwdefaults) and not bare:
                shape.append(("defaults", _value_shape(defaults, seen, by_state=True),
                              _value_shape(kwdefaults, seen, by_state=True)))
        finally:
            near_globals.reset(near)
    elif not isinstance(func, BuiltinFunctionType):
        # A callable object (a decorator's wrapper class, a captured instance, a library's
        # callable such as operator.itemgetter(1)): its class's code and its state, as
        # what is bound to a callable counts (``bound_shape``: by its parts if it cannot
        # be pickled whole, a lock among them by its type). Before, such an object holding
        # a lock counted by its type alone: ``Scaled(f, k=2)`` and ``Scaled(f, k=3)`` of
        # ``functools.update_wrapper`` returned each other's values, in one process or two.
        shape.append(("object", class_shape(type(func), seen), bound_shape(func)))
    wrapped = attribute(func, "__wrapped__")
    if wrapped is not None and callable(wrapped):
        shape.append(("wraps", _callable_shape(wrapped, seen, bare)))
    return tuple(shape)


def _proxy(func: Any) -> bool:
    """Whether ``func`` is a wrapt proxy (``FunctionWrapper``, ``@wrapt.decorator``'s, the
    one bound to an instance, a subclass of the user's, an ``ObjectProxy``): its real type
    says so, not its ``__class__``, which is what it wraps'."""
    wrapt = sys.modules.get("wrapt")
    if wrapt is None:
        return False
    bases = tuple(base for base in (
        getattr(wrapt, "BaseObjectProxy", None), getattr(wrapt, "ObjectProxy", None),
        getattr(sys.modules.get("wrapt.wrappers"), "ObjectProxy", None),  # (pure Python)
    ) if isinstance(base, type))
    return issubclass(type(func), bases)


def _proxy_state(proxy: Any) -> list[tuple[str, Any]]:
    """A wrapt proxy's own attributes, by name: its ``_self_*`` slots (the wrapper, the
    instance and class it is bound to, its parent) and those a subclass set (``_self_k``,
    in its instance dict, which its ``__dict__`` hides: it answers the wrapped's)."""
    names = {name for klass in type(proxy).__mro__ for name, member in vars(klass).items()
             if name.startswith("_self_")
             and isinstance(member, (GetSetDescriptorType, MemberDescriptorType))}
    for held in [*gc.get_referents(proxy), _own_dict(proxy)]:
        if type(held) is dict:
            names.update(name for name in held
                         if type(name) is str and name.startswith("_self_"))
    found = []
    for name in sorted(names):
        try:
            found.append((name, getattr(proxy, name)))
        except AttributeError:  # a slot not set
            continue
    return found


def _own_dict(proxy: Any) -> Any:
    """The instance dict of a wrapt proxy of pure Python (``WRAPT_DISABLE_EXTENSIONS``, or
    no compiled wrapt), where it keeps its ``_self_*`` attributes, through the first
    ``__dict__`` descriptor of its classes that is not a property (``gc.get_referents``
    gives no dict of an object whose attributes live inline, 3.11 and later). Before, none
    were found, and proxies of two wrappers returned each other's values. (The compiled
    proxy's descriptor gives the wrapped's dict; its own are found by ``get_referents``.)"""
    for klass in type(proxy).__mro__:
        member = vars(klass).get("__dict__")
        if type(member) is GetSetDescriptorType:
            return member.__get__(proxy, klass)
    return None


def _proxy_shape(proxy: Any, seen: set[int], bare: bool, inner: bool = True) -> Any:
    """A wrapt proxy as the fingerprint sees it: its class, its own attributes (the wrapper
    function by its code and what it captures, what is bound to it, a method's instance,
    by ``bound_shape``; a subclass's ``_self_k``), and (``inner``) the function it wraps.
    ``bare``: the code of the callables among them alone (``sibling_of``).

    Before, the proxy passed ``__code__``, ``__closure__`` and ``__defaults__`` on to the
    function it wraps, and counted as that function: ``FunctionWrapper(base, double)`` and
    ``FunctionWrapper(base, triple)`` returned each other's values."""
    state = []
    for name, value in _proxy_state(proxy):
        if callable(value):
            target, args, kwargs = split(value)
            shape = _callable_shape(target, seen, bare)
            if (args or kwargs) and not bare:
                shape = (shape, bound_shape((args, kwargs)))
        elif bare:
            continue
        else:
            shape = bound_shape(value)
        state.append((name, shape))
    found: tuple[Any, ...] = ("proxy", class_shape(type(proxy), seen), tuple(state))
    wrapped = attribute(proxy, "__wrapped__")
    if inner and wrapped is not None and callable(wrapped):
        found += (("wraps", _callable_shape(wrapped, seen, bare)),)
    return found


def _cell_shape(cell: Any, seen: set[int]) -> Any:
    try:
        value = cell.cell_contents
    except ValueError:  # an empty cell: a name assigned later in the enclosing function
        return ("empty",)
    return _value_shape(value, seen)


def _value_shape(value: Any, seen: set[int], by_state: bool = False) -> Any:
    """``_shape_of`` a value; its type if looking at it raises (a context proxy captured
    by a closure raises at ``__class__``, which ``isinstance`` asks for): the call went on to
    raise it."""
    try:
        return _shape_of(value, seen, by_state)
    except Exception as exc:  # noqa: BLE001 - whatever the object raised
        _passed_over(exc)
        return _type_shape(value)


def _shape_of(value: Any, seen: set[int], by_state: bool = False) -> Any:
    """A captured value, default or bound argument as the fingerprint sees it.

    Callables count by their identity (recursively): a bound method with its instance, a
    partial with its arguments, a callable instance with its class's code and its state.
    Plain data (numbers, strings, tuples of them) counts by value. Any other object counts
    ``by_state`` (a default, an instance or a partial's argument: its pickled state when the
    function is decorated; a later mutation is not seen) or else by its type, like a global
    (a captured list or dict: hashing it would change with every mutation of a captured
    accumulator). An object that cannot be pickled (a lock, a connection) counts by type.
    """
    if isinstance(value, (FunctionType, MethodType, functools.partial, type)):
        return _callable_shape(value, seen)
    text = typing_text(value)
    if text is not None:  # ``type Conv = int``, a ``TypeVar``: what it stands for
        return ("typing", text)
    if isinstance(value, BuiltinFunctionType):
        owner = attribute(value, "__self__")  # "x".join: "x"; a module's function: it
        if (type(seen) is _Captured and owner is not None
                and not isinstance(owner, ModuleType)):  # sibling_of's walk
            return ("named", function_name(value), _state_shape(owner))
        return ("named", function_name(value))
    if _plain(value):
        return ("value", _plain_key(value))
    if by_state:
        return _state_shape(value)
    if type(value) in (tuple, list) and any(map(callable, value)):
        return (type(value).__name__, tuple(_item_shape(v, seen) for v in value))
    if type(value) is dict and any(map(callable, value.values())):
        shape = tuple(sorted((_key_text(k), repr(_item_shape(v, seen)))
                             for k, v in value.items()))
        orders = _dict_orders(value)  # a pipeline of steps run in its order
        return ("dict", shape, orders) if orders else ("dict", shape)
    # A callable instance, and what a closure captures in ``sibling_of``'s walk: by its
    # state, or by its parts if it cannot be pickled whole (``bound_shape``, a lock among
    # them by its type). Before, such an object holding a lock counted by its type alone:
    # closures capturing ``Scaled(f, k=2)`` and ``Scaled(f, k=3)`` returned each other's
    # values, in one process or two.
    if callable(value) and isinstance(call_of(type(value)), FunctionType):
        return ("object", class_shape(type(value), seen), _whole_or_parts(value))
    if type(seen) is _Captured and id(value) not in seen.accumulators:
        return ("module", value.__name__) if isinstance(value, ModuleType) else (
            _whole_or_parts(value))  # sibling_of's walk
    return _type_shape(value)


def _item_shape(value: Any, seen: set[int]) -> Any:
    """An item of a table of callables (``_shape_of``): a library's callable by what it is
    and holds, as a global bound to one counts (``_library_row``): a built-in's bound
    method with its object (``"-".join``), a method descriptor or slot wrapper by its name
    (``int.__mul__``), a callable object of a library's C type by its state
    (``operator.itemgetter(0)``). Before, those counted by their type, and an edit of one
    (``int.__mul__`` to ``int.__add__``, ``itemgetter(0)`` to ``itemgetter(1)``, ``"6".join``
    to ``"9".join``) returned the old value. Any other item as ``_value_shape``."""
    kind = type(value)
    if kind in _ROUTINES and kind is not BuiltinFunctionType:
        return ("named", function_name(value), *_owner_shape(value))
    if kind is BuiltinFunctionType:  # a module's function (``max``) by name, as before
        return (*_value_shape(value, seen), *_owner_shape(value))
    if (callable(value) and not isinstance(value, (FunctionType, MethodType,
                                                   functools.partial, type))
            and not is_user_module(kind.__module__)
            and not isinstance(call_of(kind), FunctionType)):
        return ("object", function_name(kind), _state_shape(value))
    return _value_shape(value, seen)


def _owner_shape(routine: Any) -> tuple[Any, ...]:
    """The object a built-in's bound method belongs to (``"-".join``: ``"-"``), by state,
    as ``_library_row`` counts it; nothing for a module's function, a class's or a library
    module's own (``max``, ``dict.fromkeys``, ``random.random``: its name says it)."""
    owner = attribute(routine, "__self__")
    if owner is None or isinstance(owner, (ModuleType, type)) or _exported(routine):
        return ()
    return (_state_shape(owner),)


def _key_text(key: Any) -> str:
    """A table's key as the fingerprint names it, the same in every process: its repr
    without addresses (an object's or a function's ``at 0x7f...``), plain data by value
    (a frozenset's repr follows the hash seed)."""
    if type(key) in _PLAIN:
        return repr(key)
    if _plain(key):
        return _plain_key(key)
    try:
        text = repr(key)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__: its type names it
        _passed_over(exc)
        text = ""
    return f"{type(key).__module__}.{type(key).__qualname__} {re.sub(_ADDRESS, '', text)}"


_ADDRESS = r" at 0x[0-9a-fA-F]+"  # compiled at its first use (re's cache), not at import


def _plain_key(value: Any) -> str:
    return value_key((value,))


def _dict_orders(value: Any) -> str:
    """The order of the keys of each dict of two or more items in ``value`` (a dict, or a
    subclass's, list or tuple, and those in them or in the attributes of an instance of the
    user's class there, up to ``_HELD_LIMIT`` items in all), or ``""`` where there is none.
    Keys hash a dict whatever its order (equal arguments key alike), but the code reading a
    global, a default or a captured table may follow its order: a pipeline ``STEPS =
    {"clean": clean, "scale": scale}`` run in turn, the columns of a frame built from
    ``COLUMNS = {"a": int, "b": float}``. Before, reordering one in the source returned the
    old order's value. Sets keep no order of the source's (a set of strings iterates in the
    hash seed's), so they add none."""
    if type(value) in _PLAIN_TYPES:
        return ""  # the common case (a number, a string): no walk
    orders: list[str] = []
    stack = [value]
    left = _HELD_LIMIT
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is MappingProxyType:  # a class's namespace, a read-only table: its dict
            item, kind = dict(item), dict
        if issubclass(kind, dict):  # a Counter's ties and a defaultdict iterate so too
            left -= dict.__len__(item)
            if left < 0:  # past the budget: nothing of it read (a table of millions)
                break
            if dict.__len__(item) > 1:
                orders.append(repr([_key_text(k) for k in dict.keys(item)]))
            children: Iterable[Any] = dict.values(item)
        elif kind is list or kind is tuple:
            left -= len(item)
            if left < 0:
                break
            children = item
        elif is_user_module(kind.__module__):
            try:
                attributes = object.__getattribute__(item, "__dict__")  # Config(cols={})
            except Exception as exc:  # noqa: BLE001 - none (``__slots__``), or a broken class's
                _passed_over(exc)
                continue
            if type(attributes) is not dict:
                continue
            left -= len(attributes)
            if left < 0:
                break
            names = [name for name, child in attributes.items()
                     if type(child) not in _PLAIN_TYPES and type(name) is str]
            if len(names) > 1:
                names.sort()  # the attributes' order is their assignments': not counted
            children = [attributes[name] for name in names]
        else:
            continue
        stack.extend(reversed([child for child in children  # numbers and strings hold none
                               if type(child) not in _PLAIN_TYPES]))
    return "\n".join(orders)


def _state_shape(value: Any) -> Any:
    """An object's state (``state_key``); its type if it cannot be pickled (a lock, a
    connection) or is too large to hash at every process's first call (a model of
    gigabytes: see ``_keys.STATE_LIMIT``). A table's order counts too (``_dict_orders``)."""
    try:
        key = state_key(value)
    except (KeyboardInterrupt, SystemExit):  # the user's, not the value's
        raise
    except BaseException as exc:  # noqa: BLE001 - whatever the value's pickling raised (a
        _passed_over(exc)  # library's own BaseException too: gevent, pytest): count it
        key = None  # by its type (changed by another thread meanwhile: walked again)
    if key is None:
        return _type_shape(value)
    orders = _dict_orders(value)
    return ("state", key, orders) if orders else ("state", key)


_PARTS = 256  # parts of one container or object looked at one by one (``bound_shape``)


class _Budget(threading.local):
    """``left``: what the ``bound_shape`` this thread is in may still hash, as ``[items,
    bytes of pickle, bytes of arrays]`` for the states it keys, then the same for its
    attempts that gave no key (``_keys.state_key`` takes from them); None outside one.
    ``shapes``: the shapes it gave, by the object's id and the depth (the object kept
    beside: its id stays its own). ``digests``: the states hashed with their own limits
    while it runs (``_own_budget``: in the identity of a function met there), by the
    object's id: one array captured by a thousand closures is hashed once. ``active``:
    the ids of the objects whose shapes it is making (one met again inside its own, held
    by a closure it holds, counts by its type there)."""

    left: list[int] | None = None
    too_large = False  # a state found too large to hash (``_keys.state_key``), since reset
    shapes: dict[tuple[int, int], tuple[Any, Any]] | None = None
    active: set[int] | None = None
    digests: dict[int, tuple[Any, str | None]] | None = None


budget = _Budget()

@contextlib.contextmanager
def _noting_too_large(large: list[bool]) -> Iterator[None]:
    """Appends to ``large`` whether a state met inside was too large to hash (counted by
    its type: ``_keys.state_key`` sets ``budget.too_large``); an outer noting still sees
    it (a walk inside a walk)."""
    outer, budget.too_large = budget.too_large, False
    try:
        yield
    finally:
        large.append(budget.too_large)
        budget.too_large = outer or budget.too_large


# The globals of the user's code counted by their type, whole or in part, for they are too
# large to hash at every process's first call (``_walk_object``): their name -> the
# type's. ``_Memo.ident`` warns of those its identity holds, once a function.
too_large: dict[str, str] = {}


@contextlib.contextmanager
def _own_budget() -> Iterator[None]:
    """Outside the ``bound_shape`` this thread may be in: the identity of a function or
    class met there (a function bound to a key object) is made with its own limits, the
    same wherever it is made first, and kept (``_function_ids``): made with what was left
    of the walk's, it could count a large default by its type for the life of the process."""
    saved = budget.left, budget.shapes, budget.active
    budget.left = budget.shapes = budget.active = None
    try:
        yield
    finally:
        budget.left, budget.shapes, budget.active = saved
# What one ``bound_shape`` may hash in all, in every process alike (by what it hashed, never
# by time): 100 times the items one state may hold, 16 times its bytes (``_keys``: 100,000
# items, 16 MB of pickle, 1 GB of arrays), about a second each; as much again for attempts
# to hash an object whole that gave no key (a lock in it), after which an object that has
# parts counts by them at once. Before, each part had its own limits and nothing bounded
# their sum: 64 attributes of 64 lists of 100,000 numbers beside a lock took 45 s at the
# first call. Parts met once the states' budget is spent count by their type.
WALK_ITEMS, WALK_BYTES, WALK_BUFFERS = 10_000_000, 256 << 20, 16 << 30


def bound_shape(value: Any, depth: int = 6) -> Any:
    """What is bound to a callable (a partial's arguments, a callable instance, a bound
    method's object, a library callable's own state: ``operator.itemgetter("id")``), and
    the state of a callable object taken whole (a decorator class's instance:
    ``_callable_shape``), as the identity counts it: by its state (``_value_shape``); if
    that cannot be pickled as a whole, by each of its parts (``_parts_of``: a container's
    items, the attributes of an object of the user's code; ``depth`` levels down), a part
    that cannot be pickled, a library's object among them, by its type. Before, the whole
    counted by its type: under ``partial(key, lock=Lock(), mod=10)`` and ``mod=100``
    alike, ``f(1)`` returned what ``f(11)`` had stored. A part made anew in each process (a
    time, a random seed) keys each process apart, as it does where nothing beside it stops
    the pickling.

    What it hashes in all is bounded (``WALK_ITEMS``...), parts are looked at in the order
    of their names, and an object met again (a list held by each of many parts) is shaped
    once."""
    if budget.left is not None:  # inside another's walk (a callable bound to a callable)
        return _bound_shape(value, depth)
    digests = budget.digests  # (a walk inside a function's identity inside a walk: its)
    try:  # (set inside: an interrupt right after leaves nothing set for later walks)
        budget.left, budget.shapes = [WALK_ITEMS, WALK_BYTES, WALK_BUFFERS] * 2, {}
        budget.active = set()
        budget.digests = {} if digests is None else digests
        return _bound_shape(value, depth)
    finally:
        budget.left = budget.shapes = budget.active = None
        budget.digests = digests


def _by_state(value: Any, seen: set[int]) -> Any:
    """What is bound to a callable met in an identity (a bound method's instance, a
    partial's arguments) by its state, ``_value_shape(..., by_state=True)``, but an object
    that cannot be pickled whole by its parts (``_whole_or_parts``). Before, by its type:
    ``make(S(2).run)`` and ``make(S(3).run)``, ``S`` holding a lock beside ``k``, returned
    each other's values.

    Only what is bound goes by its parts, on purpose: a global, a default or a class's data
    that cannot be pickled whole counts by its type (``_shape_of``). Tried on 2026-12-06
    and taken back: by its parts, a global holding a lock beside a counter its methods bump
    made each process's identity follow what had run before the first call (a miss in
    every process), and one holding much data beside a lock took seconds at the first call
    (200 lists of 50,000 items: 3 s, against 0.07 s by its type)."""
    try:
        if isinstance(value, (FunctionType, MethodType, functools.partial, type,
                              BuiltinFunctionType)) or _plain(value):
            return _value_shape(value, seen, by_state=True)
    except Exception as exc:  # noqa: BLE001 - whatever looking at it raised
        _passed_over(exc)
        return _type_shape(value)
    return _whole_or_parts(value)


def _whole_or_parts(value: Any) -> Any:
    """``bound_shape`` of an object that is neither plain data nor a function, the same
    shape, its state taken first as ``_state_shape`` takes it outside a walk: hashed once
    for all the identities made inside one walk (``_Budget.digests``: a large value
    captured by a thousand closures bound to a key object). An object whose state cannot
    be read and that has no parts counts by its type at once (``bound_shape`` would too)."""
    if budget.left is not None:  # inside a walk: as the other parts
        return bound_shape(value)
    shape = _state_shape(value)
    if shape[0] != "type" or _looked_at(value) is None:
        return shape
    return bound_shape(value)


def _bound_shape(value: Any, depth: int) -> Any:
    shapes = budget.shapes
    known = shapes.get((id(value), depth)) if shapes is not None else None
    if known is not None:
        return known[1]
    active = budget.active
    if active is not None and id(value) in active:  # met again inside its own shape (an
        return ("again", *_type_shape(value))  # object holding a closure that captures it)
    if active is not None:
        active.add(id(value))
    try:
        return _shaped(value, depth, shapes)
    finally:
        if active is not None:
            active.discard(id(value))


def _shaped(value: Any, depth: int, shapes: dict[tuple[int, int], tuple[Any, Any]] | None,
            ) -> Any:
    left = budget.left
    parts = None
    if left is not None and min(left[3:]) <= 0 and depth > 0:  # no more attempts at a
        parts = _looked_at(value)  # whole: an object that has parts counts by them at once
    shape = _type_shape(value) if parts is not None else _value_shape(value, set(),
                                                                       by_state=True)
    if depth > 0 and type(shape) is tuple and shape and shape[0] == "type":
        if parts is None:
            parts = _looked_at(value)
        if parts is not None:
            parts.sort(key=operator.itemgetter(0))  # walked in order: the same budget
            shape = ("parts", shape, xxhash.xxh3_128_hexdigest(repr(tuple(sorted(
                (name, repr(_bound_shape(part, depth - 1))) for name, part in parts))).encode()))
    if shapes is not None:
        shapes[(id(value), depth)] = (value, shape)
    return shape


def _looked_at(value: Any) -> list[tuple[str, Any]] | None:
    """``_parts_of``, or None where looking raises (a proxy's getattr, a key's broken
    ``__repr__``): by its type then."""
    try:
        return _parts_of(value)
    except Exception as exc:  # noqa: BLE001 - whatever looking at it raised
        _passed_over(exc)
        return None


def _holds_settings(value: Any) -> bool:
    """A library's object made to hold settings as its attributes (``types.SimpleNamespace``,
    ``argparse.Namespace``): looked at as an object of the user's code."""
    argparse = sys.modules.get("argparse")
    return isinstance(value, SimpleNamespace) or (
        argparse is not None and isinstance(value, argparse.Namespace))


def _parts_of(value: Any) -> list[tuple[str, Any]] | None:
    """The parts of ``value`` that ``bound_shape`` looks at one by one, each named: a
    tuple's or list's items (a namedtuple's too), a dict's values (an OrderedDict's too),
    the attributes of an object of the user's code (its ``__dict__`` and ``__slots__``).
    None: none (a library's object, a thread or a process holding this process's ids,
    counts by its type; but a namespace of settings: ``_holds_settings``), or more than
    ``_PARTS``."""
    parts: list[tuple[str, Any]]
    user = is_user_module(type(value).__module__)
    if isinstance(value, (tuple, list)):
        parts = [(str(at), part) for at, part in enumerate(value[:_PARTS + 1])]
    elif isinstance(value, dict):
        parts = [(_key_text(k), part) for k, part in list(value.items())[:_PARTS + 1]]
    elif not user and not _holds_settings(value):
        return None
    else:
        parts = []
    if user or _holds_settings(value):  # a user's subclass of list or dict: its attributes
        # named apart from a container's items (an empty dict's too: its attributes are not
        # the items of another of the same names)
        mark = "@" if isinstance(value, (tuple, list, dict)) else ""
        try:
            parts += _parts_named(value, mark)
        except Exception as exc:  # a __dict__ or slot that raises: the items
            _passed_over(exc)
            if not mark:  # counted still, with a part saying so; an object: by its type
                raise
            parts.append(("@?", class_qualname(type(value))))
    return None if len(parts) > _PARTS else parts


def _parts_named(value: Any, mark: str) -> list[tuple[str, Any]]:
    """The attributes of an object of the user's code (its ``__dict__`` and ``__slots__``,
    private ones by their mangled names), each named, after ``mark``."""
    parts: list[tuple[str, Any]] = []
    state = getattr(value, "__dict__", None)
    if type(state) is dict:
        parts += [(f"{mark}{_key_text(k)}", part) for k, part in state.items()]
    for klass in type(value).__mro__:
        slots = vars(klass).get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name.startswith("__") and not name.endswith("__"):  # private: mangled
                name = f"_{klass.__name__.lstrip('_')}{name}"
            if name not in ("__dict__", "__weakref__") and hasattr(value, name):
                parts.append((f".{name}", getattr(value, name)))
    return parts


def _type_shape(value: Any) -> tuple[str, str, str]:
    """A value counted by its type: its class's module and name (``__mp_main__``, a spawn
    or forkserver worker's script, is ``__main__``: an instance of the script's class
    captured there is the script's)."""
    module = type(value).__module__
    return ("type", "__main__" if module == "__mp_main__" else module,
            class_qualname(type(value)))


_PLAIN = (int, float, complex, str, bytes, bool, type(None), range)


# Levels of nesting of plain data keyed by value: deeper (a linked list of tuples), keying
# it would recurse past the interpreter's limit, so it counts by state or type instead.
_DEPTH = 100


def _plain(value: Any) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (tuple, frozenset)):
            if depth >= _DEPTH:
                return False
            stack.extend((v, depth + 1) for v in item)
        elif type(item) not in _PLAIN:
            return False
    return True


# --- identity of functions and classes passed as arguments ------------------------------

# A function's identity, with the code, defaults and keyword defaults it was made for.
_function_ids: weakref.WeakKeyDictionary[
    Any, tuple[Any, Any, Any, tuple[str, str], tuple[Any, ...]]] = (
    weakref.WeakKeyDictionary()
)
# Classes (weakly), and their members in order (``_members_of_classes``)
_Members = tuple[tuple[weakref.ref[type], ...], tuple[int, ...], tuple[int, ...],
                 tuple[tuple[int, int, str, tuple[Any, ...]], ...], tuple[Any, ...], list[bool]]
# A class's identity, with its members as they were if cloudpickle may set them again
# (``_resent_members``).
_class_ids: weakref.WeakKeyDictionary[
    type, tuple[tuple[str, str] | None, _Members | None]] = (
    weakref.WeakKeyDictionary()
)
_user_modules: dict[str, bool] = {}


def function_identity(func: FunctionType) -> tuple[str, str] | None:
    """``(name, fingerprint)`` of a function of the user's own code, None for library code.

    Computed once per function object (a re-run notebook cell makes a new one), and again
    when its ``__code__``, ``__defaults__`` or ``__kwdefaults__`` was reassigned since
    (three comparisons by identity): an argument that runs other code is another key.
    """
    code, defaults, kwdefaults = func.__code__, func.__defaults__, func.__kwdefaults__
    found = _function_ids.get(func)
    if (found is not None and found[0] is code and found[1] is defaults
            and found[2] is kwdefaults and _same(found[4], wrapped_made(func))):
        return found[3]
    if not is_user_module(attribute(func, "__module__", str)):
        return None
    with _own_budget():
        return _function_identity(func, code, defaults, kwdefaults)


def _function_identity(func: FunctionType, code: Any, defaults: Any, kwdefaults: Any
                       ) -> tuple[str, str] | None:
    """``function_identity`` made (and kept)."""
    changes = _changes()
    wrapped = wrapped_made(func)  # read before: a reassignment meanwhile is seen next time
    ident = (function_name(func), code_fingerprint(func))
    if func.__closure__:
        # What a closure captures, by state (the fingerprint counts a captured list, dict or
        # instance by its type, as ``sibling_of`` tells a decorated closure apart): before,
        # ``PICK = make(["a"])`` edited to ``make(["b"])``, or ``apply(make(["a"]), d)``
        # then ``apply(make(["b"]), d)``, kept one identity and returned the old value.
        capturing = _capturing()
        if id(func) in capturing:  # met again inside its own captured state (or by a
            return ident  # signal handler's call meanwhile): that once, not remembered
        capturing.add(id(func))
        try:
            ident = (ident[0], ident[1] + captured_digest(func))
        finally:
            capturing.discard(id(func))
    if _changes() == changes:  # else made of what another thread changed: not kept
        _function_ids[func] = (code, defaults, kwdefaults, ident, wrapped)
    return ident


def wrapped_made(func: Any) -> tuple[Any, ...]:
    """The code, defaults and keyword defaults of each function ``func`` wraps
    (``functools.wraps``: ``__wrapped__``, followed through the decorators between), in
    turn: ``()`` for a function that wraps none. Its identity covers them (the fingerprint
    follows ``__wrapped__``): made for others, it is made again. Before, only the
    wrapper's own were compared, and ``apply(wrapped, 2)`` kept the key of the wrapped
    function's old code after ``inner.__code__ = other.__code__``."""
    wrapped = attribute(func, "__wrapped__")
    if wrapped is None:
        return ()
    made: list[Any] = []
    for _ in range(_DEPTH):  # a __wrapped__ loop ends here
        if type(wrapped) is FunctionType:
            made.extend((wrapped.__code__, wrapped.__defaults__, wrapped.__kwdefaults__))
        else:
            made.append(wrapped)  # a callable object: its state counts, not watched here
        wrapped = attribute(wrapped, "__wrapped__")  # (what a __getattr__ raised: the end)
        if wrapped is None:
            break
    return tuple(made)


def _capturing() -> set[int]:
    """The closures whose captured state this thread is digesting (``function_identity``)."""
    try:
        found: set[int] = _walk.capturing
    except AttributeError:
        found = _walk.capturing = set()
    return found


# A function's or class's identity as a call argument, with what it depends on: the code
# and defaults it was made for, the cell generation it was checked at, the identity, a
# class's members as they were if cloudpickle may set them again (``_resent_members``),
# and the code and defaults of the functions a function wraps (``wrapped_made``).
_argument_ids: weakref.WeakKeyDictionary[
    Any, tuple[Any, Any, Any, int, tuple[str, str] | None, _Members | None,
               tuple[Any, ...]]] = (
    weakref.WeakKeyDictionary()
)
generation = 0  # bumped by ``_notebook`` when an IPython cell starts: re-check what changed


def code_behind(obj: Any) -> Any:
    """The user's code an object given as an argument runs, as keys and ``cache_explain``
    name it: a function or class itself, a library wrapper's function (``functools.cache``,
    ``lru_cache``: ``__wrapped__``), else the object's class (a singleton's, an
    instance's)."""
    if isinstance(obj, (type, FunctionType)):
        return obj
    wrapped = attribute(obj, "__wrapped__")  # (what its __getattr__ raised: its class)
    return wrapped if type(wrapped) is FunctionType else type(obj)


def argument_identity(obj: Any) -> tuple[str, str] | None:
    """``(name, fingerprint)`` of a function or class of the user's code given as a call
    argument, None for library code: its own fingerprint and what it depends on
    (``dependencies``), so that ``fit(model, x)`` or ``apply(transform, x)`` is another
    key when a helper that ``Model.predict`` or ``transform`` calls is edited (before:
    their own code only, and the old helper's value was returned).

    Computed once per object and process (again when a function's ``__code__`` or
    defaults were reassigned, and in IPython when a cell changed what it was made from,
    as for a decorated function). A function or class met while pickling a global's state
    for a fingerprint (``_keys.state_key``) counts by its own identity only."""
    found = _argument_ids.get(obj)
    function = type(obj) is FunctionType
    wrapped = wrapped_made(obj) if function else ()
    if found is not None and found[3] == generation and ((
            found[0] is obj.__code__ and found[1] is obj.__defaults__
            and found[2] is obj.__kwdefaults__ and _same(found[6], wrapped)) if function
            else (found[5] is None or _members_unchanged(found[5]))):
        return found[4]
    made: tuple[Any, Any, Any] = ((obj.__code__, obj.__defaults__, obj.__kwdefaults__)
                                  if function else (None, None, None))  # a class: its
    # members are re-checked in IPython only (``Resolved``), as for a decorated function,
    # and where cloudpickle may set them again (``_resent_members``)
    members = None if function else _resent_members(obj)
    if found is not None and found[0] is made[0] and found[1] is made[1] and (
            found[2] is made[2]) and _same(found[6], wrapped) and (members is None or (
            found[5] is not None and _members_unchanged(found[5]))):
        # a cell ran since: made again if what it read changed
        record = resolved(obj)
        if record is not None and record.unchanged():
            _argument_ids[obj] = (*made, generation, found[4], members, wrapped)
            return found[4]
    own = class_identity(obj) if isinstance(obj, type) else function_identity(obj)
    ident = own
    if own is not None:  # else library code (memojar's own markers too): kept as None
        forget_dependencies(obj)
        try:
            with _own_budget():
                rows = dependencies(obj)
            if len(own[1]) > 16:  # a closure's captured state (``function_identity``)
                rows = (*rows, ("captured", "", own[1][16:]))
            ident = (own[0], identity_digest(rows))
        except Exception as exc:  # noqa: BLE001 - a walk that fails costs the helpers, not the call
            _passed_over(exc)
            return own
    try:
        _argument_ids[obj] = (*made, generation, ident, members, wrapped)
    except TypeError:  # not weak-referenceable
        pass
    return ident


def class_identity(cls: type) -> tuple[str, str] | None:
    """``(name, fingerprint)`` of a class of the user's own code, None for library classes.

    Computed once per class and process; again for a class whose members cloudpickle may
    set again (``_resent_members``) when one is another object than it was."""
    try:
        known = _class_ids[cls]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable
        return None
    else:
        if known[1] is None or _members_unchanged(known[1]):
            return known[0]
    found = None
    members = None
    changes = _changes()
    if is_user_module(cls.__module__):
        members = _resent_members(cls)
        with _own_budget():
            shape = class_shape(cls, set())
        found = (function_name(cls), xxhash.xxh3_64_hexdigest(repr(shape).encode()))
    if _changes() == changes:  # else made of what another thread changed: not kept
        _class_ids[cls] = (found, members)
    return found


def _resent_members(cls: type) -> _Members | None:
    """The members of ``cls`` and of its user bases (``_members_of_classes``) if cloudpickle may
    set them again in place, else None: a class it made here from a copy sent by value
    (a worker's class of ``__main__``, which its module does not hold). cloudpickle sends
    such a class with an id and, when it comes again, sets every member of the class it
    made the first time (a loky worker lives on from one ``Parallel`` to the next): a
    notebook's ``Model.predict = triple`` reached the workers, but they kept the
    identity they had made of ``Model`` and returned the old ``predict``'s values.
    Compared by identity at each use (each sending makes new functions: one walk a
    batch); never for a class its module holds (the script's own: no cost there)."""
    tracker = sys.modules.get("cloudpickle.cloudpickle")
    tracked = getattr(tracker, "_DYNAMIC_CLASS_TRACKER_BY_CLASS", None)
    if tracked is None:
        return None
    try:
        if cls not in tracked:
            return None
        namespace = getattr(sys.modules.get(cls.__module__), "__dict__", None)
        if isinstance(namespace, dict) and namespace.get(cls.__name__) is cls:
            return None
    except Exception as exc:  # noqa: BLE001 - a private table of cloudpickle: not what we know
        _passed_over(exc)
        return None
    return _members_of_classes(
        tuple(klass for klass in cls.__mro__ if is_user_module(klass.__module__)))


def _members_of_classes(classes: tuple[type, ...]) -> _Members:
    """The members of ``classes``, in order, by their ids, each kept so that no other
    object takes its id while the record lives, and none holding a class: the identity
    kept under the class (``_class_ids``, weakly) held the members and the classes,
    strongly, so it kept its own key alive: every class cloudpickle made here (a worker's,
    of each batch of a notebook's classes) that a cached call took, for good. A member is
    kept by a weak reference (its death, the class's member set again, makes the record
    stale) or held (a number, a str); the class's descriptors (set by no one) by their
    types; a staticmethod, classmethod or property is compared as ``_member_held`` holds
    it, one by one; an Enum's tables not at all."""
    stale = [False]

    def went(_: Any) -> None:
        stale[0] = True

    ids: list[int] = []
    kept: list[Any] = []
    typed: list[int] = []
    apart: list[tuple[int, int, str, tuple[Any, ...]]] = []
    for index, klass in enumerate(classes):
        for name, member in vars(klass).items():
            try:
                kept.append(weakref.ref(member, went))
            except TypeError:
                form: list[Any] = []
                _member_held(klass, name, member, form)
                if len(form) == 1 and form[0] is member:
                    kept.append(member)
                elif len(form) == 1 and form[0] is type(member):  # a descriptor: its type
                    typed.append(len(ids))
                    member = form[0]
                else:  # (by the class's place, not the class; an Enum's table: no form)
                    apart.append((len(ids), index, name, tuple(form)))
                    member = None
            ids.append(id(member))
    return (tuple(map(weakref.ref, classes)), tuple(ids), tuple(typed), tuple(apart),
            tuple(kept), stale)


def _members_unchanged(known: _Members) -> bool:
    """Whether the members of the classes ``known`` holds are the objects they were (a
    microsecond's look, at each use of a class cloudpickle made here)."""
    class_refs, ids, typed, apart, _, stale = known
    if stale[0]:
        return False
    classes = tuple(map(_deref, class_refs))
    if None in classes:
        return False
    try:
        now = (list(vars(classes[0]).values()) if len(classes) == 1 else list(
            itertools.chain.from_iterable(vars(klass).values() for klass in classes)))
        if len(now) != len(ids):
            return False
        for position, index, name, form in apart:
            found: list[Any] = []
            _member_held(classes[index], name, now[position], found)  # type: ignore[arg-type]
            if len(found) != len(form) or not all(map(operator.is_, found, form)):
                return False
            now[position] = None
        for position in typed:
            now[position] = type(now[position])
    except Exception as exc:  # noqa: BLE001 - whatever the class raised: made again
        _passed_over(exc)
        return False
    return tuple(map(id, now)) == ids


_deref = weakref.ref.__call__  # (C: the referent, or None)


def _member_held(klass: type, name: str, member: Any, state: list[Any]) -> None:
    """Appends to ``state`` what tells ``member`` of ``klass`` from any other object by
    identity (``is``), holding nothing that holds the class: a record kept under the class,
    weakly, that held its members kept the class alive (an Enum's members, its member map,
    a method using ``super()``, the class's ``__dict__`` descriptor all hold it). A member
    is held by a weak reference (one an object while it lives: the same member gives the
    same reference); a staticmethod, classmethod or property by its type and its functions'
    references; the descriptors made with the class (set by no one) by their type; an
    Enum's tables of its members (``_member_map_``: made of the members, each compared
    already) not at all; another object (a number, a str, a tuple) strongly, so that a new
    object at its address is never taken for it."""
    try:
        state.append(weakref.ref(member))
        return
    except TypeError:
        pass
    if isinstance(member, (staticmethod, classmethod)):
        parts: tuple[Any, ...] = (member.__func__,)
    elif isinstance(member, property):
        parts = (member.fget, member.fset, member.fdel)
    elif isinstance(member, (GetSetDescriptorType, MemberDescriptorType)):
        state.append(type(member))
        return
    elif isinstance(klass, enum.EnumMeta) and enum._is_sunder(name):  # type: ignore[attr-defined]
        return
    else:
        state.append(member)
        return
    state.append(type(member))
    for part in parts:
        _member_held(klass, name, part, state)


def class_shape(cls: type, seen: set[int] | None = None, bare: bool = False) -> Any:
    """A class of the user's code by its methods (its own and inherited ones from the
    user's classes: code, closures, defaults); a library class by its name. ``bare``: its
    methods' code alone (``sibling_of``), without what they capture, their defaults or
    the class's data and other members."""
    if not is_user_module(cls.__module__):
        return ("class", function_name(cls))
    seen = set() if seen is None else seen
    seen.add(id(cls))
    shape: list[tuple[str, Any]] = []
    for klass in cls.__mro__:
        if not is_user_module(klass.__module__):
            shape.append(("base", function_name(klass)))
            continue
        members = []
        for name, member in sorted(vars(klass).items()):
            member = _unwrapped(member)
            if bare:
                if isinstance(member, property):
                    members.append((name, tuple(None if f is None else _callable_shape(
                        f, seen, bare) for f in (member.fget, member.fset, member.fdel))))
                elif isinstance(member, FunctionType):
                    members.append((name, _callable_shape(member, seen, bare)))
                continue
            if isinstance(member, property):
                # its accessors, also those no plain function is (``property(attrgetter(
                # "_x"))``, ``property(itemgetter(0))``, ``property(partial(get, k=2))``):
                # before, those counted for nothing, and an edit of one returned the old value
                accessors = (member.fget, member.fset, member.fdel)
                members.append((name, tuple(None if f is None else _callable_shape(f, seen)
                                            for f in accessors)))
            elif isinstance(member, FunctionType):
                members.append((name, _callable_shape(member, seen)))
            elif type(member) is CACHE_WRAPPER and isinstance(member.__wrapped__,
                                                              FunctionType):
                # a method under functools.cache or lru_cache (a classmethod's too): the
                # function it runs. Before, it counted for nothing, and a result whose
                # class it rebuilds loaded into the edited code (``_depends.result_classes``)
                members.append((name, ("cached", _callable_shape(member.__wrapped__, seen))))
            elif isinstance(_member_function(member), FunctionType):
                # functools.cached_property, partialmethod: the function they hold
                members.append((name, ("holds", _callable_shape(_member_function(member), seen),
                                       _value_shape(getattr(member, "args", ()), seen,
                                                    by_state=True),
                                       _value_shape(getattr(member, "keywords", None), seen,
                                                    by_state=True))))
            elif isinstance(member, type) or _enum_member(member, klass):
                # a nested class; an Enum member by its value (unpickling finds a member
                # by value: a changed value must not load as another member)
                members.append((name, _attribute_shape(member, seen)))
            elif "<locals>" in class_qualname(klass) and _data_attribute(name, member, klass):
                # A class a function makes (``make(k)`` running ``class C: K = k``): its
                # data differs from one such class to another, and no global reaches it
                members.append((name, ("data", _value_shape(member, seen, by_state=True))))
        declared = () if bare else _declared_fields(klass)
        if declared:
            members.append(("", ("fields", declared)))
        match_args = None if bare else vars(klass).get("__match_args__")
        if type(match_args) is tuple and all(type(a) is str for a in match_args):
            # what a ``case C(x, y)`` binds positionally: before, an edit of it alone
            # returned the old value
            members.append(("__match_args__", match_args))
        shape.append((function_name(klass), tuple(members)))
    return ("class", tuple(shape))


# What a library records of the fields a class declares, from which it builds instances
# (pydantic's validator, attrs' converters): ``value: float = 0.5`` in a pydantic model is in
# no method and no class attribute, only here and in ``__annotations__``.
_FIELD_RECORDS = ("__pydantic_fields__", "__fields__", "__attrs_attrs__")


def _declared_fields(klass: type) -> tuple[Any, ...]:
    """The fields ``klass`` declares, by their text: its own annotations (``value: int``;
    a pydantic model or a ``NamedTuple`` converts or checks by them) and the fields a
    library recorded from them (their types, defaults, constraints, converters). Read from
    the class's own namespace, never a counter it bumps: a ``ClassVar`` counts by its
    annotation, not its value. Addresses are left out of the text (a default factory's
    ``<function ... at 0x...>``): its code is in the ``__init__`` that runs it, if any."""
    namespace = vars(klass)
    found: list[tuple[str, str]] = []
    annotations = namespace.get("__annotations__")
    if isinstance(annotations, dict):
        found.extend((str(name), _field_text(kind)) for name, kind in annotations.items())
    for record in _FIELD_RECORDS:
        if record in namespace and not callable(namespace[record]):
            found.append((record, _field_text(namespace[record])))
    params = namespace.get("__type_params__")
    if type(params) is tuple and params:
        # ``class Box[T: int]`` (3.12+): its type parameters by what they stand for, read
        # as ``Box.__type_params__`` (before, not counted: an edit of the bound returned
        # the old value; a method that names ``T`` captures it, and counted it already)
        found.append(("__type_params__", _field_text(params)))
    return tuple(found)


def _field_text(value: Any, depth: int = 0) -> str:
    """A declared field's type or a library's record of fields, as text the same in
    every process: a class by its name, plain data by value (a set default sorted, not in
    its hash-seeded order), a table or sequence item by item, an object of slots or
    attributes (pydantic's ``FieldInfo``, attrs' ``Attribute``) attribute by attribute,
    anything else by its repr without addresses."""
    if isinstance(value, type):
        return function_name(value)
    if _constant(value):
        return _constant_digest(value)
    text = typing_text(value, depth)  # ``value: Conv``, ``type Conv = int``: by its value
    if text is not None:
        return text
    if depth < 4:
        if type(value) is dict:
            return "{" + ", ".join(f"{_key_text(k)}: {_field_text(v, depth + 1)}"
                                   for k, v in value.items()) + "}"
        if type(value) in (tuple, list):
            return "(" + ", ".join(_field_text(v, depth + 1) for v in value) + ")"
        named = _attributes_of(value)
        if named:
            return f"{function_name(type(value))}(" + ", ".join(
                f"{name}={_field_text(v, depth + 1)}" for name, v in named) + ")"
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__: its type names it
        _passed_over(exc)
        return function_name(type(value))
    return re.sub(_ADDRESS, "", text)


# Objects of ``typing`` that pickle by their name alone, though what they stand for is
# evaluated from the user's source when it is read: a type alias (``type Conv = int``, PEP
# 695, or ``TypeAliasType("Conv", int)``; its ``__value__``), a type variable (its bound,
# constraints and default: ``def f[T: int]``, PEP 696's ``[T = int]``, ``TypeVar("T",
# bound=int)``), a ``NewType``'s supertype. Counted by their name, an edit of
# ``type Conv = int`` to ``float`` returned the old value to ``Conv.__value__(x)``.
_TYPING_KINDS = frozenset({"TypeVar", "ParamSpec", "TypeVarTuple", "TypeAliasType", "NewType"})
_TYPING_PARTS = ("__value__", "__type_params__", "__bound__", "__constraints__",
                 "__default__", "__supertype__", "__covariant__", "__contravariant__",
                 "__infer_variance__")
# Levels of nesting read: the aliases and type variables a text names are each spelled out
# once (``_typed_text``'s ``seen``), so that the depth stops nothing but an absurd nesting.
# Before, 4 levels of any nesting: ``type Row = dict[str, list[tuple[Conv, ...]]]`` named
# ``Conv`` at the fifth, by its name alone, and an edit of ``type Conv = int`` to ``float``
# returned the old value to a function reading ``Row`` (a parser built from it).
_TYPING_DEPTH = 16


def typing_kind(kind: type) -> bool:
    """Whether ``kind`` is one of ``_TYPING_KINDS`` (of ``typing`` or
    ``typing_extensions``)."""
    return (getattr(kind, "__name__", None) in _TYPING_KINDS
            and getattr(kind, "__module__", None) in ("typing", "typing_extensions"))


def _typing_parts(value: Any) -> list[tuple[str, Any]]:
    """What a ``typing_kind`` object stands for, by name, each evaluated now (a lazy bound
    or alias value raising, ``NameError`` of a name not defined, counts by the error)."""
    found: list[tuple[str, Any]] = []
    for name in _TYPING_PARTS:
        try:
            found.append((name, getattr(value, name)))
        except AttributeError:
            continue
        except Exception as exc:  # noqa: BLE001 - whatever evaluating the user's text raised
            _passed_over(exc)
            found.append((name, f"raises {type(exc).__name__}"))
    return found


def typing_text(value: Any, depth: int = 0,
                seen: dict[int, Any] | None = None) -> str | None:
    """A ``typing_kind`` object as text the same in every process: its kind and name, and
    what it stands for (``_typing_parts``, aliases and type variables in them too, each
    spelled out once: ``seen``, by id, the object kept beside; to ``_TYPING_DEPTH``
    levels); None for anything else."""
    if not typing_kind(type(value)):
        return None
    head = f"{function_name(type(value))} {attribute(value, '__name__', str)}"
    if depth >= _TYPING_DEPTH:
        return head
    if seen is None:
        seen = {}
    if id(value) in seen:  # ``type Tree = list[Tree]``, ``tuple[Conv, Conv]``: spelled out
        return head
    seen[id(value)] = value
    return head + "(" + ", ".join(f"{name}={_typed_text(part, depth + 1, seen)}"
                                  for name, part in _typing_parts(value)) + ")"


def _typed_text(value: Any, depth: int, seen: dict[int, Any]) -> str:
    """``_field_text`` of a part of a ``typing_kind`` object, with the aliases and type
    variables inside a generic alias (``tuple[T, int]``, ``list[Conv]``) by what they
    stand for."""
    text = typing_text(value, depth, seen)
    if text is not None:
        return text
    if type(value) in (tuple, list) and depth < _TYPING_DEPTH:
        return "(" + ", ".join(_typed_text(v, depth + 1, seen) for v in value) + ")"
    text = _field_text(value, depth)
    args = _alias_args(value)
    if args and depth < _TYPING_DEPTH and id(value) not in seen:
        seen[id(value)] = value  # a generic alias met again: its arguments spelled out
        text += "[" + ", ".join(_typed_text(v, depth + 1, seen) for v in args) + "]"
    return text


def _alias_kind(kind: type) -> bool:
    """Whether ``kind`` is a generic alias's or a union's (``list[T]``, ``int | Conv``,
    ``typing.Optional[T]``, ``Annotated[...]``)."""
    name = getattr(kind, "__name__", None)
    return (isinstance(name, str) and (name.endswith("Alias") or name == "UnionType")
            and getattr(kind, "__module__", None) in ("types", "typing", "typing_extensions"))


def _alias_args(value: Any) -> tuple[Any, ...]:
    """The arguments of a generic alias or union; none for anything else."""
    if not _alias_kind(type(value)):
        return ()
    args = attribute(value, "__args__", tuple)
    return args or ()


def typing_named(value: Any) -> tuple[Any, ...]:
    """The classes and functions of the user's code a ``typing_kind`` object names, at any
    depth (``type Conv = list[Model]``: ``Model``). A library's or a built-in class carries
    no code of the user's, and its name is in ``typing_text`` already: left out, as it was
    pickled by reference, and one with no importable name (``types.FunctionType``,
    ``types.FrameType``: ``TypeVar("T", bound=types.ModuleType)``) failed the call that
    passed the alias ("Can't pickle <class 'frame'>"), keyed by its name before."""
    return code_named(value)


def code_named(value: Any) -> tuple[Any, ...]:
    """The functions and classes of the user's code ``value`` holds, at any depth
    (``_held``), for a key to count them by their code and what it calls."""
    return tuple(item for item in _held(value) if not isinstance(item, ModuleType)
                 and is_user_module(attribute(item, "__module__", str)))


def _typing_children(item: Any) -> list[Any] | None:
    """For ``_held``: what a ``typing_kind`` object stands for, or a generic alias's origin
    and arguments (``type Conv = Model``: ``Model``'s code is followed); None for anything
    else."""
    if typing_kind(type(item)):
        return [part for _, part in _typing_parts(item)]
    args = _alias_args(item)
    if args:
        return [attribute(item, "__origin__"), *args]
    return None


def _attributes_of(value: Any) -> list[tuple[str, Any]]:
    """An object's slots and instance attributes, by name; none if looking raises or it has
    neither (a type annotation such as ``list[int]``: its repr names it)."""
    try:
        found: dict[str, Any] = {}
        for klass in type(value).__mro__:
            slots = vars(klass).get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if (isinstance(name, str) and name not in ("__dict__", "__weakref__")
                        and hasattr(value, name)):
                    found[name] = getattr(value, name)
        attributes = getattr(value, "__dict__", None)
        if type(attributes) is dict and type(value).__module__ != "typing":
            found.update(attributes)
        return sorted(found.items())
    except Exception as exc:  # noqa: BLE001 - whatever the object raised: its repr then
        _passed_over(exc)
        return []


def _member_function(member: Any) -> Any:
    """The function a ``functools.cached_property``, ``partialmethod`` or
    ``singledispatchmethod`` holds, else None; that of a ``staticmethod`` or
    ``classmethod`` it holds (``partialmethod(_scale, k=2)`` of a ``@classmethod
    _scale``): before, None, so neither the function nor ``k`` counted, and an edit of
    ``k`` returned the old value."""
    if isinstance(member, (FunctionType, type)):
        return None
    return _unwrapped(getattr(member, "func", None))




def _unwrapped(member: Any) -> Any:
    """The function a ``staticmethod`` or ``classmethod`` holds; anything else as it is."""
    return member.__func__ if isinstance(member, (staticmethod, classmethod)) else member


def _enum_member(member: Any, klass: type) -> bool:
    return isinstance(member, enum.Enum) and isinstance(member, klass)


def _attribute_shape(value: Any, seen: set[int]) -> Any:
    """A nested class or an Enum member as a class's fingerprint sees it."""
    if isinstance(value, enum.Enum):
        value = value._value_
        return ("enum", ("value", _constant_digest(value)) if _constant(value) else
                _value_shape(value, seen))
    return _value_shape(value, seen)


def _data_attribute(name: str, member: Any, klass: type) -> bool:
    """A class attribute that is data (``FACTOR = 2``, ``op = partial(scale)``, a table):
    not in the class's fingerprint (a counter the class bumps would make every process's
    differ), a row of its own in the dependencies of a function that reaches the class,
    taken at its first call like a global."""
    if name.startswith("_") and name.endswith("_"):  # dunder and Enum's sunder names
        return False  # (but the user's own: ``_named_data``)
    if isinstance(member, (FunctionType, staticmethod, classmethod, property, type)):
        return False
    return not (_enum_member(member, klass) or isinstance(_member_function(member),
                                                          FunctionType))


# Names Python gives a class's own data (``vars(cls)``), whose values no edit of the user's
# code changes but its docstring and the line it starts at, or which its fingerprint counts
# already (``__match_args__``, ``__annotations__``): never a row of their own. With
# ``typing``'s: a subclass of a generic alias (``class Repo(Base[int])``) has
# ``__parameters__ = ()``, a ``@final`` class ``__final__ = True`` (3.11 and later): rows of
# them would have recomputed every function reaching such a class once, for nothing.
_CLASS_METADATA = frozenset({
    "__abstractmethods__", "__annotations__", "__dict__", "__doc__", "__final__",
    "__firstlineno__", "__hash__", "__match_args__", "__module__", "__mutable_keys__",
    "__optional_keys__", "__orig_bases__", "__parameters__", "__qualname__",
    "__readonly_keys__", "__required_keys__", "__slots__", "__static_attributes__",
    "__total__", "__type_params__", "__weakref__",
})
_LIBRARY_PREFIXES = ("__pydantic_", "__attrs_")  # what pydantic and attrs set (a class of
# theirs is no base of an attrs class, and pydantic's metaclass sets names its base has not)
_IMMUTABLE = (str, int, float, bool, complex, bytes, type(None), tuple, frozenset)


def _hook_name(name: str, sunder: bool) -> bool:
    """A name as Python names its own hooks, ``__x__`` (or ``_x_`` if ``sunder``: Enum's),
    that is neither Python's own class data (``_CLASS_METADATA``) nor pydantic's or attrs'
    bookkeeping (``_LIBRARY_PREFIXES``)."""
    hooked = (name.startswith("_") and name.endswith("_") if sunder else
              len(name) > 4 and name.startswith("__") and name.endswith("__"))
    return (hooked and name not in _CLASS_METADATA
            and not name.startswith(_LIBRARY_PREFIXES))


def _named_data(name: str, member: Any, cls: type) -> bool:
    """A class attribute of ``cls`` (or of a base of the user's) named as Python names its
    own, dunder or sunder, that holds a plain value which cannot change in place:
    ``__tablename__ = "users"``, ``_limit_ = 2``. A row, as ``_data_attribute``'s; before,
    left out with Python's names, and an edit of one alone returned the old value. Not
    Python's own (``_CLASS_METADATA``), nor a name a library class of ``cls``'s bases
    defines (an Enum's ``_all_bits_``), nor pydantic's or attrs': their bookkeeping (a row
    of it would recompute once every function reaching such a class); nor a table or a
    list (a cache a library fills under such a name as instances are used, pydantic's
    ``__pydantic_setattr_handlers__``, would make each process's identity another)."""
    return (_hook_name(name, sunder=True) and type(member) in _IMMUTABLE
            and _constant(member) and not any(name in vars(klass) for klass in cls.__mro__
                                              if not is_user_module(klass.__module__)))


def _named_builtin(name: str, member: Any, klass: type, cls: type) -> bool:
    """A class attribute of ``klass`` (``cls`` or a base of the user's) named as Python
    names its own hooks that holds a built-in (a function or method of C: ``__str__ =
    str.upper``, ``__getattr__ = dict.get``, ``__add__ = operator.add``): a row, as
    ``_data_attribute``'s, by the name it is bound to (``_library_row``). Before, neither
    the class's fingerprint nor a row counted it (no plain value, no function of Python's),
    and an edit of ``str.upper`` to ``str.title`` returned the old value.

    Not one a library or Python put there (a row of it would recompute once every function
    reaching such a class, or differ between processes): not Python's own names
    (``_CLASS_METADATA``), pydantic's or attrs'; in an Enum, not what ``EnumType`` copies
    from the Enum base or sets for a ``ReprEnum`` (``__format__ = int.__format__``,
    ``__str__ = float.__repr__``, 3.11 and later); elsewhere, not the very built-in a
    library class of ``cls``'s bases holds under that name, which attrs sets on a subclass
    of a class with its ``__setattr__`` (``object.__setattr__``) and ``typing`` on a
    subclass of a ``Protocol`` at its first instance (``__init__ = object.__init__``: one
    process would have had the row, another not). Such a one restores what a base of
    Python's does, so that one written by the user (``__setattr__ = object.__setattr__``)
    counts for nothing either."""
    if not (_hook_name(name, sunder=False) and isinstance(member, _ROUTINES)):
        return False
    if isinstance(klass, enum.EnumMeta):
        return not _enum_made(name, member, klass)
    return not any(vars(base).get(name) is member for base in cls.__mro__
                   if not is_user_module(base.__module__))


def _enum_made(name: str, member: Any, klass: type) -> bool:
    """Whether ``EnumType`` itself sets ``member`` as ``name`` of the Enum ``klass``: the
    ``__str__``, ``__format__``, ``__repr__`` or ``__reduce_ex__`` of its Enum base (the
    last of its bases), copied in when the class found its data type's; for a class of
    ``ReprEnum``'s bases (3.11 and later), its data type's ``__format__``, and ``__str__``
    (or ``__repr__`` where the data type has no ``__str__`` of its own). The same one
    written by the user is the one it would have had."""
    bases = klass.__bases__
    if bases and _static_member(bases[-1], name) is member:
        return True
    repr_enum = getattr(enum, "ReprEnum", None)
    data_type = vars(klass).get("_member_type_")
    if repr_enum is None or repr_enum not in bases or not isinstance(data_type, type):
        return False
    if name == "__format__":
        return _static_member(data_type, "__format__") is member
    if name == "__str__":
        return member in (_static_member(data_type, "__str__"),
                          _static_member(data_type, "__repr__"))
    return False


def _static_member(cls: type, name: str) -> Any:
    """What ``cls`` holds as ``name``, its own or a base's, as its class dictionary holds it
    (no descriptor run); None if none does."""
    for klass in cls.__mro__:
        found = vars(klass).get(name, _ABSENT)
        if found is not _ABSENT:
            return found
    return None


def is_user_module(module: str | None) -> bool:
    """True unless ``module`` is of the standard library or an installed distribution. A
    ``__module__`` that is no name (``Wrapper.__module__ = 5``) says nothing of where the
    code lives: the user's, followed (before, it failed the first call: ``'int' object has
    no attribute 'partition'``)."""
    if not module or not isinstance(module, str):
        return True
    found = _user_modules.get(module)
    if found is None:
        found = _user_modules[module] = _is_user_module(module)
    return found


def _is_user_module(name: str) -> bool:
    top = name.partition(".")[0]
    if top in ("__main__", "__mp_main__"):
        # The user's script or notebook, wherever the running main module lives: in a
        # joblib/loky worker it is loky's launcher in site-packages, while the functions
        # and classes cloudpickle sent there by value still say ``__main__``. A dotted
        # name of it too (``__main__.Scaler``, where a class attribute is walked): before,
        # looked up as the launcher's, a loky worker left out the rows of the script's
        # class attributes (``FACTOR = 2``, an Enum's ``_member_type_``), and a class
        # given as an argument keyed alike there whatever its ``FACTOR`` (an edited
        # script's workers returned the old value).
        return True
    if top in sys.builtin_module_names or top == "memojar":
        return False
    # A name of the standard library's is its module only where no file says otherwise: a
    # project's own ``statistics.py`` or ``secrets.py``, found first from the project's
    # folder, is the user's (before, taken for the library by its name: its edits were not
    # seen). One without a file (a frozen module) is the library's.
    stdlib = top in getattr(sys, "stdlib_module_names", ())
    module = sys.modules.get(name) or sys.modules.get(top)
    if module is None:
        return _found_outside_libraries(top, stdlib)
    path = getattr(module, "__file__", None)
    if not path:
        return not stdlib  # __main__ of a notebook, code exec'd from a string
    return not any(path.startswith(prefix) for prefix in _library_paths())


def _found_outside_libraries(top: str, stdlib: bool = False) -> bool:
    """Whether a module this process has not imported is the user's: where the import
    system would find it (``find_spec`` of a top-level name runs nothing), not in the
    libraries' folders; the user's if it is found nowhere (code a worker got by value).
    Before, any module not imported was the user's: a loky worker that got IPython's
    ``open`` by value (its ``__module__`` says ``io``) walked its globals as the user's
    code of ``IPython.core.interactiveshell``, which the notebook does not, so each
    worker made another identity for every cached function of a notebook calling
    ``open`` and computed again what the notebook had stored."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(top)
    except Exception as exc:  # noqa: BLE001 - a finder's own failure: not found
        _passed_over(exc)
        return True
    if spec is None:
        return not stdlib
    paths = [spec.origin] if spec.has_location and spec.origin else list(
        spec.submodule_search_locations or ())
    if not paths:
        # a module a finder makes without a file: the user's, as such a module is when
        # imported (``__file__`` unset), unless it is the standard library's (frozen)
        return not stdlib
    return not any(path.startswith(prefix) for path in paths for prefix in _library_paths())


@functools.lru_cache(maxsize=1)
def _library_paths() -> tuple[str, ...]:
    import os
    import sysconfig

    global _library_paths_begun
    _library_paths_begun = True
    paths = sysconfig.get_paths()
    found = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    found.update(p for p in sys.path if p.rstrip(os.sep).endswith(("site-packages",
                                                                    "dist-packages")))
    return tuple(os.path.join(os.path.realpath(p), "") for p in found) + tuple(
        os.path.join(p, "") for p in found
    )


# Python 3.12+ reads its configuration once, under a lock of sysconfig's: a fork while
# another thread's first identity was in there (a cached function's first call) left the
# child that lock held for ever, and the child's own first call hung. A fork waits for that
# reading to end instead (a fork once the paths are known, or before memojar asked, costs
# nothing more).
_library_paths_begun = False


def _paths_read_before_fork() -> None:
    if _library_paths_begun:
        _library_paths()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_paths_read_before_fork)


# --- code ---------------------------------------------------------------------------------

def code_digest(code: CodeType) -> str:
    """A 32-digit digest of a code object as a function's code counts (``_code_shape``):
    its bytecode, constants, names, not its line numbers or docstring."""
    return xxhash.xxh3_128_hexdigest(repr(_code_shape(code)).encode())


def _code_shape(code: CodeType, func: Any = None) -> tuple[Any, ...]:
    flags = code.co_flags & ~_CO_HAS_DOCSTRING
    return (
        code.co_name,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        flags,
        _instructions(code, _hashes_a_seeded_number(code, func)),
        getattr(code, "co_exceptiontable", b""),
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
    )


def _instructions(code: CodeType, seeded: bool) -> tuple[Any, ...]:
    """The bytecode with each constant operand replaced by the constant's shape.

    The docstring is not an operand of any instruction, so it is left out by construction,
    whatever the Python version keeps in ``co_consts[0]``. Read from ``co_code`` (the
    unspecialised bytecode) two bytes a unit, without ``dis`` (which costs a millisecond to
    import and ten times as long per instruction: a function with 50 dependencies
    fingerprints 50 code objects at its first call): ``EXTENDED_ARG`` prefixes fold into the
    next operand, constants are looked up in ``co_consts`` by that operand.
    """
    has_const, extended = _opcodes()
    consts = code.co_consts
    raw = code.co_code
    out = []
    ext = 0
    for at in range(0, len(raw), 2):
        op = raw[at]
        arg = raw[at + 1] | ext
        if op == extended:
            ext = arg << 8
            continue
        ext = 0
        if op in has_const and arg < len(consts):
            const = consts[arg]
            out.append((op, "seeded" if seeded and type(const) is int else _const_shape(const)))
        else:
            out.append((op, arg))
    return tuple(out)


def _hashes_a_seeded_number(code: CodeType, func: Any) -> bool:
    """Whether ``code`` is a ``__hash__`` attrs generated (``@attrs.frozen``, ``hash=True``):
    it hashes, beside the fields, a number attrs took from the ``hash()`` of a string (the
    class's generated file name), which differs with each process's ``PYTHONHASHSEED``. Its
    numbers are left out of the fingerprint: before, every function reaching such a class
    had another identity in each new process, and missed (``incompatible: class ...
    changed``) unless the seed was fixed.

    Known by the file name attrs compiles it under or, as a function, by the docstring attrs
    gives it: a copy cloudpickle made by value has ``<dynamic-code>`` for its file name, and
    copies sent by processes of other seeds missed."""
    if code.co_name != "__hash__":
        return False
    if code.co_filename.startswith("<attrs generated"):
        return True
    doc = None if func is None else attribute(func, "__doc__", str)
    return doc is not None and doc.startswith("Method generated by attrs for class ")


@functools.lru_cache(maxsize=1)
def _opcodes() -> tuple[frozenset[int], int]:
    """The opcodes whose operand indexes ``co_consts``, and ``EXTENDED_ARG``."""
    import opcode

    return frozenset(opcode.hasconst), opcode.opmap["EXTENDED_ARG"]


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
        inner = attribute(target, "__wrapped__") or attribute(target, "__func__")
        if not callable(inner):  # (a proxy answering every name: 42)
            inner = None
        if inner is None and isinstance(target, functools.partial):
            inner = target.func
        if inner is None:
            break
        target = inner
    if attribute(target, "__module__", str) not in _MAIN_MODULES:
        return ""
    namespace = attribute(target, "__globals__", dict)
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
        return encodable(os.path.realpath(path))  # a relative one (runpy.run_path) from the cwd
    return _resolved(os.environ.get("JPY_SESSION_NAME", ""))


def _resolved(path: str) -> str:
    """An absolute path with its links resolved; anything else (a relative notebook path as
    Jupyter Server may pass it, a session name) as it is."""
    import os

    if os.path.isabs(path):
        return encodable(os.path.realpath(path))
    return encodable(path)


def encodable(path: str) -> str:
    r"""A path as text that encodes: one holding bytes that are not UTF-8 (a script in a
    folder named in Latin-1, which Python decodes to lone surrogates) with those bytes as
    backslash escapes, ``/data/caf\xe9/run.py``. Before, the scope did not encode, and
    decorating any function of such a script raised ``UnicodeEncodeError``. So too a
    function's name (``function_name``: a module loaded from a file so named, a
    ``__qualname__`` set by hand to ``"a\udcff"``, named ``a\xff``), and a surrogate no
    file name decodes to (``"\ud800"``) as ``\ud800``."""
    try:
        path.encode()
    except UnicodeEncodeError:
        import os

        try:
            return os.fsencode(path).decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate outside surrogateescape's range
            return path.encode("utf-8", "backslashreplace").decode()
    return path


def generator_kind(func: Any) -> str | None:
    """"generator" or "async generator" if ``func`` makes one, else None."""
    code = attribute(split(func)[0], "__code__", CodeType)
    if code is not None and code.co_flags & _CO_GENERATOR:
        return "async generator" if code.co_flags & 0x200 else "generator"
    return None


# --- what a function depends on in the user's own code -----------------------------------

_deps_of: weakref.WeakKeyDictionary[Any, tuple[tuple[str, str, str], ...]] = (
    weakref.WeakKeyDictionary()
)
# What each function's dependencies were resolved from (only while ``RECORD``: see
# ``Resolved``); kept past ``forget_dependencies``, so that the walk that makes them again
# reuses the state of the objects that did not change.
_resolved_of: weakref.WeakKeyDictionary[Any, Resolved] = weakref.WeakKeyDictionary()
# The namespaces of the modules each function's dependencies were read from, with the
# ``__spec__`` each held then (``reloaded``): in a script too, where nothing else is kept.
Loaded = tuple[tuple[dict[str, Any], Any], ...]
_loaded_of: weakref.WeakKeyDictionary[Any, Loaded] = weakref.WeakKeyDictionary()
_reading: contextvars.ContextVar[dict[int, tuple[dict[str, Any], Any]] | None] = (
    contextvars.ContextVar("memojar_reading", default=None))
_SEPARATORS = str.maketrans({"\0": "?", "\n": "?", " ": "_", "\x1e": "?", "\x1f": "?"})


def dependencies(func: Callable[..., Any]) -> tuple[tuple[str, str, str], ...]:
    """What ``func``'s results depend on in the user's own code, as sorted
    ``(kind, name, fingerprint)`` rows; the first is ``("code", "", fingerprint)`` of the
    function itself (its name is the entry's function name).

    Followed transitively from the function's code (and every code object nested in it):
    each name it loads that its module's globals hold (``co_names``: ``scale`` after
    ``from helpers import scale``), and each such name as an attribute of a user module it
    reaches (``helpers.clean``, ``pkg.sub.clean``). A name is a ``function`` (its own code,
    see ``code_fingerprint``, then its dependencies in turn), a ``class`` (its methods, see
    ``class_shape``, then what they depend on), or a ``constant`` (a module-level value of
    plain type, by value: numbers, strings, bytes, and tuples, lists, dicts and sets of
    them), or any other value by its pickled state (``_walk_object``: an instance, a
    partial, a bound method, a table of functions, followed into what they call). The
    functions in its defaults and closure are followed too. For a method, its class counts
    (found by its ``__qualname__`` at the first call, so a method decorated in its class
    body is seen with its class). Functions and classes
    of the standard library and installed distributions (``is_user_module``) are not
    followed. Names are matched by over-approximation (an attribute name that is also a
    global counts): an extra dependency costs a recomputation, a missed one a stale value.
    Cycles (mutually recursive helpers) stop at what was seen. Computed once per function
    object and process, when first needed: globals defined after the decorated function are
    seen. Not kept if the code or defaults of the function (or of a function it wraps) were
    reassigned while it was walked: a walk of the old code that ended after the renew for
    the new one (``forget_dependencies``) was kept, the next identity was made of it, and
    the new code's values were stored under the old code's identity (a wrapped function's
    code flipped by another thread while three threads called: in 2 runs of 40, every
    entry of one code held the other's values).
    """
    target, _, _ = split(func)
    try:
        return _deps_of[target]
    except (KeyError, TypeError):
        pass
    made = (*_made_of(target), *wrapped_made(target))  # read before the walk
    record = None
    if RECORD:
        try:
            record = Resolved(_resolved_of.get(target))
        except TypeError:  # not weak-referenceable: nothing to keep a record for
            pass
    token = _recording.set(record)
    try:
        with _noting_modules(target):
            found = _walk_dependencies(target)
    finally:
        _recording.reset(token)
    if not _same(made, (*_made_of(target), *wrapped_made(target))) or _unkept.get():
        return found  # made of code or defaults reassigned meanwhile: this call's only
        # (or for a look alone: ``unkept``)
    try:
        _deps_of[target] = found
        if record is not None:
            record.reused = None  # the previous record: not kept alive by this one
            _resolved_of[target] = record
    except TypeError:  # not weak-referenceable
        pass
    return found


@contextlib.contextmanager
def _noting_modules(target: Any) -> Iterator[None]:
    """Note in ``_loaded_of[target]`` the module namespaces a walk of ``target`` reads."""
    read: dict[int, tuple[dict[str, Any], Any]] = {}
    token = _reading.set(read)
    try:
        yield
    finally:
        _reading.reset(token)
    if _unkept.get():  # a look's walk (``unkept``)
        return
    try:
        # (a namespace without a spec, a script's ``__main__``, is never reloaded: a miss
        # of a script's function looks at nothing)
        _loaded_of[target] = tuple(item for item in read.values() if item[1] is not None)
    except TypeError:  # not weak-referenceable
        pass


def _read(namespace: dict[str, Any]) -> None:
    read = _reading.get()
    if read is not None and id(namespace) not in read:
        read[id(namespace)] = (namespace, namespace.get("__spec__"))


def loaded_from(func: Any, target: bool = False) -> Loaded:
    """The module namespaces ``dependencies(func)`` (or ``copy_dependencies``) last read,
    each with its ``__spec__`` then; empty if not known (``UNWALKED`` if not walked yet).
    ``target``: ``func`` is the callable that runs already (``split``'s first), as a memo's
    ``target``: a miss splits nothing."""
    try:
        return _loaded_of.get(func if target else split(func)[0], UNWALKED)
    except TypeError:
        return ()


class _Unwalked(tuple[tuple[dict[str, Any], Any], ...]):
    """An empty ``Loaded`` that is not ``()``: ``loaded_from`` of a function not walked yet."""

    __slots__ = ()


# A miss that read it before its identity was made (the first call, or the first after a
# ``renew``) reads the modules again once the identity is made (``_Memo._compute``): else a
# reload by another thread while it ran went unseen, and the new code's value was stored
# under the identity of the old.
UNWALKED: Loaded = _Unwalked()


def reloaded(loaded: Loaded) -> bool:
    """Whether a module of ``loaded`` (``loaded_from``) was reloaded since: ``importlib.reload``
    runs the module again in its namespace (its functions and classes are new objects
    there, which a function reading ``helpers.scale`` runs) and binds a new ``__spec__``
    in it. A script or a dask worker (``client.upload_file``) does so."""
    for namespace, spec in loaded:  # noqa: SIM110 - ``any`` of a generator costs a miss more
        if namespace.get("__spec__") is not spec:
            return True
    return False


_TRIES = 3  # walks met by other threads' changes before ``_walked`` warns
_T = TypeVar("_T")


def _walk_dependencies(target: Any) -> tuple[tuple[str, str, str], ...]:
    return _walked(lambda: _finished(target, _walk_rows(target)),
                   f"the identity of {function_name(target)}")


def _walked(walk: Callable[[], _T], purpose: str) -> _T:
    """``walk()``, made again while it meets a table or set that another thread changed as
    it was read (``_changed_meanwhile``): then counted by its type. After ``_TRIES`` such
    walks, a warning names the globals (before: nothing said so, and a later change of one
    returned the old value)."""
    named = len(_named())
    try:
        for _ in range(_TRIES):
            changes = _changes()
            found = walk()
            if _changes() == changes:
                return found
        changed = ", ".join(dict.fromkeys(_named()[named:])) or (
            "what it captures or its defaults")
        from memojar._errors import warn  # (this module imports none of memojar's)

        warn(f"{changed} changed in another thread while memojar hashed it for {purpose} "
             f"({getattr(_walk, 'change', '')}), {_TRIES} times running: it counts by its "
             "type, so a later change of it is not seen; change it before the function "
             "is decorated and first called, or not while that runs")
        return found
    finally:
        del _named()[named:]


# The globals (``module.name``, ``module.Class.name``) that the functions walked change in
# place (``_mutated_globals``): a list, dict, set or deque among them is an accumulator of
# theirs (``LOG.append(x)``, ``_memo[k] = v``, ``SEEN.add(x)``), counted by type as a
# closure's is. Before, by its contents at the first call, which differ with what ran
# before it: a process that had called another cached function filling the same ``LOG``
# made another identity, missed, and its store swept the other processes' entries as
# older code (each run recomputed).
_accumulated: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "memojar_accumulated", default=None)


def _walk_rows(target: Any) -> dict[str, tuple[str, str, str]]:
    """The rows of ``target``'s dependencies, walked again (at most a few times) while the
    walk finds accumulators it had walked by their contents before it met the code that
    changes them (a helper reached after the function that reads the global)."""
    known: set[str] = set()
    for _ in range(4):
        found = set(known)
        token = _accumulated.set(found)
        try:
            rows = _walk_rows_once(target)
        finally:
            _accumulated.reset(token)
        if found == known:
            break
        known = found
    return rows


def _walk_rows_once(target: Any) -> dict[str, tuple[str, str, str]]:
    token = _modules_walked.set(set())
    holders = _holders.set({})
    try:
        return _walk_rows_of(target)
    finally:
        _holders.reset(holders)
        _modules_walked.reset(token)


# The modules a walk looked up, with the names it looked up in each (``_walk_global``).
_modules_walked: contextvars.ContextVar[set[tuple[int, frozenset[str]]] | None] = (
    contextvars.ContextVar("memojar_modules_walked", default=None))


def _walk_rows_of(target: Any) -> dict[str, tuple[str, str, str]]:
    rows: dict[str, tuple[str, str, str]] = {}
    _walk_callable(target, rows, set())
    if isinstance(target, type):  # a class in depends_on=: what its methods call too
        _walk_value(target, function_name(target), rows, set())
        return rows  # not the class it is nested in (what it uses of that class it names,
        # ``Outer.X``: a global, followed). Before, counted as a method's class is: but
        # cloudpickle sends a nested class of ``__main__`` without it, so ``Outer.Inner``
        # given as an argument keyed otherwise in every loky worker (a miss each call).
    cls = _class_of_method(target)
    if cls is not None:
        _walk_value(cls, function_name(cls), rows, set())
    return rows


def _finished(target: Any, rows: dict[str, tuple[str, str, str]],
              ) -> tuple[tuple[str, str, str], ...]:
    own = ("code", "", code_fingerprint(target))  # the function itself: its name is known
    rows.pop(function_name(target), None)
    found = (own, *sorted(rows.values(), key=lambda r: (r[1], r[0])))
    return tuple((kind, name.translate(_SEPARATORS), fp) for kind, name, fp in found)


# A copy's check of its sender's rows (``copy_dependencies``): the data globals cloudpickle
# sent inside it, by id: (the object, its ``module.name``, the digest its sender made).
_as_sent: contextvars.ContextVar[dict[int, tuple[Any, str, str]] | None] = (
    contextvars.ContextVar("memojar_as_sent", default=None))


def copy_dependencies(func: Callable[..., Any], sent: tuple[tuple[str, str, str], ...],
                      ) -> tuple[tuple[str, str, str], ...] | None:
    """``dependencies(func)`` for a copy sent by value (cloudpickle: a function of
    ``__main__`` in a joblib/loky, dask or ray worker), made to be checked against the rows
    its sender made (``sent``), or None where nothing is taken as sent (walk in full).

    A global of the copy's own namespace that is data (an instance, a table: what
    ``_walk_object`` digests by state), or an attribute of a class cloudpickle sent by value
    (a method's, a global's), came inside the copy, pickled from the sender's object:
    its row is the sender's, and it is not walked again (a global of 5,000 instances cost a
    loky batch 0.1 s, a new copy each batch). What the worker resolves itself is checked:
    the rest of the namespace as before (``from helpers import scale``, ``helpers.TABLE``:
    imported from the files the worker finds, reloaded by ``client.upload_file``), and
    what such data holds that cloudpickle sent by reference (a class of ``helpers``, a
    function): each row the sender made of a name outside ``__main__`` (which cloudpickle
    sends by value) that this walk did not, looked up by that name where cloudpickle looked
    it up (its module, then its qualified name) and walked. A name that is not found so (a
    function defined in a function) makes it None. Rows made here that the sender did not,
    or rows of the sender's left unmade, fail ``_decorator._agrees_as_sent``: the full walk
    decides. A function of a module the worker imported (a partial of ``helpers.power``
    sent by value) reads that module's own globals: walked."""
    if RECORD:  # IPython: the full walk keeps the record the cells re-check
        return None
    target, _, _ = split(func)
    namespace = attribute(target, "__globals__", dict)
    if not isinstance(namespace, dict) or any(
            getattr(module, "__dict__", None) is namespace
            for module in list(sys.modules.values())):
        return None
    module = _module_name(target, namespace)
    digests: dict[str, str | None] = {}
    for kind, name, digest in sent:
        if kind == "constant":  # two rows of one name: neither is taken
            digests[name] = digest if name not in digests else None
    taken: dict[int, tuple[Any, str, str]] = {}
    tables: list[tuple[str, Mapping[str, Any]]] = [(module, namespace)]
    # A class sent by value (of a method, or a global): its attributes came with it too.
    tracked = getattr(sys.modules.get("cloudpickle.cloudpickle"),
                      "_DYNAMIC_CLASS_TRACKER_BY_CLASS", None)
    if tracked is not None:
        classes = [_class_of_method(target), *namespace.values()]
        tables.extend((function_name(klass), vars(klass)) for cls in classes
                      if issubclass(type(cls), type) for klass in cls.__mro__
                      if klass in tracked)
    for prefix, table in tables:
        for name, value in list(table.items()):
            where = f"{prefix}.{name}"
            sent_digest = digests.get(where.translate(_SEPARATORS))
            if sent_digest is not None and type(value) not in _PLAIN:
                taken[id(value)] = (value, where, sent_digest)
    if not taken:
        return None
    token = _as_sent.set(taken)
    try:
        with _noting_modules(target):
            rows = _walk_rows(target)
            made = {row[1].translate(_SEPARATORS) for row in rows.values()}
            for kind, name, _ in sent:
                if (kind not in _NAMED_KINDS or name in made
                        or name.startswith("__main__.")):
                    continue
                value = _by_name(name)
                if value is _ABSENT:
                    return None
                _walk_value(value, name, rows, set())
                made.update(row[1].translate(_SEPARATORS) for row in rows.values())
        return _finished(target, rows)
    finally:
        _as_sent.reset(token)


_NAMED_KINDS = ("function", "class", "constant")


def _by_name(name: str) -> Any:
    """The object ``module.qualname`` names in this process (its module as imported, then
    each part in the namespace that defines it, as pickle finds a class or function by
    reference: no property or module ``__getattr__`` runs), or ``_ABSENT``."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        value: Any = module
        for part in parts[cut:]:
            try:
                value = vars(value).get(part, _ABSENT)
            except TypeError:  # no namespace: not a module or class
                return _ABSENT
            value = _unwrapped(value)
            if value is _ABSENT:
                return _ABSENT
        return value
    return _ABSENT


@contextlib.contextmanager
def unkept() -> Iterator[None]:
    """Inside, a walk ``dependencies`` makes is for the caller alone: what it finds (its
    rows, its record, the modules it read) is not kept, so the next walk reads the globals
    as they are then; one kept before is still used."""
    token = _unkept.set(True)
    try:
        yield
    finally:
        _unkept.reset(token)


_unkept: contextvars.ContextVar[bool] = contextvars.ContextVar("memojar_unkept", default=False)


def forget_dependencies(func: Any) -> None:
    """Drop what ``dependencies`` found for ``func``: its code or defaults were reassigned
    (``func.__code__ = other.__code__``), so the next ``dependencies(func)`` walks it again."""
    try:
        target = split(func)[0]
        _loaded_of.pop(target, None)
        del _deps_of[target]
    except (KeyError, TypeError):
        pass


def _class_of_method(func: Any) -> type | None:
    qualname = attribute(func, "__qualname__", str) or ""
    parts = qualname.split(".")
    if len(parts) < 2:
        return None
    if "<locals>" in parts:  # no module holds it by name: the one its first call met
        owner_of = _local_owners.get(func) if type(func) is FunctionType else None
        return None if owner_of is None else owner_of()
    module = attribute(func, "__module__", str) or ""
    owner: Any = sys.modules.get(module)
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
    found = owner if isinstance(owner, type) else None
    if found is not None and _holds_method(found, parts[-1], func):
        return found
    return _copied_class_of(func, module, ".".join(parts[:-1]), parts[-1]) or found


# A method of a class a function defines (``make.<locals>.Local.run``) -> its class, weakly,
# as its first call met it (``note_owner``).
_local_owners: weakref.WeakKeyDictionary[FunctionType, weakref.ref[type]] = (
    weakref.WeakKeyDictionary())


def in_local_class(func: Any) -> bool:
    """Whether ``func`` is a method of a class defined inside a function, which no module
    holds by name (``make.<locals>.Local.run``), so that ``_class_of_method`` cannot find
    its class: ``note_owner`` does, at its first call."""
    qualname = attribute(func, "__qualname__", str) or ""
    _, local, inside = qualname.rpartition("<locals>.")
    # (before: any method, ``Model.predict`` too, whose copies in loky workers then took
    # their sibling part again at their first call, and keyed apart from their sender)
    return type(func) is FunctionType and bool(local) and "." in inside


def _local_class(func: Any) -> type | None:
    """The class of ``func`` if it is a method of a class a function defines, else None."""
    return _class_of_method(func) if in_local_class(func) else None


def note_owner(func: FunctionType, first: Any) -> None:
    """The class of ``func``, a method of a class a function defines (``in_local_class``),
    from its call's first argument (``self``, or a classmethod's ``cls``): the class in its
    MRO that holds ``func`` at its name (else one holding it otherwise: ``run = Local.run``
    in another class). Its identity then counts that class (its other
    methods, the helpers they call, its attributes), as a method of a module's class
    counts its own. Before, nothing did: an edit of the method ``run`` calls through
    ``self`` returned the old value, and the methods of two classes one factory made
    (``make(2)``, ``make(5)``) had one identity, and one's calls returned the other's."""
    if func in _local_owners:
        return
    owner, _, name = func.__qualname__.rpartition(".")
    try:
        mro = first.__mro__ if isinstance(first, type) else type(first).__mro__
        found = next((cls for cls in mro if class_qualname(cls) == owner
                      and _holds_method(cls, name, func)), None) or next((
            # the class that holds it as its own: a method of another class of the
            # factory (``run = Local.run``, ``twice = Local.run``): before, none was noted
            # and the classes of make(2) and make(5) shared their results
            cls for cls in mro if any(_holds_method(cls, member, func) for member in vars(cls))
        ), None)
    except Exception as exc:  # noqa: BLE001 - a first argument of the user's: not a class
        _passed_over(exc)
        return
    if found is not None:
        _local_owners[func] = weakref.ref(found)
        forget_dependencies(func)  # walked without it (a look before the call)


def family_rows(func: Any, rows: Sequence[tuple[str, str, str]],
                ) -> Sequence[tuple[str, str, str]]:
    """The rows of ``func``'s identity that its siblings share (the sweep's note of its
    family): for a method of a class a function defines, without those of its class and
    its attributes, which differ from one class of the factory to another (``K = k``) and
    count in its sibling part (``_sibling_of``: the methods' code in its family's code).
    Before, the classes of one factory each wrote their own note, and every process's
    first store of each swept again."""
    owner = _local_class(func)
    if owner is None:
        return rows
    name = function_name(owner).translate(_SEPARATORS)
    return [row for row in rows if row[1] != name and not row[1].startswith(f"{name}.")]


def _copied_class_of(func: Any, module: str, qualname: str, name: str) -> type | None:
    """The class a copy of a method was unpickled with, where its module does not hold it
    (cloudpickle sends a class of ``__main__`` by value): the one cloudpickle tracks that
    holds ``func`` (or a decorated function wrapping it) under its name. A loky worker's
    ``__main__`` is another module: a worker's copy of a cached method did not follow its
    class, took what the class reaches as its sender saw it, and a helper that another
    method calls, edited before the workers started, was stored under the sender's
    identity (the sender's next run read 7 for 5). A dask or spawn worker's ``__main__``
    is the script imported again (``__mp_main__``), with a class of that name: the copy
    walked that class, the file's as the worker found it, not the one its code runs with
    (edited between, the copy stored the old method's value under the new class's
    identity, and the edited script's next run read 4 for 6)."""
    tracker = sys.modules.get("cloudpickle.cloudpickle")
    classes = getattr(tracker, "_DYNAMIC_CLASS_TRACKER_BY_ID", None)
    if classes is None:
        return None
    try:
        candidates = [cls for cls in list(classes.values()) if isinstance(cls, type)
                      and class_qualname(cls) == qualname and cls.__module__ == module]
    except Exception as exc:  # noqa: BLE001 - a private table of cloudpickle: not what we know
        _passed_over(exc)
        return None
    for cls in candidates:
        if _holds_method(cls, name, func):
            return cls
    return None


def _holds_method(cls: type, name: str, func: Any) -> bool:
    """Whether ``cls`` holds ``func`` (or a decorated function wrapping it) as ``name``."""
    member = vars(cls).get(name)
    member = attribute(member, "__func__") or member  # a staticmethod or classmethod
    for _ in range(10):  # its decorators' ``__wrapped__``, down to the function
        if member is func:
            return True
        member = attribute(member, "__wrapped__")
        if member is None:
            return False
    return False


def _code_names(code: CodeType, out: set[str]) -> set[str]:
    out.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            _code_names(const, out)
    return out


def _stored_globals(code: CodeType, out: set[str]) -> set[str]:
    """The global names ``code`` (and code it defines) binds or deletes (``global calls;
    calls += 1``)."""
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
            out.add(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            _stored_globals(const, out)
    return out


def _walk_callable(func: Any, rows: dict[str, tuple[str, str, str]], seen: set[int]) -> None:
    """Add what a function of the user's code refers to (not the function itself)."""
    if id(func) in seen:
        return
    seen.add(id(func))
    kind = type(func)
    if not issubclass(kind, (FunctionType, type)) and kind not in _CONTAINERS and (
            is_user_module(kind.__module__)):
        # An instance of the user's class that ``split`` leaves whole (a decorator class of
        # ``functools.update_wrapper`` under ``@cached``, or between it and the function):
        # what its class's code calls and reads (``return self.fn(*a) * FACTOR``) and what
        # its state holds, as for such an instance held in a global (``_walk_object``; its
        # code and state are in the fingerprint already). Before, the function it wraps
        # alone, and an edit of a global its ``__call__`` reads returned the old value.
        _walk_value(kind, function_name(kind), rows, seen)
        for item in _held(func):
            _walk_value(item, function_name(item), rows, seen)
    if _proxy(func):
        # A wrapt proxy: what its wrapper function calls and reads, and what its own state
        # holds (a method's instance, a subclass's ``_self_*``), as for a function this one
        # calls. Before, the function it wraps alone (the proxy passes ``__code__`` on).
        for item in _held([value for _, value in _proxy_state(func)]):
            _walk_value(item, function_name(item), rows, seen)
    wrapped = attribute(func, "__wrapped__")
    memo = _memo_of(wrapped)
    if memo is not None:  # memojar's wrapper (``@scaled`` above ``@cached``): what it was
        _walk_options(wrapped, rows, seen, None)  # decorated with, and the function it
        wrapped = memo.func  # wraps (not memojar's own code)
    if wrapped is not None and callable(wrapped):
        _walk_callable(split(wrapped)[0], rows, seen)
    code = attribute(func, "__code__", CodeType)
    namespace = attribute(func, "__globals__", dict)
    if not isinstance(code, CodeType) or not isinstance(namespace, dict):
        return
    names = _code_names(code, set())
    _read(namespace)
    record = _recording.get()
    if record is not None:
        record.function(func)
        record.lookups(namespace, names)
        record.writes(namespace, _stored_globals(code, set()))
    module = _module_name(func, namespace)
    accumulated = _accumulated.get()
    if accumulated is not None and _reads_mutable(names, namespace):
        for name in _mutated_globals(code):
            where = _where_of(name, namespace, module)
            if where is not None:
                accumulated.add(where)
    for name in sorted(names):
        # read once: a global another thread deletes between a look and a read raised
        # KeyError, which ended the walk (only the function's own code was tracked)
        value = namespace.get(name, _ABSENT)
        if value is not _ABSENT and name not in _MODULE_METADATA:
            if name == "__name__" and value == "__mp_main__":
                value = "__main__"
            _walk_value(value, f"{module}.{name}", rows, seen, names)
    # What its closure captures and its defaults (``def f(x, g=lambda v: scale(v))``): their
    # own code is in the function's fingerprint already; what they call is followed here.
    captured = [cell.cell_contents for cell in attribute(func, "__closure__", tuple) or ()
                if _filled(cell)]
    captured.extend(attribute(func, "__defaults__", tuple) or ())
    captured.extend((attribute(func, "__kwdefaults__", dict) or {}).values())
    for value in captured:
        # type(): isinstance would ask a proxy for its __class__, which may raise
        if issubclass(type(value), (FunctionType, type, functools.partial, MethodType)):
            _walk_value(value, function_name(value), rows, seen, names)
            continue
        if issubclass(type(value), ModuleType):  # ``m = helpers`` captured: as a global
            _walk_value(value, value.__name__, rows, seen, names)
            continue
        if type(value) in _PLAIN or issubclass(type(value), _ROUTINES):
            continue
        # ``steps=(clean, scale)``, an instance of the user's class (``Box(scale)``, a
        # default ``config=Config()``): its class's code and what they call too (before,
        # only containers: an instance's class and functions were not followed)
        kind = type(value)
        if kind not in _CONTAINERS and is_user_module(kind.__module__) and id(kind) not in (
                seen):
            _walk_value(kind, function_name(kind), rows, seen, names)
        for item in _held(value, whole=True):
            _walk_value(item, function_name(item), rows, seen, names)


# What Python and the way a module was loaded put in its namespace, not the user's data: a
# name loaded as an attribute (``func.__doc__``, ``cls.__annotations__``) is looked up among
# the globals too (``dependencies`` over-approximates), and these differ between a script
# and its workers (``__loader__``, ``__package__``, ``__builtins__``: a module or a dict; a
# spawn or forkserver worker's ``__main__`` has no ``__annotations__``, a loky copy's
# globals no ``__doc__``), so a function reading ``x.__doc__`` missed in every worker.
# ``__name__`` counts, with ``__mp_main__`` (a spawn or forkserver worker's) as ``__main__``:
# before, ``type(x).__name__`` made a spawn worker's identity another than its script's.
_MODULE_METADATA = frozenset({
    "__annotations__", "__builtins__", "__cached__", "__doc__", "__loader__",
    "__package__", "__spec__",
})


def _module_name(func: Any, namespace: dict[str, Any]) -> str:
    module = namespace.get("__name__") or attribute(func, "__module__", str) or "__main__"
    return "__main__" if module == "__mp_main__" else str(module)


def _reads_mutable(names: set[str], namespace: dict[str, Any]) -> bool:
    """Whether any of ``names`` is a global list, dict, set or deque of ``namespace``, or
    one of a module or class it holds: only then is the code read for what it changes in
    place (``_mutated_globals``, about a millisecond a function)."""
    try:
        for name in names:
            value = namespace.get(name)
            if isinstance(value, _MUTABLE):
                return True
            if isinstance(value, ModuleType):
                tables: Any = (vars(value),)
            elif isinstance(value, type):
                tables = [vars(klass) for klass in value.__mro__]
            else:
                continue
            if any(isinstance(table.get(other), _MUTABLE) for table in tables
                   for other in names):
                return True
    except Exception as exc:  # noqa: BLE001 - whatever an odd object raised: read the code
        _passed_over(exc)
        return True
    return False


def _where_of(name: str, namespace: dict[str, Any], module: str) -> str | None:
    """The ``module.name`` (``module.Class.name``) of the walk's rows that a global
    ``name`` (``LOG``, ``helpers.LOG``, ``Model.instances``) read in ``namespace`` has,
    through modules and classes; None for anything else."""
    first, *rest = name.split(".")
    value = namespace.get(first, _ABSENT)  # each read once (as ``_walk_callable``)
    if value is _ABSENT:
        return None
    where = f"{module}.{first}"
    for part in rest:
        if isinstance(value, ModuleType):
            where, value = f"{value.__name__}.{part}", vars(value).get(part, _ABSENT)
        elif isinstance(value, type):
            owner, value = next(((k, found) for k in value.__mro__ if (
                found := vars(k).get(part, _ABSENT)) is not _ABSENT), (None, None))
            if owner is None:
                return None
            where = f"{function_name(owner)}.{part}"
        else:
            return None
    return where


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _add(rows: dict[str, tuple[str, str, str]], row: tuple[str, str, str]) -> None:
    """Add a row by its name; a second, different one of the same name (two lambdas, two
    functions of one factory) is kept too, under its name and fingerprint."""
    present = rows.setdefault(row[1], row)
    if present != row:
        rows.setdefault(f"{row[1]}#{row[2]}", row)


_ROUTINES = (BuiltinFunctionType, MethodWrapperType, MethodDescriptorType,
             WrapperDescriptorType, ClassMethodDescriptorType)


def _walk_value(value: Any, where: str, rows: dict[str, tuple[str, str, str]],
                seen: set[int], names: AbstractSet[str] | None = None) -> None:
    """One global (``where`` is its ``module.name``) a function of the user's code loads.

    A global that raises when looked at (a context proxy, ``flask.current_app`` outside its
    context, raises at any attribute, ``__class__`` for ``isinstance`` too) counts by its
    type: the rest of the walk goes on (it stopped, and the function's helpers went
    untracked). One that another thread changed meanwhile is named (the innermost such
    global) for the warning of a walk made again in vain (``_walked``)."""
    changes = getattr(_walk, "changes", 0)  # (``_changes``, inline: once a global)
    try:
        _walk_global(value, where, rows, seen, names)
    except Exception as exc:  # noqa: BLE001 - whatever the object raised
        _passed_over(exc)
        if is_user_module(where.rpartition(".")[0]):
            shape = _type_shape(value)
            _add(rows, ("constant", where, xxhash.xxh3_64_hexdigest(repr(shape).encode())))
    if getattr(_walk, "changes", 0) != changes and getattr(_walk, "named_at", -1) <= changes:
        _named().append(where)  # none inside it was named: the innermost
        _walk.named_at = _changes()


def _cached_options(func: Any) -> tuple[list[tuple[str, str, str]], list[Any]]:
    """What a function memojar decorated, which this one calls, was decorated with beside
    its code: its ``version=`` and ``depends_on=`` (and ``key=``, ``ignore=``), as rows
    named by it, and the callables it depends on. A bump of a cached helper's version
    (its data file changed) says its values changed, and so do the values of a cached
    function computed from them. Before, the caller's identity followed the helper's code
    alone, and kept returning what it had computed from the old values. No rows for a
    function decorated with none of them: its callers' identities are as before.

    The rows are those of the helper's own identity (its memo's ``option_rows``:
    ``_depends.callable_rows`` for the callables), so the two cannot disagree. Before, the
    caller walked the callables as globals, which gives a library callable no row of its
    state: under ``depends_on=[operator.itemgetter(K)]`` or ``key=itemgetter("qty")``, a
    change of ``K`` or of the field made the helper recompute and its callers return the
    old value."""
    memo = _memo_of(func)
    version, depends = getattr(memo, "version", None), getattr(memo, "depends_on", None)
    options = getattr(memo, "option_rows", None)
    if not isinstance(depends, tuple) or len(depends) != 2 or not callable(options):
        return [], []
    with _own_budget():  # as the helper's identity takes them, outside any walk's
        own = options()
    name = function_name(func)
    rows = [(kind, what, digest) if kind == "package" else ("cached", f"{name}({what})", digest)
            for kind, what, digest in own]
    if version is not None:
        rows.append(("cached", f"{name}(version=)", _constant_digest(version)))
    return rows, list(depends[1])


@contextlib.contextmanager
def taking_options(memo: Any) -> Iterator[bool]:
    """Inside, ``memo``'s option rows are being taken (``_Memo.option_rows``); yields
    whether they were already, in this context: a callable of its ``depends_on=`` that
    calls it (``depends_on=[f]``, ``f`` calls the helper) reaches them again, and takes
    its rows known at decoration only there (else: for ever)."""
    taking = _options_taken.get()
    if id(memo) in taking:
        yield True
        return
    token = _options_taken.set(taking | {id(memo)})
    try:
        yield False
    finally:
        _options_taken.reset(token)


_options_taken: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "memojar_options_taken", default=frozenset())


def _walk_options(func: Any, rows: dict[str, tuple[str, str, str]], seen: set[int],
                  names: AbstractSet[str] | None) -> None:
    """The rows of what memojar's wrapper ``func`` was decorated with (``_cached_options``),
    and what the callables among them call."""
    options, callables = _cached_options(func)
    for row in options:
        _add(rows, row)
    for item in callables:
        _walk_value(item, function_name(item), rows, seen, names)


def _walk_global(value: Any, where: str, rows: dict[str, tuple[str, str, str]],
                 seen: set[int], names: AbstractSet[str] | None = None) -> None:
    memo = _memo_of(value) if isinstance(value, FunctionType) else None
    given = value
    if memo is not None:
        # A function memojar decorated (another cached function this one calls) counts as
        # the function it wraps, as in ``_callable_shape``: its wrapper's closure holds the
        # memo, whose state changes with its calls. Before, its row did: a caller missed
        # ("the code changed") whenever the other had been called first in its process.
        _walk_options(value, rows, seen, names)
        wrapped = memo.func
        if isinstance(wrapped, FunctionType):
            value = wrapped
    if not isinstance(value, (FunctionType, type, ModuleType)) and callable(value) and (
            not is_user_module(type(value).__module__)):
        # A library's wrapper (``functools.lru_cache`` and the like) counts as the function
        # it wraps. Not an instance of the user's class (a decorator class of
        # ``functools.update_wrapper``): its class's code runs too (``__call__``), and its
        # state says what it wraps (``_walk_object``). Before, it counted as the function
        # it wraps alone, and an edit of its ``__call__`` returned the old value.
        wrapped = attribute(value, "__wrapped__")
        if isinstance(wrapped, (FunctionType, *_ROUTINES)):
            value = wrapped
    if isinstance(value, FunctionType):
        found = function_identity(value)
        if found is not None:
            _add(rows, ("function", *found))
            _walk_callable(value, rows, seen)
            attributes = attribute(value, "__dict__")
            if attributes and "__memojar__" not in attributes:
                # what its attributes hold (``scale.impl = inner``, ``run.ops = {...}``):
                # before, not followed, and an edit of it returned the old value. (Not
                # those a wrapper of ``functools.wraps`` copied from memojar's: the memo,
                # ``cache_info``; the function they are about is walked.)
                for item in _held(attributes):
                    _walk_value(item, function_name(item), rows, seen, names)
                _attribute_rows(value, found[0], attributes, rows)
            if memo is not None:  # set on memojar's wrapper, ``f.factor = 2`` under ``@cached``
                _attribute_rows(value, found[0], attribute(given, "__dict__") or {}, rows)
        else:  # a library function (``join = os.path.join``): by its name
            _library_row(value, where, rows)
            if hasattr(value, "__wrapped__"):  # a library decorator's wrapper of user code
                _walk_callable(value, rows, seen)
    elif isinstance(value, type):
        found = class_identity(value)
        if found is None:  # a library class (``DTYPE = float``): by its name
            _library_row(value, where, rows)
        if found is not None and id(value) not in seen:
            seen.add(id(value))
            record = _recording.get()
            if record is not None:
                record.klass(value)
            _add(rows, ("class", *found))
            registered = _registered(value)
            if registered:  # its virtual subclasses: ``isinstance`` answers by them
                _add(rows, ("constant", f"{found[0]}.<registered>",
                            xxhash.xxh3_64_hexdigest(repr(registered).encode())))
            discovers = names is not None and "__subclasses__" in names
            for klass in value.__mro__:
                if not is_user_module(klass.__module__):
                    continue
                for name, member in vars(klass).items():
                    member = _unwrapped(member)
                    for function in _dispatched(member, value):
                        _walk_value(function, function_name(function), rows, seen, names)
                    if isinstance(member, property) or _runs(member):
                        # A hook that runs as classes are made (``__init_subclass__``, a
                        # metaclass's ``__new__``) fills a registry once, at import: what
                        # it changes in place is no accumulator of the function's, and
                        # counts by its contents (before, by type: the keys swapped in the
                        # module, ``registry["a"]`` returned the old class's value).
                        hook = name in _CLASS_HOOKS or (
                            name in _METACLASS_HOOKS and issubclass(value, type))
                        token = _accumulated.set(set()) if hook else None
                        try:
                            for function in _runs(member):
                                discovers = discovers or _discovers(function.__code__)
                                _walk_callable(function, rows, seen)
                        finally:
                            if token is not None:
                                _accumulated.reset(token)
                        if isinstance(member, property):  # what a ``partial`` accessor
                            for item in _held([accessor for accessor in (  # calls
                                    member.fget, member.fset, member.fdel)
                                    if not isinstance(accessor, FunctionType)]):
                                _walk_value(item, function_name(item), rows, seen, names)
                    elif isinstance(member, ModuleType):  # ``_reach``
                        continue
                    elif isinstance(member, type) or _data_attribute(name, member, klass) or (
                            _named_data(name, member, value)) or (
                            _named_builtin(name, member, klass, value)):
                        # a nested class (followed), a class attribute (``self.FACTOR``,
                        # ``op = partial(scale)``, ``__tablename__ = "users"``, ``__str__ =
                        # str.upper``): a constant row, and what it calls
                        _walk_value(member, f"{function_name(klass)}.{name}", rows, seen,
                                    names)
                # what the fields a library recorded run: a pydantic field's
                # ``default_factory``, in no method (before, counted by its name only), a
                # function in a dataclass field's ``metadata``
                for record_name in (*_FIELD_RECORDS, "__dataclass_fields__"):
                    fields = vars(klass).get(record_name)
                    if fields is not None and not callable(fields):
                        for item in _held(fields):
                            _walk_value(item, function_name(item), rows, seen)
            if discovers:
                # ``Base.__subclasses__()`` (in the function or a method of the class): the
                # subclasses it finds run, wherever they are defined (a plugin module the
                # function names nowhere). Before, not followed: an edit of a plugin's
                # method returned the old value.
                for sub in _subclasses(value):
                    _walk_value(sub, function_name(sub), rows, seen, names)
            # its metaclass, whose ``__call__`` makes its instances (before: not followed)
            meta = type(value)
            if meta is not type and is_user_module(meta.__module__):
                _walk_value(meta, function_name(meta), rows, seen)
        if found is not None:  # at each function that reaches it, by that one's names
            _reach(value, rows, seen, names)
    elif isinstance(value, ModuleType):
        if not is_user_module(value.__name__):  # ``import math as M``: by its name
            _library_row(value, where, rows)
            return
        if names is None or id(value) in seen:
            return
        walked = _modules_walked.get()
        if walked is not None:  # once a module and set of names a walk: modules that
            done = (id(value), frozenset(names))  # import each other were walked in
            if done in walked:  # every order (minutes at ten of them)
                return
            walked.add(done)
        seen.add(id(value))
        namespace = vars(value)
        _read(namespace)
        record = _recording.get()
        if record is not None:
            record.lookups(namespace, names)
        for name in sorted(names):
            found = namespace.get(name, _ABSENT)  # read once (as ``_walk_callable``)
            if found is not _ABSENT:
                _walk_value(found, f"{value.__name__}.{name}", rows, seen, names)
        seen.discard(id(value))  # another function may reach other names of it
    elif isinstance(value, _MUTABLE) and where in (_accumulated.get() or ()):
        # an accumulator of the functions walked: by its type, and the functions and
        # classes it holds (a registry they fill) by their code
        if is_user_module(where.rpartition(".")[0]):
            shape = _type_shape(value)
            _add(rows, ("constant", where, xxhash.xxh3_64_hexdigest(repr(shape).encode())))
        if id(value) not in seen:
            seen.add(id(value))
            for item in _held(value):
                _walk_value(item, function_name(item), rows, seen, names)
    elif _constant(value):
        if is_user_module(where.rpartition(".")[0]):
            _add(rows, ("constant", where, _constant_digest(value)))
    elif isinstance(value, _ROUTINES):  # ``op = max``, ``upper = str.upper``: by name
        _library_row(value, where, rows)
    elif id(value) not in seen:
        _walk_object(value, where, rows, seen, names)
    elif names is not None:  # reached again, by another function: the modules it holds
        _reach(value, rows, seen, names)  # by this one's names too


def _attribute_rows(func: Any, name: str, attributes: dict[str, Any],
                    rows: dict[str, tuple[str, str, str]]) -> None:
    """A constant row for each plain value of no container a function of the user's code
    holds as an attribute (``scale.factor = 2``, read as ``scale.factor`` in its code), by
    value, as a module constant. Before, such a value counted for nothing: the cell that
    defines ``scale`` edited to ``scale.factor = 3`` and run again, a kernel started after
    the edit, or a module reloaded by ``%autoreload``, returned the old factor's value.
    Not what the function's own code binds (``scale.calls += 1``, a counter: by its
    value, each process would make another identity), and not lists, dicts or sets (a
    memo it fills, ``fib.memo[n] = v``), as a global's accumulators are not."""
    code = attribute(func, "__code__", CodeType)
    stored = _stored_attributes(code) if code is not None else frozenset()
    for attr in sorted(k for k in attributes if isinstance(k, str)):
        item = attributes[attr]
        if (attr.startswith("__") and attr.endswith("__")) or attr in stored or (
                type(item) not in _PLAIN_TYPES and type(item) not in (tuple, frozenset)):
            continue
        if _constant(item):
            _add(rows, ("constant", f"{name}.{attr}", _constant_digest(item)))


@functools.lru_cache(maxsize=1024)
def _stored_attributes(code: CodeType) -> frozenset[str]:
    """The attribute names ``code`` (and code it defines) binds or deletes on anything."""
    out = {instruction.argval for instruction in dis.get_instructions(code)
           if instruction.opname in ("STORE_ATTR", "DELETE_ATTR")}
    for const in code.co_consts:
        if isinstance(const, CodeType):
            out |= _stored_attributes(const)
    return frozenset(out)


def _library_row(value: Any, where: str, rows: dict[str, tuple[str, str, str]]) -> None:
    """A global of the user's code bound to a library module, function, class or built-in
    (``import math as M``, ``op = operator.add``, ``DTYPE = float``, ``shout = "x".upper``):
    a constant row of the name it is bound to, with the object a bound built-in method
    belongs to. Before, such a global counted for nothing: editing ``op = operator.add``
    to ``operator.mul`` returned the old code's value. Only a global's (``where`` is
    ``module.name``): what a closure, a default or a table holds counts in its own shape."""
    module = where.rpartition(".")[0]
    if not module or module.startswith("__unknown__") or not is_user_module(module):
        return
    shape: tuple[Any, ...] = (("module", value.__name__) if isinstance(value, ModuleType)
                              else ("named", function_name(value)))
    owner = attribute(value, "__self__")
    if owner is not None and not isinstance(owner, (ModuleType, type)):
        shape += ((function_name(type(owner)),) if _exported(value) else _state_shape(owner),)
    elif isinstance(owner, type):
        shape += (function_name(owner),)
    _add(rows, ("constant", where, xxhash.xxh3_64_hexdigest(repr(shape).encode())))


def _exported(method: Any) -> bool:
    """Whether a bound method is a library module's own function, made as a method of a
    hidden instance (``random.random``, ``random.choice``, ``numpy.random.rand``): it counts
    by its name, not by the instance's state, which each process seeds anew (by state, every
    process missed)."""
    owner = attribute(method, "__self__")
    name = attribute(method, "__name__", str)
    module = sys.modules.get(getattr(type(owner), "__module__", None) or "")
    if not isinstance(name, str) or module is None or is_user_module(module.__name__):
        return False
    try:
        return bool(getattr(module, name, None) == method)
    except Exception as exc:  # noqa: BLE001 - whatever a library's __eq__ raised
        _passed_over(exc)
        return False


_MODULE_DICT = vars(ModuleType)["__dict__"].__get__  # past its class's attributes


def module_globals(module: object) -> dict[str, Any] | None:
    """The globals of ``module`` if it is a module: also of a subclass's (a module whose
    ``__class__`` was set to one, for a ``__getattr__`` of deprecations), read without its
    class's lookup (a lazy module's ``__dict__`` imported it). Before, ``type(module) is
    ModuleType`` only: the sentinels of such a module keyed by a script's name for them,
    which another script's own ``MISSING = object()`` shared (a wrong value)."""
    return _MODULE_DICT(module) if issubclass(type(module), ModuleType) else None


def _module_of(where: str) -> dict[str, Any] | None:
    """The globals of the module a global's or a class attribute's ``where`` names
    (``mod.NAME``, ``mod.Class.NAME``): a class attribute's module is a shorter prefix.
    Before, only ``mod.NAME``'s: a sentinel in ``class C: MODES = [ALL]`` hashed as any."""
    found = None
    while "." in where and found is None:
        where = where.rpartition(".")[0]
        found = module_globals(sys.modules.get(where))
    return found


def _walk_object(value: Any, where: str, rows: dict[str, tuple[str, str, str]],
                 seen: set[int], names: AbstractSet[str] | None) -> None:
    """Any other global: a partial (``triple = partial(scale, k=3)``), a bound method
    (``predict = model.predict``), a table of functions (``OPS = {"s": scale}``), an
    instance (``CONFIG = Config(k=2)``, a callable one), a numpy array: what it calls is
    followed, and its value counts (a row of its state, as a partial's arguments or a
    default count: pickled, once per process; an object that cannot be pickled counts by
    its type)."""
    seen.add(id(value))
    sent = _as_sent.get()
    if sent is not None:  # a copy's data global: its sender's row (``copy_dependencies``)
        taken = sent.get(id(value))
        if taken is not None and taken[0] is value and taken[1] == where:
            _add(rows, ("constant", where, taken[2]))
            return
    if isinstance(value, functools.partial):
        _walk_value(value.func, where, rows, seen, names)
    elif isinstance(value, MethodType):
        if _exported(value):  # ``from random import choice``: by its name
            _library_row(value, where, rows)
            return
        _walk_value(value.__func__, where, rows, seen, names)
        _walk_value(value.__self__, where, rows, seen, names)
    elif type(value) not in _CONTAINERS and is_user_module(type(value).__module__):
        # an instance of a class of the user's code (``model = Model()``): its class's
        # code (``model.predict(x)``), and its state below
        _walk_value(type(value), function_name(type(value)), rows, seen, names)
    # the functions and classes it holds, at any depth (a decorator class's ``self.func``,
    # in ``__slots__`` too; ``PIPE = [{"steps": (clean,)}]``; a library's transformer given
    # one of the user's functions; a partial's arguments): what they call. Before, only
    # those at its first level: the state below counts their own code, not their helpers.
    inside = _held(value)
    for item in inside:
        _walk_value(item, function_name(item), rows, seen, names)
    holders = _holders.get()
    if holders is not None:  # for another function that reaches it (``_reach``)
        classes = [item for item in inside if isinstance(item, type)]
        if type(value) not in _CONTAINERS and is_user_module(type(value).__module__):
            classes.append(type(value))
        modules = [(item.__name__, item) for item in inside if isinstance(item, ModuleType)]
        if modules or classes:  # (none: nothing to look up again)
            holders[id(value)] = _Holder(value, modules, classes, frozenset(), set(names or ()))
    if not is_user_module(where.rpartition(".")[0]):
        return
    # Data (an array, a frame, an instance, a table without callables) counts by its
    # state alone: a rebuilt identity reuses what the last one hashed of the same object.
    record = _recording.get()
    found = record.state_of(value) if record is not None else None
    if found is None:
        changes = _changes()
        held: dict[int, Any] = {}  # each function and class whose code the digest counts
        previous, _walk.met = getattr(_walk, "met", None), held
        large: list[bool] = []
        near = near_globals.set(_module_of(where))
        try:
            with _noting_too_large(large):
                shape = _value_shape(value, set(), by_state=type(value) not in _CONTAINERS)
                data = shape[0] in ("state", "type")  # not a callable's code
                if type(value) in _CONTAINERS and shape[0] == "type":  # no callables
                    shape = _state_shape(value)  # its state
        finally:
            _walk.met = previous
            near_globals.reset(near)
        if large[0]:
            too_large[where] = type(value).__name__
        else:
            too_large.pop(where, None)
        found = (xxhash.xxh3_64_hexdigest(repr(shape).encode()), tuple(held.values()))
        if record is not None and data and _changes() == changes:  # (else: walked again)
            record.states[id(value)] = (_hold(value), *found)
    digest, counted = found
    _add(rows, ("constant", where, digest))
    # What those call, wherever they are in it: past the objects ``_held`` looks at (a
    # table of 20,000 entries, nesting over 20 levels), in a deque, an OrderedDict, a dict
    # or list subclass. Before, their own code counted and an edited helper of theirs
    # returned the old value.
    for item in counted:
        _walk_value(item, function_name(item), rows, seen, names)


def _discovers(code: CodeType) -> bool:
    """Whether ``code`` (or code it defines) looks up ``__subclasses__``."""
    return "__subclasses__" in _code_names(code, set())


def _subclasses(cls: type) -> list[type]:
    """The subclasses of ``cls`` of the user's code, at any depth, in the order made."""
    found: list[type] = []
    todo: list[Any] = [cls]
    seen = {id(cls)}
    while todo:
        try:
            subclasses: list[Any] = type.__subclasses__(todo.pop(0))
        except Exception as exc:  # noqa: BLE001 - a metaclass of the user's in the way
            _passed_over(exc)
            continue
        for sub in subclasses:
            if id(sub) not in seen:
                seen.add(id(sub))
                todo.append(sub)
                if is_user_module(sub.__module__):
                    found.append(sub)
    return found


_CLASS_HOOKS = frozenset({"__init_subclass__", "__set_name__"})
_METACLASS_HOOKS = frozenset({"__new__", "__init__", "__prepare__"})


def _registered(cls: type) -> list[str]:
    """The names of the classes an ABC of the user's (``cls``) and its subclasses, which
    ``isinstance`` and ``issubclass`` consult too, ``register`` as virtual subclasses,
    sorted; none for another class. Module code, in no method nor class attribute: before,
    ``Shape.register(Square)`` deleted returned the old ``isinstance(Square(), Shape)``."""
    if not isinstance(cls, abc.ABCMeta):
        return []
    names: set[str] = set()
    todo: list[Any] = [cls]
    seen = {id(cls)}
    while todo:
        klass = todo.pop()
        try:
            dump = getattr(abc, "_get_dump", None)  # the C ``_abc``'s; else ``_py_abc``'s
            refs = dump(klass)[0] if dump is not None else klass._abc_registry.data
            subclasses: list[Any] = type.__subclasses__(klass)
        except Exception as exc:  # noqa: BLE001 - a metaclass of the user's in the way
            _passed_over(exc)
            continue
        names.update(function_name(found) for ref in list(refs)
                     if isinstance(found := ref(), type))
        for sub in subclasses:
            if id(sub) not in seen:
                seen.add(id(sub))
                todo.append(sub)
    return sorted(names)


def _reach(holder: Any, rows: dict[str, tuple[str, str, str]], seen: set[int],
           names: AbstractSet[str] | None) -> None:
    """The modules a class or object walked holds (``lib = helpers`` in a class or its bases,
    ``MODS = [helpers]``, ``NS = SimpleNamespace(lib=helpers)``; an object's classes' too),
    looked up by the names of each function of the walk that reaches it (``MODS[0].h(x)``),
    as a module global is by the names of each function that loads it, and a class's by
    the names its methods load (``self.lib.g(x)``).

    Before, by those of the first function that reached it alone: an edit of ``helpers.h``
    returned the old value when another global, walked first, returned the holder
    (``A_first()``: in the alphabetical order of the names). Before that, a class's by the
    caller's names alone, and an edit of a helper ``self.lib.g(x)`` called did too."""
    known = _holders.get()
    record = known.get(id(holder)) if known is not None else None
    if record is None:
        if not isinstance(holder, type):  # an object ``_walk_object`` did not note
            if is_user_module(type(holder).__module__):
                _reach(type(holder), rows, seen, names)
            return
        modules = _class_modules(holder)
        record = _Holder(holder, modules, [], _class_names(holder) if modules else frozenset(),
                         set())
        if known is not None:
            known[id(holder)] = record
    if record.reached and (names is None or record.reached.issuperset(names)):
        return
    record.reached.update(names or ())
    if record.modules:
        reach = record.names.union(names or ())
        for where, module in record.modules:
            _walk_value(module, where, rows, seen, reach)
    for klass in record.classes:
        _reach(klass, rows, seen, names)


def _class_modules(cls: type) -> list[tuple[str, ModuleType]]:
    """The modules a class of the user's (its bases too) holds as attributes, or inside its
    data attributes (``ns = SimpleNamespace(lib=helpers)``, ``LIBS = {"lib": helpers}``:
    before, those were looked up by the names of the function that reached the class
    alone, not its methods', and ``self.ns.lib.g(x)`` in a method went untracked)."""
    found: list[tuple[str, ModuleType]] = []
    for klass in cls.__mro__:
        if not is_user_module(klass.__module__):
            continue
        for name, member in list(vars(klass).items()):
            if isinstance(member, ModuleType):
                found.append((f"{function_name(klass)}.{name}", member))
            elif type(member) not in _PLAIN and _data_attribute(name, member, klass):
                found.extend((item.__name__, item) for item in _held(member)
                             if isinstance(item, ModuleType))
    return found


class _Holder(NamedTuple):
    """A class or object of a walk, for ``_reach``: the modules it holds (with the
    ``module.name`` of each), the classes it holds, the names a class's methods load, and
    the names the functions that reached it load, so far."""

    holder: Any  # (held: its id is not reused during the walk)
    modules: list[tuple[str, ModuleType]]
    classes: list[type]
    names: frozenset[str]
    reached: set[str]


# Per walk: each class and object that holds modules, by id (``_reach``).
_holders: contextvars.ContextVar[dict[int, _Holder] | None] = contextvars.ContextVar(
    "memojar_holders", default=None)


def _class_names(cls: type) -> frozenset[str]:
    """The names the code of a class of the user's loads, its bases' too (globals and
    attributes alike: ``self.lib.g`` loads ``lib`` and ``g``)."""
    out: set[str] = set()
    for klass in cls.__mro__:
        if not is_user_module(klass.__module__):
            continue
        for member in map(_unwrapped, list(vars(klass).values())):
            for function in _runs(member):
                if isinstance(function.__code__, CodeType):
                    _code_names(function.__code__, out)
    return frozenset(out)


def _runs(member: Any) -> list[FunctionType]:
    """The functions a class member (unwrapped from staticmethod or classmethod) runs: a
    method itself, a property's accessors, what a cached_property or partialmethod holds."""
    if isinstance(member, property):
        found: tuple[Any, ...] = (member.fget, member.fset, member.fdel)
    elif isinstance(member, FunctionType):
        found = (member,)
    else:
        found = (_member_function(member),)
    return [f for f in found if isinstance(f, FunctionType)]


def _dispatched(member: Any, cls: type) -> list[FunctionType]:
    """The implementations a class member that is a ``functools.singledispatchmethod``
    registered (``cls`` holds it) which no member of ``cls`` or of its bases of the user's
    code runs (``_runs``: those count in its fingerprint already): the ``int`` one of two
    ``def _`` (the second takes the name), one registered outside the class
    (``conv.register(int, helpers.two)`` in its body, ``@C.conv.register`` in another
    module), each one of a generic ``classmethod`` or ``staticmethod``. Each is a helper
    of a function reaching the class. Before, the class counted the generic function
    alone (the ``func`` it holds), and an edit of any other returned the old value. (A
    ``singledispatch`` function holds its registry in its closure, which counts already.)"""
    if not isinstance(member, functools.singledispatchmethod):
        return []
    registry = attribute(attribute(member, "dispatcher"), "registry", Mapping)
    if registry is None:
        return []
    counted = {id(function) for klass in cls.__mro__ if is_user_module(klass.__module__)
               for held in list(vars(klass).values()) for function in _runs(_unwrapped(held))}
    implementations = [_unwrapped(f) for f in list(registry.values())]
    return [f for f in implementations if type(f) is FunctionType and id(f) not in counted]


def met(obj: Any) -> None:
    """Note a function or class whose code a global's digest counts (``_walk_object``):
    ``_keys.state_key`` meets them pickling its state, ``_callable_shape`` in a table."""
    found = getattr(_walk, "met", None)
    if found is not None:  # once each (a class pickled with each of its instances)
        found.setdefault(id(obj), obj)


_CONTAINERS = (tuple, list, dict, set, frozenset)
_HELD_LIMIT = 10_000  # objects looked at inside one global for the functions it holds
_HELD_DEPTH = 20


def _held(value: Any, whole: bool = False) -> list[Any]:
    """The functions and classes ``value`` holds inside it (not itself), at any depth: in
    containers, a partial's function and arguments, a bound method's function and
    instance, an object's attributes (``__dict__`` and ``__slots__``); for an instance of
    a class of the user's code, its class. At most ``_HELD_LIMIT`` objects are looked at
    (a big table of numbers stops there, unless ``whole``: see ``_children``), each once."""
    found: list[Any] = []
    visited = {id(value)}
    stack = [(value, 0)]
    budget = _HELD_LIMIT
    layouts: dict[type, tuple[str, ...] | None] = {}  # each class's, once (``_layout``)
    while stack and budget > 0:
        item, depth = stack.pop()
        kind = type(item)
        try:
            slots = layouts[kind]
        except KeyError:
            slots = layouts[kind] = _layout(kind)
        for child in _children(item, whole) if slots is None else _attribute_children(
                item, slots):
            budget -= 1
            if budget <= 0:
                break
            kind = type(child)
            if kind in _PLAIN or id(child) in visited:
                continue
            visited.add(id(child))
            if kind is FunctionType or isinstance(child, type):
                found.append(child)
                continue
            if isinstance(child, ModuleType):  # ``MODS = {"h": helpers}``: its names the
                if is_user_module(child.__name__):  # function loads, as for a global module
                    found.append(child)
                continue
            if isinstance(child, _ROUTINES):
                continue
            if id(kind) not in visited and is_user_module(kind.__module__) and (
                    kind not in _CONTAINERS):
                visited.add(id(kind))  # once: 10,000 instances of a class are one class
                found.append(kind)  # an instance of the user's class: its class's code
            if depth < _HELD_DEPTH:
                stack.append((child, depth + 1))
    return found


def _children(item: Any, whole: bool = False) -> list[Any]:
    """What ``item`` holds, for ``_held``; nothing if looking raises.

    A table's or sequence's first ``_HELD_LIMIT`` items, also in a subclass of dict or list,
    a deque, a read-only view of a table (read as the built-in type does, never by a method
    the subclass overrides), then the subclass instance's attributes. ``whole``: its first
    ``_HELD_LIMIT`` items that are not plain data, wherever they are (plain items are
    skipped a container at a time, 40 ms a million: what a closure or default captures,
    which no digest of its state follows as a global's does, ``_walk_object``; before, a
    helper stored after a big table's numbers was not followed)."""
    try:
        kind = type(item)
        typed = _typing_children(item)
        if typed is not None:
            return typed
        parts: tuple[Callable[[], Any], ...] = ()
        if issubclass(kind, (dict, MappingProxyType)):
            view: Any = dict if issubclass(kind, dict) else MappingProxyType
            parts = (lambda: view.keys(item), lambda: view.values(item))
        else:
            base: Any = next((b for b in _SEQUENCES if issubclass(kind, b)), None)
            if base is not None:
                parts = (lambda: base.__iter__(item),)
        found = list(itertools.islice(
            (child for part in parts if not set(map(type, part())) <= _PLAIN_TYPES
             for child in part() if type(child) not in _PLAIN_TYPES) if whole else
            itertools.chain.from_iterable(part() for part in parts), _HELD_LIMIT))
        if kind in _CONTAINERS or kind is MappingProxyType:
            return found
        if isinstance(item, functools.partial):
            return [item.func, *item.args, *item.keywords.values()]
        if isinstance(item, MethodType):
            return [item.__func__, item.__self__]
        # A weak table or set (``REGISTRY = WeakValueDictionary(scale=scale)``): what it
        # holds now; before, its weak references were not followed and an edit returned the
        # old value. Weak references elsewhere are not (memojar's own, a library's: what
        # they lead to differs between processes, as the keys would).
        if isinstance(item, _WEAK_TABLES):
            return list(itertools.islice(
                itertools.chain.from_iterable(item.items()), _HELD_LIMIT))
        if isinstance(item, weakref.WeakSet):
            return list(itertools.islice(item, _HELD_LIMIT))
        attributes = getattr(item, "__dict__", None)
        if type(attributes) is dict:
            found.extend(itertools.islice(attributes.values(), 1000))
        for klass in kind.__mro__:
            slots = vars(klass).get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if isinstance(name, str) and name not in ("__dict__", "__weakref__"):
                    found.append(getattr(item, name, None))
        return found
    except Exception as exc:  # noqa: BLE001 - whatever the object raised: nothing more of it
        _passed_over(exc)
        return []


def _layout(kind: type) -> tuple[str, ...] | None:
    """The slot names of a class whose instances hold what ``_children`` finds in their
    ``__dict__`` and slots alone (none of its tables, sequences, partials, bound methods or
    weak tables, nor a ``__class__`` of its own, which ``isinstance`` would ask), else None.
    Looked up once a class in a walk: 5,000 instances of one class cost a copy's check 20 ms
    more in ``_children``'s tests than in their attributes."""
    try:
        if (issubclass(kind, (dict, MappingProxyType, *_SEQUENCES, functools.partial,
                              MethodType, *_WEAK_TABLES, weakref.WeakSet))
                or typing_kind(kind) or _alias_kind(kind)
                or any("__class__" in vars(klass) for klass in kind.__mro__[:-1])):
            return None
        names: list[str] = []
        for klass in kind.__mro__:
            slots = vars(klass).get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if isinstance(name, str) and name not in ("__dict__", "__weakref__"):
                    names.append(name)
        return tuple(names)
    except Exception as exc:  # noqa: BLE001 - an odd class: ``_children`` looks at it each time
        _passed_over(exc)
        return None


def _attribute_children(item: Any, slots: tuple[str, ...]) -> list[Any]:
    """``_children`` of an instance of a class whose ``_layout`` is ``slots``."""
    try:
        found: list[Any] = []
        attributes = getattr(item, "__dict__", None)
        if type(attributes) is dict:
            found.extend(itertools.islice(attributes.values(), 1000))
        for name in slots:
            found.append(getattr(item, name, None))
        return found
    except Exception as exc:  # noqa: BLE001 - whatever the object raised: nothing more of it
        _passed_over(exc)
        return []


_SEQUENCES = (list, tuple, set, frozenset, collections.deque)
_WEAK_TABLES = (weakref.WeakValueDictionary, weakref.WeakKeyDictionary)
_PLAIN_TYPES = frozenset(_PLAIN)


def _constant(value: Any) -> bool:
    """A module-level value of plain type: numbers, strings, bytes, None, and tuples, lists,
    dicts and sets of them, of at most 10,000 items in all and ``_DEPTH`` levels (a bigger
    or deeper table counts by its pickled state instead, ``_walk_object``)."""
    budget = 10_000
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind in _PLAIN:
            continue
        if kind not in _CONTAINERS or depth >= _DEPTH:
            return False
        budget -= len(item)
        if budget < 0:
            return False
        # Plain items are not stacked, and the first item neither plain nor a container
        # ends the look: a global list of 5,000 instances made 5,000 pairs to pop one, a
        # millisecond of each copy's check in a worker (``copy_dependencies``), each batch.
        for child in itertools.chain(item.keys(), item.values()) if kind is dict else item:
            kind = type(child)
            if kind in _PLAIN_TYPES:
                continue
            if kind not in _CONTAINERS:
                return False
            stack.append((child, depth + 1))
    return True


def _constant_digest(value: Any) -> str:
    digest = value_key((value,))[:16]
    orders = _dict_orders(value)  # ``COLUMNS = {"a": int, "b": float}`` reordered
    return xxhash.xxh3_64_hexdigest(f"{digest}\n{orders}".encode()) if orders else digest


def identity_digest(rows: tuple[tuple[str, str, str], ...]) -> str:
    """The fingerprint of a function with its dependencies: one digest of all the rows.

    A row may name a module holding a lone surrogate (loaded from a file whose name is not
    UTF-8; ``encodable``), the module of a global the function reads: encoded as it is
    (``surrogatepass``, one bytes per text). Before, UnicodeEncodeError at the first call."""
    text = "\n".join(" ".join(row) for row in rows)
    return xxhash.xxh3_64_hexdigest(text.encode("utf-8", "surrogatepass"))


# --- what an identity was resolved from: re-checked after a notebook cell -----------------

# Set when memojar runs in IPython (``_notebook``): ``dependencies`` then keeps a record of
# what it read. Off in a script, where nothing re-checks and a record would only keep the
# old values of rebound globals alive.
RECORD = False
_recording: contextvars.ContextVar[Resolved | None] = contextvars.ContextVar(
    "memojar_recording", default=None)


class _Absent:
    """A name the namespace did not hold (a builtin, an attribute name)."""

    __slots__ = ()


_ABSENT = _Absent()


class _Strong:
    """A reference to an object that cannot be weakly referenced (an int, a str, a list):
    held, so that a new object at the same address is never taken for it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self) -> Any:
        return self.value


def _hold(value: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(value)
    except TypeError:
        return _Strong(value)


def _holds(held: Callable[[], Any], value: Any) -> bool:
    """Whether ``held`` (``_hold``) is a reference to ``value`` (a dead weak reference
    returns None, which is then not taken for a global bound to None)."""
    return held() is value and (value is not None or type(held) is _Strong)


class Resolved:
    """What ``dependencies`` read to make a function's rows: each global name it looked up
    in a namespace (the object found, or that there was none), the code and defaults of
    each function it followed, the members of each class. ``unchanged`` compares them by
    identity: cheap, and exact for what a notebook cell or ``%autoreload`` does (bind a
    name again; replace a function's ``__code__``, a class's members). An object mutated in
    place is the same object: not seen, as in a script.

    Objects are held weakly where they can be (functions, classes, modules, arrays,
    instances); others (numbers, strings, tuples, lists, dicts) strongly, so that a new
    object at a freed one's address is never taken for it. ``states`` are the digests of
    data objects (``_walk_object``), reused by the next record while the object is the same
    (a big global is hashed once, not at every rebuild)."""

    __slots__ = ("classes", "functions", "names", "reused", "states", "written")

    def __init__(self, reused: Resolved | None = None) -> None:
        self.names: dict[tuple[int, str], tuple[Any, str, Callable[[], Any]]] = {}
        self.functions: dict[int, tuple[Callable[[], Any], Any, Any, Any]] = {}
        self.classes: dict[int, tuple[Callable[[], Any], tuple[Any, ...]]] = {}
        self.states: dict[int, tuple[Callable[[], Any], str, tuple[Any, ...]]] = {}
        self.reused = reused
        self.written: set[tuple[int, str]] = set()  # names of ``names`` its code binds

    def lookups(self, namespace: Any, names: AbstractSet[str]) -> None:
        for name in names:
            key = (id(namespace), name)
            if key not in self.names:
                self.names[key] = (namespace, name, _hold(namespace.get(name, _ABSENT)))

    def writes(self, namespace: Any, names: set[str]) -> None:
        self.written.update((id(namespace), name) for name in names)

    def bound(self) -> dict[tuple[int, str], Callable[[], Any]]:
        """The names its code binds, each with what this record holds it bound to."""
        return {key: self.names[key][2] for key in self.written & self.names.keys()}

    def rebind(self, written: dict[tuple[int, str], Callable[[], Any]]) -> None:
        """Hold the names of ``written`` (globals a decorated function or its helpers bind
        themselves when they run: ``global calls; calls += 1``) as they are bound now, if
        this record's code binds them too and held them as the function's run began (the
        holders ``written`` maps them to: a miss's own records hold what its names are
        bound to as it starts): such a global is the functions' own state, not a cell's
        change, and the next cell does not make the identity again for it (in a script,
        the identity takes it at the first call, as here). Bound again by a cell, or by a
        function whose code only reads it, it is seen: also by a record that had not seen
        a cell's binding yet when another function binding the name ran (before, that run
        held the cell's value for it, and its next cell hit the value of the old one)."""
        for key in written.keys() & self.written & self.names.keys():
            namespace, name, held = self.names[key]
            began = written[key]
            if held is began or _holds(held, began()):
                self.names[key] = (namespace, name, _hold(namespace.get(name, _ABSENT)))

    def function(self, func: Any) -> None:
        if id(func) not in self.functions:
            self.functions[id(func)] = (_hold(func), *_made_of(func))

    def klass(self, cls: type) -> None:
        if id(cls) not in self.classes:
            self.classes[id(cls)] = (_hold(cls), _class_state(cls))

    def unchanged(self) -> bool:
        """Whether every name is bound to the object it was, and every function and class
        followed is made of what it was; False if looking raised (a member that raises when
        looked at: the identity is made again, which knows how to count it). A class that
        changed is fingerprinted again by its next ``class_identity``."""
        try:
            return self._unchanged()
        except Exception as exc:  # noqa: BLE001 - whatever an object raised
            _passed_over(exc)
            return False

    def bound_as_made(self) -> bool:
        """Whether every name is bound to the object it was: ``unchanged`` without its
        functions' and classes' members, cheap enough for every miss in a notebook (a
        helper or constant bound again within a cell, ``mock.patch`` of one)."""
        return all(_holds(held, namespace.get(name, _ABSENT))
                   for namespace, name, held in self.names.values())

    def state_of(self, value: Any) -> tuple[str, tuple[Any, ...]] | None:
        """The digest the previous record took of ``value``, if it is the same object, and
        the functions and classes met making it."""
        found = self.reused.states.get(id(value)) if self.reused is not None else None
        if found is None or not _holds(found[0], value):
            return None
        self.states[id(value)] = found
        return found[1], found[2]

    def _unchanged(self) -> bool:
        same = True
        for held, state in self.classes.values():  # all of them: each forgets its own
            cls = held()
            if cls is None:
                same = False
            elif not _same(_class_state(cls), state):
                _class_ids.pop(cls, None)
                same = False
        if not same:
            return False
        for namespace, name, held in self.names.values():
            if not _holds(held, namespace.get(name, _ABSENT)):
                return False
        for held, *made in self.functions.values():
            func = held()
            if func is None or any(a is not b for a, b in zip(_made_of(func), made,
                                                                strict=True)):
                return False
        return True


def _made_of(func: Any) -> tuple[Any, Any, Any]:
    return (attribute(func, "__code__", CodeType), attribute(func, "__defaults__", tuple),
            attribute(func, "__kwdefaults__", dict))


def _class_state(cls: type) -> tuple[Any, ...]:
    """What a class's fingerprint and walk read of it: its bases, and for each class of the
    user's code in its MRO its members and their functions' code and defaults. Dunder data
    is left out: what the fingerprint ignores, and caches Python adds (pickling an instance
    sets ``__slotnames__``). A class that raises when looked at has a state equal to no
    other (its functions' identity is made again at each re-check)."""
    try:
        return _members_of(cls)
    except Exception as exc:  # noqa: BLE001 - whatever a member raised (a proxy at ``__class__``)
        _passed_over(exc)
        return (_Absent(),)


def _members_of(cls: type) -> tuple[Any, ...]:
    # The MRO by weak references (one a class: ``weakref.ref`` gives the one it made while
    # it lives, so the same class compares ``is``): its tuple holds the class itself, and a
    # record kept under the class (``_resolved_of``, weakly) kept its own key alive, every
    # class made at run time whose instances a notebook's call took, for good.
    state: list[Any] = [*map(weakref.ref, cls.__mro__)]
    for klass in cls.__mro__:
        if not is_user_module(klass.__module__):
            continue
        for name, member in vars(klass).items():
            if (name.startswith("__") and name.endswith("__") and not isinstance(
                    member, (FunctionType, staticmethod, classmethod, property))):
                continue
            _member_held(klass, name, member, state)  # (not the member: it may hold the class)
            inner = _unwrapped(member)
            if isinstance(inner, property):
                functions: tuple[Any, ...] = (inner.fget, inner.fset, inner.fdel)
            else:
                functions = (inner, _member_function(inner))
            for func in functions:
                if isinstance(func, FunctionType):
                    state.extend(_made_of(func))
    return tuple(state)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a is b or (len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True)))


def resolved(func: Any) -> Resolved | None:
    """The record of what ``dependencies(func)`` was last made from (None: none kept)."""
    try:
        return _resolved_of.get(split(func)[0])
    except TypeError:
        return None
