"""Instructions per small file hit (or miss), counted by callgrind (deterministic, unlike
timings).

    python benchmarks/hit_instructions.py [TREE ...] [-n 3000] [--python PY] [--miss]

Each TREE is a source tree (a checkout with ``src/memojar``; default: this one). For each,
a child interpreter with ``PYTHONPATH=TREE/src`` makes a ``Cache`` in a temporary directory,
decorates ``f(x, y=1)`` returning a small value, calls ``f(1)`` once (a miss: stores the
entry) and then ``f(1)`` N times (file hits). It runs under ``valgrind --tool=callgrind``
once with N hits and once with none; the difference of the total instructions divided by N
is the cost of one hit, everything else (start-up, imports, the miss) cancelling out.

Example, the first release against this tree::

    git worktree add /tmp/oldmain 6ac7585   # or any checkout of it
    python benchmarks/hit_instructions.py /tmp/oldmain .

``--miss`` counts misses instead: the child calls ``f(i)`` for N new ``i`` (each a miss that
stores its entry) after 2,000 warm-up misses (every shard made, so no measured miss makes
one), in a temporary directory under ``--tmp`` (default ``/dev/shm``: tmpfs, as
compare.py's miss). Three TREEs name the rows of ``miss_syscalls.py`` instead of a
checkout: ``floor`` is compare.py's floor (hash, open, write, rename; no header, no lock),
``checks`` the floor's Python making memojar's 13 system calls, ``flat`` those with
memojar's own key and entry inlined (this checkout's ``_keys`` and ``_entry``): the least a
miss keeping memojar's promises costs with memojar's key and entry, for the ratio::

    python benchmarks/hit_instructions.py --miss . flat floor

Instructions are what the process runs in user space: they show the Python a path costs,
not the kernel's share of its system calls (``strace -c`` counts those).

Needs valgrind. Counts vary by a few dozen instructions from run to run (address-space
layout, hash seeds); differences of a few hundred are real.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

CHILD = r"""
import sys, tempfile
from memojar import Cache

n = int(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    cache = Cache(tmp)

    @cache.cached
    def f(x, y=1):
        return x + y

    f(1)  # the miss: stores the entry
    for _ in range(n):
        f(1)
    assert f.cache_info().hits == n, f.cache_info()
"""


MISS_CHILD = r"""
import sys, tempfile
n, tree, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ROWS = ("floor", "checks", "flat")

def small(x, y=1):
    return {"x": x, "y": y, "items": [x, x + 1, x + 2]}

# The statistics thread may be merging into the cache while it is removed (valgrind is slow)
with tempfile.TemporaryDirectory(dir=tmp, ignore_cleanup_errors=True) as tmp:
    if tree == "floor":
        import compare
        f = compare.floor_memoize(tmp)(small)
    elif tree in ("checks", "flat"):
        import miss_syscalls
        f = miss_syscalls.floor_with_checks(tmp, flat=tree == "flat")(small)
    else:
        from memojar import Cache
        f = Cache(tmp).cached(small)
    for i in range(2000):  # warm-up: every shard made, code paths taken once
        f(-1 - i)
    for i in range(n):
        f(i)
    if tree not in ROWS:
        assert f.__memojar__.misses == n + 2000, f.__memojar__.misses  # a counter: no listing
"""


ROWS = ("floor", "checks", "flat")  # TREEs that are miss_syscalls.py's rows (--miss only)


def callgrind_total(argv: list[str], env: dict[str, str]) -> int:
    """Total instructions of the command ``argv`` run under callgrind (its summary)."""
    with tempfile.TemporaryDirectory() as out:
        dest = os.path.join(out, "callgrind.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dest}", *argv],
            env=env, check=True, timeout=900, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with open(dest) as fh:
            text = fh.read()
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in callgrind's output for {argv}")
    return int(found.group(1))


def instructions(tree: str, n: int, python: str, miss_tmp: str | None = None) -> int:
    """Total instructions of one child run (callgrind's summary); with ``miss_tmp``, of
    the miss child writing under that directory."""
    here = os.path.dirname(os.path.abspath(__file__))
    if tree in ROWS:  # miss_syscalls.py's rows: this folder's scripts, this checkout's memojar
        src = os.pathsep.join((here, os.path.join(os.path.dirname(here), "src")))
    else:
        src = os.path.join(os.path.abspath(tree), "src")
    env = dict(os.environ, PYTHONPATH=src, PYTHONHASHSEED="0")
    args = [CHILD, str(n)] if miss_tmp is None else [MISS_CHILD, str(n), tree, miss_tmp]
    env.pop("MEMOJAR_DISABLE", None)
    return callgrind_total([python, "-c", *args], env)


def per_call(tree: str, n: int, python: str, miss_tmp: str | None = None) -> float:
    return (instructions(tree, n, python, miss_tmp) - instructions(tree, 0, python, miss_tmp)) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="*", default=[os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))], help="source trees (with src/memojar)")
    p.add_argument("-n", type=int, default=3000, help="hits in the measured run")
    p.add_argument("--python", default=sys.executable, help="the interpreter to run")
    p.add_argument("--miss", action="store_true", help="count misses, not hits")
    p.add_argument("--tmp", default="/dev/shm", help="where the misses write (--miss)")
    args = p.parse_args()
    if set(ROWS) & set(args.trees) and not args.miss:
        p.error(f"{', '.join(ROWS)} are counted for misses only (--miss)")
    what = "miss" if args.miss else "hit"
    print(f"{'tree':<40} {'instructions/' + what:>18}")
    for tree in args.trees:
        count = per_call(tree, args.n, args.python, args.tmp if args.miss else None)
        print(f"{tree:<40} {count:>18,.0f}", flush=True)


if __name__ == "__main__":
    main()
