"""Golden entries: files written by format 1 (``make_golden.py``, Python 3.11) must keep
reading with today's reader, or become clean misses if the format or the Python changed;
never an error."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache, _entry

HERE = Path(__file__).resolve().parent
GOLDEN_FORMAT = 1
GOLDEN_PYTHON = "3.11"
FINGERPRINT = "0123456789abcdef"
SECRET = b"golden-secret"

# file: (function, version tag, key, expires, secret, the value as compared)
GOLDEN: dict[str, tuple[str, Any, str, float | None, bytes | None, Any]] = {
    "format1-plain.mj": (
        "golden.square", None, "00112233445566778899aabbccddeeff", None, None,
        {"name": "golden", "numbers": [1, 2.5, None, True], "nested": ("a", b"bytes", 3j)},
    ),
    "format1-versioned-signed.mj": (
        "golden.signed", 1, "ffeeddccbbaa99887766554433221100", 4_102_444_800.0, SECRET,
        "signed value",
    ),
    "format1-buffers.mj": (
        "golden.buffers", "v2", "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f", None, None,
        {"oob": bytes(range(256)), "after": "tail"},
    ),
    "format1-expired.mj": (
        "golden.expired", None, "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0", 1_000_000_000.0, None,
        [1, 2, 3],
    ),
}
READABLE = _entry.FORMAT_VERSION == GOLDEN_FORMAT


def _comparable(value: Any) -> Any:
    if isinstance(value, dict) and "oob" in value:
        return {**value, "oob": bytes(value["oob"])}
    return value


def _read(name: str) -> Any:
    function, version, key, _expires, secret, _value = GOLDEN[name]
    data = (HERE / name).read_bytes()
    ident = _entry.make_ident(function, version, FINGERPRINT)
    payload, buffers = _entry.verify(data, ident, key.encode(), time.time(), None, secret)
    return _entry.load(payload, buffers)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_header_reads_or_is_a_clean_miss(name: str) -> None:
    data = (HERE / name).read_bytes()
    if not READABLE:
        with pytest.raises(_entry.Miss):
            _entry.read_header(data)
        return
    function, version, key, expires, _secret, _value = GOLDEN[name]
    header = _entry.read_header(data)
    assert (header.function, header.version, header.fingerprint) == (
        function, _entry.version_tag(version), FINGERPRINT)
    assert (header.key, header.python, header.protocol) == (key, GOLDEN_PYTHON, 5)
    assert (header.created, header.expires, header.compute_time) == (1_700_000_000.0, expires, 1.5)
    assert (header.size, header.format) == (len(data), GOLDEN_FORMAT)


@pytest.mark.parametrize("name", sorted(set(GOLDEN) - {"format1-expired.mj"}))
def test_golden_entry_loads_or_is_a_clean_miss(name: str) -> None:
    if READABLE and _entry.PYTHON == GOLDEN_PYTHON:
        assert _comparable(_read(name)) == GOLDEN[name][-1]
    else:  # another format, or another Python: the ident no longer matches
        with pytest.raises(_entry.Miss):
            _read(name)


def test_golden_expired_entry_is_a_clean_miss() -> None:
    same = READABLE and _entry.PYTHON == GOLDEN_PYTHON
    with pytest.raises(_entry.Miss, match="stale" if same else None):
        _read("format1-expired.mj")


def test_golden_signed_entry_needs_its_secret() -> None:
    function, version, key, *_ = GOLDEN["format1-versioned-signed.mj"]
    data = (HERE / "format1-versioned-signed.mj").read_bytes()
    ident = _entry.make_ident(function, version, FINGERPRINT)
    for secret in (None, b"another secret"):
        with pytest.raises(_entry.Miss):
            _entry.verify(data, ident, key.encode(), time.time(), None, secret)


def test_golden_entries_in_a_cache_are_listed_and_pruned(tmp_path: Path) -> None:
    """Placed in a cache directory, golden files list and prune without an error."""
    cache = Cache(tmp_path / "cache")
    for name, (function, _v, key, *_rest) in GOLDEN.items():
        path = Path(cache.store.path(function, key))
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / name, path)
    listed = sorted((e.function, e.key) for e in cache.entries())
    if READABLE:
        assert listed == sorted((f, k) for f, _v, k, *_ in GOLDEN.values())
    else:
        assert listed == []
    removed = cache.prune()
    if READABLE and _entry.PYTHON == GOLDEN_PYTHON:
        assert removed == 1  # the expired one
        assert len(list(cache.entries())) == 3
    else:  # unreadable or another Python's: all of them go
        assert removed == 4
        assert list(cache.entries()) == []
