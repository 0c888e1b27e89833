"""The decorator: one decorated function's view of a cache, and the wrapper around it.

Everything that can be decided once is decided at decoration time (the binder, the entry
identity, the ttl, the store), so a call is: bind and hash the arguments, read one entry,
check its header, unpickle. The hit path is ``_Memo.get`` and ``FileStore.read``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import itertools
import math
import os
import pickle
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from types import CodeType, FrameType, FunctionType
from typing import Any, NamedTuple, cast

from . import _depends, _entry, _keys, _notebook, _trio, _waits
from ._control import SWITCH
from ._entry import CLOCK_SKEW, Miss
from ._errors import DEBUG, at_site, logger, one_line, the_callers, user_site, warn
from ._identity import (
    SIBLING,
    UNWALKED,
    Loaded,
    attribute,
    call_of,
    changed_during_iteration,
    code_fingerprint,
    copy_dependencies,
    dependencies,
    family_of,
    family_rows,
    forget_dependencies,
    function_name,
    identity_digest,
    in_local_class,
    is_user_module,
    loaded_from,
    mutated_locals,
    note_owner,
    place_of,
    reloaded,
    resolved,
    scope_of,
    sibling_of,
    split,
    taking_options,
    too_large,
    unfilled,
    unkept,
)
from ._keys import (
    key_reentered,
    make_binder,
    make_key,
    make_key_caller,
    parameter_names,
    prebound,
    raw_binder,
    signature,
)
from ._store import KeyLock, Store, Unconfirmed, header_of, stamp_busy, start_thread
from ._wrappers import made_by_partialmethod, passes_on_unchanged


class CacheInfo(NamedTuple):
    """Counters like ``functools.lru_cache``'s, plus what is on disk."""

    hits: int  # calls answered from the cache, in this process
    misses: int  # calls that computed, in this process
    entries: int  # entries stored (for a function: its entries)
    bytes: int  # their size in bytes


def stored_total(store: Store, function: str | None) -> tuple[int, int]:
    """How many entries (of one function) are stored, and their bytes: from the store's
    bookkeeping when it keeps one (a file read), else (and the first time) listed."""
    if function is not None:
        try:
            counted = store.counted(function)
        except OSError:
            counted = None
        if counted is not None:
            return counted
    sizes = [stored.size for stored in store.scan(function, heads=False)]
    if function is not None:
        try:
            store.recount(function, len(sizes), sum(sizes))
        except OSError as exc:
            logger.debug("cannot record the count of %s: %s", function, exc)
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
# What a waiter finds when the caller it waited for computed the key in this process and
# did not store the value (``_Memo.unstored``): it computes its own at once, not in turn.
UNSTORED: Any = object()
# What ``_lock`` and ``_alock`` return when the store could not be asked for the lock (its
# fault: ``_cannot_lock``): the call computes without it, reading nothing again first.
UNLOCKED: Any = object()
_UNSTORED_MAX = 256  # keys noted as unstored, per function: the latest kept
_Args = tuple[Any, ...]  # bound or call arguments
_FOREVER = 1e9  # seconds: the delay of a timer that never fires (``_keep_alive``)
_compute_time, _COMPUTE_TIME_AT = _entry.unpack_compute_time, _entry.COMPUTE_TIME_AT
# Types whose values equal only values of their own type (not bool, float or complex:
# ``True == 1 == 1.0``), so a tuple of them finds in a dict only a tuple of the same types
# and values, whose key is the same (``make_key`` is a pure function of values and seed).
_PLAIN = frozenset({int, str, bytes, type(None)})
_KNOWN = 256  # keys a function remembers by their bound values
_KNOWN_SIZE = 320  # bytes (``__sizeof__``) of the largest value kept there
_LOCK_POLL = 0.01  # seconds between tries of a held lock in an async caller
# Failures to load an entry that say something about this process, not about the entry:
# the call recomputes, and the entry stays for the processes that can load it.
_NOT_THE_ENTRY = (MemoryError, ImportError, RecursionError)


def _let_go(miss: BaseException) -> None:
    """Drop the tracebacks of an entry's failed load before the call recomputes: their
    frames hold the entry (its mapping, its buffers), and a frame that holds its own
    exception (``except ... as exc: raise Miss(...) from exc``, and ``cause`` here), with
    the frames' links to their callers, makes a cycle only the collector frees. Before, a
    large entry that did not load (out of memory: the very case where the memory is
    needed) stayed mapped throughout the recomputation. The chain ends at an exception
    caught in a caller of the miss's frame: one the caller was handling when it called
    (the load's error's ``__context__``), whose traceback is its own (before, dropped too,
    for the caller's ``raise`` or logging)."""
    callers: set[int] = set()
    frame: FrameType | None = sys._getframe(2)  # above the frame that caught ``miss``
    while frame is not None:
        callers.add(id(frame))
        frame = frame.f_back
    seen: set[int] = set()
    exc: BaseException | None = miss
    while exc is not None and id(exc) not in seen:
        tb = exc.__traceback__
        if tb is not None and id(tb.tb_frame) in callers:
            break
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


def _callers_again(miss: Miss) -> None:
    """Raise the cause of ``miss`` again if it is the caller's (``the_callers``: its signal
    handler's deadline, a ``TimeoutError``, landing in the load): the caller's to handle,
    not a miss. Any other cause, the entry's or code run by its unpickling (a
    ``ConnectionError`` of its own from a ``__setstate__``), is a miss. No cycle through
    the entry: the cause's context is the miss, whose cause it is no longer, and no frame
    of its traceback names it."""
    cause = miss.__cause__
    if cause is None or not the_callers(cause):
        return
    miss.__cause__ = None
    try:
        raise cause from None
    finally:
        del cause


_FILES_WARNED: set[str] = set()  # functions warned of a files= path changed while they ran
# Why an entry is refused when it was written under another secret (or none), as
# ``_entry.verify`` says it, and what the warning says of it (once per store and process).
_OTHER_SECRET = {
    "signature does not verify": "is signed with another secret (or was forged)",
    "not signed, and this cache has a secret": "is not signed, and this cache has a secret",
    "signed, and this cache has no secret to check it": "is signed, and this cache has no "
    "secret",
}
_SECRET_WARNED: set[str] = set()  # store locations warned of entries of another secret
_NOT_LOADED = "payload does not load"  # (``_entry``'s reason) a value stored, not rebuilt
_UNLOADED_KEPT = 64  # keys a function remembers failing to load, until it warns
# (function, global) warned of as too large to follow (``_Memo._warn_too_large``)
_LARGE: set[tuple[str, str]] = set()
# The lambdas decorated in this process, while they live: a lambda's first store sweeps the
# entries of its name's lambdas whose code none of these has (``_Memo.sweep``).
# Weak references in a plain set: adding and copying it are each one C call, safe against
# other threads without a lock (which a fork could leave held); a dead one removes itself.
_LAMBDAS: set[weakref.ref[_Memo]] = set()
# Every live memo, for a forked child to give each a lock of its own (``_forked``) and for
# the statistics thread to map stamps again (``restamp_all``): weak references in a plain
# set, as ``_LAMBDAS``. Before, a ``WeakSet``, whose iteration (a generator: other threads
# run between its items) raised "Set changed size during iteration" when another thread
# decorated a function meanwhile, and the statistics thread died of it.
_MEMOS: set[weakref.ref[_Memo]] = set()


def _live_memos() -> list[_Memo]:
    """The memos alive now: the set copied in one C call, then each reference followed."""
    return [memo for memo in map(weakref.ref.__call__, list(_MEMOS)) if memo is not None]


def _took(seconds: float) -> str:
    """A compute time for ``cache_explain``: ``"12 ms"``, ``"0.00674 ms"``, ``"3.2 s"``
    (before, ``"6.74e-06 s"`` and ``"0.000229 s"``)."""
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


_COMPUTING_HERE = "computing it here instead"  # what a miss does after lock_timeout
_HOLDER = _waits._holder  # key locks held in this process, by owner (see ``_waits``)
_MODULES, _thread = sys.modules, threading.get_ident  # ``_waits.owner``'s, for ``compute``

# The key locks this thread (or task, for coroutines) holds, as (location, function, key):
# a cached function calling itself with the same key computes without waiting for itself.
# A context variable, not a thread-local, so that a coroutine awaiting itself, and the
# tasks it starts, count as the holder too. A tuple, not a set: a miss adds one and takes
# it away again (a few held at once at most), and a tuple neither hashes nor copies a table
# for that; its mark is taken away with ``reset``, cheaper than a second ``set``.
_held: contextvars.ContextVar[tuple[tuple[str, str, str], ...]] = contextvars.ContextVar(
    "memojar_held_locks", default=()
)


class Counter:
    """A count that threads can bump without losing increments, as cheap as ``x += 1``.

    ``next()`` on an ``itertools.count`` is one C call under the GIL, so it is atomic;
    ``value`` reads it back (its repr is ``count(N)``), and ``reset`` remembers an offset.
    """

    __slots__ = ("_base", "_count", "bump")

    def __init__(self) -> None:
        self._count = _Count()
        self.bump = functools.partial(next, self._count)
        self._base = 0

    def _now(self) -> int:
        return int(repr(self._count)[7:-1])  # "_Count(N)"

    @property
    def value(self) -> int:
        return self._now() - self._base

    def reset(self) -> None:
        self._base = self._now()

    @classmethod
    def at(cls, now: int, value: int) -> Counter:
        """A counter at ``now`` whose ``value`` is ``value`` (a sum of dropped ones')."""
        counter = cls()
        counter._count = _Count(now)
        counter.bump = functools.partial(next, counter._count)
        counter._base = now - value
        return counter


