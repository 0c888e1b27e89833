"""A signal handler that calls a cached function of a Redis cache while the process makes
its first connection. Each case runs in a subprocess with a timeout."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("redis")

# The idna codec loads at a process's first address lookup (``getaddrinfo`` encodes the host
# with it). A handler that runs while it loads (here: when it imports ``unicodedata``) calls
# a cached function, whose own connection finds the codec's module half imported, then
# raises (Ctrl-C, a timeout's exception), which ends the load around it.
FIRST_CONNECTION = r"""
import builtins, sys, warnings
warnings.simplefilter("ignore")
from memojar import Cache

cache = Cache(sys.argv[1])

@cache.cached
def f(x):
    return x + 1

real = builtins.__import__
def imports(name, *args, **kwargs):
    module = real(name, *args, **kwargs)
    if name == "unicodedata" and sys._getframe(1).f_globals.get("__name__") == "encodings.idna":
        builtins.__import__ = real
        try:
            print("handler", f(2), flush=True)
        except Exception as exc:
            print("handler", type(exc).__name__, flush=True)
        raise KeyboardInterrupt
    return module
builtins.__import__ = imports
try:
    print("first", f(1), flush=True)
except KeyboardInterrupt:
    print("first interrupted", flush=True)
builtins.__import__ = real
for x in (1, 3):
    try:
        print("after", f(x), flush=True)
    except Exception as exc:
        print("after", type(exc).__name__, exc, flush=True)
"""


def test_an_interrupt_while_the_first_connection_loads_the_idna_codec_breaks_no_later_call(
    redis_location: str,
) -> None:
    try:
        done = subprocess.run([sys.executable, "-c", FIRST_CONNECTION, redis_location],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("hung")
    assert done.returncode == 0, done.stderr
    # before: "after LookupError unknown encoding: idna", for every later call of the process
    assert done.stdout.splitlines()[-2:] == ["after 2", "after 4"], done.stdout
