"""The entry format: encode, verify, load, and every way an entry is a ``Miss``."""

from __future__ import annotations

import pickle
import struct
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from memojar import _entry, cached
from memojar._entry import Miss, encode, load, make_ident, read_header, verify

np = pytest.importorskip("numpy")

IDENT = make_ident("mod.func", None, "0123456789abcdef")
KEY = "0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0


def build(value: Any = "value", *, ident: bytes = IDENT, key: str = KEY, created: float = NOW,
          expires: float | None = None, compute_time: float = 1.5,
          secret: bytes | None = None) -> bytearray:
    chunks = encode(value, ident=ident, key=key, created=created, expires=expires,
                    compute_time=compute_time, secret=secret)
    return bytearray(b"".join(bytes(memoryview(c).cast("B")) for c in chunks))


def check(data: Any, *, ident: bytes = IDENT, key: str = KEY, now: float = NOW + 1,
          ttl: float | None = None, secret: bytes | None = None) -> Any:
    payload, buffers = verify(data, ident, key.encode(), now, ttl, secret)
    return load(payload, buffers)


def reseal(data: bytearray) -> bytearray:
    """Recompute the checksum after editing an entry, as a forger would."""
    struct.pack_into("<Q", data, _entry.CHECKSUM_AT, _entry.checksum_of(data))
    return data


# --- round trips --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value",
    [None, 0, 1.5, "text", b"bytes", [1, 2, {"a": {3}}], {"k": (1, None)}, 2**100, ""],
    ids=repr,
)
def test_plain_values_round_trip(value: Any) -> None:
    assert check(build(value)) == value


def test_none_round_trips_as_none() -> None:
    assert check(build(None)) is None


def test_numpy_arrays_round_trip_through_out_of_band_buffers() -> None:
    arrays = {"a": np.arange(10_000, dtype=np.float64), "b": np.ones((3, 7), dtype=np.int8),
              "c": np.arange(12, dtype=np.int32).reshape(3, 4).T}
    data = build(arrays)
    header = read_header(bytes(data[:4096]))
    assert header.size == len(data)
    loaded = check(data)
    for name, arr in arrays.items():
        assert loaded[name].dtype == arr.dtype
        np.testing.assert_array_equal(loaded[name], arr)


def test_out_of_band_buffers_start_at_64_byte_aligned_offsets() -> None:
    value = [np.arange(n, dtype=np.uint8) for n in (1, 63, 100, 1000)]
    data = build(value)
    _, buffers = verify(data, IDENT, KEY.encode(), NOW, None, None)
    assert len(buffers) == 4
    base = np.frombuffer(data, dtype=np.uint8).ctypes.data
    for buf, arr in zip(buffers, value, strict=True):
        offset = np.frombuffer(buf, dtype=np.uint8).ctypes.data - base
        assert offset % 64 == 0
        assert bytes(buf) == arr.tobytes()


def test_loaded_array_is_a_view_of_the_entry_not_a_copy() -> None:
    data = build(np.arange(100_000, dtype=np.int64))
    arr = check(data)
    assert np.shares_memory(arr, np.frombuffer(data, dtype=np.uint8))


def test_signed_entry_round_trips() -> None:
    assert check(build([1, 2], secret=b"s3cret"), secret=b"s3cret") == [1, 2]


def test_signed_entry_with_buffers_round_trips() -> None:
    arr = np.arange(1000)
    np.testing.assert_array_equal(check(build(arr, secret=b"k"), secret=b"k"), arr)


# --- read_header --------------------------------------------------------------------------

def test_read_header_fields() -> None:
    ident = make_ident("pkg.mod.func", 3, "fedcba9876543210")
    data = build("v", ident=ident, created=NOW, expires=NOW + 60, compute_time=2.25)
    header = read_header(bytes(data))
    assert header.function == "pkg.mod.func"
    assert header.version == "int:3"
    assert header.fingerprint == "fedcba9876543210"
    assert header.python == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert header.protocol == 5
    assert header.key == KEY
    assert header.created == NOW
    assert header.expires == NOW + 60
    assert header.compute_time == 2.25
    assert header.size == len(data)
    assert header.format == _entry.FORMAT_VERSION
    assert header.incompatible() is None
    assert not header.stale(NOW + 59)
    assert header.stale(NOW + 60)


def test_read_header_without_expiry_says_none() -> None:
    header = read_header(bytes(build(expires=None)))
    assert header.expires is None
    assert not header.stale(NOW + 10**9)


def test_read_header_needs_only_the_head() -> None:
    data = build(np.arange(100_000))
    need = _entry.header_length(bytes(data[: _entry.HEAD]))
    header = read_header(bytes(data[:need]))
    assert header.size == len(data)
    with pytest.raises(Miss, match="truncated"):
        read_header(bytes(data[: need - 1]))


