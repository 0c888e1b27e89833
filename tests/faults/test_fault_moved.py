"""The folder a process opened is no longer the cache's: its next results are stored at the
cache's path, where every process finds them, and nothing goes where the descriptor leads.

The miss path writes relative to the function's folder, opened once per process. A user who
moves the cache (or one function's folder) aside, to start afresh or to keep a copy, while a
long-running process (a notebook kernel, a server) uses it, must not leave that process
writing every result into the moved folder: its own next call would compute again, and so
would every other process.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from faultkit import DAEMON_DURING_A_CALL, finish, read_line, spawn

TIMEOUT = 60

MODULE = """
calls = []

def work(x):
    calls.append(x)
    return x + 100
"""

# Calls work(1), says where its folder is, waits for the go file, then calls work(2) twice.
RUNNER = """
import os, sys, time
from pathlib import Path
from typing import Any
from memojar import Cache
import moved_work

cache = Cache(os.environ["CACHE"])
f = cache.cached(moved_work.work)
f(1)
name = f.__memojar__.name
print(Path(cache.store.path(name, f.cache_key(1))).parent.parent, flush=True)
deadline = time.monotonic() + 30
while not os.path.exists(os.environ["GO"]) and time.monotonic() < deadline:
    time.sleep(0.01)
print(f(2), f(2), moved_work.calls, Path(cache.store.path(name, f.cache_key(2))).is_file())
"""

READER = """
import os
from memojar import Cache
import moved_work

f = Cache(os.environ["CACHE"]).cached(moved_work.work)
print(f(2), moved_work.calls)
"""


@pytest.mark.parametrize("what", ["cache", "function folder"])
def test_a_cache_moved_aside_while_running_gets_the_next_results(
    tmp_path: Path, what: str
) -> None:
    (tmp_path / "moved_work.py").write_text(MODULE)
    root, go = tmp_path / "cache", tmp_path / "go"
    env = {"CACHE": str(root), "GO": str(go), "PYTHONPATH": str(tmp_path)}
    runner = spawn(RUNNER, **env)
    fdir = Path(read_line(runner).strip())  # it opened the function's folder
    moved = root if what == "cache" else fdir
    subprocess.run(["mv", str(moved), str(tmp_path / "aside")], check=True, timeout=TIMEOUT)
    go.touch()
    # Its second call is a hit: the first stored where this process (and any other) reads.
    assert finish(runner, TIMEOUT).split() == ["102", "102", "[1,", "2]", "True"]
    assert finish(spawn(READER, **env), TIMEOUT).split() == ["102", "[]"]


# A daemon closes every descriptor it did not open, then opens its own: the numbers memojar
# held come back, one of them a folder of the user's.
REUSED = """
import os, sys
from pathlib import Path
from typing import Any
from memojar import Cache
import moved_work

cache = Cache(os.environ["CACHE"])
f = cache.cached(moved_work.work)
f(1)
os.closerange(3, 4096)
mine = [os.open(os.environ["MINE"], os.O_RDONLY | os.O_DIRECTORY) for _ in range(32)]
name = f.__memojar__.name
print(f(2), f(2), moved_work.calls, Path(cache.store.path(name, f.cache_key(2))).is_file())
os.closerange(3, 4096)  # again, now that memojar holds new ones: then the cache is closed
mine = [os.open(os.environ["MINE"], os.O_RDONLY | os.O_DIRECTORY) for _ in range(100)]
cache.close()
print(sorted(os.listdir(os.environ["MINE"])), [os.fstat(fd).st_ino for fd in mine] == [
    os.stat(os.environ["MINE"]).st_ino] * 100)
"""


def test_descriptors_closed_and_reused_by_the_caller_are_not_written_through(
    tmp_path: Path,
) -> None:
    (tmp_path / "moved_work.py").write_text(MODULE)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    env = {"CACHE": str(tmp_path / "cache"), "MINE": str(mine), "PYTHONPATH": str(tmp_path)}
    out = finish(spawn(REUSED, **env), TIMEOUT).splitlines()
    assert out[0].split() == ["102", "102", "[1,", "2]", "True"]
    assert out[1] == "['notes.txt'] True"  # nothing written there, its descriptors still open


# A caller that closes a number it had closed before (a double close), memojar's folder's
# by then, and opens a folder of its own at it (``dup2``), before each miss in one shard,
# while another process clears that shard (its entries removed, then the shard) in a
# tight loop.
CLEARER = """
import os, sys
shard = sys.argv[1]
while True:
    try:
        os.mkdir(shard, 0o700)
    except OSError:
        pass
    try:
        for name in os.listdir(shard):
            try:
                os.unlink(os.path.join(shard, name))
            except OSError:
                pass
        os.rmdir(shard)
    except OSError:
        pass
