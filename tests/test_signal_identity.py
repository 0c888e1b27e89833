"""A signal handler that decorates a function while its thread tells closures of one name
apart (``_identity.sibling_of``: what each captures, by state). Each case runs in a
subprocess with a timeout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Two closures of one factory differ only in the list they read (``b_columns``). The
# walk of what each captures pickles ``a_trigger`` for its state first, and the signal
# arrives there; the handler decorates another closure, whose own walk ran inside the
# interrupted one. Before: it ended by clearing the thread's flag that the walk counts by
# state, the rest of the interrupted walk counted ``b_columns`` by type (a list), both
# closures got one scope, and ``fb(1)`` returned ``fa(1)``'s value.
DECORATING = r"""
import os, signal, sys, warnings
warnings.simplefilter("ignore")
from memojar import Cache

cache = Cache(sys.argv[1])

def other(n):
    def h(x):
        return (n, x)
    return h

handled = []
def handler(signum, frame):
    handled.append(cache.cached(other(len(handled))))
signal.signal(signal.SIGUSR1, handler)

class Trigger:
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGUSR1)  # handled here, inside the walk
        return (Trigger, ())

def make(a_trigger, b_columns):
    def f(x):
        a_trigger
        return (b_columns, x)
    return f

trigger = Trigger()
fa = cache.cached(make(trigger, ["a"]))
fb = cache.cached(make(trigger, ["b"]))
print(len(handled), fa(1), fb(1), handled[0](5), handled[1](5), flush=True)
"""


def test_a_handler_decorating_while_closures_are_told_apart_gives_no_other_closures_value(
    tmp_path: Path,
) -> None:
    try:
        done = subprocess.run([sys.executable, "-c", DECORATING, str(tmp_path / "c")],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("hung")
    assert done.returncode == 0, done.stderr
    # before: 2 (['a'], 1) (['a'], 1) (0, 5) (1, 5)
    assert done.stdout.split("\n")[0] == "2 (['a'], 1) (['b'], 1) (0, 5) (1, 5)", done.stdout
