"""Signal handlers that call a cached function while their thread is inside the remote
stores' own locks: a plain lock taken again by the handler in the same thread never comes
free (a hang). Each case runs in a subprocess with a timeout.

A stress run of nested handlers (a timer every 1-2 ms whose handler calls cached functions
while threads run) must not watch itself with ``faulthandler.dump_traceback_later`` (nor
pytest's ``faulthandler_timeout``, which uses it): its watchdog reads every thread's frames
without the GIL, and crashes the process. Measured: a plain-Python loop of the same shape,
no memojar imported, died of SIGSEGV in 3 of 6 runs of 8 s with the watchdog dumping every
0.5 s (3.11.7, 3.13.0), in none of 6 without it; memojar's stress runs (file, Redis, S3;
3.11, 3.12, 3.13) in none of about 50 without it: the likeliest cause of the two segfaults
once seen under nested handlers, not reproduced without the watchdog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from redis_server import free_port

pytest.importorskip("redis")

# A script's start: a cache at its first argument, and a cached ``f``.
CACHED_F = r"""
import atexit, os, signal, sys, threading, warnings
warnings.simplefilter("ignore")
from memojar import Cache

cache = Cache(sys.argv[1])

@cache.cached
def f(x):
    return x + 1
"""


def run_or_hang(script: str, *args: str, hang: str, timeout: float,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with ``args`` in a subprocess; past ``timeout`` seconds the test fails
    with ``hang`` (what the old code waited for) and every thread's stack of the script as
    it hung (faulthandler, asked by SIGUSR1 only then: not its watchdog, see above), so a
    hang seen once in CI says where it was."""
    watched = "import faulthandler, signal\nfaulthandler.register(signal.SIGUSR1)\n" + script
    with subprocess.Popen([sys.executable, "-c", watched, *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)
            try:
                stdout, stderr = process.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            pytest.fail(f"hung: {hang}\nits output: {stdout}\nits threads:\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

# The server is down (nothing listens): the first call trips the store's breaker, which
# starts its prober thread under the breaker's mutex; ``Thread.start`` waits for the thread,
# and a signal handled there calls a cached function of the same store, whose ``check``
# (the server is down, and no prober is noted yet) takes the mutex again.
PROBER_STARTING = r"""
import os, signal, sys, threading, warnings
warnings.simplefilter("ignore")
from memojar import Cache, _store

cache = Cache(sys.argv[1], lock_timeout=1)

@cache.cached
def f(x):
    return x + 1

got, sent = [], []
def handler(signum, frame):
    got.append(f(2))
signal.signal(signal.SIGALRM, handler)
start = threading.Thread.start
def start_with_a_signal(self):
    if getattr(self, "_target", None) is _store.Breaker._run and not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGALRM)  # handled inside ``start``, under the mutex
    start(self)
threading.Thread.start = start_with_a_signal
print(f(1), got, flush=True)
"""


def test_a_signal_handler_calling_a_cached_function_while_the_prober_starts_does_not_hang(
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = run_or_hang(PROBER_STARTING, url, timeout=30,
                       hang="the handler's call waited for the breaker's mutex its thread held")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "[3]"]


# The pool makes its first connection under its lock; a signal handled there (in the
# connection's constructor, Python code) calls a cached function of the same cache, whose
# command takes a connection from the same pool. redis-py before 7 guards the pool with a
# plain lock: the handler waited for its own thread for ever.
POOL_LOCKED = CACHED_F + r"""

got = []
signal.signal(signal.SIGALRM, lambda signum, frame: got.append(f(100)))

def profile(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "make_connection" and not got:
        sys.setprofile(None)
        os.kill(os.getpid(), signal.SIGALRM)  # handled inside the pool's lock

sys.setprofile(profile)
print(f(1), got, flush=True)
"""


def test_a_signal_handler_calling_a_cached_function_inside_the_pools_lock_does_not_hang(
    redis_location: str,
) -> None:
    done = run_or_hang(POOL_LOCKED, redis_location, timeout=30,  # redis-py 5, 6:
                       hang="the handler's call waited for the pool's lock its thread held")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "[101]"]


# Temporary credentials (here from a credential process, as from a role, SSO or an
# instance's metadata) that expire within ten minutes are refreshed at every request,
# under botocore's plain refresh lock; a signal handled inside the refresh calls a cached
# function of the same cache, whose request refreshes them too and waited for that lock.
CREDENTIALS = r"""
import datetime, json
print(json.dumps({"Version": 1, "AccessKeyId": "testing", "SecretAccessKey": "testing",
                  "SessionToken": "token", "Expiration": (datetime.datetime.now(
                      datetime.timezone.utc) + datetime.timedelta(minutes=5)).isoformat()}))
"""

REFRESHING = CACHED_F + r"""

got = []
signal.signal(signal.SIGALRM, lambda signum, frame: got.append(f(100)))
print(f(1), flush=True)

def profile(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "_protected_refresh" and not got:
        sys.setprofile(None)
        os.kill(os.getpid(), signal.SIGALRM)  # handled inside the refresh, under its lock

sys.setprofile(profile)
print(f(2), got, flush=True)
"""


def _refreshing_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment with credentials that need a refresh at every request
    (``CREDENTIALS``, as a credential process), and no other AWS configuration."""
    process = tmp_path / "credentials.py"
    process.write_text(CREDENTIALS)
    config = tmp_path / "config"
    config.write_text(f"[default]\ncredential_process = {sys.executable} {process}\n"
                      "region = us-east-1\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    return env


def test_a_signal_handler_calling_a_cached_function_while_credentials_refresh_does_not_hang(
    s3_location: str, tmp_path: Path,
) -> None:
    done = run_or_hang(REFRESHING, s3_location, timeout=60, env=_refreshing_env(tmp_path),
                       hang="the handler's request waited for the refresh its thread made")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "3", "[101]"]


# A removal of several S3 entries (``cache_clear``, ``clear``, ``prune``, an eviction)
# runs in a thread pool, whose ``submit`` starts each thread under concurrent.futures'
# module-wide plain lock; a signal handled there (``Thread.start`` wrapped only to time
# it) whose call removes several entries too waited for that lock for ever. So did one
# handled inside a credential refresh, whose removals' threads waited for the refresh.
CLEARED = CACHED_F + r"""

@cache.cached
def g(x):
    return x * 10

print([f(i) for i in range(3)], [g(i) for i in range(3)], flush=True)
got, sent = [], []
signal.signal(signal.SIGALRM, lambda signum, frame: got.append(g.cache_clear()))
start = threading.Thread.start

def start_with_a_signal(self):
    if self.name.startswith("memojar-s3-unlink") and not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGALRM)  # handled inside ``start``, inside ``submit``
    start(self)