def test_read_header_of_a_signed_entry() -> None:
    data = build(secret=b"k")
    assert read_header(bytes(data)).size == len(data)


def test_read_header_of_garbage_is_a_miss() -> None:
    with pytest.raises(Miss):
        read_header(b"not an entry at all, but long enough to be read as one, maybe?")


def test_version_tag_keeps_int_and_str_apart() -> None:
    assert _entry.version_tag(1) != _entry.version_tag("1")
    assert _entry.version_tag(None) == ""


# --- every mismatch is a Miss -------------------------------------------------------------

@pytest.mark.parametrize(
    "ident",
    [
        make_ident("mod.other", None, "0123456789abcdef"),
        make_ident("mod.func", 1, "0123456789abcdef"),
        make_ident("mod.func", "1", "0123456789abcdef"),
        make_ident("mod.func", None, "fedcba9876543210"),
        "\0".join(["mod.func", "", "0123456789abcdef", "3.9", "5"]).encode(),
        "\0".join(["mod.func", "", "0123456789abcdef", _entry.PYTHON, "4"]).encode(),
    ],
    ids=["function", "version-int", "version-str", "code", "python", "protocol"],
)
def test_entry_for_another_identity_is_a_miss(ident: bytes) -> None:
    with pytest.raises(Miss, match="another function, version, code or Python"):
        check(build(ident=ident))


def test_version_1_and_version_str_1_do_not_match() -> None:
    with pytest.raises(Miss):
        check(build(ident=make_ident("f", 1, "x")), ident=make_ident("f", "1", "x"))


def test_entry_for_another_key_is_a_miss() -> None:
    with pytest.raises(Miss, match="another key"):
        check(build(), key="f" * 32)


def test_entry_past_its_expiry_is_a_miss() -> None:
    data = build(expires=NOW + 10)
    assert check(data, now=NOW + 9.9) == "value"
    with pytest.raises(Miss, match="stale"):
        check(data, now=NOW + 10)


def test_entry_older_than_the_current_ttl_is_a_miss() -> None:
    data = build(expires=None)
    assert check(data, now=NOW + 29, ttl=30) == "value"
    with pytest.raises(Miss, match="stale"):
        check(data, now=NOW + 30, ttl=30)


def test_both_the_written_expiry_and_the_current_ttl_must_allow_it() -> None:
    data = build(expires=NOW + 10)
    with pytest.raises(Miss, match="stale"):
        check(data, now=NOW + 11, ttl=100)  # a longer ttl now does not revive it


@pytest.mark.parametrize("where", ["payload", "last-byte", "header-times"])
def test_bad_checksum_is_a_miss(where: str) -> None:
    data = build(["some", "payload", 12345])
    at = {"payload": len(data) - 10, "last-byte": len(data) - 1, "header-times": 16}[where]
    data[at] ^= 0x01
    with pytest.raises(Miss, match="checksum"):
        check(data, now=0.0 if where == "header-times" else NOW + 1)


def test_bad_checksum_on_buffers_is_a_miss() -> None:
    data = build(np.arange(1000, dtype=np.int64))
    data[-3] ^= 0xFF
    with pytest.raises(Miss, match="checksum"):
        check(data)


@pytest.mark.parametrize("cut", [0, 1, 10, 50, -1, -100])
def test_truncated_entry_is_a_miss(cut: int) -> None:
    data = build(np.arange(1000))
    with pytest.raises(Miss):
        check(data[:cut])


def test_entry_with_bytes_appended_is_a_miss() -> None:
    with pytest.raises(Miss, match="bytes long"):
        check(build() + b"\0")


def test_unknown_format_is_a_miss() -> None:
    data = build()
    struct.pack_into("<H", data, _entry.FORMAT_AT, _entry.FORMAT_VERSION + 1)
    with pytest.raises(Miss, match="entry format"):
        check(reseal(data))
    with pytest.raises(Miss, match="entry format"):
        read_header(bytes(data))


def test_not_an_entry_is_a_miss() -> None:
    with pytest.raises(Miss, match="not a memojar entry"):
        check(bytearray(b"\x80\x05K\x01." + b"\0" * 100))


def test_unsigned_entry_in_a_cache_with_a_secret_is_a_miss() -> None:
    with pytest.raises(Miss, match="not signed"):
        check(build(), secret=b"k")


def test_signed_entry_in_a_cache_without_a_secret_is_a_miss() -> None:
    with pytest.raises(Miss, match="signed"):
        check(build(secret=b"k"))


def test_entry_signed_with_another_secret_is_a_miss() -> None:
    with pytest.raises(Miss, match="signature"):
        check(build(secret=b"right"), secret=b"wrong")


