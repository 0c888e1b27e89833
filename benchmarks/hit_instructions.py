"""Instructions per small file hit, counted by callgrind (deterministic, unlike timings).

    python benchmarks/hit_instructions.py [TREE ...] [-n 3000] [--python PY]

Each TREE is a source tree (a checkout with ``src/memojar``; default: this one). For each,
a child interpreter with ``PYTHONPATH=TREE/src`` makes a ``Cache`` in a temporary directory,
decorates ``f(x, y=1)`` returning a small value, calls ``f(1)`` once (a miss: stores the
entry) and then ``f(1)`` N times (file hits). It runs under ``valgrind --tool=callgrind``
once with N hits and once with none; the difference of the total instructions divided by N
is the cost of one hit, everything else (start-up, imports, the miss) cancelling out.

Example, the first release against this tree::

    git worktree add /tmp/oldmain 6ac7585   # or any checkout of it
    python benchmarks/hit_instructions.py /tmp/oldmain .

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


def instructions(tree: str, n: int, python: str) -> int:
    """Total instructions of one child run (callgrind's summary)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "src"),
               PYTHONHASHSEED="0")
    env.pop("MEMOJAR_DISABLE", None)
    with tempfile.TemporaryDirectory() as out:
        dest = os.path.join(out, "callgrind.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dest}",
             python, "-c", CHILD, str(n)],
            env=env, check=True, timeout=900, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with open(dest) as fh:
            text = fh.read()
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in callgrind's output for {tree}")
    return int(found.group(1))


def per_hit(tree: str, n: int, python: str) -> float:
    return (instructions(tree, n, python) - instructions(tree, 0, python)) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="*", default=[os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))], help="source trees (with src/memojar)")
    p.add_argument("-n", type=int, default=3000, help="hits in the measured run")
    p.add_argument("--python", default=sys.executable, help="the interpreter to run")
    args = p.parse_args()
    print(f"{'tree':<40} {'instructions/hit':>16}")
    for tree in args.trees:
        print(f"{tree:<40} {per_hit(tree, args.n, args.python):>16,.0f}", flush=True)


if __name__ == "__main__":
    main()
