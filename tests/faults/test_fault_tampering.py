"""Attack 6: tampered entries. With a secret, the HMAC decides and nothing unverified is ever
unpickled. Without one, files of other users are never unpickled; files the user's own account
can write are trusted (the README's "Guarantees" says so plainly; the last test shows it).

Every planted payload is a ``Marker``: unpickling it creates a marker file, so its absence
proves that nothing was unpickled.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from faultkit import Marker, malicious_pickle, with_fields, with_payload

from memojar import Cache, MemojarWarning, _entry

NOBODY = 65534


def _victim(cache_dir: Path, secret: str | None, ttl: float | None = None) -> tuple[Any, list]:
    cache = Cache(cache_dir, secret=secret)
    calls: list[int] = []

    @cache.cached(ttl=ttl)
    def f(x: int) -> str:
        calls.append(x)
        return f"honest {x}"

    return f, calls


def _path(f: Any, x: int) -> Path:
    memo = f.__memojar__
    return Path(memo.store.path(memo.name, f.cache_key(x)))


def _plant(f: Any, x: int, value: object, secret: bytes | None, created: float | None = None,
           expires: float | None = None) -> Path:
    """Write an entry for ``f(x)`` as someone else would: right ident and key, ``value``."""
    memo = f.__memojar__
    chunks = _entry.encode(
        value, ident=memo.ident, key=f.cache_key(x), created=created or time.time(),
        expires=expires, compute_time=0.1, secret=secret,
    )
    path = _path(f, x)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(bytes(memoryview(c).cast("B")) for c in chunks))
    return path


def _assert_own_entry(f: Any, x: int, secret: bytes | None) -> None:
    """The file for ``f(x)`` is now the victim's own, honest, verified entry."""
    path = _path(f, x)
    st = path.stat()
    assert st.st_uid == os.getuid()
    memo = f.__memojar__
    payload, buffers = _entry.verify(path.read_bytes(), memo.ident, f.cache_key(x).encode(),
                                     time.time(), memo.ttl, secret)
    assert _entry.load(payload, buffers) == f"honest {x}"


def test_entry_signed_with_another_secret_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    f, calls = _victim(tmp_path / "cache", "right")
    _plant(f, 1, Marker(marker), secret=b"wrong")
    assert not f.cache_contains(1)
    with pytest.warns(MemojarWarning, match=r"is signed with another secret \(or was forged\)"):
        assert f(1) == "honest 1"
    assert calls == [1]
    assert not marker.exists()
    _assert_own_entry(f, 1, b"right")


def test_unsigned_entry_in_a_signed_cache_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    f, calls = _victim(tmp_path / "cache", "right")
    _plant(f, 1, Marker(marker), secret=None)
    with pytest.warns(MemojarWarning, match="is not signed, and this cache has a secret"):
        assert f(1) == "honest 1"
    assert calls == [1] and not marker.exists()
    _assert_own_entry(f, 1, b"right")


def test_payload_replaced_by_a_malicious_pickle_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    f, calls = _victim(tmp_path / "cache", "right")
    assert f(1) == "honest 1"
    path = _path(f, 1)
    # the attacker fixes the length and the checksum; only the signature can tell
    path.write_bytes(with_payload(path.read_bytes(), malicious_pickle(marker)))
    with pytest.warns(MemojarWarning, match=r"is signed with another secret \(or was forged\)"):
        assert f(1) == "honest 1"
    assert calls == [1, 1] and not marker.exists()
    _assert_own_entry(f, 1, b"right")


def test_header_edited_to_extend_expiry_is_a_miss(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    f, calls = _victim(tmp_path / "cache", "right", ttl=60)
    now = time.time()
    path = _plant(f, 1, Marker(marker), secret=b"right", created=now - 1000, expires=now - 940)
    path.write_bytes(with_fields(path.read_bytes(), created=now, expires=now + 10**6))
    with pytest.warns(MemojarWarning, match=r"is signed with another secret \(or was forged\)"):
        assert f(1) == "honest 1"
    assert calls == [1] and not marker.exists()
    _assert_own_entry(f, 1, b"right")


def test_other_users_signed_entry_loads_with_the_secret(tmp_path: Path) -> None:
    f, calls = _victim(tmp_path / "cache", "shared")
    path = _plant(f, 1, "from a colleague", secret=b"shared")
    os.chown(path, NOBODY, NOBODY)
    assert f(1) == "from a colleague"
    assert calls == []


def test_other_users_entry_without_secret_is_never_unpickled(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    marker = tmp_path / "marker"
    f, calls = _victim(cache_dir, None)
    for x in (1, 2):
        os.chown(_plant(f, x, Marker(marker), secret=None), NOBODY, NOBODY)
    with pytest.warns(MemojarWarning) as caught:
        assert f(1) == "honest 1"
        assert f(2) == "honest 2"
    assert len(caught) == 1  # one warning per cache, however many foreign entries
    message = str(caught[0].message)
    assert str(cache_dir) in message and "secret" in message
    assert calls == [1, 2] and not marker.exists()
    _assert_own_entry(f, 1, None)
    _assert_own_entry(f, 2, None)
    assert (f(1), f(2)) == ("honest 1", "honest 2") and calls == [1, 2]


def test_cache_explain_says_an_entry_is_another_users(tmp_path: Path) -> None:
    """Before: "miss: no entry for these arguments", for an entry that is there."""
    marker = tmp_path / "marker"
    f, _ = _victim(tmp_path / "cache", None)
    os.chown(_plant(f, 1, Marker(marker), secret=None), NOBODY, NOBODY)
    with pytest.warns(MemojarWarning, match="owned by another user"):  # as a call's read
        said = f.cache_explain(1)
    assert said == ("miss: the entry is nobody's, and without a secret memojar never "
                    "unpickles another user's entries")
    assert f.cache_explain(2) == "miss: no entry for these arguments"
    assert not marker.exists()


def test_symlinked_entry_is_never_followed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    f, calls = _victim(tmp_path / "cache", None)
    planted = _plant(f, 1, Marker(marker), secret=None)
    elsewhere = tmp_path / "elsewhere.pkl"
    planted.rename(elsewhere)
    planted.symlink_to(elsewhere)
    assert f(1) == "honest 1"
    assert calls == [1] and not marker.exists()
    assert not planted.is_symlink()
    _assert_own_entry(f, 1, None)


def test_without_secret_the_users_own_writable_files_are_trusted(tmp_path: Path) -> None:
    """The boundary, shown: an entry forged by anyone who can write files *as this user*
    (with a correct checksum) is loaded. Only a ``secret`` defends against that."""
    marker = tmp_path / "marker"
    f, calls = _victim(tmp_path / "cache", None)
    _plant(f, 1, Marker(marker), secret=None)
    assert f(1) == "pwned"
    assert calls == [] and marker.exists()