"""

# The start of a script whose misses all fall in one shard (``xs``), which another process
# (``CLEARER``) clears in a tight loop for the ``SECONDS`` after ``end``.
IN_A_CLEARED_SHARD = """
import itertools, os, subprocess, sys, time, warnings
from memojar import Cache, MemojarWarning

cache = Cache(os.environ["CACHE"])
f = cache.cached(abs)
f(-1)
shard = os.path.dirname(cache.store.path(f.__memojar__.name, f.cache_key(-1)))
xs = list(itertools.islice((x for x in itertools.count(-2, -1)
                            if f.cache_key(x)[:2] == os.path.basename(shard)), 300))
clearer = subprocess.Popen([sys.executable, "-c", os.environ["CLEARER"], shard])
time.sleep(0.5)  # the clearer runs
end = time.monotonic() + float(os.environ["SECONDS"])
misses = 0
"""

REUSED_WHILE_CLEARED = IN_A_CLEARED_SHARD + """
mine = os.open(os.environ["MINE"], os.O_RDONLY | os.O_DIRECTORY)
try:
    for x in xs * 100:
        if time.monotonic() > end or os.listdir(os.environ["MINE"]) != ["notes.txt"]:
            break
        for n in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{n}") == os.path.dirname(shard):
                    os.dup2(mine, int(n))  # the folder's number is the caller's folder now
            except OSError:  # listdir's own descriptor, closed
                pass
        assert f(x) == -x
        misses += 1
finally:
    clearer.kill()
    clearer.wait()
print(misses, sorted(os.listdir(os.environ["MINE"])))
"""


def test_a_shard_cleared_while_the_folders_number_is_the_callers_is_not_made_in_its_folder(
    tmp_path: Path,
) -> None:
    """The small miss opens the shard by its path and checks its parent, without looking at
    the folder's descriptor. When the shard was then removed by another process's ``clear``
    (before its unnamed file was made, or before it was linked), the shard was made again
    with ``mkdir`` relative to that descriptor, unchecked: a caller that had closed it and
    opened a folder of its own at its number got a shard folder made in its folder (within a
    second here). The shard is now made in the folder checked first (``_folder``)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    out = finish(spawn(REUSED_WHILE_CLEARED, CACHE=str(tmp_path / "cache"), MINE=str(mine),
                       CLEARER=CLEARER, SECONDS="4"), TIMEOUT).split(maxsplit=1)
    assert out[1].strip() == "['notes.txt']", f"after {out[0]} misses"
    assert int(out[0]) > 100  # the race was run


# Misses in one shard while another process clears that shard in a tight loop: the reasons
# of the results not cached, one a line.
CLEARED = IN_A_CLEARED_SHARD + """
try:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MemojarWarning)
        for x in xs * 100:
            if time.monotonic() > end:
                break
            if os.environ["OP"] == "refresh":  # an entry there, replaced
                assert f.refresh(-1) == 1
            else:
                assert f(x) == -x
            misses += 1
finally:
    clearer.kill()
    clearer.wait()
print(misses)
for w in caught:
    print(str(w.message).rsplit("(", 1)[-1].split(")")[0])
"""


@pytest.mark.parametrize("op", ["miss", "refresh"])
def test_a_shard_cleared_by_another_process_while_misses_write_in_it_loses_no_result(
    tmp_path: Path, op: str
) -> None:
    """The unnamed file of an entry is made in the shard's descriptor; a shard removed since
    it was opened is made again and the write tried again. ext4 refuses an unnamed file in a
    removed folder with ``EPERM``, not ``ENOENT``: the result was not stored, with a
    warning ("Operation not permitted"), hundreds of times in 3 s here. A removed shard is
    now told by its link count. A refresh whose entry was there (linked at a temporary name,
    renamed over it) lost its result to a shard removed between the two ("No such file or
    directory", dozens of times): it is made again and the write tried again too."""
    out = finish(spawn(CLEARED, CACHE=str(tmp_path / "cache"), CLEARER=CLEARER, SECONDS="3",
                       OP=op), TIMEOUT).splitlines()
    assert int(out[0]) > 100  # the race was run
    # (each naming the folder: "...: <cache>/builtins.abs")
    assert {said.split(": ")[0] for said in out[1:]} <= {
        "the function's folder keeps being removed"}, out[:10]


