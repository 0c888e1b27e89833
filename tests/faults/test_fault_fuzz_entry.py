"""Attack 9: fuzzing the entry reader (``_entry.verify`` then ``_entry.load``).

It returns a value only for a valid entry; anything else is a ``Miss``, never another
exception, never a hang. The real entries fuzzed here hold a ``Marker``-like payload that
counts its own unpickling, so a mutated entry that got unpickled would show in the count.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

from faultkit import FIXED, PREFIX, rechecksum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memojar import _entry

IDENT = _entry.make_ident("tests.faults.fuzz", "v", "0123456789abcdef")
KEY = "fedcba9876543210fedcba9876543210"
SECRET = b"fuzz-secret"
LOADS: list[int] = []


def _count_load(n: int) -> int:
    """What unpickling a ``_Counted`` calls: records the load."""
    LOADS.append(n)
    return n


class _Counted:
    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return _count_load, (7,)


def _entry_bytes(secret: bytes | None, oob: bool) -> bytes:
    value: Any = {"counted": _Counted(), "text": "abc" * 20}
    if oob:
        value["oob"] = pickle.PickleBuffer(bytearray(b"0123456789") * 20)
    chunks = _entry.encode(value, ident=IDENT, key=KEY, created=time.time(), expires=None,
                           compute_time=1.0, secret=secret)
    return b"".join(bytes(memoryview(c).cast("B")) for c in chunks)


ENTRIES = {(s, o): _entry_bytes(s, o) for s in (None, SECRET) for o in (False, True)}
FUZZ = settings(max_examples=1000, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _read(data: bytes, secret: bytes | None) -> Any:
    """The reader under test: a value, or the ``Miss`` it raised."""
    try:
        payload, buffers = _entry.verify(data, IDENT, KEY.encode(), time.time(), None, secret)
        return _entry.load(payload, buffers)
    except _entry.Miss as miss:
        return miss


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[bytes, bytes, bytes | None]:
    """(original, mutated, secret): a real entry with a few random edits (which may, by
    splicing, turn it into another real entry: that one must then load)."""
    secret, oob = draw(st.sampled_from(sorted(ENTRIES, key=repr)))
    original = ENTRIES[(secret, oob)]
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "splice"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "set" and data:
            data[at : at + 8] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:  # a stretch of another real entry
            other = ENTRIES[draw(st.sampled_from(sorted(ENTRIES, key=repr)))]
            data[at:] = other[at:]
    return original, bytes(data), secret


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from([None, SECRET]))
def test_arbitrary_bytes_are_a_miss(data: bytes, secret: bytes | None) -> None:
    assert isinstance(_read(data, secret), _entry.Miss)


@FUZZ
@given(st.binary(max_size=512), st.sampled_from([None, SECRET]))
def test_arbitrary_bytes_behind_a_valid_prefix_are_a_miss(
    tail: bytes, secret: bytes | None
) -> None:
    head = ENTRIES[(secret, False)][: _entry.HEAD]
    assert isinstance(_read(head + tail, secret), _entry.Miss)


@FUZZ
@given(_mutated())
def test_mutated_entry_is_a_miss_and_never_unpickled(
    case: tuple[bytes, bytes, bytes | None]
) -> None:
    _original, data, secret = case
    before = len(LOADS)
    got = _read(data, secret)
    if data in (ENTRIES[(secret, False)], ENTRIES[(secret, True)]):  # e.g. a whole splice
        assert got["counted"] == 7 and got["text"] == "abc" * 20
        assert len(LOADS) == before + 1
    else:
        assert isinstance(got, _entry.Miss), got
        assert len(LOADS) == before


@FUZZ
@given(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True),
    st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
    st.integers(0, 3), st.binary(max_size=300),
)
def test_forged_header_with_valid_checksum_never_loads_unsigned(
    created: float, expires: float, payload_len: int, ident_len: int, nbuf: int, flags: int,
    rest: bytes,
) -> None:
    """Headers with any field values and a correct (unkeyed) checksum, read with a secret:
    only the signature could admit them, and nothing here is signed with that secret."""
    header_len = (56 + ident_len + _entry.KEY_LEN + 8 * nbuf + (flags & 1) * 32) % 2**32
    data = bytearray(PREFIX.pack(b"\x80\x05B", header_len, b"MJAR", _entry.FORMAT_VERSION,
                                 flags, 0))
    data += FIXED.pack(created, expires, 0.0, payload_len, ident_len, nbuf) + rest
    before = len(LOADS)
    forged = rechecksum(data)
    assert isinstance(_read(forged, SECRET), _entry.Miss)
    try:  # without a secret only the structure is checked: a Miss or a payload, no crash
        _entry.verify(forged, IDENT, KEY.encode(), time.time(), 60.0, None)
    except _entry.Miss:
        pass
    try:
        _entry.read_header(forged)
    except _entry.Miss:
        pass
    assert len(LOADS) == before


def test_real_entries_load_exactly_once_each() -> None:
    """The control: every unmutated entry loads, and counts one unpickling."""
    before = len(LOADS)
    for (secret, _oob), data in ENTRIES.items():
        assert _read(data, secret)["text"] == "abc" * 20
        wrong = None if secret else SECRET
        assert isinstance(_read(data, wrong), _entry.Miss)
    assert len(LOADS) == before + len(ENTRIES)