def test_forged_payload_with_a_valid_checksum_fails_the_signature() -> None:
    data = build("honest", secret=b"k")
    at = bytes(data).index(b"honest")
    data[at : at + 6] = b"forged"
    with pytest.raises(Miss, match="signature"):
        check(reseal(data), secret=b"k")


def test_forged_unsigned_payload_is_caught_only_by_the_checksum() -> None:
    data = build("honest")
    at = bytes(data).index(b"honest")
    data[at : at + 6] = b"forged"
    with pytest.raises(Miss, match="checksum"):
        check(data)
    assert check(reseal(data)) == "forged"  # why a shared cache needs a secret


def test_payload_that_no_longer_loads_is_a_miss() -> None:
    class Gone:
        pass

    Gone.__qualname__ = "Gone"
    Gone.__module__ = __name__
    globals()["Gone"] = Gone
    try:
        data = build(Gone())
    finally:
        del globals()["Gone"]
    with pytest.raises(Miss, match="does not load"):
        check(data)


def test_verify_runs_no_pickle_before_the_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    data = build()
    calls = []
    monkeypatch.setattr(_entry.pickle, "loads", lambda *a, **k: calls.append(a))
    with pytest.raises(Miss):
        verify(data, IDENT, b"f" * 32, NOW, None, None)
    verify(data, IDENT, KEY.encode(), NOW, None, None)
    assert calls == []


def test_entry_encodes_its_times() -> None:
    before = time.time()
    data = build(created=before, expires=before + 5, compute_time=0.125)
    header = read_header(bytes(data))
    assert (header.created, header.expires, header.compute_time) == (before, before + 5, 0.125)


# --- an entry is a pickle stream --------------------------------------------------------

def _touch(path: str) -> str:
    """What unpickling a ``_RunsCode`` calls: its file's existence proves the payload ran."""
    with open(path, "w") as f:
        f.write("unpickled\n")
    return "ran"


class _RunsCode:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _touch, (self.path,)


def _entry_file(root: Path) -> Path:
    (path,) = root.rglob("*.pkl")
    return path


def test_pickle_load_of_an_entry_file_gives_the_value(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir)
    def table(n: int) -> dict[str, Any]:
        return {"n": n, "rows": [(i, f"row {i}") for i in range(n)], "ratio": 0.5}

    value = table(3)
    path = _entry_file(cache_dir)
    assert path.name == f"{table.cache_key(3)}.pkl"
    with open(path, "rb") as f:
        assert pickle.load(f) == value


def test_pickle_load_of_an_entry_with_out_of_band_buffers_asks_for_them(
    cache_dir: Path,
) -> None:
    """As the module's docstring says: the buffers follow the stream, 64-byte aligned."""
    @cached(cache_dir=cache_dir)
    def array(n: int) -> Any:
        return np.arange(n)

    assert array(1000).sum() == 499500
    data = _entry_file(cache_dir).read_bytes()
    with pytest.raises(pickle.UnpicklingError, match="refers to out-of-band data"):
        pickle.loads(data)


def test_which_results_plain_pickle_load_reads(cache_dir: Path) -> None:
    """As the README says: bytes and a bytearray stay in the stream, which ``pickle.load``
    reads; a numpy array of any size goes after it (before, the README said "large")."""
    @cached(cache_dir=cache_dir)
    def make(kind: str) -> Any:
        return {"bytes": b"x" * 100_000, "bytearray": bytearray(100_000),
                "small array": np.arange(10)}[kind]

    for kind in ("bytes", "bytearray", "small array"):
        make(kind)
        (path,) = cache_dir.rglob(f"{make.cache_key(kind)}.pkl")
        if kind == "small array":
            with pytest.raises(pickle.UnpicklingError, match="refers to out-of-band data"):
                pickle.loads(path.read_bytes())
        else:
            assert pickle.loads(path.read_bytes()) == make(kind)


def _planted(cache_dir: Path, marker: Path) -> tuple[Any, Path]:
    """A cached function with one entry whose payload is replaced by one that runs code,
    its payload length fixed but its checksum left as it was."""
    @cached(cache_dir=cache_dir)
    def square(x: int) -> int:
        return x * x

    assert square(7) == 49
    path = _entry_file(cache_dir)
    data = path.read_bytes()
    header = read_header(data)
    payload = pickle.dumps(_RunsCode(str(marker)), protocol=5)
    pop_at = _entry.header_length(data)
    assert data[pop_at : pop_at + 1] == b"0"  # POP, then the payload
    forged = bytearray(data[: pop_at + 1] + payload)
    fixed_at = _entry.CHECKSUM_AT + 8
    created, expires, compute, _, ident_len, nbuf = struct.unpack_from("<dddQII", forged, fixed_at)
    struct.pack_into("<dddQII", forged, fixed_at, created, expires, compute, len(payload),
                     ident_len, nbuf)
    assert len(forged) == read_header(bytes(forged)).size != header.size
    path.write_bytes(forged)
    return square, path