WORK = """
import os, time

def work(x):
    with open(os.environ["LOG"], "a") as log:
        log.write(f"{x} {os.getpid()}\\n")
    deadline = time.monotonic() + 20
    while x == 3 and not os.path.exists(os.environ["RELEASE"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return x, os.getpid()
"""

# Calls work(1), then work(2) once the cache was moved aside, then work(3) when told.
LONG_RUNNING = """
import os, time
from memojar import Cache
import moved_locks

def wait(name):
    deadline = time.monotonic() + 30
    while not os.path.exists(os.environ[name]) and time.monotonic() < deadline:
        time.sleep(0.01)

f = Cache(os.environ["CACHE"]).cached(moved_locks.work)
print(f(1), flush=True)
wait("GO1")
print(f(2), flush=True)
wait("GO2")
print(f(3), flush=True)
"""

OTHER = """
import os
from memojar import Cache
import moved_locks

print(Cache(os.environ["CACHE"]).cached(moved_locks.work)(3), flush=True)
"""


def test_a_cache_moved_aside_while_running_keeps_one_computation_a_key(tmp_path: Path) -> None:
    """After the move, the running process locks keys in the cache's lock file, not in the
    moved one: a key another process is computing is waited for, not computed again."""
    (tmp_path / "moved_locks.py").write_text(WORK)
    log = tmp_path / "log"
    env = {name: str(tmp_path / name.lower()) for name in ("GO1", "GO2", "RELEASE")}
    env.update(CACHE=str(tmp_path / "cache"), LOG=str(log), PYTHONPATH=str(tmp_path))
    running = spawn(LONG_RUNNING, **env)
    assert read_line(running).strip() == f"(1, {running.pid})"
    subprocess.run(["mv", env["CACHE"], str(tmp_path / "aside")], check=True, timeout=TIMEOUT)
    Path(env["GO1"]).touch()
    assert read_line(running).strip() == f"(2, {running.pid})"
    other = spawn(OTHER, **env)
    deadline = time.monotonic() + TIMEOUT
    while f"3 {other.pid}" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the other process never computed"
        time.sleep(0.01)
    Path(env["GO2"]).touch()  # the running process asks for the key being computed
    time.sleep(0.5)
    Path(env["RELEASE"]).touch()
    assert finish(other, TIMEOUT).strip() == f"(3, {other.pid})"
    assert finish(running, TIMEOUT).strip() == f"(3, {other.pid})"
    assert log.read_text().split("\n").count(f"3 {running.pid}") == 0


def _users_folder(tmp_path: Path) -> dict[str, str]:
    """A folder of the user's (``MINE``, holding notes.txt) beside a cache (``CACHE``)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    return {"CACHE": str(tmp_path / "cache"), "MINE": str(mine)}


def test_descriptors_reused_while_a_call_computes_are_not_written_through(
    tmp_path: Path,
) -> None:
    """The key's lock was taken, and its descriptor checked, before the daemon closed and
    reopened every number: the folder's descriptor is the caller's when the result is
    stored."""
    env = _users_folder(tmp_path)
    assert finish(spawn(DAEMON_DURING_A_CALL, **env), TIMEOUT).split() == [
        "101", "102", "103", "102", "['notes.txt']"]


# After the daemon's closing and reopening, a stale entry is discarded under the key's lock,
# whose lock file is then opened by its path, not through the function's folder: the next
# miss's lock is that description, still a good one; the folder's descriptor is the caller's.
STALE = """
import os, time
from memojar import Cache

mine = os.environ["MINE"]

@Cache(os.environ["CACHE"]).cached(ttl=0.3)
def work(x):
    return x + 100

print(work(1))
time.sleep(0.5)  # work(1)'s entry is stale: its next call discards it
held = [int(n) for n in os.listdir("/proc/self/fd")]
os.closerange(3, 4096)
fd = os.open(mine, os.O_RDONLY | os.O_DIRECTORY)
for n in held:
    if n > fd:
        os.dup2(fd, n)
