"""The Redis store's connections: a client whose pool never lends out a connection that
may still hold a reply nobody read.

redis-py sends a command, then reads its reply; an interrupt (Ctrl-C, a signal handler's
exception, a thread's async exception) that lands between the two, or between the
replies of a pipeline, is outside redis-py's own clean-up, and the connection goes back
to the pool with the reply unread. The next command on it reads that reply as its own:
a GET answered with another key's entry, or with a number. The pool closes a connection
given back while an exception other than the server's own error reply propagates.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import functools
import gc
import operator
import os
import queue
import re
import ssl
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from . import _redisoptions
from ._errors import logger, raise_the_callers_within, the_callers

__all__ = ["Stamps", "connect", "connections", "exhausted", "sent"]


_RLOCK = type(threading.RLock())
_THREAD = operator.itemgetter(0)  # a waiter's thread (``_Pool._memojar_waiters``)
_MAX_CONNECTIONS = 2**31  # redis-py's own default up to 5 (see ``connect``)


class _Pool(redis.ConnectionPool):
    """Closes a connection given back by an exception raised while it was lent out.

    Its locks are reentrant (redis-py's own from 7 on; plain locks before): a signal
    handler calling a cached function while its thread was inside the pool's lock (making
    a connection, whose constructor runs Python code) waited there for its own thread for
    ever. What the lock guards (the lists of free and lent connections, the count made)
    stays whole when a handler runs inside it: each step is one list or set operation, and
    the handler's call takes or makes a connection of its own.

    A forked child gets locks of its own (``_pools_after_fork``): a thread of the parent
    inside one at the fork (lending or making a connection) left it held in the child,
    whose first command waited on it for ever (redis-py's ``reset`` after a fork takes the
    pool's lock first)."""

    def reset(self) -> None:
        super().reset()  # redis-py 5 makes ``_lock`` here, 6 in ``__init__``, before this
        if not isinstance(self._lock, _RLOCK):
            self._lock = threading.RLock()
        # Lent connections weakly held: one that no request holds any more (an interrupt
        # in redis-py's code took it from its request before that request's ``try``) is
        # collected and left out of the count (``_reclaim``), not lent for good.
        self._in_use_connections = weakref.WeakSet(  # type: ignore[assignment]
            self._in_use_connections)
        if not isinstance(getattr(self, "_fork_lock", None), _RLOCK):
            # once, from ``__init__``: never while it is held (``_checkpid`` calls
            # ``reset`` under it after a fork, when it is already an RLock)
            self._fork_lock = threading.RLock()
        # The threads waiting for a connection given back (``get_connection``), first come
        # first served: each its thread, a queue that wakes it and a list a release hands
        # it a connection in (``_hand_over``). A forked child starts with none: its
        # parent's waiters are not its threads.
        self._memojar_waiters: collections.deque[
            tuple[int, queue.SimpleQueue[None], list[Any]]] = collections.deque()
        self._memojar_starved = False
        self._memojar_collections = 0  # begun by waits out of time (``get_connection``)
        # A connection given back by a timeout or a lost connection (the server silent or
        # gone): counted, with the fault, so that a thread that waited for a connection
        # meanwhile fails at once (``get_connection``)
        self._memojar_faults = 0
        self._memojar_fault: tuple[type[RedisError], str] | None = None
        _pools.add(self)

    def make_connection(self) -> Any:
        """redis-py's, but a pool with every connection lent out answers with
        ``_TooMany``, whose ``connect`` raises "Too many connections" after redis-py's
        ``get_connection`` has left its ``with self._lock:`` (``release`` drops it from the
        books). redis-py raised it inside that block, and Python 3.10 runs a pending signal
        handler at the start of a ``with``'s exception handler, before ``__exit__``: a
        handler raising there (Ctrl-C) left the pool's lock held for good, and every other
        thread's request waited for it for ever, the interpreter's exit too (twelve threads
        through a pool of two, SIGALRM raising every 1 to 1.5 ms: a hang in about one run
        of eight under load)."""
        if self._created_connections >= self.max_connections:
            return _TooMany()
        return super().make_connection()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            connection: Any = super().get_connection(*args, **kwargs)
        except RedisConnectionError as exc:
            if not exhausted(exc) or (self._memojar_starved and not self._reclaim()):
                raise
            connection = None
        if connection is None:
            # A ``max_connections`` set in the URL, all lent out (as many threads calling
            # at once): the call waits for one given back, for socket_timeout at most, as
            # for a server's answer. Before, it failed at once with redis-py's "Too many
            # connections", a ConnectionError, which the store took for a server it cannot
            # reach: the result not stored, and every call skipping the server for a
            # while. Once a wait ran out, later requests fail at once until a connection
            # is given back (``release``): a call of several requests waits one
            # socket_timeout in all. A release hands its connection to the first waiter
            # (``_hand_over``), which wakes at once, and no thread calling again takes it
            # first: a waiter woken for a connection given back to the pool found it
            # taken by the thread that gave it back, and waited again, passed over until
            # its socket_timeout ran out. The wait itself is ``_wait``'s; a connection
            # taken and then interrupted on its way back is given back (below), or, cut
            # from its caller by an interrupt at its return, collected and counted gone
            # (``_reclaim``).
            deadline = time.monotonic() + (self.connection_kwargs.get("socket_timeout") or 0)
            faults, collections_then = self._memojar_faults, self._memojar_collections
            me = threading.get_ident()
            # A signal handler's request waiting while its own thread waits further down
            # the stack: the handler is this thread's waiter that a release hands a
            # connection to (``_hand_over``), and it takes one its thread's wait was
            # handed and has not taken (that wait cannot run until the handler returns)
            told: list[RedisError] = []  # another thread's fault, raised by ``_wait``
            waiter: tuple[int, queue.SimpleQueue[None], list[Any]] = (
                me, queue.SimpleQueue(), [])
            try:
                with self._lock:  # (no loop of Python's inside: see ``_wait``)
                    outer = next(filter(lambda w: w[0] == me and w[2],
                                        list(self._memojar_waiters)), None)  # (a copy: see
                    if outer is not None:  # ``_hand_over``)
                        waiter[2].append(outer[2].pop())
                    self._memojar_waiters.append(waiter)
                connection = self._wait(waiter, deadline, faults, collections_then, told,
                                        args, kwargs)
                with self._lock:  # out of the line: nothing handed over from here
                    self._memojar_waiters.remove(waiter)
                if waiter[2]:  # handed over as well, after a connection taken or handed:
                    self.release(waiter[2].pop())  # for another
            except BaseException:  # (an interrupt, a connection refused, out of time)
                try:
                    with self._lock, contextlib.suppress(ValueError):
                        self._memojar_waiters.remove(waiter)
                    # taken or handed over, then interrupted: not lent for good
                    for held in {id(c): c for c in (connection, *waiter[2])
                                 if c is not None}.values():
                        if told:  # no request ran on it: not a fault of its own.
                            # Before, counted as one more (``release``), which failed the
                            # next waiter, which gave back its own the same way: every
                            # waiter failed, for as long as threads kept calling, the
                            # server answering.
                            held._memojar_around = told[0]
                        self.release(held)
                finally:  # the error raised holds this frame: kept in it, a cycle
                    told.clear()
                raise
        # an exception already being handled when the command starts (memojar talking to
        # the server from an ``except`` block) is not one that cut the command short
        connection._memojar_around = sys.exc_info()[1]
        return connection

    def _wait(self, waiter: tuple[int, queue.SimpleQueue[None], list[Any]], deadline: float,
              faults: int, collections_then: int, told: list[RedisError], args: Any,
              kwargs: Any) -> Any:
        """``get_connection``'s wait for a connection (``waiter`` in the line): the one
        handed over, or one free; raises as the wait ends without one. A loop of its own:
        Python 3.13 runs a signal handler at a loop's jump back outside the ``try`` around
        it (the jump after an ``if`` is in no handler's range), and an interrupt there
        skipped ``get_connection``'s clean-up: the waiter stayed in the line, where a
        release could hand it a connection, lost for good; and inside the pool's lock
        (``_hand_over``'s loop) the lock was never given back: every other thread's
        request waited for it for ever (a SIGALRM raising every 1 to 4 ms in one thread
        of seven through a pool of two: within 6 s, the lock held and 20 to 100 of that
        thread's waits left in the line). Here the handler's exception leaves this frame
        at the call in ``get_connection``'s ``try``."""
        collected = False
        while True:
            fault = self._memojar_fault
            if self._memojar_faults != faults and fault is not None:
                # The server timed out (or was lost) on a request of another
                # thread while this one waited: the store marks it down, and this
                # request would wait a socket_timeout more on the connection
                # given back (two in all for the call, before). A connection
                # handed over is passed on (below), to fail the same way.
                told.append(fault[0](f"{fault[1]} (a request of another thread, while "
                                     "this one waited for a connection)"))
                raise told[0]
            if waiter[2]:  # handed over by a release: taken out of the list before
                # anything runs (a signal handler's wait of this thread takes one
                # its thread's wait was handed: never the one it connects or uses)
                connection = waiter[2].pop()
                try:
                    connection.connect()  # (disconnected if given back by a fault)
                except BaseException:
                    self.release(connection)
                    raise
                return connection
            try:
                return super().get_connection(*args, **kwargs)
            except RedisConnectionError as exc:
                if not exhausted(exc):
                    raise
                if self._lock._is_owned():  # type: ignore[attr-defined]
                    # A signal handler's request, its thread inside the pool's lock
                    # (lending or giving back a connection): none can be given back
                    # until the handler returns. Before, it waited out its
                    # socket_timeout with every other thread's release blocked.
                    raise
                if self._reclaim():
                    continue  # (and look again)
                remaining = deadline - time.monotonic()
                if remaining <= 0 and not waiter[2]:  # out of time, after a last look
                    if not collected:  # a connection lost in a cycle of references
                        # (its own handlers') is found: by one collection a wave of
                        # waits out of time, the first's. Before, one each, back to
                        # back, the GIL held: 20 waiters of a process of 6 million
                        # objects (0.4 s a collection) waited 9 s, socket_timeout 1 s.
                        collected = True
                        if self._memojar_collections == collections_then:
                            self._memojar_collections += 1
                            gc.collect()
                        continue
                    self._memojar_starved = True
                    raise
                with contextlib.suppress(queue.Empty):
                    waiter[1].get(timeout=max(remaining, 0))

    def _reclaim(self) -> bool:
        """Count no more the connections gone; True if there were any. An interrupt
        (Ctrl-C, a signal handler's exception) landing in redis-py's own code between its
        books and its caller's ``try`` (the metrics after a connection is lent, the
        moment before ``execute_command``'s ``try``, ``release`` between its two lists,
        ``make_connection`` after its count) left a connection lent, or counted, for
        good: with ``max_connections``, a SIGINT every 0.5 to 4 ms on one thread of seven
        sending commands through a pool of two left one lost after 6 s in 3 runs of 6,
        and every later request waited out its socket_timeout and failed 'Too many
        connections'. A lent connection no request holds any more is dropped from the
        pool's books when it is collected (``reset``); one counted and in neither list
        is gone. Looked at only when every connection is lent out."""
        if self._lock._is_owned():  # type: ignore[attr-defined]  # a signal handler's
            # request, its thread inside the books (they may be halfway through a change)
            return False
        with self._lock:
            gone = (self._created_connections - len(self._in_use_connections)
                    - len(self._available_connections))
            if gone > 0:
                self._created_connections -= gone
        return gone > 0

    def _hand_over(self, connection: Any) -> bool:
        """Give ``connection`` (still lent) to the first waiter not handed one yet and
        wake it; False if there is none. A thread's waiter below its signal handler's,
        which cannot run until the handler returns, is passed over."""
        with self._lock:  # (no loop of Python's inside: see ``_wait``; C's look alone)
            # a copy, in one C call: a signal handler's wait run inside this look (its lock
            # is reentrant) adds to the line, and a deque changed while iterated raises
            waiters = list(self._memojar_waiters)
            innermost = dict(zip(map(_THREAD, waiters), waiters, strict=True))  # its last
            waiter = next(filter(lambda w: not w[2] and innermost[w[0]] is w, waiters), None)
            if waiter is None:
                return False
            try:
                waiter[2].append(connection)
            finally:  # (woken even if interrupted: it holds the connection)
                waiter[1].put(None)
            return True

    def release(self, connection: Any) -> None:
        if type(connection) is _TooMany:  # none was lent (``make_connection``)
            with self._lock:
                self._in_use_connections.discard(connection)
            _uncount(self)
            return
        self._memojar_starved = False
        raised = sys.exc_info()[1]
        around = getattr(connection, "_memojar_around", None)
        connection._memojar_around = None
        if raised is not None and raised is not around and not isinstance(raised, ResponseError):
            connection.disconnect()  # it may hold a reply: never read as another's
            if (isinstance(raised, (RedisConnectionError, RedisTimeoutError))
                    and not exhausted(raised)):
                self._memojar_fault = (
                    RedisTimeoutError if isinstance(raised, RedisTimeoutError)
                    else RedisConnectionError, str(raised))
                self._memojar_faults += 1
        if not (self._memojar_waiters and self._hand_over(connection)):
            super().release(connection)  # (one look for a release that nobody waits for)


class _TooMany:
    """What ``_Pool.make_connection`` lends when every connection is lent out: connecting
    it raises redis-py's "Too many connections", outside the pool's lock."""

    __slots__ = ("__weakref__",)  # (the pool's books of lent connections are weak)

    def connect(self) -> None:
        raise _TOO_MANY("Too many connections")

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to close: the pool closing every connection lent (redis-py's
        ``disconnect``, from the client's ``close`` or collection) meets this one too,
        between its lending and its ``connect``."""


_TOO_MANY: type[RedisConnectionError] = getattr(
    redis.exceptions, "MaxConnectionsError", RedisConnectionError)
# redis-py 7's ``make_connection`` counts the connection it makes idle for its metrics,
# and its ``get_connection`` every one it lends as taken from the idle ones (8's counts
# one it made as used, and nothing in ``make_connection``)
_MADE_IDLE = "record_connection_count" in redis.ConnectionPool.make_connection.__code__.co_names


def _uncount(pool: _Pool) -> None:
    """Takes back what redis-py's metrics (7.4 on, when OpenTelemetry is set up) counted
    for a ``_TooMany`` lent: its ``get_connection`` counts the connection it lends as used
    before connecting it, and the stand-in never reaches its ``release``. Left, each
    request that found every connection lent added one used connection for good to the
    pool's count (``db.client.connection.count``), and 7 one idle less."""
    record: Any = getattr(redis.connection, "record_connection_count", None)
    if record is None:  # (before 7.4: nothing counted)
        return
    state: Any = redis.connection.ConnectionState  # type: ignore[attr-defined]
    name = redis.connection.get_pool_name(pool)  # type: ignore[attr-defined]
    record(pool_name=name, connection_state=state.USED, counter=-1)
    if _MADE_IDLE:
        record(pool_name=name, connection_state=state.IDLE, counter=1)


_pools: weakref.WeakSet[_Pool] = weakref.WeakSet()


def _pools_after_fork() -> None:
    """In a forked child (one thread): every pool's locks its own, and nobody waiting."""
    for pool in list(_pools):
        pool._lock = threading.RLock()
        pool._fork_lock = threading.RLock()
        pool._memojar_waiters = collections.deque()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pools_after_fork)


class _Connected:
    """Counts the connections its pool made, a reconnection too (``connections``): the
    one sign that the server behind the address may have changed (a restart, a failover),
    had at no cost to any command. Runs redis-py's own handshake first."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, connection: Any) -> None:
        _connecting(connection.on_connect)  # (see ``_guarded``)
        self.count += 1


def _connecting(step: Callable[[], Any]) -> Any:
    """``step()``, a part of connecting, raising only ``RedisError``s and ``OSError``s (which
    redis-py makes its ``ConnectionError``), or the caller's own exception (``the_callers``);
    anything else as redis-py's ``ConnectionError``, a fault of the store (``_guarded``)."""
    try:
        return step()
    except (RedisError, OSError):
        raise
    except Exception as exc:
        if the_callers(exc):
            raise
        raise RedisConnectionError(f"connecting raised {type(exc).__name__}: {exc}") from exc


@functools.cache
def _guarded(kind: type[Any]) -> type[Any]:
    """redis-py's connection class ``kind``, whose connecting raises only ``RedisError``s
    and ``OSError``s (which redis-py makes its ``ConnectionError``), or the caller's own
    exception (``the_callers``: a signal handler's). Anything else raised while making
    the socket (``ValueError`` from a TLS context that cannot be made, ``AttributeError``,
    ``TypeError`` from a socket option) is a fault of the store, as a server that cannot
    be reached: the call returns its function's value with a warning. Before, it went out
    of every call, its value lost: what the URL's options can cause is refused when the
    cache is made (``_redisoptions``), and this is for the rest (a redis-py or a system
    that fails otherwise)."""

    class Guarded(kind):  # type: ignore[misc]
        def _connect(self) -> Any:
            return _connecting(super()._connect)

    Guarded.__name__, Guarded.__qualname__ = kind.__name__, kind.__qualname__
    Guarded.__module__ = kind.__module__
    return Guarded


def connections(client: redis.Redis) -> int:
    """How many connections ``client`` (made by ``connect``) has made so far."""
    made: _Connected = client.connection_pool.connection_kwargs["redis_connect_func"]
    return made.count


def connect(url: str, socket_timeout: float, *, share: float = 1.0,
            **kwargs: Any) -> redis.Redis:
    """A client for ``url``; ``ValueError`` if it is not a Redis URL. Its options are
    checked against ``socket_timeout``, the store's; ``share``: of it, what the client
    waits for any one answer or connection (the look at a write that timed out waits
    ``CONFIRM_SHARE``: a URL's socket_connect_timeout taken by the store is cut down to
    that, never refused there)."""
    # The idna codec, which a connection's address lookup (``getaddrinfo`` of a host given
    # as a str, an IP address too) loads at its first use, is loaded here, before any call.
    # Else it loaded at the first connection, inside a call: a signal handler that ran
    # then and called a cached function found ``encodings.idna`` half imported, and the
    # ``encodings`` package noted 'idna' as no codec, for good unless the load around it
    # ended; an interrupt ended it (the handler raising after its call), and every later
    # call raised ``LookupError: unknown encoding: idna``. A codec found is kept by the
    # interpreter, never searched again.
    codecs.lookup("idna")
    parts = urlsplit(url)  # its scheme in lower case, as redis-py wants it ('REDIS://')
    url = parts.scheme + url[url.index(":"):] if ":" in url else url
    if parts.scheme in ("redis", "rediss") and not re.fullmatch(r"/?[0-9]*", parts.path):
        # redis-py takes '/abc' for database 0 and '/1/2' for 12, silently
        raise ValueError(f"the database after the host must be a number (e.g. "
                         f"{parts.scheme}://HOST:PORT/0), not {parts.path[1:]!r}")
    if (parts.scheme in ("redis", "rediss") and parts.path.strip("/")
            and re.search(r"(^|&)db=", parts.query)):
        # redis-py takes the query's silently ('/3?db=5' is database 5)
        raise ValueError(f"the database is given twice, after the host "
                         f"({parts.path[1:]!r}) and as ?db=: give it once")
    if parts.scheme == "unix" and not parts.path.strip("/"):
        # redis-py took it, and every call warned 'cannot reach the server (Error 22
        # connecting to . Invalid argument.)'
        raise ValueError("a unix:// URL needs the socket's path after it "
                         "(unix:///run/redis.sock), not a host")
    base, _, query = url.partition("?")
    # Every query option read by memojar (``_redisoptions``): one it does not take, or a
    # value that cannot work, refused now by name; redis-py is given the URL without them
    options = _redisoptions.options(parts.scheme, query, socket_timeout)
    wait = socket_timeout * share
    pool = _Pool.from_url(
        base,
        socket_timeout=wait,
        socket_connect_timeout=min(options.pop("socket_connect_timeout", wait), wait),
        # one immediate retry after a dropped connection (a restarted server, an idle
        # connection the server closed); never after a timeout, so nothing waits longer
        # than one socket_timeout
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        # ... and named again for redis-py before 6, which retried only the errors in a
        # connection's retry_on_error (its ``_disconnect_raise``), empty unless given: none,
        # a reply lost to a dropped connection failed the call and marked the server down
        retry_on_error=[RedisConnectionError],
        # A connection per command under way, as many as the threads calling at once:
        # redis-py 8 (its default 100, where it was 2**31 up to 5) raised "Too many
        # connections" at the 101st, a ConnectionError, so a program of 100 threads or
        # more (or fewer, each holding a key and waiting for another's, with the renewer's
        # requests) found the server "unreachable": nothing stored, every call skipping it
        # for a while. A ``max_connections`` in the URL's query still wins.
        max_connections=options.pop("max_connections", _MAX_CONNECTIONS),
        redis_connect_func=_Connected(),
        **_without_notifications(),
        **options,
        **kwargs,
    )
    # Replies are bytes (``decode_responses`` off, redis-py's default): the URL's
    # ``decode_responses``, passed on before, made them str, and every call raised
    # UnicodeDecodeError (not a RedisError, so no fault the store absorbs) instead of
    # returning its function's value. And one try at a request that timed out: the URL's
    # ``retry_on_timeout`` tried it again, and a call on a frozen server waited two
    # socket_timeouts. Both are taken from the URL and not passed on (``_redisoptions``).
    pool.connection_class = _guarded(pool.connection_class)
    try:
        # An option this redis-py's connection does not take (one older than the
        # options memojar reads) goes to the connection's class as a keyword: a
        # TypeError from redis-py's inside at every later call, before. Making one
        # connects nothing.
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        said = re.search(r"keyword argument '(\w+)'", str(exc))
        option = said.group(1) if said else str(exc)
        raise ValueError(f"option {option!r} in its query string is not taken by this "
                         f"redis-py ({redis.__version__}): leave it out, or upgrade "
                         "redis-py") from None
    host = pool.connection_kwargs.get("host")
    if isinstance(host, str):
        # A host Python's lookup cannot even ask for (an empty label, 'cache..internal'
        # from a template with a part left empty; a label over 63 characters): the idna
        # codec that ``getaddrinfo`` encodes it with raises ``UnicodeError``, which
        # redis-py's connect lets through (not an ``OSError``) and which is no
        # ``RedisError``. Before, every call raised it from the hit path's read, its
        # function never run, instead of computing as for a server it cannot reach.
        try:
            host.encode("idna")
        except UnicodeError as exc:
            raise ValueError(f"the host {host!r} is not a valid host name ({exc})") from None
    client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # close() closes the pool, as from_url's does
    return client


class Stamps:
    """Commands nobody waits for (a hit's access stamp, ``ZADD XX``), sent on a connection
    of their own that asks the server for no replies (``CLIENT REPLY OFF``), without
    blocking.

    A server paused for writes (``CLIENT PAUSE <ms> WRITE``: a ``FAILOVER``, a replica's
    promotion) holds a write, and every later command of its connection, until the pause
    ends. Pipelined with the hit's GET, the stamp held the GET's reply with it: each hit
    of a cache with ``max_size`` waited socket_timeout, then computed its value with the
    store called down. Here a held stamp holds only this connection, whose replies nobody
    reads (none is left for another command to read as its own; the server keeps what
    comes meanwhile, and runs it once the pause ends), and a stamp the socket cannot take
    at once (a server frozen or too slow to read: the buffers are full) is dropped, not
    waited for; what a send left of a command is sent first, whole, before any other. A
    stamp is lost (the LRU order misses one access, as when the server refused it) then,
    while another's is being sent (a thread's, or the code a signal handler interrupted),
    for ``retry_every`` after the connection failed, and for good where the server refuses
    CLIENT REPLY (``supported`` false: the store stamps as before)."""

    def __init__(self, pool: redis.ConnectionPool, retry_every: float) -> None:
        kwargs = dict(pool.connection_kwargs)
        # redis-py's own handshake, not counted by ``connections`` (which tells the lease
        # code the pool reconnected); and no pool's: its max_connections is the requests'
        kwargs["redis_connect_func"] = None
        self._make = functools.partial(pool.connection_class, **kwargs)
        self._retry_every = retry_every
        self._connection: Any = None
        self._unsent = b""  # what a send left of a command
        # The sends under way, by a token of each (the first one sends; any other, a
        # thread's or a signal handler's inside the first, drops its stamp). A list, not a
        # ``Lock``: a token is put in inside the ``try`` whose ``finally`` takes it out, so
        # an interrupt as it is put in leaves nothing; a ``Lock`` taken just before an
        # interrupt stayed taken, and every later stamp of the process was dropped.
        self._sending: list[object] = []
        self._pid = os.getpid()
        self._retry_at = 0.0
        self.supported = True

    def send(self, packed: bytes) -> None:
        """Send one packed command if the socket takes it now; else drop it."""
        if self._pid != os.getpid():  # a forked child: the parent's socket is not its own
            self._pid, self._sending, self._connection = os.getpid(), [], None
        handled = sys.exc_info()[1]  # the caller's, if any (``callers_within``)
        sending, token = self._sending, object()
        try:
            sending.append(token)  # (list.append and ``[0]``: atomic)
            if sending[0] is not token:
                return
            connection = self._connection
            if connection is None:
                if time.monotonic() < self._retry_at:
                    return
                connection = self._connection = self._connect()
                if connection is None:
                    return
            if self._unsent:
                self._unsent = _push(connection._sock, self._unsent)
                if self._unsent:
                    return
            self._unsent = _push(connection._sock, packed)
        except BaseException as exc:
            # failed or interrupted: closed, as a command may be half sent (and the part
            # left not known); by the sender only (another's is not this one's to close)
            if sending and sending[0] is token:
                self._drop()
            if not isinstance(exc, (RedisError, OSError)):
                raise
            raise_the_callers_within(exc, handled)  # a signal handler's
            self._retry_at = time.monotonic() + self._retry_every
            logger.debug("cannot send an access stamp: %s", exc)
        finally:
            try:  # (no call before it here: nothing can interrupt ahead of it)
                sending.remove(token)
            except ValueError:  # not put in: interrupted before
                pass

    def _connect(self) -> Any:
        connection = self._make()
        try:
            _connecting(connection.connect)  # (see ``_guarded``)
            # OFF, then ON, whose OK is the one reply (then OFF again): a server refusing
            # CLIENT REPLY (an ACL, rename-command) answers the first with an error
            connection.send_packed_command(connection.pack_commands(
                [("CLIENT", "REPLY", "OFF"), ("CLIENT", "REPLY", "ON"),
                 ("CLIENT", "REPLY", "OFF")]), check_health=False)
            try:
                connection.read_response()
            except ResponseError as exc:
                logger.debug("no CLIENT REPLY OFF: %s", exc)
                self.supported = False
                connection.disconnect()
                return None
            connection._sock.settimeout(0)  # never read again; sends never wait
        except BaseException:
            connection.disconnect()
            raise
        self._unsent = b""
        return connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()

    def close(self) -> None:
        if self._pid == os.getpid():
            self._drop()


def _push(sock: Any, data: bytes) -> bytes:
    """What of ``data`` a send that does not wait left unsent."""
    try:
        return data[sock.send(data):]
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return data  # (TLS: sent again as it is, as OpenSSL wants)


def _without_notifications() -> dict[str, Any]:
    """redis-py's option that turns its maintenance notifications off (redis-py 7 on).

    Turned on, every connection asks the server for them (``CLIENT MAINT_NOTIFICATIONS``,
    one round trip more), and a server that refuses (Redis before 8) has it logged, at
    debug level, through ``logging.getLogger``: Python 3.10 to 3.12 take logging's module
    lock there outside the ``try`` that gives it back, and an interrupt (Ctrl-C) landing
    just after it was taken left it held for good. Every thread that then connected or
    logged waited for ever, and the interpreter's exit with them (a signal storm on one
    thread of four through a pool: 1 run in about 15 on 3.10). The notifications move
    connections ahead of a Redis Enterprise maintenance; memojar's requests ride one out
    as any fault (the call computes, the store is skipped for a while)."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # (redis-py before 7: no notifications)
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def exhausted(exc: BaseException) -> bool:
    """Whether ``exc`` is redis-py's "Too many connections": every connection the pool may
    open (its ``max_connections``) is lent out; the server is not at fault."""
    return isinstance(exc, getattr(redis.exceptions, "MaxConnectionsError", ())) or (
        isinstance(exc, RedisConnectionError) and str(exc) == "Too many connections")


def sent(exc: BaseException | None) -> bool:
    """Whether the command whose call raised ``exc`` (redis-py's error) was sent, or its
    sending tried, so that the server may have run it: the error came from redis-py's
    send-and-read (``_send_command_parse_response``, inside its retry loop), not from
    lending the connection (``get_connection``: connecting, before anything is sent). Told
    by the traceback, so that no command pays for it; a redis-py that named it otherwise
    would make every failed command unsent, as before."""
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_send_command_parse_response":
            return True
        tb = tb.tb_next
    return False
