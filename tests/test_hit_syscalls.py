"""The hit path, counted in system calls: open, fstat (the owner check), read, close.

Measured with strace on a real process: everything between two marker calls to getppid()
is one cache hit. With ``max_size`` a hit also stamps the entry's access time (one utimensat),
which least-recently-used eviction goes by.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import os, sys
from memojar import Cache
cache = Cache(sys.argv[1], max_size=int(sys.argv[2]) or None)
@cache.cached
def f(x):
    return {"x": x, "label": "small"}
f(1); f(1)           # store, then warm the hit path (imports, lazy attributes)
os.getppid()         # marker: the hit starts
f(1)
os.getppid()         # marker: the hit ended
"""

needs_strace = pytest.mark.skipif(
    shutil.which("strace") is None, reason="strace is not installed (.ci/run installs it)"
)


def hit_syscalls(tmp_path: Path, max_size: int | None) -> list[str]:
    script = tmp_path / "hit.py"
    script.write_text(SCRIPT)
    trace = tmp_path / "trace.txt"
    subprocess.run(
        ["strace", "-f", "-qq", "-o", str(trace), sys.executable, str(script),
         str(tmp_path / "cache"), str(max_size or 0)],
        check=True, timeout=120,
    )
    names = [line.split("(", 1)[0].split()[-1] for line in trace.read_text().splitlines()
             if "(" in line]
    start = names.index("getppid")
    end = names.index("getppid", start + 1)
    return [SAME.get(name, name) for name in names[start + 1 : end]]


# Spellings of the same call on different kernels and libcs.
SAME = {"newfstatat": "fstat", "fstat64": "fstat", "statx": "fstat", "readv": "read",
        "pread64": "read", "openat2": "openat", "open": "openat"}


@needs_strace
def test_a_hit_is_open_fstat_read_close(tmp_path: Path) -> None:
    assert hit_syscalls(tmp_path, None) == ["openat", "fstat", "read", "close"]


@needs_strace
def test_a_hit_with_max_size_also_stamps_the_access_time(tmp_path: Path) -> None:
    assert hit_syscalls(tmp_path, 10_000_000) == [
        "openat", "fstat", "read", "utimensat", "close"
    ]