threading.Thread.start = start_with_a_signal
print(f.cache_clear(), got, flush=True)
"""
CLEARED_IN_A_REFRESH = CACHED_F + r"""
print([f(i) for i in range(3)], flush=True)
got = []
signal.signal(signal.SIGALRM, lambda signum, frame: got.append(f.cache_clear()))

def profile(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "_protected_refresh" and not got:
        sys.setprofile(None)
        os.kill(os.getpid(), signal.SIGALRM)  # handled inside the refresh, under its lock

sys.setprofile(profile)
print(f(5), got, flush=True)
"""


def test_a_signal_handlers_removals_inside_the_thread_pools_submit_do_not_hang(
    s3_location: str,
) -> None:
    done = run_or_hang(CLEARED, s3_location, timeout=60,
                       hang="the handler's removals waited for the thread pool's lock its "
                            "thread held")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "3 [3]"


def test_a_signal_handlers_removals_while_credentials_refresh_do_not_hang(
    s3_location: str, tmp_path: Path,
) -> None:
    done = run_or_hang(CLEARED_IN_A_REFRESH, s3_location, timeout=60,
                       env=_refreshing_env(tmp_path),
                       hang="the handler's removal threads waited for the refresh its "
                            "thread made")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "6 [3]"


# The same, the handler's call computing for longer than a renewal round: the renewer's
# thread, renewing that call's lease under the lease's lock, signs its request and waits for
# the refresh the interrupted thread holds; the call, done, releases its lease and waited
# for the renewer's lock (a hang, 1 in 24 runs of the test above on a loaded machine).
RENEWED = REFRESHING.replace("got.append(f(100))", "got.append(slow(100))").replace(
    "got = []", """got = []

@cache.cached
def slow(x):
    time.sleep(3 * _s3store.LEASE_RENEW)  # the renewer renews its lease meanwhile
    return x + 1
""").replace("from memojar import Cache", "import time\nfrom memojar import Cache, _s3store")


def test_a_signal_handlers_call_renewed_while_credentials_refresh_does_not_hang(
    s3_location: str, tmp_path: Path,
) -> None:
    done = run_or_hang(RENEWED, s3_location, timeout=60, env=_refreshing_env(tmp_path),
                       hang="the handler's release waited for the renewer, which waited "
                            "for the refresh its thread made")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "3", "[101]"]


# The same, the handler's call waiting for a lease another process holds while it holds a
# lock of a directory cache: its wait is noted in the bucket (a lock-order cycle across
# processes would be seen), and the renewer's thread rewrites the note every round. That
# write waited for the refresh the interrupted thread holds, under the note's mutex, which
# the handler's call took again to note its wait anew: a hang (every run).
WAIT_NOTED = REFRESHING.replace("got.append(f(100))", "got.append(outer(7))").replace(
    "got = []", """got = []
import time
files = Cache(sys.argv[2])

@cache.cached
def inner(x):
    if os.getpid() != PARENT:  # the other process: holds the lease a while
        os.write(W, b"held")
        time.sleep(4)
    return x * 10

@files.cached
def outer(x):
    return inner(x) + 1

PARENT = os.getpid()
R, W = os.pipe()
if os.fork() == 0:
    inner(7)
    os._exit(0)
assert os.read(R, 4) == b"held"
""") + "os.wait()\n"


def test_a_signal_handlers_call_whose_wait_is_noted_while_credentials_refresh_does_not_hang(
    s3_location: str, tmp_path: Path,
) -> None:
    done = run_or_hang(WAIT_NOTED, s3_location, str(tmp_path / "files"), timeout=60,
                       env=_refreshing_env(tmp_path),
                       hang="the handler's note of its wait waited for the renewer, which "
                            "waited for the refresh its thread made")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "3", "[71]"]


# AWS_RETRY_MODE=adaptive adds botocore's client-side rate limiter, which notes every
# answer under a plain lock (``ClientRateLimiter.on_receiving_response``); a signal handled
# there calls a cached function, whose request's answer is noted under the same lock.
# memojar's clients use standard mode (one attempt) whatever the configuration says, so
# that moment no longer exists: the signal is then never sent.
NOTING = REFRESHING.replace("_protected_refresh", "is_throttling_error")


def test_a_signal_handler_calling_a_cached_function_in_adaptive_retry_mode_does_not_hang(
    s3_location: str,
) -> None:
    env = dict(os.environ, AWS_RETRY_MODE="adaptive")
    done = run_or_hang(NOTING, s3_location, timeout=60, env=env,
                       hang="the handler's request waited for the rate limiter's lock")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "3", "[]"]


# A miss of a Redis cache takes a lease, which the store's renewer thread keeps renewing
# while the value is computed. No thread can start (here: a process out of memory for a
# thread's stack; a signal handler or atexit function while the process ends, on Python
# 3.12): before, the call raised ``Thread.start``'s RuntimeError, its lease left held.
NO_THREAD = CACHED_F + r"""

def call(where, x):
    try:
        print(where, f(x), flush=True)
    except BaseException as exc:
        print(where, type(exc).__name__, exc, flush=True)

if sys.argv[2] == "out of threads":
    threading.stack_size(1 << 60)  # no thread's stack fits in memory: none starts
    call("miss", 1)
    threading.stack_size(0)
    call("miss", 2)  # the renewer starts now
    call("hit", 1)
else:
    atexit.register(call, "at exit", 3)  # the process's first call, while it ends
"""


@pytest.mark.parametrize("case", ["out of threads", "at exit"])
def test_a_remote_miss_computes_when_no_thread_can_renew_its_lease(
    redis_location: str, case: str,
) -> None:
    done = run_or_hang(NO_THREAD, redis_location, case, timeout=60,
                       hang="the call or its lease waited for a thread that never started")
    assert done.returncode == 0, done.stderr
    # before: "miss RuntimeError can't start new thread" (on Python 3.12: "at exit
    # RuntimeError can't create new thread at interpreter shutdown")
    expected = ["miss 2", "miss 3", "hit 2"] if case == "out of threads" else ["at exit 4"]
    assert done.stdout.splitlines() == expected, done.stdout


# The size ledger's lock is a ``flock`` on a descriptor opened for each holding: a signal
# handler's call that needs it while its own thread holds it (here: as ``cache_delete``
# records its removal) waited for its thread, ``LOCK_WAIT`` (60 s), then failed its write.
LEDGER_HELD = """
import signal, sys, warnings
from memojar import Cache, _ledger

cache = Cache(sys.argv[1], max_size=10**6)

@cache.cached
def f(x):
    return x * 2

f(1)
settle = _ledger.Ledger.settle
got = []

def handler(signum, frame):
    _ledger.Ledger.settle = settle
    got.append(f(100))

def settle_then_signal(self, delta):
    settle(self, delta)
    signal.raise_signal(signal.SIGALRM)

signal.signal(signal.SIGALRM, handler)
_ledger.Ledger.settle = settle_then_signal
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    deleted = f.cache_delete(1)
f(5)
print(deleted, got, f.cache_contains(5))
"""




# The signal lands just as the ledger's flock returned, before ``_flock`` noted the lock as
# this thread's (``fcntl.flock`` wrapped only to time it: memojar's code runs unchanged).
LEDGER_JUST_TAKEN = """
import fcntl, os, signal, sys, warnings
from memojar import Cache, _filestore

cache = Cache(sys.argv[1], max_size=10**7)

@cache.cached
def f(x):
    return x * 2

got, sent = [], []
flock = fcntl.flock

def flock_then_signal(fd, op):
    flock(fd, op)
    if (op & fcntl.LOCK_EX and not sent
            and os.readlink(f"/proc/self/fd/{fd}").endswith(".size.lock")):
        sent.append(1)
        signal.raise_signal(signal.SIGALRM)

def handler(signum, frame):
    got.append(f(100))

signal.signal(signal.SIGALRM, handler)
_filestore.fcntl.flock = flock_then_signal
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    print(f(1), got, sent, flush=True)
"""




# A stale entry is removed under its key's lock (``discard``); the signal lands then
# (``_filestore._dir_at`` wrapped only to time it, called by the store's discard).
DISCARDING = """
import signal, sys, time, warnings
from memojar import Cache, _filestore

cache = Cache(sys.argv[1], lock_timeout=20)

@cache.cached(ttl=0.2)
def f(x):
    return x * 10

f(1)
time.sleep(0.4)  # stale: the next call removes it under the key's lock
got, sent = [], []
dir_at = _filestore._dir_at

def dir_at_then_signal(*args, **kwargs):
    if not sent and sys._getframe(1).f_code.co_name == "discard":
        sent.append(1)
        signal.raise_signal(signal.SIGALRM)
    return dir_at(*args, **kwargs)

def handler(signum, frame):
    got.append(f(1))

signal.signal(signal.SIGALRM, handler)
_filestore._dir_at = dir_at_then_signal
start = time.monotonic()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    print(f(1), got, sent, time.monotonic() - start < 10, flush=True)
"""


# The handler's call is of a key another thread holds, which, its value computed, waits
# for the ledger's lock the handler's thread holds (``FileStore._write_total`` wrapped only
# to time the signal, in the main thread's ledger update).
LEDGER_HELD_KEY_ELSEWHERE = """
import signal, sys, threading, time, warnings
from memojar import Cache, _filestore

cache = Cache(sys.argv[1], max_size=10**7)
inside, go = threading.Event(), threading.Event()

@cache.cached
def f(x):
    if x == 1 and threading.current_thread().name == "T":
        inside.set()
        go.wait()  # key 1's lock held until the main thread is inside the ledger's
    return x * 2

f(0)
t = threading.Thread(target=f, args=(1,), name="T")
t.start()
inside.wait()
write_total, got = _filestore.FileStore._write_total, []

def write_total_then_signal(self, total):
    write_total(self, total)
    if threading.current_thread() is threading.main_thread() and not got:
        _filestore.FileStore._write_total = write_total
        go.set()  # T stores, and asks for the ledger's lock
        time.sleep(0.3)
        signal.raise_signal(signal.SIGALRM)

def handler(signum, frame):
    got.append(f(1))

signal.signal(signal.SIGALRM, handler)
_filestore.FileStore._write_total = write_total_then_signal
start = time.monotonic()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    value = f(2)
t.join()
print(value, got, time.monotonic() - start < 10, f.cache_contains(1), flush=True)
"""


# Each: a script, what its handler's call waited for before, what the script prints.
OWN_THREADS_LOCKS = {
    "ledger-held": (LEDGER_HELD, "LOCK_WAIT for the ledger's lock its own thread held",
                    ["True", "[200]", "True"]),
    "ledger-just-taken": (LEDGER_JUST_TAKEN, "LOCK_WAIT (60 s) for the ledger's lock its own "
                          "thread had just taken, not yet noted", ["2", "[200]", "[1]"]),
    "ledger-held-key-elsewhere": (LEDGER_HELD_KEY_ELSEWHERE, "lock_timeout for another "
                                  "thread, which waited 60 s for the ledger's lock its own "
                                  "thread held", ["4", "[2]", "True", "True"]),
    "stale-entry-removed": (DISCARDING, "lock_timeout for the key's lock its own thread "
                            "held to remove the stale entry", ["10", "[10]", "[1]", "True"]),
}


@pytest.mark.parametrize("case", list(OWN_THREADS_LOCKS))
def test_a_signal_handlers_call_inside_its_threads_file_store_lock_does_not_wait(
        tmp_path: Path, case: str) -> None:
    """A handler's call made while its thread holds (or is taking) one of the file store's
    locks: the size ledger's (``max_size``), or a key's while its stale entry is removed."""
    script, waited, printed = OWN_THREADS_LOCKS[case]
    done = run_or_hang(script, str(tmp_path), timeout=40, hang=f"the handler's call waited "
                       f"{waited}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == printed
