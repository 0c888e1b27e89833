"""A stale value (``stale_while_revalidate``) served when no thread can start for its
recomputation: a signal handler run while the process ends (Python 3.12 refuses a new
thread from an atexit function), or a process out of threads. Before, the call raised
``Thread.start``'s ``RuntimeError``. Each case runs in a subprocess with a timeout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

STALE = r"""
import atexit, os, signal, sys, threading, time, warnings
warnings.simplefilter("ignore")
from memojar import Cache

cache = Cache(sys.argv[1])
computed = []

@cache.cached(ttl=0.05, stale_while_revalidate=60)
def f(x):
    computed.append(x)
    return x + 1

def call(where, x):
    try:
        print(where, f(x), flush=True)
    except BaseException as exc:
        print(where, type(exc).__name__, exc, flush=True)

print("fresh", f(1), f(2), flush=True)
time.sleep(0.1)  # both stale now

if sys.argv[2] == "out of threads":
    threading.stack_size(1 << 60)  # no thread's stack fits in memory: none starts
    call("stale", 1)
    threading.stack_size(0)
    call("stale", 1)  # a thread starts now: recomputed in the background
    deadline = time.monotonic() + 20
    while len(computed) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    print("computed", computed, flush=True)
else:
    signal.signal(signal.SIGALRM, lambda signum, frame: call("handler", 2))
    def at_exit():
        os.kill(os.getpid(), signal.SIGALRM)  # handled while the process ends
        time.sleep(0.05)
    atexit.register(at_exit)
"""


@pytest.mark.parametrize("case", ["out of threads", "handler at exit"])
def test_a_stale_value_is_served_when_no_thread_can_recompute_it(
    tmp_path: Path, case: str,
) -> None:
    try:
        done = subprocess.run([sys.executable, "-c", STALE, str(tmp_path / "c"), case],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("hung")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "fresh 2 3"
    if case == "out of threads":
        # before: stale RuntimeError can't start new thread
        assert lines[1:] == ["stale 2", "stale 2", "computed [1, 2, 1]"], done.stdout
    else:
        # before (Python 3.12): handler RuntimeError can't create new thread at
        # interpreter shutdown
        assert lines[1:] == ["handler 3"], done.stdout
