"""What the tests of the remote stores (``test_redis.py``, ``test_s3.py``) share: a counted
function, a timer, and the child processes of the compute-once tests (a stampede, a lock
holder to kill), a proxy that loses replies, and a lock that notes the exceptions leaving
its blocks."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache, MemojarWarning
from memojar._filestore import function_dir

SECRET = "test-secret"
FN = "tests.module.function"
# The warning a planted entry that fails the secret's check gives, once per cache.
PLANTED_WARNING = (r"is signed with another secret \(or was forged\)|"
                   r"is not signed, and this cache has a secret")
HANG = 30  # seconds: a call that takes longer than this is hung, whatever the machine

# A process calling a cached function that logs its computation (its pid, in ``log``) and
# takes ``seconds``, at the moment ``start`` (a ``time.time()``; 0.0: at once).
STAMPEDE = """
import os, time
from memojar import Cache
cache = Cache({url!r}, secret={secret!r})

@cache.cached
def slow(x):
    with open({log!r}, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    time.sleep({seconds!r})
    return x * 2

time.sleep(max(0.0, {start!r} - time.time()))
print(slow(21), flush=True)
"""

HOLDER = """
import time
from memojar._cache import open_store
lock = open_store({url!r}, None, True).lock({fn!r}, {key!r})
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


class Planted:
    """A value whose unpickling creates a file: proof that a planted entry was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def k(n: int) -> str:
    return f"{n:032x}"


def split(location: str) -> tuple[str, str]:
    """Bucket and prefix of an S3 test location."""
    bucket, _, rest = location[len("s3://"):].partition("/")
    return bucket, rest.partition("?")[0]


def entry_object(location: str, f: Any, *args: Any) -> str:
    """The name of the object of ``f(*args)``'s entry in the S3 test location."""
    from memojar._s3store import SUFFIX  # (the s3 extra)

    _, prefix = split(location)
    return f"{prefix}/{function_dir(f.__memojar__.name)}/{f.cache_key(*args)}{SUFFIX}"


def evalsha(script: Any) -> bytes:
    """What a request running ``script`` (a registered Redis ``Script``) holds."""
    return b"EVALSHA\r\n$40\r\n" + script.sha.encode()


def short_timeout(location: str) -> str:
    """``location`` (Redis's, S3's) with a request timeout of a second or a few: a reply
    the proxy withholds costs the test that long."""
    if location.startswith("s3://"):
        return re.sub(r"timeout=[0-9.]+", "timeout=3", location)
    return location + ("&" if "?" in location else "?") + "socket_timeout=1"


def counted(cache: Cache) -> tuple[Any, list[Any]]:
    calls: list[Any] = []

    @cache.cached
    def double(x: Any) -> Any:
        calls.append(x)
        return x * 2

    return double, calls


def others_than(client: Any) -> list[str]:
    """The last command of each of the Redis server's connections but ``client``'s own."""
    me = str(client.client_id())
    return [c["cmd"] for c in client.client_list() if c["id"] != me]


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    value = call()
    return value, time.monotonic() - start


def each_timed(*calls: Callable[[], Any]) -> tuple[tuple[Any, ...], float]:
    """The values of ``calls``, made one after the other, and the longest call's time."""
    results = [timed(call) for call in calls]
    return tuple(v for v, _ in results), max(t for _, t in results)


def stampede_computes_once(location: str, tmp_path: Path, processes: int,
                           start_in: float) -> None:
    """``processes`` processes call one slow function at the same moment (``start_in``
    seconds from now, once all have started): all get its value, one computed it."""
    log = tmp_path / "computed"
    code = STAMPEDE.format(url=location, secret=SECRET, log=str(log), seconds=1.0,
                           start=time.time() + start_in)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    outs = [p.communicate(timeout=HANG * 2) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "42"
    assert len(log.read_text().split()) == 1


def computing(code: str, log: Path) -> subprocess.Popen[str]:
    """A child process running ``code``, once its cached function has started computing
    (it appends a line to ``log``); the caller ends it (``ended``)."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + HANG
    while not (log.exists() and log.read_text()):
        if time.monotonic() >= deadline:
            ended(child)
            raise AssertionError("the holder never started computing")
        time.sleep(0.05)
    return child


def ended(child: subprocess.Popen[str]) -> None:
    """Kill ``child`` if it still runs, and reap it."""
    if child.poll() is None:
        child.kill()
    child.communicate(timeout=HANG)


def names_the_extra(module: str, url: str) -> str:
    """What ``Cache(url)`` raises, as an ``ImportError``'s message, in a process where
    ``module`` cannot be imported (as if the extra were not installed)."""
    code = (
        "import sys\n"
        f"sys.modules[{module!r}] = None\n"
        "from memojar import Cache\n"
        "try:\n"
        f"    Cache({url!r})\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True).stdout


def lock_holder(location: str) -> subprocess.Popen[str]:
    """A child process holding the lock of (FN, k(1)) (it has said so); kill it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(url=location, fn=FN, key=k(1))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held", holder.stderr
    return holder


def survives_losing_the_server(cache: Cache, lose: Callable[[], None],
                               within: float = HANG) -> None:
    """A server lost mid-run (``lose``) costs warnings and recomputations, never a result
    nor a hang (each call under ``within`` seconds); housekeeping, which has no fallback,
    reports the fault."""
    double, calls = counted(cache)
    assert double(1) == double(1) == 2
    lose()
    with pytest.warns(MemojarWarning, match="not cached"):
        value, took = each_timed(lambda: double(2), lambda: double(1), lambda: double(2))
    assert value == (4, 2, 4)
    assert calls == [1, 2, 1, 2]
    assert took < within, took
    with pytest.raises(OSError):
        cache.clear()


def survives_no_server(location: str, within: float = HANG) -> None:
    """A server that refuses connections: every call computes, with a warning, at once
    (each call under ``within`` seconds), and ``cache_explain`` says the store could not be
    asked (before: "no entry for these arguments")."""
    double, calls = counted(Cache(location, secret=SECRET))
    with pytest.warns(MemojarWarning, match="not cached"):
        value, took = each_timed(lambda: double(3), lambda: double(3))
    assert value == (6, 6)
    assert calls == [3, 3]
    assert took < within, took
    assert double.cache_explain(3).startswith("miss: the store could not be asked (")


def past_the_fault(store: Any) -> None:
    """Wait until ``store`` no longer fails fast after a fault: until its server answered
    the store's probe (Redis a ping, S3 a look at the bucket)."""
    breaker = store._bucket._breaker if store.kind == "S3" else store._breaker
    deadline = time.monotonic() + HANG
    while breaker.down:
        assert time.monotonic() < deadline, "the server answers, but the store fails fast"
        time.sleep(0.05)


def recovers_from_a_frozen_server(cache: Cache, server: Any, within: float = HANG) -> None:
    """A server frozen (``server.pause()``) when a call reads: the call computes, with a
    warning, in under ``within`` seconds; once the server answers again (``resume``) and the
    store's fail-fast pause after the fault is over, calls store and hit without a
    warning."""
    double, calls = counted(cache)
    double(1)
    server.pause()
    try:
        with pytest.warns(MemojarWarning, match="not cached"):
            value, took = timed(lambda: double(1))
        assert value == 2
        assert took < within, took
    finally:
        server.resume()
    past_the_fault(cache.store)
    assert double(2) == double(2) == 4  # no warning: filterwarnings = error
    assert calls == [1, 1, 2]


class ReplyDropper:
    """A TCP proxy between the store and a server that can lose a reply: once armed
    (``drop``), the next request whose bytes contain ``needle`` is forwarded to the server,
    which runs it; its reply is read and thrown away and the store's connection is closed,
    as a connection dropped just after the server answered. ``dropped`` counts them.
    With ``silent``, the reply is thrown away but the connection stays open: the store hears
    nothing until its own timeout (a slow server answering late, a proxy that loses it).

    Each connection is two threads, one a direction; ``close`` stops the listener, as
    leaving a ``with`` block does."""

    def __init__(self, port: int) -> None:
        self.target_port = port
        self._target = ("127.0.0.1", port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        # (needle, how many more to drop, keep the connection open: silent)
        self._needles: list[tuple[bytes, int, bool]] = []
        self.dropped: list[bytes] = []
        self.seen: list[bytes] = []  # every request chunk, for counting requests
        self._mutex = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def front(self, location: str) -> str:
        """``location`` (of the server on ``target_port``, at 127.0.0.1) reached through this
        proxy."""
        server = f"127.0.0.1:{self.target_port}"
        assert server in location, location
        return location.replace(server, f"127.0.0.1:{self.port}")

    def drop(self, needle: bytes, times: int = 1, silent: bool = False) -> None:
        """Lose the replies of the next ``times`` requests containing ``needle``; with
        ``silent``, without closing the connection (the store times out)."""
        with self._mutex:
            self._needles.append((needle, times, silent))

    def _take(self, data: bytes) -> tuple[bytes, bool] | None:
        with self._mutex:
            self.seen.append(data)
            for i, (needle, times, silent) in enumerate(self._needles):
                if needle in data:
                    if times <= 1:
                        del self._needles[i]
                    else:
                        self._needles[i] = (needle, times - 1, silent)
                    return needle, silent
        return None

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self._target)
            except OSError:  # the server is gone: so is this connection
                _close(down)
                continue
            state: dict[str, Any] = {"drop": None, "silent": False}
            threading.Thread(target=self._requests, args=(down, up, state), daemon=True).start()
            threading.Thread(target=self._replies, args=(down, up, state), daemon=True).start()

    def _requests(self, down: Any, up: Any, state: dict[str, Any]) -> None:
        try:
            while data := down.recv(1 << 16):
                taken = self._take(data)
                if taken is not None:
                    state["drop"], state["silent"] = taken
                up.sendall(data)
        except OSError:
            pass
        _close(down, up)

    def _replies(self, down: Any, up: Any, state: dict[str, Any]) -> None:
        try:
            while data := up.recv(1 << 16):
                if state["drop"] is not None:  # the server ran it: its reply is lost
                    up.settimeout(0.2)  # (the rest of the reply too)
                    with contextlib.suppress(OSError):
                        while up.recv(1 << 16):
                            pass
                    self.dropped.append(state["drop"])
                    if state["silent"]:  # left open: the store's side closes it (_requests)
                        return
                    break
                down.sendall(data)
        except OSError:
            pass
        _close(down, up)

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def __enter__(self) -> ReplyDropper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(*socks: Any) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


class WatchedLock:
    """A lock (a client library's) that notes each exception leaving a ``with`` block on
    it: Python 3.10 runs a pending signal handler at the start of a ``with``'s exception
    handler, before ``__exit__``, so an exception raised there by design and a Ctrl-C
    landing with it left the lock held for good."""

    def __init__(self, lock: Any) -> None:
        self.lock, self.left_by = lock, []

    def __enter__(self) -> Any:
        return self.lock.__enter__()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> Any:
        if kind is not None:
            self.left_by.append(kind)
        return self.lock.__exit__(kind, exc, tb)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lock, name)
