"""Type checkers see a decorated function with its own signature and return type."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = '''
from memojar import Cache, cached

@cached
def load(path: str, sep: str = ",") -> list[str]:
    return []

@Cache().cached(ttl=5)
async def fetch(url: str) -> bytes:
    return b""

reveal_type(load("a.csv"))
reveal_type(load.cache_info().hits)
reveal_type(load.cache_contains("a.csv", sep=";"))
reveal_type(fetch("u"))  # type: ignore[unused-coroutine]
load(3)
'''


@pytest.mark.slow
def test_mypy_sees_the_original_signature_and_return_type(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is in the dev extra")
    sample = tmp_path / "sample.py"
    sample.write_text(SAMPLE)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "mc"),
         str(sample)],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout.replace("builtins.", "")  # mypy versions differ in this spelling
    assert 'Revealed type is "list[str]"' in out, out
    assert 'Revealed type is "int"' in out, out
    assert 'Revealed type is "bool"' in out, out
    assert 'Revealed type is "typing.Coroutine[Any, Any, bytes]"' in out, out
    assert 'Argument 1 to "__call__" of "CachedFunction" has incompatible type "int"' in out, out