class _Count(itertools.count):  # type: ignore[type-arg]  # not subscriptable at runtime
    """An ``itertools.count`` whose copy (a wrapper sent by cloudpickle) starts again at 0:
    a copy counts its own process's calls, and ``itertools.count`` itself stops pickling in
    Python 3.14 (a DeprecationWarning before)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Count, ())


class Tally:
    """A function's counts for the saved statistics: its hit and miss counters and the
    seconds its hits saved (raw counts, which ``cache_clear`` does not reset; what of them
    was merged into the store already is its cache's, ``Cache._merged``)."""

    __slots__ = ("hit_count", "miss_count", "name", "saved")

    def __init__(self, name: str, hit_count: Counter, miss_count: Counter) -> None:
        self.name = name
        self.hit_count = hit_count
        self.miss_count = miss_count
        self.saved = 0.0

    def now(self) -> tuple[int, int, float]:
        return (self.hit_count._now(), self.miss_count._now(), self.saved)


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


class _MadeOnce:
    """A memo's identity (``_Memo.ident``): made at its first use, then read from the
    instance's dict (a non-data descriptor: no later lookup comes here), the same object in
    every thread. ``functools.cached_property`` of Python 3.12+ has no lock: threads making
    a memo's first calls at once each kept the identity they made (equal, but not the same
    object), and a call whose own was replaced meanwhile was judged to have crossed a
    change of what it depends on (``_crossed`` compares by ``is``): its value was not
    stored. The lock publishes the identity, its rows and records; it is not held while
    they are made: the walk runs the user's code (a ``depends_on`` method's object pickled
    by ``__getstate__``, a ``repr``), and a thread holding it there (as 3.11's
    ``cached_property`` held its own) waited for the user's lock that a thread waiting for
    this one held: both for ever. Threads making it at once each walk; the first to
    publish gives every one its identity, unless a ``renew`` (``_Memo._unmake``) came
    between: the code it was made for is gone, and it serves only the call that made it.
    One lock for every memo: given anew in a forked child."""

    lock = threading.RLock()  # reentrant: a signal handler's call may come while it is held

    def __init__(self, make: Callable[[Any], tuple[bytes, Any, list[Any] | None]]) -> None:
        self.make, self.name = make, make.__name__
        self.__doc__ = make.__doc__

    def __get__(self, memo: Any, owner: type | None = None) -> bytes:
        unmade = memo.unmade
        made, rows, records = self.make(memo)  # the user's code runs here: no lock held
        with self.lock:
            memo.__dict__.pop("sent", None)  # used (the walk reads it, ``_Memo.ident``)
            if memo.unmade != unmade:  # renewed meanwhile: for the code before, this call's
                return made
            kept = memo.__dict__.get(self.name)
            if kept is None:
                memo.rows, memo.resolved = rows, records
                kept = memo.__dict__[self.name] = made
            return cast("bytes", kept)


class _Memo:
    """A function's entries in a store: its name, identity, key function and counters.

    Built from what it needs (the store, the secret, the function and its options), not from
    the ``Cache`` that made it: nothing here reaches back up."""

    rows: Any  # what the identity was made from (``ident``): set with it, by ``_MadeOnce``
    code: Any  # the function's code and defaults as keyed (``hold``)
    defaults: Any
    kwdefaults: Any
    kwchanged: Callable[[], bool]  # whether the keyword defaults changed in place

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
        stale_while_revalidate: float | None = None,
        min_compute_time: float | None = None,
        memory: int | None = None,
        depends_on: Any = (),
        files: tuple[str, ...] = (),
        *,
        register: Callable[[_Memo], None] | None = None,
        reopen: Callable[[], Store] | None = None,
    ) -> None:
        self.func = func
        self.store = store
        self.reopen = reopen  # the store for a copy of this memo (see __getstate__)
        self.secret = secret
        self.lock_timeout = lock_timeout  # seconds to wait for another caller's compute
        self.name = function_name(func)
        # Its script or notebook, for a function of __main__ (``place``); for a closure or
        # lambda sharing its name with others (``make(1)``, ``make(2)``), followed by what
        # tells it apart, so it keeps entries of its own.
        target, bound, _ = split(func)
        # A method of a class a function defines: its class counts (``note_owner``), from
        # the instance bound, else at its first call (``retake_sibling``)
        self.local = in_local_class(target)
        if self.local and bound:
            note_owner(target, bound[0])
        place, sibling = scope_of(func), sibling_of(func)
        self.scope = f"{place}{SIBLING}{sibling}" if sibling else place
        self.version = version  # self.ident: at the first call (see ident)
        self.depends_on = _depends.depends_on_rows(depends_on)
        rows, callables = _depends.option_rows(key, ignore)  # (what decides the keys)
        self.depends_on[0].extend(rows)
        self.depends_on[1].extend(callables)
        self.seed = _entry.key_seed(self.scope)  # entries of other Pythons/scopes live apart
        self.ttl = ttl
        self.ignore = ignore
        # Of ignore, by _make_binder: those that cannot be left out under the decorators
        # between @cached and the function (``_warn_unread``), which count in the key.
        self.kept: tuple[str, ...] = ()
        self.custom_key = key
        self.files = files  # path parameters: the memory tier never skips hashing these
        # A partial, bound method or callable instance is the function that runs plus the
        # arguments bound to it (the instance, the partial's arguments): they go in the key.
        self.target = split(func)[0]
        _states_readable(func, self.target, self.name, ignore)
        # The binder applies the function's defaults, and the identity (at the first call)
        # covers its code and defaults: both are made for the function as it is now. A
        # plain function's ``__code__``, ``__defaults__`` and ``__kwdefaults__`` can be
        # reassigned later, so ``key_of`` compares them with these (``renew``); anything
        # else is watched through a stand-in that never changes.
        self.watched = _watched(self.target)
        self.hold(_as_it_is(self.watched))
        # The binder of a decorator's own signature (``_own_binder``), made when a call
        # first needs it, with the code and defaults it was made for.
        self.own: tuple[tuple[Any, Any, Any], Callable[..., _Args] | None] | None = None
        self.binder = self._make_binder()
        if sibling and (unfilled(func) or (self.local and not bound)):  # its sibling part is
            self.binder = _BindingFirst(weakref.ref(self))  # taken again at its first call
        # The keys of recent calls of small plain values, by their bound values: a repeated
        # call is one dict lookup, not a pickle and a hash (see ``_PLAIN``). A key depends
        # on the bound values and the seed only: a reassigned default leaves these right.
        self.known: dict[_Args, str] = {}
        self.hit_count = Counter()
        self.miss_count = Counter()
        # What the cache merges into the store's saved statistics (it holds the tally, not
        # this memo, so it keeps no decorated function alive).
        self.tally = Tally(self.name, self.hit_count, self.miss_count)
        self.register = register  # hands the tally to the saved statistics (the cache's)
        self.swept = False  # entries of this function's other code/versions evicted yet?
        self.unloaded: set[str] | None = set()  # keys whose entry did not load (None: warned)
        self.swr = stale_while_revalidate  # seconds after expiry a stale value is served
        self.min_compute_time = min_compute_time or 0.0
        self.revalidating: set[str] = set()  # keys recomputed in the background now
        # Key -> when (monotonic) a call of this process computed it and did not store it
        # (unpicklable, over max_size, under min_compute_time, a storage fault): the
        # callers of this process waiting for that call compute their own at once, instead
        # of each taking the key's lock in turn to compute it again (``_look``).
        self.unstored: dict[str, float] = {}
        # Reentrant: a signal handler, or a finalizer (an evicted result's ``__del__``, run
        # by the cycle collector), may call the function while this thread holds it.
        self.revalidating_lock = threading.RLock()
        _MEMOS.add(weakref.ref(self, _MEMOS.discard))
        self.memory = memory  # results kept in this process, most recent last
        self.simple: set[type] | None = None  # the types it holds calls by (``renew``)
        # value, expiry, compute time, held since, and the result classes its entry names
        # (None for a value computed here: not known), checked when an IPython cell starts
        self.recent: OrderedDict[Any, tuple[Any, float, float, float, str | None]] = (
            OrderedDict())
        self.generation: Any = None  # the store's stamp, read per call; None: not yet
        self.stamp = 0  # the stamp when ``recent`` was filled
        self.holding = True  # False in a copy that could not map the stamp: hold nothing
        self.renewals = 0  # renew()s so far: a fill that started before one holds nothing
        self.rekeying = False  # defaults reassigned once: each miss checks its key then
        self.unmade = 0  # identities taken away so far (``_unmake``): see ``_MadeOnce``
        # In IPython, a cell that starts sets ``code`` to ``CELL_RAN`` (see ``renew``):
        self.made = _as_it_is(self.watched)  # what the binder and identity were made for
        self.resolved: list[Any] | None = None  # what the identity was made from (ident)
        # The decorated function (``make_wrapper``), weakly: ``_notebook.reloaded`` finds
        # a wrapper that ``%autoreload`` patched in place to hold another memo's functions.
        self.wrapper: Callable[[], Any] | None = None
        _notebook.watch(self)  # in IPython: re-checked at its first call after each cell
        if sibling and self.name.endswith("<lambda>"):
            _LAMBDAS.add(weakref.ref(self, _LAMBDAS.discard))

    @property
    def place(self) -> str:
        """Its script or notebook (``scope_of``): its scope without the sibling part (a
        property, not an attribute: the instance's dict stays as the hit path knew it)."""
        return place_of(self.scope)

    def _make_binder(self) -> Callable[..., _Args]:
        """The function turning a call's arguments into the values its key hashes, for the
        function's signature and defaults as they are now."""
        func, ignore = self.func, self.ignore
        bound_args, bound_kwargs = split(func)[1:]
        shaped = _bound_elsewhere(self.target)
        # Whether the decorators under @cached pass the call on unchanged: else ignore=,
        # files= and key= may take another argument for a parameter (``_warn_unread``).
        unchanged = not shaped or passes_on_unchanged(self.target)
        if self.custom_key is None:
            own = _own_signature(self.target)
            if own is not None:  # names only the decorator's own signature has are its
                inner = parameter_names(self.target, ())
                ignore = tuple(n for n in ignore if n in inner or n not in own.parameters)
            self.kept = ()  # (made again for code reassigned: see ``renew``)
            if shaped and ignore and not unchanged:  # each counts in the key
                _warn_unread(self.target, f"ignore={ignore!r}", "so they count in the key, "
                             "an extra computation, never another call's value")
                self.kept, ignore = ignore, ()
            binder = make_binder(self.target, ignore, shaped)
            changing = _changing_defaults(self.watched, self.ignore)
            if changing:  # the wrapper's own defaults that may change in place, keyed too
                binder = functools.partial(_with_defaults, binder, changing)
        else:
            binder = make_key_caller(func, self.custom_key, shaped)
            if bound_args or bound_kwargs:  # key= sees the call; the instance still counts
                binder = functools.partial(_with_bound, binder, bound_args, bound_kwargs)
                bound_args, bound_kwargs = (), {}
        if not unchanged and self.custom_key is not None:
            _warn_unread(self.target, "key=", "so what it returns may leave out what the "
                         "result depends on")
        elif not unchanged and self.files:
            _warn_unread(self.target, f"files={self.files!r}", "so the file hashed may be "
                         "another argument's")
        if self.files:  # each path argument keyed with its content
            binder = _depends.files_binder(binder, self.keyed_names(ignore), self.files,
                                           function_name(func))
        if bound_args or bound_kwargs:
            paths = binder.__dict__.get("paths")
            binder = prebound(binder, bound_args, bound_kwargs)
            if paths is not None:
                binder.__dict__["paths"] = prebound(paths, bound_args, bound_kwargs)
        return binder

    def keyed_names(self, ignore: tuple[str, ...]) -> list[str]:
        """The parameters whose values the binder's tuple holds, in order: those of
        ``ignore`` left out, but those that cannot be (``_warn_unread``)."""
        return parameter_names(self.target, [n for n in ignore if n not in self.kept])

    def retake_sibling(self, first: tuple[Any, ...] = ()) -> Callable[..., _Args]:
        """For a closure sharing its name with others, some of whose cells were empty when
        it was decorated (a helper the factory defines after it, which captures what tells
        the closures apart), at its first call (``_BindingFirst``): its sibling part taken
        again with them filled (else its siblings kept the same keys, and each call replaced
        the other's entry), and the usual binder, which later calls use (nothing is added
        to them). For a method of a class a function defines, the same, with its class
        noted from the call's ``first`` argument (``self`` or ``cls``: ``note_owner``),
        which its identity and sibling part then count."""
        if self.local:  # (a bound one's instance, in a copy: its own)
            first = split(self.func)[1][:1] or first
            if first:
                note_owner(self.target, first[0])
        self.scope = f"{self.place}{SIBLING}{sibling_of(self.func)}"
        self.seed = _entry.key_seed(self.scope)
        self.known.clear()
        self._unmake()  # made for the scope it had, if asked already
        self.binder = binder = self._make_binder()
        return binder

    def take_options(self, other: _Memo) -> None:
        """The options of ``other``, a memo a reload of this one's module made for the same
        function (``_notebook._adopt``): ``version=``, ``ttl=``, ``key=``, ``ignore=``,
        ``depends_on=``, ``files=``, ``stale_while_revalidate=``, ``min_compute_time=``
        and ``lock_timeout=`` as the module's new source gives them, its keys, identity and
        memory tier made again for them. Before, a reload that kept the old wrapper
        (``%autoreload 2`` before IPython 9, ``--full`` since) ran the new code with the
        old options: a ``key=`` that newly tells two calls apart hit the other call's
        value, a ``ttl=`` added served an entry past it, a ``version=`` bumped read the
        old version's values. (The cache itself, ``cache_dir=``, stays the old one's.)"""
        self.version, self.depends_on, self.ttl = other.version, other.depends_on, other.ttl
        self.ignore, self.custom_key, self.files = other.ignore, other.custom_key, other.files
        self.swr, self.min_compute_time = other.swr, other.min_compute_time
        self.lock_timeout = other.lock_timeout
        self.known.clear()
        self._remake()

    def _remake(self) -> None:
        """Made again (``renew``, ``take_options``): the binder, the identity and reader (at
        the next use), the sweep of other code's entries, and the memory tier's values."""
        self.binder = self._make_binder()
        self.swept = False
        # The memory tier emptied before the identity is dropped, and again after (a fill
        # meanwhile): an interrupt (Ctrl-C in a notebook's cell) between the two left the
        # old code's values held, returned by every later call.
        self._forget_held()
        self._unmake()
        self._forget_held()

    def _forget_held(self) -> None:
        if self.generation is not None:
            with self.revalidating_lock:
                self.renewals += 1
                self.recent.clear()
                self.stamp = -1  # no fill started before holds its value; the next call
                # finds the store's stamp differs and forgets (sets it back)

    def renew(self) -> None:
        """The function's ``__code__``, ``__defaults__`` or ``__kwdefaults__`` was reassigned
        (``f.__wrapped__.__code__ = g.__code__``, as joblib's tests do): what was made for
        the old ones is made again, as in a process started with the function as it is now.
        Its binder (the defaults it applies), identity and reader (at the next use), the
        results the memory tier holds, and the sweep of the entries of other code at the
        next store. Keys already made stay: a key depends only on the bound values.

        What is read first is what is kept: a reassignment while this runs is seen by the
        next call. A call running in another thread meanwhile may still finish with what
        it had; the memory tier keeps nothing such a call fills (``stamp``).

        In IPython a cell that starts marks the memo (``_notebook``: ``code`` is then
        ``CELL_RAN``): its function's helpers, classes and constants are compared with what
        its identity was made from, and all this is made again only if one changed."""
        if _notebook.cells_started:  # in IPython: a module %autoreload reloaded?
            _notebook.reloaded(self, make_wrapper)
        now = _as_it_is(self.watched)
        cells = _notebook.cells_started  # a cell that starts meanwhile marks it again
        if (self.code is _notebook.CELL_RAN and not _reassigned(self.watched, self.made)
                and not self.kwchanged()):
            if not self.dependencies_changed():
                if self.recent:
                    self._forget_changed_classes()
                self.code = now[0] if _notebook.cells_started == cells else self.code
                return
            why = "what it depends on changed"
        elif reloaded(self.loaded()):
            why = "a module it depends on was reloaded"
        elif _reassigned(self.watched, self.made):
            why = "its code or defaults were reassigned"
        elif self.kwchanged():
            why = "its keyword defaults were changed in place"
        else:  # a miss in IPython: bound again within the cell (``_compute``)
            why = "what it depends on changed"
        forget_dependencies(self.target)
        for item in self.depends_on[1]:
            forget_dependencies(item)
        self._remake()
        if now[1] is not self.made[1] or now[2] is not self.made[2] or self.kwchanged():
            self.rekeying = True  # keys made before may be of the old ones (``_rekeyed``)
        self.made = now
        self.hold(now)
        simple = self.simple  # the memory tier's (``_memory_wrapper``)
        if simple is not None:  # defaults that may change in place: held by key only
            held = _simple_types(self)
            simple.intersection_update(held)  # never emptied meanwhile: a set, not rebound
            simple.update(held)
        if _notebook.cells_started != cells:
            self.code = _notebook.CELL_RAN
        logger.debug("renew %s: %s", self.name, why)

    def hold(self, now: tuple[Any, Any, Any]) -> None:
        """What the function's code and defaults are now (compared by identity per call),
        and a check of the keyword defaults' dict, which can change in place
        (``f.__kwdefaults__["scale"] = 100``): the binder takes that dict itself
        (``_keys._kwdefaults_of``), so keys see the change; the memory tier, which holds
        calls of plain arguments by the arguments alone, and a miss, whose key was made
        before it runs, ask the check (``_in_place_check``)."""
        self.code, self.defaults, self.kwdefaults = now
        self.kwchanged = _in_place_check(_keyword_defaults(self.watched))

    def _unmake(self) -> None:
        """The identity and the reader made for it are made again at their next use, by
        ``_MadeOnce`` and the class's ``reader``. Under the lock that publishes them, and
        counted (``unmade``): another thread making either meanwhile does not keep it (it
        was keeping what it made from the code of before, after this: the next call's
        ``key_of`` found the code it was renewed for, and every call then hit the entries
        of the old code: its values)."""
        with _MadeOnce.lock:
            self.unmade += 1
            # the reader first: an interrupt between the two (Ctrl-C in a notebook's cell)
            # left the old identity's reader, whose entries every later call then read
            # (the identity, dropped last, is made again with its reader)
            self.__dict__.pop("reader", None)
            self.__dict__.pop("ident", None)

    def _forget_changed_classes(self) -> None:
        """A cell started: results held in memory that hold a class of the user's code a
        cell may have defined again are dropped (the next call reads the entry, whose
        classes a hit checks), as are those computed here, whose classes are not known.
        Before, a memory hit returned an instance of the old class after a cell redefined
        it, where a disk hit found the entry incompatible."""
        with self.revalidating_lock:
            items = list(self.recent.items())
        gone = []  # judged outside the lock: looking a class up may import its module
        for mkey, held in items:
            classes = held[4]
            try:
                if classes is None or (classes and _depends.changed_result_class(
                        classes.encode())):
                    gone.append(mkey)
            except Miss:  # its module is missing or fails: the entry's hit says so
                gone.append(mkey)
        with self.revalidating_lock:
            for mkey in gone:
                self.recent.pop(mkey, None)

    def _crossed(self, key: str, ident: bytes, marked: int) -> bool:
        """Whether what the call's identity ``ident`` was made from changed while it ran: a
        helper defined again, a constant bound again, by a cell that started meanwhile (a
        thread's or a task's call that outlived its cell: the kernel's event loop runs tasks
        between cells; ``marked``: ``cells_marked`` as it began), or by its own cell (a
        thread of the cell's, a task it awaits with the call: the names only, as at the
        call's start, ``rebound``). Its value may be of the new ones, and is not stored
        under ``ident`` (before, it was: a kernel with the old ones, the next day's, got
        it). Asked in IPython only (records kept, or a cell started)."""
        resolved = self.resolved
        if self.__dict__.get("ident") is ident and (resolved is None or (
                all(record.unchanged() for record in resolved)
                if _notebook.cells_marked != marked else not self.rebound())):
            return False  # (``ident`` made again meanwhile: what it was made of changed)
        logger.debug("not stored %s %s (what it depends on changed while it ran)",
                     self.name, key)
        return True

    def dependencies_changed(self) -> bool:
        """Whether what the identity was made from changed since (False before the first
        call, which makes it; True if it was made without a record)."""
        if "ident" not in self.__dict__:
            return False
        return self.resolved is None or not all(r.unchanged() for r in self.resolved)

    def rebound(self) -> bool:
        """Whether a name the identity was made from is bound to another object since
        (``Resolved.bound_as_made``: the names only, a check for every miss in IPython;
        ``dependencies_changed`` compares functions and classes too, 300 µs for the function
        of ``benchmarks/notebook_miss.py``)."""
        return "ident" in self.__dict__ and not all(
            record.bound_as_made() for record in self.resolved or ())

    def __getstate__(self) -> dict[str, Any]:
        """A copy (cloudpickle sends a function of ``__main__`` by value) starts with an
        empty memory tier and no recomputation running; it maps the stamp itself. Its
        identity is checked at its first call against what it runs there (``ident``)."""
        state = self.__dict__.copy()
        # A store holds live connections (a Redis or S3 client): a copy asks ``reopen`` (its
        # cache's, which unpickles as one Cache per location in the receiving process).
        dropped = ("revalidating_lock", "generation", "recent", "revalidating", "reader",
                   "known", "code", "defaults", "kwdefaults", "kwchanged", "made",
                   "resolved", "own", "wrapper", "looked")
        for name in (*dropped, "store") if self.reopen is not None else dropped:
            state.pop(name, None)
        if "ident" in state and self.resolved is not None and not all(
                record.unchanged() for record in self.resolved):
            # In IPython, a cell bound again what the identity was made from (``CONFIG =
            # Config(5)``) and the function was sent before its next call here renewed it:
            # the copy takes its data globals as its sender hashed them (``_as_sent``), so
            # with this identity it read the old global's entries and stored the new one's
            # values under them. Sent without it, the copy makes its own of what it holds.
            state.pop("ident")
            state.pop("rows", None)
        import platform  # (not at import: it costs a millisecond, for copies alone)

        state["made_by"] = (_BYTECODE, platform.python_version())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A copy carries its code by value (cloudpickle: the function, memojar's wrapper):
        # bytecode of another Python (3.12's in 3.11) crashed the worker at its first call
        # (a segmentation fault), or ran as other instructions. Refused here, by name.
        made_by = state.pop("made_by", None)
        if made_by is not None and made_by[0] != _BYTECODE:
            import platform

            raise pickle.UnpicklingError(
                f"a copy of the cached function {state.get('name')} was made by Python "
                f"{made_by[1]} and cannot run in Python {platform.python_version()}: "
                "cloudpickle sends its code by value; run the workers on the sender's "
                "Python version")
        # The sender's identity, if it had made one: checked at the first call (``ident``)
        sent, earlier = (state.pop("ident", None), state.pop("rows", None)), state.pop(
            "sent", None)  # a copy of a copy not called yet: what its sender was sent
        self.__dict__.update(state)
        self.own = None  # made again where it runs (``_own_binder``)
        if type(self.binder) is _BindingFirst or self.local:  # its sibling
            self.binder = _BindingFirst(weakref.ref(self))  # part is taken here, too (and
            # the class of a method of a class a function defines noted: this copy's)
        self.sent = sent if sent[0] is not None else earlier
        # Its keys as this interpreter's: a loky worker of a ``python -OO`` script runs
        # without ``-OO`` (docstrings back), and stored under the script's keys.
        self.seed = _entry.key_seed(self.scope)
        if self.reopen is not None:
            self.store = self.reopen()
        self.revalidating, self.revalidating_lock = set(), threading.RLock()
        _MEMOS.add(weakref.ref(self, _MEMOS.discard))
        self.recent, self.generation, self.known, self.unstored = OrderedDict(), None, {}, {}
        self.made = _as_it_is(self.watched)
        self.hold(self.made)
        self.resolved = None
        if self.memory:
            stamp = self.store.generation(self.name)
            self.holding = stamp is not None
            self.generation = memoryview(stamp if stamp is not None else bytearray(8)).cast("Q")
            self.stamp = self.generation[0]
        if self.register is not None:
            self.register(self)

    @_MadeOnce
    def ident(self) -> tuple[bytes, Any, list[Any] | None]:
        """The header's identity, made at its first use (the first call): the function's code
        and what it depends on, so globals defined after the decorated function count. Kept
        in the instance's dict then (``_MadeOnce``), so no later call comes here, and
        no other attribute lookup pays for it (a ``__getattr__`` would slow them all).
        Made with the rows and records it was made from (``rows``, ``resolved``), which
        ``_MadeOnce`` keeps with it."""
        sent = self.__dict__.get("sent")
        if sent is not None:
            taken = self._as_sent(sent)
            if taken is not None:
                return taken
        records: list[Any] | None
        for walk in range(2):
            try:
                rows = (*dependencies(self.target), *self.option_rows(), _KEYING)
            except Exception as exc:  # a call must not fail for its fingerprint
                if the_callers(exc):  # a deadline: no identity made of half a walk
                    raise
                warn(f"cannot follow what {self.name} depends on ({type(exc).__name__}: "
                     f"{exc}); only its own code is tracked: name what it depends on in "
                     "version=")
                rows = (("code", "", code_fingerprint(self.target)), *self.depends_on[0],
                        _KEYING)
                records = None
                break
            # The function's record, and those of the depends_on callables of the user's
            # code (a library's is tracked by its name: it has none).
            own = resolved(self.target)
            records = None if own is None else [own, *filter(None, map(
                resolved, self.depends_on[1]))]
            if rows[0][2] == code_fingerprint(self.target):
                break
            # Walked while another thread reassigned the code (or a wrapped function's)
            # and back, A, B, A, unseen by the calls' checks: made of B's, it was kept for
            # A, and every value of A was stored under B's identity. Or a walk kept from
            # before the code was reassigned (another ``cached`` of the same function, made
            # after): this call read the old code's entries with it, and returned their
            # value. This call's only (not stored: ``_compute``), walked again now, for
            # what it reads; and if the code changes still, an identity no entry has.
            forget_dependencies(self.target)
            self._unmake()
            if walk:
                rows = (*rows, ("unsettled", "", os.urandom(8).hex()))
        if sent is not None and _agrees(sent[1], rows):
            return bytes(sent[0]), sent[1], records
        self._warn_too_large(rows)
        fingerprint = identity_digest(rows)
        ident = _entry.make_ident(self.name, self.version, fingerprint, self.scope)
        return ident + _entry.manifest(rows), rows, records

    def _warn_too_large(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Warn, once a function and global, of the globals its identity counts by their
        type, whole or in part, for they are too large to hash at every process's first
        call (``_identity.too_large``): a change of one is not seen, and the old value is
        returned. Before, silently: a notebook's ``df = df[df.v > 0]`` left ``total('v')``
        returning the sum of the whole frame."""
        for kind, where, _ in rows:
            if kind != "constant" or where not in too_large or (self.name, where) in _LARGE:
                continue
            _LARGE.add((self.name, where))
            # ("depends on": a class's attribute counts whether the function reads it or
            # not, as library code may read it by name; "reads" named one it never read)
            warn(f"{self.name} depends on the global {where} (a {too_large[where]}), too "
                 "large to follow (over 16 MB of pickle, 1 GB of arrays or 100,000 items): "
                 "it counts by its type, and a change of it is not seen, an earlier value "
                 "returned; pass it as an argument (hashed at each call), or name what "
                 "identifies it in version= (its file's date, a model's version)")

    def option_rows(self) -> list[tuple[str, str, str]]:
        """The rows of what it was decorated with beside its code (``depends_on=``,
        ``key=``, ``ignore=``: package versions, values, the callables' code and state), as
        its identity holds them, and the identity of a cached function calling it too
        (``_identity._cached_options``): made by one function, they cannot disagree."""
        with taking_options(self) as again:
            if again:  # met again inside its callables' walk (``taking_options``)
                return list(self.depends_on[0])
            return [*self.depends_on[0], *_depends.callable_rows(self.depends_on[1])]

    def _as_sent(self, sent: Any) -> tuple[bytes, Any, None] | None:
        """A copy's sender's identity, if it holds here by a walk that takes the data
        globals sent inside the copy as the sender hashed them (``copy_dependencies``),
        else None (the full walk decides)."""
        if not isinstance(sent[1], tuple):
            return None
        try:
            found = copy_dependencies(self.target, sent[1])
            if found is None:
                return None
            rows = (*found, *self.option_rows(), _KEYING)
        except Exception as exc:  # as in ``ident``: the full walk warns
            if the_callers(exc):
                raise
            return None
        if not _agrees_as_sent(sent[1], rows):
            return None
        # no record (resolved): kept only in IPython, where this is not used
        return bytes(sent[0]), sent[1], None

    def loaded(self) -> Loaded:
        """The modules its identity was read from, each with its spec then: a miss after one
        of them was reloaded (``importlib.reload``, ``_identity.reloaded``) makes the
        identity again. Kept by ``_identity``, not here: what a cached method's memo holds
        is walked with its class. ``UNWALKED`` if the identity was not made yet (its walk
        notes them: ``_compute`` asks again)."""
        loaded = loaded_from(self.target, target=True)
        if loaded is UNWALKED:
            return loaded
        for item in self.depends_on[1]:
            loaded += loaded_from(item)
        return loaded

    @property
    def hits(self) -> int:
        """Calls answered from the cache in this process (exact under threads)."""
        return self.hit_count.value

    @property
    def misses(self) -> int:
        """Calls that computed in this process."""
        return self.miss_count.value

    # --- the hit path ---------------------------------------------------------------

    def key_of(self, args: _Args, kwargs: dict[str, Any]) -> str:
        # Every call's key is made here first: the function's code, and its defaults if it
        # has any, are compared with those the binder and identity were made for (see
        # ``renew``). Defaults given to a function that had none change no call that
        # bound before: a call that needs them fails to bind, and is checked then.
        watched = self.watched
        if (watched.__code__ is not self.code
                or (self.defaults is not None and watched.__defaults__ is not self.defaults)
                or (self.kwdefaults is not None
                    and watched.__kwdefaults__ is not self.kwdefaults)):
            self.renew()
        try:
            values = self.binder(*args, **kwargs)
        except TypeError:
            if not _reassigned(watched, (self.code, self.defaults, self.kwdefaults)):
                own = self._own_binder()
                if own is None:
                    raise
                return self._own_key(own, args, kwargs)
            self.renew()  # reassigned by another thread since the look above
            bound = self._bound_again(args, kwargs)
            if isinstance(bound, str):
                return bound
            values = bound
        for value in values:  # a loop: cheaper than a set operation for a few arguments
            if type(value) not in _PLAIN:
                return self.make_key(values)
        # The usual call, of ints, strs and the like: its key may be remembered.
        key = self.known.get(values)
        if key is None:
            key = self.make_key(values)
            for value in values:
                # ``__sizeof__``, not ``sys.getsizeof``: the same for these types (none has
                # a GC header), without its argument parsing, which cost a miss a frame.
                if value.__sizeof__() > _KNOWN_SIZE:
                    return key
            known = self.known
            if len(known) >= _KNOWN:
                known.clear()  # atomic, unlike evicting one while another thread adds
            known[values] = key
        return key

    def _bound_again(self, args: _Args, kwargs: dict[str, Any]) -> _Args | str:
        """A call's values by the binder made again for the code and defaults another thread
        reassigned as the call was bound (the binder of before raised TypeError), or its
        key if only the decorator's own signature binds it (``_own_binder``). Before, the
        wrapped function's signature was asked again alone: ``f(3, verbose=True)`` raised
        its TypeError ("unexpected keyword argument 'verbose'")."""
        try:
            return self.binder(*args, **kwargs)
        except TypeError:
            own = self._own_binder()
            if own is None:
                raise
        return self._own_key(own, args, kwargs)

    def _own_binder(self) -> Callable[..., _Args] | None:
        """The binder of the signature of the decorator ``functools.wraps`` made, where it
        has parameters of its own (``def wrapper(*args, verbose=False, **kwargs)``,
        ``def wrapper(x, scale=1)``): calls are bound by the wrapped function's signature,
        the one ``inspect.signature`` follows, and one it rejects but the wrapper takes
        (``f(1, verbose=True)``) is bound by this. Before, memojar raised the wrapped
        function's TypeError for a call that runs without it (joblib raises too; lru_cache,
        diskcache and cachier call it). A ``(*args, **kwargs)`` wrapper, or one that is not
        a function (wrapt's, ``lru_cache``'s), whose signature is not known, keys such a
        call as it was given (it may complete the call itself, ``fn(*args, db=DB,
        **kwargs)``: before, the wrapped function's TypeError, "missing 1 required
        argument"). With the arguments bound to the function in front (a partial, a bound
        method). None where that does not apply: no such wrapper, the same signature,
        ``key=`` (which takes the wrapped function's arguments) or ``files=``. Made once for
        the wrapper's code and defaults as they are (off the hit path: only calls the other
        binder rejects)."""
        target = self.target
        if self.custom_key is not None or self.files:
            return None
        if type(target) is not FunctionType:
            if attribute(target, "__wrapped__") is None:
                return None
            return self._with_bound(raw_binder)
        made = self.own
        if made is not None and not _reassigned(target, made[0]):
            return made[1]
        # What it is made for is read before it is made: code or defaults reassigned by
        # another thread meanwhile are then seen by the next call, which makes it again
        # (read after, they were taken as seen, and the old defaults applied for good).
        seen = _as_it_is(target)
        binder: Callable[..., _Args] | None = None
        own = _own_signature(target)
        if own is not None:
            ignore = tuple(name for name in self.ignore if name in own.parameters
                           and name not in self.kept)
            binder = self._with_bound(make_binder(_without_wrapped(target), ignore))
        elif _passes_through(target):
            binder = self._with_bound(raw_binder)
        self.own = (seen, binder)
        return binder

    def _with_bound(self, binder: Callable[..., _Args]) -> Callable[..., _Args]:
        """``binder`` with the arguments bound to the function (a partial's, a bound
        method's instance) in front, as ``_make_binder`` puts them."""
        bound_args, bound_kwargs = split(self.func)[1:]
        if bound_args or bound_kwargs:
            return prebound(binder, bound_args, bound_kwargs)
        return binder

    def _own_key(self, own: Callable[..., _Args], args: _Args,
                 kwargs: dict[str, Any]) -> str:
        """The key of a call bound by the decorator's own signature (``_own_binder``):
        hashed with another seed, so that it never shares a key with a call bound by the
        wrapped function's signature, and never remembered in ``known`` (whose keys are of
        those)."""
        try:
            values = own(*args, **kwargs)
        except TypeError as exc:  # a call neither signature takes: the wrapper's own error
            raise exc from None  # (not shown as raised while handling the other's)
        try:
            return make_key(values, self.seed ^ _OWN_SIGNATURE_SEED)
        except Exception as exc:
            if changed_during_iteration(exc):  # by another thread (``make_key``)
                return self._keyed_again(values, self.seed ^ _OWN_SIGNATURE_SEED, exc)
            self.make_key(values)  # raises what these values raise, named (``make_key``)
            raise

    def make_key(self, values: _Args) -> str:
        try:
            return make_key(values, self.seed)
        # Any exception of pickling: a value that cannot be pickled may raise anything from
        # its __reduce__ (ctypes pointers raise ValueError, a closed handle its own error).
        except Exception as exc:
            if isinstance(exc, RecursionError) and (_near_recursion_limit()
                                                   or key_reentered(exc)):
                raise  # the caller's own recursion ran out of stack, not a deep argument
            if isinstance(exc, MemoryError) or the_callers(exc):
                raise  # out of memory, or the caller's signal handler's (a TimeoutError)
            if changed_during_iteration(exc):
                return self._keyed_again(values, self.seed, exc)
            raise self._unpicklable(values, exc) from exc

    def _keyed_again(self, values: _Args, seed: int, exc: BaseException) -> str:
        """The key of arguments one of which another thread changed while it was read for
        the key ("dictionary changed size during iteration"), made again as they are now.
        Before, the call raised TypeError ("cannot be pickled ...; use ignore= or key=",
        and ignore= would have given every value of it one result).

        ``exc`` is let go of as this returns or raises: a change met again is kept in it, and
        its traceback holds this frame, a cycle holding the arguments (and the frames of
        the call) until the collector ran."""
        try:
            for _ in range(_KEY_TRIES):
                try:
                    return make_key(values, seed)
                except RuntimeError as again:
                    if not changed_during_iteration(again):
                        raise
                    exc = again
            qualname = getattr(self.target, "__qualname__", self.name)
            raise RuntimeError(
                f"an argument of {qualname} changed in another thread while its cache key "
                f"was made, {_KEY_TRIES + 1} times running ({type(exc).__name__}: {exc}); "
                "change it under a lock that the call also holds, or pass a copy") from exc
        finally:
            del exc

    def get(self, key: str, call: _Args | None = None) -> Any:
        """The stored value for ``key``, or MISSING. Never raises for a bad entry.

        ``call`` (the call's arguments, with ``stale_while_revalidate``): an entry expired
        less than that long ago is returned, and recomputed in the background."""
        data = self.store.read(self.name, key)
        if data is None:
            return MISSING
        try:
            value, saved = self.reader(data, key)
        except Miss as miss:
            _callers_again(miss)
            cause = miss.__cause__
            if call is not None and miss.reason == "stale":
                value = self._stale(key, data, call)
                if value is not MISSING:
                    return value
            if not isinstance(cause, _NOT_THE_ENTRY):
                self.discard(key, miss.reason, data)
            else:  # kept for a process that can load it: not used by this one
                self.store.unstamp(self.name, key)
            _let_go(miss)
            return MISSING
        self.tally.saved += saved
        if logger.isEnabledFor(DEBUG):
            logger.debug("hit %s %s (%d bytes, saved %.3f s)", self.name, key, len(data),
                         saved)
        return value

    def reader(self, data: Any, key: str) -> tuple[Any, float]:
        """The entry's value and compute time (``_entry.make_reader``), or ``Miss``.

        The first call makes the reader for this function's ident and keeps it in the
        instance, where every later call finds it before this method; unless a ``renew``
        of another thread's call (for code reassigned) took the identity away meanwhile:
        this call's read is made for the identity it began with, and the next call makes
        the reader for the new one. Before, the reader of the old code was kept, and every
        call after the renew returned what the old code had stored."""
        ident = self.ident
        reader = _entry.make_reader(ident, self.ttl, self.secret,
                                    _depends.changed_result_class, _clock)
        with _MadeOnce.lock:  # as ``_unmake``: none taken away between the look and the set
            if self.__dict__.get("ident") is ident:
                self.reader = reader  # type: ignore[method-assign,assignment]
        return reader(data, key)

    def _stale(self, key: str, data: Any, call: _Args) -> Any:
        """The value of an entry expired less than ``swr`` seconds ago, or MISSING; a
        recomputation of it starts in the background (one per key in this process; the
        key's lock, tried without waiting, makes it one across processes)."""
        try:
            # An entry expired less than ``swr`` seconds ago passes (one created ahead of
            # this clock does not: its age is unknown).
            payload, buffers = _entry.verify(data, self.ident, key.encode(), time.time(),
                                             self.ttl, self.secret,
                                             _depends.changed_result_class,
                                             grace=self.swr or 0.0)
            value = _entry.load(payload, buffers)
        except Miss as miss:
            _callers_again(miss)  # (before, a deadline there: recomputed past it)
            _let_go(miss)
            return MISSING
        # Read first, then added in one statement: ``+=`` loads the sum before it evaluates
        # its right side, and another thread runs at a call (this read) and added its hit's
        # time meanwhile, which the sum written back lost. With no call in between, none
        # runs there (the GIL switches threads at calls and backward jumps).
        saved = _compute_time(data, _COMPUTE_TIME_AT)[0]
        self.tally.saved += saved
        with self.revalidating_lock:
            if key in self.revalidating:
                return value
            self.revalidating.add(key)
        try:
            if len(call) == 3:  # a coroutine function: a task on the caller's loop
                args, kwargs, loop = call
                queued = [key]  # until the loop runs the callback (``_spawn_task``)
                handle = loop.call_soon_threadsafe(self._spawn_task, loop, key, args, kwargs,
                                                   queued)
                _unless_run(handle, self._unqueued, queued)
            elif not start_thread(threading.Thread(
                    target=self._revalidate, args=(key, *call), daemon=True,
                    name=f"memojar-revalidate-{self.name}")):
                # No thread can start (``start_thread``): the stale value is still the
                # call's (before: the call raised the RuntimeError); a later call tries
                # again.
                self._revalidated(key)
                return value
        except BaseException:
            self._revalidated(key)
            raise
        logger.debug("stale %s %s: served, recomputing in the background", self.name, key)
        return value

    def _revalidated(self, key: str) -> None:
        with self.revalidating_lock:
            self.revalidating.discard(key)

    def _revalidate(self, key: str, args: _Args, kwargs: dict[str, Any]) -> None:
        """Recompute a stale entry in a background thread, if no one else is doing it.

        The key is marked held by this thread and its lock noted (as ``compute`` does): the
        function calling itself with the key computes at once, and a lock-order cycle
        through it is seen at once. Before, such a call (made once the window had ended)
        waited ``lock_timeout`` for the lock its own thread held."""
        here = (self.store.location, self.name, key)
        taken: list[Any] = []
        try:
            _held.set((here,))  # a thread of its own: nothing held before
            lock = self.store.lock(self.name, key)
            taken.append(lock)
            if not lock.acquire(blocking=False):
                return  # another thread or process recomputes it
            taken.append(_waits.owner())
            _waits.hold(here, taken)
            if not self.contains(key):  # not recomputed by another caller meanwhile
                start = self._started(key, (args, kwargs))
                value = self.func(*args, **kwargs)
                if (not self._arguments_changed(key, args, kwargs)
                        and not self._computed(key, value, start, (args, kwargs))):
                    self._unreplaced(key)
        except Exception:  # noqa: BLE001 - whatever the function raised: logged, not lost
            logger.warning("background recomputation of %s %s failed; the stale value is "
                           "served until its window ends", self.name, key, exc_info=True)
        finally:
            try:
                if taken:
                    _waits.let_go(here, taken)
                    taken[0].release()  # a lock not held: nothing to do
            finally:
                _held.set(())
                self._revalidated(key)

    def _arguments_changed(self, key: str, args: _Args, kwargs: dict[str, Any]) -> bool:
        """Whether a background recomputation's arguments no longer make ``key``: they are
        the caller's own objects, which it went on with (a list appended to, a frame given
        a column) while the stale value was served. Its value is then not stored (before,
        a value of the changed arguments was stored under the key of the old ones). A
        ``files=`` function's ``_computed`` checks the key itself (and warns of a file)."""
        if self.files:
            return False
        try:
            changed = self.key_of(args, kwargs) != key
        except Exception:  # noqa: BLE001 - an argument that cannot be keyed any more
            changed = True
        if changed:
            self._ran()
            self.miss_count.bump()
            logger.debug("not stored %s %s (its arguments changed while it was recomputed "
                         "in the background)", self.name, key)
        return changed

    def _unqueued(self, queued: list[str]) -> None:
        """The callback starting a recomputation (``_spawn_task``) was dropped unrun: its
        loop was closed first (a remote store's stale hit, read in a worker thread while the
        caller gave up and the loop stopped). Its key is let go; before, it stayed marked
        as being recomputed for the process's life."""
        for key in queued:
            self._revalidated(key)

    def _spawn_task(self, loop: Any, key: str, args: _Args, kwargs: dict[str, Any],
                    queued: list[str]) -> None:
        queued.clear()  # run: the key is this callback's to let go (``_unqueued``)
        unstarted: list[Any] = []  # the task's coroutine until its first step
        task = None
        try:
            unstarted.append(self._arevalidate(key, args, kwargs, unstarted))
            task = loop.create_task(unstarted[0])
            # The key is let go when the task is done, not in its body: a task cancelled
            # before its first step (its loop ended at once: ``asyncio.run`` cancels the
            # tasks left) never runs its body, and the key stayed marked, never recomputed
            # in the background again by this process. Or when the task is collected
            # unfinished (its loop closed under it, ``_keep_alive``): it is never done.
            revalidated = weakref.finalize(task, self._abandoned, key, unstarted)
            task.add_done_callback(lambda _: revalidated())
            _keep_alive(loop, task)
        except BaseException:
            if task is None:
                self._abandoned(key, unstarted)
            else:
                # Interrupted once the task was made (a Ctrl-C in this callback), before its
                # end was sure to be reported: the key is let go now, and an asyncio task,
                # not started yet, cancelled (its body never runs). Before, the key stayed
                # marked for the process's life. (A trio task runs: the key's lock, tried
                # without waiting, keeps the recomputation one.)
                self._revalidated(key)
                cancel = getattr(task, "cancel", None)
                if cancel is not None:
                    cancel()
            raise

    def _abandoned(self, key: str, unstarted: list[Any]) -> None:
        """A background recomputation's task is done or was collected: the key is let go.
        A coroutine never started (its loop closed before the task's first step) is closed
        here, not reported by Python as "never awaited": the caller's code awaited its own
        call, and memojar's task was the one left."""
        for coroutine in unstarted:
            coroutine.close()
        self._revalidated(key)

    async def _arevalidate(self, key: str, args: _Args, kwargs: dict[str, Any],
                           unstarted: list[Any]) -> None:
        """``_revalidate`` for coroutine functions, as a task on the caller's loop."""
        unstarted.clear()  # started: a started coroutine is closed by the collector
        run = _in_thread if self.store.remote else _inline
        taken: list[Any] = []  # as in ``acompute``: released whatever interrupts this
        here = (self.store.location, self.name, key)
        try:
            _held.set((here,))  # the task's own context; marked and noted as in ``_revalidate``
            lock = await run(self.store.lock, self.name, key)
            taken.append(lock)
            if not await run(lock.acquire, False, undo=lock.release):
                return
            taken.append(_waits.owner())
            _waits.hold(here, taken)
            if not await run(self.contains, key):
                start = self._started(key, (args, kwargs))
                value = await self.func(*args, **kwargs)
                if (not self._arguments_changed(key, args, kwargs)
                        and not await run(self._computed, key, value, start, (args, kwargs),
                                          finish=True)):
                    await run(self._unreplaced, key, finish=True)
        except Exception:  # noqa: BLE001 - whatever the function raised: logged, not lost
            logger.warning("background recomputation of %s %s failed; the stale value is "
                           "served until its window ends", self.name, key, exc_info=True)
        finally:
            # Closed unfinished (its loop closed under it: ``release_abandoned``, or the
            # collector), its task never ends: the key is let go here too.
            closed = sys.exc_info()[0] is GeneratorExit
            try:
                if taken:
                    _waits.let_go(here, taken)
                    if self.store.remote:
                        await run(taken[0].release, finish=True)
                    else:
                        try:
                            taken[0].release()  # a lock not held: nothing to do
                        except BaseException:  # interrupted inside: once more (idempotent)
                            taken[0].release()
                            raise
            finally:
                if closed:
                    self._revalidated(key)

    # --- the memory tier ------------------------------------------------------------

    def start_memory(self) -> bool:
        """Map the store's generation stamp; False (no memory tier) if the store keeps none."""
        stamp = self.store.generation(self.name)
        if stamp is None:
            why = self.store.no_stamp_why() or (
                "a cache on a server has none: every call reads the server"
                if self.store.remote else
                "a folder's is made with a hard link: a file system without them, such "
                "as FAT, has none; memojar's DEBUG log line says why")
            warn(f"memory= of {self.name} is not used: the cache at {self.store.location} "
                 f"keeps no generation stamp to notice another process's clear ({why})")
            return False
        self.generation = memoryview(stamp).cast("Q")  # one 8-byte read per call
        self.stamp = self.generation[0]
        return True

    def restamp(self) -> None:
        """Map the store's stamp again if its file was removed (``restamp_all``): another
        process's clear, refresh or cache_set after the cache directory was removed under
        this one went to a new stamp, which the old mapping never saw, so its memory tier
        returned what it held for ever. The wrapper reads ``generation`` at each call: a
        new view that differs from ``stamp`` makes it forget."""
        if self.simple is None or self.generation is None:  # no memory tier wrapper
            return
        view = self.store.restamp(self.name)
        if view is not None:
            self.generation = memoryview(view).cast("Q")

    def forget(self) -> None:
        """Drop every result held in memory: the store's stamp changed."""
        with self.revalidating_lock:
            self.recent.clear()
            self.stamp = self.generation[0]

    def fill(self, mkey: Any, args: _Args, kwargs: dict[str, Any]) -> Any:
        """A call the memory tier does not hold: from the store (or computed), then held
        with its entry's expiry, unless the stamp changed meanwhile. ``mkey``: the call's
        disk key, or its plain arguments."""
        stamp = self.generation[0]
        key = mkey if type(mkey) is str else self.key_of(args, kwargs)
        # A value read or computed for the code of before a renew (another thread's
        # reassignment) is not held: the stamp alone does not tell, as the next call's
        # ``forget`` sets it back.
        renewals = self.renewals
        value, expires, took, classes, born = self.get_expiring(key, (args, kwargs))
        if value is MISSING:
            start, began = time.perf_counter(), time.time()
            withheld: list[bool] = []
            value = self.compute(key, args, kwargs, withheld=withheld)
            if withheld:  # not kept on disk for this key, or read with an expiry unknown here
                return value
            took = time.perf_counter() - start
            # Counted from before the call, as the entry's creation (taken before its value
            # is pickled and written) is: from after, the value was held past its entry's
            # expiry by the time pickling and writing it took. Held a little less instead
            # (the compute time); the next call then reads the entry, with its own expiry.
            expires = began + self.ttl if self.ttl is not None else math.inf
            born = began
        else:
            self.hit_count.bump()
        # A call of no arguments of a function whose calls are all keyed (``simple`` empty:
        # a default the function may change in place, a bound instance, key=) has no value
        # the wrapper's loop sees, so it is looked up by ``()``: such a value is not held,
        # and each call reads its entry under the key of the default or instance as it is
        # then. Before, ``f()`` appending to its default list ``x=[]`` returned its first
        # value from memory at every call (joblib's test_argument_change); the check is here,
        # not in the wrapper, so that a memory hit costs what it did.
        with self.revalidating_lock:
            now = time.time()
            # A busy stamp: another process is changing the entries, and what was read may
            # be what it replaces; held once the change has ended.
            if (self.holding and stamp == self.stamp == self.generation[0]
                    and not stamp_busy(stamp) and renewals == self.renewals and expires > now
                    and (type(mkey) is str or self.simple)
                    and (expires == math.inf or now >= born - CLOCK_SKEW)):
                # Held from now on: a clock set back past it cannot tell the value's age.
                # Not held if it was set back since the value's age began (while the
                # function ran, or since its entry was read): its expiry, counted from
                # then, is later than its entry's (before, held up to the step past it).
                since = now - CLOCK_SKEW if expires != math.inf else -math.inf
                self.recent[mkey] = (value, expires, took, since, classes)
                if len(self.recent) > cast("int", self.memory):  # set: fill needs memory=
                    self.recent.popitem(last=False)
        return value

    def get_expiring(self, key: str,
                     call: _Args) -> tuple[Any, float, float, str | None, float]:
        """``get``, and when the value's entry expires (``inf``: never; 0 for a stale
        value served while it is recomputed, which is not held), the result classes its
        entry names (``""``: none; None for a computed value), and when it was created."""
        data = self.store.read(self.name, key)
        if data is None:
            return MISSING, 0.0, 0.0, None, 0.0
        try:
            payload, buffers = _entry.verify(
                data, self.ident, key.encode(), time.time(), self.ttl, self.secret,
                _depends.changed_result_class,
            )
            header = _entry.read_header(data)  # its checks before anything is unpickled
            value = _entry.load(payload, buffers)
        except Miss as miss:
            _callers_again(miss)
            cause = miss.__cause__
            if self.swr is not None and miss.reason == "stale":
                value = self._stale(key, data, call)
                if value is not MISSING:
                    return value, 0.0, 0.0, None, 0.0
            if not isinstance(cause, _NOT_THE_ENTRY):
                self.discard(key, miss.reason, data)
            else:  # kept (see ``get``)
                self.store.unstamp(self.name, key)
            _let_go(miss)
            return MISSING, 0.0, 0.0, None, 0.0
        expires = math.inf if header.expires is None else header.expires
        if self.ttl is not None:
            expires = min(expires, header.created + self.ttl)
        logger.debug("hit %s %s (%d bytes, saved %.3f s)", self.name, key, len(data),
                     header.compute_time)
        self.tally.saved += header.compute_time
        return value, expires, header.compute_time, header.classes, header.created

    def replaced(self) -> None:
        """An entry was replaced (refresh, cache_set): memory tiers of every process forget,
        as equal calls spelled differently may be held apart. Also from a process without
        a memory tier of its own (``memory=`` unset, ``MEMOJAR_DISABLE``): others may hold
        the old value (the stamp is bumped if any process made one: a failed ``open``
        if none did)."""
        try:
            self.store.bump(self.name)
        except OSError as exc:
            logger.debug("cannot bump the generation of %s: %s", self.name, exc)

    # --- the miss path --------------------------------------------------------------

    def compute(self, key: str, args: _Args, kwargs: dict[str, Any], force: bool = False,
                withheld: list[bool] | None = None) -> Any:
        """Compute under the key's lock, unless another caller stored the value meanwhile.

        A call made while this thread already holds the key's lock (the function calling
        itself with the same key) computes at once, as it would without the cache.
        ``withheld`` gets a ``True`` if the value computed must not be kept for the key (see
        ``_computed``): the memory tier then does not hold it either. So too for a value
        another caller stored meanwhile, read here: its entry's expiry (the writer's ``ttl``
        decides it too) is not known to the memory tier, which reads it at the next call.
        """
        held = _held.get()
        store = self.store
        here = (store.location, self.name, key)
        if here in held:
            return self._compute(key, args, kwargs, withheld, force)
        # An interrupt (KeyboardInterrupt, a signal handler's exception) may land between
        # any two calls, also between a call's return and the assignment of its result:
        # the lock is known by ``taken`` as soon as it is made, and ``_held`` is set back
        # to its value from before (by ``mark``, or, if the mark's token was lost so, by
        # ``held``), so neither is ever left held.
        # The key is marked held before its lock is taken: a signal handler calling the
        # function with this key runs in this thread, and if it ran just as the lock was
        # taken (a signal that arrived during the ``fcntl``) and found the key unmarked, it
        # waited ``lock_timeout`` for the lock its own thread held. Marked, it computes at
        # once, as a function calling itself does.
        taken: list[Any] = []
        mark = None
        try:
            mark = _held.set((*held, here))
            # ``_lock``'s usual case, inline (a frame less a miss): the key is free.
            try:
                lock = store.lock(self.name, key)
                taken.append(lock)
                free = lock.acquire(False)
            except OSError as exc:  # as in ``_lock``: the store's own error costs the lock
                if taken:
                    taken[0].release()
                if exc.errno is None:  # not a system call's: the caller's (a signal handler's)
                    raise
                self._cannot_lock(key, exc)
                free = None
            if free:  # noted held (before: an interrupt leaves no note), by its owner
                # (``_waits.owner``: with neither asyncio nor trio imported, the thread;
                # inline. trio does not import asyncio: a trio task's, else)
                taken.append(_thread() if "asyncio" not in _MODULES
                             and "trio" not in _MODULES else _waits.owner())
                _HOLDER[here] = taken  # ``_waits.hold``, inline
                value = MISSING
            elif free is None:
                value = MISSING
            else:  # held by another caller: wait (``_lock``, from its pause)
                value = self._lock(key, taken, not force, lock=lock)
                if value is UNLOCKED:  # the store's fault, while waiting
                    free, value = None, MISSING
            if value is UNSTORED:  # computed and not stored by the caller it waited for
                return self._compute(key, args, kwargs, withheld, force)
            if value is not MISSING:  # stored by the holder while this caller waited
                return self._read_meanwhile(value, withheld)
            # ``_stored_meanwhile``, inline (a frame less a miss); also after a timeout.
            # Not when the lock could not be asked (``free`` None, the store's fault): the
            # read just missed, and a server whose lock timed out times this read out too
            # (one paused for writes answers it, with nothing stored since); before, a
            # server frozen at the lock cost its call two timeouts once reads went on
            # past a write's timeout (``Breaker.trip``'s ``writes``).
            if not force and free is not None and store.maybe_stored(self.name, key):
                value = self.get(key)
                if value is not MISSING:
                    self.hit_count.bump()
                    return self._read_meanwhile(value, withheld)
            return self._compute(key, args, kwargs, withheld, force)
        finally:
            try:
                # Inline, not a helper: an interrupt at a helper's start would escape the try.
                if taken:
                    try:
                        # its holder, noted for waiters (``_waits.let_go``, inline)
                        if len(taken) > 1 and _HOLDER.get(here) is taken:
                            del _HOLDER[here]
                        taken[0].release()  # a lock not held (a timeout): nothing to do
                    except BaseException:  # interrupted inside: once more (idempotent)
                        taken[0].release()
                        if len(taken) > 1:  # released first: never left held for this
                            _waits.let_go(here, taken)
                        raise
            finally:
                if mark is None:
                    _held.set(held)
                else:
                    _held.reset(mark)

    @staticmethod
    def _read_meanwhile(value: Any, withheld: list[bool] | None) -> Any:
        """A value another caller stored meanwhile, read by ``compute``: not for the memory
        tier to hold (``withheld``), as it does not know when its entry expires."""
        if withheld is not None:
            withheld.append(True)
        return value

    def _compute(self, key: str, args: _Args, kwargs: dict[str, Any],
                 withheld: list[bool] | None = None, replacing: bool = False) -> Any:
        # ``_started`` and ``_computed``, inline (two frames less a miss, and no start tuple
        # made and taken apart), with ``isEnabledFor`` asked once and passed on to ``put``
        # (a call less): keep the three alike.
        debug = logger.isEnabledFor(DEBUG)
        if debug:
            logger.debug("miss %s %s", self.name, key)
        marked = _notebook.cells_marked  # before the code check (``_crossed``)
        watched = self.watched  # ``_reassigned``, inline: a frame less a miss
        loaded = self.loaded()
        if (watched.__code__ is not self.code or watched.__defaults__ is not self.defaults
                or watched.__kwdefaults__ is not self.kwdefaults or self.kwchanged()
                or reloaded(loaded) or (self.resolved is not None and self.rebound())):
            # reassigned since this call's key_of, a module reloaded, or (in IPython, where
            # records are kept) a helper or constant bound again since the identity was
            # made, in this cell: the value computed now is of the new ones
            self.renew()
            loaded = self.loaded()
            rekey = True
        else:
            rekey = self.rekeying
        began = time.perf_counter()
        code, defaults, kwdefaults = self.code, self.defaults, self.kwdefaults
        kwchanged = self.kwchanged
        if rekey and self._rekeyed(key, args, kwargs):  # (after the code and defaults read)
            code = None  # not stored, as if reassigned while it ran (no code is None)
        ident = self.ident
        if self.__dict__.get("ident") is not ident:  # made for this call only (``_MadeOnce``)
            code = None
        if loaded is UNWALKED:  # read before the identity's walk, which noted them now
            loaded = self.loaded()
        files = self._files_state((args, kwargs)) if self.files else None
        try:
            value = self.func(*args, **kwargs)
        except BaseException:  # it ran, part way: the globals it bound are its own still
            self._ran(marked)
            # A miss as any (lru_cache, diskcache and cachier count it): before, hits and
            # misses did not add up to the calls made once one had raised.
            self.miss_count.bump()
            raise
        self.miss_count.bump()
        elapsed = time.perf_counter() - began
        if self.resolved:
            _notebook.ran(self.resolved, marked)
        watched = self.watched
        if (watched.__code__ is not code or watched.__defaults__ is not defaults
                or watched.__kwdefaults__ is not kwdefaults or kwchanged()):
            logger.debug("not stored %s %s (its code or defaults were reassigned while it "
                         "ran)", self.name, key)
            stored = self._unstored(key)
        elif reloaded(loaded):
            logger.debug("not stored %s %s (a module it depends on was reloaded while it "
                         "ran)", self.name, key)
            stored = self._unstored(key)
        elif (((self.resolved is not None or _notebook.cells_marked != marked)
               and self._crossed(key, ident, marked))
              or (self.files and self._files_changed(key, (args, kwargs), files))):
            stored = self._unstored(key)
        elif elapsed < self.min_compute_time:
            logger.debug("not stored %s %s (computed in %.3f s, under min_compute_time)",
                         self.name, key, elapsed)
            stored = self._unstored(key)
        else:
            stored = self.put(key, value, elapsed, ident, False, debug) or self._unstored(key)
        if not stored:
            if withheld is not None:
                withheld.append(True)
            if replacing:  # a refresh: its entry is not the old value's either
                self._unreplaced(key)
        return value

    async def acompute(
        self, key: str, args: _Args, kwargs: dict[str, Any], force: bool = False
    ) -> Any:
        """``compute`` for coroutine functions: waits for the lock without blocking the loop,
        and calls a remote store from a worker thread (``run``), where the warnings of the
        store's faults point at the line that awaited this call (found now: the worker's
        stack holds none of its frames)."""
        run = _at_site_in_thread(user_site()) if self.store.remote else _inline
        held = _held.get()
        here = (self.store.location, self.name, key)
        if here in held:  # the coroutine awaits itself with the same key
            return await self._acompute(key, args, kwargs, run, force)
        # As in ``compute``: an interrupt (a KeyboardInterrupt in a notebook's running
        # cell) may land between any two calls, so the lock is known by ``taken`` as soon
        # as it is made and is released, twice if interrupted inside, inline; ``_held`` loses
        # this call's mark again (``_unmarked``). A cancellation lands only at an ``await``.
        taken: list[Any] = []
        try:
            value = await self._alock(key, run, taken, not force)
            if value is UNSTORED:  # computed and not stored by the caller it waited for
                return await self._acompute(key, args, kwargs, run, force)
            # (not read again when the lock could not be asked: as ``compute``)
            unlocked = value is UNLOCKED
            if value is not MISSING and not unlocked:  # stored by the holder meanwhile
                return value
            _held.set((*held, here))
            value = (MISSING if force or unlocked
                     else await run(self._stored_meanwhile, key))
            if value is MISSING:
                value = await self._acompute(key, args, kwargs, run, force)
            return value
        finally:
            try:
                if taken:
                    if self.store.remote:  # given back even if cancelled meanwhile
                        try:
                            if len(taken) > 1:  # its holder, noted for waiters (``_waits``)
                                _waits.let_go(here, taken)
                        finally:
                            await run(taken[0].release, finish=True)
                    else:
                        try:
                            if len(taken) > 1:  # as in ``compute``
                                _waits.let_go(here, taken)
                            taken[0].release()  # a lock not held (a timeout): nothing to do
                        except BaseException:  # interrupted inside: once more (idempotent)
                            taken[0].release()
                            if len(taken) > 1:
                                _waits.let_go(here, taken)
                            raise
            finally:
                # This call's mark taken out, not the marks of its start set back: calls
                # driven by no loop memojar knows may share a context (curio's tasks, a
                # test's ``coro.send``) and end in another order than they started. Before,
                # the one ending last set back the other's mark: later calls of that key in
                # the context computed at once, without its lock (``here in held``).
                _held.set(_unmarked(_held.get(), here))

    async def _acompute(self, key: str, args: _Args, kwargs: dict[str, Any], run: Any,
                        replacing: bool = False) -> Any:
        start = self._started(key, (args, kwargs))
        try:
            value = await self.func(*args, **kwargs)
        except BaseException:  # as in ``_compute``
            self._ran(start[-1])
            self.miss_count.bump()
            raise
        # Stored even if the caller is cancelled meanwhile: the value is not lost, and the
        # lock is given back only once it is stored (the next caller then reads it).
        if (not await run(self._computed, key, value, start, (args, kwargs), finish=True)
                and replacing):  # a refresh (as in ``_compute``)
            await run(self._unreplaced, key, finish=True)
        return value

    def _lock(self, key: str, taken: list[Any] | None = None, read: bool = False,
              then: str = _COMPUTING_HERE, lock: KeyLock | None = None) -> Any:
        """Take the key's lock, unless the store cannot lock right now (a read-only or
        vanished directory) or another caller held it past ``lock_timeout``: the value is
        then computed without it. MISSING (UNLOCKED where the store could not be asked),
        or with ``read`` the value the lock's holder stored while this caller waited, read
        without taking the lock.

        Only the store's own errors (an ``OSError`` with an errno) are caught; anything else
        raised while waiting, such as the ``TimeoutError`` of the caller's ``SIGALRM``
        handler, propagates with the lock not held. ``taken`` gets the lock as soon as it
        is made, before it is acquired: the caller releases it (a no-op if it is not held)
        even if an interrupt loses this method's return value; then, once the lock is held,
        its holder (``_waits.owner``), which the caller forgets (``_waits.let_go``) before
        it releases the lock.

        A wait that would close a lock-order cycle (the lock's holder waits, directly or
        through others, for a lock this caller holds: ``_waits`` in this process,
        ``_Across`` between processes where the store's locks can say) is not
        made: the value is computed without the lock at once, with a warning, as after
        ``lock_timeout``.

        ``lock``: the key's lock, made (and put in ``taken``) and tried once already by the
        caller (``compute``, which makes the usual case inline): this waits for it.
        """
        here = (self.store.location, self.name, key)
        try:
            if lock is None:
                lock = self.store.lock(self.name, key)
                if taken is not None:
                    taken.append(lock)
                # The usual case first, one try: the key is free, and no deadline is computed.
                if lock.acquire(False):
                    if taken is not None:  # noted held (before: an interrupt leaves no note)
                        taken.append(_waits.owner())
                        _HOLDER[here] = taken  # ``_waits.hold``, inline
                    return MISSING
            # Held by another caller: wait (from a pause: that try was made), and with
            # ``read`` look for its value before each later try, so that once it is stored
            # every waiter reads it at once, none taking the lock in turn to read it.
            # Not by a signal handler's call made while its thread holds one of the store's
            # own locks (the size ledger's): the holder may be waiting for that lock to
            # store its value. Before, both waited 60 s, and every writer with max_size.
            own = self.store.held_here()
            if own is not None:
                warn(f"{self.name} {key} in {self.store.location} is being computed by "
                     f"another caller, while this thread holds {own} (a signal handler's "
                     f"call): waiting could last until its timeout; {then}.")
                return MISSING
            who = _waits.owner()
            before = _waits.waits_for(who)
            ends: list[Callable[[], None]] = []  # of the notes of this wait for other processes
            try:
                cycle = _waits.wait(here, who)
                if cycle is not None:
                    self._cycle(key, cycle, then)
                    return MISSING
                stalled = _waits.stalled(here, True)
                if stalled is not None:
                    self._stalled(key, stalled, then)
                    return MISSING
                holding = self._holding(here, who)
                across = _Across(lock, here, holding, ends) if holding else None
                cycle = across.look() if across is not None else None
                if cycle is not None:
                    self._cycle(key, cycle, then, "another process")
                    return MISSING
                found: list[Any] = []
                look = (functools.partial(self._look, key, found, time.monotonic()) if read
                        else None)
                if across is not None and ends:  # looked at again while it waits
                    look = functools.partial(across.meanwhile, look)
                why: list[str] = []  # the holder stalled since the wait started
                look = functools.partial(_waits.stalled_meanwhile, here, True, why, look)
                if lock.acquire_within(self.lock_timeout, True, look):
                    if taken is not None:
                        taken.append(who)
                        _waits.hold(here, taken)
                    return MISSING
                if why:
                    self._stalled(key, why[0], then)
                    return MISSING
                if across is not None and across.cycle is not None:
                    self._cycle(key, across.cycle, then, "another process")
                    return MISSING
            finally:
                try:
                    if ends:
                        _end_all(ends)
                except BaseException:  # an interrupt as it started: once more
                    _end_all(ends)
                    raise
                finally:
                    _waits.done(who, before)
            if found:
                return found[0]
        except OSError as exc:
            if lock is not None:
                lock.release()
            if exc.errno is None:  # not a system call's: the caller's (a signal handler's)
                raise
            self._cannot_lock(key, exc)
            return UNLOCKED
        except BaseException:
            if lock is not None:
                lock.release()  # taken just before the exception, perhaps: never leak it
            raise
        self._waited_too_long(key, self.lock_timeout, then)
        return MISSING

    def _look(self, key: str, found: list[Any], since: float) -> bool:
        """While waiting (since ``since``) for the key's lock: True, and in ``found`` the
        value its holder stored, or ``UNSTORED`` if a call of this process computed it
        meanwhile and did not store it."""
        if self.unstored.get(key, since) > since:
            found.append(UNSTORED)
            return True
        value = self._stored_meanwhile(key)
        if value is MISSING:
            return False
        found.append(value)
        return True

    async def _alock(self, key: str, run: Any, taken: list[Any], read: bool) -> Any:
        """``_lock`` for coroutines: polls (``KeyLock.poll``), so the event loop keeps
        running meanwhile. ``taken`` gets the lock as soon as it is made, for the caller to
        release."""
        timeout = self.lock_timeout
        deadline = time.monotonic() + timeout
        lock = None
        here = (self.store.location, self.name, key)
        try:
            lock = self.store.lock(self.name, key)
            taken.append(lock)
            who = _waits.owner()  # the task (``run`` may call the store in a thread)
            if await run(lock.acquire, False, undo=lock.release):
                taken.append(who)  # noted held, as in ``_lock``
                _waits.hold(here, taken)
                return MISSING
            found: list[Any] = []  # as ``_lock``: the holder's value, read while waiting
            look = (functools.partial(self._look, key, found, time.monotonic()) if read
                    else None)
            before = _waits.waits_for(who)  # as in ``_lock``
            ends: list[Callable[[], None]] = []
            try:
                cycle = _waits.wait(here, who)
                if cycle is not None:
                    if _no_loop():  # (its coroutines are one owner: the thread)
                        self._unwaitable(key)
                    else:
                        self._cycle(key, cycle, _COMPUTING_HERE)
                    return MISSING
                blocking = _no_loop()  # (a wait on no loop blocks)
                stalled = _waits.stalled(here, blocking)
                if stalled is not None:
                    self._stalled(key, stalled, _COMPUTING_HERE)
                    return MISSING
                holding = self._holding(here, who)  # in this task's context, as ``_lock``
                # the store's part through ``run``, to its end even if cancelled meanwhile:
                # a note made after this wait ended would never be ended
                across = _Across(lock, here, holding, ends) if holding else None
                cycle = (await run(across.look, finish=True) if across is not None
                         else None)
                if cycle is not None:
                    self._cycle(key, cycle, _COMPUTING_HERE, "another process")
                    return MISSING
                while True:
                    if time.monotonic() >= deadline:
                        self._waited_too_long(key, timeout, _COMPUTING_HERE)
                        return MISSING
                    await _sleep(_LOCK_POLL)
                    # looked at again at each try: the holder's loop may stop meanwhile
                    # (``_waits.stalled_meanwhile``)
                    stalled = _waits.stalled(here, blocking)
                    if stalled is not None:
                        self._stalled(key, stalled, _COMPUTING_HERE)
                        return MISSING
                    if across is not None and ends and across.due():  # as in ``_lock``
                        cycle = await run(across.look, finish=True)
                        if cycle is not None:
                            self._cycle(key, cycle, _COMPUTING_HERE, "another process")
                            return MISSING
                    got = await run(lock.poll, look, undo=lock.release)
                    if got is None:
                        return found[0]
                    if got:
                        taken.append(who)
                        _waits.hold(here, taken)
                        return MISSING
            finally:
                try:
                    if ends:  # a remote store's notes are removed from a worker thread
                        await run(_end_all, ends, finish=True)
                except BaseException:
                    if not self.store.remote:  # ended here: an interrupt as it started
                        _end_all(ends)
                    raise
                finally:
                    _waits.done(who, before)
        except OSError as exc:
            if lock is not None and not self.store.remote:
                lock.release()
            if exc.errno is None:  # not a system call's: the caller's (a signal handler's)
                raise
            self._cannot_lock(key, exc)
            return UNLOCKED
        except BaseException:  # cancelled, or the caller's exception: never leak the lock
            if lock is not None and not self.store.remote:  # a remote one: ``undo`` does
                lock.release()
            raise

    def _cannot_lock(self, key: str, exc: OSError) -> None:
        # The error's text, not the error: a handler that keeps records (pytest's capture,
        # a ``MemoryHandler``) kept it, and its traceback every frame of the call, its
        # arguments too
        logger.warning("cannot lock %s %s in %s: %s", self.name, key, self.store.location,
                       str(exc))

    def _waited_too_long(self, key: str, timeout: float, then: str) -> None:
        here = (self.store.location, self.name, key)
        mine = [f"{h[1]} {h[2]}" for h in dict.fromkeys(_held.get()) if h != here]
        likely = (
            f" This caller holds {', '.join(mine)} meanwhile: if that caller waits for "
            "one of those (a lock-order cycle across processes: one calls the other's "
            "function while the other calls its), each of them waits this long."
            if mine else ""
        )
        warn(
            f"waited {timeout:g} s (lock_timeout) for another caller computing {self.name} "
            f"{key} in {self.store.location}; {then}. A process stuck while computing, or a "
            f"lock file held by another program, keeps the key locked.{likely}"
        )

    def _cycle(self, key: str, cycle: list[tuple[str, str, str]], then: str,
               by: str = "another thread or task of this process") -> None:
        """The wait for ``key`` would close a lock-order cycle (``cycle``: the locks
        waited for along it, the first ``key``'s, the last one this caller holds)."""
        chain = "".join(f", which waits for {name} {k}" for _, name, k in cycle[1:-1])
        _, name, k = cycle[-1]
        warn(
            f"{self.name} {key} in {self.store.location} is being computed by {by}"
            f"{chain}, which waits for {name} {k}: a computation this caller is in. A "
            f"lock-order cycle ({self.name} and {name} call each other): waiting would "
            f"last lock_timeout; {then}."
        )

    def _stalled(self, key: str, why: str, then: str) -> None:
        """The key's holder is a task that cannot go on while this caller waits
        (``_waits.stalled``: ``why``)."""
        holder = ("a task of an event loop that is not running (left pending: Ctrl-C out of "
                  "its run_until_complete?), which goes on only when that loop runs again"
                  if why == "stopped" else
                  "a task of the event loop this thread runs, which this caller, driven in "
                  "no task of it, would block")
        warn(f"{self.name} {key} in {self.store.location} is being computed by {holder}: "
             f"waiting would last lock_timeout; {then}.")

    def _unwaitable(self, key: str) -> None:
        """A coroutine driven by no loop memojar knows (``_no_loop``) finds its key computed
        by another coroutine of its thread: waiting would block the thread that computation
        needs to go on. Before, said as a lock-order cycle ("f and f call each other")."""
        warn(f"{self.name} {key} in {self.store.location} is being computed by another "
             "coroutine of this thread, driven by no event loop memojar can wait on "
             "(Twisted's default reactor, curio): waiting would block the thread that "
             f"computation needs; {_COMPUTING_HERE} (run the coroutines on asyncio or trio "
             "to have them wait for each other)")

    @staticmethod
    def _holding(here: tuple[str, str, str], who: Any) -> list[tuple[Any, Any]]:
        """The locks ``who`` holds (as [its mark, its KeyLock]) but ``here``'s."""
        return [(mark, taken[0]) for mark in _held.get() if mark != here
                and (taken := _HOLDER.get(mark)) is not None and taken[1] == who]

    def _stored_meanwhile(self, key: str) -> Any:
        """The value another caller stored while this one waited for the lock, or MISSING.

        A store that can tell cheaply that there is no entry (``maybe_stored``: the file
        store's one ``access``, without the exception a failed open raises) says so first;
        the usual answer, none, then costs no read."""
        if not self.store.maybe_stored(self.name, key):
            return MISSING
        value = self.get(key)
        if value is not MISSING:
            self.hit_count.bump()
        return value

    def _started(self, key: str, call: tuple[_Args, dict[str, Any]] | None = None) -> _Start:
        """When the function starts, the code and defaults it runs with and their identity
        (resolved before the function first runs: not what it mutates). ``_computed``
        stores under that identity, and nothing if the code or defaults were reassigned
        while it ran (another thread's reassignment and ``renew`` would otherwise have the
        old code's value stored under the new code's identity). With ``files=``, what
        ``stat`` says of the call's paths too (``_files_changed``). Inline in ``_compute``:
        keep the two alike."""
        if logger.isEnabledFor(DEBUG):
            logger.debug("miss %s %s", self.name, key)
        marked = _notebook.cells_marked  # before the code check (``_crossed``)
        watched = self.watched  # ``_reassigned``, inline: a frame less a miss
        loaded = self.loaded()
        if (watched.__code__ is not self.code or watched.__defaults__ is not self.defaults
                or watched.__kwdefaults__ is not self.kwdefaults or self.kwchanged()
                or reloaded(loaded) or (self.resolved is not None and self.rebound())):
            # reassigned since this call's key_of, a module reloaded, or (in IPython, where
            # records are kept) a helper or constant bound again since the identity was
            # made, in this cell: the value computed now is of the new ones
            self.renew()
            loaded = self.loaded()
            rekey = True
        else:
            rekey = self.rekeying
        code = (self.code, self.defaults, self.kwdefaults, self.kwchanged)
        if rekey and call is not None and self._rekeyed(key, *call):  # (after ``code``)
            # not stored, as if reassigned while it ran (no code is None)
            return (time.perf_counter(), (None, None, None, _never), self.ident, None, loaded,
                    marked)
        files = self._files_state(call) if self.files and call is not None else None
        ident = self.ident
        if self.__dict__.get("ident") is not ident:  # made for this call only (``_MadeOnce``)
            code = (None, None, None, _never)
        if loaded is UNWALKED:  # read before the identity's walk (as in ``_compute``)
            loaded = self.loaded()
        return (time.perf_counter(), code, ident, files, loaded, marked)

    def _rekeyed(self, key: str, args: _Args, kwargs: dict[str, Any]) -> bool:
        """After a miss's ``renew``: whether the call's key is no longer ``key``. Defaults
        reassigned after its ``key_of`` applied them: the function runs with the new ones,
        and its value was stored under the key of the old (``f(1, 1)`` then got the value of
        ``f(1)`` with ``y=2``). Its value is returned, not stored.

        Asked at every miss once the defaults were reassigned (``rekeying``), after the code
        and defaults the miss stores for were read: another thread's call could renew the
        memo between this call's ``key_of`` and its miss, which then found nothing changed,
        and stored the new default's value under the old one's key (``f(1, 1)`` got 3)."""
        try:
            return self.key_of(args, kwargs) != key
        except Exception:  # noqa: BLE001 - no longer binds: not this value's key either
            return True

    def _files_state(self, call: tuple[_Args, dict[str, Any]]) -> tuple[Any, ...] | None:
        """``_depends.files_state`` of a call's ``files=`` paths; None if they cannot be
        told (the call does not bind: it raises before anything is stored)."""
        paths = getattr(self.binder, "paths", None)
        if paths is None:
            return None
        try:
            return _depends.files_state(paths(*call[0], **call[1]))
        except Exception:  # noqa: BLE001 - whatever binding raised: the call raises it too
            return None

    def _computed(self, key: str, value: Any, start: _Start,
                  call: tuple[_Args, dict[str, Any]] | None = None) -> bool:
        """Store a computed value, unless it must not be kept for ``key``: False then (a
        ``files=`` path changed during the call, it took under ``min_compute_time``, or the
        function's code or defaults were reassigned while it ran), and False if it was not
        stored after all (it cannot be pickled, or the store failed). Inline in
        ``_compute``: keep the two alike."""
        self.miss_count.bump()
        began, (code, defaults, kwdefaults, kwchanged), ident, files, loaded, marked = start
        elapsed = time.perf_counter() - began
        if self.resolved:  # (inline: a frame less a miss in a script, where it is None)
            _notebook.ran(self.resolved, marked)
        watched = self.watched  # ``_reassigned``, inline: a frame less a miss
        if (watched.__code__ is not code or watched.__defaults__ is not defaults
                or watched.__kwdefaults__ is not kwdefaults or kwchanged()):
            logger.debug("not stored %s %s (its code or defaults were reassigned while it "
                         "ran)", self.name, key)
            return self._unstored(key)
        if reloaded(loaded):
            logger.debug("not stored %s %s (a module it depends on was reloaded while it "
                         "ran)", self.name, key)
            return self._unstored(key)
        if ((self.resolved is not None or _notebook.cells_marked != marked)
                and self._crossed(key, ident, marked)):
            return self._unstored(key)
        if self.files and call is not None and self._files_changed(key, call, files):
            return self._unstored(key)
        if elapsed < self.min_compute_time:
            logger.debug("not stored %s %s (computed in %.3f s, under min_compute_time)",
                         self.name, key, elapsed)
            return self._unstored(key)
        if not self.put(key, value, elapsed, ident):
            return self._unstored(key)
        return True

    def _unstored(self, key: str) -> bool:
        """Note that ``key`` was computed now and not stored (see ``unstored``); False."""
        unstored = self.unstored
        unstored.pop(key, None)
        unstored[key] = time.monotonic()
        while len(unstored) > _UNSTORED_MAX:
            try:
                del unstored[next(iter(unstored))]
            except (KeyError, RuntimeError, StopIteration):  # another thread's meanwhile
                break
        return False

    def _unreplaced(self, key: str) -> None:
        """A value meant to replace the entry of ``key`` (a refresh, a ``cache_set``, a
        background recomputation of a stale entry) was not stored: the entry it was to
        replace is removed, so that no later call returns the value the caller replaced
        (before, the next call did: a refresh computed under ``min_compute_time`` gave
        the new value, and the call after it the old one again). Made holding the key's
        lock (but for a coroutine function's ``cache_set``), so a value another caller
        stores later stays."""
        try:
            self.store.delete(self.name, key)
        except OSError as exc:
            if exc.errno is None:  # not the store's system call: the caller's signal handler
                raise
            logger.debug("cannot remove %s %s: %s", self.name, key, exc)
        else:
            logger.debug("evict %s %s (its replacement was not stored)", self.name, key)

    def _ran(self, marked: int | None = None) -> None:
        """The function ran (to its end or not): in IPython, the globals it binds itself
        (``global calls; calls += 1``) are its own state, not a cell's change
        (``_notebook.ran``; ``marked``: ``cells_marked`` as it began)."""
        if self.resolved:
            _notebook.ran(self.resolved, marked)

    def _files_changed(self, key: str, call: tuple[_Args, dict[str, Any]],
                       before: tuple[Any, ...] | None) -> bool:
        """True if a ``files=`` path changed while the function ran: its value is returned,
        not stored under the content hashed before the call (a later call finding that
        content again would get it). A path whose ``stat`` changed counts, even if its
        content is as before (``before``: taken when the function started): rewritten with
        the same content meanwhile, it may have been read empty or half written. Two
        ``stat``s per path on the miss path."""
        try:
            changed = (before is not None and self._files_state(call) != before
                       ) or self.key_of(*call) != key
        except Exception:  # noqa: BLE001 - the path became a FIFO, say: not this value's key
            changed = True
        if changed:
            logger.debug("not stored %s %s (a files= path changed while it ran)", self.name,
                         key)
            if self.name not in _FILES_WARNED:  # once per function and process
                _FILES_WARNED.add(self.name)
                warn(f"a file that {self.name} declares in files= changed while it ran "
                     f"({self._files_of(call)}): its result was returned but not cached, "
                     "as the key covers that content from before the call. If the function "
                     "writes that file, declare in files= only the files it reads (if "
                     "another program wrote it meanwhile, the next call caches)")
        return changed

    def _files_of(self, call: tuple[_Args, dict[str, Any]]) -> str:
        """The ``files=`` arguments of a call, as ``name='value'`` (for a message)."""
        import inspect  # the rare path: not at import

        try:
            bound = inspect.signature(self.func).bind(*call[0], **call[1])
            bound.apply_defaults()
            return ", ".join(f"{name}={_shown_path(bound.arguments[name])}"
                             for name in self.files if name in bound.arguments)
        except Exception:  # noqa: BLE001 - a signature inspect cannot read, a path that
            return f"files={self.files!r}"  # cannot be shown: the names; never the value lost

    def _files_missing(self, call: tuple[_Args, dict[str, Any]]) -> str:
        """The ``files=`` arguments of a call that name no readable file or folder (no
        glob pattern, no ``None``), as ``name='value'``; "" if none (or none can be told)."""
        paths = getattr(self.binder, "paths", None)
        if paths is None:
            return ""
        try:
            values = paths(*call[0], **call[1])
        except Exception:  # noqa: BLE001 - a call that does not bind: it says so itself
            return ""
        missing = []
        for name, value in zip(self.files, values, strict=False):
            try:
                if (_depends.content_digest(value) in ("-", _depends.UNREADABLE)
                        and not _glob_magic(value)):
                    missing.append(f"{name}={_shown_path(value)}")
            except Exception:  # noqa: BLE001 - not a path (a frame), or a FIFO: not missing
                continue
        return ", ".join(missing)

    def put(self, key: str, value: Any, compute_time: float, ident: bytes | None = None,
            given: bool = False, debug: bool | None = None) -> bool:
        """Store a computed value; a value or a store that fails costs only a warning.
        ``ident``: that of the code which computed it (``_started``), if not the current.
        ``given``: the value was given to ``cache_set``, not returned (the warning says so).
        ``debug``: ``logger.isEnabledFor(DEBUG)``, if the caller asked it already (a miss
        asks once, at its start); None: asked here.
        Whether it was stored: the memory tier holds only what the store keeps, and the
        callers waiting for a value not stored compute theirs (``unstored``)."""
        resume = resume_after_fork
        if resume is not None:
            resume()
        created = time.time()
        expires = created + self.ttl if self.ttl is not None else None
        try:
            chunks = _entry.encode(
                value,
                ident=self.ident if ident is None else ident,
                key=key,
                created=created,
                expires=expires,
                compute_time=compute_time,
                secret=self.secret,
                result_classes=_depends.result_classes,
            )
        except Exception as exc:  # whatever pickling raised, the value stands
            if the_callers(exc):
                raise  # the caller's signal handler's (a TimeoutError), not the value's fault
            why = ("there was not memory enough to pickle it" if isinstance(exc, MemoryError)
                   else f"it cannot be pickled ({type(exc).__name__}: {exc})")
            warn(f"{self._what(given)} not cached: {why}")
            return False
        try:
            # A store with its own expiry (Redis) keeps the entry through the window in
            # which stale_while_revalidate still serves it; the header's expiry decides.
            kept = expires + self.swr if expires is not None and self.swr else expires
            try:
                size = self.store.write(self.name, key, chunks, kept)
            finally:  # (the value's own cycle may hold this frame: ``_entry.release_views``)
                _entry.release_views(chunks)
        except OSError as exc:
            if exc.errno is None:  # not the store's system call: the caller's signal handler
                raise
            if isinstance(exc, Unconfirmed):
                lost = (f"{self.store.location} did not answer its write within the "
                        "store's timeout" if exc.timed_out else
                        f"the connection to {self.store.location} dropped before the "
                        "server answered its write")
                warn(
                    f"{self._what(given, known=False)}; whether it was cached is unknown: "
                    f"{lost}, and reading the entry back failed ({exc.strerror or exc}); "
                    "if it was stored, the next call hits, else it computes again"
                )
                return False
            # the file it names, if any (a folder made at the entry's name: before, the
            # cache's folder alone was named, "Is a directory")
            named = exc.filename2 or exc.filename
            said = f"{exc.strerror}: {named}" if exc.strerror and isinstance(named, str) else (
                exc.strerror or exc)
            warn(
                f"{self._what(given)} not cached: writing to {self.store.location} failed "
                f"({said}); the next call will compute again"
            )
            return False
        if logger.isEnabledFor(DEBUG) if debug is None else debug:
            logger.debug("store %s %s (%d bytes, computed in %.3f s)", self.name, key, size,
                         compute_time)
        if not self.swept:
            self.swept = True
            self.sweep()
        return True

    def _what(self, given: bool, known: bool = True) -> str:
        """The value a store warning is about: ``put``'s value, returned or given."""
        if given:
            return f"the value given to {self.name}.cache_set" + (" was" if known else "")
        return f"result of {self.name} was returned" + (" but" if known else "")

    def set_value(self, key: str, value: Any, wait: bool) -> None:
        """``cache_set``: store ``value`` under the key's lock, as a miss stores, so that a
        computation of the same call running now (in any thread or process) stores first
        and this value is the entry once both are done, not written over by it.

        A caller holding the lock (the function seeding its own call) stores at once. With
        ``wait`` false (a coroutine function: the event loop must not stop while another of
        its tasks computes the call) a held lock is not waited for: the value is stored
        without it."""
        taken: list[Any] = []  # as in ``compute``: released whatever interrupts this
        held = _held.get()
        here = (self.store.location, self.name, key)
        try:
            if here not in held:
                # Marked held first, as in ``compute``: a signal handler's call of the key
                # in this thread then computes at once, never waiting for this lock.
                _held.set((*held, here))
                if wait:
                    self._lock(key, taken, then="storing the value given to cache_set "
                               "without waiting")
                else:
                    try:
                        lock = self.store.lock(self.name, key)
                        taken.append(lock)
                        lock.acquire(blocking=False)  # not held: stored without it
                    except OSError as exc:  # the store cannot lock now: ``put`` says why
                        if exc.errno is None:
                            raise
            if not self.put(key, value, 0.0, given=True):
                self._unreplaced(key)
        finally:
            try:
                if taken:  # inline, as in ``compute``
                    try:
                        if len(taken) > 1:
                            _waits.let_go(here, taken)
                        taken[0].release()  # a lock not held: nothing to do
                    except BaseException:  # interrupted inside: once more (idempotent)
                        taken[0].release()
                        if len(taken) > 1:
                            _waits.let_go(here, taken)
                        raise
            finally:
                _held.set(held)

    def sweep(self) -> None:
        """Evict this function's entries written for other code or another version.

        Runs once per process, at the first store: an edited notebook cell or a version
        bump leaves no trail of entries that can never hit again. Only entries of the same
        scope (script or notebook) and the same Python are swept: another script's
        ``__main__.load`` and another interpreter's entries are theirs to keep. A closure
        or lambda sharing its name sweeps its family's (``family_of``: see ``superseded``),
        never a sibling's. The store notes which code swept last in each (Python, scope) or
        family, so an unchanged function does not list its entries in every process.
        """
        try:
            swept = _read_sweep_note(self.store.read_note(self.name))
            ident = self.ident  # made at the first call, with ``rows``
            family, code = family_of(self.name, self.scope)
            version = _entry.version_tag(self.version)
            if code:  # siblings of one family: one note whatever they capture
                group = f"{_entry.key_seed(family):016x}"
                done = _entry.ident_digest("\n".join(
                    [code, version, *(" ".join(row) for row in family_rows(
                        self.target, self.rows[1:]))]).encode())
            else:
                group, done = f"{self.seed:016x}", _entry.ident_digest(ident)
            if swept.get(group) == done:
                return
            live = None
            if weakref.ref(self) in _LAMBDAS:  # the codes of its name's lambdas here
                lambdas = [m for m in (ref() for ref in list(_LAMBDAS)) if m is not None]
                live = {family_of(m.name, m.scope)[1] for m in lambdas
                        if m.name == self.name and m.place == self.place
                        and m.store.location == self.store.location}
            # Removed as found, a batch at a time: memory for a batch, not for every entry
            # the old code left (before: 960 MB of RSS for the first store after a code
            # change over 1,000,000 entries). Interrupted, the note is not written: the
            # next process's first store sweeps the rest.
            self.store.remove_listed(
                stored for stored in self.store.scan(self.name)
                if (header := header_of(stored)) is not None  # (damaged: prune's business)
                and header.function == self.name and header.python == _entry.PYTHON
                and self.superseded(header, ident, (family, code, version), live))
            swept.pop(group, None)
            notes = [f"{group} {done}", *(f"{g} {c}" for g, c in swept.items())]
            self.store.write_note(self.name, "\n".join(notes[:_NOTE_GROUPS]).encode())
        except OSError as exc:
            logger.debug("cannot sweep old entries of %s: %s", self.name, exc)

    def superseded(self, header: _entry.Header, ident: bytes, mine: tuple[str, str, str],
                   live: set[str] | None) -> bool:
        """Whether the sweep removes an entry of this function and Python: of its scope
        with another identity; of its name from a memojar that did not tell siblings apart
        (no sibling part, at keys never read now); of its family (the closures of its
        name, or the lambdas of its code) with other code or another version; or, for a
        lambda, of another lambda of its name whose code no lambda of this process has
        (edited away: in a program that still made it, it would be here)."""
        if header.scope == self.scope:
            return header.ident != ident
        if header.scope == self.place:
            return self.scope != self.place
        family, code, version = mine
        theirs, their_code = family_of(header.function, header.scope)
        if theirs == family:
            return (their_code, header.version) != (code, version)
        return (live is not None and place_of(header.scope) == self.place
                and their_code not in live)

    def discard(self, key: str, reason: str, judged: Any) -> None:
        """Remove an entry that must not be used (stale, incompatible, corrupt), if it is
        still the one judged (``judged``: the bytes read), not a fresh one renamed since.

        An entry of another secret says that processes sharing the store do not share the
        secret: they recompute and replace each other's entries in turn, silently but for
        a warning, once per store and process (a miss's, never the hit path's).

        The key is marked held meanwhile, as in ``compute``: the store takes its lock to
        remove the entry, and a signal handler calling the function with this key runs in
        this thread. Before, the handler's call waited ``lock_timeout`` (600 s) for the
        lock its own thread held."""
        held = _held.get()
        here = (self.store.location, self.name, key)
        removed = False
        try:
            if here not in held:
                _held.set((*held, here))
            removed = self.store.discard(self.name, key, judged)
            if not removed:  # left (a writer of the key holds its lock): no use of it
                self.store.unstamp(self.name, key)
        except OSError as exc:
            if exc.errno is None:  # not the store's system call: the caller's signal handler
                raise
            logger.debug("cannot remove %s %s: %s", self.name, key, exc)
        finally:
            _held.set(held)
        logger.debug("evict %s %s (%s)", self.name, key, reason)
        # An entry removed, not each failed read of it: threads that read one entry at
        # once each fail to load it, and only one removes it (before, the second failure
        # was counted as a second entry failing, and warned of a value that loads)
        if removed and reason.startswith(_NOT_LOADED):
            self._not_loaded(key, reason)
        if reason in _OTHER_SECRET and self.store.location not in _SECRET_WARNED:
            _SECRET_WARNED.add(self.store.location)
            warn(f"an entry of {self.name} in {self.store.location} "
                 f"{_OTHER_SECRET[reason]}: it was not loaded, and is recomputed and "
                 "replaced. Processes that share a cache under different secrets (secret=, "
                 "$MEMOJAR_SECRET, or none) never load each other's entries: they compute "
                 "and replace them in turn. Give every process sharing this cache the same "
                 "secret")

    def _not_loaded(self, key: str, reason: str) -> None:
        """An entry of ``key`` did not load (``discard`` removed it). A second time in this
        process, it is a value this process stored: it pickles but cannot be rebuilt, so
        every call computes it, stores it and throws it away. Before, silently: the cache
        did nothing for the function (an ``Exception`` subclass whose ``__init__`` takes
        other arguments than it gives ``Exception.__init__``). Warned once a function; an
        entry a library's upgrade left unloadable goes once, unwarned."""
        unloaded = self.unloaded
        if unloaded is None:
            return
        if key not in unloaded:
            if len(unloaded) < _UNLOADED_KEPT:
                unloaded.add(key)
            return
        self.unloaded = None
        warn(f"{self.name}'s value is stored but does not load ({reason}): every call "
             "computes it again, so caching it saves nothing. It pickles but cannot be "
             "rebuilt: an Exception subclass whose __init__ takes other arguments than it "
             "passes to Exception.__init__ needs a __reduce__ (or passes them all on); a "
             "class with its own __reduce__ or __getstate__ must rebuild from what it gives")

    def clear(self, store: Store | None = None) -> int:
        """Remove the entries this function can read (of its scope, and of this Python), from
        its own store or the one given (``Cache.clear`` of another cache)."""
        store = self.store if store is None else store
        try:
            return store.remove_listed(
                stored for stored in store.scan(self.name)
                if (header := header_of(stored)) is not None and header.function == self.name
                and header.scope == self.scope and header.python == _entry.PYTHON
            )
        finally:
            self.forget_here()

    def delete(self, key: str) -> bool:
        """Remove the entry of ``key``, if any."""
        try:
            return self.store.delete(self.name, key)
        finally:
            self.forget_here()

    def forget_here(self) -> None:
        """After this process removed entries: its memory tier forgets even if the store's
        stamp did not change (the cache deleted by hand, or moved aside, bumps nothing)."""
        if self.generation is not None:
            self.forget()

    def info(self) -> CacheInfo:
        return CacheInfo(self.hits, self.misses, *stored_total(self.store, self.name))

    def _ident_to_look(self) -> bytes:
        """The identity a look (``cache_explain``, ``cache_contains``) judges an entry by:
        the one the calls made, or, before the first call, one made now and not kept, nor
        the walk it was made of. What a script defines or sets between a look and its
        first call (a helper, ``SCALE = 2``) then counts at that call, as without the look.
        Before, the look kept the identity it made: the call stored its value under one
        without them, and a later run that looked first hit it (the old helper's value).
        Kept for the next looks only (``looked``, made again after a ``renew``): looks in a
        loop before the first call walked once each (200 of a function of 300 helpers:
        0.48 s)."""
        kept = self.__dict__.get("ident")
        if kept is not None:
            return cast("bytes", kept)
        looked = self.__dict__.get("looked")
        if looked is None or looked[0] != self.unmade:
            with unkept():
                looked = self.looked = (self.unmade, _Memo.__dict__["ident"].make(self)[0])
        return cast("bytes", looked[1])

    def contains(self, key: str) -> bool:
        # Looked at, not used (as diskcache's ``in``): no mark of a use is left, so that a
        # look never keeps an entry from eviction. Before, only of one rejected.
        data = self.store.look(self.name, key)
        if data is None:
            return False
        try:
            _entry.verify(data, self._ident_to_look(), key.encode(), time.time(), self.ttl,
                          self.secret, _depends.changed_result_class)
        except Miss:
            return False
        return True

    def explain(self, args: _Args, kwargs: dict[str, Any]) -> str:
        """Why this call would hit or miss, in one line (see ``_depends.explain_miss``)."""
        key = self.key_of(args, kwargs)
        held = self._held_in_memory(args, kwargs, key)
        if held is not None:  # (before, the entry's state: "damaged", "incompatible")
            return f"hit: held in memory (memory=), computed in {_took(held[2])}"
        ident = self._ident_to_look()
        try:
            data = self.store.look(self.name, key)  # looked at, not used (see ``contains``)
        except OSError as exc:
            return f"miss: the entry cannot be read ({exc})"
        if data is None:
            unread = self.store.unread(self.name, key)
            if unread is not None:
                return f"miss: {unread}"
            try:
                values = self.binder(*args, **kwargs)
            except TypeError:  # bound by a decorator's own signature (``_own_binder``)
                own = self._own_binder()
                if own is None:
                    raise
                values = own(*args, **kwargs)
            line = _depends.explain_absent(self, values, ident)
            absent = "miss: no entry for these arguments"
            missing = self._files_missing((args, kwargs)) if line.startswith(absent) else ""
            if missing:  # before: "an edited file is another key", of a file not there
                line = (absent + f"; the files= path {missing} does not "
                        "exist (or cannot be read): the call computes, and the function meets "
                        "that itself")
            return line
        now = time.time()
        try:
            # Loaded as the call loads it: an entry passing every check may still not
            # unpickle (a library's class moved by an upgrade), and the call computes.
            # Before, "hit" of it.
            _entry.load(*_entry.verify(data, ident, key.encode(), now, self.ttl,
                                       self.secret, _depends.changed_result_class))
        except Miss as miss:
            _callers_again(miss)  # before, an OSError with no errno: a value's own
            # ConnectionError raised out of cache_explain, and a deadline of another kind
            # was explained as a miss
            if _entry.damaged(data):
                return "miss: the entry is damaged (checksum mismatch)"
            reason = miss.reason
            if reason == "stale" and self.swr:
                # Served stale only if it passes every check after the expiry's (``_stale``):
                # before, "returned at once" of an entry whose checksum fails, which the
                # call computed.
                # And only if it loads, as ``_stale`` serves it: before, "returned at once"
                # of one that does not, which the call computed.
                try:
                    _entry.load(*_entry.verify(data, ident, key.encode(), now, self.ttl,
                                               self.secret, _depends.changed_result_class,
                                               grace=self.swr))
                except Miss as late:
                    _callers_again(late)
                    reason = late.reason
            return _depends.explain_miss(self, data, reason, ident)
        try:
            header = _entry.read_header(data)
        except Miss:  # times no clock gives (NaN), which no check of a hit reads
            return "hit"
        return (f"hit: stored {_depends.utc(header.created)}, computed in "
                f"{_took(header.compute_time)}")

    def _held_in_memory(self, args: _Args, kwargs: dict[str, Any], key: str
                        ) -> tuple[Any, float, float, float, str | None] | None:
        """What the memory tier would return for this call (``_memory_wrapper``: by its
        arguments if all are of ``simple`` types, else by ``key``), or None: no tier, or
        nothing it holds now; looked at, not used."""
        simple = self.simple  # (code reassigned: ``key_of`` renewed, and the tier forgot)
        if simple is None or self.generation is None or self.generation[0] != self.stamp:
            return None
        if self.kwdefaults is not None and self.kwchanged():
            # A keyword default changed in place (``f.__kwdefaults__["scale"] = 100``),
            # which ``key_of`` does not renew for: the call does, and the tier forgets
            # (``_memory_wrapper``). Before, "hit: held in memory" of the old default's
            # value, where the call computed the new one.
            return None
        values = (*args, *kwargs.values())
        mkey: Any = key
        if all(type(value) in simple for value in values):
            mkey = (args, tuple(kwargs.items())) if kwargs else args
        held = self.recent.get(mkey)
        if held is None or not held[3] <= time.time() < held[1]:
            return None
        return held

    def _unpicklable(self, values: _Args, exc: BaseException) -> TypeError:
        qualname = getattr(self.target, "__qualname__", self.name)
        if self.custom_key is not None:
            return TypeError(
                f"key= of {qualname} returned a value that cannot be pickled "
                f"({type(exc).__name__}: {exc}); return something picklable, such as a "
                "tuple of str and numbers"
            )
        names = self.keyed_names(self.ignore)
        for at, (name, value) in enumerate(zip(names, values, strict=False)):  # never raises
            try:
                make_key((value,))
            except Exception as inner:  # noqa: BLE001 - as make_key: whatever pickling raises
                if at == 0 and name in ("self", "cls") and "." in qualname:
                    # A method's instance: ignore=('self',) (suggested before) hands every
                    # instance the results of the first one called, whatever its state.
                    rest = ", ".join(names[1:])
                    return TypeError(
                        f"argument {name!r} of {qualname} cannot be pickled to make the cache "
                        f"key ({type(inner).__name__}: {inner}); the instance is part of the "
                        "key, so that instances of other state get their own results: make "
                        "it picklable (a __getstate__ leaving out what cannot be pickled, a "
                        "lock or a connection), or pass key= a function returning what the "
                        f"result depends on (key=lambda {name}{', ' if rest else ''}{rest}: "
                        "...); not ignore=, which would give every instance the results of "
                        "the first one"
                    )
                if name in self.kept:
                    return TypeError(
                        f"argument {name!r} of {qualname} cannot be pickled to make the "
                        f"cache key ({type(inner).__name__}: {inner}); ignore=({name!r},) "
                        "cannot leave it out under the decorator between @cached and the "
                        "function, which may pass it on as another argument: put that "
                        "decorator above @cached, or pass key= a function returning what "
                        "the result depends on"
                    )
                item = _unpicklable_item(self.target, name, value)
                if item is not None:
                    # An item of *args or **options: ignore= leaves out the whole parameter
                    # (suggested before), and calls differing there would share one result.
                    return TypeError(
                        f"argument {item} of {qualname} cannot be pickled to make the cache "
                        f"key ({type(inner).__name__}: {inner}); pass key= a function that "
                        "returns a picklable stand-in for the arguments "
                        f"(key=lambda {_lambda_parameters(self.target)}: ...); not "
                        f"ignore=({name!r},), which would leave out every item of {name}: "
                        "calls differing only there would share one result"
                    )
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


def _unpicklable_item(func: Callable[..., Any], name: str, value: Any) -> str | None:
    """``args[1]`` or ``options['conn']``: the first item of ``func``'s ``*args`` or
    ``**options`` parameter ``name`` (bound to ``value``) that cannot be pickled; None for
    another parameter, or if no one item is it."""
    import inspect

    try:
        kind = signature(func).parameters[name].kind
    except (TypeError, ValueError, KeyError):  # no signature: see raw_binder
        return None
    if kind is inspect.Parameter.VAR_POSITIONAL and isinstance(value, tuple):
        items: list[tuple[str, Any]] = [(f"{name}[{i}]", v) for i, v in enumerate(value)]
    elif kind is inspect.Parameter.VAR_KEYWORD and isinstance(value, dict):
        items = [(f"{name}[{k!r}]", v) for k, v in value.items()]
    else:
        return None
    for shown, item in items:
        try:
            make_key((item,))
        except Exception:  # noqa: BLE001 - as make_key: whatever pickling raises
            return shown
    return None


def _lambda_parameters(func: Callable[..., Any]) -> str:
    """``func``'s parameters as a ``key=`` lambda takes them: ``x, *args, **options``."""
    import inspect

    shown: list[str] = []
    for p in inspect.signature(func).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not any(s.startswith("*") for s in shown):
            shown.append("*")
        stars = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        shown.append(stars + p.name)
    return ", ".join(shown)


# A RecursionError raised while a call's key is made inside another call's is endless
# recursion, never retried (see _keys.key_reentered).
_keys.call_key_code = _Memo.key_of.__code__


# perf_counter, code and defaults, ident, the files= paths' stat (``_files_state``), the modules
# the identity was read from (``loaded``)
_Start = tuple[float, tuple[Any, Any, Any, Callable[[], bool]], bytes,
               tuple[Any, ...] | None, Any, int]


# What keys mean (``_keys.KEYING``): a row of every identity, so that an entry an older
# memojar keyed otherwise is older code's (``cache_explain``: "memojar's keying changed").
_KEYING = ("memojar", "keying", _keys.KEYING)


# The bytecode a copy's code was compiled to (``_Memo.__getstate__``).
_BYTECODE = importlib.util.MAGIC_NUMBER


def _forked() -> None:
    """In a forked child: each memo's lock may have been held by a thread of the parent at
    the fork (filling the memory tier, marking a background recomputation), a thread the
    child lacks, so the child's first fill or stale hit waited on it for ever. Each gets a
    new lock, and the keys the parent's threads were recomputing are no longer marked:
    none of those threads runs here."""
    global _SEEN_LOCK
    for memo in _live_memos():
        memo.revalidating, memo.revalidating_lock = set(), threading.RLock()
    _MadeOnce.lock = threading.RLock()
    # Before, the lock of a wrapper's code and defaults (``_Wrapping``), held by another
    # thread of the parent at the fork (its function's first call or decoration), stayed
    # held here: the child's first decoration of a ``functools.wraps`` wrapper hung.
    _SEEN_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


# Called by the next ``put`` (a miss's store, already slow): the statistics thread's restart
# in a parent whose fork left it stopped (``_cache._Flusher.after_fork_in_parent``); None
# otherwise. Not a check on the hit path.
resume_after_fork: Callable[[], None] | None = None


def restamp_all() -> None:
    """Every few seconds, from the statistics thread: each memory tier maps its stamp
    again if the file was removed (``_Memo.restamp``), so a clear from another process
    after an ``rm -rf`` of the cache is seen within that time, at no cost to a call."""
    for memo in _live_memos():
        try:
            memo.restamp()
        except Exception as exc:  # noqa: BLE001 - never fails the statistics thread
            logger.debug("cannot map the generation stamp of %s again: %s", memo.name, exc)


def release_abandoned() -> None:
    """Every few seconds, from the statistics thread: a key's lock held by an asyncio task
    whose loop was closed under it (a thread's loop at shutdown, a test's loop at its end;
    also a stale value's background recomputation) is given back now, by closing the
    task's coroutine here, as the collector would: its clean-up releases the lock.

    Such a task is never run again, but it is only collected by the cycle collector (its
    coroutine's frame holds the future it awaits, whose callback holds the task), which a
    process that is idle, or allocates little, may not run for hours: meanwhile the key
    stayed locked, and every caller of it in any process waited ``lock_timeout`` (600 s by
    default). The task is held here (a strong reference taken from the note's weak one)
    while its coroutine closes, so the collector cannot close it at the same time."""
    try:
        held = list(_HOLDER.values())
    except RuntimeError:  # changed by another thread meanwhile: the next round looks
        return
    for taken in held:
        owner = taken[1] if len(taken) > 1 else None
        if type(owner) is not weakref.ref:
            continue
        task: Any = owner()
        get_loop = getattr(task, "get_loop", None)  # an asyncio task's (trio's end with
        if get_loop is None:  # their run, which cancels them)
            continue
        try:
            if task.done() or not get_loop().is_closed():
                continue
            coroutine = task.get_coro()
            logger.debug("closing a task whose loop was closed while it held a key's lock")
            coroutine.close()  # its ``finally`` releases the lock, as the collector's would
        except Exception as exc:  # noqa: BLE001 - never fails the statistics thread
            logger.debug("cannot close a task left holding a key's lock: %s", exc)
        finally:
            del task


def _watched(target: Any) -> Any:
    """What ``key_of`` compares the code and defaults of: the function, ``_Wrapping``, the
    function a decorator that is an object wraps (``_wrapped_function``), or a stand-in
    that never changes for anything else."""
    if type(target) is not FunctionType:
        return _wrapped_function(target)
    import inspect

    chain: list[Any] = []  # the functions from the outer wrapper to the one it wraps

    def stop(func: Any) -> bool:
        chain.append(func)
        return _declares_signature(func)

    try:  # as inspect.signature, whose parameters and defaults the binder applies
        inner = inspect.unwrap(target, stop=stop)
    except ValueError:  # a __wrapped__ loop: the signature is the function's own
        return target
    if inner is target or type(inner) is not FunctionType:
        return target
    return _Wrapping(target, inner, tuple(
        f for f in chain[1:] if type(f) is FunctionType and f is not inner))


class _Wrapping:
    """A function of ``functools.wraps`` (a decorator under ``@cached``) as ``key_of``
    watches it: its own code, and the defaults of the function it wraps, which its binder
    applies (``inspect.signature`` follows ``__wrapped__``). Before, the wrapper's were
    watched, and ``f.__wrapped__.__wrapped__.__defaults__ = (2,)`` left ``f(1)`` keyed,
    and answered, as ``f(1, 1)``.

    Its ``__code__`` is the code of each function of the chain, the wrapper's, those of
    the decorators between (with their defaults, which they run with) and the wrapped
    function's, as one tuple, the same object while none is reassigned. Before, the
    wrapper's alone: after ``f.__wrapped__.__wrapped__.__code__ = g.__code__`` f(1) kept
    returning the old code's value, from the disk and from memory.

    And the wrapper's own defaults, where it has any (``def wrapper(x, scale=1)``): the
    calls it passes on run with them, and the calls bound by its own signature are keyed
    with them (``_own_binder``). ``__kwdefaults__`` is then the wrapped function's and the
    wrapper's two together, the same object while none is reassigned (a pass-through
    wrapper's stays the wrapped function's, usually None, which a hit does not read).
    Before, the wrapper's were not watched: after ``wrapper.__defaults__ = (10,)`` f(2)
    kept the value of ``scale=1``; and a call bound by the wrapper's signature, whose
    defaults another thread reassigned between its key and its run, stored the new
    default's value under the old one's key (its miss saw no change: ``_rekeyed``)."""

    __slots__ = ("between", "codes", "inner", "outer", "seen")

    def __init__(self, outer: FunctionType, inner: FunctionType,
                 between: tuple[FunctionType, ...] = ()) -> None:
        self.outer, self.inner, self.between = outer, inner, between
        self.seen: tuple[Any, Any, Any, Callable[[], bool]] = (None, None, None, _never)
        self.codes: tuple[Any, ...] = (None, None)

    @property
    def __code__(self) -> Any:
        codes = self.codes
        if (codes[0] is self.outer.__code__ and codes[1] is self.inner.__code__
                and (not self.between or _same_made(codes, self.between))):
            return codes
        with _SEEN_LOCK:  # one new object for all threads (as ``__kwdefaults__``)
            now = (self.outer.__code__, self.inner.__code__,
                   *(made for func in self.between for made in _as_it_is_checked(func)))
            codes = self.codes
            if len(codes) != len(now) or not all(
                    a is b for a, b in zip(codes, now, strict=True)):
                self.codes = codes = now
        return codes

    @property
    def __defaults__(self) -> Any:
        return self.inner.__defaults__

    @property
    def __kwdefaults__(self) -> Any:
        inner, outer = self.inner.__kwdefaults__, self.outer
        own, kw = outer.__defaults__, outer.__kwdefaults__
        if own is None and kw is None:  # a pass-through (``*args, **kwargs``): the usual,
            return inner  # None, which the hit path then does not read (``key_of``)
        seen = self.seen
        if seen[0] is inner and seen[1] is own and seen[2] is kw and not seen[3]():
            return seen
        with _SEEN_LOCK:  # one new object for all threads (two would renew once more)
            seen = self.seen
            if not (seen[0] is inner and seen[1] is own and seen[2] is kw
                    and not seen[3]()):
                self.seen = seen = (inner, own, kw, _in_place_check(kw))
        return seen


# Taken only when a wrapper's code or defaults were reassigned (``_Wrapping``); reentrant:
# a signal handler calling the function may land while this thread holds it.
_SEEN_LOCK = threading.RLock()


def _same_made(codes: tuple[Any, ...], functions: tuple[FunctionType, ...]) -> bool:
    """Whether ``codes`` holds, after its first two, the code, defaults and keyword defaults
    of ``functions`` in turn, the same objects, the keyword defaults unchanged in place
    (``_as_it_is_checked``: ``_Wrapping.__code__``)."""
    if len(codes) != 2 + 4 * len(functions):
        return False
    for at, func in enumerate(functions):
        base = 2 + 4 * at
        if (codes[base] is not func.__code__ or codes[base + 1] is not func.__defaults__
                or codes[base + 2] is not func.__kwdefaults__ or codes[base + 3]()):
            return False
    return True


def _as_it_is_checked(func: FunctionType) -> tuple[Any, Any, Any, Callable[[], bool]]:
    """``_as_it_is``, and the check of its keyword defaults changed in place
    (``_in_place_check``): a decorator's own, ``def wrapper(*args, factor=1, **kwargs)``,
    which its calls run with. Before, compared by identity alone, ``wrapper.__kwdefaults__
    ["factor"] = 10`` kept the key and identity of ``factor=1``, and its values."""
    kwdefaults = func.__kwdefaults__
    return func.__code__, func.__defaults__, kwdefaults, _in_place_check(kwdefaults)


def _changing_defaults(watched: Any, ignore: tuple[str, ...]) -> tuple[Any, ...]:
    """The defaults of a ``functools.wraps`` wrapper (and of the decorators between it and
    the function it wraps) that may change in place (``def wrapper(x, opts=OPTIONS)``, a
    dict or list; not ``_fixed``), but for those of names in ``ignore``, those the wrapper
    changes itself (an accumulator or a table of its own, ``_seen[key] = value``: its
    content would make each call another key) and those that cannot be pickled (which
    count by type in the identity, as before). The calls it passes on run with them, and a
    plain function's binder applies its own (a call's key covers their content): these are
    keyed with every call bound by the wrapped function's signature, which does not have
    them. Before, none was: after ``OPTIONS["scale"] = 10`` f(2) kept returning the value
    of ``scale=1``."""
    if type(watched) is not _Wrapping:
        return ()
    changing = []
    for func in (watched.outer, *watched.between):
        code, defaults = func.__code__, func.__defaults__ or ()
        positional = code.co_varnames[:code.co_argcount]
        # Defaults past its positional parameters are never used (tenacity copies the
        # wrapped function's onto its ``(*args, **kw)``): before, decorating raised.
        defaults = defaults[max(0, len(defaults) - len(positional)):]
        named = [*zip(positional[len(positional) - len(defaults):], defaults, strict=True),
                 *(func.__kwdefaults__ or {}).items()]
        changed = mutated_locals(code)
        for name, value in named:
            if name in ignore or name in changed or _fixed(value):
                continue
            try:
                make_key((value,))
            except Exception:  # noqa: BLE001 - as make_key: whatever pickling raises
                continue
            changing.append(value)
    return tuple(changing)


def _with_defaults(binder: Callable[..., _Args], defaults: tuple[Any, ...], *args: Any,
                   **kwargs: Any) -> _Args:
    return (*binder(*args, **kwargs), *defaults)


def _wrapped_function(target: Any) -> Any:
    """For a decorator that is an object, not a function (wrapt's ``FunctionWrapper``, a
    class of ``functools.update_wrapper``, ``lru_cache``), the function it wraps, whose
    code runs and whose signature and defaults bind the call (``inspect.signature`` follows
    ``__wrapped__``); ``_unwatched`` for anything else. Before, nothing was watched there:
    after ``inner.__code__ = other.__code__`` f(1) kept returning the old code's value.

    Where it wraps a function of ``functools.wraps`` (wrapt's proxy around ``@my_decorator``),
    that function as ``_watched`` makes it (``_Wrapping``: the codes and defaults of the
    whole chain). Before, the innermost function's alone: after
    ``middle.__code__ = other_decorator.__code__`` f(1) kept the old decorator's value."""
    if isinstance(target, type):  # rejected when decorated
        return _unwatched
    import inspect

    first: list[FunctionType] = []  # the first function from the object inwards

    def stop(func: Any) -> bool:
        if not first and type(func) is FunctionType:
            first.append(func)
        return _declares_signature(func)

    try:  # as inspect.signature, whose parameters and defaults the binder applies
        inner = inspect.unwrap(target, stop=stop)
    except Exception:  # noqa: BLE001 - a __wrapped__ loop, or what a __getattr__ raised
        return _unwatched
    if type(inner) is not FunctionType:
        return _unwatched
    return _watched(first[0]) if first and first[0] is not inner else inner


def _states_readable(func: Any, target: Any, name: str, ignore: tuple[str, ...]) -> None:
    """Raise a TypeError naming ``func`` where the state of an object it is made of cannot
    be read (``_state_readable``): the object itself, where memojar takes it whole (a
    class of ``functools.update_wrapper`` under ``@cached``: its state is part of its
    identity), or one bound in front of the call (a callable instance, the instance of a
    bound method, a partial's argument: in the key, unless ``ignore=`` leaves it out)."""
    _state_readable(target, name, whole=True)
    bound = split(func)[1]
    for at, value in enumerate(bound):
        if _own_lookups(type(value)):
            names = parameter_names(target)
            if at >= len(names) or names[at] not in ignore:
                _state_readable(value, name, whole=False)


def _state_readable(obj: Any, name: str, whole: bool) -> None:
    """Raise a TypeError naming ``obj`` where its class of the user's looks attributes up
    its own way (a ``__getattr__``) and its state cannot be read: on Python 3.10, where
    that ``__getattr__`` answers ``__getstate__`` at all (pickle calls what it answers for
    the state: a proxy answering every name gives every instance the same), and, for an
    object taken ``whole`` (its state read once, for its identity), where pickling it
    raises (a ``__getattr__`` raising a RuntimeError on 3.10). Counted alike, instances
    of other state would return each other's values (for an object in the key, pickling
    raises at the call, as for any argument that cannot be pickled)."""
    kind = type(obj)
    if issubclass(kind, (FunctionType, type, functools.partial)) or not _own_lookups(kind):
        return
    problem = None
    try:
        if getattr(kind, "__getstate__", None) is None:  # 3.10: pickle asks the instance
            try:
                hook = obj.__getstate__
            except AttributeError:
                hook = None
            if hook is not None:
                problem = f"its __getattr__ answers __getstate__ ({type(hook).__name__})"
        if problem is None and whole:
            _keys.state_key(obj)
    except Exception as exc:  # whatever its lookups or its pickling raised
        if the_callers(exc):
            raise
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        raise TypeError(
            f"cannot cache {name} (a {kind.__module__}.{kind.__qualname__} object): its "
            f"state cannot be read ({problem}), so its instances of other state could not "
            "be told apart; make it picklable, or decorate the function it wraps"
        )


def _own_lookups(kind: type) -> bool:
    """Whether the first class of ``kind``'s that looks attributes up its own way (a
    ``__getattr__``, a ``__getattribute__``) does so in Python code of the user's (not a
    library's proxy, such as wrapt's, in C or not: its wrappers count by type as before)."""
    for klass in kind.__mro__[:-1]:
        own = vars(klass)
        lookup = own.get("__getattr__", own.get("__getattribute__"))
        if lookup is not None:
            return type(lookup) is FunctionType and is_user_module(klass.__module__)
    return False


def _declares_signature(func: Any) -> bool:
    """Where ``inspect.signature`` stops following ``__wrapped__`` (it takes the signature
    from there): ``func`` has a ``__signature__``, a Signature, its text or None. Not where
    looking it up raises, or answers anything else (a ``__getattr__`` answering every name
    with 42): ``inspect`` fails on such an object (its calls are keyed as given:
    ``raw_binder``), and what it wraps, which runs, is watched past it (watching more
    costs a computation at worst). Before, the error failed the decoration, or nothing
    was watched, and after ``inner.__code__ = other.__code__`` the old code's value was
    returned."""
    import inspect

    try:
        found = getattr(func, "__signature__", inspect.Parameter.empty)
    except Exception as exc:  # whatever a __getattr__ or property of the user's raised
        if the_callers(exc):
            raise
        return False
    return found is None or isinstance(found, (inspect.Signature, str))


def _unwatched() -> None:
    """What ``key_of`` watches for a callable that is not a plain function (a builtin, a
    class): a function whose code and defaults nobody reassigns."""


class _BindingFirst:
    """The binder of a memo until its first call (``_Memo.retake_sibling``). It holds the
    memo weakly: a bound method kept in the memo's own dict was a reference cycle, which
    kept a dropped cache's store (its open folders) until the cycle collector ran. A copy
    (cloudpickle sends a memo with its binder) is given its own memo by
    ``_Memo.__setstate__``: before, a closure holding the weak reference was refused
    ("cannot pickle 'weakref.ReferenceType' object"), and a loky task calling a closure
    whose helper was defined after it could not be sent."""

    __slots__ = ("memo",)

    def __init__(self, memo: weakref.ref[_Memo] | None) -> None:
        self.memo = memo

    def __call__(self, /, *args: Any, **kwargs: Any) -> _Args:
        # (positional-only: a parameter named ``self`` passed by keyword is the function's)
        memo = cast("_Memo", cast("weakref.ref[_Memo]", self.memo)())  # given in the copy
        first = args[:1]  # (__setstate__); alive: calling
        if not first and kwargs:  # ``Local.run(self=obj, x=3)``: its class is obj's too
            code = getattr(memo.target, "__code__", None)
            name = code.co_varnames[0] if code is not None and code.co_argcount else None
            first = (kwargs[name],) if name in kwargs else ()
        return memo.retake_sibling(first)(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return _BindingFirst, (None,)


def _agrees(sent: Any, rows: tuple[tuple[str, str, str], ...]) -> bool:
    """Whether a copy's identity as its sender made it (``sent``) holds where it runs: each
    dependency it finds here is one the sender found, with the same fingerprint. A copy
    (cloudpickle sends a function of ``__main__`` by value) reaches the helpers it names
    by reference (``from helpers import scale``) in the files the receiving process
    imports: before, it kept the sender's identity, and a worker started after an edit of
    ``helpers.py`` stored the new helper's results under the old code's identity (a later
    run of the old code hit them). What only the sender sees (the class of a method sent
    by value, which the copy's globals do not hold) counts as the sender saw it."""
    if not isinstance(sent, tuple):
        return False
    known = {tuple(row) for row in sent}
    return all(tuple(row) in known for row in rows)  # each row made here, as sent


def _agrees_as_sent(sent: tuple[Any, ...], rows: tuple[tuple[str, str, str], ...]) -> bool:
    """``_agrees``, for rows made with a copy's data globals taken as sent: and each row the
    sender made that is not among them is of ``__main__``, which cloudpickle sends by value
    (a helper of another module that only the digest of such a global met, past what the
    walk looks at, is resolved by the worker: the full walk checks it)."""
    if not _agrees(sent, rows):
        return False
    made = set(rows)
    return all(tuple(row) in made or str(row[1]).startswith("__main__.") for row in sent)


# Keys made again of arguments another thread changed as they were read (``_keyed_again``).
_KEY_TRIES = 2


# Salts the keys of calls bound by a decorator's own signature (``_Memo._own_key``).
_OWN_SIGNATURE_SEED = 0x6F776E5F7369676E  # "own_sign"


def _code_signature(func: Any) -> Any | None:
    """The signature of ``func``'s own code and defaults, for a function whose signature
    ``inspect.signature`` takes from elsewhere (``__wrapped__``, which ``functools.wraps``
    sets, or a ``__signature__`` set on it, as makefun's and decorator's wrappers have);
    None for any other callable."""
    if type(func) is not FunctionType or (getattr(func, "__wrapped__", None) is None
                                          and "__signature__" not in func.__dict__):
        return None
    import inspect

    try:
        return inspect.signature(_without_wrapped(func))
    except (TypeError, ValueError):
        return None


def _passes_through(func: Any) -> bool:
    """Whether ``func`` is a decorator's ``(*args, **kwargs)`` wrapper (``_code_signature``)."""
    own = _code_signature(func)
    if own is None:
        return False
    import inspect

    return [p.kind for p in own.parameters.values()] == [inspect.Parameter.VAR_POSITIONAL,
                                                         inspect.Parameter.VAR_KEYWORD]


def _own_signature(func: Any) -> Any | None:
    """The signature of a function a decorator made with ``functools.wraps``, where it is
    not the wrapped function's (the wrapper takes parameters of its own: ``verbose=``); None
    for any other callable, and for a pass-through ``(*args, **kwargs)`` (``_own_binder``).
    Read from its code, not from a ``__signature__`` set on it."""
    own = _code_signature(func)
    if own is None or _passes_through(func):
        return None
    try:
        if own == signature(func):
            return None
    except (TypeError, ValueError):
        return None
    return own


def _bound_elsewhere(target: Any) -> bool:
    """Whether a call of ``target`` is bound by a signature that is not its code's: another
    function's (``__wrapped__``, which ``inspect.signature`` follows: a decorator's
    wrapper, also wrapt's, ``functools.singledispatch``, ``lru_cache``), or a
    ``__signature__`` set on it; a ``functools.partialmethod``'s function (the signature
    is its ``func``'s), or an instance whose class's ``__call__`` is one, or wraps another
    (``__call__ = lru_cache(fn)``). Its binder then keys the call's shape too
    (``_keys._shaped``), and ``ignore=`` is checked (``_warn_unread``): before, those
    last were not, and one returned another call's value."""
    if attribute(target, "__wrapped__") is not None or made_by_partialmethod(target):
        return True
    if not isinstance(target, (FunctionType, type)):
        call = call_of(type(target))
        if call is not None and type(call) is not FunctionType and (
                getattr(call, "__wrapped__", None) is not None
                or isinstance(call, functools.partialmethod)):
            return True
    return "__signature__" in (attribute(target, "__dict__", dict) or ())


def _warn_unread(target: Any, option: str, so: str) -> None:
    """Warn, when decorated, that ``option`` (``ignore=``, ``files=``, ``key=``) takes the
    arguments where the function's signature puts them, under a decorator that is not read
    as passing the call on unchanged (``_wrappers.passes_on_unchanged``): the wrapper runs
    the call, and may pass an argument on as another parameter, after one it adds
    (``fn(SESSION, *args, **kwargs)`` runs ``f(5, 1)`` with 5 as ``x``, not as
    ``session``), in place of one it takes (``def wrapper(factor, *args)``), from a
    keyword it takes (``def wrapper(session=None, *args)``, ``kwargs.pop("session")``).
    Ignored parameters then count in the key: before, they were left out, and ``f(6,
    1)`` returned ``f(5, 1)``'s value."""
    warn(f"{option} of {function_name(target)}: memojar cannot read the decorator between "
         f"@cached and the function as passing the call on unchanged (it may pass an "
         f"argument on as another parameter: fn(SESSION, *args, **kwargs)), and {option} "
         f"takes the arguments where the function's signature puts them, {so}; put that "
         f"decorator above @cached")


def _without_wrapped(func: FunctionType) -> FunctionType:
    """A copy of ``func`` without ``__wrapped__``, whose signature is its own."""
    copy = FunctionType(func.__code__, func.__globals__, func.__name__, func.__defaults__,
                        func.__closure__)
    copy.__kwdefaults__ = func.__kwdefaults__
    copy.__qualname__ = func.__qualname__
    return copy


def _keyword_defaults(watched: Any) -> dict[str, Any] | None:
    """The ``__kwdefaults__`` dict that binds a call of ``watched`` (``_watched``): its own,
    or under ``functools.wraps`` wrappers the wrapped function's."""
    func = watched.inner if type(watched) is _Wrapping else watched
    kwdefaults = getattr(func, "__kwdefaults__", None) if type(func) is FunctionType else None
    return kwdefaults if type(kwdefaults) is dict else None


def _never() -> bool:
    return False


_NO_DEFAULT = object()


def _in_place_check(kwdefaults: dict[Any, Any] | None) -> Callable[[], bool]:
    """A function saying whether ``kwdefaults``, a keyword defaults' dict (which can change
    in place: ``f.__kwdefaults__["scale"] = 100``), no longer binds each of its names as
    now: one removed, or bound to another object. By identity, as ``==`` cannot tell an
    equal value of another type (``1.0`` or ``True`` for ``1``, ``-0.0`` for ``0.0``),
    which keys, and may compute, otherwise: before, a copy compared with ``==`` kept the
    memory tier's values of ``scale=1`` after ``scale = 1.0``. A name added binds no call
    that bound before (the binder reads the dict itself). Generated from the dict's items,
    read at once (another thread may change it), named by number alone, held as defaults
    (locals): about 35 ns more than ``==`` for one default."""
    if kwdefaults is None:
        return _never
    items = tuple(kwdefaults.items())
    made: Callable[[], bool] = FunctionType(
        _check_code(len(items)), {}, "changed",
        (kwdefaults.get, _NO_DEFAULT, *(part for item in items for part in item)))
    return made


@functools.cache
def _check_code(count: int) -> CodeType:
    """The code of ``_in_place_check``'s function for a dict of ``count`` names, compiled
    once per count (each function is this code with its own defaults: before, compiled at
    each decoration, 90 µs of it for a function with keyword defaults)."""
    params = ["_get=None", "_absent=None",
              *(f"_k{at}=None, _v{at}=None" for at in range(count))]
    terms = [f"_get(_k{at}, _absent) is not _v{at}" for at in range(count)]
    namespace: dict[str, Any] = {}
    exec(f"def changed({', '.join(params)}):\n    return {' or '.join(terms) or 'False'}\n",
         namespace)
    code: CodeType = namespace["changed"].__code__
    return code


def _as_it_is(func: Any) -> tuple[Any, Any, Any]:
    """A function's code, defaults and keyword defaults, compared by identity per call."""
    return func.__code__, func.__defaults__, func.__kwdefaults__


def _reassigned(func: Any, known: tuple[Any, Any, Any]) -> bool:
    """Whether ``func``'s code or defaults are no longer the objects ``known`` (off the hit
    and miss paths: ``key_of``, the memory tier, ``_started`` and ``_computed`` compare
    inline). Spelt out, not a loop over ``_as_it_is``: a generator costs ten frames."""
    code, defaults, kwdefaults = known
    return (func.__code__ is not code or func.__defaults__ is not defaults
            or func.__kwdefaults__ is not kwdefaults)


def _clock() -> float:
    """The time now, looked up at each call (tests stand in for this module's ``time``)."""
    return time.time()


def _with_bound(call_key: Callable[..., _Args], args: _Args, kwargs: dict[str, Any],
                *call_args: Any, **call_kwargs: Any) -> _Args:
    return (args, kwargs, *call_key(*call_args, **call_kwargs))


def _glob_magic(value: Any) -> bool:
    """True if a ``files=`` argument is a glob pattern (matching nothing is not missing)."""
    import glob

    return bool(glob.has_magic(os.fsdecode(value)))


def _shown_path(value: Any) -> str:
    """A ``files=`` argument for a message: a path (``str``, ``bytes``, ``os.PathLike``) as
    its text, anything else as its ``repr``."""
    try:
        return repr(os.fsdecode(value))
    except TypeError:  # not a path
        return repr(value)


def make_wrapper(memo: _Memo, disabled: bool) -> Callable[..., Any]:
    """The decorated function: the original's signature and docs, plus the cache methods.

    The variant is picked here, once: straight through (``MEMOJAR_DISABLE``), with a memory
    tier, with stale-while-revalidate, or the plain disk cache. Each reads ``SWITCH.active``
    (one attribute) for ``memojar.disabled()``."""
    func = memo.func
    key_of, get = memo.key_of, memo.get
    switch = SWITCH
    swr = memo.swr is not None
    hit = memo.hit_count.bump
    wrapper: Callable[..., Any]
    coroutine = _is_coroutine_function(memo.target)  # a bound method or partial: what runs

    def call_key(args: _Args, kwargs: dict[str, Any], method: str) -> str:
        """``key_of`` for the cache method named ``method`` (not the call): a method's
        take ``self`` too."""
        try:
            return key_of(args, kwargs)
        except TypeError as exc:
            raise _takes_self(exc, func, method) from exc

    if coroutine:
        if memo.memory:
            warn(f"memory= of {memo.name} is not used: the memory tier holds results of "
                 "plain functions, not of async def functions")
        if disabled:
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                return await func(*args, **kwargs)
        else:
            remote = memo.store.remote  # the hit is a round trip: in a worker thread

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                if switch.active and switch.off(memo):
                    return await func(*args, **kwargs)
                key = key_of(args, kwargs)
                if swr:
                    loop = _running_loop()  # None: a stale entry is a miss (no background)
                    call = (args, kwargs, loop) if loop is not None else None
                    value = await _read(memo, get, key, call) if remote else get(key, call)
                else:
                    value = await _read(memo, get, key) if remote else get(key)
                if value is not MISSING:
                    hit()
                    return value
                return await memo.acompute(key, args, kwargs)

        async def refresh(*args: Any, **kwargs: Any) -> Any:
            """Recompute this call, store the result and return it (the entry is replaced)."""
            value = await memo.acompute(call_key(args, kwargs, "refresh"), args, kwargs, force=True)
            memo.replaced()
            return value
    else:
        if disabled:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return func(*args, **kwargs)
        elif memo.memory and memo.start_memory():
            wrapper = _memory_wrapper(memo)
        elif swr:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if switch.active and switch.off(memo):
                    return func(*args, **kwargs)
                key = key_of(args, kwargs)
                value = get(key, (args, kwargs))
                if value is not MISSING:
                    hit()
                    return value
                return memo.compute(key, args, kwargs)
        else:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if switch.active and switch.off(memo):
                    return func(*args, **kwargs)
                key = key_of(args, kwargs)
                value = get(key)
                if value is not MISSING:
                    hit()
                    return value
                return memo.compute(key, args, kwargs)

        def refresh(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            """Recompute this call, store the result and return it (the entry is replaced)."""
            value = memo.compute(call_key(args, kwargs, "refresh"), args, kwargs, force=True)
            memo.replaced()
            return value

    _wraps(wrapper, func)

    def cache_clear() -> int:
        """Remove every entry of this function and zero its counters; return how many
        entries were removed."""
        memo.hit_count.reset()  # this process's counts; the saved statistics keep theirs
        memo.miss_count.reset()
        return memo.clear()  # its own entries: its scope, this Python

    def cache_delete(*args: Any, **kwargs: Any) -> bool:
        """Remove the entry of this call, if any; return True if one was removed."""
        return memo.delete(call_key(args, kwargs, "cache_delete"))

    def cache_info() -> CacheInfo:
        """CacheInfo(hits, misses, entries, bytes): hits and misses of this process,
        entries and bytes stored for this function."""
        return memo.info()

    def cache_contains(*args: Any, **kwargs: Any) -> bool:
        """True if this call has a valid (fresh, compatible) entry; computes nothing."""
        return memo.contains(call_key(args, kwargs, "cache_contains"))

    def cache_key(*args: Any, **kwargs: Any) -> str:
        """The key of this call as a hex string (as ``memojar ls FUNCTION`` lists it)."""
        return call_key(args, kwargs, "cache_key")

    def cache_set(value: Any, /, *args: Any, **kwargs: Any) -> None:
        """Store ``value`` as the result of this call (seeding a cache, tests); the next
        call with these arguments returns it. Its compute time is recorded as 0.
        ``value`` is positional-only: the function may have a parameter named so."""
        memo.set_value(call_key(args, kwargs, "cache_set"), value, wait=not coroutine)
        memo.replaced()

    def cache_explain(*args: Any, **kwargs: Any) -> str:
        """One line: would this call hit, and if not why (no entry, stale since when, or
        what changed: the function's code, a helper, constant or class, the version, a
        package version, the Python version)."""
        call_key(args, kwargs, "cache_explain")  # a call that does not bind says so
        if disabled or (switch.active and switch.off(memo)):
            # The call runs the function and touches nothing: before, "hit" of its entry
            return ("miss: " + ("disabled by MEMOJAR_DISABLE" if disabled else
                                "disabled by memojar.disabled()")
                    + ": the call runs the function, reading and storing nothing")
        return one_line(memo.explain(args, kwargs))

    # Named as the user calls them (``f.cache_clear(1)``: "f.cache_clear() takes 0
    # positional arguments"; before, "make_wrapper.<locals>.cache_clear()").
    for method in (cache_info, cache_clear, cache_contains, cache_delete, cache_key,
                   cache_explain, refresh, cache_set):
        method.__qualname__ = f"{wrapper.__qualname__}.{method.__name__}"
    # a function takes attributes; mypy does not model that (wrapper is one of the defs)
    wrapper.cache_info = cache_info  # type: ignore[union-attr]
    wrapper.cache_clear = cache_clear  # type: ignore[union-attr]
    wrapper.cache_contains = cache_contains  # type: ignore[union-attr]
    wrapper.cache_delete = cache_delete  # type: ignore[union-attr]
    wrapper.cache_key = cache_key  # type: ignore[union-attr]
    wrapper.cache_explain = cache_explain  # type: ignore[union-attr]
    wrapper.refresh = refresh  # type: ignore[union-attr]
    wrapper.cache_set = cache_set  # type: ignore[union-attr]
    wrapper.__memojar__ = memo  # type: ignore[union-attr]
    memo.wrapper = weakref.ref(wrapper)
    return wrapper


_NAMES = ("__module__", "__name__", "__qualname__")  # what a function holds as a str


def _wraps(wrapper: Callable[..., Any], func: Any) -> None:
    """``functools.update_wrapper(wrapper, func)``; for an object of the user's whose
    lookups raise (a ``__getattr__`` or a property of its class: ``__dict__``, ``__name__``)
    or answer with what a function cannot hold (``__name__`` 42, from a ``__getattr__``
    answering every name), what of it a function can take, memojar's own for the rest.
    Before, either failed the decoration inside memojar."""
    own = {name: getattr(wrapper, name) for name in _NAMES}
    try:
        functools.update_wrapper(wrapper, func)
        return
    except Exception as exc:  # whatever the object's lookups raised, or a name not a str
        if the_callers(exc):
            raise
    for name in functools.WRAPPER_ASSIGNMENTS:
        value = attribute(func, name, str if name in own else object)
        if value is None:
            value = own.get(name)
        if value is not None:
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                setattr(wrapper, name, value)  # (a __type_params__ that is no tuple)
    with contextlib.suppress(TypeError, ValueError):  # (a mapping that breaks as it is read)
        wrapper.__dict__.update(attribute(func, "__dict__", dict) or {})
    wrapper.__wrapped__ = func  # type: ignore[attr-defined]


def _takes_self(exc: TypeError, func: Callable[..., Any], method: str) -> TypeError:
    """``exc`` (the arguments of the cache method ``method`` do not bind), with how to call
    it for a method: ``obj.f.cache_contains(3)`` bound 3 to ``self`` and said only "missing
    1 required positional argument: 'x'". Named as called: before, every method's hint
    showed ``cache_contains``."""

    try:
        first = next(iter(signature(func).parameters), None)
    except (TypeError, ValueError):  # no signature to read
        return exc
    if first not in ("self", "cls"):
        return exc
    name = attribute(func, "__name__", str) or "f"
    obj = "obj" if first == "self" else "Cls"
    value = "value, " if method == "cache_set" else ""  # (its value comes first)
    return TypeError(f"{exc} (the cache methods of a method take {first} too: "
                     f"{obj}.{name}.{method}({value}{obj}, ...) for the call "
                     f"{obj}.{name}(...))")


_SIMPLE = frozenset({int, str, bytes, type(None)})  # equal only to their own type's values


def _fixed(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` cannot change in place: None, numbers, str, bytes, and tuples and
    frozensets of them."""
    if type(value) in _FIXED:
        return True
    if type(value) in (tuple, frozenset) and depth < 10:
        return all(_fixed(item, depth + 1) for item in value)
    return False


_FIXED = frozenset({int, float, complex, bool, str, bytes, type(None), type(...)})


def _fixed_defaults(func: Any) -> bool:
    """Whether the defaults of ``func`` (positional and keyword-only) cannot change in
    place (see ``_fixed``); True for a callable that is no plain function."""
    if type(func) is _Wrapping:  # the wrapped function's, which bind the usual call, and
        # the wrapper's own, which its key covers too (``_changing_defaults``)
        return all(map(_fixed_defaults, (func.inner, func.outer, *func.between)))
    defaults = getattr(func, "__defaults__", None) or ()
    kwdefaults = getattr(func, "__kwdefaults__", None) or {}
    return all(_fixed(value) for value in (*defaults, *kwdefaults.values()))


def _simple_types(memo: _Memo) -> frozenset[type]:
    """The argument types the memory tier holds calls by, for the defaults as they are."""
    bound = any(split(memo.func)[1:])
    return (frozenset() if getattr(memo, "files", ()) or memo.custom_key or bound
            or not _fixed_defaults(memo.watched) else _SIMPLE)


def _memory_wrapper(memo: _Memo) -> Callable[..., Any]:
    """The wrapper with a memory tier: the last ``memory`` results, by call.

    A call of plain arguments (int, str, bytes, None: values equal only to values of their
    own type, as the disk key requires) is looked up by its arguments themselves, without
    hashing; any other call by its disk key. Each call first compares the store's
    generation stamp (mapped memory, no system call): a removal in any process changes it,
    and the tier forgets everything. An entry's expiry is kept with its value."""
    func, key_of = memo.func, memo.key_of
    switch, clock = SWITCH, time
    hit, tally = memo.hit_count.bump, memo.tally
    # A path argument's file may change (files=), a key= function may read more than the
    # arguments (``key=lambda path: (path, os.stat(path).st_mtime)``), and an instance or
    # value bound to the function (``cached(obj.method)``, a partial's arguments) is in
    # the key and may change in place: such calls are always keyed, as without a memory
    # tier.
    # So is every call of a function with a default that may change in place (a dict or
    # list given as a default, a module's options table): the key binds its content, the
    # arguments alone do not (before, f(1) returned the value of the default's old content
    # from memory). Decided from the defaults as decorated, and again by ``renew`` when
    # they are reassigned, in place: a set, not a frozenset (the same lookup). Before,
    # after ``f.__wrapped__.__defaults__ = ([],)`` f(1) kept being held by its arguments,
    # and returned the value of the list's old content.
    simple = memo.simple = set(_simple_types(memo))
    watched = memo.watched

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if switch.active and switch.off(memo):
            return func(*args, **kwargs)
        # As ``key_of`` (a call of plain arguments does not get there); ``watched``, the
        # function object, stays the same: only its attributes are reassigned.
        if (watched.__code__ is not memo.code
                or (memo.defaults is not None and watched.__defaults__ is not memo.defaults)
                or (memo.kwdefaults is not None
                    and (watched.__kwdefaults__ is not memo.kwdefaults
                         or memo.kwchanged()))):  # (``hold``)
            memo.renew()
        if memo.generation[0] != memo.stamp:
            memo.forget()
        if kwargs:
            mkey: Any = (args, tuple(kwargs.items()))
            values: _Args = (*args, *kwargs.values())
        else:
            mkey = values = args
        for value in values:
            if type(value) not in simple:
                mkey = key_of(args, kwargs)  # a str: never equal to a tuple of arguments
                break
        recent = memo.recent  # an attribute, not a closure cell: a copy gets its own
        held = recent.get(mkey)
        # ``time.time`` looked up at each hit, as the disk's hit and ``cache_explain`` do:
        # a test patching it after decorating (``mock.patch``, freezegun) moves every
        # clock (before, this one kept the function it found when decorated, and served
        # a value cache_explain called stale). One lookup: noise in a memory hit.
        if held is not None and held[3] <= clock.time() < held[1]:
            try:
                recent.move_to_end(mkey)
            except KeyError:  # forgotten by another thread meanwhile: still this value
                pass
            hit()
            tally.saved += held[2]
            return held[0]
        return memo.fill(mkey, args, kwargs)

    return wrapper


# seconds between looks at a cycle across processes while waiting: doubling up to
# NOTE_AGAIN_MAX while what is behind the wait stays the same (a long wait for a slow holder
# costs a remote store a request or two a second at most), back to NOTE_AGAIN when it changes
NOTE_AGAIN = 0.2
NOTE_AGAIN_MAX = 2.0
# seconds a waiter that sees a cycle leaves it to another that sees it too (``_Across``),
# for each id behind its wait smaller than the one it waits for, before it breaks it itself
YIELD_FOR = 0.5
YIELD_MAX = 5.0


class _Across:
    """A lock-order cycle across processes (``KeyLock.note_waiting``), for a wait for
    ``lock`` (``here``) by a caller holding the locks ``holding`` ([its mark, its KeyLock];
    ``ends`` gets what ends the notes): ``look`` notes what is behind the wait and says
    the cycle, if any ([``here``, the held lock it goes through]); the waiter looks again
    while it waits (every ``NOTE_AGAIN`` to ``NOTE_AGAIN_MAX`` seconds), so that a ring
    whose waiters noted at the same moment is seen once their notes have gone round it.

    The waiters of a ring see the same ids behind their waits (those of the ring, and of
    callers waiting for it): the one whose wait is for the smallest breaks the ring at
    once, the others wait for it (one computation without the lock, not one per waiter).
    One whose wait is for a lock of a larger id breaks it after ``YIELD_FOR`` seconds for
    each smaller id behind it (``YIELD_MAX`` at most): the smallest may be a caller's
    waiting for the ring, not of it, or a waiter's whose note failed."""

    def __init__(self, lock: Any, here: tuple[str, str, str],
                 holding: list[tuple[Any, Any]], ends: list[Callable[[], None]]) -> None:
        self.lock, self.here, self.ends = lock, here, ends
        self.holding = holding
        self.cycle: list[tuple[str, str, str]] | None = None
        self.last, self.every = 0.0, NOTE_AGAIN
        self.behind: set[int] = set()  # as of the last look
        self.seen = 0.0  # when a cycle was first seen and left to another waiter

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every

    def meanwhile(self, look: Callable[[], bool] | None) -> bool:
        """``KeyLock.acquire_within``'s look: True once the cycle is seen (``cycle``), or
        if ``look`` says so."""
        if self.due() and self.look() is not None:
            return True
        return look() if look is not None else False

    def look(self) -> list[tuple[str, str, str]] | None:
        self.last = time.monotonic()
        behind: dict[int, Any] = {}  # an id behind the wait -> the held lock (mark, id)
        mine = []
        for mark, held in self.holding:
            got = held.wait_id()
            if got is not None:
                behind.setdefault(got, (mark, got))
                mine.append((mark, got, held))
        if not mine:
            return None
        for mark, got, held in mine:
            for i in held.waiters():
                behind.setdefault(i, (mark, got))
        lock = self.lock
        lock.note_waiting(behind, self.ends)
        me = lock.wait_id() if self.ends else None
        if me is None:
            return None
        for mark, got, held in mine:  # again once noted: a waiter that noted meanwhile
            for i in held.waiters():
                behind.setdefault(i, (mark, got))
        lock.note_waiting(behind, self.ends)
        if behind.keys() == self.behind:
            self.every = min(self.every * 2, NOTE_AGAIN_MAX)
        else:
            self.behind, self.every = set(behind), NOTE_AGAIN
        if me not in behind:
            self.seen = 0.0
            return None
        self.every = NOTE_AGAIN  # a cycle: look again soon, until it is broken
        mark, through = behind[me]
        smaller = sum(1 for i in behind if i < me)
        if not smaller or me == through:  # this one breaks it (or it waits for itself)
            self.cycle = [self.here, mark]
        elif not self.seen:
            self.seen = self.last
        elif self.last - self.seen >= min(YIELD_FOR * smaller, YIELD_MAX):
            self.cycle = [self.here, mark]
        return self.cycle


def _end_all(ends: list[Callable[[], None]]) -> None:
    """End the notes of a wait (``_Across``). An interrupt inside one (Ctrl-C as the wait
    ends) ends it and those after it once more, then goes on: each end is idempotent, and
    a note left noted said, to every other process, a wait that was over (a cycle broken
    where there was none, the lock file kept from ``prune``) for the process's life."""
    for i, end in enumerate(ends):
        try:
            end()
        except BaseException:
            for again in ends[i:]:
                again()
            raise


def _keep_alive(loop: Any, task: Any) -> None:
    """Keep a background task alive while its loop can run it (an asyncio loop holds its
    tasks by weak references only): by a timer of the loop that never fires, cancelled once
    the task is done. A loop closed under the task drops its timers, and the task is then
    collected unfinished: its coroutine's clean-up gives back the key's lock. Before, a set
    of memojar's held the task, which was never collected: the lock (the directory's flock,
    a Redis or S3 lease renewed for nobody) and the key's mark of being recomputed stayed
    for the process's life, and every later caller here or elsewhere waited
    ``lock_timeout``. A trio system task is held by its run."""
    if not isinstance(loop, _trio.Loop):
        timer = loop.call_later(_FOREVER, _nothing, task)
        task.add_done_callback(lambda _: timer.cancel())


def _nothing(*_: Any) -> None:
    pass


def _unless_run(handle: Any, dropped: Callable[[list[str]], None], queued: list[str]) -> None:
    """Call ``dropped(queued)`` when ``handle`` (a callback an asyncio loop queued) is let
    go; its callback empties ``queued`` when it runs, so only one never run (its loop
    closed first) is told. A trio run's callbacks have no handle (trio runs them or
    raises); a loop's handle that takes no weak reference is left to run."""
    if handle is not None:
        with contextlib.suppress(TypeError):
            weakref.finalize(handle, dropped, queued)


async def _inline(call: Callable[..., Any], *args: Any, undo: Any = None,
                  finish: bool = False) -> Any:
    return call(*args)


def _read(memo: _Memo, get: Callable[..., Any], *args: Any) -> Any:
    """``get(*args)`` in a worker thread (awaited: a remote store's read of a coroutine's
    call). The store's first read warns if it has no secret: that read is given the
    awaiting line (``at_site``), where the warning points. Before, it pointed at
    ``concurrent/futures/thread.py``, the worker's first frame outside memojar."""
    if memo.store._warned:
        return _in_thread(get, *args)
    return _in_thread(at_site, user_site(), get, *args)


def _at_site_in_thread(site: Any) -> Callable[..., Any]:
    """``_in_thread`` whose calls warn at ``site`` (the caller's awaiting line): the miss
    path's. The hit path calls ``_in_thread`` itself and finds nothing first."""

    async def run(call: Callable[..., Any], *args: Any, undo: Any = None,
                  finish: bool = False) -> Any:
        if undo is not None:
            undo = functools.partial(at_site, site, undo)
        return await _in_thread(at_site, site, call, *args, undo=undo, finish=finish)

    return run


async def _in_thread(call: Callable[..., Any], *args: Any, undo: Any = None,
                     finish: bool = False) -> Any:
    """``call(*args)`` in a worker thread, so that the event loop never waits on a server.

    A caller cancelled meanwhile does not stop the thread: if the call returns true after
    all (a lock taken), ``undo`` runs (the lock is given back, never left held and renewed
    for nobody), in the worker thread or, if the call had returned already, in another.

    With ``finish`` (storing a computed value, giving a lock back) the call is made and
    waited for whatever happens to the caller, and a cancellation that arrives meanwhile is
    raised once it has returned. Cancelling a plain ``asyncio.to_thread`` while its call is
    still queued for a worker drops the call: a lock then stayed held, renewed by this
    process for nobody, and every caller of the key waited ``lock_timeout``. In a coroutine
    closed unfinished (``_closing``: its task collected after its loop was closed) such a
    call is made here, the only place left to make it."""
    if finish and sys.exc_info()[0] is GeneratorExit and _closing():  # see above
        return call(*args)
    if _no_loop():  # a coroutine driven by no loop memojar knows: see ``_no_loop``
        return call(*args)
    if undo is not None:
        job = _Undoable(call, args, undo)
        try:
            return await _in_thread(job)
        except BaseException:  # cancelled while the call was queued or ran
            job.left()
            raise
    if _trio.running() is not None:
        return await _trio.in_thread(call, args, finish)
    import asyncio

    if finish:
        made = asyncio.get_running_loop().run_in_executor(
            None, functools.partial(contextvars.copy_context().run, call, *args))
        cancelled: BaseException | None = None
        with _anyio_shield():
            while not made.done():
                try:
                    await asyncio.wait((made,))  # cancelling the wait leaves the call alone
                except asyncio.CancelledError as exc:
                    cancelled = exc
        if cancelled is not None:
            try:
                raise cancelled
            finally:  # this frame is in its traceback: no cycle through the call's arguments
                del cancelled, made, args
        return made.result()
    return await asyncio.to_thread(call, *args)


def _anyio_shield() -> Any:
    """A shielded cancel scope of anyio if it is imported, else nothing. A cancelled scope
    of anyio's asyncio backend cancels its task again at every turn of the loop until the
    task leaves it: ``_in_thread``'s wait for a finishing call, which goes on waiting, was
    woken at each, the loop's thread busy for as long as the call took (a slow server's
    store: a core). Shielded, the scope's cancellation comes at the caller's next await."""
    anyio = sys.modules.get("anyio")
    return contextlib.nullcontext() if anyio is None else anyio.CancelScope(shield=True)


def _closing() -> bool:
    """Whether the ``GeneratorExit`` being handled closes the coroutine making this call,
    which can then await nothing: thrown into a coroutine (only ``close`` does that: the
    collector's, of a task whose loop was closed), or with no loop running in this thread.
    Not one thrown into an async generator by an ``aclose`` awaited on a running loop (a
    cached call in its ``finally``): that call awaits as any other. Before, it too was
    made here, on the loop's thread, which ran no other task until the server answered."""
    handling = sys.exc_info()[1]
    trace = handling.__traceback__ if handling is not None else None
    if trace is None or trace.tb_frame.f_code.co_flags & 0x80:  # inspect.CO_COROUTINE
        return True
    return _no_loop()


def _unmarked(held: tuple[tuple[str, str, str], ...],
              here: tuple[str, str, str]) -> tuple[tuple[str, str, str], ...]:
    """``held`` (``_held``'s marks) without ``here``."""
    return tuple(mark for mark in held if mark != here) if here in held else held


def _no_loop() -> bool:
    """Whether this thread runs neither an asyncio loop nor a trio run: a coroutine driven
    by something else (Twisted's ``Deferred.fromCoroutine`` on its own reactor, curio, a
    test's ``coro.send(None)``), which memojar cannot hand work to. A store's calls are then
    made in the caller's thread, as a plain function's are, a wait for a key's lock sleeps
    there, and a stale entry (``stale_while_revalidate``) is a miss, recomputed in the call.
    Before, every call of such a coroutine with a remote store raised "no running event
    loop" from memojar, its function never run; with ``stale_while_revalidate``, on any
    store."""
    return _asyncio_task_loop() is None and _trio.running() is None


def _asyncio_task_loop() -> Any:
    """The running asyncio loop if an asyncio task of it runs this coroutine, else None.
    A loop running in this thread is not enough: Twisted's ``asyncioreactor`` drives a
    coroutine (``Deferred.fromCoroutine``, ``ensureDeferred``) from the loop's callbacks,
    in no task, and a future awaited there is sent back to the coroutine at once (before,
    every call on a remote store raised "await wasn't used with future", the function
    never run; on the file store, a wait for another caller's lock did)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    loop = asyncio._get_running_loop()
    if loop is None or asyncio.current_task(loop) is None:
        return None
    return loop


async def _sleep(seconds: float) -> None:
    """A wait of a coroutine: on its loop, or (``_no_loop``) in its thread."""
    if _trio.running() is not None:
        await _trio.sleep(seconds)
        return
    if _asyncio_task_loop() is None:
        time.sleep(seconds)
    else:
        import asyncio

        await asyncio.sleep(seconds)


class _Undoable:
    """A call in a worker thread (``_in_thread``) whose caller may leave before it returns:
    ``undo`` runs if it returns true after the caller left (``left``), in the worker thread,
    or, if it had returned already, in another."""

    __slots__ = ("args", "call", "mutex", "outcome", "undo")

    def __init__(self, call: Callable[..., Any], args: tuple[Any, ...], undo: Any) -> None:
        self.call, self.args, self.undo = call, args, undo
        self.mutex = threading.Lock()
        self.outcome: list[Any] = []  # the call's result, and/or None once the caller left

    def __call__(self) -> Any:
        result = self.call(*self.args)
        with self.mutex:
            left = bool(self.outcome)
            self.outcome.append(result)
        if left and result:
            self.undo()
        return result

    def left(self) -> None:
        with self.mutex:
            returned = bool(self.outcome)
            self.outcome.append(None)
        if returned and self.outcome[0]:
            threading.Thread(target=self.undo, name="memojar-undo", daemon=True).start()


def _running_loop() -> Any:
    """The caller's event loop, for a stale hit's background recomputation: asyncio's, or
    under trio the run's (``_trio.Loop``); None under neither (``_no_loop``: a coroutine
    driven in no asyncio task, as by Twisted's ``asyncioreactor``, would have its function
    recomputed by an asyncio task, which cannot await what its driver's can)."""
    loop = _asyncio_task_loop()
    if loop is None and _trio.running() is not None:
        return _trio.Loop()
    return loop


def _near_recursion_limit() -> bool:
    """True if the stack is within a few dozen frames of the recursion limit."""
    depth = 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth > sys.getrecursionlimit() - 100


def _is_coroutine_function(func: Callable[..., Any]) -> bool:
    code = attribute(func, "__code__", CodeType)  # (a proxy may answer it with anything)
    return code is not None and bool(code.co_flags & 0x80)  # inspect.CO_COROUTINE
