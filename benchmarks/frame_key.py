#!/usr/bin/env python3
"""The cost of keying a data frame: memojar's key against ``joblib.hash``.

    python benchmarks/frame_key.py [--rows 1000000] [--repeat 5]

A 1,000,000-row frame of mixed columns (float64, int64, bool, datetime64, a categorical and
a column of strings), keyed as an argument. memojar hashes it by column names, dtypes,
index and column values (numeric buffers hashed in place, by xxh3-128), never by its
pickle; joblib pickles the frame through its pure-Python hashing pickler into md5. Also
shown: the same frame built column by column (another block layout: memojar gives the
same key, joblib another) and a polars copy. Best of ``--repeat`` runs, after a warm-up;
joblib and polars are skipped with a note when not installed.
"""

from __future__ import annotations

import argparse
import time


def best(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import pandas as pd

    from memojar._keys import make_key

    n = args.rows
    rng = np.random.default_rng(0)
    columns = {
        "x": rng.random(n),
        "n": rng.integers(0, 1_000, n),
        "flag": rng.random(n) > 0.5,
        "when": pd.date_range("2020-01-01", periods=n, freq="s").to_numpy(),
        "kind": pd.Categorical(rng.choice(["a", "b", "c"], n)),
        "name": [f"id{i % 5000}" for i in range(n)],
    }
    at_once = pd.DataFrame(columns)
    later = pd.DataFrame({"x": columns["x"]})
    for name, values in columns.items():
        later[name] = values
    mb = at_once.memory_usage(deep=True).sum() / 1e6
    print(f"frame: {n:,} rows x {at_once.shape[1]} columns, {mb:.0f} MB in memory")
    print(f"{'what':44} {'seconds':>8}")
    print(f"{'memojar make_key':44} {best(lambda: make_key((at_once,)), args.repeat):8.3f}")
    numeric = at_once[["x", "n", "flag", "when"]]
    print(f"{'memojar make_key, numeric columns only':44} "
          f"{best(lambda: make_key((numeric,)), args.repeat):8.3f}")
    same = make_key((at_once,)) == make_key((later,))
    print(f"{'  same key for another block layout':44} {same!s:>8}")
    try:
        import joblib
    except ImportError:
        print("joblib not installed: skipped")
    else:
        print(f"{'joblib.hash':44} {best(lambda: joblib.hash(at_once), args.repeat):8.3f}")
        print(f"{'joblib.hash, numeric columns only':44} "
              f"{best(lambda: joblib.hash(numeric), args.repeat):8.3f}")
        same = joblib.hash(at_once) == joblib.hash(later)
        print(f"{'  same hash for another block layout':44} {same!s:>8}")
    try:
        import polars as pl
    except ImportError:
        print("polars not installed: skipped")
    else:
        frame = pl.DataFrame({
            "x": columns["x"], "n": columns["n"], "flag": columns["flag"],
            "when": columns["when"], "kind": pl.Series(list(at_once["kind"]), dtype=pl.Categorical),
            "name": columns["name"],
        })
        print(f"{'memojar make_key, polars copy':44} "
              f"{best(lambda: make_key((frame,)), args.repeat):8.3f}")


if __name__ == "__main__":
    main()
