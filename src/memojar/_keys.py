"""Cache keys: plain, pure functions from a call's arguments to a hex digest.

A key is xxh3-128 over a canonical pickle of the call's *bound* arguments. Canonical means
equal arguments give equal bytes in every process: dicts, sets and frozensets are written in
a sorted order at any depth (the C pickler never lets ``reducer_override`` see them, so they
are normalised before pickling), and values of different types (``1``, ``1.0``, ``True``)
stay different because pickle writes their types. Large buffers (numpy arrays, bytes,
bytearray, memoryview) go out of band through pickle protocol 5 and are hashed in place.

The pickler runs without a memo (``fast`` mode): pickle's memo records which objects are
shared, so ``["hello", "hello"]`` and ``"hello hello".split()`` would key differently.
Buffers are hashed as read-only whatever their flag. Functions and classes of the user's
own code count by their identity (name and code fingerprint, see ``_identity``), not by
their name alone; numpy arrays by dtype, shape and contiguous bytes; pandas and polars
frames by column names, dtypes, index and column values (never their pickle, so the block
layout does not matter). numpy, pandas and polars are never imported here: their types are
recognised only when the user's code already imported them.
"""

from __future__ import annotations

import copyreg
import functools
import io
import operator
import os
import pickle
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from contextvars import Context, ContextVar
from types import (
    BuiltinFunctionType,
    CodeType,
    FunctionType,
    MappingProxyType,
    MethodType,
    ModuleType,
)
from typing import Any

import xxhash

from . import _identity
from ._errors import the_callers
from ._identity import (
    argument_identity,
    class_identity,
    function_identity,
    met,
    typing_text,
)

PROTOCOL = 5
BIG_BUFFER = 64 * 1024  # bytes-like values at least this large are hashed out of band

# What keys mean, in every function's identity (a row of it, ``_Memo.ident``): bump it with
# a change that gives a kind of argument a key of its own where it shared another kind's.
# The other kind keeps its key, and the entries stored at it were written for either: before
# this was in the identity, memojar of 40376ef's entry of ``kind(np.longlong(5))`` (keyed as
# ``np.int64(5)``) was read for ``kind(np.int64(5))`` after the upgrade, a wrong value. A
# bump makes every entry written before it older code's: computed once again, then swept.
# ``tests/golden/test_golden.py`` fails at any change of a catalogued kind's key until it is
# bumped and ``tests/golden/keys.json`` written again (``make_keys.py``).
KEYING = "1"


class _Dict:
    """Marker: a dict's items follow, sorted (never instantiated, pickled by reference)."""


class _Set:
    """Marker: a set's items follow, sorted."""


class _FrozenSet:
    """Marker: a frozenset's items follow, sorted."""


class _Bytes:
    """Marker: a large bytes-like value follows out of band; its type name is kept."""


class _Function:
    """Marker: a function of the user's code, by name and code fingerprint."""


class _Class:
    """Marker: a class of the user's code, by name and the fingerprint of its methods."""


class _Named:
    """Marker: an argument pickled by its global name, with the user's code it runs."""


class _Typing:
    """Marker: a type alias, type variable or ``NewType`` by name and what it stands for."""


class _Array:
    """Marker: a numpy array by dtype, shape and its bytes in C order."""


class _Frame:
    """Marker: a pandas DataFrame or Series (or a polars one) by labels, dtypes, values."""


class _Cycle:
    """Marker: the list or dict of this number, met before in a value that holds itself."""


class _Code:
    """Marker: a code object (``compile()``'s) by its fingerprint, as a function's code."""


class _HardMask:
    """Marker: a numpy masked array whose mask is hard follows, keyed as its soft twin."""


class _Subarray:
    """Marker: an ndarray subclass's instance by class, array and attributes."""


class _Scalar:
    """Marker: a numpy scalar whose pickle names another type, by its type and bytes."""


# The markers above, pickled by reference in every key that holds them: library classes,
# answered before any identity is looked up.
_MARKERS = frozenset({_Dict, _Set, _FrozenSet, _Bytes, _Function, _Class, _Named, _Array,
                      _Frame, _Cycle, _Code, _Typing, _HardMask, _Subarray, _Scalar})


# Not ``slice``: it holds any objects (a function, a set, a frame), which must be keyed as
# any argument's (``reducer_override``); a slice of atoms is still pickled plain
# (``_needs_pickler``), its key the same. Before, a slice was an atom, pickled by the plain
# pickler whatever it held: a function of the user's code in it counted by its name (an
# edit of it kept the key, and a new process got the old code's value), a set in it by the
# hash seed's order, and a local function in it was refused.
_ATOMS = frozenset({int, float, complex, str, bool, type(None), type(Ellipsis), range})
_BYTES_LIKE = (bytes, bytearray)
_BY_REFERENCE = (BuiltinFunctionType, pickle.PickleBuffer)


# --- binding ------------------------------------------------------------------------------

def make_binder(
    func: Callable[..., Any], ignore: Iterable[str] = (), shaped: bool = False
) -> Callable[..., tuple[Any, ...]]:
    """Return a function taking ``func``'s arguments and returning the bound values as a tuple.

    Defaults are applied and ``ignore``d parameters left out, so ``f(1)``, ``f(1, 1)``,
    ``f(x=1)`` and ``f(1, y=1)`` bind to the same tuple. The binder is generated once, at
    decoration time, as Python source with the function's own signature: binding a call is
    then one plain function call, several times faster than ``inspect.Signature.bind``.
    Raises ``ValueError`` if ``ignore`` names a parameter ``func`` does not have.

    ``shaped``: the signature is not that of the code the call runs (see ``_shaped``).
    """
    try:
        sig = signature(func)
    except (TypeError, ValueError) as exc:  # a builtin or C callable without a signature
        ignored = tuple(ignore)
        if ignored:
            raise ValueError(
                f"ignore= needs the parameters of {_describe(func)}, which has no signature "
                f"({exc}); pass key= instead"
            ) from None
        return raw_binder
    names = list(sig.parameters)
    unknown = [name for name in ignore if name not in names]
    if unknown:
        raise ValueError(
            f"ignore= names {', '.join(map(repr, unknown))}, which "
            f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of "
            f"{_describe(func)}{sig}; allowed: "
            f"{', '.join(map(repr, names)) or 'none'}" + _through_var_keyword(sig, unknown)
        )
    if any(name.startswith("__memojar_") for name in names):
        binder = _signature_binder(sig, ignore)
    else:
        kept = [name for name in names if name not in ignore]
        body = f"({', '.join(kept)},)" if kept else "()"
        binder = _generate(func, sig, body, {})
    return _shaped(binder, sig, ignore) if shaped else binder


def signature(func: Callable[..., Any]) -> Any:
    """``inspect.signature(func)``, with a ``TypeError`` (no signature: the call's arguments
    are keyed as given, ``raw_binder``) where reading it raises anything else: ``inspect``
    asks the object for ``__signature__`` and ``__wrapped__``, which a ``__getattr__`` or
    property of the user's may answer with a RuntimeError. Before, that error failed the
    decoration from inside memojar."""
    import inspect  # at decoration time only: it costs milliseconds to import

    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        raise
    except Exception as exc:  # whatever the object's lookups raised
        if the_callers(exc):
            raise
        raise TypeError(f"reading its signature raised {type(exc).__name__}: {exc}"
                        ) from exc