print(work(1), work(2), sorted(os.listdir(mine)))
"""


def test_a_lock_opened_by_its_path_does_not_vouch_for_a_reused_folder_descriptor(
    tmp_path: Path,
) -> None:
    env = _users_folder(tmp_path)
    assert finish(spawn(STALE, **env), TIMEOUT).split() == [
        "101", "101", "102", "['notes.txt']"]


# --- a storm of moves while memojar makes the function's folder again ------------------------

def _moved_back_and_away(
    monkeypatch: pytest.MonkeyPatch, fdir: Path, aside: Path, times: int
) -> None:
    """Another program moves the function's folder back into place just before memojar's
    ``mkdir`` of it (which then finds it there) and away again just after, ``times`` times:
    the storm of renames that one process's miss meets, made certain."""
    mkdir = os.mkdir
    left = [times]

    def moved_meanwhile(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.fspath(path) != str(fdir) or not left[0]:
            return mkdir(path, *args, **kwargs)
        left[0] -= 1
        os.rename(aside, fdir)
        try:
            return mkdir(path, *args, **kwargs)
        finally:
            os.rename(fdir, aside)

    monkeypatch.setattr(os, "mkdir", moved_meanwhile)


def _moved_cache(tmp_path: Path) -> tuple[Any, Path, Path]:
    from memojar import Cache

    cache = Cache(tmp_path / "cache")
    f = cache.cached(lambda x: x + 100)
    assert f(1) == 101
    fdir = Path(cache.store.path(f.__memojar__.name, f.cache_key(1))).parent.parent
    aside = tmp_path / "aside"
    os.rename(fdir, aside)  # moved away: the next miss makes the folder again
    return f, fdir, aside


def test_a_folder_moved_back_and_away_while_memojar_makes_it_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f, fdir, aside = _moved_cache(tmp_path)
    _moved_back_and_away(monkeypatch, fdir, aside, times=1)
    assert f(2) == 102  # no warning (warnings are errors): stored in a folder made again
    monkeypatch.undo()
    assert f.cache_contains(2) and fdir.is_dir() and not fdir.is_symlink()


def test_a_storm_of_moves_is_named_a_move_not_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memojar import MemojarWarning

    f, fdir, aside = _moved_cache(tmp_path)
    _moved_back_and_away(monkeypatch, fdir, aside, times=1000)
    with pytest.warns(MemojarWarning, match=rf"{fdir} was moved or removed while memojar "
                      r"was making it \(by another program\?\)") as caught:
        assert f(2) == 102
    assert not any("link" in str(w.message) for w in caught)


def test_a_folder_moved_while_a_max_size_write_renames_into_it_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``max_size`` the entry is written to a named temporary file in its shard and
    linked (or renamed) into place. Until 2026-12 the rename was by path: a folder moved
    away between the two took the temporary file with it, left there for good (with a
    warning naming the folder). The link is now relative to the shard's descriptor, as the
    plain write's is: the entry is whole in the folder it was written in, wherever that
    went, with no temporary file anywhere, and the call returns its value; the next call
    stores again."""
    from memojar import Cache

    cache = Cache(tmp_path / "cache", max_size=10_000_000)
    f = cache.cached(lambda x: x + 100)
    assert f(1) == 101
    entry = Path(cache.store.path(f.__memojar__.name, f.cache_key(2)))
    fdir = entry.parent.parent
    rename = os.rename

    def moved_first(place: Any) -> Any:  # the entry's link (or rename) at its name
        def placed(src: Any, dst: Any, **kwargs: Any) -> None:
            if str(dst).endswith(".pkl"):
                rename(fdir, tmp_path / "aside")
            place(src, dst, **kwargs)
        return placed

    monkeypatch.setattr(os, "rename", moved_first(os.rename))
    monkeypatch.setattr(os, "link", moved_first(os.link))
    assert f(2) == 102  # no warning (warnings are errors)
    monkeypatch.undo()
    assert (tmp_path / "aside" / entry.parent.name / entry.name).is_file()
    assert not list(tmp_path.rglob("*.tmp"))
    assert f(2) == 102 and f.cache_contains(2) and entry.is_file()
