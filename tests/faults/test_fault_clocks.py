"""Attack: clocks that jump, and timestamps that lie. memojar's housekeeping judges some
things by age (a temporary file an hour old, an entry's expiry, a lease); a clock set forward
or back, or a file whose modification time is old (a restored backup, ``touch -d``), must
never remove what a live writer is writing, lose a result, nor return a stale value.

Real processes and real files; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultkit import finish, read_line, spawn, temp_files

TIMEOUT = 120
MB = 1_000_000

# A writer with max_size (its reservation is a named temporary file) that stops itself
# (SIGSTOP) in the middle of writing its entry, then says what became of its result.
STOPPED_WRITER = """
import os, signal, warnings
import memojar
from memojar import _filestore

real = _filestore._write_all
def write_all(fd, views):
    if sum(len(v) for v in views) > 100_000:  # the entry, not the ledger or a note
        print("writing", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    return real(fd, views)
_filestore._write_all = write_all

f = memojar.Cache(os.environ["CACHE"], max_size=10_000_000).cached(lambda n: bytes(n))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value = f(200_000)
print(len(value), f.cache_contains(200_000), [str(w.message) for w in caught], flush=True)
"""


@contextlib.contextmanager
def _stopped_at(script: str, said: str, root: Path) -> Iterator[list[str]]:
    """Run ``script`` on the cache at ``root`` until it prints ``said`` and stops itself
    (SIGSTOP); the block runs while it is stopped. Then it resumes, and the list yielded
    gets the lines it printed."""
    proc = spawn(script, CACHE=str(root))
    out: list[str] = []
    try:
        assert read_line(proc, TIMEOUT) == said
        deadline = time.monotonic() + TIMEOUT
        while os.waitid(os.P_PID, proc.pid, os.WSTOPPED | os.WNOHANG | os.WNOWAIT) is None:
            assert time.monotonic() < deadline, "the process never stopped"
            time.sleep(0.01)
        yield out
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        out += finish(proc, timeout=TIMEOUT).splitlines()

# Another process's first write with max_size: it recounts the ledger, reaping orphans.
OTHER_MISS = """
import os, memojar
f = memojar.Cache(os.environ["CACHE"], max_size=10_000_000).cached(lambda n: bytes(n))
f(10)
"""


@pytest.mark.parametrize("reaper", ["prune", "another process's miss"])
def test_a_live_writers_old_looking_temporary_file_is_never_reaped(
    tmp_path: Path, reaper: str
) -> None:
    """A writer stopped mid-write (SIGSTOP: a laptop lid, a debugger, a swapped-out
    process) whose temporary file looks two hours old (the clock jumped forward, or its
    mtime was set back) is alive on this host: prune and other processes leave its file,
    and it stores its result when it resumes, with no warning."""
    from memojar import Cache

    root = tmp_path / "cache"
    with _stopped_at(STOPPED_WRITER, "writing", root) as out:
        (temp,) = temp_files(root)
        old = time.time() - 7200
        os.utime(temp, (old, old))
        if reaper == "prune":
            Cache(root).prune()
        else:
            finish(spawn(OTHER_MISS, CACHE=str(root)), timeout=TIMEOUT)
        survived = temp.exists()
    assert survived, f"a live writer's temporary file was removed; the writer said {out}"
    assert out[-1] == "200000 True []", out


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# Temporary files planted beside an entry: (writer's pid, its name's host tag, mtime from
# now in seconds): removed by prune?
PLANTED = {
    "this process's, two hours old": ("me", "mine", -7200, False),
    "this process's, from the future (clock set back)": ("me", "mine", 86400, False),
    "a dead writer's, from the future (clock set back)": ("dead", "mine", 86400, True),
    "a dead writer's, young": ("dead", "mine", 0, True),
    "its pid now another process's (started since)": ("me", "reused", 0, True),
    "another host's, young": ("me", "other", 0, False),
    "another host's, two hours old": ("me", "other", -7200, True),
    "this host's before a reboot, two hours old": ("me", "other boot", -7200, True),
}


@pytest.mark.parametrize("case", list(PLANTED))
def test_temporary_files_are_judged_by_their_writer_here_and_by_age_elsewhere(
    tmp_path: Path, case: str
) -> None:
    from memojar import Cache, _filestore

    who, tag, age, removed = PLANTED[case]
    root = tmp_path / "cache"
    f = Cache(root, max_size=10 * MB).cached(lambda n: bytes(n))
    f(10)
    entry = next(root.glob("*/*/*.pkl"))
    mine = _filestore._HOST
    host = {
        "mine": mine,
        "reused": mine[:6] + next(f"{n:02x}" for n in range(256) if f"{n:02x}" != mine[6:]),
        "other": "0123abcd",
        "other boot": next(f"{n:06x}" for n in range(1 << 24) if f"{n:06x}" != mine[:6])
        + mine[6:],
    }[tag]
    pid = os.getpid() if who == "me" else _dead_pid()
    planted = Path(f"{entry}.{pid}-{host}.0badf00d.tmp")
    planted.write_bytes(b"\0" * 1000)
    when = time.time() + age
    os.utime(planted, (when, when))
    Cache(root).prune()
    assert planted.exists() is not removed
    assert entry.exists()


# --- Redis: the chunks of a large entry in flight ------------------------------------------

SECRET = b"clock-secret-0123456789abcdef0123"


def _pausing_pieces(monkeypatch: pytest.MonkeyPatch, at: int) -> tuple[Any, Any]:
    """Make a Redis writer pause before its chunk ``at`` (the first batches are on the
    server then) until told to go on: (paused, resume) events."""
    from memojar import _redisstore

    real = _redisstore.pieces
    paused, resume = threading.Event(), threading.Event()

    def pieces(views: Any, size: int) -> Iterator[Any]:
        for i, piece in enumerate(real(views, size)):
            if i == at:
                paused.set()
                assert resume.wait(TIMEOUT)
            yield piece

    monkeypatch.setattr(_redisstore, "pieces", pieces)
    return paused, resume


def _age_chunks(redis_location: str) -> list[bytes]:
    """Make the chunks in flight look 59 minutes old (their hour-long expiry almost gone):
    as after a writer stalled that long, or a server clock that jumped forward."""
    import redis

    client = redis.Redis.from_url(redis_location)
    try:
        chunks = sorted(client.scan_iter(match=b"*:c:*"))
        for name in chunks:
            client.pexpire(name, 60_000)
        return chunks
    finally:
        client.close()


def _exists(redis_location: str, names: list[bytes]) -> bool:
    import redis

    client = redis.Redis.from_url(redis_location)
    try:
        return bool(names) and client.exists(*names) == len(names)
    finally:
        client.close()


def test_a_redis_writers_chunks_are_kept_while_it_holds_its_lease(
    redis_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller storing a large (chunked) result, slow between its batches of chunks (a
    slow link, a stall) while its lease is renewed, keeps its chunks through another
    process's prune however old they look: its lease says it is alive. Before, prune
    removed them; the writer's later chunks made the set again without its first ones and
    the entry was committed pointing at it: stored with no warning, and unreadable (the
    next call computed again)."""
    from memojar import Cache

    paused, resume = _pausing_pieces(monkeypatch, at=12)
    cache = Cache(f"{redis_location}?chunk_size=1000", secret=SECRET)
    calls: list[int] = []

    @cache.cached
    def blob(n: int) -> bytes:
        calls.append(n)
        return b"\x01" * n

    out: list[Any] = []

    def call() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out.append(blob(50_000))
        out.append([str(w.message) for w in caught])

    writer = threading.Thread(target=call)
    writer.start()
    try:
        assert paused.wait(TIMEOUT)
        chunks = _age_chunks(redis_location)
        Cache(redis_location, secret=SECRET).prune()
        kept = _exists(redis_location, chunks)
    finally:
        resume.set()
        writer.join(TIMEOUT)
    assert kept, "a live writer's chunks were removed"
    assert out == [b"\x01" * 50_000, []]
    assert blob(50_000) == b"\x01" * 50_000 and calls == [50_000]


def test_a_redis_write_whose_chunks_were_reaped_is_refused_not_committed(
    redis_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer without a lease (a store-level write) stalled past the orphan age has its
    chunks reaped (age is all cleanup can go by): its commit must refuse, not point the
    entry at a chunk set its later chunks made again without the first ones. (The bytes
    begin as an entry does: cleanup reaps only chunks that are memojar's.)"""
    from memojar import _entry, _redisstore

    paused, resume = _pausing_pieces(monkeypatch, at=12)
    store = _redisstore.RedisStore(redis_location, chunk_size=1000, signed=True)
    other = _redisstore.RedisStore(redis_location, signed=True)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.write("fn", "ab" * 16,
                        [_entry._OPEN + bytes(4) + _entry.MAGIC + b"\x01" * 50_000])
        except OSError as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert paused.wait(TIMEOUT)
        chunks = _age_chunks(redis_location)
        other.cleanup()
        reaped = not _exists(redis_location, chunks)
    finally:
        resume.set()
        writer.join(TIMEOUT)
    try:
        assert reaped
        data = store.read("fn", "ab" * 16)
        assert errors or (data is not None and bytes(data) == b"\x01" * 50_000), (
            "the write was committed, its entry unreadable")
        assert data is None and not _exists(redis_location, chunks)
    finally:
        store.close()
        other.close()


# --- S3: a multipart upload in flight, and its lease ---------------------------------------

def _pausing_parts(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """Make an S3 writer pause before its second part until told to go on."""
    from memojar import _s3store

    real = _s3store.pieces
    paused, resume = threading.Event(), threading.Event()

    def pieces(views: Any, size: int) -> Iterator[Any]:
        for i, piece in enumerate(real(views, size)):
            if i == 1 and size == _s3store.PART_SIZE:
                paused.set()
                assert resume.wait(TIMEOUT)
            yield piece

    monkeypatch.setattr(_s3store, "pieces", pieces)
    return paused, resume


class _Ahead:
    """``time`` as a module sees it on a machine whose clock is ``by`` seconds ahead of the
    server's (or was set forward): a wall clock moved, a monotonic one not."""

    def __init__(self, by: float) -> None:
        self.by = by

    def time(self) -> float:
        return time.time() + self.by

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.mark.parametrize("case", ["pruner's clock two hours ahead",
                                  "an upload longer than the orphan age"])
def test_an_s3_upload_in_flight_and_its_lease_survive_prune(
    s3_location: str, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """A caller uploading a large result (multipart) under its lease, between two parts,
    while another caller prunes: from a machine whose clock is two hours ahead of the
    server's (it judged the upload's and the lease's server dates by its own clock), or
    after the upload has run past the orphan age (it judged the upload by age alone, its
    lease renewed a second ago notwithstanding). Before, prune aborted the upload and
    removed the live lease: the writer's value was returned with a warning, not stored."""
    from memojar import Cache, _s3store

    paused, resume = _pausing_parts(monkeypatch)
    location = f"{s3_location}&multipart_threshold=1000"
    cache = Cache(location, secret=SECRET)
    calls: list[int] = []

    @cache.cached
    def blob(n: int) -> bytes:
        calls.append(n)
        return b"\x01" * n

    size = _s3store.PART_SIZE + 1000
    out: list[Any] = []

    def call() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out.append(len(blob(size)))
        out.append([str(w.message) for w in caught])

    writer = threading.Thread(target=call)
    writer.start()
    try:
        assert paused.wait(TIMEOUT)
        with monkeypatch.context() as m:
            if case.startswith("pruner's clock"):
                m.setattr(_s3store, "time", _Ahead(7200))
            else:
                m.setattr(_s3store, "ORPHAN_AGE", 0.0)  # as cleanup sees it an hour on
            Cache(location, secret=SECRET).prune()
    finally:
        resume.set()
        writer.join(TIMEOUT)
    assert out == [size, []]
    assert len(blob(size)) == size and calls == [size]


# --- a process stopped while it holds a shared lock of the file store ----------------------

def _stops_in(method: str, then: str) -> str:
    """A script that runs ``then`` with ``FileStore.<method>`` made to print "holding" and
    stop its process (SIGSTOP: Ctrl-Z, a debugger) on entry."""
    return f"""
import os, signal
import memojar
from memojar import _filestore

real = _filestore.FileStore.{method}
def stopping(self):
    print("holding", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
    return real(self)
{then}"""


# Stops itself while it holds the size ledger's lock: inside the recount of its first write
# with max_size.
LEDGER_HOLDER = _stops_in("_census", """
_filestore.FileStore._census = stopping
f = memojar.Cache(os.environ["CACHE"], max_size=10_000_000).cached(lambda n: bytes(n))
f(5)
""")

# Another writer with max_size, told to wait for a held lock 1 s instead of a minute.
LEDGER_WAITER = """
import os, warnings
import memojar
from memojar import _filestore

_filestore.LOCK_WAIT = 1.0
f = memojar.Cache(os.environ["CACHE"], max_size=10_000_000).cached(lambda n: bytes(n))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value = f(10)
print(len(value), [str(w.message) for w in caught], flush=True)
"""


def _output_while_stopped(holding: str, other: str, root: Path) -> list[str]:
    """The lines ``other`` prints, run while ``holding`` is stopped holding a lock (it
    prints "holding" and stops itself), both on the cache at ``root``."""
    with _stopped_at(holding, "holding", root):
        return finish(spawn(other, CACHE=str(root)), timeout=60).splitlines()


def test_a_writer_stopped_holding_the_size_ledger_costs_others_a_delay_not_a_hang(
    tmp_path: Path,
) -> None:
    """A process stopped (Ctrl-Z) while it held the size ledger's lock (its recount of a
    large cache takes seconds): before, every other writer with max_size waited for it
    without end. Now a writer waits a bounded time, then returns its value, not stored,
    with a warning saying why."""
    out = _output_while_stopped(LEDGER_HOLDER, LEDGER_WAITER, tmp_path / "cache")
    length, said = out[-1].split(" ", 1)
    assert length == "10" and "size ledger" in said and "held" in said, out


# Stops itself while it holds the statistics' lock (merging its hits and misses).
STATS_HOLDER = _stops_in("read_stats", """
cache = memojar.Cache(os.environ["CACHE"])
f = cache.cached(lambda n: bytes(n))
f(5)
_filestore.FileStore.read_stats = stopping
cache.flush_stats()
""")

# Any caller: its statistics are merged at exit.
STATS_WAITER = """
import os
import memojar
from memojar import _filestore

_filestore.STATS_WAIT = 1.0
f = memojar.Cache(os.environ["CACHE"]).cached(lambda n: bytes(n))
print(len(f(10)), flush=True)
"""


def test_a_process_stopped_holding_the_statistics_lock_lets_others_exit(
    tmp_path: Path,
) -> None:
    """Before, every other process using the cache waited at exit (its statistics' merge)
    for a process stopped while it merged its own: it never exited."""
    out = _output_while_stopped(STATS_HOLDER, STATS_WAITER, tmp_path / "cache")
    assert out == ["10"]


@pytest.mark.parametrize("written", [0, -7200], ids=["just now", "two hours ago"])
def test_another_hosts_temporary_file_is_aged_by_the_file_systems_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: float
) -> None:
    """Another host's writer (a cache on NFS) is judged by the age of its temporary file:
    by the file system's clock, which dated the file, not by this machine's, here two hours
    ahead (set forward, or ahead of the server's). Before, a file written just now looked
    two hours old and was removed under its live writer."""
    from memojar import Cache, _filestore

    root = tmp_path / "cache"
    f = Cache(root, max_size=10 * MB).cached(lambda n: bytes(n))
    f(10)
    entry = next(root.glob("*/*/*.pkl"))
    planted = Path(f"{entry}.4242-0123abcd.0badf00d.tmp")
    planted.write_bytes(b"\0" * 1000)
    when = time.time() + written
    os.utime(planted, (when, when))
    monkeypatch.setattr(_filestore, "time", _Ahead(7200))
    Cache(root).prune()
    assert planted.exists() is (written == 0)
    assert [p.name for p in root.glob(".size.*.tmp")] == []  # the clock's probe is gone


def test_a_temporary_file_removed_under_its_writer_is_named_in_the_warning(
    tmp_path: Path,
) -> None:
    """Another program (a clean-up script) removes a writer's temporary file mid-write:
    the value is returned with a warning naming that file. Before, the warning said the
    function's folder was moved or removed, which it was not."""
    root = tmp_path / "cache"
    with _stopped_at(STOPPED_WRITER, "writing", root) as out:
        (temp,) = temp_files(root)
        temp.unlink()
    assert out[-1].startswith("200000 False ["), out
    assert f"the temporary file {temp} was removed" in out[-1], out
    assert "moved or removed" not in out[-1], out


PRUNER = """
import os, memojar
memojar.Cache(os.environ["CACHE"]).prune()
"""


def test_a_prune_in_another_pid_namespace_leaves_a_live_writers_file(tmp_path: Path) -> None:
    """Containers sharing the machine's hostname (``docker run --network host``) and a
    cache volume number their processes apart: a prune in one, where the writer's pid does
    not exist, took a live writer of another for dead and removed its file mid-write."""
    import shutil

    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-p", "-f", "--mount-proc", "true"],
                           capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("cannot make a pid namespace here (unshare needs root)")
    root = tmp_path / "cache"
    with _stopped_at(STOPPED_WRITER, "writing", root) as out:
        (temp,) = temp_files(root)
        from faultkit import subprocess_env

        pruned = subprocess.run(
            [unshare, "-p", "-f", "--mount-proc", sys.executable, "-c", PRUNER],
            env=subprocess_env(CACHE=str(root)), capture_output=True, text=True,
            timeout=TIMEOUT)
        survived = temp.exists()
    assert pruned.returncode == 0, pruned.stderr
    assert survived, f"a live writer's temporary file was removed; the writer said {out}"
    assert out[-1] == "200000 True []", out
