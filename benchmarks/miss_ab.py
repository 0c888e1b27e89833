"""Two checkouts' small misses in one process, interleaved: before/after figures that a
loaded machine disturbs alike.

    python benchmarks/miss_ab.py OLDTREE [NEWTREE] [--tmp /dev/shm] [-n 300] [--rounds 21]

Each TREE is a source tree with ``src/memojar`` (NEWTREE: this checkout by default). The
old one is loaded under another package name (``memojar_old``: memojar imports its own
modules relatively), so both run in this interpreter, each on a fresh directory beside
compare.py's floor, round after round (the order reversed every other round). Printed:
the median microseconds a miss of each, its ratio to the floor, and the CPU time a miss
over all rounds (user and system, ``getrusage``). Separate runs of ``miss_syscalls.py``
for the two trees are seconds apart; on a machine others load, their ratios differ by
more than a change of a few percent.

Example::

    git worktree add /tmp/oldlead lead
    python benchmarks/miss_ab.py /tmp/oldlead
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
from types import ModuleType

import compare  # this folder's (the script's own): its floor and its workload
import miss_syscalls  # this folder's: its interleaved rounds


def load(name: str, tree: str) -> ModuleType:
    """The package ``memojar`` of ``tree``, imported as ``name``."""
    src = os.path.join(os.path.abspath(tree), "src", "memojar")
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(src, "__init__.py"), submodule_search_locations=[src])
    if spec is None or spec.loader is None:
        raise SystemExit(f"no memojar package in {tree}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", help="the earlier source tree (with src/memojar)")
    p.add_argument("new", nargs="?", default=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), help="the later one (default: this checkout)")
    p.add_argument("--tmp", default="/dev/shm", help="where all write (default: tmpfs)")
    p.add_argument("-n", type=int, default=300, help="misses a round")
    p.add_argument("--rounds", type=int, default=21)
    args = p.parse_args()
    new = load("memojar", args.new)  # the name its own absolute imports use
    old = load("memojar_old", args.old)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for name in ("floor", "old", "new"):
            os.mkdir(os.path.join(tmp, name))
        contenders = {
            "floor": compare.floor_memoize(os.path.join(tmp, "floor"))(compare.small),
            "old": old.Cache(os.path.join(tmp, "old")).cached(compare.small),
            "new": new.Cache(os.path.join(tmp, "new")).cached(compare.small),
        }
        for f in contenders.values():
            for i in range(300):  # every shard made
                f(-1 - i, "warm")
        samples, cpu = miss_syscalls.interleaved(contenders, args.n, args.rounds,
                                                 alternate=True)
    floor = statistics.median(samples["floor"])
    misses = args.n * args.rounds
    for name, xs in samples.items():
        m = statistics.median(xs)
        user, system = (t / misses * 1e6 for t in cpu[name])
        print(f"{name:<6} {m:7.1f} µs a miss  ({m / floor:4.2f}x the floor)  "
              f"user {user:6.1f} µs  system {system:6.1f} µs")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
