"""The one plug-in point: URL scheme -> store factory, and ``Cache(store=...)``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memojar import Cache, UnknownStoreError
from memojar._cache import STORES, open_store
from memojar._filestore import FileStore


@pytest.mark.parametrize("location", ["http://example.com/c", "s4://bucket/prefix",
                                      "Redis+x://h", "redis-local:/tmp/x"])
def test_a_url_of_an_unknown_scheme_is_an_error_not_a_folder(
    location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownStoreError, match=r"known: file://, redis://, rediss://, s3://, unix://"):
        Cache(location)
    assert os.listdir(tmp_path) == []  # no folder named "http:" or "redis:"


def test_a_typo_in_a_redis_url_is_an_error_not_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("redis")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"'redis:/localhost' is not a valid Redis URL"):
        Cache("redis:/localhost")
    assert os.listdir(tmp_path) == []


def test_unknown_scheme_error_pickles() -> None:
    import pickle

    exc = pickle.loads(pickle.dumps(UnknownStoreError("x://y", "x")))
    assert exc.scheme == "x" and "x://y" in str(exc)


def test_a_file_url_is_a_directory(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'c'}", None)
    assert isinstance(store, FileStore) and store.root == str(tmp_path / "c")


def test_a_registered_scheme_gets_its_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []

    def factory(location: str, max_size: int | None, secret: bytes | None,
                signed: bool) -> FileStore:
        seen.append((location, max_size, secret, signed))
        return FileStore(tmp_path / "mine", max_size=max_size, trust_foreign=signed)

    monkeypatch.setitem(STORES, "mine", factory)
    cache = Cache("mine://anything", max_size=10_000, secret="s")
    assert seen == [("mine://anything", 10_000, b"s", True)]
    assert cache.store.location == str(tmp_path / "mine")


def test_cache_over_a_store_object(tmp_path: Path) -> None:
    calls = []
    cache = Cache(store=FileStore(tmp_path / "c", max_size=1 << 20))

    @cache.cached
    def f(x: int) -> int:
        calls.append(x)
        return x * 2

    assert f(2) == f(2) == 4
    assert calls == [2]
    assert cache.max_size == 1 << 20 and cache.directory == str(tmp_path / "c")


def test_cache_with_a_secret_over_a_store_object_trusts_signatures(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "c")
    Cache(store=store, secret="s")
    assert store.signed


def test_store_object_and_location_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not both"):
        Cache(tmp_path / "a", store=FileStore(tmp_path / "b"))


def test_store_must_be_a_store(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="store= must be a memojar store"):
        Cache(store=str(tmp_path))  # type: ignore[arg-type]
