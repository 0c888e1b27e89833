"""The Redis store against a real redis-server: URLs, expiry, size, locks, chunks, faults, trust.

Store semantics shared with the file store live in test_store.py (run on both through
STORE_KINDS); this file tests what only Redis has. Tests that stop, freeze or starve a
server start their own (``own_redis``); the others use the session's server.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[dev]')")

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from conftest import freed_without_the_collector
from memojar import Cache, MemojarWarning, _entry, _redisstore
from memojar._cache import open_store
from memojar._redisstore import LOCK_TTL, RedisStore
from redis_server import RedisServer, free_port, redis_server_path
from remote_kit import (
    FN,
    HANG,
    SECRET,
    ReplyDropper,
    counted,
    evalsha,
    k,
    lock_holder,
    names_the_extra,
    recovers_from_a_frozen_server,
    stampede_computes_once,
    survives_losing_the_server,
    survives_no_server,
)


@pytest.fixture
def client(redis_server: RedisServer, redis_location: str) -> Iterator[Any]:
    """A plain redis-py client on the test's database, to look behind the store's back."""
    db = int(redis_location.rsplit("/", 1)[1])
    c = redis_server.client(db)
    yield c
    c.close()


def names(client: Any, pattern: str = "*") -> set[bytes]:
    """The keys matching ``pattern``, but for a function's sweep note and index set."""
    return {n for n in client.scan_iter(match=pattern)
            if not n.endswith((b":swept", b":entries"))}


def entry_name(f: Any, *args: Any, prefix: str = "memojar:") -> bytes:
    return f"{prefix}{f.__memojar__.name}:{f.cache_key(*args)}".encode()


# --- the decorator on Redis ------------------------------------------------------------------

def test_clear_leaves_no_key_of_its_scope(redis_location: str, client: Any) -> None:
    """Old: ``<prefix>total`` and ``<function>:swept`` stayed after clear."""
    cache = Cache(redis_location + "?chunk_size=1000", max_size=10**6, secret=SECRET)
    double, _ = counted(cache)

    @cache.cached(ttl=0.2)
    def brief(x: int) -> bytes:
        return b"b" * x

    double(1)
    double(b"x" * 5000)  # chunked
    brief(10)
    time.sleep(0.4)  # Redis expires brief's entry; its index members stay behind
    assert cache.clear(double) == 2
    assert {n for n in client.scan_iter() if b"double" in n} == set()
    assert cache.clear() == 0  # brief's expired entry: nothing to remove, and no key left
    assert list(client.scan_iter()) == []


def test_server_down_first_warning_names_the_fault() -> None:
    """Old: the first warning the user saw said the server "failed a moment ago"."""
    url = f"redis://127.0.0.1:{free_port()}/0?socket_timeout=1"
    double, _ = counted(Cache(url, secret=SECRET))
    with pytest.warns(MemojarWarning) as record:
        double(1)
    (message,) = [str(w.message) for w in record]
    assert "a moment ago" not in message
    assert "cannot reach the server" in message and "refused" in message


def test_the_no_secret_warning_comes_once_per_server_not_per_cache(
    redis_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: once per Cache object, so a service making a Cache per request (or per task)
    printed it at each one's first call."""
    import warnings

    warnings.resetwarnings()  # the fixture ignores this warning for store-level tests
    warnings.simplefilter("always")  # as pytest, IPython or -W default show it: every time
    with pytest.warns(MemojarWarning) as record:
        for location in (redis_location, redis_location, f"{redis_location}?socket_timeout=3"):
            double, _ = counted(Cache(location))
            assert double(1) == double(1) == 2
    assert len(record) == 1, [str(w.message) for w in record]
    assert "has no secret" in str(record[0].message)
    # Another prefix is another cache on the server: said of it too, once.
    with pytest.warns(MemojarWarning, match=r"has no secret") as record:
        for _ in range(2):
            double, _ = counted(Cache(f"{redis_location}?prefix=other:"))
            double(1)
    assert len(record) == 1
    # A signed cache says nothing, and does not use up the warning of an unsigned one.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        double, _ = counted(Cache(f"{redis_location}?prefix=third:", secret=SECRET))
        double(1)
    with pytest.warns(MemojarWarning, match=r"has no secret"):
        counted(Cache(f"{redis_location}?prefix=third:"))[0](1)


def test_none_and_large_results_round_trip(redis_location: str) -> None:
    cache = Cache(redis_location, secret=SECRET)
    calls = []

    @cache.cached
    def make(n: int) -> bytes | None:
        calls.append(n)
        return None if n == 0 else os.urandom(16) * n

    first = [make(0), make(300_000)]
    assert [make(0), make(300_000)] == first
    assert calls == [0, 300_000]


# --- ttl and max_size --------------------------------------------------------------------------

def test_ttl_becomes_redis_expiry(redis_location: str, client: Any) -> None:
    cache = Cache(redis_location, secret=SECRET)
    calls = []

    @cache.cached(ttl=60)
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1)
    assert 0 < client.pttl(entry_name(f, 1)) <= 60_000


def test_ttl_expiry_recomputes_and_redis_drops_the_key(redis_location: str,
                                                      client: Any) -> None:
    cache = Cache(redis_location, secret=SECRET)
    calls = []

    @cache.cached(ttl=0.5)
    def f(x: int) -> int:
        calls.append(x)
        return x

    assert f(1) == f(1) == 1
    assert calls == [1]
    time.sleep(0.8)
    assert client.exists(entry_name(f, 1)) == 0
    assert f(1) == 1
    assert calls == [1, 1]


def test_max_size_keeps_the_cache_small(redis_location: str) -> None:
    cache = Cache(redis_location, max_size=20_000, secret=SECRET)

    @cache.cached
    def blob(i: int) -> bytes:
        return bytes([i % 256]) * 1000

    for i in range(60):
        blob(i)
    stats = cache.stats()
    assert 0 < stats.bytes <= 20_000
    assert blob.cache_contains(59)  # the newest stays
    assert not blob.cache_contains(0)  # the oldest went first


def test_index_and_total_follow_writes_and_deletes(redis_location: str, client: Any) -> None:
    store = open_store(redis_location, 100_000, True)
    for i in range(5):
        store.write(FN, k(i), [b"x" * 100])
    store.write(FN, k(0), [b"y" * 50])  # a rewrite counts its new size only
    store.delete(FN, k(1))
    assert int(client.get(b"memojar:total")) == 50 + 3 * 100
    assert client.zcard(b"memojar:lru") == client.hlen(b"memojar:sizes") == 4
    store.close()


def test_cleanup_forgets_entries_redis_expired(redis_location: str, client: Any) -> None:
    store = open_store(redis_location, None, True)
    store.write(FN, k(1), [b"x" * 100], expires=time.time() + 0.1)
    store.write(FN, k(2), [b"y" * 10])
    time.sleep(0.3)
    assert store.cleanup() == 0
    assert int(client.get(b"memojar:total")) == 10
    assert client.zrange(b"memojar:lru", 0, -1) == [f"memojar:{FN}:{k(2)}".encode()]
    store.close()


# --- chunks ------------------------------------------------------------------------------------

