#!/usr/bin/env python3
"""What a global holding many instances costs a cached function's first call.

    python benchmarks/state_cost.py [--sizes 10000 90000] [--repeats 5]

A function's identity counts the state of the globals its code reads (``_identity``'s
walk: a digest of the global's pickled state, through ``_keys.state_key``), once per
process. This writes a module whose global ``ITEMS`` is a list of N instances of a user
class, and in a fresh interpreter per run (nothing cached in the process) times:

- ``identity``   ``_identity.dependencies`` of a function that reads ``ITEMS``: the walk,
                 the state digest, the fingerprints (what the first call pays before the
                 function runs)
- ``first call`` the whole first call of the cached function: identity, miss, write
- ``state``      ``_keys.state_key(ITEMS)`` alone, per instance (a second process)

Kinds of instances: ``plain`` (a class with three attributes set in ``__init__``),
``dataclass`` (three fields), ``slots`` (``__slots__``, three), ``numpy`` (a small array
and an int; skipped with a note when numpy is not installed). A global holding more than
``_keys._ITEMS_LIMIT`` items in all (a list of 90,000 instances of three attributes each)
counts by its type instead of its state: the table says which (``by``). Prints medians of
``--repeats`` fresh processes.
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

KINDS = {
    "plain": """
class Item:
    def __init__(self, i):
        self.x = i
        self.name = f"item{i}"
        self.weight = i * 0.5

ITEMS = [Item(i) for i in range(N)]
""",
    "dataclass": """
import dataclasses

@dataclasses.dataclass
class Item:
    x: int
    name: str
    weight: float

ITEMS = [Item(i, f"item{i}", i * 0.5) for i in range(N)]
""",
    "slots": """
class Item:
    __slots__ = ("x", "name", "weight")

    def __init__(self, i):
        self.x = i
        self.name = f"item{i}"
        self.weight = i * 0.5

ITEMS = [Item(i) for i in range(N)]
""",
    "numpy": """
import numpy as np

class Item:
    def __init__(self, i):
        self.values = np.arange(i, i + 8, dtype=np.float64)
        self.x = i

ITEMS = [Item(i) for i in range(N)]
""",
}

FUNCTION = """

def total(k):
    return len(ITEMS) + k
"""

PROBE = """
import json, sys, time
mode = sys.argv[2]
import state_bench
from memojar import Cache, _identity, _keys
if mode == "state":
    t0 = time.perf_counter()
    key = _keys.state_key(state_bench.ITEMS)
    t1 = time.perf_counter()
    print(json.dumps({"state": t1 - t0, "by": "type" if key is None else "state"}))
elif mode == "identity":
    t0 = time.perf_counter()
    rows = _identity.dependencies(state_bench.total)
    t1 = time.perf_counter()
    print(json.dumps({"identity": t1 - t0}))
else:
    cache = Cache(sys.argv[1])
    f = cache.cached(state_bench.total)
    t0 = time.perf_counter()
    f(1)
    t1 = time.perf_counter()
    print(json.dumps({"first": t1 - t0}))
"""


def run(tmp: str, mode: str, i: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((SRC, tmp))}
    done = subprocess.run([sys.executable, "-c", PROBE, os.path.join(tmp, f"c{mode}{i}"),
                           mode], env=env, capture_output=True, text=True, timeout=600,
                          check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 90_000])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes (default 5)")
    args = parser.parse_args()
    try:
        import numpy  # noqa: F401
    except ImportError:
        if "numpy" in args.kinds:
            print("numpy is not installed: the numpy row is skipped\n")
            args.kinds.remove("numpy")
    print(f"medians of {args.repeats} fresh processes ({sys.version.split()[0]})\n")
    print("| kind | N | by | identity | first call | state per instance |")
    print("|---|---:|---|---:|---:|---:|")
    for kind in args.kinds:
        for n in args.sizes:
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "state_bench.py").write_text(f"N = {n}\n{KINDS[kind]}{FUNCTION}")
                rows: dict[str, list[float]] = {"identity": [], "first": [], "state": []}
                by = ""
                for i in range(args.repeats):
                    for mode in ("identity", "call", "state"):
                        result = run(tmp, mode, i)
                        by = str(result.pop("by", by))
                        for name, value in result.items():
                            rows[name].append(float(value))  # type: ignore[arg-type]
            med = {name: statistics.median(values) for name, values in rows.items()}
            print(f"| {kind} | {n:,} | {by} | {med['identity'] * 1e3:.0f} ms | "
                  f"{med['first'] * 1e3:.0f} ms | {med['state'] / n * 1e6:.2f} µs |")


if __name__ == "__main__":
    main()
