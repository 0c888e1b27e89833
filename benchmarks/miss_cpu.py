"""CPU time of a small miss, split into user and system time, for memojar and the floor.

    python benchmarks/miss_cpu.py [--tmp /dev/shm] [-n 500] [--rounds 20]

Both write on tmpfs by default (as compare.py's ``small_miss``): ``small(i, "m")`` for new
``i``, in rounds of N misses each, memojar and compare.py's floor interleaved, after 100
warm-up misses. ``os.times()`` around each round gives the process's user and system CPU
time; the totals divided by the misses are printed in microseconds. CPU time is less
disturbed by other processes than wall-clock time, but a loaded machine still inflates both
(caches, frequency): compare the ratios, not the figures, across runs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile

import compare  # this folder's (the script's own): its floor and its workload


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tmp", default="/dev/shm", help="where both write (default: tmpfs)")
    p.add_argument("-n", type=int, default=500, help="misses a round")
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    from memojar import Cache

    with tempfile.TemporaryDirectory(dir=args.tmp) as a, \
            tempfile.TemporaryDirectory(dir=args.tmp) as b:
        contenders = {"memojar": Cache(a).cached(compare.small),
                      "floor": compare.floor_memoize(b)(compare.small)}
        for f in contenders.values():
            for i in range(100):
                f(-1 - i, "warm")
        totals = {name: [0.0, 0.0] for name in contenders}
        counters = {name: itertools.count() for name in contenders}
        for _ in range(args.rounds):
            for name, f in contenders.items():
                counter = counters[name]
                before = os.times()
                for _ in range(args.n):
                    f(next(counter), "m")
                after = os.times()
                totals[name][0] += after.user - before.user
                totals[name][1] += after.system - before.system
    misses = args.n * args.rounds
    floor_user, floor_sys = totals["floor"]
    for name, (user, system) in totals.items():
        print(f"{name:<8} user {user / misses * 1e6:6.1f} µs ({user / floor_user:4.2f}x)  "
              f"system {system / misses * 1e6:6.1f} µs ({system / floor_sys:4.2f}x)")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
