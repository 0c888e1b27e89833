"""The one plug-in point: URL scheme -> store factory, and ``Cache(store=...)``."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest

from memojar import Cache, UnknownStoreError, _cli, cached
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
    with pytest.raises(ValueError, match=r"'redis:/localhost' looks like a mistyped redis://"):
        Cache("redis:/localhost")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("location", ["s3://bk\nt/p", "s3://b/p\n", "redis://h\tost:6379/0",
                                      "rediss://host/0\r\n"])
def test_a_url_holding_a_tab_or_a_line_break_is_an_error(location: str) -> None:
    """urllib drops them: before, ``s3://bk\\nt/p`` was the bucket ``bkt``."""
    with pytest.raises(ValueError, match="holds a tab or a line break"):
        Cache(location)


@pytest.mark.parametrize("location", [
    "redis//localhost:6379/0", "rediss//h:6380/0", "s3//bucket/prefix", "unix//tmp/r.sock",
    "file//tmp/c", "REDIS//h", "s3:/bucket/prefix", "s3:bucket", "redis:localhost",
    "file:/tmp/c", "Rediss:/h",
])
def test_a_url_missing_its_colon_or_a_slash_is_an_error_naming_the_schemes(
    location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Before, "redis//host:6379/0" (and "s3//b/p", "rediss//h", "file:/tmp/c") were local
    # folders named "redis", "s3", "rediss", "file:": every call cached on this machine.
    monkeypatch.chdir(tmp_path)
    scheme = location.split(":")[0].split("/")[0].lower()
    with pytest.raises(UnknownStoreError, match=(
        rf"looks like a mistyped {scheme}:// URL \(known: file://, redis://, rediss://, "
        r"s3://, unix://\): write it as")) as caught:
        Cache(location)
    assert caught.value.malformed and caught.value.scheme == scheme
    with pytest.raises(UnknownStoreError):
        cached(cache_dir=location)(len)
    assert _cli.main(["--dir", location, "ls"]) == 1  # not "no cache at .../redis/... yet"
    assert "looks like a mistyped" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("location", "meant"), [
    ("redis//h:6379/0", "redis://h:6379/0"), ("redis:/h", "redis://h"), ("s3:b/p", "s3://b/p"),
    ("file:/tmp/c", "file:///tmp/c"), ("file//tmp/c", "file:///tmp/c"),
    ("unix:/run/r.sock", "unix:///run/r.sock"), ("Rediss:/h", "Rediss://h"),
])
def test_a_mistyped_url_is_told_the_url_it_likely_meant(location: str, meant: str) -> None:
    # Before: "write it as file://...", for file:/tmp/c as for every other scheme.
    with pytest.raises(UnknownStoreError, match=f"write it as '{re.escape(meant)}', or"):
        Cache(location)


@pytest.mark.parametrize("location", ["redis//:hunter2@host:6379/0", "redis:/u:hunter2@host",
                                      "redis:u:hunter2@host"])
def test_a_mistyped_url_shows_no_password(location: str) -> None:
    # (before, one slash showed it: "redis:/u:hunter2@host")
    with pytest.raises(UnknownStoreError) as caught:
        Cache(location)
    assert "hunter2" not in str(caught.value) and ":***@host" in str(caught.value)
    again = pickle.loads(pickle.dumps(caught.value))
    assert again.malformed and str(again) == str(caught.value)


@pytest.mark.parametrize("location", ["data//cache", "redis/cache", "s3/bucket", "./redis//x",
                                      "redisx//y", "caches//s3//b"])
def test_a_relative_path_holding_double_slashes_is_still_a_folder(
    location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    f = Cache(location).cached(lambda x: x + 1)
    assert f(1) == 2 and f(1) == 2 and f.cache_info().hits == 1
    assert os.path.isdir(tmp_path / os.path.normpath(location))


def test_unknown_scheme_error_pickles() -> None:
    import pickle

    exc = pickle.loads(pickle.dumps(UnknownStoreError("x://y", "x")))
    assert exc.scheme == "x" and "x://y" in str(exc)


def test_a_file_url_is_a_directory(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'c'}", None)
    assert isinstance(store, FileStore) and store.root == str(tmp_path / "c")


def test_a_file_url_with_escapes_is_the_directory_they_spell(tmp_path: Path) -> None:
    """``Path.as_uri()`` writes a space as ``%20``: before, the folder ``my%20cache``."""
    where = tmp_path / "my cache?#%"
    assert Cache(where.as_uri()).directory == str(where)
    g = cached(cache_dir=where.as_uri())(len)
    assert g([1]) == 1 and g.__memojar__.store.location == str(where)
    assert _cli.main(["--dir", where.as_uri(), "info", "--json"]) == 0


@pytest.mark.parametrize(("location", "said"), [
    # before: the folder server/share/c of the current directory, written there silently
    ("file://server/share/c", "'file://server/share/c' names the host 'server': a file:// "
                              "URL is a folder of"),
    # before: the current directory (tagged as a cache, its .gitignore written, where
    # ``Cache("")`` is refused), and for %00 an "embedded null byte" from ``os.stat``
    ("file://", "names no folder"), ("FILE://", "names no folder"),
    ("file://localhost", "names no folder"), ("file://localhost/tmp/a%00b", "names no folder"),
])
def test_a_file_url_naming_another_host_or_no_folder_is_an_error(
    location: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=said):
        Cache(location)
    with pytest.raises(ValueError, match=said):
        cached(cache_dir=location)(len)
    assert _cli.main(["--dir", location, "info"]) == 1
    assert said in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spelling", ["FILE://{}", "File://{}", "file://localhost{}",
                                      "file://LOCALHOST{}"])
def test_a_file_url_in_any_case_or_naming_localhost_is_that_directory(
    spelling: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Before: local folders named "FILE:" and "localhost" in the current directory.
    monkeypatch.chdir(tmp_path)
    where = tmp_path / "c"
    location = spelling.format(where)
    assert Cache(location).directory == str(where)
    g = cached(cache_dir=location)(len)
    assert g([1]) == 1 and g.__memojar__.store.location == str(where)
    assert cached(cache_dir=str(where))(len).__memojar__.store is g.__memojar__.store
    assert _cli.main(["--dir", location, "info", "--json"]) == 0
    assert f'"directory": "{where}"' in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["c"]


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