def test_large_values_are_chunked(redis_location: str, client: Any) -> None:
    url = redis_location + "?chunk_size=65536"
    cache = Cache(url, secret=SECRET)
    calls = []

    @cache.cached
    def blob(n: int) -> bytes:
        calls.append(n)
        return os.urandom(n)

    first = blob(1_000_000)
    assert blob(1_000_000) == first
    assert calls == [1_000_000]
    (chunks,) = names(client, "memojar:*blob:*:c:*")
    (info,) = cache.entries()
    assert info.size > 1_000_000
    assert client.hlen(chunks) == -(-info.size // 65536)
    assert max(len(v) for v in client.hvals(chunks)) == 65536
    assert client.strlen(entry_name(blob, 1_000_000)) < 5000  # the pointer only
    assert blob.cache_delete(1_000_000)
    assert names(client, "memojar:*blob:*") == set()  # the chunks went with the pointer


def test_rewriting_a_chunked_entry_drops_the_old_chunks(redis_location: str,
                                                       client: Any) -> None:
    store = RedisStore(redis_location, chunk_size=1000, signed=True)
    store.write(FN, k(1), [b"a" * 5000])
    store.write(FN, k(1), [b"b" * 7000])
    (chunks,) = names(client, "*:c:*")
    assert client.hlen(chunks) == 7
    assert bytes(store.read(FN, k(1))) == b"b" * 7000
    store.write(FN, k(1), [b"small"])
    assert names(client, "*:c:*") == set()
    store.close()


def test_reader_never_assembles_chunks_of_two_writes(redis_location: str) -> None:
    writer = RedisStore(redis_location, chunk_size=16_384, signed=True)
    reader = RedisStore(redis_location, chunk_size=16_384, signed=True)
    a, b = b"A" * 200_000, b"B" * 150_000 + b"b" * 150_000
    writer.write(FN, k(1), [a])
    stop = threading.Event()
    seen: list[bytes | None] = []

    def read() -> None:
        while not stop.is_set():
            data = reader.read(FN, k(1))
            seen.append(bytes(data) if data is not None else None)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(60):
            writer.write(FN, k(1), [b] if i % 2 else [a])
    finally:
        stop.set()
        thread.join(HANG)
    whole = [s for s in seen if s is not None]
    assert whole
    assert all(s in (a, b) for s in whole), {len(s) for s in whole}
    writer.close()
    reader.close()


@pytest.mark.parametrize("chunk_size", [1 << 20, 1000], ids=["whole", "chunked"])
def test_listing_finds_headers_longer_than_the_head(redis_location: str,
                                                    chunk_size: int) -> None:
    """8 header bytes a buffer: 1000 out-of-band buffers make an 8 kB header."""
    cache = Cache(f"{redis_location}?chunk_size={chunk_size}", secret=SECRET)

    @cache.cached
    def buffers(n: int) -> list[pickle.PickleBuffer]:
        return [pickle.PickleBuffer(b"abc") for _ in range(n)]

    buffers(1000)
    (info,) = cache.entries()
    assert info.key == buffers.cache_key(1000)
    assert cache.prune() == 0  # a valid entry, not an unreadable one
    assert buffers.cache_contains(1000)


@pytest.mark.parametrize("chunk_size", [1000, 3])
def test_cleanup_removes_orphaned_chunks_only(redis_location: str, client: Any,
                                              chunk_size: int) -> None:
    """Orphans begin as an entry does, over as many chunks as that takes (the lead and
    the magic are 11 bytes)."""
    store = RedisStore(redis_location, chunk_size=1000, signed=True)
    store.write(FN, k(1), [b"a" * 5000])  # committed: its chunks are kept
    (committed,) = names(client, "*:c:*")
    first = _entry._OPEN + bytes(4) + _entry.MAGIC + b"partial"  # as an entry begins
    chunks = {str(at): first[start:start + chunk_size]
              for at, start in enumerate(range(0, len(first), chunk_size))}
    base = f"memojar:{FN}:{k(2)}:c:".encode()
    crashed, persisted, in_flight = base + b"0" * 16, base + b"1" * 16, base + b"2" * 16
    for key in (crashed, persisted, in_flight):
        client.hset(key, mapping=chunks)
    client.pexpire(crashed, 60_000)  # an hour-long in-flight expiry, most of it gone
    client.pexpire(in_flight, 3_599_000)  # written a second ago, still being written
    assert store.cleanup() == 2
    assert names(client, "*:c:*") == {committed, in_flight}
    assert bytes(store.read(FN, k(1))) == b"a" * 5000
    store.close()


def test_cleanup_leaves_keys_named_as_chunks_that_memojar_did_not_write(
        redis_location: str, client: Any) -> None:
    """A key of the user's sharing the prefix, named as chunks are (``<32 hex>`` a uuid's
    hex, then ``:c:`` and 16 hex digits), with no expiry: a string, or a hash whose first
    field is not an entry's beginning. Old: ``prune`` and ``clear`` unlinked it, as an
    orphan of a writer that died."""
    store = RedisStore(redis_location, chunk_size=1000, signed=True)
    store.write(FN, k(1), [b"a" * 5000])
    session = f"memojar:session:{k(2)}:c:{'0123456789abcdef'}".encode()
    upload = f"memojar:upload:{k(3)}:c:{'fedcba9876543210'}".encode()
    client.set(session, b"user 42")
    client.hset(upload, mapping={"0": b"part one", "1": b"part two"})
    store.cleanup()
    assert client.get(session) == b"user 42"
    assert client.hget(upload, "1") == b"part two"
    store.close()


def test_a_tampered_chunk_is_never_used(redis_location: str, client: Any,
                                        tmp_path: Path) -> None:
    cache = Cache(redis_location + "?chunk_size=4096", secret=SECRET)
    calls = []

    @cache.cached
    def blob(n: int) -> bytes:
        calls.append(n)
        return b"\x01" * n

    blob(50_000)
    (chunks,) = names(client, "*:c:*")
    client.hset(chunks, "3", b"\x02" * 4096)
    assert blob(50_000) == b"\x01" * 50_000
    assert calls == [50_000, 50_000]


# --- trust -------------------------------------------------------------------------------------

def test_without_redis_py_a_redis_url_names_the_extra() -> None:
    assert "memojar[redis]" in names_the_extra("redis", "redis://127.0.0.1:1/0")


# --- URL options -------------------------------------------------------------------------------

def test_prefix_namespaces_every_key(redis_location: str, client: Any) -> None:
    team = Cache(redis_location + "?prefix=team:", secret=SECRET)
    other = Cache(redis_location, secret=SECRET)
    double, _ = counted(team)
    double(1)
    assert names(client) and all(n.startswith(b"team:") for n in names(client))
    assert other.clear() == 0
    assert list(other.entries()) == []
    assert [e.key for e in team.entries()] == [double.cache_key(1)]


def test_keyword_options_override_the_url(redis_location: str, client: Any) -> None:
    store = RedisStore(redis_location + "?prefix=url:", prefix="kw:", chunk_size=10,
                       socket_timeout=2.5, signed=True)
    store.write(FN, k(1), [b"x" * 25])
    assert store.socket_timeout == 2.5
    assert names(client, "url:*") == set()
    assert client.hlen(next(iter(names(client, "kw:*:c:*")))) == 3
    store.close()


@pytest.mark.parametrize(("path", "said"), [
    ("/0?timeout=3", "unknown option 'timeout' in its query string"),
    ("/abc", "the database after the host must be a number .*not 'abc'"),
    ("/1/2", "the database after the host must be a number .*not '1/2'"),
    ("/3?db=5", "the database is given twice"),  # before: database 5, silently
])
def test_a_mistyped_url_is_refused_when_the_cache_is_made(path: str, said: str) -> None:
    # Before, '?timeout=3' (redis-py's is socket_timeout) made every call raise redis-py's
    # "AbstractConnection.__init__() got an unexpected keyword argument 'timeout'", and a
    # database that is not a number was silently database 0 ('/abc') or 12 ('/1/2').
    with pytest.raises(ValueError, match=f"not a valid Redis URL: {said}"):
        Cache(f"redis://127.0.0.1:{free_port()}{path}", secret=SECRET)


@pytest.mark.parametrize("query", ["decode_responses=true", "decode_responses=false",
                                   "decode_responses=true&encoding_errors=replace"])
def test_a_decode_responses_in_the_url_still_returns_and_caches_every_result(
    redis_location: str, query: str,
) -> None:
    """redis-py's ``decode_responses`` (an option of the query string, which memojar passes
    on to redis-py) makes replies str. Before, every call raised: UnicodeDecodeError (an
    entry's bytes decoded as UTF-8: not a RedisError, so not a fault the store absorbs) or
    TypeError (``encoding_errors=replace``), instead of returning the value its function
    had computed; and so with ``decode_responses=false`` too (redis-py does not parse that
    option: the string 'false' is true)."""
    cache = Cache(f"{redis_location}?chunk_size=1000&{query}", secret=SECRET,
                  max_size=10**6)
    calls = []

    @cache.cached
    def raw(n: int) -> bytes:
        calls.append(n)
        return bytes(range(256)) * n

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (2, 20, 2, 20):  # a plain entry and a chunked one, each stored then hit
            assert raw(n) == bytes(range(256)) * n
    assert calls == [2, 20]
    assert raw.cache_info().entries == 2
    raw.cache_clear()
    assert raw.cache_info().entries == 0


@pytest.mark.parametrize("host", ["cache..internal", ".local", "a" * 64 + ".example.com"])
def test_a_host_no_lookup_can_take_is_refused_when_the_cache_is_made(host: str) -> None:
    """A host name with an empty label (``cache..internal``: a templated URL with a part
    left empty) or one over 63 characters cannot be looked up at all: Python's idna codec
    refuses it with ``UnicodeError`` before any lookup. redis-py lets that through its
    connect (it catches ``OSError``), and it is no ``RedisError``: before, every call raised
    it from the hit path's read, its function never run, instead of computing and warning
    as for a server it cannot reach."""
    with pytest.raises(ValueError, match=f"not a valid Redis URL: the host {host!r}"):
        Cache(f"redis://{host}:6379/0", secret=SECRET)


@pytest.mark.parametrize("location", ["unix://?db=0", "unix://localhost/?db=0", "unix://"])
def test_a_unix_url_without_the_sockets_path_is_refused_when_the_cache_is_made(
    location: str,
) -> None:
    # before: taken, and every call warned 'cannot reach the server (Error 22 connecting
    # to . Invalid argument.)'
    with pytest.raises(ValueError, match="not a valid Redis URL: a unix:// URL needs the "
                                         "socket's path"):
        Cache(location, secret=SECRET)


# Options of redis-py's that a URL's query string may name, refused by memojar: before,
# each went to redis-py as it was, and every call raised (socket_keepalive_options:
# AttributeError; socket_type: TypeError; credential_provider: AttributeError), or the
# cache failed when made with an error that named no option (retry: AttributeError), or
# it was taken and broke a promise (retry_on_error=TimeoutError: a call on a frozen server
# waited two socket_timeouts: it is now taken and left off, as retry_on_timeout).
@pytest.mark.parametrize(("query", "option"), [
    ("socket_keepalive=yes&socket_keepalive_options=1", "socket_keepalive_options"),
    ("socket_type=5", "socket_type"),
    ("retry=1", "retry"),
    ("credential_provider=mine", "credential_provider"),
])
def test_an_option_memojar_does_not_take_is_refused_naming_those_it_does(
    query: str, option: str,
) -> None:
    with pytest.raises(ValueError, match=(
            f"not a valid Redis URL: (unknown )?option '{option}' in its query string.*"
            "the options taken are memojar's prefix, password, socket_timeout, chunk_size; "
            "redis-py's db, username, client_name")):
        Cache(f"redis://127.0.0.1:{free_port()}/0?{query}", secret=SECRET)


@pytest.mark.parametrize(("location", "said"), [
    # before: ConnectionError('protocol must be either 2 or 3') when the cache was made
    ("/0?protocol=4", "protocol must be 2 .* or 3"),
    # before: LookupError('unknown encoding: bogus') when the cache was made
    ("/0?encoding=bogus", "encoding='bogus' is not taken"),
    # before: taken, and every write warned (the server refuses the name at each handshake;
    # a health check's reply misread), nothing ever stored
    ("/0?client_name=my%20app", "client_name 'my app' is refused by the server"),
    ("/0?health_check_interval=-1", "health_check_interval must be a whole number of at "
                                    "least 0"),
    # before: taken, and every connection failed ('cannot reach the server')
    ("/0?socket_read_size=0", "socket_read_size must be a whole number of at least 1"),
    ("/0?socket_connect_timeout=0", "socket_connect_timeout must be seconds above 0"),
])
def test_a_value_of_a_redis_py_option_that_cannot_work_is_refused_naming_it(
    location: str, said: str,
) -> None:
    with pytest.raises(ValueError, match=f"not a valid Redis URL: {said}"):
        Cache(f"redis://127.0.0.1:{free_port()}{location}", secret=SECRET)


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_an_encoding_other_than_utf8_is_refused(encoding: str) -> None:
    """memojar's keys and the arguments of its Lua scripts are UTF-8 text. Before, redis-py's
    ``encoding`` from the URL encoded them otherwise: with utf-16 every write warned (the
    scripts' arguments unreadable) and nothing was ever stored; with latin-1, a prefix outside
    ASCII named keys other than those its index names."""
    with pytest.raises(ValueError, match=f"encoding='{encoding}' is not taken: memojar's "
                                         "keys and Lua scripts are UTF-8"):
        Cache(f"redis://127.0.0.1:{free_port()}/0?encoding={encoding}", secret=SECRET)


@pytest.mark.parametrize(("query", "said"), [
    # before: taken, and every call raised ValueError('Unsupported TLS/SSL version 0x63')
    ("ssl_min_version=99", "ssl_min_version must be one of .*TLSv1_2"),
    # before: RedisError('Invalid SSL Certificate Requirements Flag: bogus')
    ("ssl_cert_reqs=bogus", "ssl_cert_reqs must be none, optional or required"),
    # before: taken, and every call warned 'cannot reach the server (Error 2 ...)' and
    # skipped a healthy server
    ("ssl_ca_certs=/nonexistent/ca.pem", "ssl_ca_certs: no file '/nonexistent/ca.pem'"),
    ("ssl_ciphers=bogus", "ssl_ciphers 'bogus' selects no cipher"),
    # before: taken, and every call raised TypeError('certfile should be a valid ...')
    ("ssl_keyfile=KEY", "ssl_keyfile is given without ssl_certfile"),
    ("ssl_ca_certs=KEY", "ssl_ca_certs, ssl_ca_path or ssl_ca_data: the TLS context cannot "
                         "load them"),
])
def test_a_tls_option_that_cannot_work_is_refused_naming_it(
    query: str, said: str, tmp_path: Path,
) -> None:
    key = tmp_path / "key.pem"  # a file that holds no certificate
    key.write_text("-----BEGIN PRIVATE KEY-----\nnothing\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match=f"not a valid Redis URL: {said}"):
        Cache(f"rediss://127.0.0.1:{free_port()}/0?{query.replace('KEY', str(key))}",
              secret=SECRET)


def test_a_tls_option_without_tls_is_refused_naming_the_scheme() -> None:
    # before: "unknown option 'ssl_ca_certs' in its query string"
    with pytest.raises(ValueError, match="option 'ssl_ca_certs' is for a TLS connection: "
                                         "the URL must begin with rediss://"):
        Cache(f"redis://127.0.0.1:{free_port()}/0?ssl_ca_certs=/etc/ssl/ca.pem",
              secret=SECRET)


@pytest.mark.parametrize("query", [
    "protocol=3", "protocol=2", "health_check_interval=1", "client_name=memojar-test",
    "socket_keepalive=no", "socket_connect_timeout=1", "socket_read_size=4096",
    "max_connections=8", "encoding=UTF8&encoding_errors=replace", "username=default",
])
def test_the_redis_py_options_memojar_takes_still_store_and_hit(
    redis_location: str, query: str,
) -> None:
    cache = Cache(f"{redis_location}?chunk_size=1000&{query}", secret=SECRET)
    raw = _stores_and_hits(cache)  # (RESP3 too)
    if "health_check_interval" in query:
        time.sleep(1.1)  # the next request checks the connection first
        assert raw(2) == bytes(range(256)) * 2
        assert raw.cache_info().misses == 2
    cache.close()


def _stores_and_hits(cache: Cache) -> Any:
    """A function of ``cache`` (its chunk_size 1000) storing a plain entry and a chunked
    one, each computed once and then hit; returned for more calls."""
    calls = []

    @cache.cached
    def raw(n: int) -> bytes:
        calls.append(n)
        return bytes(range(256)) * n

    for n in (2, 20, 2, 20):  # a plain entry and a chunked one
        assert raw(n) == bytes(range(256)) * n
    assert calls == [2, 20]
    assert raw.cache_info().entries == 2
    return raw


@pytest.mark.filterwarnings("ignore:.*lib_name and lib_version:DeprecationWarning")
@pytest.mark.parametrize("query", [
    "legacy_responses=true", "legacy_responses=false", "lib_name=myapp&lib_version=1.0",
    "retry_on_error=TimeoutError", "socket_timeout=1&socket_connect_timeout=10",
])
def test_the_redis_py_options_taken_before_memojar_read_them_still_store_and_hit(
    redis_location: str, query: str,
) -> None:
    """Options redis-py took from the URL before memojar read its query (1e45ac4), which
    then refused them as unknown ones: a URL that worked stopped at Cache() on upgrade."""
    cache = Cache(f"{redis_location}?chunk_size=1000&{query}", secret=SECRET)
    _stores_and_hits(cache)
    # memojar's promises stand: a connection waits socket_timeout at most (before, a
    # connect timeout above it was taken whole, then refused), and a timed-out command is
    # never sent again (retry_on_error=TimeoutError: a frozen server cost two timeouts)
    made = cache.store._client.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert made["socket_connect_timeout"] <= made["socket_timeout"]
    assert made["retry_on_error"] == [RedisConnectionError]
    cache.close()


@pytest.mark.parametrize("query, said", [
    ("ssl_validate_ocsp=yes&ssl_validate_ocsp_stapled=yes", "both on"),
    ("ssl_validate_ocsp_stapled=true", "needs the client's certificate and key|pyOpenSSL"),
])
def test_an_ocsp_check_redis_py_cannot_make_is_refused_naming_it(query: str,
                                                                 said: str) -> None:
    with pytest.raises(ValueError, match=said):
        Cache(f"rediss://127.0.0.1:9/0?{query}", secret=SECRET)


def test_the_password_of_a_url_whose_scheme_is_in_capitals_is_redacted() -> None:
    """``REDIS://:PASSWORD@host`` (a scheme is case-insensitive; the store takes it): its
    password never shown. Before, messages and ``Cache.directory`` showed it whole."""
    with pytest.raises(ValueError) as caught:
        Cache(f"REDIS://:hunter2@127.0.0.1:{free_port()}/0?db=1", secret=SECRET)
    assert "hunter2" not in str(caught.value) and "REDIS://:***@127.0.0.1" in str(caught.value)


def test_the_passphrase_of_the_clients_key_is_redacted(tmp_path: Path) -> None:
    """``ssl_password``, the passphrase of the client's key (an option memojar takes):
    never shown. Before, every message naming the cache, Cache.directory and the store's
    repr showed it."""
    cache = Cache(f"rediss://127.0.0.1:{free_port()}/0?ssl_password=hunter2", secret=SECRET)
    assert "hunter2" not in cache.directory + repr(cache.store)
    assert "ssl_password=***" in cache.directory
    cache.close()


def test_an_option_given_twice_counts_as_redis_py_read_it_its_first_value(
    own_redis: Callable[..., RedisServer],
) -> None:
    """``?db=3&db=&db=4`` (a URL built by appending to one that had the option): the
    cache is in database 3, as when redis-py read the query (its first value that is not
    empty). Before memojar's reading kept that, the last counted: the same URL moved the
    cache to database 4 on upgrade, its entries left behind, without a word."""
    server = own_redis()
    cache = Cache(f"redis://127.0.0.1:{server.port}?db=3&db=&db=4", secret=SECRET)
    double, calls = counted(cache)
    assert double(2) == double(2) == 4
    assert calls == [2]
    assert server.client(3).dbsize() > 0
    assert server.client(4).dbsize() == 0
    cache.close()


def _tls_server(own_redis: Callable[..., RedisServer], tmp_path: Path) -> tuple[int, Path]:
    """A redis-server of its own on a TLS port, with a certificate openssl made for
    localhost (its own CA): the port and the certificate. Skips without openssl or TLS."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    port = free_port()
    try:
        own_redis("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file",
                  str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")
    except RuntimeError as exc:
        pytest.skip(f"this redis-server has no TLS ({exc})")
    return port, cert


def test_the_tls_options_memojar_takes_reach_the_connection(
    own_redis: Callable[..., RedisServer], tmp_path: Path,
) -> None:
    """A TLS server (its certificate made by openssl) reached with the TLS options memojar
    reads itself: a TLS version by its name (before, refused: redis-py takes its number
    alone) and one of ssl.VerifyFlags."""
    port, cert = _tls_server(own_redis, tmp_path)
    cache = Cache(f"rediss://localhost:{port}/0?ssl_ca_certs={cert}&ssl_min_version=TLSv1_2"
                  "&ssl_include_verify_flags=VERIFY_X509_STRICT&ssl_check_hostname=yes",
                  secret=SECRET)
    f, calls = counted(cache)
    assert f(3) == f(3)
    assert calls == [3]
    cache.close()


def test_making_a_tls_cache_loads_none_of_the_systems_ca_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The URL's TLS settings are tried on a context without the system's CA store: 1e45ac4
    loaded it (``ssl.create_default_context``) once or twice at every Cache() of a
    rediss:// URL, 40 ms where it took 0.3 ms, for nothing its checks need."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    loads = []
    monkeypatch.setattr(ssl.SSLContext, "load_default_certs",
                        lambda self, *args, **kwargs: loads.append(args))
    for query in ("", f"?ssl_ca_certs={cert}&ssl_ciphers=HIGH",
                  f"?ssl_certfile={cert}&ssl_keyfile={key}"):
        Cache(f"rediss://127.0.0.1:{free_port()}/0{query}", secret=SECRET).close()
    assert loads == []


def test_an_encrypted_client_key_without_its_passphrase_is_refused_asking_for_it(
    tmp_path: Path,
) -> None:
    """A client key encrypted with a passphrase, and no ssl_password: refused saying so,
    OpenSSL never asking for it. Before, its check at Cache() let OpenSSL ask: on a
    terminal Cache() waited for the passphrase to be typed, else "Enter PEM pass phrase:"
    was printed and the error said "[Errno 22] Invalid argument"."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-days", "1",
                    "-passout", "pass:kpw", "-keyout", str(key), "-out", str(cert),
                    "-subj", "/CN=localhost"], check=True, capture_output=True)
    location = f"rediss://127.0.0.1:{free_port()}/0?ssl_certfile={cert}&ssl_keyfile={key}"
    with pytest.raises(ValueError, match=r"the client's key \(ssl_keyfile, or in "
                                         r"ssl_certfile\) is encrypted: give its passphrase "
                                         r"as ssl_password"):
        Cache(location, secret=SECRET)
    Cache(location + "&ssl_password=kpw", secret=SECRET).close()


