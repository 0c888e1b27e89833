"""Cache keys: plain, pure functions from a call's arguments to a hex digest.

A key is xxh3-128 over a canonical pickle of the call's *bound* arguments. Canonical means
equal arguments give equal bytes in every process: dicts, sets and frozensets are written in
a sorted order at any depth (the C pickler never lets ``reducer_override`` see them, so they
are normalised before pickling), and values of different types (``1``, ``1.0``, ``True``)
stay different because pickle writes their types. Large buffers (numpy arrays, bytes,
bytearray, memoryview) go out of band through pickle protocol 5 and are hashed in place.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from collections import OrderedDict
from collections.abc import Callable, Iterable
from types import BuiltinFunctionType, FunctionType
from typing import Any

import xxhash

PROTOCOL = 5
BIG_BUFFER = 64 * 1024  # bytes-like values at least this large are hashed out of band


class _Dict:
    """Marker: a dict's items follow, sorted (never instantiated, pickled by reference)."""


class _Set:
    """Marker: a set's items follow, sorted."""


class _FrozenSet:
    """Marker: a frozenset's items follow, sorted."""


class _Bytes:
    """Marker: a large bytes-like value follows out of band; its type name is kept."""


_ATOMS = frozenset({int, float, complex, str, bool, type(None), type(Ellipsis), range, slice})
_BYTES_LIKE = (bytes, bytearray)
_BY_REFERENCE = (type, FunctionType, BuiltinFunctionType, pickle.PickleBuffer)


# --- binding ------------------------------------------------------------------------------

def make_binder(func: Callable[..., Any], ignore: Iterable[str] = ()) -> Callable[..., tuple]:
    """Return a function taking ``func``'s arguments and returning the bound values as a tuple.

    Defaults are applied and ``ignore``d parameters left out, so ``f(1)``, ``f(1, 1)``,
    ``f(x=1)`` and ``f(1, y=1)`` bind to the same tuple. The binder is generated once, at
    decoration time, as Python source with the function's own signature: binding a call is
    then one plain function call, several times faster than ``inspect.Signature.bind``.
    Raises ``ValueError`` if ``ignore`` names a parameter ``func`` does not have.
    """
    import inspect  # at decoration time only: it costs milliseconds to import

    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    names = [p.name for p in params]
    unknown = [name for name in ignore if name not in names]
    if unknown:
        raise ValueError(
            f"ignore= names {', '.join(map(repr, unknown))}, which "
            f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of "
            f"{func.__qualname__}{sig}; allowed: {', '.join(map(repr, names)) or 'none'}"
        )
    namespace: dict[str, Any] = {}
    source: list[str] = []
    kept: list[str] = []
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
        if p.name not in ignore:
            kept.append(p.name)
    if any(name.startswith("__memojar_") for name in names):
        return _signature_binder(sig, ignore)
    body = f"({', '.join(kept)},)" if kept else "()"
    # Generated source, from parameter names only (identifiers): see the docstring.
    exec(f"def _bind({', '.join(source)}):\n    return {body}\n", namespace)
    binder = namespace["_bind"]
    binder.__name__ = getattr(func, "__name__", "function")
    binder.__qualname__ = getattr(func, "__qualname__", binder.__name__)
    return binder


def _signature_binder(sig: Any, ignore: Iterable[str]) -> Callable[..., tuple]:
    """The slow, always-correct binder, for signatures the generated one cannot spell."""
    skip = frozenset(ignore)

    def bind(*args: Any, **kwargs: Any) -> tuple:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return tuple(v for k, v in bound.arguments.items() if k not in skip)

    return bind


def parameter_names(func: Callable[..., Any], ignore: Iterable[str] = ()) -> list[str]:
    """The names of the values a binder returns, in order (for error messages)."""
    import inspect

    return [n for n in inspect.signature(func).parameters if n not in ignore]


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
        return (_Bytes, t.__name__, pickle.PickleBuffer(obj))
    if t is memoryview:
        return _normalize_memoryview(obj)
    return obj


