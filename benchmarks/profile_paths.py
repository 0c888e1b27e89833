"""Profile memojar's small hit and small miss paths (cProfile, or a plain loop for strace/py-spy).

    python benchmarks/profile_paths.py hit|miss [--cprofile] [-n N]
    strace -c -f python benchmarks/profile_paths.py miss -n 2000
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time

from memojar import Cache


def small(x, y="a"):
    return {"x": x, "y": y, "items": [x, x + 1, x + 2]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path", choices=["hit", "miss"])
    p.add_argument("-n", type=int, default=20000)
    p.add_argument("--cprofile", action="store_true")
    p.add_argument("--max-size", type=int, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        f = Cache(tmp, max_size=args.max_size).cached(small)
        for i in range(100):
            f(-1 - i, "warm")
        if args.path == "hit":
            def loop() -> None:
                for _ in range(args.n):
                    f(1, "b")
        else:
            def loop() -> None:
                for i in range(args.n):
                    f(i, "m")
        start = time.perf_counter()
        if args.cprofile:
            prof = cProfile.Profile()
            prof.runcall(loop)
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        else:
            loop()
        print(f"{(time.perf_counter() - start) / args.n * 1e6:.1f} us/call")


if __name__ == "__main__":
    main()
