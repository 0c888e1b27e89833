"""``Cache``, the ``cached`` decorator, and the records they report.

A ``Cache`` is a store (a directory, or a Redis server) plus the policy over it: its secret,
its size limit, pruning and listing. ``cached`` is ``Cache.cached`` on a cache chosen by
``cache_dir`` (one ``Cache`` per location per process, so their counters add up).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import math
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    NamedTuple,
    NoReturn,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

from . import _decorator, _entry
from ._decorator import (
    CacheInfo,
    Tally,
    _Memo,
    make_wrapper,
    release_abandoned,
    restamp_all,
    stored_total,
)
from ._errors import PartlyRemoved, logger, the_callers, warn
from ._identity import SIBLING, ambiguous, family_of, generator_kind, place_of
from ._store import (
    Counts,
    Removal,
    Store,
    StoredEntry,
    add_counts,
    header_of,
    start_thread,
)

if TYPE_CHECKING:
    import datetime as _dt  # imported where used: it was 5% of ``import memojar``

    Ttl = float | int | _dt.timedelta | None

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
S = TypeVar("S")


class Pruned(NamedTuple):
    """What ``prune`` removed: entries, and what interrupted writes left (temporary files,
    unfinished uploads: never entries)."""

    entries: int
    leftovers: int


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


class _Method(Protocol[T_contra, Q, R_co]):
    """A function that takes a first argument of type ``T_contra`` (``self``), then ``Q``."""

    def __call__(self, first: T_contra, /, *args: Q.args, **kwargs: Q.kwargs) -> R_co: ...


class CachedFunction(Protocol[P, R_co]):
    """What ``@cached`` returns: the function, with its signature, plus cache methods.

    It is a function, so in a class body it becomes a method: ``obj.f`` is bound (see
    ``BoundCachedFunction``), ``Cls.f`` is the function itself.
    """

    @property
    def __wrapped__(self) -> Callable[P, R_co]: ...

    # The second: a classmethod, whose first parameter is a class, also without it. mypy
    # does not bind ``cls`` to a classmethod whose type is a callable protocol
    # (python/mypy#21599), so ``Cls.f(x)`` reaches ``__call__`` with ``cls`` unbound. The
    # price: a plain function whose first parameter takes a class (``type[X]``, ``object``,
    # ``Any``) may be called without it, unchecked. A self type and not a separate overload
    # of ``cached``: a ``Callable[Concatenate[type[T], P], R]`` overload also took
    # ``def f(x: object)`` and ``def f(fn: Callable[[], int])``, then rejected ``f(1)``.
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    @overload
    def __call__(
        self: _Method[type[T], Q, R_co], *args: Q.args, **kwargs: Q.kwargs
    ) -> R_co: ...

    # The third: a classmethod reached through an instance (``obj.make(x)``), for which
    # pyright passes the instance to ``__get__``, not its class. The last: a staticmethod
    # reached through an instance (``obj.norm(x)``, either decorator order), for which mypy
    # and pyright call this ``__get__`` although at run time the staticmethod returns the
    # function unbound. ``_Method`` rather than ``CachedFunction[Concatenate[T, Q], R_co]``
    # as the self type: mypy checks the instance against a first parameter only so (it
    # would bind ``obj`` to ``x: float``).
    @overload
    def __get__(self: S, instance: None, owner: type[Any] | None = None, /) -> S: ...
    @overload
    def __get__(
        self: _Method[T, Q, R_co], instance: T, owner: type[Any] | None = None, /,
    ) -> BoundCachedFunction[Q, R_co, Concatenate[T, Q]]: ...
    @overload
    def __get__(
        self: _Method[type[T], Q, R_co], instance: T, owner: type[Any] | None = None, /,
    ) -> BoundCachedFunction[Q, R_co, Concatenate[type[T], Q]]: ...
    @overload
    def __get__(self: S, instance: object, owner: type[Any] | None = None, /) -> S: ...

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

    def cache_set(self, value: Any, /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Store ``value`` as the result of this call (seeding a cache, tests)."""
        ...

    def cache_explain(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """One line: would this call hit, and if not why (no entry, stale, or what changed:
        the function's code, a helper, constant or class, the version, a package, Python)."""
        ...


class Decorator(Protocol):
    """What ``cached(ttl=...)`` returns: applied to a function, a ``CachedFunction``."""

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

    def cache_set(self, value: Any, /, *args: Q.args, **kwargs: Q.kwargs) -> None: ...

    def cache_explain(self, *args: Q.args, **kwargs: Q.kwargs) -> str: ...



def default_directory() -> str:
    """``$MEMOJAR_DIR``, else the platform's user cache directory + ``memojar``."""
    env = os.environ.get("MEMOJAR_DIR")
    if env and env.strip():  # blank as empty: unset (before, " " was a folder named " ")
        return _relative_once(env)
    from platformdirs import user_cache_dir

    folder = user_cache_dir("memojar", appauthor=False)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg.strip() and not os.path.isabs(xdg) and sys.platform not in ("darwin", "win32"):
        # The XDG spec has a relative value ignored (platformdirs' releases since its #540
        # do; before, it was a folder of the current directory): ignored silently, the
        # user's setting had no effect and nothing said why. Said once a value.
        if not os.path.isabs(folder):
            folder = os.path.join(os.path.expanduser("~"), ".cache", "memojar")
        if xdg not in _XDG_RELATIVE_SAID:
            _XDG_RELATIVE_SAID.add(xdg)
            warn(f"XDG_CACHE_HOME={xdg!r} is ignored: it is a relative path, which the XDG "
                 f"Base Directory spec says to ignore; memojar caches in {folder} instead "
                 "(set XDG_CACHE_HOME to an absolute path, or MEMOJAR_DIR)")
    return folder


_XDG_RELATIVE_SAID: set[str] = set()  # the relative XDG_CACHE_HOME values warned of


def _relative_once(env: str) -> str:
    """``$MEMOJAR_DIR``, a relative path made absolute from the directory this process was
    in at its first use of that value: one cache for every function of the process. Before,
    each decoration took it from the directory it was made in, and a script that changed
    directory between two (``os.chdir``) cached them in two caches. A URL, a mistyped one
    (its error comes with its use) and an absolute path as they are."""
    try:
        if url_scheme(env) is not None or os.path.isabs(os.path.expanduser(env)):
            return env
    except ValueError:
        return env
    return _RELATIVE_DIRS.setdefault(env, os.path.abspath(os.path.expanduser(env)))


_RELATIVE_DIRS: dict[str, str] = {}  # relative $MEMOJAR_DIR values, as first made absolute


StoreFactory = Callable[[str, "int | None", "bytes | None", bool], Store]


def _file_store(
    location: str, max_size: int | None, secret: bytes | None, signed: bool
) -> Store:
    from ._filestore import FileStore
    from ._location import file_path

    return FileStore(file_path(location), max_size=max_size, trust_foreign=signed)


def _needs(location: str, extra: str, what: str) -> ImportError:
    # With this interpreter's pip (before, a bare "pip", which in a notebook or beside an
    # activated other venv installs where this Python never looks).
    import shlex
    import sys

    pip = f"{shlex.quote(sys.executable)} -m pip" if sys.executable else "pip"
    return ImportError(
        f"cache location {location!r} needs {what}: run {pip} install -e '.[{extra}]' in "
        f"your memojar clone (for a published release: {pip} install 'memojar[{extra}]')"
    )


def _optional(module: str, name: str, extra: str, what: str) -> StoreFactory:
    """The factory of a store whose client library is an optional extra: imported at first
    use, with an error naming the extra to install when it is missing."""

    def factory(
        location: str, max_size: int | None, secret: bytes | None, signed: bool
    ) -> Store:
        import importlib

        try:
            store: type[Any] = getattr(importlib.import_module(module, __package__), name)
        except ImportError as exc:
            raise _needs(location, extra, what) from exc
        return cast("Store", store(location, max_size=max_size, signed=signed, secret=secret))

    return factory


_redis_store = _optional("._redisstore", "RedisStore", "redis", "the redis client")


# The one plug-in point: a URL scheme -> the factory of its store, all called as
# ``factory(location, max_size, secret, signed)`` (``signed``: entries are signed above the
# store, so it need not warn about trust). A location without a scheme is a directory.
STORES: dict[str, StoreFactory] = {
    "file": _file_store,
    "redis": _redis_store,
    "rediss": _redis_store,
    "unix": _redis_store,
    "s3": _optional("._s3store", "S3Store", "s3", "the S3 client (boto3)"),
}
_BUILTIN = frozenset(STORES)  # whose URLs all start scheme:// (a plug-in's may not)
# A scheme: two or more letters before a colon ("C:" is a Windows drive, not a scheme).
_SCHEME = r"([A-Za-z][A-Za-z0-9+.-]+):"  # compiled at the first use (re caches it)


# Object stores users ask for that memojar does not offer, and why (said in the error).
# A store is offered only where its client gives, for free, what compute-once rests on: an
# atomic create-if-absent (S3's conditional PUT). The S3 store's client, boto3, speaks only
# S3 (README, "A cache shared between machines (S3 ...)", says why boto3).
_NOT_OFFERED = {
    scheme: name
    for name, schemes in (("Google Cloud Storage", ("gs", "gcs")),
                          ("Azure Blob Storage", ("az", "abfs", "abfss", "adl")))
    for scheme in schemes
}


class UnknownStoreError(ValueError):
    """A cache location is a URL of a scheme no store is registered for, or a mistyped URL
    of one that is (``malformed``: ``redis//host``, ``s3:/bucket``)."""

    def __init__(self, location: str, scheme: str, malformed: bool = False) -> None:
        known = ", ".join(f"{s}://" for s in sorted(STORES))
        name = _NOT_OFFERED.get(scheme.lower())
        self.location = location
        self.scheme = scheme
        self.malformed = malformed
        if malformed:
            # no password (after one slash too: ``redis:/user:pw@host``)
            shown = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*:?/*[^:@/]*):[^@/]*@", r"\1:***@",
                           location)
            super().__init__(
                f"cache location {shown!r} looks like a mistyped {scheme}:// URL (known: "
                f"{known}): write it as {_meant(shown)!r}, or, for a local folder, "
                f"start the path with ./ ({'./' + shown!r})"
            )
            return
        if name is None:
            what = f"which no memojar store handles (known: {known})"
        else:
            what = (f"{name}, which memojar does not offer (supported: {known}): its "
                    "object-store client, boto3, speaks only S3, and memojar offers a store "
                    "only where the client gives the atomic conditional writes that "
                    "computing once rests on")
        super().__init__(
            f"cache location {location!r} is a URL of the scheme {scheme!r}, {what}; for a "
            "local folder pass a path (a folder whose name has a colon: ./NAME or "
            "file:///path)"
        )

    def __reduce__(self) -> tuple[Any, tuple[str, str, bool]]:
        return type(self), (self.location, self.scheme, self.malformed)


def _meant(location: str) -> str:
    """The URL a mistyped one (``_NEAR_MISS``) most likely meant: ``redis:/host`` and
    ``redis//host`` are ``redis://host``; ``file:/tmp/c`` and ``unix:/run/r.sock``, a path
    after the scheme, ``file:///tmp/c`` and ``unix:///run/r.sock`` (before, the message said
    only "write it as file://...")."""
    near = re.match(_NEAR_MISS, location)
    assert near is not None  # (only a near miss is malformed)
    path = "/" if near[1].lower() in ("file", "unix") else ""
    return f"{near[1]}://{path}{location[near.end():].lstrip('/')}"


# A location that starts as a built-in scheme does but is no URL of it: the colon or a
# slash left out (``redis//host:6379/0``, ``s3:/bucket/prefix``, ``file:/tmp/c``). Before,
# the first two were local folders ``redis`` and ``s3:``. A relative path holding ``//``
# elsewhere (``data//cache``), or whose first folder is named so (``redis/cache``), is a path.
_NEAR_MISS = r"([A-Za-z][A-Za-z0-9+.-]+)(?://|:(?!//))"


def url_scheme(location: str) -> str | None:
    """The scheme (lower case) of a location that is a URL, None for a path. Raises
    ``UnknownStoreError`` for a URL of no registered scheme, and for a mistyped URL of a
    built-in one."""
    near = re.match(_NEAR_MISS, location)
    if near is not None and near[1].lower() in _BUILTIN:
        raise UnknownStoreError(location, near[1].lower(), malformed=True)
    match = re.match(_SCHEME, location)
    if match is None:
        return None
    scheme = match[1].lower()
    if scheme not in STORES:
        raise UnknownStoreError(location, scheme)
    return scheme


def open_store(
    location: str, max_size: int | None, signed: bool = False, secret: bytes | None = None
) -> Store:
    """The store for a location: a URL of a registered scheme (``STORES``) or a directory
    path. ``secret`` signs entries (and what a store keeps beside them, Redis chunk
    pointers). Raises ``UnknownStoreError`` for a URL of a scheme nobody registered, or a
    mistyped URL of one (``url_scheme``)."""
    scheme = url_scheme(location)
    if scheme is None:
        return _file_store(location, max_size, secret, signed)
    if scheme in _BUILTIN and scheme != "file" and re.search(r"[\t\r\n]", location):
        # urllib drops them: ``s3://bk\nt/p`` was bucket ``bkt``, another cache's perhaps
        from ._location import redact

        raise ValueError(
            f"cache location {redact(location)!r} holds a tab or a line break, which a URL "
            "cannot: urllib would drop it, and the cache be another URL's (read from a file "
            "with its newline? strip it)")
    return STORES[scheme](location, max_size, secret, signed or secret is not None)


class Cache:
    """A cache directory (or Redis server, or S3 bucket) and the functions cached in it.

    ``max_size``: bytes for the whole cache; writes evict least-recently-used entries.
    ``secret``: bytes or str (default ``$MEMOJAR_SECRET``); when set, every entry is signed
    with HMAC-SHA256 and an entry that does not verify is never unpickled.
    ``store``: a store object instead of a location (``directory`` and ``max_size`` are then
    the store's), e.g. one of a backend registered in no ``STORES`` scheme.
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
        *,
        store: Store | None = None,
        **unknown: NoReturn,  # (none: the types accept no other keyword; ``_unexpected``)
    ) -> None:
        if unknown:
            raise _unexpected("Cache()", unknown, _CACHE_OPTIONS)
        if store is not None:
            if not isinstance(store, Store):
                raise TypeError(
                    f"store= must be a memojar store (a subclass of memojar.Store), not "
                    f"{type(store).__name__}"
                )
            if directory is not None or max_size is not None:
                raise TypeError(
                    "pass a location (directory=, max_size=) or a store object (store=), "
                    "not both: the store object has its own location and max_size"
                )
            max_size = store.max_size
        if max_size is not None:
            whole = _whole(max_size)
            if whole is None:
                shown = f" ({max_size!r})" if isinstance(max_size, str) else ""
                raise TypeError(
                    f"max_size= must be a whole number of bytes, not "
                    f"{type(max_size).__name__}{shown}: e.g. max_size=2**30 for 1 GiB"
                )
            max_size = whole
            if max_size <= 0:
                raise ValueError(f"max_size= must be a positive number of bytes, got {max_size}")
        self.lock_timeout: float = _lock_timeout(lock_timeout)
        self.secret: bytes | None = _secret(secret)
        self._made_from_location = store is None  # a dropped one's counts reopen it
        if store is None:
            given = _location(directory, "directory")
            location = given or default_directory()
            try:
                store = open_store(location, max_size, signed=self.secret is not None,
                                   secret=self.secret)
            except ValueError as exc:
                if given is not None:
                    raise
                raise _of_the_environment(exc) from exc.__cause__
        else:
            location = store.location
            self._made_from_location = False
            if self.secret is not None:
                store.signed = True  # entries are signed above it: the signature decides
        self.store = store
        self.directory: str = self.store.location
        self.max_size = max_size
        self._location = location  # as given (a Redis URL keeps its password), for pickling
        self._secret_arg = secret
        # The tally of every live function of this cache (decorated here, or a copy
        # unpickled here) with a weak reference to it, for the saved statistics and, if
        # decorated here, ``stats()``: not the functions themselves, so the cache keeps no
        # decorated function alive. A dropped one's tally goes once merged, its counts kept
        # in ``_dropped`` (hits, misses): a process that decorates a function per request
        # keeps no tally per decoration, nor merges more of them every few seconds.
        self._tallies: list[Tallied] = []
        self._dropped = [0, 0]
        # Reentrant, and not taken again by its holder: a signal handler calling
        # ``flush_stats`` (``saved_stats``) while its thread merges returns at once (a plain
        # lock waited for itself for ever; a reentrant one merged the same counts twice).
        self._flush_lock = threading.RLock()
        # What of each tally's counts was merged (the one item: replaced whole, in one
        # store), and the merge under way or that raised: its id and what will have been
        # merged once it is (see ``_merge_tallies``), recorded in the store with this
        # cache's writer name (a forked child gets its own). No attribute is rebound: this
        # cache's finalizer holds them.
        self._merged: list[Merged] = [{}]
        self._attempt: list[tuple[str, Merged] | None] = [None]
        self._writer = [os.urandom(8).hex()]
        self._merge_ids = itertools.count(1)
        _FLUSHER.watch(self)
        # A cache dropped before its counts were merged (made in a function that returned,
        # as ``python -m memojar.demo`` makes its own) leaves them to the next merge: its
        # record, made now (no store, no lock, no reference back to the cache: a weak one),
        # takes the deltas from the tallies once the cache is gone, merged through a live
        # cache of the location's store or a store opened for them then, only where the
        # cache still is (see ``_merge_orphans``). (Before, its finalizer made the record:
        # an interrupt inside it, swallowed there as in any finalizer, lost them.)
        reopen = (self._location, self.secret) if self._made_from_location else None
        # (A store that keeps no statistics, S3's, needs none: no client is made at exit.)
        if type(store).merge_stats is not Store.merge_stats:
            _orphans.append(_Orphan(self.directory, reopen, weakref.ref(self),
                                    (self._tallies, self._merged, self._attempt,
                                     self._writer)))
        weakref.finalize(self, _still_counted, self.directory, self._tallies,
                         self._dropped).atexit = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopened, (self._location, self.max_size, self._secret_arg, self.lock_timeout))

    def __repr__(self) -> str:
        return f"Cache({self.directory!r}, max_size={self.max_size!r})"

    # --- decorating -------------------------------------------------------------------

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
        ignore: Iterable[str] | str | None = (),
        key: Callable[..., Any] | None = None,
        depends_on: Any = (),
        files: Iterable[str] | str | None = (),
        stale_while_revalidate: Ttl = None,
        min_compute_time: float | None = None,
        memory: int | None = None,
    ) -> Decorator: ...

    def cached(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        ttl: Ttl = None,
        version: str | int | None = None,
        ignore: Iterable[str] | str | None = (),
        key: Callable[..., Any] | None = None,
        depends_on: Any = (),
        files: Iterable[str] | str | None = (),
        stale_while_revalidate: Ttl = None,
        min_compute_time: float | None = None,
        memory: int | None = None,
        **unknown: Any,
    ) -> Any:
        """Cache a function's results in this cache (see ``memojar.cached``)."""
        if unknown:
            raise _unexpected("Cache.cached()", unknown, _DECORATOR_OPTIONS[1:])
        ttl_seconds = _ttl(ttl)
        file_params = _ignore(files, "files")
        swr = _ttl(stale_while_revalidate, "stale_while_revalidate")
        if swr is not None and ttl_seconds is None:
            raise ValueError(
                "stale_while_revalidate= is a window after an entry expires: it needs ttl= "
                "(e.g. @cached(ttl=3600, stale_while_revalidate=600))"
            )
        least = _min_compute_time(min_compute_time)
        held = _memory(memory)
        _entry.version_tag(version)  # raises TypeError for a version of another type
        _encodable(version)
        ignored = _ignore(ignore)
        if key is not None and not callable(key):
            raise TypeError(f"key= must be a callable, not {type(key).__name__}")
        if key is not None and ignored:
            raise ValueError(
                "pass ignore= or key=, not both: key= already chooses what is hashed"
            )
        if key is not None and file_params:
            raise ValueError(
                "pass files= or key=, not both: key= already chooses what is hashed (return "
                "the file's content or its digest from it)"
            )
        disabled = _switched_off()

        def memoize(f: Callable[..., Any]) -> Any:
            if isinstance(f, property):
                raise TypeError(_above_property(f))
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
                    f"cannot cache {getattr(f, '__qualname__', f)!s}: it is "
                    f"{'an' if kind.startswith('async') else 'a'} {kind} function, and a "
                    "generator cannot be stored; return a list (or a tuple) of its items "
                    "instead"
                )
            memo = _Memo(self.store, self.secret, f, ttl_seconds, version, ignored, key,
                         self.lock_timeout, swr, least, held, depends_on=depends_on,
                         files=file_params, register=self._register,
                         reopen=self._store_of)
            self._tallies.append((memo.tally, weakref.ref(memo), True))
            resume = _decorator.resume_after_fork  # its tally is merged, and dropped with it
            if resume is not None:
                resume()
            return make_wrapper(memo, disabled)

        # Not a closure that calls itself: that would be a reference cycle through the
        # cache, which a dropped cache (and its open folders) would wait on the cycle
        # collector for.
        def decorate(f: Callable[..., Any]) -> Any:
            _class_readable(f)
            if isinstance(f, staticmethod):
                return staticmethod(memoize(f.__func__))
            if isinstance(f, classmethod):
                # The function cached, with the class its first argument (in the key), as
                # below @classmethod. Before, a TypeError saying to put it there, of the
                # order the types accept.
                return classmethod(memoize(f.__func__))
            return memoize(f)

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
            # A function of another cache: its entries in this one (before, the other
            # cache's were removed, and counted as this one's).
            return memo.clear(None if memo.store.location == self.store.location
                              else self.store)
        name = _function_name(function)
        return self.store.remove_listed(self.store.scan(name, heads=False))

    def prune(
        self, *, other_pythons: bool = False,
        progress: Callable[[str, int, int | None], None] | None = None,
    ) -> int:
        """Remove what no call will read: expired entries; entries of an older entry
        format; entries of a function's older code or other ``version`` than its newest
        entry in the same scope (script or notebook) and Python (the closures one factory
        makes: than the newest of any of them, so another capture's entries of the same
        code are kept; each lambda of a scope keeps its own); unreadable or truncated
        files; orphaned temporary files; then least-recently-used entries over ``max_size``.

        Entries another Python version (or a newer memojar) can read are kept:
        interpreters sharing a cache keep each other's entries. ``other_pythons=True``
        removes them too.

        ``progress``, if given, is called as ``progress("checking", n, None)`` for each entry
        read (n counts on through the second look at functions whose entries differ in
        code or version), ``progress("removing", n, None)`` as entries are removed while
        the cache is read (n removed so far, not those another process removed first:
        the total is not known until the last is read), and once at the end
        ``progress("removing", n, n)`` with all of them (the command line draws its
        counter with it). Returns how many entries were removed (temporary files
        left by interrupted writes are removed too, and not counted: they were never
        entries; ``memojar prune`` reports them apart).
        """
        if not isinstance(other_pythons, bool):  # "no" and 1 removed other Pythons' entries
            kind = type(other_pythons)
            shown = kind.__name__ if kind.__module__ == "builtins" else (
                f"{kind.__module__}.{kind.__qualname__}")  # numpy.bool, not "bool"
            raise TypeError(
                f"other_pythons= must be True or False, not {shown} ({other_pythons!r})"
            )
        if progress is not None and not callable(progress):
            raise TypeError(
                f"progress= must be a callable (or None), not {type(progress).__name__}"
            )
        return self._prune(other_pythons, progress).entries

    def _prune(
        self, other_pythons: bool,
        progress: Callable[[str, int, int | None], None] | None,
    ) -> Pruned:
        """``prune``, counting entries and what interrupted writes left apart.

        Entries are removed as they are judged, ``REMOVE_BATCH`` at a time (``Pruning``):
        memory for a batch and for each group's newest entry, not for the cache. Before,
        every entry was held with its header until the last was read: 1.7 GB of RSS to prune
        a cache of 1,000,000 entries, half stale and half superseded (30 MB now)."""
        keep = {FRESH} if other_pythons else {FRESH, *KEPT_FOR_OTHERS}
        pruning = Pruning(self.store, keep, time.time(), progress)
        try:
            removed = self.store.remove_listed(pruning.doomed(), pruning.removing)
        except PartlyRemoved as said:  # the others were removed: said once, at the end
            # Before, prune raised at the first (a ``PermissionError`` naming the file),
            # and removed nothing more: neither the rest nor what went over ``max_size``.
            removed = said.removed
            warn(f"prune of {self.directory} left entries it may not remove "
                 f"({said.strerror}): {said.filename}")
        if progress is not None and pruning.found:
            progress("removing", removed, removed)
        leftovers = self.store.cleanup()
        removed += self.store.evict()
        try:
            self.store.forget_counts()  # whatever drifted: the next cache_info lists once
        except OSError as exc:
            logger.debug("cannot reset the entry counts of %s: %s", self.directory, exc)
        return Pruned(removed, leftovers)

    def entries(self, function: str | Callable[..., Any] | None = None) -> Iterator[EntryInfo]:
        """Every readable entry (of one function), from headers only: nothing is unpickled."""
        from ._report import utc  # imports datetime: not at ``import memojar``

        for stored in self.store.scan(_function_name(function)):
            header = header_of(stored)
            if header is None:
                continue
            yield EntryInfo(
                function=header.function,
                key=header.key,
                size=stored.size,
                created=utc(header.created),
                expires=utc(header.expires) if header.expires is not None else None,
                compute_time=header.compute_time,
                accessed=utc(stored.accessed),
                version=_user_version(header.version),
                python=header.python,
                fingerprint=header.fingerprint,
                scope=place_of(header.scope),
            )

    def stats(self) -> CacheInfo:
        """Hits and misses of this process for all functions of this cache's location
        (decorated through any ``Cache`` of it: ``@cached`` and ``Cache()`` on one directory
        are one cache), and what is stored."""
        with _FLUSHER.lock:
            caches = {id(c): c for c in _FLUSHER.caches if c.directory == self.directory}
        caches[id(self)] = self
        hits, misses = _dropped_counts.get(self.directory, (0, 0))  # of dropped caches
        for cache in caches.values():
            counts = cache._counts()
            hits, misses = hits + counts[0], misses + counts[1]
        return CacheInfo(hits, misses, *stored_total(self.store, None))

    def _counts(self) -> tuple[int, int]:
        """Hits and misses of the functions decorated through this object."""
        hits, misses = self._dropped
        for tally, _, counted in list(self._tallies):
            if counted:
                hits += tally.hit_count.value
                misses += tally.miss_count.value
        return hits, misses

    def _store_of(self) -> Store:
        """This cache's store, for a memo copied by pickle (see ``_Memo.__getstate__``)."""
        return self.store

    def _register(self, memo: _Memo) -> None:
        """Count a memo's statistics in this cache's saved statistics (a memo unpickled in
        another process registers its own)."""
        self._tallies.append((memo.tally, weakref.ref(memo), False))

    def saved_stats(self) -> dict[str, tuple[int, int, float]]:
        """Hits, misses and seconds saved per function name, summed over every process
        (merged every few seconds and at exit), plus this process's not merged yet."""
        self.flush_stats()
        kept = self.store.read_stats().get("functions", {})
        return {name: (int(h), int(m), float(s)) for name, (h, m, s) in kept.items()}

    def flush_stats(self) -> None:
        """Merge this process's new hits, misses and time saved into the store's totals."""
        if _orphans:  # this location's dropped caches' counts, merged before its own
            _merge_orphans([self], only=self.directory)
        if self._flush_lock._is_owned():  # type: ignore[attr-defined]
            return  # a signal handler inside this thread's merge: that merge goes on
        with self._flush_lock:
            self._merge_tallies()

    def _merge_tallies(self) -> None:
        """``flush_stats``' work, under ``_flush_lock``.

        Exact under an interrupt at any moment (a ``KeyboardInterrupt`` every millisecond),
        by a write-ahead record instead of exception handlers: before the store merges,
        ``_attempt`` holds the merge's id and what will have been merged once it is; the
        store writes the id with the counts (``Store.merged`` reads it back). The merge's
        end replaces ``_merged`` and clears ``_attempt``; a merge found still attempted
        (it raised, or an interrupt landed anywhere after it started) is settled first by
        asking the store whether its id was written. Each step is one store of one
        attribute, and settling twice settles the same way. (Before, the counts handed back
        after a merge that raised, less what the store remembered it had written: an
        interrupt between two of its handlers lost that memory, and the calls were counted
        again, 5 times as many in one run in three.)"""
        attempt = self._attempt[0]
        if attempt is not None:
            merge_id, target = attempt
            try:
                written = self.store.merged(self._writer[0], merge_id)
            except OSError as exc:  # cannot be told now: nothing is merged before it is
                logger.debug("cannot save statistics in %s: %s", self.directory, exc)
                self._fold_dropped()
                return
            if written:
                self._merged[0] = target
            self._attempt[0] = None
        self._fold_dropped()
        deltas, merged = _deltas_of(self._tallies, self._merged[0])
        if not deltas:  # the store's own counts (of entries written and removed) only
            try:
                self.store.merge_stats({})
            except OSError as exc:
                logger.debug("cannot save statistics in %s: %s", self.directory, exc)
                return
        else:
            merge_id = str(next(self._merge_ids))
            self._attempt[0] = (merge_id, merged)
            try:
                self.store.merge_stats(deltas, merge=(self._writer[0], merge_id))
            except OSError as exc:  # settled by the next merge
                logger.debug("cannot save statistics in %s: %s", self.directory, exc)
                return
            self._merged[0] = merged
            self._attempt[0] = None
        merged = self._merged[0]
        for entry in list(self._tallies):
            tally, memo, counted = entry
            if memo() is None and tally.now() == merged.get(tally, _NONE_YET):  # all merged
                if counted:
                    self._dropped[0] += tally.hit_count.value
                    self._dropped[1] += tally.miss_count.value
                self._tallies.remove(entry)
                merged.pop(tally, None)

    def _fold_dropped(self) -> None:
        """Add the tallies of dropped functions of one name (and counted or not by
        ``stats()``) into one, under ``_flush_lock``: their counts not merged yet, and
        what ``stats()`` says of them, are kept. Before, where counts could not be saved (a
        read-only cache, a Redis server down) every dropped decoration's tally waited for
        a merge that never came: one of about 600 bytes per function defined again (per
        request, per notebook cell run). A tally in a merge not settled yet (``_attempt``)
        is left as it is.

        Exact under an interrupt at any moment: the folded tallies are replaced by the new
        one in one slice assignment (other threads only append, at the end, and only this
        merge removes), then taken out of what was merged, the attempt's first (a key
        without a tally counts nothing, except in the attempt over a base without it)."""
        tallies, base = self._tallies, self._merged[0]
        attempt = self._attempt[0]
        target = attempt[1] if attempt is not None else None
        listed = list(tallies)
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, (tally, memo, counted) in enumerate(listed):
            if memo() is None and (target is None or target.get(tally) == base.get(tally)):
                groups.setdefault((tally.name, counted), []).append(i)
        groups = {key: found for key, found in groups.items() if len(found) > 1}
        if not groups:
            return
        folded = {i for found in groups.values() for i in found}
        first, last = min(folded), max(folded) + 1
        tallies[first:last] = (
            [(_sum_of([listed[i][0] for i in found], base), _gone, counted)
             for (_, counted), found in groups.items()]
            + [entry for i, entry in enumerate(listed[first:last], first) if i not in folded])
        for i in folded:
            if target is not None:
                target.pop(listed[i][0], None)
        for i in folded:
            base.pop(listed[i][0], None)

    def close(self) -> None:
        """Release the store's idle connections and stop its background threads once
        nothing is held (a no-op for a directory). The cache stays usable: calls still
        running in other threads finish and store as before, and a later call connects
        again (``tests/test_close.py``)."""
        self.store.close()


Merged = dict[Tally, tuple[int, int, float]]  # a tally -> its counts merged so far
# A tally of a cache, with a weak reference to its function (None once dropped), and
# whether ``stats()`` counts it (decorated through this cache)
Tallied = tuple[Tally, Callable[[], "_Memo | None"], bool]
_NONE_YET = (0, 0, 0.0)


def _gone() -> None:
    """The function of a tally of dropped ones (``_fold_dropped``): none."""


def _sum_of(tallies: list[Tally], base: Merged) -> Tally:
    """One tally of dropped functions of one name: their counts not merged yet (``base``:
    what was), and as ``stats()`` counts them (after a ``cache_clear``)."""
    hits = misses = hits_now = misses_now = 0
    saved = 0.0
    for tally in tallies:
        now, was = tally.now(), base.get(tally, _NONE_YET)
        hits, misses = hits + tally.hit_count.value, misses + tally.miss_count.value
        hits_now, misses_now = hits_now + now[0] - was[0], misses_now + now[1] - was[1]
        saved += now[2] - was[2]
    total = Tally(tallies[0].name, _decorator.Counter.at(hits_now, hits),
                  _decorator.Counter.at(misses_now, misses))
    total.saved = saved
    return total


def _counts_between(base: Merged, target: Merged) -> Counts:
    """What merging ``target`` over ``base`` adds, by function name."""
    counts: Counts = {}
    for tally, now in target.items():
        was = base.get(tally, _NONE_YET)
        if now != was:
            hits, misses, saved = counts.get(tally.name, _NONE_YET)
            counts[tally.name] = (hits + now[0] - was[0], misses + now[1] - was[1],
                                  saved + now[2] - was[2])
    return counts


def _deltas_of(
    tallies: list[Tallied], base: Merged,
) -> tuple[Counts, Merged]:
    """The counts of ``tallies`` not merged yet, by function name (``base``: what was), and
    what will have been merged once they are."""
    deltas: Counts = {}
    merged = dict(base)
    for tally, _, _ in list(tallies):
        now = tally.now()
        was = base.get(tally, _NONE_YET)
        if now != was:
            hits, misses, saved = deltas.get(tally.name, _NONE_YET)
            deltas[tally.name] = (hits + now[0] - was[0], misses + now[1] - was[1],
                                  saved + now[2] - was[2])
            merged[tally] = now
    return deltas, merged


Unsure = tuple[str, str, Counts]  # a merge that raised: (writer, merge id, its counts)


Sources = tuple[list[Tallied], list[Merged], list[tuple[str, Merged] | None], list[str]]


class _Orphan:
    """A cache's record for the counts it leaves when dropped, until they are merged: its
    location, how to open its store again, a weak reference to it, what it counts with
    (its tallies, what of them was merged, its merge under way, its writer name), and once
    it is gone, its ``state``: (counts, the counts of merges of it that raised, each added
    only if the store did not write that merge), replaced whole. ``tried``: the merge of
    it under way or that raised (writer, merge id), set before the store merges: a record
    is taken off ``_orphans`` only once a merge of it is known to be written, so an
    interrupt at any moment neither loses it nor merges it twice."""

    __slots__ = ("directory", "ref", "reopen", "sources", "state", "tried")

    def __init__(self, directory: str, reopen: tuple[str, bytes | None] | None,
                 ref: Callable[[], object], sources: Sources) -> None:
        self.directory = directory
        self.reopen = reopen
        self.ref = ref
        self.sources = sources
        self.state: tuple[Counts, tuple[Unsure, ...]] | None = None
        self.tried: tuple[str, str] | None = None

    def final(self) -> tuple[Counts, tuple[Unsure, ...]] | None:
        """Its counts once its cache is gone (its functions, which hold it, are gone with
        it: what they counted is final); None while it lives."""
        state = self.state
        if state is None:
            if self.ref() is not None:
                return None
            state = self.state = _counts_left(*self.sources)
        return state


# Every cache's record (``_Orphan``), appended when it is made (``list.append``, atomic under
# the GIL), merged once the cache is gone under ``_orphans_lock`` (a signal handler inside
# this thread's merge of them returns at once).
_orphans: list[_Orphan] = []
_orphans_lock = threading.RLock()


# The hits and misses of this process's dropped caches, by location, which ``stats()`` of a
# cache of it adds (before, they left it with the cache: its hits went down). Those of a
# folder removed since are let go once the table has grown past ``_dropped_prune_at``
# (doubled from what is left each time): a service making a ``Cache`` in a temporary folder
# per job kept one row per folder for good.
_dropped_counts: dict[str, tuple[int, int]] = {}
_DROPPED_KEPT = 64
_dropped_prune_at = [_DROPPED_KEPT]


def _still_counted(directory: str, tallies: list[Tallied], dropped: list[int]) -> None:
    """A dropped cache's finalizer: its hits and misses stay in ``stats()``."""
    hits, misses = dropped
    for tally, _, counted in list(tallies):
        if counted:
            hits += tally.hit_count.value
            misses += tally.miss_count.value
    if hits or misses:
        had = _dropped_counts.get(directory, (0, 0))
        _dropped_counts[directory] = (had[0] + hits, had[1] + misses)
        if len(_dropped_counts) >= _dropped_prune_at[0]:
            for location in list(_dropped_counts):
                if _is_folder(location) and not os.path.isdir(location):  # removed
                    _dropped_counts.pop(location, None)
            _dropped_prune_at[0] = max(_DROPPED_KEPT, 2 * len(_dropped_counts))


def _counts_left(tallies: list[Tallied], merged: list[Merged],
                 attempt: list[tuple[str, Merged] | None],
                 writer: list[str]) -> tuple[Counts, tuple[Unsure, ...]]:
    """What a dropped cache counted since its last merge, and its merge that raised (its
    counts added only if the store did not write it)."""
    base, tried = merged[0], attempt[0]
    unsure: tuple[Unsure, ...] = ()
    if tried is not None:
        merge_id, target = tried
        maybe = _counts_between(base, target)
        if maybe:
            unsure = ((writer[0], merge_id, maybe),)
        base = target
    deltas, _ = _deltas_of(tallies, base)
    return deltas, unsure


def _merge_orphans(caches: list[Cache], only: str | None = None,
                   at_exit: bool = False, silent: set[object] | None = None) -> None:
    """Merge the counts of dropped caches: through a live cache of the same location's
    store, or else through a store opened for them now, only if the location is still a
    cache (a removed cache folder is never made again for them); those of a cache made with
    ``store=`` and no live cache of its location left are dropped. A Redis or S3 store is
    opened for them only at the exit (``at_exit``: no connection is made every few seconds
    for them, and a server gone costs its timeout once). Counts that cannot be merged yet
    (a read-only folder) wait for the next merge. ``only``: of that location only.
    ``silent``: servers found silent at the exit (``_Flusher.merge_all``), not asked again.

    (Before, the records were taken off the list first, then handed on or merged: an
    interrupt in between lost them.)"""
    if _orphans_lock._is_owned():  # type: ignore[attr-defined]
        return  # a signal handler inside this thread's merge of them: merged there
    # (``with``: no interrupt lands between the lock's taking or giving back and the block)
    with _orphans_lock:
        live = {cache.directory: cache for cache in caches}
        by_location: dict[str, list[_Orphan]] = {}
        for orphan in list(_orphans):
            if only is not None and orphan.directory != only:
                continue
            state = orphan.final()
            if state is None:  # its cache lives
                continue
            if not (state[0] or state[1]):
                _forget([orphan])
                continue
            by_location.setdefault(orphan.directory, []).append(orphan)
        for directory, orphans in by_location.items():
            cache = live.get(directory)
            reopen = next((o.reopen for o in orphans if o.reopen is not None), None)
            if cache is not None:
                _merge_silently(cache.store, orphans, silent)
                continue
            if reopen is None:  # a ``store=`` cache's, none of it left
                _forget(orphans)
                continue
            if not at_exit and not _is_folder(reopen[0]):
                _added_up(orphans)  # merged at the exit: one record per location meanwhile
                continue
            try:
                store = _reopen_for_counts(directory, *reopen)
            except Exception as exc:  # noqa: BLE001 - statistics never fail the program
                logger.debug("cannot save statistics in %s: %s", directory, exc)
                continue
            if store is None:  # no cache there now: none is made for them
                _forget(orphans)
                continue
            try:
                _merge_silently(store, orphans, silent)
            finally:
                store.close()


def _merge_silently(store: Store, orphans: list[_Orphan], silent: set[object] | None) -> None:
    """``_merge_orphans_into``, unless ``store``'s server is in ``silent`` (at the exit)."""
    if silent is not None and store.server in silent:
        logger.debug("statistics in %s not saved: its server is silent", store.location)
        return
    failing = store.failing
    _merge_orphans_into(store, orphans)
    _note_silent(store, failing, silent)


def _note_silent(store: Store, failing: bool, silent: set[object] | None) -> None:
    """Note in ``silent`` the server of ``store`` if a merge just found it silent, its
    timeout spent (not failing before it: a store failing since earlier may have a server
    up again). Not a refused connection: it cost no wait, and may be this store's own (a
    wrong password in its URL): before, a dropped cache's store reopened with a wrong
    password made the exit skip every other cache of that server, their counts lost."""
    if silent is not None and store.server is not None and not failing and store.silent:
        silent.add(store.server)


def _added_up(orphans: list[_Orphan]) -> None:
    """Records of one location, none tried yet, made one: the others emptied in the same
    store (no signal handler runs between the two), then let go."""
    first = orphans[0]
    for other in orphans[1:]:
        if first.tried is None and other.tried is None and first.state and other.state:
            (counts, unsure), (more, others) = first.state, other.state
            first.state, other.state = (add_counts(counts, more), unsure + others), ({}, ())
            _forget([other])


def _forget(orphans: list[_Orphan]) -> None:
    for orphan in orphans:
        with contextlib.suppress(ValueError):
            _orphans.remove(orphan)


def _merge_orphans_into(store: Store, orphans: list[_Orphan]) -> None:
    """Merge ``orphans`` (of one location) through ``store``, in one merge, exactly once:
    each step one store of one attribute, and a step done twice does the same."""
    try:
        left = []
        for orphan in orphans:  # settled first: merges of them that raised
            if orphan.tried is not None:
                if store.merged(*orphan.tried):
                    _forget([orphan])
                    continue
                orphan.tried = None
            if orphan.state is None:
                continue
            counts, unsure = orphan.state
            for writer, merge_id, maybe in unsure:
                if not store.merged(writer, merge_id):
                    counts = add_counts(counts, maybe)
            orphan.state = (counts, ())
            left.append(orphan)
        total = add_counts({}, *(orphan.state[0] for orphan in left if orphan.state))
        if not total:
            _forget(left)
            return
        merge = (os.urandom(8).hex(), "1")
        for orphan in left:
            orphan.tried = merge
        store.merge_stats(total, merge=merge)
        _forget(left)
    except OSError as exc:  # tried again with the next merge
        logger.debug("cannot save statistics in %s: %s", store.location, exc)
    except Exception as exc:  # noqa: BLE001 - statistics never fail the program
        logger.debug("cannot save statistics in %s: %s", store.location, exc)


def _is_folder(location: str) -> bool:
    match = re.match(_SCHEME, location)
    return match is None or match[1].lower() == "file"


def _reopen_for_counts(directory: str, location: str, secret: bytes | None) -> Store | None:
    """The store of a dropped cache, for its last counts; None for a folder that is no
    cache now (removed, or never written to: nothing is created for counts). A folder is
    opened by its absolute path (a relative one given may name another since a chdir).
    ``OSError`` if its tag could not be opened for want of descriptors: the counts wait for
    the next merge (before, such a folder was taken for no cache, and its counts dropped)."""
    if _is_folder(location):
        from ._filestore import holds_tag

        if not holds_tag(directory):
            return None
        location = directory
    return open_store(location, None, signed=secret is not None, secret=secret)


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


def judge(
    entries: Iterable[StoredEntry], now: float
) -> list[tuple[StoredEntry, _entry.Header | None, str]]:
    """Each entry with its header and verdict: the one rule of ``prune`` and the CLI.

    UNREADABLE: no header (an older entry format, damaged), or truncated. NEWER_FORMAT: an
    entry of a newer memojar, which can read it (``prune`` keeps it unless asked). STALE: expired
    (for every Python: the expiry is a date). SUPERSEDED: the newest unexpired entry of its
    function *in the same scope and Python* was written for other code or another version:
    two scripts' ``__main__.load``, or a 3.11 and a 3.12 project, never supersede each
    other, nor do closures or lambdas of one name (their scope tells them apart, see
    ``_identity.sibling_of``); an entry of such a name whose scope does not, written by a
    memojar that did not tell them apart, is superseded for this Python. OTHER_PYTHON: no
    process of this Python can use it, but the Python that wrote it can (``prune`` keeps it
    unless asked). FRESH: everything else.
    """
    judged: list[tuple[StoredEntry, _entry.Header | None, str]] = []
    newest: Newest = {}
    for stored in entries:
        header = header_of(stored)
        verdict = first_verdict(stored, header, now)
        if header is not None and verdict in PROVISIONAL:
            note_newest(newest, header)
        judged.append((stored, header, verdict))
    return [(stored, header, final_verdict(header, verdict, newest))
            for stored, header, verdict in judged]


# By group (``_groups``): the creation time, code and version of its newest entry.
Newest = dict[tuple[str, str, str], tuple[float, str, str]]
PROVISIONAL = frozenset({FRESH, OTHER_PYTHON})  # superseded if not their group's newest's


def first_verdict(stored: StoredEntry, header: _entry.Header | None, now: float) -> str:
    """``judge``'s verdict on one entry alone; one of ``PROVISIONAL`` becomes SUPERSEDED
    (``final_verdict``) once every entry's header was noted (``note_newest``)."""
    if header is None:
        return UNREADABLE if _entry.newer_format(stored.head) is None else NEWER_FORMAT
    if header.stale(now):
        return STALE
    if header.incompatible():
        return OTHER_PYTHON
    if SIBLING not in header.scope and ambiguous(header.function):
        return SUPERSEDED  # an older memojar's, never read
    return FRESH


def note_newest(newest: Newest, header: _entry.Header) -> None:
    """Count an entry of a ``PROVISIONAL`` verdict in its groups' newest."""
    for group, code in _groups(header):
        seen = newest.get(group)
        if seen is None or header.created > seen[0]:
            newest[group] = (header.created, code, header.version)


def final_verdict(header: _entry.Header | None, verdict: str, newest: Newest) -> str:
    """An entry's verdict once ``newest`` noted every entry: the first one, or SUPERSEDED
    for a provisional one whose code or version is not its group's newest's."""
    if verdict in PROVISIONAL and header is not None and any(
            (code, header.version) != newest[group][1:] for group, code in _groups(header)):
        return SUPERSEDED
    return verdict


def _groups(header: _entry.Header) -> list[tuple[tuple[str, str, str], str]]:
    """The groups an entry is judged in, each with what must match the group's newest entry
    (with the version): its function in its scope and Python (the fingerprint), and for a
    closure or lambda sharing its name, its family there too (its bare code, see
    ``_identity.family_of``): siblings of one code never supersede each other."""
    groups = [((header.function, header.scope, header.python), header.fingerprint)]
    family, code = family_of(header.function, header.scope)
    if code:
        groups.append(((header.function, f"{SIBLING}{family}", header.python), code))
    return groups


class Pruning:
    """``prune``'s verdicts, as a listing is read: the entries to remove (``doomed``), found
    in two passes with memory by group, not by entry.

    The first pass reads every entry once: one that ``judge`` dooms alone (stale, unreadable,
    of an older format, of another Python when asked) is handed on at once; one whose
    verdict waits for its groups' newest (``PROVISIONAL``) is noted there (``note_newest``),
    and a group whose entries so far differ in code or version is marked. The second reads
    again only the functions of marked groups: there, an entry whose code or version is not
    its group's newest's is SUPERSEDED, as ``judge`` says. An entry the first pass did not
    see (written since) is judged by the same rule against what it saw and itself: one
    newer than a group's newest is that group's newest, kept."""

    def __init__(self, store: Store, keep: set[str], now: float,
                 progress: Callable[[str, int, int | None], None] | None) -> None:
        self.store, self.keep, self.now, self.progress = store, keep, now, progress
        self.waiting = PROVISIONAL & keep  # verdicts kept unless superseded
        self.newest: Newest = {}
        self.mixed: set[str] = set()  # functions with a group of more than one code
        self.places: dict[str, set[str]] = {}  # function -> where its waiting entries are
        self.checked = 0  # entries read, both passes
        self.found = 0  # entries handed on

    def doomed(self) -> Iterator[StoredEntry]:
        """The entries to remove: the first pass's as it reads them, then the second's."""
        for stored in self._read(self.store.scan()):
            header = header_of(stored)
            verdict = first_verdict(stored, header, self.now)
            if header is not None and verdict in PROVISIONAL:
                self._note(stored, header)
            if verdict not in self.keep:
                yield self._found(stored)
        seen: set[tuple[str, str]] = set()  # (function, place) the second pass read
        for function in sorted(self.mixed):
            yield from self._second_look(self.store.scan(function), seen, function)
        # Entries of a marked group in a place its function's listing does not reach (a
        # folder named for another function): read there too, by a whole listing.
        astray = {(function, place) for function in self.mixed
                  for place in self.places[function]} - seen
        if astray:
            yield from self._second_look(self.store.scan(), seen, astray)

    def removing(self, removal: Removal) -> None:
        """``remove_listed``'s progress: entries removed so far (the total is not known;
        before, those taken, with any another process removed first)."""
        if self.progress is not None:
            self.progress("removing", removal.removed, None)

    def _read(self, entries: Iterable[StoredEntry]) -> Iterator[StoredEntry]:
        for stored in entries:
            self.checked += 1
            if self.progress is not None:
                self.progress("checking", self.checked, None)
            yield stored

    def _found(self, stored: StoredEntry) -> StoredEntry:
        self.found += 1
        return stored

    def _note(self, stored: StoredEntry, header: _entry.Header) -> None:
        for group, code in _groups(header):
            seen = self.newest.get(group)
            if seen is not None and (code, header.version) != seen[1:]:
                self.mixed.add(header.function)
        note_newest(self.newest, header)
        self.places.setdefault(header.function, set()).add(stored.function_dir)

    def _second_look(self, entries: Iterable[StoredEntry], seen: set[tuple[str, str]],
                     only: str | set[tuple[str, str]]) -> Iterator[StoredEntry]:
        """The superseded among ``entries`` of the function ``only`` (or of its pairs of
        function and place), each noted in ``seen``. Those the first pass handed on are not
        handed on again: their first verdict is not a kept ``PROVISIONAL`` one."""
        for stored in self._read(entries):
            header = header_of(stored)
            if header is None:
                continue
            where = (header.function, stored.function_dir)
            if isinstance(only, str):
                if header.function != only:
                    continue
            elif where not in only:
                continue
            seen.add(where)
            if first_verdict(stored, header, self.now) not in self.waiting:
                continue
            for group, code in _groups(header):
                newest = self.newest.get(group)
                if (newest is not None and header.created <= newest[0]
                        and (code, header.version) != newest[1:]):
                    yield self._found(stored)
                    break


FLUSH_EVERY = 5.0  # seconds between merges of a process's statistics into the store

# Python 3.12's ``Thread.join`` returns before the thread's system thread has ended (3.13's
# waits for it), and ``os.fork`` counts the system threads (``/proc/self/stat``) for its
# "multi-threaded" DeprecationWarning: a thread just joined was counted, now and then.
_JOIN_LEAVES_THE_SYSTEM_THREAD = sys.version_info[:2] == (3, 12)
# Python 3.13.0 to 3.13.9 and 3.14.0 count them once the parent's after-fork hooks ran
# (CPython gh-137109, fixed in 3.13.10 and 3.14.1): a thread started again there is counted.
_COUNTED_AFTER_THE_HOOKS = ((3, 13) <= sys.version_info[:3] < (3, 13, 10)
                            or sys.version_info[:3] == (3, 14, 0))


class _Flusher:
    """Merges every cache's statistics every ``FLUSH_EVERY`` seconds and at exit, from one
    daemon thread per process, started by the first ``Cache``.

    The thread is stopped before a ``fork`` (and, on Python 3.12, waited for until its
    system thread is gone) and started again after it, in the parent and in the child
    (whose counts start from what it inherited: the parent merges those), so a fork never
    finds it running: Python 3.12+ warns about forking a multi-threaded process, and before,
    every fork of a process that had used memojar was told so on 3.13.0 (its count includes
    the thread started again by the parent's hook), and two forks in a hundred on 3.12 (the
    joined thread not yet gone). Where the count comes after the hooks
    (``_COUNTED_AFTER_THE_HOOKS``) the parent starts it again at its next miss's store
    (``_decorator.resume_after_fork``), decoration or new ``Cache``, not in the hook: until
    then it merges its counts at exit only (README, Known limits).
    A ``multiprocessing`` child, which leaves without running ``atexit``, merges through
    ``multiprocessing.util.Finalize``."""

    def __init__(self) -> None:
        self.caches: weakref.WeakSet[Cache] = weakref.WeakSet()
        # Reentrant: a signal handler may make a cache while this thread is in ``watch``
        # (a plain lock then waited for itself for ever, and the stats thread with it).
        self.lock = threading.RLock()
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.in_children = False  # registered with multiprocessing's after-fork hooks
        self.paused = False  # stopped by a fork, to start again at the next miss
        self.due: float | None = None  # the next merge (monotonic), kept across forks
        self.exit_merge_pid = 0  # the process whose multiprocessing exit merges

    def watch(self, cache: Cache) -> None:
        with self.lock:
            self.caches.add(cache)
            if self.thread is None:
                self.paused = False
                self._start(None)
        if self.exit_merge_pid != os.getpid():
            self._in_a_worker()

    def _in_a_worker(self) -> None:
        """A ``multiprocessing`` child that imported memojar after it started (every
        ``forkserver`` and ``spawn`` worker, a ``fork`` one whose parent had not): it
        leaves by ``os._exit`` once its finalizers ran, and no ``after_fork`` hook
        registered its merge there (before, its counts were lost at its exit)."""
        import sys

        process = sys.modules.get("multiprocessing.process")
        if process is not None and process.parent_process() is not None:
            self._merge_at_worker_exit()

    def _start(self, replaced: threading.Thread | None) -> None:
        """Start the thread in place of ``replaced``, unless a signal handler run meanwhile
        (making a cache) started one: it is the one (before, two ran, one never stopped
        before a fork). Where a handler can run between the test and the stores (Python
        3.10 runs them between most instructions), the thread replaced ends at its next
        wake."""
        stop = threading.Event()
        thread = threading.Thread(target=self._run, args=(stop,), name="memojar-stats",
                                  daemon=True)
        if self.thread is not replaced:  # no handler runs between this test and the stores
            return
        self.stop = stop
        self.thread = thread
        started = False  # no thread can start (out of threads, Python 3.12 at exit): none
        try:
            started = start_thread(thread)
        finally:
            if not started and not thread.is_alive() and self.thread is thread:
                self.thread = None  # the next cache starts one

    def _run(self, stop: threading.Event) -> None:
        """Merge every ``FLUSH_EVERY`` seconds, counted from the last merge (``due``), not
        from this thread's start: a thread started again after a fork merges when the one
        it replaces would have. Before, each fork put the next merge 5 s off, so a process
        forking more often than that never merged until its exit, and the tallies of the
        functions it decorated and dropped were kept for good (never folded: 43,000 in 30 s
        of a thread decorating lambdas), each fork's child copying them all: 100 forks took
        6 s, then 24 s."""
        me = threading.current_thread()
        if self.due is None:  # the first thread of the process
            self.due = time.monotonic() + FLUSH_EVERY
        while not stop.wait(min(FLUSH_EVERY, max(0.0, self.due - time.monotonic()))):
            if self.thread is not me:  # replaced by one a signal handler's start raced
                return
            self.due = time.monotonic() + FLUSH_EVERY
            self.flush()

    def flush(self) -> None:
        self.merge_all()
        restamp_all()  # memory tiers whose stamp was removed with the cache (rm -rf)
        release_abandoned()  # key locks of tasks whose loop was closed under them

    def merge_all(self, at_exit: bool = False) -> None:  # ``flush``'s, a name not stubbed
        with self.lock:
            caches = list(self.caches)
        # At the exit, the servers a merge found silent (its timeout spent), not asked
        # again by the other caches on them. Before, each cache waited its own timeout: six
        # caches (prefixes) on one frozen server, socket_timeout=2, held the exit 12 s.
        silent: set[object] | None = set() if at_exit else None
        if _orphans:
            _merge_orphans(caches, at_exit=at_exit, silent=silent)
        for cache in caches:
            store = cache.store
            if silent is not None and store.server in silent:
                logger.debug("statistics in %s not saved: its server is silent",
                             cache.directory)
                continue
            failing = store.failing  # (since before the exit: not this merge's timeout)
            try:
                cache.flush_stats()
            except Exception as exc:  # noqa: BLE001 - statistics never fail the program
                logger.debug("cannot save statistics in %s: %s", cache.directory, exc)
            _note_silent(store, failing, silent)

    def before_fork(self) -> None:
        import sys

        util = sys.modules.get("multiprocessing.util")
        # Runs in a multiprocessing child once it cleared its registry. Once: the
        # registration stays (and is inherited) while this object lives, and each one adds
        # an entry (before, a parent forking 10,000 times held 10,000, and each new child
        # ran them all, registering as many merges at its exit: 0.46 s a Process).
        if util is not None and not self.in_children:
            util.register_after_fork(self, _Flusher._merge_at_worker_exit)
            self.in_children = True
        thread = self.thread
        if thread is not None:
            self.stop.set()
            if thread is not threading.current_thread():
                try:
                    thread.join(timeout=1.0)  # a merge in progress finishes first
                except RuntimeError:  # made by another thread's ``_start``, not started yet:
                    return  # it ends at its first wait, ``stop`` set (before, the hook raised,
                    # "cannot join thread before it is started", seen on 3.13.0)
                if _JOIN_LEAVES_THE_SYSTEM_THREAD and not thread.is_alive():
                    _wait_for_the_system_thread(thread)

    def after_fork_in_parent(self) -> None:
        if self.thread is None:
            return
        if _COUNTED_AFTER_THE_HOOKS:  # started again by the next miss (``resume``)
            self.thread, self.paused = None, True
            _decorator.resume_after_fork = self.resume
        else:
            self._start(self.thread)

    def resume(self) -> None:
        """``_decorator.resume_after_fork``: the parent's first miss since a fork that left
        the thread stopped starts it again (unless a new ``Cache`` did)."""
        _decorator.resume_after_fork = None
        with self.lock:
            if self.paused and self.thread is None:
                self.paused = False
                self._start(None)

    def after_fork_in_child(self) -> None:
        self.lock = threading.RLock()
        global _orphans_lock
        # the parent merges the records of caches gone; the live ones' count from now on
        _orphans[:] = [o for o in _orphans if o.state is None and o.ref() is not None]
        _orphans_lock = threading.RLock()  # (held, perhaps, by a thread the child has not)
        for cache in list(self.caches):
            cache._flush_lock = threading.RLock()
            # the parent merges the counts it inherited (and settles its merge under way)
            cache._merged[0] = {tally: tally.now() for tally, _, _ in cache._tallies}
            cache._attempt[0] = None
            cache._writer[0] = os.urandom(8).hex()
        if self.thread is not None or self.paused:
            self.paused = False
            _decorator.resume_after_fork = None
            self._start(self.thread)

    def _merge_at_worker_exit(self) -> None:
        """In a multiprocessing child: it leaves by ``os._exit``, after its finalizers.
        Its merge is its exit's: dropped caches' counts on a server too (before, those
        waited for an exit merge that never came)."""
        from multiprocessing import util

        self.exit_merge_pid = os.getpid()
        util.Finalize(None, self.at_exit, exitpriority=10)

    def at_exit(self) -> None:
        self.merge_all(at_exit=True)
        filestore = sys.modules.get(f"{__package__}._filestore")  # (imported when used)
        if filestore is not None:
            filestore.withdraw()  # its writer files: what they changed is merged


def _wait_for_the_system_thread(thread: threading.Thread) -> None:
    """Until ``thread``, joined, is gone from the kernel's threads of this process (Linux;
    after one 0.1 ms sleep or none in 300 joins on Python 3.12; 0.1 s at most)."""
    path = f"/proc/self/task/{thread.native_id}"
    deadline = time.monotonic() + 0.1
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.0001)


_FLUSHER = _Flusher()
atexit.register(_FLUSHER.at_exit)


def flush_statistics() -> None:
    """Merge the counts of every cache of this process now (``%memojar`` before a report)."""
    _FLUSHER.merge_all()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_FLUSHER.before_fork,
                        after_in_parent=_FLUSHER.after_fork_in_parent,
                        after_in_child=_FLUSHER.after_fork_in_child)

_reopened_caches: dict[tuple[Any, ...], Cache] = {}


def _reopened(
    location: str, max_size: int | None, secret: bytes | str | None, lock_timeout: float
) -> Cache:
    """A pickled ``Cache`` in this process: one per location and options, so the copies of
    many decorated functions (a map over workers) share one store and its connections."""
    spec = (location, max_size, secret, lock_timeout)
    with _caches_lock:
        cache = _reopened_caches.get(spec)
        if cache is None:
            cache = _reopened_caches[spec] = Cache(location, max_size, secret, lock_timeout)
        return cache


_caches: dict[str, Cache] = {}
_caches_lock = threading.RLock()  # reentrant: a signal handler may decorate meanwhile


def _unlock_in_child() -> None:
    """A forked child's own lock: a thread of the parent may have held it at the fork (one
    making a ``Cache``, which makes its folder: milliseconds), and the child, which lacks
    that thread, waited on it for ever at its first ``cached(cache_dir=...)`` or unpickled
    function."""
    global _caches_lock
    _caches_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_unlock_in_child)


# The modules memojar imports when first used, by their full name: its own (a store's, the
# reports'), and those of the standard library and its dependencies it imports inside a
# call (the default folder's platformdirs, a secret's hmac, ``inspect``): none of them,
# imported, waits for another thread, so a fork waiting for one cannot wait for ever
_IMPORTED_WHEN_USED = (*(f"{__package__}.{name}" for name in (
    "_filestore", "_location", "_locks", "_census", "_report", "_runs", "_redisconn",
    "_redislease", "_redislua", "_redisoptions", "_redisstore", "_redisurl", "_s3store")),
    "platformdirs", "filelock", "inspect", "asyncio", "platform", "hmac", "hashlib",
    "base64", "zlib", "difflib", "datetime", "sysconfig", "resource", "glob", "pwd",
    "numbers", "unicodedata", "shlex", "traceback", "logging")


def _imports_done_before_fork() -> None:
    """A fork waits for another thread's import of one of the modules memojar imports when
    first used to end. A module being imported is locked by the importing thread, which a
    forked child lacks: before, a fork while another thread made the process's first
    ``Cache`` (importing ``_filestore``, tens of milliseconds) or its first default folder
    (``platformdirs``) left the child's own first ``Cache`` waiting on that import for
    ever. One dict look-up a module a fork otherwise."""
    for name in _IMPORTED_WHEN_USED:
        module = sys.modules.get(name)
        if module is not None and getattr(module.__spec__, "_initializing", False):
            import importlib

            importlib.import_module(name)  # returns once the other thread's import ends


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_imports_done_before_fork)


def _cache_for(cache_dir: str | os.PathLike[str] | None) -> Cache:
    """One shared ``Cache`` per location, for ``@cached(cache_dir=...)``.

    Paths are normalised first (``"c"``, ``"./c"``, ``"~/c"`` and their absolute path are one
    cache, so their counters add up); URLs are taken as they are.
    """
    location = _location(cache_dir, "cache_dir") or default_directory()
    try:
        # A mistyped URL is an error here: made absolute, "redis//host" was a folder.
        if url_scheme(location) in (None, "file"):  # file:///c and /c: one cache
            from ._location import file_path

            location = os.path.abspath(os.path.expanduser(file_path(location)))
        with _caches_lock:
            cache = _caches.get(location)
            if cache is None:
                cache = _caches[location] = Cache(location)
            return cache
    except ValueError as exc:
        if cache_dir is not None:
            raise
        raise _of_the_environment(exc) from exc.__cause__


def _of_the_environment(exc: ValueError) -> ValueError:
    """``exc`` about the default location, said of ``$MEMOJAR_DIR`` that the user set (not
    of ``cache_dir``, which they never passed: ``MEMOJAR_DIR=.`` in a project folder), or
    of the default directory, with how to cache elsewhere. Before, ``~/.cache/memojar``
    a file made a bare ``@cached`` raise "cache_dir '...' is a file", of an argument the
    user had never passed."""
    said = str(exc)
    if not (os.environ.get("MEMOJAR_DIR") or "").strip():  # (blank: unset, as there)
        said = (f"the default cache directory {said[len('cache_dir '):]}"
                if said.startswith("cache_dir ") else f"the default cache directory: {said}")
        said += " (set $MEMOJAR_DIR, or pass cache_dir=, to cache elsewhere)"
    else:
        said = (f"$MEMOJAR_DIR {said[len('cache_dir '):]}" if said.startswith("cache_dir ")
                else f"$MEMOJAR_DIR: {said}")
    exc.args = (said,)  # the same error, its attributes kept (a path, a scheme)
    return exc


def _class_readable(func: Any) -> None:
    """Raise a TypeError naming ``func`` if looking up its ``__class__`` raises (a property
    of its class raising): ``isinstance`` asks for it, and so do ``pickle`` and memojar, to
    tell what kind of callable it is, so neither its identity nor its key can be made.
    Before, the decoration failed with that error, from inside memojar."""
    try:
        func.__class__  # noqa: B018 - what isinstance looks up
    except AttributeError:  # isinstance goes by type() then
        pass
    except Exception as exc:  # whatever the property raised
        if the_callers(exc):
            raise
        kind = type(func)
        raise TypeError(
            f"cannot cache this {kind.__module__}.{kind.__qualname__} object: looking up "
            f"its __class__ raises {type(exc).__name__} ({exc}), and memojar (as isinstance "
            "and pickle) needs it to tell what kind of callable it is; decorate the "
            "function it calls instead, or a plain function calling it"
        ) from exc


def _above_property(prop: property) -> str:
    """What to do about ``@cached`` above ``@property`` (before: "cached needs a function to
    decorate, not property ...; to set options, call it with keywords")."""
    name = getattr(prop.fget, "__qualname__", "the property")
    return (f"@cached is above @property on {name}: put it below (@property, then @cached, "
            "then def), so it caches the getter and the instance is part of the key")


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
    ignore: Iterable[str] | str | None = (),
    key: Callable[..., Any] | None = None,
    depends_on: Any = (),
    files: Iterable[str] | str | None = (),
    stale_while_revalidate: Ttl = None,
    min_compute_time: float | None = None,
    memory: int | None = None,
) -> Decorator: ...


def cached(
    func: Callable[..., Any] | None = None,
    /,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    ttl: Ttl = None,
    version: str | int | None = None,
    ignore: Iterable[str] | str | None = (),
    key: Callable[..., Any] | None = None,
    depends_on: Any = (),
    files: Iterable[str] | str | None = (),
    stale_while_revalidate: Ttl = None,
    min_compute_time: float | None = None,
    memory: int | None = None,
    **unknown: Any,
) -> Any:
    """Store each result on disk, keyed by the call's arguments; return it on the next call.

    ``cache_dir``: a directory, ``redis://`` or ``s3://`` URL (default ``$MEMOJAR_DIR``, else
    the user cache directory). ``ttl``: seconds or a timedelta after which an entry is recomputed.
    ``version``: a str or int; entries of other versions are never returned. ``ignore``:
    parameter names left out of the key. ``key``: a function of the same arguments whose
    picklable result is hashed instead of the arguments. ``depends_on``: package names,
    callables or plain values the results also depend on (part of the function's identity).
    ``files``: names of parameters whose values are paths to files or directories; the key
    covers their content. ``None`` for ``ignore``, ``depends_on`` or ``files`` is none.

    ``stale_while_revalidate``: seconds or a timedelta after an entry expires during which
    a call returns the stale value at once and one background recomputation (across threads
    and processes) replaces it. ``min_compute_time``: seconds; results computed faster are
    returned, not stored. ``memory``: how many recent results to also keep in this process,
    so a repeated hit costs about a microsecond; as with ``functools.lru_cache``, the same
    object is returned each time (mutating it mutates the cached copy). The memory tier
    still honours ``ttl`` and another process's clear, delete or prune.
    """
    if unknown:
        raise _unexpected("cached()", unknown, _DECORATOR_OPTIONS)
    # A classmethod is not callable before 3.13: ``Cache.cached`` unwraps it.
    if func is not None:
        _class_readable(func)
    if isinstance(func, property):
        raise TypeError(_above_property(func))
    if func is not None and not callable(func) and not isinstance(func, classmethod):
        raise TypeError(
            f"cached needs a function to decorate, not {type(func).__name__} ({func!r}); "
            "to set options, call it with keywords: @cached(ttl=60)"
        )
    decorate = _cache_for(cache_dir).cached(
        ttl=ttl, version=version, ignore=ignore, key=key, depends_on=depends_on, files=files,
        stale_while_revalidate=stale_while_revalidate, min_compute_time=min_compute_time,
        memory=memory,
    )
    return decorate if func is None else decorate(func)


# --- argument checks ------------------------------------------------------------------

_DECORATOR_OPTIONS = ("cache_dir", "ttl", "version", "ignore", "key", "depends_on", "files",
                      "stale_while_revalidate", "min_compute_time", "memory")
_CACHE_OPTIONS = ("directory", "max_size", "secret", "lock_timeout", "store")
# Options of lru_cache, joblib.Memory, diskcache and cachier that users bring along: the
# names memojar has for them (the first one the call takes), or what to do instead.
_PLACE = ("cache_dir", "directory")
_PEERS_OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "maxsize": (("memory", "max_size"), "the results this process also keeps, as lru_cache's "
                                        "maxsize; the disk's bound is Cache(max_size=...)"),
    "typed": ((), "memojar needs none: keys always tell 1, 1.0 and True apart"),
    "verbose": ((), "memojar logs to logging.getLogger('memojar'), a line a hit, miss and "
                    "store at DEBUG"),
    **dict.fromkeys(("expire", "expires", "stale_after", "max_age"), (("ttl",), "")),
    **dict.fromkeys(("location", "cachedir", "path", "cache_dir"), (_PLACE, "")),
    **dict.fromkeys(("hash_func", "key_func"), (("key",), "")),
    **dict.fromkeys(("size_limit", "cache_size", "max_bytes"), (("max_size",), "")),
}


def _unexpected(where: str, unknown: dict[str, Any], known: tuple[str, ...]) -> TypeError:
    """The error for a keyword ``where`` does not take, with memojar's name for it when it is
    a near miss (``tll``) or another memoizer's (``maxsize``, ``expire``)."""
    import difflib

    name = next(iter(unknown))
    close = difflib.get_close_matches(name, known, n=1)
    names, note = _PEERS_OPTIONS.get(name, ((), ""))
    ours = [n for n in names if n in known]
    # Another memoizer's option is named as memojar calls it, not by its spelling: joblib's
    # Memory(location=) looks like lock_timeout=, cachier's max_age like max_size= (bytes).
    if close and (name not in _PEERS_OPTIONS or close[0] in ours):
        hint = f": did you mean {close[0]}=?"
    elif ours:
        hint = f": memojar calls it {ours[0]}=" + (f" ({note})" if note else "")
    elif names and names[0] in _CACHE_OPTIONS:  # size_limit= given to cached()
        hint = (f": memojar calls it {names[0]}=, an option of the cache: "
                f"Cache(directory, {names[0]}=...)")
    elif names:  # expire= given to Cache()
        hint = (f": memojar calls it {names[0]}=, an option of each function: "
                f"@cache.cached({names[0]}=...)")
    elif note and not names:
        hint = f": {note}"
    else:
        hint = f" (it takes {', '.join(k + '=' for k in known)})"
    return TypeError(f"{where} got an unexpected keyword argument {name!r}{hint}")

_LONGEST = 1000 * 365.25 * 86400  # seconds: the longest ttl= (longer ones are this)


def _switched_off() -> bool:
    """``$MEMOJAR_DISABLE`` set to anything but an empty, 0 or false value (``false``,
    ``no``, ``off``, in any case: before, ``MEMOJAR_DISABLE=false`` turned caching off)."""
    value = os.environ.get("MEMOJAR_DISABLE", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def _ttl(ttl: Ttl, name: str = "ttl") -> float | None:
    if ttl is None:
        return None
    number = _real(ttl)
    if number is not None:
        seconds = _seconds(number)
    else:
        import datetime as dt  # imported already if ttl is a timedelta

        if not isinstance(ttl, dt.timedelta):
            shown = f" ({ttl!r})" if isinstance(ttl, str) else ""
            raise TypeError(
                f"{name}= must be seconds (int or float) or a datetime.timedelta, "
                f"not {type(ttl).__name__}{shown}: e.g. {name}=3600 or "
                f"{name}=timedelta(hours=1)"
            )
        seconds = ttl.total_seconds()
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{name}= must be a positive, finite duration, got {ttl!r}")
    # A thousand years at most: the same for any entry, and an expiry a datetime can hold
    # (before, ttl=1e300 or timedelta.max made Cache.entries() and `memojar ls FUNCTION`
    # fail: "year 2739933 is out of range").
    return min(seconds, _LONGEST)


def _min_compute_time(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    number = _real(seconds)
    if number is None:
        raise TypeError(
            f"min_compute_time= must be seconds (int or float), not {type(seconds).__name__}"
        )
    seconds = number
    if not (seconds >= 0 and math.isfinite(_seconds(seconds))):
        raise ValueError(
            f"min_compute_time= must be a finite number of seconds >= 0, got {seconds!r}"
        )
    return float(seconds)


def _whole(value: object) -> int | None:
    """``value`` as an int if it is a whole number (an int, or any integral type such as
    numpy's ``int64``: what a size computed with numpy is); None for anything else, a bool
    included (``max_size=True`` is a mistake, not one byte)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    import numbers  # only for a number of another type

    return int(value) if isinstance(value, numbers.Integral) else None


def _real(value: object) -> float | None:
    """``value`` if it is an int or a float, as a float if it is another real number
    (numpy's ``int32`` or ``float32``, a ``Fraction``); None for anything else, a bool
    included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    import numbers  # only for a number of another type

    return float(value) if isinstance(value, numbers.Real) else None


def _seconds(number: float) -> float:
    """``float(number)``, with an int too large for a float as infinity (an error of its
    own, ``OverflowError``, that names no argument)."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _memory(memory: int | None) -> int | None:
    if memory is None:
        return None
    whole = _whole(memory)
    if whole is None:
        raise TypeError(
            f"memory= must be a whole number of results, not {type(memory).__name__}"
        )
    memory = whole
    if memory <= 0:
        raise ValueError(f"memory= must be a positive number of results, got {memory}")
    return memory


def _location(directory: str | os.PathLike[str] | None, option: str) -> str | None:
    """The cache location given as ``option`` (a path or URL), as a str; None for the
    default. A bytes path is decoded as ``os`` would."""
    if directory is None:
        return None
    try:
        location = os.fspath(directory)
    except TypeError:
        raise TypeError(
            f"{option}= must be a directory path (str or os.PathLike) or a URL "
            f"(redis://, s3://), not {type(directory).__name__}"
        ) from None
    if isinstance(location, bytes):
        location = os.fsdecode(location)
    if not location.strip():  # blank too, as `memojar --dir " "` (not a folder named " ")
        raise ValueError(
            f"{option}= is an empty path: pass a directory (memojar creates it if missing), "
            "or None for the default ($MEMOJAR_DIR, else the user cache directory)"
        )
    return location


def _encodable(version: object) -> None:
    """A str version holding a lone surrogate (a file name's undecodable byte, as
    ``os.fsdecode`` gives it) raised UnicodeEncodeError at every call: said at decoration."""
    if isinstance(version, str):
        try:
            version.encode()
        except UnicodeEncodeError:
            raise ValueError(
                f"version= {version!r} is not valid text (it holds a lone surrogate, as "
                "os.fsdecode makes of a file name's undecodable bytes): pass e.g. "
                "version=os.fsencode(name).hex()"
            ) from None


def _ignore(ignore: Iterable[str] | str | None, option: str = "ignore") -> tuple[str, ...]:
    if ignore is None:  # none, as joblib's Memory.cache(ignore=None); before, a TypeError
        return ()
    try:
        if isinstance(ignore, (bytes, bytearray)):  # iterates as ints: "got 120"
            raise TypeError
        names = (ignore,) if isinstance(ignore, str) else tuple(ignore)
    except TypeError:
        raise TypeError(
            f"{option}= takes parameter names (a str, or a tuple of str), not "
            f"{type(ignore).__name__}; pass () for none"
        ) from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{option}= takes parameter names (str), got {name!r}")
    return names


def _lock_timeout(timeout: float) -> float:
    number = _real(timeout)
    if number is None:
        raise TypeError(
            f"lock_timeout= must be seconds (int or float), not {type(timeout).__name__}"
        )
    timeout = number
    if not timeout >= 0:  # also NaN
        raise ValueError(
            f"lock_timeout= must be zero or more seconds (math.inf to wait as long as it "
            f"takes), got {timeout!r}"
        )
    return _seconds(timeout)


def _secret(secret: bytes | str | None) -> bytes | None:
    if secret is None:
        secret = os.environ.get("MEMOJAR_SECRET") or None
    if secret is None:
        return None
    if isinstance(secret, str):
        try:  # $MEMOJAR_SECRET's undecodable bytes are themselves again (os.environb's)
            secret = secret.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # before: raised from here, naming nothing
            raise ValueError(
                "secret= is not valid text (it holds a lone surrogate): pass the bytes"
            ) from None
    if not isinstance(secret, (bytes, bytearray)):
        raise TypeError(f"secret= must be bytes or str, not {type(secret).__name__}")
    if not secret:
        raise ValueError("secret= must not be empty: pass None for no signing")
    return bytes(secret)


def _function_name(function: str | Callable[..., Any] | None) -> str | None:
    if function is None:
        return function
    if isinstance(function, str):
        try:
            function.encode()
        except UnicodeEncodeError:  # before: UnicodeEncodeError from the store's lookup
            from ._identity import encodable

            raise ValueError(
                f"function= {function!r} is not a function's name: it holds a lone "
                "surrogate (an undecodable byte), which no module.qualname has; a function "
                f"so named is known by its escaped name, {encodable(function)!r}"
            ) from None
        return function
    if not callable(function):
        raise TypeError(
            f"function= takes a 'module.qualname' str or a function decorated with @cached, "
            f"not {type(function).__name__} ({function!r})"
        )
    memo: _Memo | None = getattr(function, "__memojar__", None)
    if memo is None:  # before: its name looked up, and cache.clear(len) said 0, silently
        from ._identity import function_name

        name = function_name(function)
        raise TypeError(
            f"function= takes a 'module.qualname' str or a function decorated with @cached, "
            f"not {function!r}, which is not decorated: pass the function @cached returned, "
            f"or its name {name!r}"
        )
    return memo.name


