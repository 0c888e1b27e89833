"""``Cache``, the ``cached`` decorator, and the records they report.

A ``Cache`` is a store (a directory, or a Redis server) plus the policy over it: its secret,
its size limit, pruning and listing. ``cached`` is ``Cache.cached`` on a cache chosen by
``cache_dir`` (one ``Cache`` per location per process, so their counters add up).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar, overload

from . import _entry
from ._decorator import Counter, _Memo, make_wrapper
from ._entry import Miss
from ._identity import generator_kind
from ._store import Store, StoredEntry

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
S = TypeVar("S")

_UTC = _dt.timezone.utc


class CacheInfo(NamedTuple):
    """Counters like ``functools.lru_cache``'s, plus what is on disk."""

    hits: int  # calls answered from the cache, in this process
    misses: int  # calls that computed, in this process
    entries: int  # entries stored (for a function: its entries)
    bytes: int  # their size in bytes


class EntryInfo(NamedTuple):
    """One stored entry, as ``Cache.entries()`` and the command line list it."""

    function: str  # module.qualname
    key: str
    size: int  # bytes
    created: _dt.datetime  # UTC
    expires: _dt.datetime | None  # UTC; None: never
    compute_time: float  # seconds the function took
    accessed: _dt.datetime  # UTC, last read or write (what LRU eviction goes by)
    version: str | int | None  # the function's version= (2, "2024-06"), None without one
    python: str  # the Python major.minor that wrote it
    fingerprint: str  # the function's code fingerprint
    scope: str = ""  # the script or notebook of a __main__ function; "" for modules