def test_the_ocsp_flags_off_reach_a_tls_server(
    own_redis: Callable[..., RedisServer], tmp_path: Path,
) -> None:
    """redis-py's ssl_validate_ocsp and ssl_validate_ocsp_stapled, which its URL parser
    reads as flags, turned off as they are by default (a URL listing every setting). Since
    1e45ac4 refused as unknown options: before, taken."""
    port, cert = _tls_server(own_redis, tmp_path)
    cache = Cache(f"rediss://localhost:{port}/0?ssl_ca_certs={cert}&ssl_validate_ocsp=false"
                  "&ssl_validate_ocsp_stapled=no", secret=SECRET)
    f, calls = counted(cache)
    assert f(3) == f(3)
    assert calls == [3]
    cache.close()


@pytest.mark.parametrize("where", ["_connect", "on_connect"])
def test_a_fault_of_another_kind_while_connecting_returns_the_value_with_a_warning(
    redis_location: str, where: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception that is no RedisError nor OSError raised while a call connects (by a
    redis-py or a system that fails otherwise than memojar's checks of the URL foresee) is
    a fault of the store, as a server it cannot reach. Before, it went out of every call,
    the function's value lost (here a ValueError, as a TLS context that cannot be made)."""
    import redis.connection

    def fails(self: Any) -> None:
        raise ValueError("no context")

    monkeypatch.setattr(redis.connection.Connection, where, fails)
    cache = Cache(f"{redis_location}?prefix=fault:", secret=SECRET)
    f, calls = counted(cache)
    with pytest.warns(MemojarWarning, match="connecting raised ValueError: no context"):
        assert f(2) == 4
    assert calls == [2]
    cache.close()


def test_the_callers_exception_while_connecting_is_raised_as_it_is(
    redis_location: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signal handler's exception (a deadline) raised while a call connects is the
    caller's: raised to it as it is, never turned into a fault of the store."""
    import redis.connection

    class Deadline(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Deadline

    real = redis.connection.Connection._connect

    def signalled(self: Any) -> Any:
        signal.raise_signal(signal.SIGUSR1)
        return real(self)

    monkeypatch.setattr(redis.connection.Connection, "_connect", signalled)
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        cache = Cache(f"{redis_location}?prefix=caller:", secret=SECRET)
        f, _ = counted(cache)
        with pytest.raises(Deadline):
            f(2)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    cache.close()


def test_a_url_scheme_in_capitals_is_the_same_cache(redis_location: str) -> None:
    # URL schemes are case-insensitive (as for 'S3://'): 'REDIS://' chose the Redis store,
    # whose redis-py then said the URL "must specify one of the following schemes (redis://,
    # rediss://, unix://)".
    f = Cache("REDIS" + redis_location[len("redis"):], secret=SECRET).cached(len)
    assert f("abc") == 3
    assert Cache(redis_location, secret=SECRET).cached(len).cache_contains("abc")


@pytest.mark.parametrize("query", ["socket_timeout=0", "socket_timeout=soon", "chunk_size=-1",
                                   "prefix=",
                                   # taken before, and then every call raised OverflowError
                                   # ("timestamp out of range") from the socket's settimeout
                                   "socket_timeout=inf", "socket_timeout=1e10"])
def test_bad_options_are_refused(redis_location: str, query: str) -> None:
    with pytest.raises(ValueError, match=query.split("=")[0]):
        Cache(f"{redis_location}?{query}", secret=SECRET)


def test_a_chunk_size_above_the_largest_string_is_refused(
    redis_location: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis keeps no string over 512 MiB (``MAX_CHUNK``, made small here). Before, a larger
    chunk_size was taken: every result above 512 MiB was returned but not cached ('cannot
    reach the server': the server drops the connection), and on a server set up for longer
    strings its chunks made a pointer that no reader accepts: a miss every time, silently
    (here: a result of 3 chunks of 2,000 bytes, recomputed at each call)."""
    monkeypatch.setattr(_redisstore, "MAX_CHUNK", 2000)
    with pytest.raises(ValueError, match="chunk_size must be at most 2,000 bytes"):
        Cache(f"{redis_location}?chunk_size=2001", secret=SECRET)
    with pytest.raises(ValueError, match="chunk_size must be at most 2,000 bytes"):
        RedisStore(redis_location, chunk_size=2001)
    cache = Cache(f"{redis_location}?chunk_size=2000", secret=SECRET)
    calls = []

    @cache.cached
    def blob(n: int) -> bytes:
        calls.append(n)
        return os.urandom(n)

    assert blob(5000) == blob(5000)  # chunks of the largest size there is: a hit
    assert calls == [5000]


def test_an_empty_prefix_is_refused_so_no_key_of_others_is_taken_for_the_index(
    redis_location: str, client: Any,
) -> None:
    """Before, an empty prefix made the index 'sizes', 'total', 'lru': another application's
    'total' counted memojar's bytes, and a key its 'sizes' hash named like an entry
    ('<anything>:<32 hex digits>') was removed by clear."""
    theirs = b"session:" + b"0" * 32
    client.hset("sizes", theirs, 10)
    client.set(theirs, b"alice's session")
    client.set("total", 7)
    with pytest.raises(ValueError, match="prefix must not be empty"):
        RedisStore(redis_location, prefix="")
    with pytest.raises(ValueError, match="prefix must not be empty"):
        Cache(redis_location + "?prefix=", secret=SECRET)
    assert client.get(theirs) == b"alice's session" and client.get("total") == b"7"


def test_password_in_the_url(own_redis: Callable[..., RedisServer]) -> None:
    server = own_redis("--requirepass", "s3cret")
    for url in (f"redis://:s3cret@127.0.0.1:{server.port}/0",
                f"redis://127.0.0.1:{server.port}/0?password=s3cret"):
        cache = Cache(url, secret=SECRET)
        assert "s3cret" not in cache.directory and "s3cret" not in repr(cache.store)
        double, calls = counted(cache)
        assert double(2) == double(2) == 4
        assert calls == [2]
        cache.clear()
        cache.close()


def test_unix_socket(own_redis: Callable[..., RedisServer], tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    own_redis("--unixsocket", str(sock), "--unixsocketperm", "700")
    cache = Cache(f"unix://{sock}?db=2&prefix=u:", secret=SECRET)
    assert cache.directory.startswith("unix:///")
    double, calls = counted(cache)
    assert double(4) == double(4) == 8
    assert calls == [4]
    cache.close()


def test_wrong_password_costs_only_a_warning(own_redis: Callable[..., RedisServer]) -> None:
    server = own_redis("--requirepass", "s3cret")
    cache = Cache(f"redis://:wrong@127.0.0.1:{server.port}/0", secret=SECRET)
    double, _ = counted(cache)
    with pytest.warns(MemojarWarning, match="not cached"):
        assert double(2) == 4


def test_tls_with_rediss(own_redis: Callable[..., RedisServer], tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, timeout=60,
    ) if redis_server_path() and _has("openssl") else None
    if made is None or made.returncode != 0:
        pytest.skip("openssl is not available to make a test certificate")
    tls_port = free_port()
    own_redis("--tls-port", str(tls_port), "--tls-cert-file", str(cert),
               "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
               "--tls-auth-clients", "no")
    cache = Cache(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}", secret=SECRET)
    double, calls = counted(cache)
    assert double(5) == double(5) == 10
    assert calls == [5]
    cache.close()


def _has(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


def test_listing_uses_scan_never_keys(own_redis: Callable[..., RedisServer]) -> None:
    server = own_redis("--rename-command", "KEYS", "")  # KEYS now fails: SCAN must do
    cache = Cache(server.url(0, chunk_size=1000), max_size=10**6, secret=SECRET)
    double, _ = counted(cache)
    double(1)
    double(b"x" * 5000)
    assert len(list(cache.entries())) == 2
    assert cache.stats().entries == 2
    assert double.cache_info().entries == 2
    assert cache.prune() == 0
    assert cache.clear() == 2


def test_a_function_is_listed_from_its_index_not_the_keyspace(
    own_redis: Callable[..., RedisServer],
) -> None:
    """cache_info, cache_clear, entries and the first-store sweep read the function's
    index set (and stats the sizes hash): with SCAN and KEYS disabled they still work."""
    server = own_redis("--rename-command", "SCAN", "", "--rename-command", "KEYS", "")
    url = server.url(0, chunk_size=1000)

    caches: list[Cache] = []

    def versioned(version: int) -> Any:
        caches.append(Cache(url, secret=SECRET))

        @caches[-1].cached(version=version)
        def double(x: Any) -> Any:
            return x * 2

        return double

    old = versioned(1)
    old(1)
    old(b"x" * 5000)  # chunked
    assert old.cache_info().entries == 2
    assert len(list(caches[0].entries(old))) == 2
    assert caches[0].stats().entries == 2
    new = versioned(2)
    new(3)  # its first store sweeps the entries of version 1
    assert new.cache_info().entries == 1 and old.cache_info().entries == 1
    assert new.cache_clear() == 1
    assert server.client().dbsize() == 0


def test_command_line_on_a_redis_url(redis_location: str, client: Any) -> None:
    cache = Cache(redis_location, secret=SECRET)
    double, _ = counted(cache)
    double(1)
    double(2)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "memojar", "--dir", redis_location,
                               *args], capture_output=True, text=True, timeout=60)

    import json

    info = cli("info", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["entries"] == 2
    fields = dict(line.split(None, 1) for line in cli("info").stdout.splitlines())
    assert fields["location"] == redis_location and "directory" not in fields
    listed = cli("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["entries"] for row in json.loads(listed.stdout)] == [2]
    pruned = cli("prune")
    assert pruned.returncode == 0
    assert "removed 0 entries; 2 entries" in pruned.stdout and "file" not in pruned.stdout
    cleared = cli("clear", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert cache.stats().entries == 0
    assert client.dbsize() == 0  # no index, total or note left behind


# --- locks and stampedes -------------------------------------------------------------------

def test_stampede_of_processes_computes_once(redis_location: str, tmp_path: Path) -> None:
    stampede_computes_once(redis_location, tmp_path, processes=5, start_in=2.0)


def test_lock_is_renewed_while_held_and_expires_after_a_kill(redis_location: str,
                                                           client: Any) -> None:
    holder = lock_holder(redis_location)
    try:
        store = open_store(redis_location, None, True)
        lock = store.lock(FN, k(1))
        time.sleep(LOCK_TTL * 1.5)  # longer than the lock's expiry: renewals keep it
        assert lock.acquire(blocking=False) is False
        holder.send_signal(signal.SIGKILL)
        holder.wait(HANG)
        name = f"memojar:{FN}:{k(1)}:lock".encode()
        assert 0 < client.pttl(name) <= LOCK_TTL * 1000  # gone within LOCK_TTL, unrenewed
        deadline = time.monotonic() + HANG
        while not lock.acquire(blocking=False):
            assert time.monotonic() < deadline, "the killed holder's lock never expired"
            time.sleep(0.05)
        lock.release()
        assert client.exists(name) == 0
        store.close()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=HANG)


def test_release_leaves_a_lock_taken_over_by_another(redis_location: str,
                                                      client: Any) -> None:
    store = open_store(redis_location, None, True)
    lock = store.lock(FN, k(1))
    assert lock.acquire()
    name = f"memojar:{FN}:{k(1)}:lock".encode()
    client.set(name, b"someone else's token")  # as if ours expired and another took it
    lock.release()
    assert client.get(name) == b"someone else's token"
    store.close()



@pytest.mark.parametrize("stored", ["absent", "stored"])
def test_a_lease_that_ran_out_unused_still_stores_its_value(
    redis_location: str, client: Any, stored: str,
) -> None:
    """The lock expires while its holder computes and nobody takes it: the holder held the
    GIL past the lease (a pickle of a dict of 5 million items, ``json.loads`` of a large
    file: no thread renewed it), or the server evicted it. The entry is as the holder found
    it (none, or the one a ``refresh`` replaces), so the value is stored, without a word.
    Before, such a write was refused at every call: never cached."""
    cache = Cache(redis_location + "?chunk_size=1000", secret=SECRET)
    found = []

    def blob(n: int) -> bytes:
        client.delete(entry_name(cached_blob, n) + b":lock")  # ran out, unused
        found.append(n)
        return bytes([len(found)]) * n

    cached_blob = cache.cached(blob)
    if stored == "stored":
        cached_blob(5000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MemojarWarning)
        value = cached_blob.refresh(5000) if stored == "stored" else cached_blob(5000)
    assert cached_blob(5000) == value == bytes([len(found)]) * 5000
    cache.close()


def test_a_lease_that_ran_out_while_another_stored_is_not_stored_over_theirs(
    redis_location: str, client: Any,
) -> None:
    """The lock expires while its holder computes (or the server removes it: a volatile-*
    policy near maxmemory evicts the 2 s leases first); another caller takes it, stores its
    value and gives it back: the late holder's value is returned, with a warning that says
    the server may have removed the lock, not stored over the other's. (Before, the
    warning said only that the lock expired in a stall, which may never have happened.)"""
    cache = Cache(redis_location, secret=SECRET)
    other = Cache(redis_location, secret=SECRET)

    def value(n: int) -> str:
        if not calls:
            calls.append("late")
            client.delete(entry_name(late, n) + b":lock")  # ran out
            assert other.cached(value)(n) == "other"  # taken, stored and given back
            return "late"
        calls.append("other")
        return "other"

    calls: list[str] = []
    late = cache.cached(value)
    with pytest.warns(MemojarWarning, match=r"or the server removed it \(evicted by a "
                      r"volatile-. maxmemory-policy.*another caller stored or removed"):
        assert late(1) == "late"
    assert late(1) == "other" and calls == ["late", "other"]
    cache.close(), other.close()


def test_a_lock_whose_reply_a_dropped_connection_lost_is_held(redis_location: str,
                                                               client: Any) -> None:
    """The server takes the lock, then the connection drops before its reply: redis-py
    sends the command again (the store's one retry after a dropped connection), which finds
    the lock this caller's own. It is held, and its release frees it at once. Before, the
    retried ``SET NX`` was refused by the caller's own lease: the caller was told the lock
    was held by someone, and every caller of the key (this one too) waited for it to
    expire (``LOCK_TTL``)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    store = open_store(redis_location, None, True)
    assert isinstance(store, RedisStore)
    name = f"memojar:{FN}:{k(1)}:lock".encode()
    real = store._client._send_command_parse_response
    dropped: list[Any] = []

    def reply_lost(conn: Any, command_name: str, *args: Any, **options: Any) -> Any:
        answer = real(conn, command_name, *args, **options)
        if not dropped and name in [a.encode() if isinstance(a, str) else a for a in args]:
            dropped.append(command_name)
            raise RedisConnectionError("dropped after the server ran the command")
        return answer

    store._client._send_command_parse_response = reply_lost
    lock = store.lock(FN, k(1))
    assert lock.acquire(blocking=False)
    assert dropped  # (the command that took the lock was retried)
    lock.release()
    assert client.exists(name) == 0
    store.close()


@pytest.fixture
def dropper(redis_server: RedisServer) -> Iterator[ReplyDropper]:
    """A proxy in front of the session's server that loses chosen replies."""
    with ReplyDropper(redis_server.port) as proxy:
        yield proxy


def test_a_lock_whose_both_replies_were_lost_is_released(redis_location: str, client: Any,
                                                          dropper: ReplyDropper) -> None:
    """The server takes the lock and the connection drops before its reply, twice (the
    command and redis-py's retry): the caller cannot lock (the store is down until a ping
    answers) and releases at once, as the decorator does; the lock, its own by its token,
    is removed once the server answers again. Before, that release failed fast and was
    forgotten: the lock stayed until it expired (``LOCK_TTL``), every caller of the key
    waiting for it."""
    store = open_store(dropper.front(redis_location), None, True)
    assert isinstance(store, RedisStore)
    lock = store.lock(FN, k(0))
    assert lock.acquire(blocking=False)  # (the script is loaded)
    lock.release()
    name = f"memojar:{FN}:{k(1)}:lock".encode()
    lock = store.lock(FN, k(1))
    dropper.drop(evalsha(store._acquire), times=2)
    with pytest.raises(ConnectionError):
        lock.acquire(blocking=False)
    assert len(dropper.dropped) == 2
    assert client.exists(name) == 1
    lock.release()
    deadline = time.monotonic() + 10  # (the behaviour tests' LOCK_TTL is 60 s)
    while client.exists(name):
        assert time.monotonic() < deadline, "the lock was left behind"
        time.sleep(0.05)
    store.close()


def test_chunks_of_a_write_whose_replies_were_lost_are_removed(redis_location: str,
                                                                client: Any,
                                                                dropper: ReplyDropper) -> None:
    """The first chunk of a large entry is stored and the connection drops before its
    reply, twice (the script and redis-py's retry): the write fails, and its chunks are
    removed once the server answers again. Before, the store, down until a ping answered,
    skipped their removal: they stayed for INFLIGHT_TTL (an hour), in the server's memory
    but in no size of the index (``max_size``)."""
    store = open_store(dropper.front(redis_location) + "?chunk_size=1000", None, True)
    assert isinstance(store, RedisStore)
    store.write(FN, k(0), [b"c" * 5000])  # (the scripts are loaded)
    store.delete(FN, k(0))
    dropper.drop(evalsha(store._first_chunk), times=2)
    with pytest.raises(ConnectionError):
        store.write(FN, k(1), [b"c" * 5000])
    assert len(dropper.dropped) == 2
    deadline = time.monotonic() + 10
    while names(client, "*:c:*"):
        assert time.monotonic() < deadline, "the chunks were left behind"
        time.sleep(0.05)
    assert names(client) == set()
    store.close()


@pytest.mark.parametrize("lost", [1, 2], ids=["retried", "failed"])
def test_statistics_whose_reply_was_lost_are_counted_once(redis_location: str,
                                                           dropper: ReplyDropper,
                                                           lost: int) -> None:
    """The server adds a merge of statistics and the connection drops before its reply:
    redis-py sends it again (``retried``), or that reply is lost too and the merge fails
    (``failed``: the cache keeps the counts and merges them with the next ones). Either
    way every hit is counted once. Before, the retry added the counts a second time, and
    a failed merge that had run was added again by the next."""
    cache = Cache(dropper.front(redis_location), secret=SECRET)
    double, _ = counted(cache)
    double(1)
    for _ in range(3):
        double(1)
    dropper.drop(b"memojar:stats", times=lost)
    cache.flush_stats()
    assert len(dropper.dropped) == lost
    deadline = time.monotonic() + HANG
    while cache.store._breaker.down:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    double(1)
    hits, misses, _ = cache.saved_stats()[double.__memojar__.name]
    assert (hits, misses) == (4, 1)
    cache.close()


def test_a_lease_run_out_whose_commit_reply_was_lost_once_is_stored_without_a_warning(
        redis_location: str, client: Any, dropper: ReplyDropper) -> None:
    """The lease runs out unused while the value computes; the commit writes it, and its
    reply is lost; redis-py sends it again, which finds the entry this very write. Before,
    the retry took it for another caller's: a warning "not cached" of a value that was."""
    cache = Cache(dropper.front(redis_location), secret=SECRET)
    store = cache.store
    assert isinstance(store, RedisStore)

    def double(x: int) -> int:
        client.delete(entry_name(cached_double, x) + b":lock")  # ran out, unused
        return 2 * x

    cached_double = cache.cached(double)
    assert cached_double(0) == 0  # (the scripts are loaded)
    dropper.drop(evalsha(store._commit))
    assert cached_double(1) == 2  # no warning (filterwarnings = error)
    assert len(dropper.dropped) == 1
    assert cached_double.cache_contains(1)
    cache.close()


def test_prune_removes_what_an_older_memojar_left_of_the_expiring_list(
        redis_location: str, client: Any) -> None:
    """An older memojar's removals (its clear, a sharing fleet upgraded one process at a
    time) leave the members of ``<prefix>expiring`` they know nothing of: prune removes
    them, as it forgets the index's entries Redis expired."""
    cache = Cache(redis_location, secret=SECRET)
    short = cache.cached(ttl=60)(lambda x: x)
    short(1), short(2)
    for name in client.scan_iter():
        if name != b"memojar:expiring":
            client.delete(name)  # what an older memojar's clear removes
    assert client.zcard("memojar:expiring") == 2
    cache.prune()
    assert not client.exists("memojar:expiring")
    cache.close()


def test_deletes_whose_reply_was_lost_count_what_they_removed(redis_location: str,
                                                              dropper: ReplyDropper) -> None:
    """``cache_delete`` says whether it removed the entry, ``cache_clear`` how many, also
    when the connection dropped after the server removed them (the entries are gone, and
    nothing else is wrong: the index and the total follow)."""
    cache = Cache(dropper.front(redis_location), secret=SECRET)
    double, _ = counted(cache)
    for i in range(4):
        double(i)
    store = cache.store
    assert isinstance(store, RedisStore)
    assert double.cache_delete(3)  # (the script is loaded)
    dropper.drop(evalsha(store._delete))
    deleted = double.cache_delete(0)
    dropper.drop(evalsha(store._delete))
    cleared = double.cache_clear()
    assert len(dropper.dropped) == 2
    assert not double.cache_contains(0) and not double.cache_contains(1)
    assert (deleted, cleared) == (True, 2)
    cache.close()


@pytest.mark.parametrize("size", ["whole", "chunks"])
def test_a_result_whose_write_timed_out_but_was_stored_is_cached_without_a_warning(
        redis_location: str, dropper: ReplyDropper, monkeypatch: pytest.MonkeyPatch,
        size: str) -> None:
    """The server commits the entry but its reply never comes (a server answering late, a
    proxy that loses it): the write times out, the store reads the entry's header back,
    finds it stored, and says nothing; the next call hits, at once (the look, answered,
    shows the server up). Before, the call warned "not cached" though it was."""
    # the look waits all of the timeout, not a quarter: a loaded machine
    monkeypatch.setattr(_redisstore, "CONFIRM_SHARE", 1.0)
    location = dropper.front(redis_location) + "?socket_timeout=2"
    if size == "chunks":
        location += "&chunk_size=1000"
    cache = Cache(location, secret=SECRET)
    double, calls = counted(cache)
    double(b"warm")  # the commit's script is loaded: the next EVALSHA of it runs
    store = cache.store
    assert isinstance(store, RedisStore)
    value = b"r" * 20_000
    dropper.drop(evalsha(store._commit), silent=True)
    assert double(value) == value * 2  # no warning: filterwarnings = error
    assert dropper.dropped
    assert double(value) == value * 2
    assert calls == [b"warm", value]  # a hit
    cache.close()


def test_a_write_that_timed_out_is_read_back_with_the_urls_socket_connect_timeout(
        redis_location: str, dropper: ReplyDropper, monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL's socket_connect_timeout within socket_timeout but above the share of it that
    the look at a write that timed out waits (its client's own socket_timeout): the look
    reads the entry back, bounded by its own share. Before, making that client refused the
    URL (ValueError 'socket_connect_timeout must be ... at most socket_timeout (1 s)'),
    which the cache had taken, out of the call: its function's value lost."""
    monkeypatch.setattr(_redisstore, "CONFIRM_SHARE", 0.5)  # (a loaded machine)
    location = dropper.front(redis_location) + "?socket_timeout=2&socket_connect_timeout=2"
    cache = Cache(location, secret=SECRET)
    double, calls = counted(cache)
    double(b"warm")  # the commit's script is loaded: the next EVALSHA of it runs
    store = cache.store
    assert isinstance(store, RedisStore)
    dropper.drop(evalsha(store._commit), silent=True)
    assert double(b"v") == b"vv"  # no warning: filterwarnings = error
    assert dropper.dropped
    assert double(b"v") == b"vv"
    assert calls == [b"warm", b"v"]  # a hit
    assert store._checker().connection_pool.connection_kwargs["socket_connect_timeout"] == 1
    cache.close()


@pytest.mark.parametrize("size", ["whole", "chunks"])
def test_a_result_whose_commit_lost_both_replies_but_was_stored_is_cached_without_a_warning(
        redis_location: str, dropper: ReplyDropper, size: str) -> None:
    """The server commits the entry and the connection drops before its reply, twice (the
    commit and redis-py's one retry, which commits it again): the store reads the entry's
    header back, finds it stored, and says nothing; the next call hits. Before, the call
    warned "not cached" (a ``ConnectionError``, never read back) though it was."""
    location = dropper.front(redis_location)
    if size == "chunks":
        location += "?chunk_size=1000"
    cache = Cache(location, secret=SECRET)
    double, calls = counted(cache)
    double(b"warm")  # the commit's script is loaded: the next EVALSHA of it runs
    store = cache.store
    assert isinstance(store, RedisStore)
    value = b"d" * 20_000
    dropper.drop(evalsha(store._commit), times=2)
    assert double(value) == value * 2  # no warning: filterwarnings = error
    assert len(dropper.dropped) == 2
    assert double(value) == value * 2
    assert calls == [b"warm", value]  # a hit
    cache.close()


def test_a_commit_never_sent_to_a_killed_server_is_not_read_back(
        own_redis: Callable[..., RedisServer]) -> None:
    """The server is gone before the commit is sent (its pooled connection is found dead
    and connecting again is refused): nothing was sent, so the write fails as it is, "not
    cached" (a ``ConnectionError``, not one that may have been stored)."""
    server = own_redis()
    store = open_store(server.url(0, socket_timeout=1), None, True)
    assert isinstance(store, RedisStore)
    store.write(FN, k(0), [b"warm"])  # connected, the script loaded
    server.kill()
    with pytest.raises(ConnectionError) as raised:
        store.write(FN, k(1), [b"entry"])
    assert type(raised.value) is ConnectionError, raised.value
    store.close()


def test_a_write_that_timed_out_unstored_is_not_cached(redis_location: str) -> None:
    """The commit times out before the server ran it: read back, the entry is not there,
    and the warning says "not cached" (known, not assumed)."""
    cache = Cache(redis_location + "?socket_timeout=1", secret=SECRET)
    double, calls = counted(cache)
    store = cache.store
    assert isinstance(store, RedisStore)

    def commit(*args: Any, **kwargs: Any) -> Any:
        raise RedisTimeoutError("Timeout reading from socket")

    store._commit = commit  # type: ignore[method-assign]
    with pytest.warns(MemojarWarning, match="returned but not cached: .*no answer within "
                                            "socket_timeout=1 s"):
        assert double(2) == 4
    assert not double.cache_contains(2)
    assert calls == [2]
    cache.close()


# --- faults ------------------------------------------------------------------------------------

def test_server_killed_mid_run(own_redis: Callable[..., RedisServer]) -> None:
    server = own_redis()
    survives_losing_the_server(Cache(server.url(0, socket_timeout=1), secret=SECRET),
                               server.kill)


def test_connection_refused() -> None:
    survives_no_server(f"redis://127.0.0.1:{free_port()}/0?socket_timeout=1")


def test_async_function_on_a_dead_server() -> None:
    import asyncio

    cache = Cache(f"redis://127.0.0.1:{free_port()}/0?socket_timeout=1", secret=SECRET)

    @cache.cached
    async def triple(x: int) -> int:
        return 3 * x

    with pytest.warns(MemojarWarning, match="not cached"):
        assert asyncio.run(triple(2)) == 6


def test_frozen_server_times_out_then_recovers(own_redis: Callable[..., RedisServer]) -> None:
    server = own_redis()
    recovers_from_a_frozen_server(Cache(server.url(0, socket_timeout=0.5), secret=SECRET),
                                  server)


def test_out_of_memory_server(own_redis: Callable[..., RedisServer]) -> None:
    server = own_redis("--maxmemory-policy", "noeviction")
    cache = Cache(server.url(0), secret=SECRET)
    double, calls = counted(cache)
    double(1)
    server.client().config_set("maxmemory", 1)  # every write is now "OOM command not allowed"
    with pytest.warns(MemojarWarning, match="out of memory"):
        assert double(2) == 4
    assert double(1) == 2  # existing entries still hit
    assert calls == [1, 2]
    assert cache.clear() == 1  # removing frees memory: allowed


def test_lock_on_a_dead_server_does_not_block_the_caller(
    own_redis: Callable[..., RedisServer],
) -> None:
    server = own_redis()
    store = open_store(server.url(0, socket_timeout=1), None, True)
    lock = store.lock(FN, k(1))
    assert lock.acquire()
    server.kill()
    lock.release()  # never raises: the lock expires by itself
    with pytest.raises(OSError):
        store.lock(FN, k(2)).acquire()
    store.close()


# --- a fault of the server's configuration: the same message on every key, naming the cause

def _big(x: int) -> bytes:
    return bytes([x]) * 1000


def _refusing_server(own_redis: Callable[..., RedisServer], fault: str) -> str:
    """A server (its URL) on which every write fails for one reason of its configuration."""
    if fault == "out of memory":
        server = own_redis("--maxmemory-policy", "noeviction")
        server.client().config_set("maxmemory", 1)
        return server.url(0, chunk_size=64)  # chunked: the pipeline's error names its key
    if fault == "no command 'EVALSHA'":
        server = own_redis("--rename-command", "EVALSHA", "", "--rename-command", "EVAL", "")
        return server.url(0)
    server = own_redis()
    server.client().execute_command("ACL", "SETUSER", "writer", "on", ">pw", "~*",
                                     "+@all", "-evalsha", "-eval")
    return f"redis://writer:pw@127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("fault", ["out of memory", "no command 'EVALSHA'",
                                   "ACL refuses this user"])
def test_a_write_refused_on_every_key_is_one_message_naming_its_cause(
    own_redis: Callable[..., RedisServer], fault: str,
) -> None:
    """Before, each key's warning named the key (and redis-py's pipeline position, the
    server's echo of the command's arguments): as many warnings as keys written."""
    cache = Cache(_refusing_server(own_redis, fault), secret=SECRET)
    big = cache.cached(_big)  # a short name: redis-py's message shows the whole key

    with pytest.warns(MemojarWarning) as caught:
        assert [big(x) for x in range(5)] == [bytes([x]) * 1000 for x in range(5)]
    said = {str(w.message) for w in caught}
    assert len(said) == 1, said
    message = said.pop()
    assert fault in message
    assert "memojar:" not in message.replace("'memojar:'", "")  # no key, only the prefix
    if fault != "out of memory":
        assert "EVALSHA" in message  # what the store needs
    cache.close()


def test_a_user_with_the_commands_the_store_names_stores_values_in_chunks(
    own_redis: Callable[..., RedisServer],
) -> None:
    """An ACL user given what a refusal's message says the store needs (``+@read
    +@write +@scripting`` on the prefix's keys) stores a value larger than ``chunk_size``
    and hits it. Before, the first chunk went with its expiry in a MULTI (``@transaction``,
    not named): every such value was refused ("no permissions to run the 'multi'
    command"), computed again at each call, with a warning naming the three categories
    the user already had."""
    server = own_redis()
    server.client().execute_command("ACL", "SETUSER", "app", "on", ">pw", "~memojar:*",
                                     "+@read", "+@write", "+@scripting")
    cache = Cache(f"redis://app:pw@127.0.0.1:{server.port}/0?chunk_size=64", secret=SECRET)
    calls = []

    @cache.cached
    def big(x: int) -> bytes:
        calls.append(x)
        return bytes([x]) * 1000

    assert big(1) == big(1) == bytes([1]) * 1000  # no warning (filterwarnings = error)
    assert calls == [1]
    cache.close()


def test_prune_puts_back_into_the_index_the_entries_an_allkeys_policy_left_unlisted(
    redis_location: str, client: Any,
) -> None:
    """A server with maxmemory-policy allkeys-lru evicts any key: memojar's index too
    (``sizes``, which no hit touches, first), and the entries it listed stay, read by every
    hit but seen by no listing, clear or max_size. Before, prune left them unlisted: clear
    removed none of them, and they were read again after it."""
    cache = Cache(redis_location + "?chunk_size=1000", secret=SECRET)
    double, calls = counted(cache)
    double(1)
    double(b"x" * 5000)  # chunked
    for index in ("memojar:sizes", "memojar:lru", "memojar:total",
                  f"memojar:{double.__memojar__.name}:entries"):
        client.delete(index)  # what the server's eviction did
    planted = b"memojar:someone.else:" + b"a" * 32  # named like an entry, not one
    client.set(planted, b"not memojar's")
    assert cache.stats().entries == 0  # unlisted, though both are there
    cache.prune()
    info = cache.stats()
    assert info.entries == 2
    chunks = b"".join(client.hvals(next(iter(names(client, "*:c:*")))))
    assert info.bytes == len(client.get(entry_name(double, 1))) + len(chunks)
    assert int(client.get("memojar:total")) == info.bytes  # max_size counts them again
    assert double.cache_info().entries == 2
    assert cache.clear() == 2
    assert set(client.scan_iter()) == {planted}  # not taken in, so not removed
    assert double(1) == 2 and calls == [1, b"x" * 5000, 1]  # computed again: cleared
    cache.close()


def test_prune_puts_back_into_the_lru_order_the_entries_an_allkeys_policy_left_out(
        redis_location: str, client: Any) -> None:
    """``lru`` evicted alone (``allkeys-random`` takes any key), ``sizes`` kept: the
    entries written before count in the total but are in no least-recently-used order, so
    ``max_size`` evicts only the entries written after. Prune puts them back in it, and
    later writes evict them, the oldest. Before, prune skipped every entry still in
    ``sizes``: they stayed for good, taking ``max_size``'s room, and each later write
    evicted one of the few entries written since."""
    cache = Cache(redis_location, secret=SECRET, max_size=50_000)

    @cache.cached
    def tagged(n: int) -> bytes:
        return bytes(5_000) + n.to_bytes(4, "big")

    for n in range(8):
        tagged(n)
    old = client.hkeys("memojar:sizes")
    client.delete("memojar:lru")  # what the server's eviction did
    cache.prune()
    for n in range(8, 30):
        tagged(n)
    assert sum(client.exists(name) for name in old) == 0  # the oldest, evicted
    assert int(client.get("memojar:total")) <= 50_000
    cache.close()


def test_a_write_under_max_size_once_the_sizes_were_evicted_removes_no_unseen_entry(
        redis_location: str, client: Any) -> None:
    """``sizes`` evicted alone (an ``allkeys-*`` policy takes it first): the entries it
    listed are seen by no listing and no max_size until prune, and still hit. Before, the
    total still counted them and each was sized 0 when dropped, so one write under
    max_size evicted every entry in the least-recently-used order (helper-237 found it)."""
    cache = Cache(redis_location, secret=SECRET, max_size=100_000)

    @cache.cached
    def tagged(n: int) -> bytes:
        return bytes(9_000) + n.to_bytes(4, "big")

    for n in range(10):
        tagged(n)  # ~92 kB: under max_size
    client.delete("memojar:sizes")  # what the server's eviction did
    tagged(100)
    assert all(client.exists(entry_name(tagged, n)) for n in range(10))
    assert tagged.cache_info().misses == 11  # and they hit
    for n in range(10):
        tagged(n)
    assert tagged.cache_info().misses == 11
    cache.close()


def test_entries_redis_expired_go_before_live_ones_are_evicted(redis_location: str,
                                                               client: Any) -> None:
    """Entries written with a ``ttl`` that Redis expired still counted in the total: a write
    that made room evicted live entries used before them. Now the expired ones leave the
    index first, and only as many live ones go as the room needs (none here)."""
    cache = Cache(redis_location, max_size=110_000, secret=SECRET)

    @cache.cached
    def live(x: int) -> bytes:
        return bytes(20_000)

    @cache.cached(ttl=1)
    def short(x: int) -> bytes:
        return b"s" * 20_000

    for i in range(3):
        live(i)
    short(0), short(1)
    time.sleep(1.5)  # Redis expired both
    live(10)
    assert all(live.cache_contains(i) for i in (0, 1, 2, 10))
    assert int(client.get("memojar:total")) == sum(
        len(client.get(entry_name(live, i))) for i in (0, 1, 2, 10))
    cache.close()


def test_a_cache_never_takes_in_the_entries_of_one_whose_prefix_starts_with_its_own(
    redis_location: str, client: Any,
) -> None:
    """``memojar:team:f:<key>`` is named as an entry of the cache ``memojar:`` would be, of
    a function ``team:f``; its header names ``f``. Before, the look for entries missing
    from the index (prune; any listing on a server evicting with an allkeys-* policy)
    took them in: the default cache's clear and max_size then removed the team's entries,
    and its listings counted them."""
    team = Cache(redis_location + "?prefix=memojar:team:", secret=SECRET)
    double, _ = counted(team)
    double(1), double(2)
    mine = Cache(redis_location, secret=SECRET)
    assert mine.prune() == 0
    assert mine.stats().entries == 0
    assert mine.clear() == 0
    assert sorted(e.key for e in team.entries()) == sorted(map(double.cache_key, (1, 2)))
    team.close(), mine.close()


GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_NAMES = {  # case: the function and key make_golden.py wrote it for
    "plain": "golden.square:00112233445566778899aabbccddeeff",
    "versioned-signed": "golden.signed:ffeeddccbbaa99887766554433221100",
    "buffers": "golden.buffers:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f",
    "expired": "golden.expired:a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
}


@pytest.mark.parametrize("fmt", [1, 2, 3])
@pytest.mark.parametrize("layout", ["whole", "chunked"])
@pytest.mark.parametrize("how", ["prune", "clear"])
def test_old_format_entries_the_index_lost_are_counted_and_removed(
    own_redis: Callable[..., RedisServer], fmt: int, layout: str, how: str,
) -> None:
    """Entries an older memojar wrote (formats 1 to 3: the golden files; ``chunked``: that
    memojar's chunk pointer, ``MJCH 1``, before its chunks) which the index no longer lists
    (a server evicting with an allkeys-* policy evicts the index first): the listing puts
    them back in the index, so they are counted, and prune (or clear) removes them with
    their chunks, and nothing else. Before, the look for entries missing from the index
    took in only this format's: the old ones were never listed, counted, pruned nor
    cleared, kept for good."""
    server = own_redis("--maxmemory-policy", "allkeys-lru")
    client = server.client()
    cache = Cache(server.url(), secret=SECRET)
    try:
        size = 0
        for golden in sorted(GOLDEN.glob(f"format{fmt}-*.mj")):
            data = golden.read_bytes()
            size += len(data)
            name = b"memojar:" + GOLDEN_NAMES[golden.stem.split("-", 1)[1]].encode()
            if layout == "chunked":  # as that memojar wrote it: the chunks, the pointer
                gen = b"0123456789abcdef"
                client.hset(name + b":c:" + gen, mapping={"0": data[:100], "1": data[100:]})
                data = b"MJCH 1 %s 2 %d\n" % (gen, len(data)) + data[:4096]
            client.set(name, data)
        other = b"memojar:someone.else:" + b"b" * 32  # named like an entry, not one
        client.set(other, b"MJAR\x09\x00 not memojar's")
        info = cache.stats()
        assert (info.entries, info.bytes) == (4, size)
        assert (cache.prune() if how == "prune" else cache.clear()) == 4
        assert set(client.scan_iter()) == {other}  # their chunks gone too
    finally:
        client.close()
        cache.close()


def test_a_redis_cluster_is_refused_by_name(own_redis: Callable[..., RedisServer],
                                            tmp_path: Path) -> None:
    """Before: "ClusterCrossSlotError: Keys in request don't hash to the same slot" on
    each write, "MovedError: 13613 127.0.0.1:40707" from clear (a slot, a node: another
    message for each key)."""
    nodes = [own_redis("--cluster-enabled", "yes", "--cluster-config-file",
                       str(tmp_path / f"nodes{i}.conf")) for i in range(2)]
    first, second = (node.client() for node in nodes)
    first.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 8191)
    second.execute_command("CLUSTER", "ADDSLOTSRANGE", 8192, 16383)
    first.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[1].port)
    deadline = time.monotonic() + 10
    while b"cluster_state:ok" not in first.execute_command("CLUSTER", "INFO"):
        assert time.monotonic() < deadline, "the two nodes did not make a cluster"
        time.sleep(0.05)
    cache = Cache(nodes[0].url(0), secret=SECRET)
    double, _ = counted(cache)
    with pytest.warns(MemojarWarning, match="a node of a Redis Cluster.*needs a single server"):
        assert [double(x) for x in (1, 2, 3, 1, 2, 3)] == [2, 4, 6, 2, 4, 6]  # never wrong
    with pytest.raises(OSError, match="a node of a Redis Cluster"):
        cache.clear()
    cache.close()


def test_a_command_disabled_under_a_script_is_named_as_disabled(
    own_redis: Callable[..., RedisServer],
) -> None:
    """Before: "ResponseError: Unknown Redis command called from script script: <sha>,
    on @user_script:20." from clear, with UNLINK renamed away in the server's configuration."""
    server = own_redis("--rename-command", "UNLINK", "")
    cache = Cache(server.url(0), secret=SECRET)
    double, calls = counted(cache)
    assert double(1) == 2
    with pytest.raises(OSError, match="no command that one of memojar's Lua scripts calls "
                                      r"\(renamed or disabled by rename-command"):
        cache.clear()
    assert double(1) == 2 and calls == [1]  # still a hit: nothing half removed
    cache.close()


def test_a_chunk_evicted_is_one_read_and_a_miss(redis_location: str, client: Any) -> None:
    """A server evicting by its maxmemory-policy (allkeys-*) may take one chunk of an entry:
    a miss, never a wrong value; and the chunks are read once, not three times over."""
    store = RedisStore(redis_location, chunk_size=1000, signed=True)
    store.write(FN, k(1), [b"a" * 5000])
    (chunks,) = names(client, "*:c:*")
    client.hdel(chunks, "4")  # the last of five, as the server's eviction may
    client.config_resetstat()
    assert store.read(FN, k(1)) is None
    assert client.info("commandstats")["cmdstat_hget"]["calls"] == 5  # before: 15
    store.close()


def test_chunks_the_server_evicted_before_the_commit_are_named_as_evicted(
    redis_location: str, client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full server with a volatile-* policy evicts the chunks being written (the only keys
    with an expiry, with the locks). Before, the refusal said they 'expired or were removed
    as orphans', which never happened."""
    store = RedisStore(redis_location, chunk_size=1000, signed=True)
    written = store._write_chunks

    def evicted(name: bytes, chunks: bytes, *args: Any) -> Any:
        done = written(name, chunks, *args)
        client.delete(chunks)  # what the server's eviction does meanwhile
        return done

    monkeypatch.setattr(store, "_write_chunks", evicted)
    with pytest.raises(OSError, match=r"evicted by the server \(a maxmemory-policy"):
        store.write(FN, k(1), [b"a" * 5000])
    assert store.read(FN, k(1)) is None
    store.close()


class _Argument:
    """An argument, to see whether a call frees it."""


@pytest.mark.skipif(
    tuple(int(part) for part in redis.__version__.split(".")[:2] if part.isdigit()) < (8, 2),
    reason="redis-py before 8.2 keeps a refused connection's error in its own frame "
           "(Connection._connect: a cycle of its own, redis/redis-py#4195), and 8.2 needs "
           "Python 3.11")
def test_a_server_fault_frees_the_calls_argument_without_the_collector() -> None:
    """On 3.12 and later the error map's Redis error (here: no server) was kept by
    contextlib's ``__exit__`` frame, its traceback holding the map's generator frame, which
    links back to that frame: a cycle holding the call's frames and its argument until the
    collector ran, at each fault (as S3's at each miss, ``test_s3.py``). And the "cannot
    lock" record logged the error itself: pytest, which keeps the records it captures,
    kept the argument so on every Python."""
    url = f"redis://127.0.0.1:{free_port()}/0?socket_timeout=1"

    @Cache(url, secret=SECRET).cached
    def one(argument: _Argument) -> int:
        return 1

    def refused(argument: _Argument) -> None:
        with pytest.warns(MemojarWarning, match="cannot reach the server"):
            assert one(argument) == 1  # the fault: refused, in the read

    assert freed_without_the_collector(refused, _Argument)
