"""The README's first command ends in ``python -m memojar.demo``: it must run and show hits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_demo_computes_once_then_hits_in_this_process_and_the_next(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "memojar.demo"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "MEMOJAR_DEMO_DIR": str(tmp_path / "demo")},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert any("second call (cache hit)" in line and " ms " in line for line in lines)
    assert any("a new Python process (cache hit)" in line for line in lines)
    assert "CacheInfo(hits=2, misses=2, entries=2" in proc.stdout
