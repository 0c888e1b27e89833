"""Shared fixtures: a fresh cache directory per test, and every store kind for store tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Store kinds the store-level tests run on. The Redis store adds "redis" here.
STORE_KINDS = ["file"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the user's cache, secret or kill switch."""
    monkeypatch.setenv("MEMOJAR_DIR", str(tmp_path / "default-cache"))
    monkeypatch.delenv("MEMOJAR_SECRET", raising=False)
    monkeypatch.delenv("MEMOJAR_DISABLE", raising=False)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(params=STORE_KINDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A cache location of each store kind: a directory, or a redis:// URL."""
    if request.param == "file":
        yield str(tmp_path / "cache")
    else:  # pragma: no cover - filled in by the store kinds above
        yield request.getfixturevalue(f"{request.param}_location")


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout (fails the test on error)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
