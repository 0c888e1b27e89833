"""A signal handler that calls a cached function while its thread is making a call's key.

The key of a call of plain arguments is the hash of their pickle, made by a pickler that
each thread reuses. A handler that ran right after that pickler returned (before its
output was taken) and made a key of its own used the same pickler and took both outputs:
the handler's call hashed the two, and the interrupted call hashed nothing, one key for
every call so cut short: ``f(1)`` returned ``f(0)``'s value, on every store. Each case runs
in a subprocess with a timeout; the handler is made to run exactly there by a profile
function that sends the signal when a pickler's ``dump`` returns.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CUT_SHORT = r"""
import os, pickle, signal, sys, warnings
warnings.simplefilter("ignore")
from memojar import Cache

cache = Cache(sys.argv[1])
computed = []

@cache.cached
def f(x):
    computed.append(("f", x))
    return ("f", x)

@cache.cached
def g(x):
    computed.append(("g", x))
    return ("g", x)

def handler(signum, frame):
    y = 100 + x
    print("handler", y, g(y), flush=True)
signal.signal(signal.SIGALRM, handler)

def profile(frame, event, arg):
    # right after a key's pickler returns, before its output is taken: the handler runs there
    if event == "c_return" and type(getattr(arg, "__self__", None)) is pickle.Pickler:
        os.kill(os.getpid(), signal.SIGALRM)

for x in range(3):
    sys.setprofile(profile)
    try:
        value = f(x)
    finally:
        sys.setprofile(None)
    print("main", x, value, flush=True)
del computed[:]
for x in range(3):  # the same calls without a signal: hits, under the same keys
    print("again", x, f(x), g(100 + x), flush=True)
print("computed again", computed, flush=True)
"""


def test_a_handler_making_a_key_while_the_call_it_cut_makes_its_own_gets_no_other_value(
    location: str,
) -> None:
    try:
        done = subprocess.run([sys.executable, "-c", CUT_SHORT, location],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("hung")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # before: main 1 ('f', 0) and main 2 ('f', 0), and the handler's entries under keys
    # that no undisturbed call makes (computed again)
    assert [line for line in lines if line.startswith("main")] == [
        f"main {x} ('f', {x})" for x in range(3)
    ], done.stdout
    handled = [line.split(" ", 2)[1:] for line in lines if line.startswith("handler")]
    assert {y for y, _ in handled} == {"100", "101", "102"}, done.stdout
    assert all(value == f"('g', {y})" for y, value in handled), done.stdout
    assert lines[-1] == "computed again []", done.stdout
