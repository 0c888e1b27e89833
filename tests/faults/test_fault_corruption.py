"""Attack 3: damaged entry files. The call returns the right value and the bad entry is gone.

Every kind of damage is tried on a real entry through the decorator (one region at a time),
and exhaustively on the entry reader: every single flipped byte and every truncation.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faultkit import RawEntry, regions

from memojar import Cache, _entry

OOB = 300  # bytes of the out-of-band buffer, so every region of the format is present


def _value(x: int) -> dict[str, Any]:
    return {"x": x, "text": f"value {x}" * 3, "oob": pickle.PickleBuffer(bytearray([x]) * OOB)}


def _same(got: dict[str, Any], x: int) -> bool:
    return (got["x"], got["text"], bytes(got["oob"])) == (x, f"value {x}" * 3, bytes([x]) * OOB)


def _flip(region: str) -> Callable[[bytes, bytes], bytes]:
    def damage(data: bytes, _other: bytes) -> bytes:
        start, end = regions(data)[region]
        at = (start + end) // 2
        return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]
    return damage


def _cut(region: str) -> Callable[[bytes, bytes], bytes]:
    def damage(data: bytes, _other: bytes) -> bytes:
        start, end = regions(data)[region]
        return data[: (start + end) // 2]
    return damage


REGIONS = ["lead", "prefix", "fixed", "ident", "key", "buffer_lengths", "pop", "payload",
           "buffer0"]
DAMAGE: dict[str, Callable[[bytes, bytes], bytes]] = {
    **{f"flip-{r}": _flip(r) for r in REGIONS},
    **{f"truncate-{r}": _cut(r) for r in REGIONS},
    "truncate-last-byte": lambda data, _o: data[:-1],
    "extra-byte": lambda data, _o: data + b"\0",
    "all-zero": lambda data, _o: bytes(len(data)),
    "empty": lambda _d, _o: b"",
    "other-entry": lambda _d, other: other,
    "random": lambda data, _o: os.urandom(len(data)),
    "random-with-magic": lambda data, _o: data[:11] + os.urandom(len(data) - 11),
}
SIGNED_DAMAGE = {"flip-signature": _flip("signature"), "truncate-signature": _cut("signature")}


def _attack(cache_dir: Path, secret: str | None, damage: Callable[[bytes, bytes], bytes]) -> None:
    cache = Cache(cache_dir, secret=secret)
    calls: list[int] = []

    @cache.cached
    def f(x: int) -> dict[str, Any]:
        calls.append(x)
        return _value(x)

    f(1), f(2)
    path, other = RawEntry(f, 1), RawEntry(f, 2)
    bad = damage(path.read_bytes(), other.read_bytes())
    path.write_bytes(bad)
    assert not f.cache_contains(1)
    assert _same(f(1), 1)
    assert calls == [1, 2, 1]  # recomputed, not read from the damaged file
    assert path.read_bytes() != bad  # the bad entry is gone, replaced by a good one
    assert _same(f(1), 1)
    assert calls == [1, 2, 1]  # and the replacement is a hit
    assert _same(f(2), 2) and calls == [1, 2, 1]  # the other entry was never touched


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_entry_is_recomputed_and_replaced(cache_dir: Path, kind: str) -> None:
    _attack(cache_dir, None, DAMAGE[kind])


@pytest.mark.parametrize("kind", sorted({**DAMAGE, **SIGNED_DAMAGE}))
def test_damaged_signed_entry_is_recomputed_and_replaced(cache_dir: Path, kind: str) -> None:
    _attack(cache_dir, "s3cret", {**DAMAGE, **SIGNED_DAMAGE}[kind])


def test_entry_of_another_function_swapped_in_is_a_miss(cache_dir: Path) -> None:
    cache = Cache(cache_dir)

    @cache.cached
    def f(x: int) -> str:
        return f"f{x}"

    @cache.cached
    def g(x: int) -> str:
        return f"g{x}"

    assert (f(1), g(1)) == ("f1", "g1")
    f_path, g_path = RawEntry(f, 1), RawEntry(g, 1)
    f_path.write_bytes(g_path.read_bytes())
    assert f(1) == "f1"
    assert f.cache_info().misses == 2
    assert f(1) == "f1" and f.cache_info().hits == 1


@pytest.mark.parametrize("kind", ["flip-payload", "truncate-payload", "flip-buffer0", "random"])
def test_damaged_large_mapped_entry_is_recomputed(cache_dir: Path, kind: str) -> None:
    """Entries over 1 MiB are read through mmap: the same checks hold there."""
    cache = Cache(cache_dir)
    calls: list[int] = []

    @cache.cached
    def big(x: int) -> dict[str, Any]:
        calls.append(x)
        return {"x": x, "oob": pickle.PickleBuffer(bytearray([x]) * (2 << 20))}

    big(3)
    path = RawEntry(big, 3)
    path.write_bytes(DAMAGE[kind](path.read_bytes(), b""))
    got = big(3)
    assert got["x"] == 3 and bytes(got["oob"]) == bytes([3]) * (2 << 20)
    assert calls == [3, 3]


# --- exhaustive, on the entry reader ------------------------------------------------------

IDENT = _entry.make_ident("tests.faults.exhaustive", 1, "00ff00ff00ff00ff")
KEY = "0123456789abcdef0123456789abcdef"


def _encoded(secret: bytes | None) -> bytes:
    chunks = _entry.encode(
        {"a": 1, "oob": pickle.PickleBuffer(bytearray(b"xyz") * 30)}, ident=IDENT, key=KEY,
        created=time.time(), expires=None, compute_time=0.5, secret=secret,
    )
    return b"".join(bytes(memoryview(c).cast("B")) for c in chunks)


def _read(data: bytes, secret: bytes | None) -> Any:
    return _entry.load(*_entry.verify(data, IDENT, KEY.encode(), time.time(), None, secret))


@pytest.mark.parametrize("secret", [None, b"k"], ids=["plain", "signed"])
def test_every_flipped_bit_of_an_entry_is_a_miss(secret: bytes | None) -> None:
    data = _encoded(secret)
    assert bytes(_read(data, secret)["oob"]) == b"xyz" * 30
    for at in range(len(data)):
        for bit in (0x01, 0x80):
            bad = data[:at] + bytes([data[at] ^ bit]) + data[at + 1 :]
            with pytest.raises(_entry.Miss):
                _read(bad, secret)


@pytest.mark.parametrize("secret", [None, b"k"], ids=["plain", "signed"])
def test_every_truncation_of_an_entry_is_a_miss(secret: bytes | None) -> None:
    data = _encoded(secret)
    for end in range(len(data)):
        with pytest.raises(_entry.Miss):
            _read(data[:end], secret)