def _normalize_memoryview(view: memoryview) -> Any:
    """memoryview does not pickle: key it by format, shape and contents."""
    data: Any = view if view.c_contiguous else view.tobytes()
    data = pickle.PickleBuffer(data) if view.nbytes >= BIG_BUFFER else bytes(data)
    return (_Bytes, "memoryview", view.format, view.shape, data)


def _sorted(items: Iterable[Any]) -> tuple:
    normal = [normalize(x) for x in items]
    types = {type(x) for x in normal}
    if len(types) == 1 and types <= {str, int, bytes}:
        return tuple(sorted(normal))
    return tuple(sorted(normal, key=canonical_bytes))


def _sorted_items(items: Iterable[tuple[Any, Any]]) -> tuple:
    pairs = [(normalize(k), normalize(v)) for k, v in items]
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
    a set or a dict keys the same in every process.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _BY_REFERENCE):
            return NotImplemented
        reduce = copyreg.dispatch_table.get(type(obj))
        try:
            rv = reduce(obj) if reduce is not None else obj.__reduce_ex__(PROTOCOL)
        except Exception:  # noqa: BLE001 - let pickle raise its own, clearer error
            return NotImplemented
        if isinstance(rv, str):
            return NotImplemented
        rv = list(rv)
        rv[1] = normalize(rv[1])
        if len(rv) > 2:
            rv[2] = normalize(rv[2])
        if len(rv) > 3 and rv[3] is not None:
            rv[3] = iter(normalize(list(rv[3])))
        if len(rv) > 4 and rv[4] is not None:
            items = list(rv[4])
            rv[4] = iter(items if isinstance(obj, OrderedDict) else _sorted_items(items))
        return tuple(rv)


def canonical_bytes(obj: Any) -> bytes:
    """Pickle an already normalised object canonically (in band: used to sort items)."""
    return bytes(_dump(obj, None))


def _dump(obj: Any, buffer_callback: Callable[[Any], Any] | None) -> Any:
    if not _needs_pickler(obj):
        return pickle.dumps(obj, PROTOCOL, buffer_callback=buffer_callback)
    out = io.BytesIO()
    _CanonicalPickler(out, PROTOCOL, buffer_callback=buffer_callback).dump(obj)
    return out.getbuffer()


def _needs_pickler(obj: Any) -> bool:
    """True if ``obj`` holds anything but plain data, so the normalising pickler must run."""
    t = type(obj)
    if t in _ATOMS or t in _BYTES_LIKE or t is pickle.PickleBuffer:
        return False
    if t is tuple or t is list:
        return any(_needs_pickler(x) for x in obj)
    return not isinstance(obj, _BY_REFERENCE)


def hash_key(values: Any, seed: int = 0) -> str:
    """Hash normalised values into a 32-digit hex key.

    Raises whatever pickle raises for a value that cannot be pickled (``PicklingError``,
    ``TypeError``, ``AttributeError``); the decorator turns that into a ``TypeError`` naming
    the parameter. ``seed`` salts the hash (see ``make_key``).
    """
    buffers: list[pickle.PickleBuffer] = []
    data = _dump(values, buffers.append)
    if not buffers:
        return xxhash.xxh3_128_hexdigest(data, seed)
    h = xxhash.xxh3_128(data, seed)
    for buf in buffers:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: hash a copy
            raw = memoryview(bytes(buf))
        h.update(raw.nbytes.to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()


def make_key(values: tuple, seed: int = 0) -> str:
    """The key of a bound-argument tuple: normalise, pickle canonically, hash.

    ``seed`` salts the hash at no cost: a function's entries for another Python version or
    another scope (script, notebook) get other keys, so they live apart and never replace
    each other (the decorator picks the seed once, at decoration time).
    """
    for value in values:
        if type(value) not in _ATOMS:
            return hash_key(normalize(values), seed)
    # Only atoms (the usual call): normalising changes nothing and there are no buffers, so
    # this is the same digest as below, without the walks (a third of a small hit).
    return xxhash.xxh3_128_hexdigest(pickle.dumps(values, PROTOCOL), seed)
