"""A one-minute demo: ``python -m memojar.demo``.

A slow function becomes instant on its second call, in this process and in the next one.
The demo uses a fresh temporary cache directory, so it shows the same thing every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from memojar import Cache

DELAY = 1.5  # seconds the "expensive" function takes


def slow_stats(n: int) -> dict[str, float]:
    """Stand-in for a slow loader or model fit: sleeps, then computes a small summary."""
    time.sleep(DELAY)
    values = [((i * 7919) % 1000) / 10 for i in range(n)]
    return {"n": n, "mean": sum(values) / n, "max": max(values)}


def _timed(label: str, call) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = call()
    elapsed = time.perf_counter() - start
    shown = f"{elapsed:.3f} s" if elapsed >= 0.01 else f"{elapsed * 1e3:.2f} ms"
    print(f"  {label:<34} {shown:>10}   -> {result}")


def main() -> int:
    directory = os.environ.get("MEMOJAR_DEMO_DIR") or tempfile.mkdtemp(prefix="memojar-demo-")
    cache = Cache(directory)
    # The function as the next process will import it (not as ``__main__.slow_stats``).
    from memojar.demo import slow_stats as target

    stats = cache.cached(target)
    print(f"memojar demo: cache directory {directory}")
    _timed("first call (computes)", lambda: stats(100_000))
    _timed("second call (cache hit)", lambda: stats(100_000))
    _timed("same arguments, by keyword", lambda: stats(n=100_000))
    _timed("new arguments (computes)", lambda: stats(50_000))
    code = (
        "import time; from memojar import Cache; from memojar.demo import slow_stats;"
        f"f = Cache({directory!r}).cached(slow_stats); t = time.perf_counter(); f(100_000);"
        "print(f'{(time.perf_counter() - t) * 1e3:.2f} ms')"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    total = time.perf_counter() - start
    print(f"  {'a new Python process (cache hit)':<34} {out.stdout.strip():>10}"
          f"   (whole process, start-up included: {total:.2f} s)")
    info = stats.cache_info()
    print(f"  {info}")
    print("Entries on disk:")
    for entry in cache.entries():
        print(f"  {entry.function}  key {entry.key[:12]}  {entry.size} bytes, "
              f"computed in {entry.compute_time:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
