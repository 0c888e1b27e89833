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
from pathlib import Path

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


# A function's first call digests the globals it reads by their state (``state_key``);
# here ``CONFIG``'s pickling is where the signal arrives, and the handler calls
# ``f(helper)``. Its key was made in the thread's state mode: ``helper`` by its own code,
# not with ``dep``, which it calls. Run twice on one cache, ``dep`` edited between (1, then
# 2): before, the second run's handler got the first run's value, 1.
DIGESTING = r"""
import os, signal, sys, warnings
warnings.simplefilter("ignore")
from memojar import Cache

cache = Cache(sys.argv[1])
computed = []

def dep():
    return DEP

def helper():
    return dep()

@cache.cached
def f(func):
    computed.append("f")
    return func()

class Config:
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGUSR1)  # handled while g's identity digests CONFIG
        return (Config, ())

CONFIG = Config()

@cache.cached
def g(x):
    return (CONFIG is not None, x)

handled = []
signal.signal(signal.SIGUSR1,
              lambda signum, frame: handled.append(f(helper)) if not handled else None)
print(g(1), handled, f(helper), computed, flush=True)
"""


def test_a_handler_calling_while_a_global_is_digested_makes_the_calls_own_key(
    tmp_path: Path,
) -> None:
    outputs = []
    for dep in (1, 2):  # the script edited between the runs: dep returns 1, then 2
        script = tmp_path / "script.py"
        script.write_text(DIGESTING.replace("DEP", str(dep)))
        try:
            done = subprocess.run([sys.executable, str(script), str(tmp_path / "cache")],
                                  capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("hung")
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.strip())
    # before: "(True, 1) [1] 1 ['f', 'f']" (the handler's call under a key of its own),
    # then "(True, 1) [1] 2 ['f']" (the old helper's value)
    assert outputs == ["(True, 1) [1] 1 ['f']", "(True, 1) [2] 2 ['f']"]
