"""Attack 10: the size bound under churn. Two processes write 5,000 distinct 10 kB results into
a ``max_size=5_000_000`` cache while this process samples the bytes on disk.

The sampler takes the size ledger's lock for each sample, so that a sample is one moment
between two reservations or evictions (a directory walk without it can count a file evicted
from one shard together with files written later into another, which never coexisted), and
counts each inode once (a file renamed from ``.tmp`` to ``.pkl`` during the walk is one file).
Temporary files count: they are bytes on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultkit import finish, ledger_lock, spawn, subprocess_env

MAX_SIZE = 5_000_000
PER_WRITER = 2_500
HOT = -1

CHURN_JOB = f"""
import os
from memojar import Cache

cache = Cache(os.environ["CACHE"], max_size={MAX_SIZE})

@cache.cached
def item(i):
    return bytes([i % 256]) * 10_000 + str(i).encode()
"""

WRITER = f"""
import os, time
from churnjob import item
first = int(os.environ["FIRST"])
written = []
for n, i in enumerate(range(first, first + {PER_WRITER})):
    assert item(i) == bytes([i % 256]) * 10_000 + str(i).encode()
    written.append((time.time(), i))
    if n % 25 == 0:
        assert item({HOT}) == bytes([{HOT} % 256]) * 10_000 + b"{HOT}"
print(item.cache_info().misses)
for when, i in written:
    print(when, i)
"""

CHECK = """
import sys
from churnjob import item
for i in sys.argv[1:]:
    print(int(item.cache_contains(int(i))), end="")
"""


def _sample(root: Path) -> tuple[int, int]:
    """Bytes of entries and temporary files on disk now, and the largest file among them."""
    seen: dict[int, int] = {}
    with ledger_lock(root):
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.endswith((".pkl", ".tmp")) and not name.startswith("."):
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except FileNotFoundError:  # renamed or removed while listed
                        continue
                    seen[st.st_ino] = st.st_size
    return sum(seen.values()), max(seen.values(), default=0)


@pytest.mark.slow
def test_size_bound_holds_under_churn(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (tmp_path / "churnjob.py").write_text(CHURN_JOB)
    env = {"CACHE": str(root), "PYTHONPATH": str(tmp_path)}
    writers = [spawn(WRITER, FIRST=str(first), **env) for first in (0, PER_WRITER)]
    samples: list[int] = []
    largest = 0
    deadline = time.monotonic() + 150
    try:
        while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
            if (root / ".size.lock").exists():
                total, big = _sample(root)
                samples.append(total)
                largest = max(largest, big)
            time.sleep(0.01)
        outputs = [finish(w, timeout=10).splitlines() for w in writers]
    finally:
        for w in writers:
            w.kill()
            w.communicate()
    final, big = _sample(root)
    samples.append(final)
    largest = max(largest, big)
    misses = [int(out[0]) for out in outputs]
    order = [int(line.split()[1]) for line in sorted(line for out in outputs for line in out[1:])]
    assert sorted(order) == list(range(2 * PER_WRITER))
    assert sorted(misses) in ([PER_WRITER, PER_WRITER + 1], [PER_WRITER, PER_WRITER + 2])
    print("SAMPLES", len(samples), max(samples))
    assert len(samples) >= 20, "the sampler did not get to look"
    assert 10_000 < largest < 10_200
    assert max(samples) <= MAX_SIZE + largest, (max(samples), MAX_SIZE + largest)
    assert max(samples) > 0.8 * MAX_SIZE  # the cache did fill up: the bound was exercised
    oldest, newest = order[:20], order[-200:]  # in the order they were written
    check = [sys.executable, "-c", CHECK, *map(str, [*oldest, *newest, HOT])]
    found = subprocess.run(check, capture_output=True, text=True, env=subprocess_env(**env),
                           timeout=60, check=True).stdout
    assert found == "0" * 20 + "1" * 200 + "1"  # oldest evicted; newest and the hot one kept
