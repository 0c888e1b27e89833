#!/usr/bin/env python3
"""What tracking a function's dependencies costs: decorating, then the first call.

    python benchmarks/deps_cost.py [--deps 50] [--repeats 7]

Writes a module of N helper functions (each calls the next two and reads a constant; every
tenth is a class with two methods) into a temporary directory, and in a fresh interpreter
per run (nothing cached in the process: the walk and every fingerprint are computed from
scratch) times:

- ``decorate``   ``@cache.cached`` on a function that calls the first helper
- ``first call`` the whole first call: the identity (the walk over the N dependencies and
                 their fingerprints), a miss, the computation, the write
- ``hit``        a later call
- ``resolve``    the walk and fingerprints alone, timed again with the per-process tables
                 emptied

Prints a table of medians (ms; the hit in µs). Goal (issue 13): decorate + first call of a
function with 50 transitive dependencies in at most a few milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

PROBE = """
import json, sys, time
t0 = time.perf_counter()
from memojar import Cache
import helpers_bench
cache = Cache(sys.argv[1])
t1 = time.perf_counter()

@cache.cached
def f(x):
    return helpers_bench.h0(x)

t2 = time.perf_counter()
f(1)
t3 = time.perf_counter()
for _ in range(200):
    f(1)
t4 = time.perf_counter()
from memojar import _identity
for table in (_identity._deps_of, _identity._function_ids, _identity._class_ids):
    table.clear()
t5 = time.perf_counter()
_identity.dependencies(f.__wrapped__)
t6 = time.perf_counter()
ident = f.__memojar__.ident
rows = len(f.__memojar__.rows)
print(json.dumps({"decorate": t2 - t1, "resolve": t6 - t5, "first": t3 - t2,
                  "hit": (t4 - t3) / 200, "rows": rows}))
"""


def helpers(n: int) -> str:
    lines = []
    for i in range(n):
        nxt = [f"h{j}(x)" for j in (i + 1, i + 2) if j < n]
        body = " + ".join(nxt) or "0"
        lines.append(f"C{i} = {i}")
        if i % 10 == 9:
            lines.append(f"class K{i}:\n    def a(self, x):\n        return x + C{i}\n"
                         f"    def b(self, x):\n        return self.a(x)\n")
            lines.append(f"def h{i}(x):\n    return K{i}().b(x) if x < 0 else ({body}) "
                         f"* 0 + C{i}\n")
        else:
            lines.append(f"def h{i}(x):\n    return ({body}) * 0 + C{i} if x > 100 else "
                         f"C{i}\n")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deps", type=int, default=50, help="helper functions (default 50)")
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes (default 7)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "helpers_bench.py").write_text(helpers(args.deps))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join((SRC, tmp))}
        for i in range(args.repeats):
            done = subprocess.run([sys.executable, "-c", PROBE, os.path.join(tmp, f"c{i}")],
                                  env=env, capture_output=True, text=True, timeout=120,
                                  check=True)
            results.append(json.loads(done.stdout))
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"{args.deps} helpers ({int(med['rows'])} manifest rows: code, helpers, classes, "
          f"constants), medians of {args.repeats} fresh processes\n")
    print("| step | time |\n|---|---:|")
    print(f"| decorate | {med['decorate'] * 1e3:.2f} ms |")
    print(f"| resolve (dependency walk + fingerprints) | {med['resolve'] * 1e3:.2f} ms |")
    print(f"| first call (resolve + miss + write) | {med['first'] * 1e3:.2f} ms |")
    print(f"| hit | {med['hit'] * 1e6:.1f} µs |")
    total = med["decorate"] + med["first"]
    print(f"\ndecorate + first call: {total * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
