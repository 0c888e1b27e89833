"""What every remote store does the same way, run on each (Redis, S3): the trust warning
of a cache without a secret (``Store``'s, given once), and ``@cached(cache_dir=URL)``; and
what processes sharing a store do to each other, on every store (the directory too): two
code versions of one function, two secrets."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from conftest import run_python
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


# --- two code versions of one function sharing a store --------------------------------------

_SHARED_SCRIPT = """
import sys
sys.path.insert(0, {folder!r})
from memojar import Cache
import sharedmod

f = Cache({url!r}, secret={secret!r}).cached(sharedmod.load)
print([f(x) for x in sys.argv[1:]], f.cache_info().misses)
"""


@pytest.mark.parametrize("location", ["file", "redis", "s3"], indirect=True)
def test_two_code_versions_sharing_a_store_replace_each_other_s_entries(
    location: str, tmp_path: Any
) -> None:
    """Two processes running different code of one function (two machines, two checkouts)
    on one store: each call gets its own code's value, never the other's; and each code
    finds the other's entry incompatible, removes it and stores its own, so they recompute
    in turn: the same on every store (README: Sharing a cache)."""
    scripts = []
    for name, body in (("old", "return ['old', x]"), ("new", "return ['new', x]")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "sharedmod.py").write_text(f"def load(x):\n    {body}\n")
        scripts.append(_SHARED_SCRIPT.format(folder=str(folder), url=str(location),
                                             secret=SECRET))

    def run(script: str, *args: str) -> str:
        return run_python(script, *args, timeout=120).strip()

    old, new = scripts
    assert run(old, "a", "b") == "[['old', 'a'], ['old', 'b']] 2"
    assert run(old, "a", "b") == "[['old', 'a'], ['old', 'b']] 0"
    assert run(new, "a") == "[['new', 'a']] 1"  # replaced old's 'a'; its first store swept 'b'
    assert run(old, "a", "b") == "[['old', 'a'], ['old', 'b']] 2"
    assert run(new, "a") == "[['new', 'a']] 1"


_SECRET_SCRIPT = """
import sys, warnings
from memojar import Cache, MemojarWarning

def load(x):
    return x * 2

f = Cache({url!r}, secret=sys.argv[1]).cached(load)
with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    values = [f(1), f(2), f(1)]
said = [str(w.message) for w in record if issubclass(w.category, MemojarWarning)]
print(values, f.cache_info().misses, len(said), said[0] if said else "")
"""


@pytest.mark.parametrize("location", ["file", "redis", "s3"], indirect=True)
def test_processes_under_different_secrets_are_warned_once(location: str) -> None:
    """Two processes sharing a store under different secrets never load each other's
    entries and replace them in turn: each is told why, once (before: silently)."""
    script = _SECRET_SCRIPT.format(url=str(location))

    def run(secret: str) -> str:
        return run_python(script, secret, timeout=120).strip()

    assert run("one") == "[2, 4, 2] 2 0"
    assert run("one") == "[2, 4, 2] 0 0"
    out = run("two")
    assert out.startswith("[2, 4, 2] 2 1 an entry of __main__.load in "), out
    assert "is signed with another secret (or was forged)" in out
    assert "Give every process sharing this cache the same secret" in out
    assert run("one").startswith("[2, 4, 2] 2 1 an entry of __main__.load")