def _shaped(binder: Callable[..., tuple[Any, ...]], sig: Any, ignore: Iterable[str] = ()
            ) -> Callable[..., tuple[Any, ...]]:
    """``binder``, for a signature that is another function's than the one the call runs
    (a decorator's wrapper under ``@cached``: ``inspect.signature`` follows its
    ``__wrapped__``, or reads a ``__signature__`` set on it), with the call's shape
    after its values: how each parameter of the signature (but those of ``ignore``) was
    given, positionally, by keyword or not at all, as one number. With the values, the
    shape tells the call as it was given, which is what the wrapper runs with, whatever
    it does: fill a parameter the caller left out (``kwargs.setdefault("seed", 42)``), call
    with defaults of its own (``fn(x, 2 if scale is None else scale)``, a
    ``functools.singledispatch`` implementation's), take parameters of its own in other
    places (``def wrapper(factor, *args, **kwargs)``). Before, the values alone: ``f(5)``
    and ``f(5, seed=0)``, or ``f(2, 3)`` and ``f(2, y=3)``, were bound alike, and the
    second call returned the first one's value. A call given otherwise than before
    (``f(x=5)`` after ``f(5)``) computes again where the wrapper only passes it on."""
    skip = frozenset(ignore)
    first: list[int] = []  # the weight of each positional parameter, in order (0: ignored)
    named: dict[str, int] = {}  # the weight of each parameter a keyword may give
    weight = 1
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue  # (what they take is among the values)
        positional = p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        if p.name in skip:
            if positional:
                first.append(0)
            continue
        if positional:
            first.append(weight)
        if p.kind is not p.POSITIONAL_ONLY:
            named[p.name] = 2 * weight
        weight *= 3
    given = [sum(first[:count]) for count in range(len(first) + 1)]  # by positionals given
    most = len(first)

    def bind(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        values = binder(*args, **kwargs)  # first: a call it rejects raises its TypeError
        shape = given[min(len(args), most)]
        for name in kwargs:
            shape += named.get(name, 0)
        return (*values, shape)

    return bind


def _through_var_keyword(sig: Any, unknown: list[str]) -> str:
    """What to do instead of ignoring keywords a ``**kwargs`` takes: ignore= takes parameter
    names only, as joblib's (so that a typo is still an error). Before, the error listed
    ``kwargs`` as allowed and said no more."""
    var = [p.name for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD]
    if not var:
        return ""
    return (f"; a keyword passed through **{var[0]} is not a parameter: ignore="
            f"({var[0]!r},) leaves out all of them, or pass key= a function of the same "
            f"arguments returning what to hash ({var[0]} without "
            f"{', '.join(map(repr, unknown))})")


def raw_binder(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """The binder of a callable without a signature: the call's arguments as given."""
    return (args, kwargs)


def _describe(func: Callable[..., Any]) -> str:
    return _identity.attribute(func, "__qualname__", str) or type(func).__qualname__


def _called(key: Callable[..., Any]) -> Callable[..., Any]:
    """What runs when ``key`` is called, for its signature: a callable instance whose class
    says ``__call__ = staticmethod(f)`` runs ``f`` with every argument, and with
    ``classmethod(f)``, ``f`` bound to the class. Before, both were refused as ``key=``
    (``inspect.signature`` reports ``()`` for such an instance). With ``__call__ =
    partial(f)``, the partial, which before 3.14 runs with the call's arguments alone
    (``_identity.split``): before, ``inspect`` (3.10 to 3.12) dropped its first parameter
    as if it were ``self``, and such a ``key=`` was refused."""
    for klass in type(key).__mro__:
        call = vars(klass).get("__call__")
        if isinstance(call, staticmethod):
            return call.__func__
        if isinstance(call, classmethod):
            bound: Callable[..., Any] = call.__get__(key, type(key))
            return bound
        if (isinstance(call, functools.partial) and _identity.binds_as_partial(call)
                and sys.version_info < (3, 14)):
            return call
        if call is not None:
            return key
    return key


def make_key_caller(
    func: Callable[..., Any], key: Callable[..., Any], shaped: bool = False
) -> Callable[..., tuple[Any, ...]]:
    """Return a function taking ``func``'s arguments that calls ``key`` with the *bound*
    arguments (``func``'s defaults applied) and returns ``(key's result,)``; ``shaped``:
    with the call's shape after it (``_shaped``).

    Raises ``TypeError`` naming ``key=`` and the function if ``key`` cannot take them.
    """
    import inspect

    try:
        sig = signature(func)
    except (TypeError, ValueError):  # no signature: key= gets the call's arguments as given
        return lambda *args, **kwargs: (key(*args, **kwargs),)
    qualname = _describe(func)
    positional: list[None] = []
    keywords: dict[str, None] = {}
    call: list[str] = []
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional.append(None)
            call.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            call.append("*" + p.name)
        elif p.kind is p.KEYWORD_ONLY:
            keywords[p.name] = None
            call.append(f"{p.name}={p.name}")
        else:
            call.append("**" + p.name)
    try:
        key_sig = inspect.signature(_called(key))
    except (TypeError, ValueError):  # a builtin without a signature: cannot check
        key_sig = None
    if key_sig is not None:
        try:
            key_sig.bind(*positional, **keywords)
        except TypeError as exc:
            raise TypeError(
                f"key= of {qualname} must take the same arguments as {qualname}{sig} (it "
                f"is called with all of them, defaults applied), but key{key_sig} cannot: "
                f"{exc}"
            ) from None
    if any(name.startswith("__memojar_") for name in sig.parameters):
        def call_key(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            return (key(*bound.args, **bound.kwargs),)

        caller: Callable[..., tuple[Any, ...]] = call_key
    else:
        caller = _generate(func, sig, f"(__memojar_key({', '.join(call)}),)",
                           {"__memojar_key": key})
    return _shaped(caller, sig) if shaped else caller


def prebound(
    binder: Callable[..., tuple[Any, ...]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Callable[..., tuple[Any, ...]]:
    """A binder for a partial or bound method: the bound arguments go in front of the
    call's (``functools.partial`` semantics: the call's keywords win)."""
    if not kwargs:
        def bind(*more: Any, **morekw: Any) -> tuple[Any, ...]:
            return binder(*args, *more, **morekw)
    else:
        def bind(*more: Any, **morekw: Any) -> tuple[Any, ...]:
            return binder(*args, *more, **{**kwargs, **morekw})
    return bind


def _generate(func: Callable[..., Any], sig: Any, body: str, namespace: dict[str, Any]
              ) -> Callable[..., tuple[Any, ...]]:
    """``def _bind(<func's signature>): return <body>``, compiled once."""
    params = list(sig.parameters.values())
    source: list[str] = []
    star_done = False
    for i, p in enumerate(params):
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text, star_done = "*" + p.name, True
        elif p.kind is p.VAR_KEYWORD:
            text = "**" + p.name
        elif p.kind is p.KEYWORD_ONLY and not star_done:
            source.append("*")
            star_done = True
        if p.default is not p.empty:
            namespace[f"__memojar_default_{i}"] = p.default
            text += f"=__memojar_default_{i}"
        source.append(text)
        if p.kind is p.POSITIONAL_ONLY and (
            i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY
        ):
            source.append("/")
    # Generated source, from parameter names only (identifiers): see make_binder.
    exec(f"def _bind({', '.join(source)}):\n    return {body}\n", namespace)
    binder: Callable[..., tuple[Any, ...]] = namespace.pop("_bind")  # no cycle via globals
    shared = _kwdefaults_of(func, params)
    if shared is not None:
        binder.__kwdefaults__ = shared
    binder.__name__ = _identity.attribute(func, "__name__", str) or "function"
    binder.__qualname__ = _identity.attribute(func, "__qualname__", str) or binder.__name__
    return binder


_NOT_THERE = object()


def _kwdefaults_of(func: Any, params: list[Any]) -> dict[str, Any] | None:
    """The ``__kwdefaults__`` dict of the function whose signature ``params`` is (``func``,
    or what it wraps or binds: a ``functools.wraps`` wrapper's, a method's), when it holds
    those very defaults. The binder takes that dict itself, as the function does at each
    call: a default changed in it in place (``f.__kwdefaults__["scale"] = 100``) binds
    the new value, as the call runs with it, at no cost a call. Before, the binder held a
    copy of decoration time: ``f(2)`` kept its key, and returned the old default's value."""
    wanted = {p.name: p.default for p in params
              if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}
    if not wanted:
        return None
    for _ in range(100):  # (a ``__wrapped__`` loop ends here)
        if type(func) is FunctionType:
            kwdefaults = func.__kwdefaults__
            # Those defaults, by identity; a name no parameter has may be there too (a
            # function's code reassigned to one of other keyword names, a name added):
            # the call ignores it, as the binder does. Before, such a dict was copied, and
            # a default changed in it in place kept the old default's key and value.
            if type(kwdefaults) is dict and all(
                    kwdefaults.get(name, _NOT_THERE) is value
                    for name, value in wanted.items()):
                return kwdefaults
        try:
            func = func.__func__ if hasattr(func, "__func__") else func.__wrapped__
        except Exception:  # noqa: BLE001 - no such attribute, or what a __getattr__ raised
            return None
    return None


def _signature_binder(sig: Any, ignore: Iterable[str]) -> Callable[..., tuple[Any, ...]]:
    """The slow, always-correct binder, for signatures the generated one cannot spell."""
    skip = frozenset(ignore)

    def bind(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return tuple(v for k, v in bound.arguments.items() if k not in skip)

    return bind


def parameter_names(func: Callable[..., Any], ignore: Iterable[str] = ()) -> list[str]:
    """The names of the values a binder returns, in order (for error messages)."""
    try:
        return [n for n in signature(func).parameters if n not in ignore]
    except (TypeError, ValueError):  # no signature: see raw_binder
        return ["args", "kwargs"]


# --- canonical form -----------------------------------------------------------------------

def normalize(obj: Any) -> Any:
    """Return ``obj`` with every dict, set and frozenset replaced by a sorted marker tuple.

    Containers that need no change are returned as they are (no copy on the hot path).
    Objects of other types are left for ``_CanonicalPickler.reducer_override`` to normalise
    their reduced state.
    """
    t = type(obj)
    if t in _ATOMS:
        return obj
    if t is tuple or t is list:
        items = [normalize(x) for x in obj]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        return tuple(items) if t is tuple else items
    if t is dict:
        return (_Dict, _sorted_items(obj.items()))
    if t is set:
        return (_Set, _sorted(obj))
    if t is frozenset:
        return (_FrozenSet, _sorted(obj))
    if t in _BYTES_LIKE:
        if len(obj) < BIG_BUFFER:
            return obj
        return (_Bytes, t.__name__, _own_buffer(obj))
    if t is memoryview:
        return _normalize_memoryview(obj)
    if t is pickle.PickleBuffer:  # by a read-only one of the key's: the user's is never released
        return _own_buffer(obj)
    return obj


def _own_buffer(data: Any) -> pickle.PickleBuffer:
    """A read-only ``PickleBuffer`` of ``data``'s bytes, the key's own: a read-only array and
    an equal writable one pickle alike (pickle writes the flag). Noted (``_OWN``): the
    key's buffers are released once hashed (``_released``), never the user's."""
    buf = pickle.PickleBuffer(memoryview(data).toreadonly())
    _OWN.add(buf)
    return buf


_OWN: weakref.WeakSet[pickle.PickleBuffer] = weakref.WeakSet()


def _released(buffers: list[pickle.PickleBuffer]) -> None:
    """Let go of the buffers a key's pickling took, hashed or failed (a lock after them):
    a cycle holds the frames that pickled them (a failure's traceback, with the pickler;
    or one the value's own reduction left, ``except E as e: error = e``), each a
    ``PickleBuffer`` of a read-only ``memoryview`` of the key's own, and the collector,
    clearing that view before the buffer exported from it, crashed the interpreter
    (CPython's ``memory_clear`` drops the view's buffer even while it is exported). The
    key's own alone (``_own_buffer``): one of the user's (a ``PickleBuffer`` a value
    holds, or its reduction gives) stays as it is. Before, the user's were released too,
    and the argument was unusable after the call."""
    for buf in buffers:
        if buf in _OWN:
            buf.release()
    buffers.clear()


def normal(obj: Any) -> Any:
    """``normalize(obj)``, or, for a value holding a list or dict that holds itself
    (``a.append(a)``, ``d["self"] = d``, neighbours that list each other), that form with
    each list and dict written once, in the order met, and met again as a mark of its
    number (``_Cycle``), as pickle's memo keeps it. Before, the call raised "cannot be
    pickled" (normalising recursed until Python's limit); joblib and diskcache key such
    values. Looked for only after the plain walk failed."""
    try:
        return normalize(obj)
    except RecursionError as exc:
        if key_reentered(exc):
            raise  # the caller's endless recursion through the key's making
    return _normalize_marking_cycles(obj, {})


_CONTAINERS = frozenset({tuple, list, dict, set, frozenset})


def _normalize_marking_cycles(obj: Any, met: dict[int, int]) -> Any:
    """``normalize`` for a value that holds itself; ``met``: the lists and dicts met so far
    (the only containers a cycle can go through: others hold no list or dict, or cannot be
    changed to hold themselves), by id, to their number. Each is written once: a walk by
    every path through neighbours that list each other took time exponential in their
    number. The numbers follow the order the form is written in (a list's, a dict's by
    key; sets hold no list or dict): the same in every process, and each names one list
    or dict."""
    t = type(obj)
    if t not in _CONTAINERS:
        return normalize(obj)
    if t is list or t is dict:
        number = met.get(id(obj))
        if number is not None:
            return (_Cycle, number)
        met[id(obj)] = len(met)
    if t is dict:  # its values walked in the order its items are written (by key), so
        # that each number names the one list or dict written at that place: numbered in
        # insertion order, two dicts holding other lists at one key shared a key
        pairs = _pairs_in_order([(_normalize_marking_cycles(k, met), v)
                                 for k, v in obj.items()])
        return (_Dict, tuple([(k, _normalize_marking_cycles(v, met)) for k, v in pairs]))
    items = [_normalize_marking_cycles(x, met) for x in obj]
    if t is list:
        return items
    if t is tuple:
        return tuple(items)
    return (_Set if t is set else _FrozenSet, _in_order(items))


def _normalize_memoryview(view: memoryview) -> Any:
    """memoryview does not pickle: key it by format, shape and contents."""
    data: Any = view if view.c_contiguous else view.tobytes()
    # read-only or not, equal contents key equally
    data = _own_buffer(data) if view.nbytes >= BIG_BUFFER else bytes(data)
    return (_Bytes, "memoryview", view.format, view.shape, data)


def _sorted(items: Iterable[Any]) -> tuple[Any, ...]:
    return _in_order([normalize(x) for x in items])


def _in_order(items: list[Any]) -> tuple[Any, ...]:
    """Normalised items, sorted as a set's are keyed."""
    types = {type(x) for x in items}
    if len(types) == 1 and types <= {str, int, bytes}:
        return tuple(sorted(items))
    return tuple(sorted(items, key=canonical_bytes))


def _sorted_items(items: Iterable[tuple[Any, Any]]) -> tuple[Any, ...]:
    return _pairs_in_order([(normalize(k), normalize(v)) for k, v in items])


def _pairs_in_order(pairs: list[tuple[Any, Any]]) -> tuple[Any, ...]:
    types = {type(k) for k, _ in pairs}
    if len(types) == 1 and types <= {str, int, bytes}:
        pairs.sort(key=_first)
    else:
        pairs.sort(key=_first_canonical)
    return tuple(pairs)


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _first_canonical(pair: tuple[Any, Any]) -> bytes:
    return canonical_bytes(pair[0])


class _CanonicalPickler(pickle.Pickler):
    """A pickler that normalises the reduced state of objects the C pickler hands to Python.

    ``reducer_override`` is called for every object that is not a built-in type the C
    pickler writes itself; it reduces the object as pickle would and normalises the
    constructor arguments, the state and any list or dict items, so a custom object holding
    a set or a dict keys the same in every process. Functions and classes of the user's
    code, numpy arrays and data frames get a reduction of their own (see the module doc).
    """

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        if t is FunctionType:
            # a call's argument with what it depends on; in a global's state, its own code
            # (and the global's walk follows what it calls: ``met``)
            if _limits.state:
                met(obj)
            ident = function_identity(obj) if _limits.state else argument_identity(obj)
            return NotImplemented if ident is None else (_Function, ident)
        if isinstance(obj, type):
            if obj in _MARKERS:
                return NotImplemented
            if _limits.state:
                met(obj)
            ident = class_identity(obj) if _limits.state else argument_identity(obj)
            return NotImplemented if ident is None else (_Class, ident)
        if isinstance(obj, _BY_REFERENCE):
            if t is BuiltinFunctionType and _bound_to_data(obj):
                # ``allowed.__contains__``, ``table.get``: its holder, normalised. Before,
                # pickle's own reduction wrote the set or dict as it was (a set in the hash
                # seed's order): a key each process, never a hit after its first.
                bound: Any = obj.__reduce_ex__(PROTOCOL)
                if type(bound) is tuple and len(bound) == 2:
                    return bound[0], normal(bound[1])
            return NotImplemented
        special = _SPECIAL.get(t, _UNKNOWN)
        if special is _UNKNOWN:
            if len(_SPECIAL) >= _SPECIAL_MAX:  # classes made at run time: never kept for good
                _SPECIAL.clear()
            special = _SPECIAL[t] = _special_reducer(t)
        if special is not None:
            rv = special(obj)
            if rv is not None:
                return rv
        reduce = copyreg.dispatch_table.get(t)
        try:
            rv = reduce(obj) if reduce is not None else obj.__reduce_ex__(PROTOCOL)
        except Exception as exc:  # let pickle raise its own, clearer error
            if (isinstance(exc, RecursionError) and key_reentered(exc)) or the_callers(exc):
                raise  # pickle would only run the same endless recursion again; or the
                # caller's signal handler's: before, pickle ran the reduction again, past it
            return NotImplemented
        if isinstance(rv, str):
            text = typing_text(obj)
            if text is not None:  # ``type Conv = int``, a ``TypeVar``: what it stands for,
                # and the code of the classes and functions it names (``type Conv = Model``
                # passed as an argument: ``Model``'s, as for ``Model`` passed)
                return _Typing, (rv, text, _identity.typing_named(obj))
            if _limits.state:
                state = _named_state(obj)
                return NotImplemented if state is None else (_Named, (type(obj).__module__, rv),
                                                             state)
            return _by_name(obj, rv)
        rv = list(rv)
        if isinstance(obj, (set, frozenset)):  # a subclass: its items, sorted
            rv[1] = _set_arguments(obj, rv[1])
        else:
            rv[1] = _readonly(normal(rv[1]))
        if len(rv) > 2:
            state = rv[2]
            if (isinstance(obj, functools.partial) and type(state) is tuple
                    and len(state) == 4 and state[3] == {}):
                # A partial's __reduce__ gives its __dict__ as it is: None until something
                # reads ``p.__dict__`` (``vars``, the identity walk of a default), then {}:
                # both no attributes. Before, the same partial's key changed then.
                state = (*state[:3], None)
            elif type(state) is dict:
                state = _without_own_cached_methods(obj, state)
            rv[2] = normal(state)  # (a state may hold itself: ``self.items.append(...)``)
        if len(rv) > 3 and rv[3] is not None:
            rv[3] = iter(normal(list(rv[3])))
        if len(rv) > 4 and rv[4] is not None:
            pairs = [(normal(k), normal(v)) for k, v in rv[4]]
            # an OrderedDict's order is part of its equality
            rv[4] = iter(pairs if isinstance(obj, OrderedDict) else _pairs_in_order(pairs))
        return tuple(rv)


def _without_own_cached_methods(obj: Any, state: dict[Any, Any]) -> dict[Any, Any]:
    """An instance's ``__dict__`` without its own methods cached in ``__init__``
    (``self.predict = cached(self.predict)``, joblib's pattern): such a wrapper is made of
    the instance and its class's method, which its key counts already, and holds no data.
    Before, it was keyed by what it captures, the instance again through itself: equal
    instances keyed apart (the first of a process from the next ones: a computation
    more), and never as the method decorated in its class, which they share entries with."""
    for value in state.values():
        if type(value) is FunctionType and _own_cached_method(obj, value):
            return {name: value for name, value in state.items()
                    if not (type(value) is FunctionType and _own_cached_method(obj, value))}
    return state


def _own_cached_method(obj: Any, func: FunctionType) -> bool:
    attributes = func.__dict__
    wrapped = attributes.get("__wrapped__")
    return ("__memojar__" in attributes and type(wrapped) is MethodType
            and wrapped.__self__ is obj)


def _set_arguments(obj: set[Any] | frozenset[Any], args: Any) -> Any:
    """The constructor arguments of a set or frozenset subclass's reduction, normalised.
    Its class's own reduction (``set.__reduce__``'s ``(list(self),)``, in the hash seed's
    order): its items, sorted, the key it always had. A reduction the subclass wrote: its
    arguments as it gives them, as any object's, a list in its order (a set that keeps
    its insertion order, ``OrderedSet("zyx")``, passes it so). Before, every list of the
    set's items was sorted, and two such sets of the same items in other orders returned
    each other's values; and before that, the arguments were replaced by the sorted items,
    whatever they were (``Tagged(items, tag)`` shared a key with any other tag). A
    subclass's reduction that passes ``list(self)`` so keys each hash seed apart (a
    computation per process for items of strings), never another's value: one passing
    ``sorted(self)`` keys alike in every process."""
    t = type(obj)
    if type(args) is not tuple or (copyreg.dispatch_table.get(t) is None
                                   and t.__reduce_ex__ is object.__reduce_ex__
                                   and t.__reduce__ in _SETS_REDUCE):
        return (list(_sorted(obj)),)
    return _readonly(normal(args))


_SETS_REDUCE = (set.__reduce__, frozenset.__reduce__)


def _by_name(obj: Any, name: str) -> Any:
    """The reduction of a call's argument that pickles as its global name (``name``): with
    the identity of the user's code it runs, a library wrapper's function
    (``functools.cache``, ``lru_cache``: ``__wrapped__``) or the object's own class (a
    singleton whose ``__reduce__`` returns its name), as ``argument_identity`` gives it
    for a function or an instance passed. Before, the name alone: an edit of that code, or
    of a helper it calls, kept the key, and a new process got the old code's value. An
    object with no user code behind it is pickled by its name, as before (its key is
    unchanged)."""
    try:
        module = getattr(obj, "__module__", None)
    except Exception:  # noqa: BLE001 - whatever its __getattr__ raised: pickled by name
        return NotImplemented
    ident = argument_identity(_identity.code_behind(obj))
    if ident is None:
        return NotImplemented
    state = _named_state(obj, code=True)
    return (_Named, (module, name, ident)) if state is None else (
        _Named, (module, name, ident), state)


def _named_state(obj: Any, code: bool = False) -> Any:
    """The state of the attributes (``__dict__`` and ``__slots__``, by name) of an instance
    of the user's class that pickles as its global name (a singleton whose ``__reduce__`` returns
    its name: ``REG = Registry(k=2)``), normalised as a state; None if it has none (a
    sentinel: its key is the one it had) or is another's. Before, its name alone: an edit
    of ``Registry(k=2)`` to ``k=5`` kept the key, and returned the old value.

    ``code`` (a call's argument): with the functions and classes of the user's code its
    attributes hold, each pickled as an argument is (its code and what it calls), as an
    instance's attributes are: its state's digest counts their own code alone (a global's
    walk follows the rest). Before, ``f(REG, x)`` with ``REG.fn = transform`` returned the
    old value after an edit of the helper ``transform`` calls."""
    try:
        if not _identity.is_user_module(type(obj).__module__):
            return None
    except Exception:  # noqa: BLE001 - an odd class: by its name, as before
        return None
    found = _own_state(obj)
    # by its digest, taken apart (``_identity._state_shape``): one holding what cannot be pickled (a
    # lock beside its settings) counts by its type, as a global does, never failing the
    # call that passes it (keyed by its name before), nor taking the state of the key
    if not found:
        return None
    active = _limits.naming
    if id(obj) in active:  # met again inside its own state (``self.me = self``): by name
        return ("again",)
    active.add(id(obj))
    try:
        state = _identity._state_shape(tuple(found))
    finally:
        active.discard(id(obj))
    named = _identity.code_named(tuple(value for _, value in found)) if code else ()
    return (state, named) if named else state


def _own_state(obj: Any) -> list[tuple[str, Any]]:
    """``_named_state``'s attributes: what the class's own ``__getstate__`` gives, if it
    has one (one leaving a lock out, as the README advises: its settings then count; before,
    its attributes, the lock among them, counted it by its type, and ``REG = Registry(k=2)``
    edited to ``k=5`` returned the old value), else its ``__dict__`` and ``__slots__``."""
    try:
        getstate = getattr(type(obj), "__getstate__", None)
    except Exception:  # noqa: BLE001 - an odd metaclass: its attributes
        getstate = None
    if getstate is None or getstate is getattr(object, "__getstate__", None):
        return _identity._attributes_of(obj)
    try:
        state = obj.__getstate__()
    except Exception:  # noqa: BLE001 - a broken __getstate__: its attributes, as before
        return _identity._attributes_of(obj)
    if type(state) is dict and all(type(name) is str for name in state):
        return sorted(state.items())
    return [] if state is None else [("__getstate__", state)]


class _StatePickler(_CanonicalPickler):
    """``state_key``'s pickler: the same bytes as ``_CanonicalPickler``, in less time for a
    state of many instances (a global list of 10,000 records cost 0.3 s at the first call:
    about 26 µs an instance where pickling it costs 2). Only in ``fast`` mode (no memo: the
    objects returned here may be new or shared where the other's are not).

    - An instance whose class pickles it the default way (``object.__reduce_ex__``: no
      ``__reduce__``, ``__getstate__``, ``__getnewargs__`` of its own, no ``__getattr__``)
      is reduced here as ``object.__reduce_ex__`` does, ``(copyreg.__newobj__, (cls,),
      state)``, its state normalised as ``_CanonicalPickler`` does (the ``__dict__`` by
      sorted names, then the ``__slots__``), without the generic path's copies. Checked
      once a class and pickle: the first instance takes the generic path, and its own
      reduction must be the one this gives; anything else (a name that is not a str, a
      hook set on the instance) takes the generic path.
    - A class or function met again is answered as the first time (it was noted, ``met``,
      then): its identity is cached for good anyway (``class_identity``), a function's
      while its code and defaults stay the ones it was made with.
    """

    def __init__(self, file: Any, protocol: int, buffer_callback: Any = None) -> None:
        super().__init__(file, protocol, buffer_callback=buffer_callback)
        self.fast = True
        # Each class met: how its instances reduce (None: the generic path)
        self._reducers: dict[type, Callable[[Any], Any] | None] = {
            MappingProxyType: _mapping_proxy_state, ContextVar: _context_var_state,
            **dict.fromkeys(_VIEWS, _view_state)}
        self._answers: dict[int, tuple[Any, Any, Any, Any, Any]] = {}

    def reducer_override(self, obj: Any) -> Any:
        answer = self._answers.get(id(obj))
        if answer is not None and _limits.state and (answer[2] is None or (
                answer[2] is obj.__code__ and answer[3] is obj.__defaults__
                and answer[4] is obj.__kwdefaults__)):
            return answer[1]
        t = type(obj)
        reduce = self._reducers.get(t)
        if reduce is not None:
            rv = reduce(obj)
            if rv is not None:
                return rv
        rv = super().reducer_override(obj)
        if t is FunctionType or isinstance(obj, type):
            # Kept only in state mode (``_limits.state``): an answer made outside it differs.
            if _limits.state:
                self._answers[id(obj)] = (  # the object too: its id stays its own
                    obj, rv, *((obj.__code__, obj.__defaults__, obj.__kwdefaults__)
                               if t is FunctionType else (None, None, None)))
        elif t not in self._reducers:
            special = _SPECIAL.get(t)  # a numpy array's: as the generic path found it
            if special is _reduce_array:
                special = _state_array
            elif special is None:
                layout = _default_layout(obj, t)
                if layout is not None:
                    special = functools.partial(_default_reduction, t, layout)
            self._reducers[t] = special
        return rv


# Names that, set on an instance, change how ``object.__reduce_ex__`` pickles it.
_HOOKS = frozenset({"__reduce_ex__", "__reduce__", "__getstate__", "__getnewargs_ex__",
                    "__getnewargs__", "__class__", "__dict__"})
_OBJECT_GETSTATE = getattr(object, "__getstate__", None)  # 3.11+
_NEWOBJ: Any = vars(copyreg)["__newobj__"]
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement


# Has a __dict__, slot names, the distinct ones sorted and their getter (None: by name).
_Layout = tuple[bool, tuple[str, ...], tuple[str, ...], Callable[[Any], Any] | None]


def _default_layout(obj: Any, t: type) -> _Layout | None:
    """``(has a __dict__, slot names, ...)`` if ``object.__reduce_ex__`` pickles ``t``'s
    instances (``obj`` one of them) and ``_default_reduction`` gives what it does, else
    None. Looked at once a class and pickle (a class changed since is looked at again)."""
    try:
        if (not all(b.__flags__ & _HEAPTYPE for b in t.__mro__[:-1])
                or t.__mro__[-1] is not object
                or copyreg.dispatch_table.get(t) is not None
                or _special_reducer(t) is not None
                or t.__reduce_ex__ is not object.__reduce_ex__  # type: ignore[comparison-overlap]
                or t.__reduce__ is not object.__reduce__  # type: ignore[comparison-overlap]
                or getattr(t, "__getstate__", None) is not _OBJECT_GETSTATE
                or hasattr(t, "__getnewargs_ex__") or hasattr(t, "__getnewargs__")
                or not _answers_by_type(t) or hasattr(t, "__getattr__")):
            return None
        slots = copyreg._slotnames(t)  # type: ignore[attr-defined]
        if not all(type(name) is str for name in slots):
            return None
        named = sorted(set(slots))  # a slot a subclass declares again is one slot
        getter = (operator.attrgetter(*named) if named and not _HOOKS.intersection(named)
                  and all(name.isidentifier() for name in named) else None)
        layout: _Layout = (t.__dictoffset__ != 0, tuple(slots), tuple(named), getter)
        rv = obj.__reduce_ex__(PROTOCOL)
        if (type(rv) is not tuple or len(rv) != 5 or rv[0] is not _NEWOBJ
                or type(rv[1]) is not tuple or len(rv[1]) != 1 or rv[1][0] is not t
                or rv[3] is not None or rv[4] is not None):
            return None
        attributes = obj.__dict__ if layout[0] else None
        expected: Any = attributes or None
        state = rv[2]
        if slots:
            values = _slot_values(obj, layout[1])
            if values:
                if (type(state) is not tuple or len(state) != 2
                        or type(state[1]) is not dict or list(state[1]) != list(values)
                        or any(state[1][k] is not v for k, v in values.items())):
                    return None
                state = state[0]
        if state is not expected:
            return None
    except Exception:  # noqa: BLE001 - whatever looking raised: the generic path
        return None
    return layout


def _slot_values(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The set slots of ``obj``, as ``object.__reduce_ex__`` collects them."""
    values = {}
    for name in names:
        try:
            values[name] = getattr(obj, name)
        except AttributeError:
            pass
    return values


def _default_reduction(t: type, layout: _Layout, obj: Any) -> Any:
    """``object.__reduce_ex__(obj, 5)`` normalised (``_CanonicalPickler``), or None where the
    generic path must answer (a name that is not a str, a hook set on the instance)."""
    state: Any = None
    if layout[0]:
        attributes = obj.__dict__
        if attributes:
            state = _attribute_items(attributes)
            if state is None:
                return None
    if layout[1]:
        items = None
        if layout[3] is not None:
            try:
                got = layout[3](obj)
            except AttributeError:  # a slot not set: left out, below
                pass
            else:  # every slot, by sorted name: what _attribute_items gives, without a dict
                values = (got,) if len(layout[2]) == 1 else got
                if not _ATOMS.issuperset(map(type, values)):
                    values = [v if type(v) in _ATOMS else normal(v) for v in values]
                items = (_Dict, tuple(zip(layout[2], values, strict=True)))
        if items is None:
            found = _slot_values(obj, layout[1])
            if found:
                items = _attribute_items(found)
                if items is None:
                    return None
        if items is not None:
            state = (state, items)
    return (_NEWOBJ, (t,), state, None, None)


def _state_array(a: Any) -> Any:
    """``_reduce_array(a)``, the bytes of a C-contiguous array of numbers viewed by a
    memoryview (the same bytes, read-only, out of band: the same digest) rather than two
    numpy views: 2 µs less an array in a state of many."""
    dtype = a.dtype
    if (a.size and not dtype.hasobject and a.flags.c_contiguous
            and dtype.type not in _padded_types()
            and (dtype.names is None or _value_bytes(dtype) is None)):
        try:
            raw = memoryview(a).cast("B")
        except (TypeError, ValueError, BufferError, NotImplementedError):  # a dtype the
            pass  # buffer protocol cannot spell (datetime64): numpy's views, below
        else:
            if raw.nbytes == a.nbytes:
                spelled = _spelled(dtype)
                return (_Array, (spelled, a.shape, _own_buffer(raw)))
    return _reduce_array(a)


def _attribute_items(attributes: dict[str, Any]) -> Any:
    """``normalize(attributes)`` for a table of str keys without hooks, else None."""
    try:
        items = sorted(attributes.items())  # the names differ: values are never compared
    except TypeError:  # names of types that do not compare: not attributes
        return None
    for name, value in items:
        if type(name) is not str or name in _HOOKS:
            return None
        if type(value) not in _ATOMS:  # normalised, as _sorted_items does
            for name, _ in items:
                if type(name) is not str or name in _HOOKS:
                    return None
            return (_Dict, tuple([(name, value if type(value) in _ATOMS else normal(value))
                                  for name, value in items]))
    return (_Dict, tuple(items))


_UNKNOWN: Any = object()
_SPECIAL: dict[type, Callable[[Any], Any] | None] = {}
# Bounded: a program that makes classes at run time (a namedtuple or dataclass per call)
# and passes their instances would otherwise keep every such class, and what it holds, alive.
_SPECIAL_MAX = 1024


def _mapping_proxy_state(proxy: Any) -> Any:
    """A read-only view of a table (``CONFIG = MappingProxyType({...})``, a frozen config),
    which pickle refuses: the table it shows. Before, such a global (or default, or
    capture) counted by its type alone, and an edit of the table returned the old value."""
    return (_MappingProxy, (normal(dict(proxy)),))


def _context_var_state(var: ContextVar[Any]) -> Any:
    """A ``ContextVar`` (``SCALE = ContextVar("scale", default=2)``), which pickle refuses:
    its name and its default, what a call reads where nothing set it. Before, counted by
    its type alone: an edit of ``default=`` returned the old value. A value ``set`` at run
    time is not followed, as a global mutated at run time is not (README)."""
    try:
        default = Context().run(var.get)  # in a context of its own: nothing set there
    except LookupError:  # no default
        return (_MappingProxy, ("ContextVar", var.name))
    return (_MappingProxy, ("ContextVar", var.name, normal(default)))


def _view_state(view: Any) -> Any:
    """A dict's ``keys()``, ``values()`` or ``items()`` (``NAMES = TABLE.keys()``), which
    pickle refuses: its items in their order. Before, counted by its type alone."""
    return (_MappingProxy, (type(view).__name__, normal(list(view))))


class _MappingProxy:  # names a view's state in a digest; never unpickled
    pass


_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))


def _readonly(args: Any) -> Any:
    """Constructor arguments with every buffer read-only: a read-only array and an equal
    writable one must pickle alike (pickle writes the flag)."""
    if type(args) is tuple and any(type(a) is pickle.PickleBuffer for a in args):
        return tuple(
            _own_buffer(a) if type(a) is pickle.PickleBuffer
            else a for a in args
        )
    return args


def _special_reducer(t: type) -> Callable[[Any], Any] | None:
    """The reduction of numpy arrays and pandas/polars frames, decided once per type; and
    of two values of the standard library that pickle refuses: a code object (by its
    fingerprint) and a ``struct.Struct`` (by its format). Before, a global holding one
    (``HEADER = struct.Struct("<I")``, ``RULE = compile("x * 2", ...)``) counted by its
    type: edited to ``">I"`` or ``"x * 3"``, the old value was returned; as an argument,
    it was refused.

    Only modules already imported are consulted: hashing never imports numpy or pandas.
    """
    if t is CodeType:
        return _reduce_code
    if t is object:
        return _reduce_sentinel
    if t is getattr(sys.modules.get("struct"), "Struct", None):
        return _reduce_struct
    np = sys.modules.get("numpy")
    if np is not None and (t is np.ndarray or t is getattr(np, "memmap", None)):
        return _reduce_array
    if np is not None and (t is np.recarray or t is np.matrix):
        return _reduce_records
    masked = sys.modules.get("numpy.ma.core")
    if masked is not None and issubclass(t, masked.MaskedArray):
        return _reduce_masked
    if (np is not None and issubclass(t, np.ndarray)
            and t.__module__.partition(".")[0] != "numpy"  # (np.matrix: its pickle's)
            and not issubclass(t, np.memmap)  # (its attributes: the file's mapping)
            and t.__reduce__ is np.ndarray.__reduce__
            and t.__reduce_ex__ is np.ndarray.__reduce_ex__):
        return _reduce_subarray
    if np is not None and issubclass(t, np.dtype) and _pickles_as_another(np, t):
        return _reduce_dtype
    if np is not None and issubclass(t, np.number) and (
            np.dtype(np.dtype(t).str).type is not t or t in _padded_types()):
        return _reduce_scalar
    if np is not None and issubclass(t, np.void):
        return _reduce_void
    pd = sys.modules.get("pandas")
    if pd is not None:
        if issubclass(t, pd.DataFrame):
            return _reduce_frame
        if issubclass(t, pd.Series):
            return _reduce_series
        backed = getattr(sys.modules.get("pandas._libs.arrays"), "NDArrayBacked", None)
        if isinstance(backed, type) and issubclass(t, backed):
            return _reduce_backed
    pl = sys.modules.get("polars")
    if pl is not None:
        if issubclass(t, pl.DataFrame):
            return _reduce_polars_frame
        if issubclass(t, pl.Series):
            return _reduce_polars_series
    return None


def _reduce_scalar(scalar: Any) -> Any:
    """A numpy scalar as the array of it: of a type its dtype's ``str`` does not name
    (``np.longlong``, ``np.ulonglong``: ``<i8``, ``<u8``, as ``int64`` and ``uint64`` on
    Linux), whose pickle names the other type (before, ``np.longlong(1)`` shared the key
    of ``np.int64(1)``, and a function telling them apart, ``type(x)``, got the other's
    value); or a long double, whose pickle holds its padding (``_padded_types``)."""
    return _Scalar, (_reduce_array(sys.modules["numpy"].asarray(scalar)),)


# The bare ``object()``s keyed as arguments (``_reduce_sentinel``), by id: each with the
# global naming it (the object held, so that its id is never another's), at most
# ``_SENTINELS_MAX``
_sentinels: dict[int, tuple[object, tuple[str, ...]]] = {}
_SENTINELS_MAX = 1024
_MAINS = frozenset({"__main__", "__mp_main__"})  # (a spawned worker's: its parent's main)
_SCRIPTS = 3  # the rank of a script's name for a sentinel: the last (``_reduce_sentinel``)


def _reduce_sentinel(obj: object) -> Any:
    """A bare ``object()`` passed as an argument (a sentinel: ``MISSING = object()``,
    ``ALL = object()``), which every other pickles as: by the global that names it (its
    module's first name for it, the same in every process), else by a token of this
    process's own (a sentinel no module names: its calls hit in this process only). Before,
    by pickle's ``object()``, shared by all: ``pick(ALL)`` returned ``pick()``'s value,
    the default ``MISSING``'s. In a state of the identity, by its name in the module the
    state comes from (``_identity.near_globals``), else alike, as before."""
    if _limits.state:
        # The module's first name for it (its dict's order: the order its code bound
        # them), not IPython's names of a cell's output (``_``, ``_5``). Before, the name
        # that sorted first: ``default = missing`` in a script's main block, or a cell
        # that showed it, named it otherwise than a spawned worker or another kernel did,
        # and each computed again and swept the other's entry.
        near = _identity.near_globals.get()
        if near is None:
            return None
        # In a script, its class's name for it first (as arguments key it): ``default =
        # Options.UNSET`` in its main block is no name in a spawned worker (before, the
        # worker's functions reading ``Options`` were of another identity: each computed)
        first, then = ((_class_named, _first_name) if near.get("__name__") in _MAINS
                       else (_first_name, _class_named))
        name = first(near, obj) or then(near, obj)
        return (_Sentinel, (name,)) if name is not None else None
    known = _sentinels.get(id(obj))
    if known is None or known[0] is not obj or not _still_named(known[1], obj):
        # (modules only, their dicts read as a lazy one's does not import it). A script's
        # or notebook's name for it last: ``from lib import MISSING`` there is not made in
        # a spawned worker nor in another script, which key by ``lib``'s. In a module, the
        # name it bound first (as in the identity, ``_first_name``)
        named = sorted((_SCRIPTS if name in _MAINS else 0, name, key)
                       for name, module in list(sys.modules.items())
                       for members in (_identity.module_globals(module),) if members
                       for key in (_first_name(members, obj),) if key is not None)
        if not named or named[0][0] == _SCRIPTS:
            # A class's name for it before a script's: ``DEFAULT = Options.UNSET`` there
            # (of ``lib``) is no name of it in another script, whose own ``DEFAULT =
            # object()`` it shares (before, ``lib.is_unset(DEFAULT)`` returned True there),
            # and ``default = Options.UNSET`` in a script's main block none in a spawned
            # worker (before, the worker computed again)
            named = sorted([*named, *_class_attributes(obj)])
        found = named[0][1:] if named else ("", os.urandom(16).hex())
        if len(_sentinels) >= _SENTINELS_MAX:
            _sentinels.clear()
        known = _sentinels[id(obj)] = (obj, found)
    return _Sentinel, known[1]


def _still_named(found: tuple[str, ...], obj: object) -> bool:
    """Whether the global or class attribute a sentinel was keyed by names it still. Once
    rebound (a notebook's cell ``SKIP = object()`` run again, a module reloaded), the name
    keys the new sentinel: the old one, still held (``opts = {'a': SKIP}``), is looked up
    again. Before, both keyed by the name: ``f(opts)`` returned the value computed when the
    old one was ``SKIP``."""
    home, name = found
    members = _identity.module_globals(sys.modules.get(home)) if home else None
    if members is None:
        return not home  # (a token: this object's own)
    if members.get(name) is obj:
        return True
    called, _, name = name.partition(".")  # a class attribute's ``Options.UNSET``
    cls = members.get(called)
    return issubclass(type(cls), type) and _CLASS_DICT(cls).get(name) is obj


_CLASS_DICT = type.__dict__["__dict__"].__get__  # a class's own, not a metaclass's


def _class_attributes(obj: object) -> list[tuple[int, str, str]]:
    """A sentinel no module but a script names: by the attribute of a class of the user's
    code that names it (``class Options: UNSET = object()``, as ``module``,
    ``Options.UNSET``), in the class's own module (in a spawned worker's ``__mp_main__``:
    ``__main__``), each as ``_reduce_sentinel`` sorts them. Before, a token: ``f(x=Options.
    UNSET)`` missed in every process, each storing an entry of its own. Classes of
    installed libraries are not searched (they are many, their sentinels named at module
    level)."""
    named: list[tuple[int, str, str]] = []
    for name, module in list(sys.modules.items()):
        globs = _identity.module_globals(module)
        if globs is None or not _identity.is_user_module(name):
            continue
        home = "__main__" if name in _MAINS else name
        for called, cls in list(globs.items()):
            # (not IPython's names of an output, ``_2 = opts``: before, ``_2.UNSET``
            # sorted before ``opts.UNSET``, a kernel that showed the class keyed apart)
            if not issubclass(type(cls), type) or _output_name(called):
                continue
            members = _CLASS_DICT(cls)
            of = members.get("__module__")
            if of == name or (name in _MAINS and of in _MAINS):
                named.extend((2 if name in _MAINS else 1, home, f"{called}.{key}")
                             for key, value in list(members.items()) if value is obj)
    return named


def _class_named(namespace: Mapping[str, Any], obj: object) -> str | None:
    """The name of a sentinel an attribute of a class ``namespace`` names (``class Options:
    UNSET = object()``), as ``Options.UNSET``: the first class in its order, its first
    attribute. Before, one the module named only so hashed as any other (the state of an
    identity): ``def pick(x=Options.ALL)`` edited to ``x=Options.UNSET`` returned the old
    value."""
    for called, cls in list(namespace.items()):
        if issubclass(type(cls), type) and not _output_name(called):
            name = _first_name(_CLASS_DICT(cls), obj)
            if name is not None:
                return f"{called}.{name}"
    return None


def _output_name(name: str) -> bool:
    """IPython's names of a cell's output (``_``, ``__``, ``___``, ``_5``)."""
    return name.startswith("_") and (not name.strip("_") or name[1:].isdigit())


def _first_name(namespace: Mapping[str, Any], obj: object) -> str | None:
    """The first name ``namespace`` binds to ``obj`` in its order (the order a module's
    code bound them: the same in a spawned worker, which does not run the main block), not
    counting IPython's names of a cell's output (``_``, ``__``, ``___``, ``_5``)."""
    return next((name for name, value in list(namespace.items())
                 if value is obj and not _output_name(name)), None)


class _Sentinel:  # names a bare ``object()``'s key; never unpickled
    pass


def _pickles_as_another(np: Any, t: type) -> bool:
    """Whether the dtypes of DType class ``t`` pickle as another's: numpy's ``longlong`` and
    ``ulonglong`` (``np.dtype(np.longlong)`` pickles as ``"i8"``, which reads back as
    ``int64``, on Linux), as ``_reduce_scalar`` says of their scalars; and a package's
    (``ml_dtypes``), whose ``str`` names ``void``."""
    scalar = getattr(t, "type", None)
    try:
        return (isinstance(scalar, type) and issubclass(scalar, np.generic)
                and np.dtype(np.dtype(scalar).str).type is not scalar)
    except (TypeError, ValueError):  # a str numpy cannot read back: pickled by its class
        return False


def _reduce_dtype(dtype: Any) -> Any:
    """A dtype that pickles as another's (``_pickles_as_another``): its pickle and its
    scalar type. Before, its pickle alone: ``f(np.dtype(np.longlong))`` shared the key of
    ``f(np.dtype(np.int64))``, and a function making an array of it (``np.zeros(3,
    dtype)[0]``, ``dtype.type``) got the other's value."""
    rv = dtype.__reduce__()
    if type(rv[1][0]) is not str:  # pickled by its class (``ml_dtypes``'): the key it had
        return None
    return _Scalar, (rv[1], normal(rv[2]), _qualified(dtype.type))


def _reduce_void(scalar: Any) -> Any:
    """A structured numpy scalar (``a[0]``, ``np.record``) whose items have bytes that hold
    no value (``_value_bytes``) as the array of it, those bytes left out; None (pickle's
    reduction, the key it always had) for any other. Before, its pickle, which holds them:
    such a scalar taken from an array made by ``np.empty`` had another key in each
    process."""
    if not _gapped(scalar.dtype):
        return None
    return _Scalar, (_reduce_array(sys.modules["numpy"].asarray(scalar)),)


def _reduce_records(a: Any) -> Any:
    """A ``np.recarray`` (or ``np.matrix``) whose items have bytes that hold no value, as
    its class and the array (``_reduce_array``: those bytes left out); None (its pickle,
    the key it always had) for any other. Before, its pickle: another key in each process
    (``_reduce_void``)."""
    if not _gapped(a.dtype):
        return None
    return _Subarray, (type(a), a.view(sys.modules["numpy"].ndarray))


def _gapped(dtype: Any) -> bool:
    """Whether ``dtype``'s items have bytes that hold no value, which its pickle would
    hold: a structured one of numbers (``_value_bytes``) or a long double
    (``_padded_types``). Before, a masked array, a recarray, a matrix or an ndarray
    subclass's of long doubles was keyed by its pickle, padding and all: another key in
    each process, never a hit after its first."""
    if dtype.names is None:
        return dtype.type in _padded_types()
    return not dtype.hasobject and _value_bytes(dtype) is not None


def _reduce_code(code: CodeType) -> Any:
    return _Code, (_identity.code_digest(code),)


def _reduce_struct(packer: Any) -> Any:
    return type(packer), (packer.format,)


def _reduce_array(a: Any) -> Any:
    """A numpy array by dtype, shape and its bytes in C order, hashed in place when it is
    contiguous: memory layout, the writeable flag and memmap-ness do not count."""
    dtype = a.dtype
    if dtype.hasobject:
        if getattr(_limits, "state", False) and a.size > _ITEMS_LIMIT:
            raise _TooLarge
        # Its items are Python objects the C pickler writes itself (a dict, a set): sorted
        # here, as for any argument, or the key would follow insertion order and the seed.
        items = normal(a.ravel().tolist())
        if dtype.kind == "O" and dtype.fields is None and dtype.metadata is None:
            return (_Array, ("object", a.shape, items))  # (the key it always had)
        # Another dtype holding objects: a structured one with an object field, numpy 2's
        # StringDType. Before, keyed as an object array of its items: fields named or
        # sized otherwise, and an object array of the same tuples, shared a key.
        return (_Array, ("object", _spelled(dtype, repr), a.shape, items))
    np = sys.modules["numpy"]
    if a.flags.c_contiguous:
        c = a
    else:  # copied into C order: a state (``state_key``) only within the pickle's limit
        if getattr(_limits, "state", False) and a.nbytes > STATE_LIMIT:
            raise _TooLarge
        c = np.ascontiguousarray(a)
    raw: Any = c.reshape(-1).view(np.uint8) if c.size else b""
    if c.size and dtype.type in _padded_types():  # each number's bytes, not its padding
        per = np.dtype(np.longdouble).itemsize
        rows = raw.reshape(-1, per)
        raw = np.ascontiguousarray(rows[:, per - 10:] if dtype.byteorder == ">" else
                                   rows[:, :10])
    elif c.size and dtype.names is not None:
        kept = _value_bytes(dtype)
        if kept is not None:  # each item's values, not the bytes between its fields
            raw = np.ascontiguousarray(raw.reshape(-1, dtype.itemsize)[:, kept])
    return (_Array, (_spelled(dtype), a.shape,
                     _own_buffer(raw)))


def _padded_types() -> frozenset[type]:
    """numpy's long double types, where a number's bytes hold padding that is not the
    number: x87 extended precision (x86 Linux), 10 bytes in 16, the other 6 whatever was
    in memory. Before, they were keyed with their padding: a long double array or scalar
    had another key in each process (never a hit after the first), and two equal ones
    made apart could differ. (Empty where a long double has no padding: IEEE quad on
    aarch64, a double on macOS and Windows.)"""
    global _PADDED
    if _PADDED is None:
        np = sys.modules["numpy"]
        x87 = np.finfo(np.longdouble).nmant == 63 and np.dtype(np.longdouble).itemsize > 10
        _PADDED = frozenset({np.longdouble, np.clongdouble}) if x87 else frozenset()
    return _PADDED


_PADDED: frozenset[type] | None = None


@functools.lru_cache(maxsize=256)
def _value_bytes(dtype: Any) -> Any:
    """The offsets of the bytes of a structured dtype's item that hold its fields' values
    (a read-only array), or None if all of them do. The others are padding (``align=True``,
    explicit ``offsets`` or ``itemsize``, a long double field's own, ``_padded_types``),
    whatever was in memory where the array was made (``np.empty``, then the fields
    assigned), which no field reads. Before, they were keyed: such an array, or a scalar
    of it, had another key in each process, never a hit after its first. (By equality: it
    says the fields' formats, offsets and the itemsize, all this depends on.)"""
    np = sys.modules["numpy"]
    used = np.zeros(dtype.itemsize, dtype=bool)
    _mark_values(np, dtype, 0, used)
    if used.all():
        return None
    kept = np.flatnonzero(used)
    kept.setflags(write=False)
    return kept


def _mark_values(np: Any, dtype: Any, at: int, used: Any) -> None:
    """Mark in ``used`` the bytes of ``dtype``'s item, at offset ``at``, that hold values."""
    if dtype.names is not None:
        for name in dtype.names:
            field = dtype.fields[name]
            _mark_values(np, field[0], at + field[1], used)
    elif dtype.subdtype is not None:
        base, shape = dtype.subdtype
        one = np.zeros(base.itemsize, dtype=bool)
        _mark_values(np, base, 0, one)
        count = int(np.prod(shape))
        used[at:at + count * base.itemsize] |= np.tile(one, count)
    elif dtype.type in _padded_types():
        per = np.dtype(np.longdouble).itemsize  # (a complex one: two of them)
        for start in range(at, at + dtype.itemsize, per):
            first = start + per - 10 if dtype.byteorder == ">" else start
            used[first:first + 10] = True
    else:
        used[at:at + dtype.itemsize] = True


def _reduce_masked(a: Any) -> Any:
    """A masked array whose mask is hard (``hard_mask=True``: assigning to a masked item
    leaves it masked), as the marker and a soft view of it; None (pickle's reduction, the
    key it always had) for a soft one. Before, its pickle, which leaves the flag out: a
    hard-masked array and the same array soft shared a key, and a function filling it
    got the other's values.

    A masked array of a structured dtype with padding (``_gapped``), soft or hard (and a
    record of one, ``mvoid``): by its class, base class, flag, data (``_reduce_array``:
    the padding left out), mask and fill value, what its pickle holds. Before, its pickle,
    padding and all: another key in each process (``_reduce_void``)."""
    if _gapped(a.dtype):
        np = sys.modules["numpy"]
        return (_Subarray, (type(a), a._baseclass, a.hardmask, a.view(np.ndarray),
                            np.ma.getmaskarray(a), a._fill_value))
    if not a.hardmask:
        return None
    soft = a.view()
    soft.soften_mask()  # (the view's own flag: ``a`` keeps its hard mask)
    return (_HardMask, (soft,))


def _reduce_subarray(a: Any) -> Any:
    """An instance of an ndarray subclass of the user's that pickles as ndarray does, and
    has attributes (numpy's ``InfoArray``, set in ``__array_finalize__``: ``a.unit``): by
    its class, its array and those attributes; None (pickle's reduction, the key it always
    had) for one without. Before, its pickle, which leaves the attributes out: arrays
    tagged ``"m"`` and ``"km"`` shared a key, and a function reading the tag got the
    other's."""
    attributes = getattr(a, "__dict__", None)
    if type(attributes) is not dict or not attributes:  # (of a structured dtype with
        if _gapped(a.dtype):  # padding: as a recarray, ``_reduce_records``)
            return _Subarray, (type(a), a.view(sys.modules["numpy"].ndarray))
        return None
    try:
        digest = xxhash.xxh3_128_hexdigest(canonical_bytes(normal(_but_itself(a, attributes))))
    except Exception as exc:  # attributes that cannot be pickled (a lock, a file): left
        if the_callers(exc):  # out, as pickle leaves them, rather than refuse the array
            raise
        return None
    return (_Subarray, (type(a), a.view(sys.modules["numpy"].ndarray), digest))


def _spelled(dtype: Any, plain: Callable[[Any], str] | None = None) -> Any:
    """How an array's dtype is written in its key: ``dtype.str`` (or ``plain(dtype)``) for
    one of no fields, ``str(dtype.descr)`` for a structured one, as always; the dtype
    itself (its pickle: byte order, fields by name, format, offset and title, itemsize,
    alignment, metadata) where those leave out what it says. Before, a dtype's
    ``metadata`` (h5py's enum and string dtypes keep theirs there) and the aligned flag
    (``align=True``) were not in the key: arrays differing only there shared a key, and a
    function reading them got the other's value; and a structured dtype whose fields
    overlap or are not in the order of their offsets (a union view) has no ``descr``:
    numpy raised ValueError, and such an array was refused as one that cannot be
    pickled. Kept by the dtype object (a key's array's is most often numpy's own
    ``float64``): looked up by its identity, never its equality, which ignores metadata."""
    if plain is None:
        known = _SPELLINGS.get(id(dtype))
        if known is not None and known[0] is dtype:
            return known[1]
    spelled: Any = dtype
    if not _dtype_extras(dtype):
        if dtype.fields is None and dtype.subdtype is None:
            spelled = dtype.str if plain is None else plain(dtype)
        else:
            try:
                spelled = str(dtype.descr)
            except ValueError:  # overlapping or out-of-order fields
                pass
    foreign = _scalar_types(dtype)
    if foreign is not None:
        spelled = (spelled, foreign)
    if plain is None and dtype.names is None:  # (a structured one's field names can be
        # set in place, ``dtype.names = ("c", "d")``: kept, its old spelling keyed arrays
        # of the new names as the old ones, another call's value)
        if len(_SPELLINGS) >= 256:  # dtypes made at run time: never kept for good
            _SPELLINGS.clear()
        _SPELLINGS[id(dtype)] = (dtype, spelled)  # (the dtype held: its id stays its own)
    return spelled


_SPELLINGS: dict[int, tuple[Any, Any]] = {}


def _scalar_types(dtype: Any) -> Any:
    """The scalar types of ``dtype`` and of its fields, by qualified name, if one of them is
    not the type its ``str`` names, else None (numpy's own dtypes: the key they had).
    Before, a dtype was keyed by its ``str``, which for a dtype a package registers
    (``ml_dtypes``' float8 and int4 types are all ``<V1``) or numpy's ``longlong`` (``<i8``,
    as ``int64``) names another type: arrays of the same bytes read as ``float8_e4m3fn``
    and as ``float8_e4m3fnuz`` shared a key, and a function converting them got the
    other's values. A structured dtype's type (``np.record``, not ``np.void``) too."""
    np = sys.modules["numpy"]
    names = dtype.names
    if names is not None:
        inner = tuple(_scalar_types(dtype.fields[name][0]) for name in names)
        if dtype.type is np.void and all(found is None for found in inner):
            return None
        return (_qualified(dtype.type), inner)
    if dtype.subdtype is not None:
        return _scalar_types(dtype.subdtype[0])
    if dtype.hasobject:  # (its items are keyed by their own pickle, types and all)
        return None
    try:
        if np.dtype(dtype.str).type is dtype.type:
            return None
    except (TypeError, ValueError):  # a str numpy cannot read back (``<f1``)
        pass
    return _qualified(dtype.type)


def _qualified(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


def _dtype_extras(dtype: Any) -> bool:
    """Whether ``dtype``, or a dtype of its fields or items, says more than its ``str`` or
    ``descr``: metadata, or the aligned flag."""
    if dtype.metadata is not None or dtype.isalignedstruct:
        return True
    if dtype.subdtype is not None and _dtype_extras(dtype.subdtype[0]):
        return True
    fields = dtype.fields
    return fields is not None and any(_dtype_extras(f[0]) for f in fields.values())


def _pandas_values(obj: Any) -> Any:
    values = getattr(obj, "_values", None)
    return obj.array if values is None else values


def _reduce_backed(array: Any) -> Any:
    """A pandas array backed by an ndarray (dates, durations, periods, categories) whose
    pickle holds the cache of what it worked out (``{'_cache': {'unit': 'us'}}``, once
    ``.unit`` was read, by a ``shift`` or a plot): its pickle without the cache. Before,
    with it: the same dates keyed apart once used, a miss in the call after one that
    shifted its argument. None (pickle's own: the key it had) for an array with none; with
    one, normalised as the generic path (``reducer_override``) normalises the array without
    it, so that both key alike: pandas 2 pickles one without attributes with an empty
    dict, pandas 3 with none."""
    rv = array.__reduce_ex__(PROTOCOL)
    state = rv[2] if type(rv) is tuple and len(rv) == 3 else None
    if not (type(state) is tuple and state and type(state[-1]) is dict
            and "_cache" in state[-1]):
        return None
    rest = {name: value for name, value in state[-1].items() if name != "_cache"}
    if not rest and not str(getattr(sys.modules.get("pandas"), "__version__", "")).startswith(
            ("0.", "1.", "2.")):
        state = state[:-1]  # (pandas 3's pickle of one without attributes: no dict)
    else:
        state = (*state[:-1], rest)
    return rv[0], _readonly(normal(rv[1])), normal(state)


def _reduce_index(index: Any) -> Any:
    pd = sys.modules["pandas"]
    if isinstance(index, pd.RangeIndex):
        return ("range", index.start, index.stop, index.step, normalize(index.name))
    if isinstance(index, pd.MultiIndex):
        return ("multi", normalize(tuple(index.names)),
                tuple(_reduce_index(level) for level in index.levels), tuple(index.codes))
    # A name is any hashable (a frozenset too): normalised like the values.
    reduced = (type(index).__name__, str(index.dtype), normalize(index.name),
               _pandas_values(index))
    # A DatetimeIndex's or TimedeltaIndex's frequency is not compared by ``equals`` but read
    # by ``asfreq``, ``to_period`` and models: in the key (other indexes keep their keys).
    freq = getattr(index, "freqstr", None)
    return reduced if freq is None else (*reduced, freq, *_beyond_freqstr(index.freq, freq))


def _beyond_freqstr(offset: Any, freqstr: str) -> tuple[Any, ...]:
    """Nothing for a frequency its ``freqstr`` names whole (``"D"``, ``"W-WED"``, ``"B+1h"``:
    the key it always had); else the offset itself, pickled with its parameters. A
    ``CustomBusinessDay``'s holidays and weekmask, a ``BusinessHour``'s opening hours, a
    ``normalize=True`` and a ``DateOffset``'s are not in its ``freqstr`` (``"C"``,
    ``"bh"``, ``"ME"``), but move ``shift``, ``asfreq`` and date arithmetic. Before,
    keyed by its ``freqstr`` alone: the same dates under ``CustomBusinessDay()`` and
    under one with a holiday shared a key, and ``index.shift(10)`` returned the other
    frame's date."""
    try:
        if sys.modules["pandas"].tseries.frequencies.to_offset(freqstr) == offset:
            return ()
    except Exception as exc:  # a ``freqstr`` that is only a repr (``<DateOffset: ...>``)
        if the_callers(exc):
            raise
    return (offset,)


def _reduce_series(s: Any) -> Any:
    reduced: tuple[Any, ...] = ("pandas.Series", type(s), normalize(s.name), str(s.dtype),
                                _reduce_index(s.index), _pandas_values(s))
    if s.attrs:  # (none: the key it always had)
        reduced = (*reduced, normal(_but_itself(s, s.attrs)))
    return (_Frame, reduced + _subclass_metadata(s, ("_name",)) + _pandas_flags(s))


def _reduce_frame(df: Any) -> Any:
    columns = tuple(
        (str(df.dtypes.iloc[i]), _pandas_values(df.iloc[:, i])) for i in range(df.shape[1])
    )
    return (_Frame, ("pandas.DataFrame", type(df), _reduce_index(df.columns),
                     _reduce_index(df.index), columns, normal(_but_itself(df, df.attrs)),
                     *_subclass_metadata(df, ()), *_pandas_flags(df)))


def _pandas_flags(obj: Any) -> tuple[Any, ...]:
    """A frame's or series' ``flags`` where they are not pandas' default (which keeps the
    key it had). ``allows_duplicate_labels=False`` (``set_flags``) makes ``concat``,
    ``reindex`` and the like raise on duplicate labels, and is carried to their results
    and kept by pickle. Before, not in the key: a frame with the flag and the same frame
    without it shared a key, and a function returning ``pd.concat([df, df])`` (or the
    flag) gave the other's value where it raises."""
    flags = getattr(obj, "flags", None)
    allows = getattr(flags, "allows_duplicate_labels", True)
    return () if allows is True else (("allows_duplicate_labels", allows),)


def _subclass_metadata(obj: Any, own: tuple[str, ...]) -> tuple[Any, ...]:
    """What a subclass of a pandas frame or series keeps beside its data (``_metadata``,
    pandas' way to subclass, which pickle keeps: ``unit = "km"``), by name; nothing for
    pandas' own classes. Before, not in the key: two frames of one subclass that differed
    only there got the other's value, as did two series by their ``attrs``."""
    names = [name for name in getattr(type(obj), "_metadata", ()) if name not in own]
    if not names:
        return ()
    return (normal(_but_itself(obj, {name: getattr(obj, name, None) for name in names})),)


def _but_itself(obj: Any, table: Mapping[Any, Any]) -> dict[Any, Any]:
    """``table`` with ``obj`` itself, where a value is it, marked (a frame whose metadata
    names it: ``d.parent = d``, which pickle keeps by its memo; memojar's keys have none,
    and it recursed until Python's limit)."""
    return {name: (_Frame, "itself") if value is obj else value for name, value in table.items()}


def _polars_values(s: Any) -> Any:
    """A polars column's values whatever its chunks: numbers (dates and times as their
    physical integers) as one buffer plus the null mask, strings and categories as their
    strings, anything else as a list."""
    pl = sys.modules["polars"]
    if s.dtype == pl.Categorical or isinstance(s.dtype, getattr(pl, "Enum", ())):
        s = s.cast(pl.String)
    if s.dtype == pl.String:
        return s.to_numpy()  # an object array, None for null
    if s.dtype.is_temporal():
        s = s.to_physical()
    if s.dtype in _wide_integers(pl):  # numpy has no 128-bit integers: as a list. Before,
        return normal(s.to_list())  # ``to_numpy`` raised, and such a column was refused
    if s.dtype.is_numeric() or s.dtype == pl.Boolean:
        if s.null_count():
            return (s.is_null().to_numpy(), s.fill_null(0).to_numpy())
        return s.to_numpy()
    return normal(s.to_list())  # an Object column may hold dicts and sets


def _wide_integers(pl: Any) -> tuple[Any, ...]:
    return tuple(getattr(pl, name) for name in ("Int128", "UInt128") if hasattr(pl, name))


def _reduce_polars_series(s: Any) -> Any:
    return (_Frame, ("polars.Series", type(s), s.name, str(s.dtype), _polars_values(s)))


def _reduce_polars_frame(df: Any) -> Any:
    columns = tuple((s.name, str(s.dtype), _polars_values(s)) for s in df.get_columns())
    return (_Frame, ("polars.DataFrame", type(df), columns))


def canonical_bytes(obj: Any) -> bytes:
    """Pickle an already normalised object canonically (in band: used to sort items).

    An object met again while its own bytes are being made (``a.nbrs = {b}``, ``b.nbrs =
    {a}``: sorting ``a``'s set pickles ``b``, whose set holds ``a``) has no place in an
    order: ``ReachedAgain``. Before, its sort recursed until Python's limit at every level,
    each retried, and the call never ended."""
    if not _needs_pickler(obj):  # plain data holds no object: no guard (10% of a key of
        return bytes(_dump_plain(obj, None))  # a dict of 1,000 tuple keys)
    making = _local.__dict__.setdefault("sorting", set())
    if id(obj) in making:
        raise ReachedAgain(
            f"it holds a {type(obj).__qualname__} that reaches itself through a set or a "
            "dict's keys, which memojar cannot put in an order that is the same in every "
            "process")
    making.add(id(obj))
    try:
        return bytes(_dump(obj, None))
    finally:
        making.discard(id(obj))


class ReachedAgain(TypeError):
    """A value holds an object that reaches itself through a set or a dict's keys."""


def _dump(obj: Any, buffer_callback: Callable[[Any], Any] | None,
          file: _Digest | None = None, state: bool = False) -> Any:
    """The canonical pickle of ``obj`` (a buffer), or, given ``file``, written into it
    (``state``: by ``state_key``'s pickler, which writes the same bytes sooner)."""
    if file is None and not _needs_pickler(obj):
        return _dump_plain(obj, buffer_callback)
    out: Any = io.BytesIO() if file is None else file
    kind = _StatePickler if state else _CanonicalPickler
    pickler = kind(out, PROTOCOL, buffer_callback=buffer_callback)
    pickler.fast = True  # no memo: shared and separate equal objects pickle alike
    try:
        pickler.dump(obj)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, ValueError) and "cyclic" not in str(exc):
            raise
        if isinstance(exc, RecursionError) and key_reentered(exc):
            raise  # endless recursion through the key's making, not a value containing itself
        # A structure that contains itself never ends without the memo (the C pickler
        # notices only for lists and dicts, after 50 levels; through tuples and reduced
        # objects it recurses until the stack runs out).
        out = io.BytesIO() if file is None else file.restart()
        _CanonicalPickler(out, PROTOCOL, buffer_callback=buffer_callback).dump(obj)
    return out.getbuffer() if file is None else None


# A value inside a function's identity (a global the function reads, a default, a partial's
# argument) counts by its state only up to these sizes: every process pays for it at the
# first call. A larger one (a model of gigabytes) counts by its type, as it did before.
STATE_LIMIT = 16 << 20  # bytes of pickle (objects pickle at 100-300 MB/s: under 0.2 s)
BUFFER_LIMIT = 1 << 30  # bytes of arrays, hashed in place (xxh3: about 0.1 s)
_ITEMS_LIMIT = 100_000  # items of containers, nested ones too: sorted before any pickling


def _items_left(value: Any, left: int) -> int:
    """``left`` less the items the containers in ``value`` (nested ones, and those in
    objects' attributes) hold in all, counted as ``normalize`` visits them (a container
    held twice counts twice): normalising sorts and copies them before any byte reaches the
    pickle, so the pickle's limit cannot bound it. Stops (below 0) once the count passes
    ``left``.

    Built-in containers (an instance's ``__dict__`` too) are counted where they are met,
    and only what they hold that is not an atom is looked at: the count is the same as
    visiting each item (it does not depend on the order), at a third of the time.
    Past ``left``, counted again with each list and dict once, as ``normal`` writes a
    value that holds itself (before, such a value was counted again at each way back,
    always past it, and such a global counted by its type: an edit of it kept the old
    value)."""
    counted = _count_items(value, left, None)
    return counted if counted >= 0 else _count_items(value, left, set())


def _count_items(value: Any, left: int, once: set[int] | None) -> int:
    """``_items_left``; ``once``: the lists and dicts counted so far, by id (met again:
    nothing more), or None to count them at each meeting."""
    stack = [value]
    seen: set[int] = set()  # objects, visited once (pickling one that holds itself ends)
    atoms = _ATOMS
    plain: set[type] = set()  # classes of objects that are no function, class or container
    while stack:
        obj = stack.pop()
        t = type(obj)
        if t in atoms:
            continue
        if t is list or t is tuple or t is set or t is frozenset:
            if once is not None and t is list and _counted(obj, once):
                continue
            left -= len(obj)
            if left < 0:
                return left
            if not atoms.issuperset(map(type, obj)):
                stack.extend(obj)
            continue
        if t is dict:
            if once is not None and _counted(obj, once):
                continue
            left -= len(obj)
            if left < 0:
                return left
            if not atoms.issuperset(map(type, obj)):
                stack.extend(obj)
            if not atoms.issuperset(map(type, obj.values())):
                stack.extend(obj.values())
            continue
        if t not in plain:
            if isinstance(obj, (FunctionType, type, ModuleType)):
                continue
            if isinstance(obj, (dict, list, tuple, set, frozenset)):  # a subclass: by its
                if (once is not None and isinstance(obj, (dict, list))  # keys() and
                        and _counted(obj, once)):  # values(), or its items
                    continue
                left -= len(obj)
                if left < 0:
                    return left
                if isinstance(obj, dict):
                    stack.extend(obj.keys())
                    stack.extend(obj.values())
                else:
                    stack.extend(obj)
            elif _answers_by_type(t):  # none of the above for each of its instances
                plain.add(t)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        try:
            attributes = getattr(obj, "__dict__", None)
        except Exception as exc:  # a __dict__ property of the user's raising: none counted
            if the_callers(exc):  # here (pickle reads the instance's own dict). Before, the
                raise  # state was not read at all, and a decorated wrapper object of such a
            attributes = None  # class returned another instance's values
        if type(attributes) is dict:  # counted here as the dict it is (above)
            left -= len(attributes)
            if left < 0:
                return left
            if not atoms.issuperset(map(type, attributes)):
                stack.extend(attributes)
            if not atoms.issuperset(map(type, attributes.values())):
                stack.extend(attributes.values())
    return left


def _counted(obj: Any, once: set[int]) -> bool:
    """Whether ``obj`` was counted before, else noted as counted now."""
    if id(obj) in once:
        return True
    once.add(id(obj))
    return False


def _answers_by_type(t: type) -> bool:
    """Whether ``isinstance`` answers by ``t`` alone for ``t``'s instances: no class of its
    own says another ``__class__`` (a proxy's does), nor looks attributes up its own way."""
    return t.__getattribute__ is object.__getattribute__ and not any(  # type: ignore[comparison-overlap]
        "__class__" in vars(klass) for klass in t.__mro__[:-1])


class _Limits(threading.local):
    """``state``: state_key is pickling in this thread (False in a thread that never did:
    a class default, so that the key path reads it without a missed attribute's
    exception). ``naming``: the ids of the objects pickled by their name whose state
    ``_named_state`` is taking in this thread."""

    state = False
    naming: set[int]

    def __init__(self) -> None:
        self.naming = set()


_limits = _Limits()


class _TooLarge(Exception):
    """The state is larger than ``STATE_LIMIT`` or ``BUFFER_LIMIT``."""


class _Digest:
    """A file for the canonical pickler that hashes what it is given, and stops it once
    more than ``STATE_LIMIT`` bytes came: memory stays a frame, time stays bounded."""

    __slots__ = ("hash", "left")

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> _Digest:
        self.hash, self.left = xxhash.xxh3_128(), STATE_LIMIT
        return self

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        self.left -= size
        if self.left < 0:
            raise _TooLarge
        self.hash.update(data)
        return size


def state_key(value: Any) -> str | None:
    """A digest of ``value``'s state as a call argument is keyed (normalised, pickled
    canonically, arrays in place), or None if it is larger than the limits above: the
    pickle is hashed as it is written, never held, and stopped at the limit. Within a
    ``bound_shape``, also within what that may still hash, which this takes from."""
    key = _limited_state_key(value)
    if key is None:  # counted by its type: noted for a warning (``_identity.too_large``)
        _identity.budget.too_large = True
    return key


def _limited_state_key(value: Any) -> str | None:
    budget = _identity.budget.left
    if budget is None:
        digests = _identity.budget.digests  # (in a function's identity, inside a walk)
        found = digests.get(id(value)) if digests is not None else None
        if found is not None:
            return found[1]
        key = _state_key(value, [_ITEMS_LIMIT, STATE_LIMIT, BUFFER_LIMIT])
        if digests is not None:
            digests[id(value)] = (value, key)
        return key
    limits = [min(_ITEMS_LIMIT, budget[0]), min(STATE_LIMIT, budget[1]),
              min(BUFFER_LIMIT, budget[2])]
    left = limits.copy()
    key = None
    try:
        key = _state_key(value, left)
        return key
    finally:
        # An attempt that gave no key (a lock in it, too large) is charged apart: its parts
        # are hashed next, each charged once to what keys take (``_identity.bound_shape``)
        first = 0 if key is not None else 3
        for at, (limit, unused) in enumerate(zip(limits, left, strict=True)):
            budget[first + at] -= limit - max(unused, 0)


def _state_key(value: Any, left: list[int]) -> str | None:
    """``state_key`` within ``left``: ``[items, bytes of pickle, bytes of arrays]``, each
    lowered by what it takes (below 0: past it, and None)."""
    left[0] = _items_left(value, left[0])
    if left[0] < 0:
        return None
    digest = _Digest()
    digest.left = left[1]
    buffers: list[pickle.PickleBuffer] = []
    room = left[2:]

    def take(buffer: pickle.PickleBuffer) -> None:
        room[0] -= memoryview(buffer).nbytes
        if room[0] < 0:
            raise _TooLarge
        buffers.append(buffer)

    # Set back, not cleared: a state met inside another's pickle (a class's method's
    # default, digested when the class is first met) must leave the outer one in state
    # mode, or the classes after it were keyed as arguments and not noted as met.
    previous = _limits.state
    _limits.state = True
    try:
        _dump(normal((value,)), take, digest, state=True)
    except _TooLarge:
        _released(buffers)
        return None
    except BaseException:
        _released(buffers)
        raise
    finally:
        _limits.state = previous
        left[1], left[2] = digest.left, room[0]
    for buf in buffers:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: hash a copy
            raw = memoryview(bytes(buf))
        digest.hash.update(raw.nbytes.to_bytes(8, "little"))
        digest.hash.update(raw)
    return digest.hash.hexdigest()


_local = threading.local()


def _dump_plain(obj: Any, buffer_callback: Callable[[Any], Any] | None) -> Any:
    """Plain data (atoms, bytes, lists and tuples of them) pickled without a memo."""
    if buffer_callback is not None:
        out = io.BytesIO()
        pickler = pickle.Pickler(out, PROTOCOL, buffer_callback=buffer_callback)
        pickler.fast = True
        pickler.dump(obj)
        return out.getbuffer()
    return _plain_bytes(obj)


class _Sink:
    """A file for the reused pickler: its ``write`` is a list's ``append``."""

    __slots__ = ("write",)
    write: Callable[[bytes], None]


def _plain_bytes(obj: Any) -> bytes:
    """The hit path's pickle: a reused memo-less pickler (plain data only, so pickling
    never re-enters). A small pickle reaches the file in one ``write``.

    Each thread keeps a list of free picklers, and a call takes one out of it (one
    ``pop``, atomic) until it is done: a signal handler that runs in the middle of this
    call (right after ``dump`` returns, before its output is taken) and makes a key of its
    own takes another one. With one shared pickler, the handler's pickle was appended to
    the interrupted call's output, and both were taken by the handler: the interrupted
    call hashed nothing, a key shared by every call so cut short, which read another
    call's value."""
    try:
        free = _local.free
    except AttributeError:
        free = _local.free = []
    try:
        pair = free.pop()
    except IndexError:
        chunks: list[bytes] = []
        sink = _Sink()
        sink.write = chunks.append
        pickler = pickle.Pickler(sink, PROTOCOL)
        pickler.fast = True
        pair = (chunks, pickler)
    chunks, pickler = pair
    try:
        pickler.dump(obj)
    except BaseException:
        chunks.clear()
        free.append(pair)
        raise
    if len(chunks) == 1:
        data = chunks.pop()
    else:
        data = b"".join(chunks)
        chunks.clear()
    free.append(pair)
    return data


def _needs_pickler(obj: Any) -> bool:
    """True if ``obj`` holds anything but plain data, so the normalising pickler must run."""
    t = type(obj)
    if t in _ATOMS or t in _BYTES_LIKE or t is pickle.PickleBuffer:
        return False
    if t is tuple or t is list:
        return any(_needs_pickler(x) for x in obj)
    if t is slice:  # plain if its parts are atoms (``slice(1, 10)``), as it always was
        return not _ATOMS.issuperset((type(obj.start), type(obj.stop), type(obj.step)))
    if t is BuiltinFunctionType:
        return _bound_to_data(obj)
    return not isinstance(obj, _BY_REFERENCE)


def _bound_to_data(method: Any) -> bool:
    """Whether a builtin method is bound to a value holding more than plain data (a set,
    a dict: ``allowed.__contains__``), which its holder's normalising must key; a
    module's function (``len``, ``math.sqrt``) or a method of plain data (``", ".join``)
    pickles as it always did."""
    holder = getattr(method, "__self__", None)
    return (holder is not None and type(holder) is not ModuleType
            and not isinstance(holder, type) and _needs_pickler(holder))


def hash_key(values: Any, seed: int = 0) -> str:
    """Hash normalised values into a 32-digit hex key.

    Raises whatever pickle raises for a value that cannot be pickled (``PicklingError``,
    ``TypeError``, ``AttributeError``); the decorator turns that into a ``TypeError`` naming
    the parameter. ``seed`` salts the hash (see ``make_key``).
    """
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = _dump(values, buffers.append)
    except BaseException:  # (a lock after arrays: ``_released``)
        _released(buffers)
        raise
    # The views are released once hashed: a cycle the value's own reduction left (``except
    # E as e: error = e``) keeps this frame and its locals, and the collector clearing an
    # exported view crashes the interpreter (CPython 3.12.1 a BytesIO's, gh-111049; an
    # array's, ``_released``).
    if not buffers:
        with data:
            return xxhash.xxh3_128_hexdigest(data, seed)
    try:
        with data:
            h = xxhash.xxh3_128(data, seed)
        for buf in buffers:
            try:
                raw = buf.raw()
            except BufferError:  # not contiguous: hash a copy
                raw = memoryview(bytes(buf))
            with raw:
                h.update(raw.nbytes.to_bytes(8, "little"))
                h.update(raw)
    finally:
        _released(buffers)
    return h.hexdigest()


def make_key(values: tuple[Any, ...], seed: int = 0) -> str:
    """The key of a bound-argument tuple: normalise, pickle canonically, hash.

    ``seed`` salts the hash at no cost: a function's entries for another Python version or
    another scope (script, notebook) get other keys, so they live apart and never replace
    each other (the decorator picks the seed once, at decoration time).
    """
    for value in values:
        if type(value) not in _ATOMS:
            if _limits.state:
                return _outside_state(values, seed)
            return hash_key(normal(values), seed)
    # Only atoms (the usual call): normalising changes nothing and there are no buffers, so
    # this is the same digest as below, without the walks (a third of a small hit).
    return xxhash.xxh3_128_hexdigest(_plain_bytes(values), seed)


def _outside_state(values: tuple[Any, ...], seed: int) -> str:
    """``make_key`` while this thread digests a state (``state_key``): a key made there is
    a call's, made by a signal handler (or code an object's pickling runs) calling a cached
    function, and is made as anywhere else. Before, it was made in state mode: a function
    or class argument by its own code, not by what it depends on (``argument_identity``),
    a key no other call made, and the same after an edit of a helper it calls: a later
    such call returned the value the old helper gave."""
    _limits.state = False
    try:
        return hash_key(normal(values), seed)
    finally:
        _limits.state = True


def holds_code(values: tuple[Any, ...]) -> bool:
    """Whether ``values`` hold a function or class of the user's code (an instance's class
    too) whose key covers what it depends on (``_identity.argument_identity``): their key
    differs from the one they would have by that code's own fingerprint alone. For
    ``cache_explain`` (an edit of a helper then changes the call's key); False if they
    cannot be keyed so (over the limits of a state)."""
    previous = _limits.state
    _limits.state = True  # functions and classes by their own code (``reducer_override``)
    try:
        own = hash_key(normal(values))  # not ``make_key``, which leaves state mode
    except Exception:  # noqa: BLE001 - over a state's limits: not said
        return False
    finally:
        _limits.state = previous
    return own != make_key(values)


# The code of the decorator's ``key_of``, where the key of a call is made (the decorator
# sets it, as this module sets ``_identity.value_key``): see ``key_reentered``.
call_key_code: Any = None


def key_reentered(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while the key of a call was made inside the making of
    another's: a cached function called while a key is made, by an argument's
    ``__reduce__`` or by a builtin memojar uses that was replaced by a cached one. Such a
    ``RecursionError`` is the caller's endless recursion, not a deep or cyclic value:
    retried at each level (memo pickling, pickle's own reduce, each argument alone), it
    would unwind in time exponential in the depth. The stack says it for every level but
    the outermost, which learns it from the traceback. Looked at only when a key failed."""
    count = 0
    frame: Any = sys._getframe(1)
    while frame is not None:
        count += frame.f_code is call_key_code
        frame = frame.f_back
    tb = exc.__traceback__
    while tb is not None:
        count += tb.tb_frame.f_code is call_key_code
        tb = tb.tb_next
    return count > 1


_identity.value_key = make_key  # values inside a function's identity are keyed as arguments
_identity.state_key = state_key  # and states of objects there, within limits
