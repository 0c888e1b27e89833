"""Attacks 1 and 2: a writer killed with SIGKILL mid-write, a lock holder killed mid-compute."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from faultkit import entry_files, finish, read_line, spawn, temp_files

from memojar import Cache, _entry

BIG = 3 << 20  # in-band bytes of each result
OOB = 2 << 20  # out-of-band buffer of each result
KEYS = 6

WRITER_JOB = """
import os, pickle, sys
from memojar import Cache

cache = Cache(os.environ["CACHE"])

if os.environ.get("ANNOUNCE_WRITES"):  # say "writing" in each write, to aim the kill
    import time
    _writev = os.writev

    def _announce(fd, buffers):
        # Half the first buffer, a short write (as writev may make), then the line and a
        # pause: the kill aimed just after the line lands with the entry half written.
        # Before, the line came first and the whole write after it: on XFS it was often
        # done before the kill, and no trial killed a writer mid-write.
        first = memoryview(buffers[0]).cast("B")
        written = _writev(fd, [first[:max(1, first.nbytes // 2)]])
        print("writing", flush=True)
        time.sleep(0.05)
        return written

    os.writev = _announce

@cache.cached
def blob(i):
    return {"i": i, "data": bytes([i % 251]) * BIG + str(i).encode(),
            "oob": pickle.PickleBuffer(bytearray([i % 7]) * OOB)}
"""

SLOW_JOB = """
import os, sys, time
from memojar import Cache

cache = Cache(os.environ["CACHE"])

@cache.cached
def slow(x):
    print("computing", flush=True)
    time.sleep(float(os.environ["SLOW"]))
    return x * 10
"""


def _write_job(tmp_path: Path, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(source.replace("BIG", str(BIG)).replace("OOB", str(OOB)))
    return str(tmp_path)


def _check_entry(path: Path) -> int:
    """Fully verify and load one entry file; return its ``i`` (asserting the value)."""
    data = path.read_bytes()
    header = _entry.read_header(data[:4096])
    assert header.size == len(data), f"half-written entry {path}"
    ident = header.ident  # the stored identity (with its dependency manifest)
    payload, buffers = _entry.verify(data, ident, path.stem.encode(), time.time(), None, None)
    value = _entry.load(payload, buffers)
    i = value["i"]
    assert value["data"] == bytes([i % 251]) * BIG + str(i).encode()
    assert bytes(value["oob"]) == bytes([i % 7]) * OOB
    return i


@pytest.mark.slow
def test_kill9_mid_write_leaves_only_whole_entries(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    pythonpath = _write_job(tmp_path, "crashjob", WRITER_JOB)
    env = {"CACHE": str(cache_dir), "PYTHONPATH": pythonpath}
    rng = random.Random(4)
    tmp_seen = 0
    for trial in range(12):
        aimed = trial % 2 == 1  # odd trials kill just after a write starts, even ones anywhere
        writer = spawn(
            "from crashjob import blob\nimport itertools\nprint('ready', flush=True)\n"
            f"for i in itertools.cycle(range({KEYS})):\n    blob.refresh(i)\n",
            ANNOUNCE_WRITES="1" if aimed else "", **env,
        )
        assert read_line(writer) == "ready"
        if aimed:
            for _ in range(rng.randint(1, 4)):
                assert read_line(writer) == "writing"
            time.sleep(rng.uniform(0, 0.004))
        else:
            time.sleep(rng.uniform(0.05, 0.6))  # in computing, pickling, writing or renaming
        unnamed = _unnamed_files(writer.pid, cache_dir)  # an entry being written right now
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=30)
        assert writer.returncode == -signal.SIGKILL
        tmp_seen += len(temp_files(cache_dir)) + unnamed
        seen = [_check_entry(p) for p in entry_files(cache_dir)]
        assert len(seen) == len(set(seen))
    out = finish(spawn(
        "from crashjob import blob, cache\n"
        f"for i in range({KEYS}):\n"
        "    v = blob(i)\n"
        "    assert v['data'] == bytes([i % 251]) * BIG + str(i).encode(), i\n"
        "    assert bytes(v['oob']) == bytes([i % 7]) * OOB, i\n"
        "print(blob.cache_info().misses + blob.cache_info().hits)\n"
        "print(cache.prune())\n".replace("BIG", str(BIG)).replace("OOB", str(OOB)),
        **env,
    ), timeout=120)
    calls, _pruned = out.split()
    assert calls == str(KEYS)
    assert temp_files(cache_dir) == []
    assert list(cache_dir.rglob("*.lock")) == []  # idle lock files are cleaned up too
    assert sorted(_check_entry(p) for p in entry_files(cache_dir)) == list(range(KEYS))
    assert tmp_seen > 0, "no kill landed mid-write: the attack did not happen"


def _unnamed_files(pid: int, cache_dir: Path) -> int:
    """Files of the cache that process ``pid`` has open and that have no name yet: an entry
    being written into an unnamed temporary file (``O_TMPFILE``), which a kill removes."""
    fds = Path(f"/proc/{pid}/fd")
    found = 0
    for fd in fds.iterdir() if fds.is_dir() else ():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        found += target.startswith(str(cache_dir)) and target.endswith(" (deleted)")
    return found


def _start_holder(env: dict[str, str]):
    holder = spawn("from slowjob import slow\nslow(1)\n", SLOW="60", **env)
    assert read_line(holder) == "computing"
    return holder


def test_kill9_of_lock_holder_lets_next_caller_compute(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    env = {"CACHE": str(cache_dir), "PYTHONPATH": _write_job(tmp_path, "slowjob", SLOW_JOB)}
    holder = _start_holder(env)
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    nxt = spawn(
        "import time\nfrom slowjob import slow\nt = time.monotonic()\nv = slow(1)\n"
        "print(v, slow.cache_info().misses, round(time.monotonic() - t, 3))\n",
        SLOW="0", **env,
    )
    computing, result = finish(nxt, timeout=60).splitlines()
    value, misses, took = result.split()
    assert computing == "computing"  # it computed itself: the dead holder stored nothing
    assert (value, misses) == ("10", "1")
    assert float(took) < 10.0  # a lock left held would keep it for lock_timeout (600 s)


def test_kill9_of_lock_holder_releases_a_waiting_caller(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    env = {"CACHE": str(cache_dir), "PYTHONPATH": _write_job(tmp_path, "slowjob", SLOW_JOB)}
    holder = _start_holder(env)
    waiter = spawn(
        "from slowjob import slow\nprint('calling', flush=True)\nv = slow(1)\n"
        "print(v, slow.cache_info().misses, flush=True)\n",
        SLOW="0", **env,
    )
    try:
        assert read_line(waiter) == "calling"
        time.sleep(1.0)  # the waiter is now blocked on the key's lock
        assert waiter.poll() is None, "the waiter did not wait for the lock holder"
        holder.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        line = read_line(waiter, timeout=30)
        waited = time.monotonic() - killed
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    assert line.split() == ["computing"]  # the waiter computes: nobody stored a value
    assert read_line(waiter).split() == ["10", "1"]
    finish(waiter)
    assert waited < 10.0  # a lock left held would keep it for lock_timeout (600 s)
    cache = Cache(cache_dir)
    assert len(list(cache.entries())) == 1


MEMORY_HOLDER = """
import os, sys, time
from memojar import Cache
computed = []
f = Cache(os.environ["CACHE"]).cached(memory=10)(lambda x: computed.append(x) or x * 2)
assert [f(1), f(2), f(1), f(2)] == [2, 4, 2, 4]
print("held", len(computed), flush=True)
while not os.path.exists(os.environ["GO"]):
    time.sleep(0.01)
assert [f(1), f(2)] == [2, 4]
print("after", len(computed), flush=True)
"""

CLEAR_KILLED_AT_FIRST_UNLINK = """
import os, signal
from memojar import Cache
unlink = os.unlink
def unlink_then_die(path, *args, **kwargs):
    unlink(path, *args, **kwargs)
    if str(path).endswith(".pkl"):
        os.kill(os.getpid(), signal.SIGKILL)
os.unlink = unlink_then_die
Cache(os.environ["CACHE"]).clear()
"""


def test_a_clear_killed_after_its_first_unlink_is_seen_by_memory_tiers(tmp_path: Path) -> None:
    """A process holding results in memory (``memory=``) while ``clear`` in another is
    killed (SIGKILL) right after removing the first entry: the holder's next call of the
    removed entry recomputes. Before,
    the stamp was bumped only after the last unlink, in a ``finally`` that SIGKILL skips:
    the holder returned the removed entry's value for good, since a clear run again bumps
    only the folders where it still finds entries."""
    root, go = tmp_path / "cache", tmp_path / "go"
    env = {"CACHE": str(root), "GO": str(go)}
    holder = spawn(MEMORY_HOLDER, **env)
    assert read_line(holder) == "held 2"
    killed = spawn(CLEAR_KILLED_AT_FIRST_UNLINK, **env)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert len(entry_files(root)) == 1  # one removed, one left
    go.touch()
    assert finish(holder) == "after 3\n"  # the removed entry's value is computed again