def test_a_payload_that_runs_code_behind_a_bad_checksum_never_runs(
    cache_dir: Path, tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    square, path = _planted(cache_dir, marker)
    with pytest.raises(Miss, match="checksum mismatch"):
        verify(path.read_bytes(), square.__memojar__.ident, square.cache_key(7).encode(),
               time.time(), None, None)
    assert not square.cache_contains(7)
    assert square(7) == 49  # recomputed, the entry replaced
    assert not marker.exists()
    with open(path, "rb") as f:
        assert pickle.load(f) == 49  # the honest entry again


def test_a_header_length_that_does_not_add_up_is_a_miss_before_any_pickle(
    cache_dir: Path, tmp_path: Path,
) -> None:
    """The BINBYTES length sits before the checksummed part: memojar checks it against the
    header's own lengths, so what ``pickle.load`` skips is what memojar checked."""
    marker = tmp_path / "ran"
    square, path = _planted(cache_dir, marker)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 3, struct.unpack_from("<I", data, 3)[0] + 1)
    struct.pack_into("<Q", data, _entry.CHECKSUM_AT, _entry.checksum_of(data))
    path.write_bytes(data)
    with pytest.raises(Miss, match="header length"):
        verify(bytes(data), square.__memojar__.ident, square.cache_key(7).encode(),
               time.time(), None, None)
    assert square(7) == 49
    assert not marker.exists()


# --- the thread's pickler, kept between results -------------------------------------------

class Seen:
    def __init__(self, x: Any) -> None:
        self.x = x


def _named(classes: set[type]) -> bytes:
    return _entry.CLASSES + ",".join(sorted(c.__name__ for c in classes)).encode()


def _encode_seeing(value: Any, key: str = KEY) -> bytearray:
    chunks = encode(value, ident=IDENT, key=key, created=NOW, expires=None, compute_time=1.0,
                    result_classes=_named)
    return bytearray(b"".join(bytes(memoryview(c).cast("B")) for c in chunks))


def test_the_classes_of_one_result_are_not_carried_into_the_next() -> None:
    first = _encode_seeing({"a": Seen(1)})
    second = _encode_seeing({"a": [1, 2]})
    assert read_header(first).classes == "Seen"
    assert read_header(second).classes == ""
    assert check(second) == {"a": [1, 2]}


class Stores:
    """A result whose pickling encodes another result (a cached call made by __reduce__)."""

    inner: bytearray | None = None

    def __reduce__(self) -> Any:
        Stores.inner = _encode_seeing([Seen(2), "inner"], key="f" * 32)
        return (list, ([1, 2, 3],))


def test_a_result_whose_pickling_encodes_another_gives_two_whole_entries() -> None:
    outer = _encode_seeing({"outer": Stores()})
    assert Stores.inner is not None
    payload, buffers = verify(outer, IDENT, KEY.encode(), NOW + 1, None, None,
                              lambda section: None)
    assert load(payload, buffers) == {"outer": [1, 2, 3]}
    payload, buffers = verify(Stores.inner, IDENT, b"f" * 32, NOW + 1, None, None,
                              lambda section: None)
    inner = load(payload, buffers)
    assert inner[1] == "inner" and inner[0].x == 2
    assert "Stores" in read_header(outer).classes.split(",")
    assert "Seen" not in read_header(outer).classes.split(",")  # the inner result's


def test_a_value_that_fails_to_pickle_leaves_the_next_result_whole() -> None:
    with pytest.raises(TypeError, match="pickle"):
        _encode_seeing({"a": Seen(1), "lock": __import__("threading").Lock()})
    data = _encode_seeing({"b": 2})
    assert read_header(data).classes == ""
    assert check(data) == {"b": 2}


@pytest.mark.parametrize("expires", [-5.0, -NOW, NOW - 5, float("nan"), float("inf"),
                                     -float("inf")], ids=repr)
def test_an_expiry_past_or_no_time_is_stale_to_every_reader_of_the_header(
        expires: float) -> None:
    """One reading of the expiry field (``_entry.expired``) for the hit path, ``verify``
    and listings: before, a negative expiry (written by hand, by a clock far off) read as
    never to ``Header.stale`` (listings, ``prune``) and as expired to the hit path, and a
    NaN one let both the hit path and ``verify`` serve the entry that ``read_header``
    refuses."""
    data = bytes(build(expires=expires))
    with pytest.raises(Miss, match="stale"):
        check(data)
    with pytest.raises(Miss, match="stale"):
        _entry.make_reader(IDENT, None, None, clock=lambda: NOW + 1)(data, KEY)
    try:
        header = read_header(data)
    except Miss as miss:
        assert "unreadable" in miss.reason and not np.isfinite(expires)
    else:
        assert header.stale(NOW + 1)
