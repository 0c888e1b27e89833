"""What every remote store does the same way, run on each (Redis, S3): the trust warning
of a cache without a secret (``Store``'s, given once), and ``@cached(cache_dir=URL)``."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from memojar import Cache, MemojarWarning, cached
from remote_kit import SECRET, counted


@pytest.fixture(params=["redis", "s3"])
def remote_location(request: pytest.FixtureRequest) -> Any:
    if request.param == "redis":
        pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[dev]')")
    return request.getfixturevalue(f"{request.param}_location")


def test_unsigned_cache_warns_once(remote_location: str) -> None:
    warnings.resetwarnings()  # the fixture ignores this warning for store-level tests
    warnings.simplefilter("error")
    double, _ = counted(Cache(remote_location))
    with pytest.warns(MemojarWarning) as record:
        assert [double(1), double(1), double(2)] == [2, 2, 4]
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert "has no secret: its entries are not authenticated" in messages[0]
    assert remote_location.partition("?")[0] in messages[0]


def test_signed_cache_does_not_warn(remote_location: str) -> None:
    warnings.resetwarnings()
    warnings.simplefilter("error")
    double, _ = counted(Cache(remote_location, secret=SECRET))
    assert double(1) == double(1) == 2  # any warning fails


def test_cached_with_a_remote_cache_dir(remote_location: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMOJAR_SECRET", SECRET)
    calls = []

    @cached(cache_dir=remote_location)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(x=3)] == [9, 9, 9]
    assert calls == [3]
    assert square.cache_info().entries == 1
    assert square.cache_delete(3) is True
    assert square.cache_delete(3) is False
