"""The decorator: one decorated function's view of a cache, and the wrapper around it.

Everything that can be decided once is decided at decoration time (the binder, the entry
identity, the ttl, the store), so a call is: bind and hash the arguments, read one entry,
check its header, unpickle. The hit path is ``_Memo.get`` and ``FileStore.read``.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import pickle
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from . import _entry
from ._entry import Miss
from ._errors import logger, warn
from ._identity import code_fingerprint, function_name, scope_of, split
from ._keys import make_binder, make_key, make_key_caller, parameter_names, prebound
from ._store import Store, header_of


class CacheInfo(NamedTuple):
    """Counters like ``functools.lru_cache``'s, plus what is on disk."""

    hits: int  # calls answered from the cache, in this process
    misses: int  # calls that computed, in this process
    entries: int  # entries stored (for a function: its entries)
    bytes: int  # their size in bytes


def stored_total(store: Store, function: str | None) -> tuple[int, int]:
    """How many entries (of one function) are stored, and their bytes."""
    sizes = [stored.size for stored in store.scan(function, heads=False)]
    return len(sizes), sum(sizes)

class _Missing:
    """The miss marker. One object, even in a copy of the wrapper that cloudpickle made by
    value (a function of ``__main__`` sent to a worker): it pickles by reference."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_DEBUG = logging.DEBUG
_LOCK_POLL = 0.01  # seconds between tries of a held lock in an async caller
# Failures to load an entry that say something about this process, not about the entry:
# the call recomputes, and the entry stays for the processes that can load it.
_NOT_THE_ENTRY = (MemoryError, ImportError, RecursionError)

# The key locks this thread (or task, for coroutines) holds, as (location, function, key):
# a cached function calling itself with the same key computes without waiting for itself.
# A context variable, not a thread-local, so that a coroutine awaiting itself, and the
# tasks it starts, count as the holder too.
_held: contextvars.ContextVar[frozenset[tuple[str, str, str]]] = contextvars.ContextVar(
    "memojar_held_locks", default=frozenset()
)


class Counter:
    """A count that threads can bump without losing increments, as cheap as ``x += 1``.

    ``next()`` on an ``itertools.count`` is one C call under the GIL, so it is atomic;
    ``value`` reads it back (its repr is ``count(N)``), and ``reset`` remembers an offset.
    """

    __slots__ = ("_base", "_count", "bump")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.bump = functools.partial(next, self._count)
        self._base = 0

    def _now(self) -> int:
        return int(repr(self._count)[6:-1])

    @property
    def value(self) -> int:
        return self._now() - self._base

    def reset(self) -> None:
        self._base = self._now()


_NOTE_GROUPS = 64  # (Python, scope) groups a sweep note remembers, most recent first


def _read_sweep_note(note: bytes | None) -> dict[str, str]:
    """A sweep note: for each (Python, scope) group, a digest of the code that swept last.

    One line per group, ``<group> <code>`` in hex, most recent first. Anything else (an
    older memojar's note, a damaged one) reads as no note: the sweep lists the entries.
    """
    swept: dict[str, str] = {}
    for line in (note or b"").decode("ascii", "replace").splitlines():
        group, _, code = line.partition(" ")
        if len(group) == 16 and code:
            swept.setdefault(group, code)
    return swept


class _Memo:
    """A function's entries in a store: its name, identity, key function and counters.

    Built from what it needs (the store, the secret, the function and its options), not from
    the ``Cache`` that made it: nothing here reaches back up."""

    def __init__(
        self,
        store: Store,
        secret: bytes | None,
        func: Callable[..., Any],
        ttl: float | None,
        version: str | int | None,
        ignore: tuple[str, ...],
        key: Callable[..., Any] | None,
        lock_timeout: float = 600,
    ) -> None:
        self.func = func
        self.store = store
        self.secret = secret
        self.lock_timeout = lock_timeout  # seconds to wait for another caller's compute
        self.name = function_name(func)
        self.scope = scope_of(func)  # its script or notebook, for a function of __main__
        self.ident = _entry.make_ident(self.name, version, code_fingerprint(func), self.scope)
        self.seed = _entry.key_seed(self.scope)  # entries of other Pythons/scopes live apart
        self.ttl = ttl
        self.ignore = ignore
        self.custom_key = key
        # A partial, bound method or callable instance is the function that runs plus the
        # arguments bound to it (the instance, the partial's arguments): they go in the key.
        self.target, bound_args, bound_kwargs = split(func)
        if key is None:
            self.binder = make_binder(self.target, ignore)
        else:
            self.binder = make_key_caller(func, key)
            if bound_args or bound_kwargs:  # key= sees the call; the instance still counts
                self.binder = functools.partial(_with_bound, self.binder, bound_args,
                                                bound_kwargs)
                bound_args, bound_kwargs = (), {}
        if bound_args or bound_kwargs:
            self.binder = prebound(self.binder, bound_args, bound_kwargs)
        self.hit_count = Counter()
        self.miss_count = Counter()
        self.swept = False  # entries of this function's other code/versions evicted yet?

    @property
    def hits(self) -> int:
        """Calls answered from the cache in this process (exact under threads)."""
        return self.hit_count.value

    @property
    def misses(self) -> int:
        """Calls that computed in this process."""
        return self.miss_count.value

    # --- the hit path ---------------------------------------------------------------

    def key_of(self, args: tuple, kwargs: dict[str, Any]) -> str:
        values = self.binder(*args, **kwargs)
        try:
            return make_key(values, self.seed)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            if isinstance(exc, RecursionError) and _near_recursion_limit():
                raise  # the caller's own recursion ran out of stack, not a deep argument
            raise self._unpicklable(values, exc) from exc

    def get(self, key: str) -> Any:
        """The stored value for ``key``, or MISSING. Never raises for a bad entry."""
        data = self.store.read(self.name, key)
        if data is None:
            return MISSING
        try:
            payload, buffers = _entry.verify(
                data, self.ident, key.encode(), time.time(), self.ttl, self.secret
            )
            value = _entry.load(payload, buffers)
        except Miss as miss:
            cause = miss.__cause__
            if isinstance(cause, OSError) and cause.errno is None:
                # Not a system call's error: the caller's signal handler (a TimeoutError)
                # or code run by the unpickling. It is the caller's to handle.
                raise cause from None
            if not isinstance(cause, _NOT_THE_ENTRY):
                self.discard(key, miss.reason, data)
            return MISSING
        if logger.isEnabledFor(_DEBUG):
            header = _entry.read_header(data)  # the whole header, however many buffers
            logger.debug("hit %s %s (%d bytes, saved %.3f s)", self.name, key, len(data),
                         header.compute_time)
        return value

    # --- the miss path --------------------------------------------------------------

    def compute(self, key: str, args: tuple, kwargs: dict[str, Any], force: bool = False) -> Any:
        """Compute under the key's lock, unless another caller stored the value meanwhile.

        A call made while this thread already holds the key's lock (the function calling
        itself with the same key) computes at once, as it would without the cache.
        """
        held = _held.get()
        here = (self.store.location, self.name, key)
        if here in held:
            return self._compute(key, args, kwargs)
        lock = self._lock(key)
        token = _held.set(held | {here})
        try:
            value = MISSING if force else self._stored_meanwhile(key)  # also after a timeout
            if value is MISSING:
                value = self._compute(key, args, kwargs)
            return value
        finally:
            _held.reset(token)
            if lock is not None:
                lock.release()

    def _compute(self, key: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        start = self._started(key)
        value = self.func(*args, **kwargs)
        self._computed(key, value, start)
        return value

    async def acompute(
        self, key: str, args: tuple, kwargs: dict[str, Any], force: bool = False
    ) -> Any:
        """``compute`` for coroutine functions: waits for the lock without blocking the loop,
        and calls a remote store from a worker thread (``run``)."""
        run = _in_thread if self.store.remote else _inline
        held = _held.get()
        here = (self.store.location, self.name, key)
        if here in held:  # the coroutine awaits itself with the same key
            return await self._acompute(key, args, kwargs, run)
        lock = await self._alock(key, run)
        token = _held.set(held | {here})
        try:
            value = MISSING if force else await run(self._stored_meanwhile, key)
            if value is MISSING:
                value = await self._acompute(key, args, kwargs, run)
            return value
        finally:
            _held.reset(token)
            if lock is not None:
                await run(lock.release)

    async def _acompute(self, key: str, args: tuple, kwargs: dict[str, Any], run: Any) -> Any:
        start = self._started(key)
        value = await self.func(*args, **kwargs)
        await run(self._computed, key, value, start)
        return value

    def _lock(self, key: str) -> Any:
        """The key's lock, held; None if the store cannot lock right now (a read-only or
        vanished directory) or another caller held it past ``lock_timeout``: the value is
        then computed without it.

        Only the store's own errors (an ``OSError`` with an errno) are caught; anything else
        raised while waiting, such as the ``TimeoutError`` of the caller's ``SIGALRM``
        handler, propagates with the lock not held.
        """
        timeout = self.lock_timeout
        lock = None
        try:
            lock = self.store.lock(self.name, key)
            if lock.acquire_within(timeout):
                return lock
        except OSError as exc:
            if lock is not None:
                lock.release()
            if exc.errno is None:  # not a system call's: the caller's (a signal handler's)
                raise
            return self._cannot_lock(key, exc)
        except BaseException:
            if lock is not None:
                lock.release()  # taken just before the exception, perhaps: never leak it
            raise
        return self._waited_too_long(key, timeout)

    async def _alock(self, key: str, run: Any) -> Any:
        """``_lock`` for coroutines: polls, so the event loop keeps running meanwhile."""
        import asyncio

        timeout = self.lock_timeout
        deadline = time.monotonic() + timeout
        lock = None
        try:
            lock = self.store.lock(self.name, key)
            while not await run(lock.acquire, False, undo=lock.release):
                if time.monotonic() >= deadline:
                    return self._waited_too_long(key, timeout)
                await asyncio.sleep(_LOCK_POLL)
            return lock
        except OSError as exc:
            if lock is not None and not self.store.remote:
                lock.release()
            if exc.errno is None:  # not a system call's: the caller's (a signal handler's)
                raise
            return self._cannot_lock(key, exc)
        except BaseException:  # cancelled, or the caller's exception: never leak the lock
            if lock is not None and not self.store.remote:  # a remote one: ``undo`` does
                lock.release()
            raise

    def _cannot_lock(self, key: str, exc: OSError) -> None:
        logger.warning("cannot lock %s %s in %s: %s", self.name, key, self.store.location, exc)

    def _waited_too_long(self, key: str, timeout: float) -> None:
        warn(
            f"waited {timeout:g} s (lock_timeout) for another caller computing {self.name} "
            f"{key} in {self.store.location}; computing it here instead. A process stuck "
            "while computing, or a lock file held by another program, keeps the key locked."
        )

    def _stored_meanwhile(self, key: str) -> Any:
        """The value another caller stored while this one waited for the lock, or MISSING."""
        value = self.get(key)
        if value is not MISSING:
            self.hit_count.bump()
        return value

    def _started(self, key: str) -> float:
        logger.debug("miss %s %s", self.name, key)
        return time.perf_counter()

    def _computed(self, key: str, value: Any, start: float) -> None:
        self.miss_count.bump()
        self.put(key, value, time.perf_counter() - start)

    def put(self, key: str, value: Any, compute_time: float) -> None:
        """Store a computed value; a value or a store that fails costs only a warning."""
        created = time.time()
        expires = created + self.ttl if self.ttl is not None else None
        try:
            chunks = _entry.encode(
                value,
                ident=self.ident,
                key=key,
                created=created,
                expires=expires,
                compute_time=compute_time,
                secret=self.secret,
            )
        except Exception as exc:  # whatever pickling raised, the value stands
            if isinstance(exc, OSError) and exc.errno is None:
                raise  # the caller's signal handler (a TimeoutError), not the value's fault
            warn(
                f"result of {self.name} was returned but not cached: it cannot be pickled "
                f"({type(exc).__name__}: {exc})"
            )
            return
        try:
            size = self.store.write(self.name, key, chunks, expires)
        except OSError as exc:
            if exc.errno is None:  # not the store's system call: the caller's signal handler
                raise
            warn(
                f"result of {self.name} was returned but not cached: writing to "
                f"{self.store.location} failed ({exc.strerror or exc}); the next call will "
                "compute again"
            )
            return
        logger.debug("store %s %s (%d bytes, computed in %.3f s)", self.name, key, size,
                     compute_time)
        if not self.swept:
            self.swept = True
            self.sweep()

    def sweep(self) -> None:
        """Evict this function's entries written for other code or another version.

        Runs once per process, at the first store: an edited notebook cell or a version
        bump leaves no trail of entries that can never hit again. Only entries of the same
        scope (script or notebook) and the same Python are swept: another script's
        ``__main__.load`` and another interpreter's entries are theirs to keep. The store
        notes which code swept last in each (Python, scope), so an unchanged function does
        not list its entries in every process.
        """
        try:
            swept = _read_sweep_note(self.store.read_note(self.name))
            group, code = f"{self.seed:016x}", _entry.ident_digest(self.ident)
            if swept.get(group) == code:
                return
            doomed = []
            for stored in self.store.scan(self.name):
                try:
                    header = _entry.read_header(stored.head)
                except Miss:
                    continue  # being written, or damaged: prune's business
                if (header.ident != self.ident and header.function == self.name
                        and header.scope == self.scope and header.python == _entry.PYTHON):
                    doomed.append(stored)
            if doomed:
                self.store.remove(doomed)
            swept.pop(group, None)
            notes = [f"{group} {code}", *(f"{g} {c}" for g, c in swept.items())]
            self.store.write_note(self.name, "\n".join(notes[:_NOTE_GROUPS]).encode())
        except OSError as exc:
            logger.debug("cannot sweep old entries of %s: %s", self.name, exc)

    def discard(self, key: str, reason: str, judged: Any) -> None:
        """Remove an entry that must not be used (stale, incompatible, corrupt), if it is
        still the one judged (``judged``: the bytes read), not a fresh one renamed since."""
        try:
            self.store.discard(self.name, key, judged)
        except OSError as exc:
            if exc.errno is None:  # not the store's system call: the caller's signal handler
                raise
            logger.debug("cannot remove %s %s: %s", self.name, key, exc)
        logger.debug("evict %s %s (%s)", self.name, key, reason)

    def clear(self) -> int:
        """Remove the entries this function can read (of its scope, and of this Python)."""
        return self.store.remove([
            stored for stored in self.store.scan(self.name)
            if (header := header_of(stored)) is not None and header.function == self.name
            and header.scope == self.scope and header.python == _entry.PYTHON
        ])

    def info(self) -> CacheInfo:
        return CacheInfo(self.hits, self.misses, *stored_total(self.store, self.name))

    def contains(self, key: str) -> bool:
        data = self.store.read(self.name, key)
        if data is None:
            return False
        try:
            _entry.verify(data, self.ident, key.encode(), time.time(), self.ttl, self.secret)
        except Miss:
            return False
        return True

    def _unpicklable(self, values: tuple, exc: BaseException) -> TypeError:
        qualname = getattr(self.target, "__qualname__", self.name)
        if self.custom_key is not None:
            return TypeError(
                f"key= of {qualname} returned a value that cannot be pickled "
                f"({type(exc).__name__}: {exc}); return something picklable, such as a "
                "tuple of str and numbers"
            )
        names = parameter_names(self.target, self.ignore)
        for name, value in zip(names, values, strict=False):  # a message: never raise here
            try:
                make_key((value,))
            except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as inner:
                return TypeError(
                    f"argument {name!r} of {qualname} cannot be pickled to make the cache "
                    f"key ({type(inner).__name__}: {inner}); leave it out with "
                    f"ignore=({name!r},) or pass key= a function that returns a picklable "
                    "stand-in for the arguments"
                )
        return TypeError(
            f"the arguments of {qualname} cannot be pickled to make the cache key "
            f"({type(exc).__name__}: {exc}); use ignore= or key="
        )


def _with_bound(call_key: Callable[..., tuple], args: tuple, kwargs: dict[str, Any],
                *call_args: Any, **call_kwargs: Any) -> tuple:
    return (args, kwargs, *call_key(*call_args, **call_kwargs))


def make_wrapper(memo: _Memo, disabled: bool) -> Callable[..., Any]:
    """The decorated function: the original's signature and docs, plus the cache methods."""
    func = memo.func
    key_of, get = memo.key_of, memo.get
    hit = memo.hit_count.bump
    if _is_coroutine_function(memo.target):  # a bound method or partial: what runs
        if disabled:
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                return await func(*args, **kwargs)
        elif memo.store.remote:  # the hit is a round trip: in a worker thread, not the loop
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                key = key_of(args, kwargs)
                value = await _in_thread(get, key)
                if value is not MISSING:
                    hit()
                    return value
                return await memo.acompute(key, args, kwargs)
        else:
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                key = key_of(args, kwargs)
                value = get(key)
                if value is not MISSING:
                    hit()
                    return value
                return await memo.acompute(key, args, kwargs)

        async def refresh(*args: Any, **kwargs: Any) -> Any:
            """Recompute this call, store the result and return it (the entry is replaced)."""
            return await memo.acompute(key_of(args, kwargs), args, kwargs, force=True)
    else:
        if disabled:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return func(*args, **kwargs)
        else:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                key = key_of(args, kwargs)
                value = get(key)
                if value is not MISSING:
                    hit()
                    return value
                return memo.compute(key, args, kwargs)

        def refresh(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            """Recompute this call, store the result and return it (the entry is replaced)."""
            return memo.compute(key_of(args, kwargs), args, kwargs, force=True)

    functools.update_wrapper(wrapper, func)

    def cache_clear() -> int:
        """Remove every entry of this function and zero its counters; return how many
        entries were removed."""
        memo.hit_count.reset()
        memo.miss_count.reset()
        return memo.clear()  # its own entries: its scope, this Python

    def cache_delete(*args: Any, **kwargs: Any) -> bool:
        """Remove the entry of this call, if any; return True if one was removed."""
        return memo.store.delete(memo.name, key_of(args, kwargs))

    def cache_info() -> CacheInfo:
        """CacheInfo(hits, misses, entries, bytes): hits and misses of this process,
        entries and bytes stored for this function."""
        return memo.info()

    def cache_contains(*args: Any, **kwargs: Any) -> bool:
        """True if this call has a valid (fresh, compatible) entry; computes nothing."""
        return memo.contains(key_of(args, kwargs))

    def cache_key(*args: Any, **kwargs: Any) -> str:
        """The key of this call as a hex string (as ``memojar ls FUNCTION`` lists it)."""
        return key_of(args, kwargs)

    wrapper.cache_info = cache_info  # type: ignore[attr-defined]
    wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
    wrapper.cache_contains = cache_contains  # type: ignore[attr-defined]
    wrapper.cache_delete = cache_delete  # type: ignore[attr-defined]
    wrapper.cache_key = cache_key  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    wrapper.__memojar__ = memo  # type: ignore[attr-defined]
    return wrapper


async def _inline(call: Callable[..., Any], *args: Any, undo: Any = None) -> Any:
    return call(*args)


async def _in_thread(call: Callable[..., Any], *args: Any, undo: Any = None) -> Any:
    """``call(*args)`` in a worker thread, so that the event loop never waits on a server.

    A caller cancelled meanwhile does not stop the thread: if the call returns true after
    all (a lock taken), ``undo`` runs (the lock is given back, never left held and renewed
    for nobody), in the worker thread or, if the call had returned already, in another."""
    import asyncio
    import threading

    if undo is None:
        return await asyncio.to_thread(call, *args)
    mutex = threading.Lock()
    outcome: list[Any] = []  # the call's result, and/or None once the caller has left

    def job() -> Any:
        result = call(*args)
        with mutex:
            left = bool(outcome)
            outcome.append(result)
        if left and result:
            undo()
        return result

    try:
        return await asyncio.to_thread(job)
    except asyncio.CancelledError:
        with mutex:
            returned = bool(outcome)
            outcome.append(None)
        if returned and outcome[0]:
            threading.Thread(target=undo, name="memojar-undo", daemon=True).start()
        raise


def _near_recursion_limit() -> bool:
    """True if the stack is within a few dozen frames of the recursion limit."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth > sys.getrecursionlimit() - 100


def _is_coroutine_function(func: Callable[..., Any]) -> bool:
    code = getattr(func, "__code__", None)
    return code is not None and bool(code.co_flags & 0x80)  # inspect.CO_COROUTINE