class CachedFunction(Protocol[P, R_co]):
    """What ``@cached`` returns: the function, with its signature, plus cache methods.

    It is a function, so in a class body it becomes a method: ``obj.f`` is bound (see
    ``BoundCachedFunction``), ``Cls.f`` is the function itself.
    """

    @property
    def __wrapped__(self) -> Callable[P, R_co]: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    @overload
    def __get__(self: S, instance: None, owner: type[Any] | None = None, /) -> S: ...
    @overload
    def __get__(
        self: CachedFunction[Concatenate[T, Q], R_co], instance: T,
        owner: type[Any] | None = None, /,
    ) -> BoundCachedFunction[Q, R_co, Concatenate[T, Q]]: ...

    def cache_info(self) -> CacheInfo:
        """CacheInfo(hits, misses, entries, bytes): hits and misses of this process,
        entries and bytes stored for this function."""
        ...

    def cache_clear(self) -> int:
        """Remove every entry of this function; return how many were removed."""
        ...

    def cache_contains(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """True if this call has a valid (fresh, compatible) entry; computes nothing."""
        ...

    def cache_delete(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Remove the entry of this call, if any; return True if one was removed."""
        ...

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Recompute this call, store the result and return it."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key of this call as a hex string (as ``memojar ls FUNCTION`` lists it)."""
        ...


class CachedClassmethod(
    CachedFunction[Concatenate[type[T_contra], Q], R_co], Protocol[T_contra, Q, R_co]
):
    """What ``@cached`` returns for a function whose first parameter is a class, as a
    classmethod's is: callable without it too. mypy does not bind ``cls`` to a classmethod
    whose type is a callable protocol (python/mypy#21599), so ``Cls.f(x)`` reaches
    ``__call__`` with ``cls`` unbound; this type accepts that call. The price: a plain
    function whose first parameter is a class may be called without it, unchecked."""

    @overload
    def __call__(self, cls: type[T_contra], /, *args: Q.args, **kwargs: Q.kwargs) -> R_co: ...
    @overload
    def __call__(self, *args: Q.args, **kwargs: Q.kwargs) -> R_co: ...


class Decorator(Protocol):
    """What ``cached(ttl=...)`` returns: applied to a function, a ``CachedFunction``."""

    @overload
    def __call__(
        self, func: Callable[Concatenate[type[T], P], R], /
    ) -> CachedClassmethod[T, P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...


class BoundCachedFunction(Protocol[P, R_co, Q]):
    """``obj.f`` for a ``@cached`` method ``f``: a bound method. Calling it takes the arguments
    after ``self`` (``P``). Its cache methods are the function's own, not bound: they take
    ``self`` too (``Q``), as in ``obj.f.cache_contains(obj, 1)`` for the call ``obj.f(1)``."""

    @property
    def __self__(self) -> object: ...

    @property
    def __func__(self) -> CachedFunction[Q, R_co]: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def cache_info(self) -> CacheInfo: ...

    def cache_clear(self) -> int: ...

    def cache_contains(self, *args: Q.args, **kwargs: Q.kwargs) -> bool: ...

    def cache_delete(self, *args: Q.args, **kwargs: Q.kwargs) -> bool: ...

    def refresh(self, *args: Q.args, **kwargs: Q.kwargs) -> R_co: ...

    def cache_key(self, *args: Q.args, **kwargs: Q.kwargs) -> str: ...


Ttl = float | int | _dt.timedelta | None


def default_directory() -> str:
    """``$MEMOJAR_DIR``, else the platform's user cache directory + ``memojar``."""
    env = os.environ.get("MEMOJAR_DIR")
    if env:
        return env
    from platformdirs import user_cache_dir

    return user_cache_dir("memojar", appauthor=False)


def open_store(
    location: str, max_size: int | None, signed: bool, secret: bytes | None = None
) -> Store:
    """The store for a location: a ``redis://`` or ``s3://`` URL, or a directory path.

    ``secret`` lets a store sign what it keeps beside entries (Redis chunk pointers)."""
    if location.startswith(("redis://", "rediss://", "unix://")):
        try:
            from ._redisstore import RedisStore
        except ImportError as exc:
            raise ImportError(
                f"cache location {location!r} needs the redis client: run "
                "pip install -e '.[redis]' in your memojar clone "
                "(for a published release: pip install 'memojar[redis]')"
            ) from exc
        return RedisStore(location, max_size=max_size, signed=signed, secret=secret)
    if location.startswith("s3://"):
        try:
            from ._s3store import S3Store
        except ImportError as exc:
            raise ImportError(
                f"cache location {location!r} needs the S3 client (boto3): run "
                "pip install -e '.[s3]' in your memojar clone "
                "(for a published release: pip install 'memojar[s3]')"
            ) from exc
        return S3Store(location, max_size=max_size, signed=signed)
    from ._filestore import FileStore

    return FileStore(location, max_size=max_size, trust_foreign=signed)


class Cache:
    """A cache directory (or Redis server) and the functions cached in it.

    ``max_size``: bytes for the whole cache; writes evict least-recently-used entries.
    ``secret``: bytes or str (default ``$MEMOJAR_SECRET``); when set, every entry is signed
    with HMAC-SHA256 and an entry that does not verify is never unpickled.
    ``lock_timeout``: seconds a call waits for another caller computing the same key;
    past it, it computes itself with a ``MemojarWarning``.

    A ``Cache`` pickles as its settings (location, ``max_size``, ``secret`` and
    ``lock_timeout``): it unpickles to a cache on the same location, without the
    functions decorated in this process or their counters.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        max_size: int | None = None,
        secret: bytes | str | None = None,
        lock_timeout: float = 600,
    ) -> None:
        if max_size is not None:
            if isinstance(max_size, bool) or not isinstance(max_size, int):
                raise TypeError(
                    f"max_size= must be a whole number of bytes, not {type(max_size).__name__}"
                )
            if max_size <= 0:
                raise ValueError(f"max_size= must be a positive number of bytes, got {max_size}")
        self.lock_timeout = _lock_timeout(lock_timeout)
        self.secret = _secret(secret)
        location = os.fspath(directory) if directory is not None else default_directory()
        self.store = open_store(location, max_size, signed=self.secret is not None,
                                secret=self.secret)
        self.directory = self.store.location
        self.max_size = max_size
        self._location = location  # as given (a Redis URL keeps its password), for pickling
        self._secret_arg = secret
        # The hit and miss counters of every function decorated here, for ``stats()``; not
        # the functions themselves, so the cache keeps no decorated function alive.
        self._counters: list[tuple[Counter, Counter]] = []

    def __reduce__(self) -> tuple[Any, ...]:
        return (Cache, (self._location, self.max_size, self._secret_arg, self.lock_timeout))

    def __repr__(self) -> str:
        return f"Cache({self.directory!r}, max_size={self.max_size!r})"

    # --- decorating -------------------------------------------------------------------

    @overload
    def cached(
        self, func: Callable[Concatenate[type[T], P], R], /
    ) -> CachedClassmethod[T, P, R]: ...
    @overload
    def cached(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...
    @overload
    def cached(
        self,
        func: None = None,
        /,
        *,
        ttl: Ttl = None,
        version: str | int | None = None,
        ignore: Iterable[str] | str = (),
        key: Callable[..., Any] | None = None,
    ) -> Decorator: ...

    def cached(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        ttl: Ttl = None,
        version: str | int | None = None,
        ignore: Iterable[str] | str = (),
        key: Callable[..., Any] | None = None,
    ) -> Any:
        """Cache a function's results in this cache (see ``memojar.cached``)."""
        ttl_seconds = _ttl(ttl)
        _entry.version_tag(version)  # raises TypeError for a version of another type
        ignored = _ignore(ignore)
        if key is not None and not callable(key):
            raise TypeError(f"key= must be a callable, not {type(key).__name__}")
        if key is not None and ignored:
            raise ValueError(
                "pass ignore= or key=, not both: key= already chooses what is hashed"
            )
        disabled = os.environ.get("MEMOJAR_DISABLE", "") not in ("", "0")

        def decorate(f: Callable[..., Any]) -> Any:
            if isinstance(f, classmethod):
                name = getattr(f.__func__, "__qualname__", "the method")
                raise TypeError(
                    f"@cached is above @classmethod on {name}: put it below "
                    "(@classmethod, then @cached, then def), so it caches the function and "
                    "the class is part of the key"
                )
            if isinstance(f, staticmethod):
                return staticmethod(decorate(f.__func__))
            if isinstance(f, type):
                raise TypeError(
                    f"cached decorates functions, not classes ({f.__qualname__}): decorate "
                    "the method or function whose results should be cached"
                )
            if not callable(f):
                raise TypeError(
                    f"cached needs a function to decorate, not {type(f).__name__} ({f!r})"
                )
            kind = generator_kind(f)
            if kind is not None:
                raise TypeError(
                    f"cannot cache {getattr(f, '__qualname__', f)!s}: it is a {kind} "
                    "function, and a generator cannot be stored; return a list (or a tuple) "
                    "of its items instead"
                )
            memo = _Memo(self, f, ttl_seconds, version, ignored, key)
            self._counters.append((memo.hit_count, memo.miss_count))
            return make_wrapper(memo, disabled)

        return decorate if func is None else decorate(func)

    # --- housekeeping -----------------------------------------------------------------

    def clear(self, function: str | Callable[..., Any] | None = None) -> int:
        """Remove every entry (of one function); return how many were removed.

        ``function``: a ``module.qualname`` (every entry of that name, whatever script,
        notebook or Python wrote it) or a decorated function (the entries it can read: of
        its script or notebook, and of this Python).
        """
        memo = getattr(function, "__memojar__", None)
        if isinstance(memo, _Memo):
            return self.store.remove([
                stored for stored in self.store.scan(memo.name)
                if (header := header_of(stored)) is not None and header.function == memo.name
                and header.scope == memo.scope and header.python == _entry.PYTHON
            ])
        name = _function_name(function)
        return self.store.remove(list(self.store.scan(name, heads=False)))

    def prune(
        self, *, other_pythons: bool = False,
        progress: Callable[[str, int, int | None], None] | None = None,
    ) -> int:
        """Remove what no call will read: expired entries; entries of an older entry
        format; entries of a function's older code or other ``version`` than its newest
        entry in the same scope (script or notebook) and Python; unreadable or truncated
        files; orphaned temporary files; then least-recently-used entries over ``max_size``.

        Entries another Python version (or a newer memojar) can read are kept:
        interpreters sharing a cache keep each other's entries. ``other_pythons=True``
        removes them too.

        ``progress``, if given, is called as ``progress("checking", n, None)`` for each entry
        read and ``progress("removing", n, total)`` as they are removed (the command line
        draws its counter with it). Returns how many files were removed.
        """
        keep = {FRESH} if other_pythons else {FRESH, *KEPT_FOR_OTHERS}
        entries: Iterable[StoredEntry] = self.store.scan()
        if progress is not None:
            entries = _reporting(entries, progress)
        judged = judge(entries, time.time())
        doomed = [stored for stored, _, verdict in judged if verdict not in keep]
        if progress is None:
            removed = self.store.remove(doomed)
        else:
            removed = 0
            for start in range(0, len(doomed), _REMOVE_BATCH):
                removed += self.store.remove(doomed[start : start + _REMOVE_BATCH])
                progress("removing", min(start + _REMOVE_BATCH, len(doomed)), len(doomed))
        removed += self.store.cleanup()
        removed += self.store.evict()
        return removed

    def entries(self, function: str | Callable[..., Any] | None = None) -> Iterator[EntryInfo]:
        """Every readable entry (of one function), from headers only: nothing is unpickled."""
        for stored in self.store.scan(_function_name(function)):
            header = header_of(stored)
            if header is None:
                continue
            yield EntryInfo(
                function=header.function,
                key=header.key,
                size=stored.size,
                created=_utc(header.created),
                expires=_utc(header.expires) if header.expires is not None else None,
                compute_time=header.compute_time,
                accessed=_utc(stored.accessed),
                version=_user_version(header.version),
                python=header.python,
                fingerprint=header.fingerprint,
                scope=header.scope,
            )

    def stats(self) -> CacheInfo:
        """Hits and misses of this process for all functions of this cache, and what is
        stored."""
        hits = sum(hit.value for hit, _ in self._counters)
        misses = sum(miss.value for _, miss in self._counters)
        return CacheInfo(hits, misses, *self._stored(None))

    def _info(self, memo: _Memo) -> CacheInfo:
        return CacheInfo(memo.hits, memo.misses, *self._stored(memo.name))

    def _stored(self, function: str | None) -> tuple[int, int]:
        """How many entries (of one function) are stored, and their bytes."""
        sizes = [stored.size for stored in self.store.scan(function, heads=False)]
        return len(sizes), sum(sizes)

    def close(self) -> None:
        """Release the store's connections (a no-op for a directory)."""
        self.store.close()


_REMOVE_BATCH = 500  # entries removed between two progress reports of prune


def _reporting(
    entries: Iterable[StoredEntry], progress: Callable[[str, int, int | None], None]
) -> Iterator[StoredEntry]:
    for n, stored in enumerate(entries, 1):
        progress("checking", n, None)
        yield stored


# What ``judge`` makes of an entry (the strings are what ``memojar ls FUNCTION`` shows).
FRESH, STALE, OTHER_PYTHON, SUPERSEDED, UNREADABLE, NEWER_FORMAT = (
    "fresh", "stale", "other Python", "superseded", "unreadable", "newer format"
)
KEPT_FOR_OTHERS = frozenset({OTHER_PYTHON, NEWER_FORMAT})  # prune(other_pythons=True) only


def _user_version(tag: str) -> str | int | None:
    """The ``version=`` a header's typed tag spells: ``"int:2"`` -> 2, ``"str:2"`` -> "2"."""
    kind, _, value = tag.partition(":")
    if kind == "int":
        return int(value)
    return value if kind == "str" else None


def header_of(stored: StoredEntry) -> _entry.Header | None:
    """A listed entry's header, or None if it is unreadable or not the length it promises."""
    try:
        header = _entry.read_header(stored.head)
    except Miss:
        return None
    return header if header.size == stored.size else None


def judge(
    entries: Iterable[StoredEntry], now: float
) -> list[tuple[StoredEntry, _entry.Header | None, str]]:
    """Each entry with its header and verdict: the one rule of ``prune`` and the CLI.

    UNREADABLE: no header (an older entry format, damaged), or truncated. NEWER_FORMAT: an
    entry of a newer memojar, which can read it (``prune`` keeps it unless asked). STALE: expired
    (for every Python: the expiry is a date). SUPERSEDED: the newest unexpired entry of its
    function *in the same scope and Python* was written for other code or another version:
    two scripts' ``__main__.load``, or a 3.11 and a 3.12 project, never supersede each
    other. OTHER_PYTHON: no process of this Python can use it, but the Python that wrote it
    can (``prune`` keeps it unless asked). FRESH: everything else.
    """
    judged: list[tuple[StoredEntry, _entry.Header | None, str]] = []
    newest: dict[tuple[str, str, str], tuple[float, str, str]] = {}
    for stored in entries:
        header = header_of(stored)
        if header is None:
            newer = _entry.newer_format(stored.head)
            judged.append((stored, None, UNREADABLE if newer is None else NEWER_FORMAT))
        elif header.stale(now):
            judged.append((stored, header, STALE))
        else:
            judged.append((stored, header, OTHER_PYTHON if header.incompatible() else FRESH))
            group = (header.function, header.scope, header.python)
            seen = newest.get(group)
            if seen is None or header.created > seen[0]:
                newest[group] = (header.created, header.fingerprint, header.version)
    return [
        (stored, header, SUPERSEDED)
        if verdict in (FRESH, OTHER_PYTHON) and header is not None
        and (header.fingerprint, header.version)
        != newest[header.function, header.scope, header.python][1:]
        else (stored, header, verdict)
        for stored, header, verdict in judged
    ]


_caches: dict[str, Cache] = {}
_caches_lock = threading.Lock()


def _cache_for(cache_dir: str | os.PathLike[str] | None) -> Cache:
    """One shared ``Cache`` per location, for ``@cached(cache_dir=...)``.

    Paths are normalised first (``"c"``, ``"./c"``, ``"~/c"`` and their absolute path are one
    cache, so their counters add up); URLs are taken as they are.
    """
    location = os.fspath(cache_dir) if cache_dir is not None else default_directory()
    if "://" not in location:
        location = os.path.abspath(os.path.expanduser(location))
    with _caches_lock:
        cache = _caches.get(location)
        if cache is None:
            cache = _caches[location] = Cache(location)
        return cache


@overload
def cached(func: Callable[Concatenate[type[T], P], R], /) -> CachedClassmethod[T, P, R]: ...
@overload
def cached(func: Callable[P, R], /) -> CachedFunction[P, R]: ...
@overload
def cached(
    func: None = None,
    /,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    ttl: Ttl = None,
    version: str | int | None = None,
    ignore: Iterable[str] | str = (),
    key: Callable[..., Any] | None = None,
) -> Decorator: ...


def cached(
    func: Callable[..., Any] | None = None,
    /,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    ttl: Ttl = None,
    version: str | int | None = None,
    ignore: Iterable[str] | str = (),
    key: Callable[..., Any] | None = None,
) -> Any:
    """Store each result on disk, keyed by the call's arguments; return it on the next call.

    ``cache_dir``: a directory or ``redis://`` URL (default ``$MEMOJAR_DIR``, else the user
    cache directory). ``ttl``: seconds or a timedelta after which an entry is recomputed.
    ``version``: a str or int; entries of other versions are never returned. ``ignore``:
    parameter names left out of the key. ``key``: a function of the same arguments whose
    picklable result is hashed instead of the arguments.
    """
    if func is not None and not callable(func):
        raise TypeError(
            f"cached needs a function to decorate, not {type(func).__name__} ({func!r}); "
            "to set options, call it with keywords: @cached(ttl=60)"
        )
    decorate = _cache_for(cache_dir).cached(ttl=ttl, version=version, ignore=ignore, key=key)
    return decorate if func is None else decorate(func)


# --- argument checks ------------------------------------------------------------------

def _ttl(ttl: Ttl) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, _dt.timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise TypeError(
            f"ttl= must be seconds (int or float) or a datetime.timedelta, "
            f"not {type(ttl).__name__}"
        )
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"ttl= must be a positive, finite duration, got {ttl!r}")
    return seconds


def _ignore(ignore: Iterable[str] | str) -> tuple[str, ...]:
    names = (ignore,) if isinstance(ignore, str) else tuple(ignore)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"ignore= takes parameter names (str), got {name!r}")
    return names


def _lock_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"lock_timeout= must be seconds (int or float), not {type(timeout).__name__}"
        )
    if not timeout >= 0:  # also NaN
        raise ValueError(
            f"lock_timeout= must be zero or more seconds (math.inf to wait as long as it "
            f"takes), got {timeout!r}"
        )
    return float(timeout)


def _secret(secret: bytes | str | None) -> bytes | None:
    if secret is None:
        secret = os.environ.get("MEMOJAR_SECRET") or None
    if secret is None:
        return None
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, (bytes, bytearray)):
        raise TypeError(f"secret= must be bytes or str, not {type(secret).__name__}")
    if not secret:
        raise ValueError("secret= must not be empty: pass None for no signing")
    return bytes(secret)


def _function_name(function: str | Callable[..., Any] | None) -> str | None:
    if function is None or isinstance(function, str):
        return function
    memo: _Memo | None = getattr(function, "__memojar__", None)
    if memo is None:
        from ._identity import function_name

        return function_name(function)
    return memo.name


def _utc(timestamp: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(timestamp, _UTC)


