#!/usr/bin/env python3
"""What a miss in IPython pays to see a helper or constant bound again within its cell.

    python benchmarks/notebook_miss.py [--misses 20000] [--repeats 5]

Defines, in an IPython shell (no kernel: ``start_ipython``), twenty helpers, three classes
of thirty methods each and a constant, and a cached function that reads all of them; then
times, for that function's memo:

- ``miss``              a call with fresh arguments in a loop run as one cell (µs a miss,
                        on tmpfs if ``/dev/shm`` is there)
- ``rebound``           the check each miss makes (``_Memo.rebound``: the names the
                        identity was made from, each still bound to its object)
- ``full comparison``   what the first call of each cell compares (``dependencies_changed``:
                        the names, and the code and defaults of every function and the
                        members of every class followed), too slow to make at every miss

Prints the medians in µs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import timeit
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def cells(folder: str) -> list[str]:
    src = ["import sys", f"sys.path.insert(0, {SRC!r})", "from memojar import Cache",
           f"cache = Cache({folder!r})", "C = 3"]
    for k in range(3):
        src.append(f"class K{k}:\n" + "".join(
            f"    def m{j}(self, x=({j},)):\n        return x\n" for j in range(30)))
    src += [f"def h{h}(x):\n    return x + {h}" for h in range(20)]
    body = " + ".join(f"h{h}(x)" for h in range(20))
    src.append(f"@cache.cached\ndef f(x):\n    K0, K1, K2\n    return {body} + C")
    src.append("_ = f(-1)")
    return src


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--misses", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython()
    tmp = "/dev/shm" if os.path.isdir("/dev/shm") else None
    misses: list[float] = []
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        for cell in cells(folder):
            ip.run_cell(cell)
        for r in range(args.repeats):
            start = r * args.misses
            ip.run_cell(f"import time as _t\n_s = _t.perf_counter()\n"
                        f"for _i in range({start}, {start + args.misses}):\n    f(_i)\n"
                        f"_took = _t.perf_counter() - _s")
            misses.append(ip.user_ns["_took"] / args.misses * 1e6)
        memo = ip.user_ns["f"].__memojar__
        checks = {"rebound": memo.rebound, "full comparison": memo.dependencies_changed}
        timed = {name: [timeit.timeit(check, number=2000) / 2000 * 1e6
                        for _ in range(args.repeats)] for name, check in checks.items()}
    print(f"{'miss':<16} {statistics.median(misses):8.1f} µs")
    for name, xs in timed.items():
        print(f"{name:<16} {statistics.median(xs):8.1f} µs")


if __name__ == "__main__":
    main()
