"""Attack 12: bounds under concurrency. The size bound with several writers at once, an entry
larger than the bound, the discard of a bad entry racing a fresh one, and ``kill -9`` in the
middle of every update memojar makes (entry, size ledger, sweep note).

Real processes and real files; every wait is bounded.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from faultkit import finish, ledger_lock, spawn, subprocess_env

import memojar

MB = 1_000_000
TIMEOUT = 120


def on_disk(root: Path) -> int:
    """Bytes of entries and temporary files anywhere under ``root``, each inode once."""
    seen: dict[int, int] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith((".pkl", ".tmp")):
                try:
                    st = os.stat(os.path.join(dirpath, name), follow_symlinks=False)
                except FileNotFoundError:  # renamed or removed while listed
                    continue
                seen[st.st_ino] = st.st_size
    return sum(seen.values())


def temporary_files(root: Path) -> list[str]:
    """Every temporary file under ``root``, the root and dot-files included."""
    return sorted(os.path.join(d, n) for d, _, files in os.walk(root) for n in files
                  if n.endswith(".tmp"))


# --- 13. max_size with concurrent writers --------------------------------------------------

WRITER = """
import os, sys, time, warnings
import memojar
cache = memojar.Cache(os.environ["CACHE"], max_size=60_000_000)

@cache.cached
def big(i):
    return bytes([i % 256]) * 25_000_000

while not os.path.exists(os.environ["GO"]):
    time.sleep(0.005)
first = int(os.environ["FIRST"])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for i in range(first, first + 3):
        assert big(i) == bytes([i % 256]) * 25_000_000
print(len(caught))
"""


@pytest.mark.slow
def test_max_size_holds_with_four_concurrent_writers(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    go = tmp_path / "go"
    writers = [spawn(WRITER, CACHE=str(root), GO=str(go), FIRST=str(3 * n)) for n in range(4)]
    worst = 0
    try:
        time.sleep(1.0)  # all four import memojar and wait at the start line
        go.touch()
        deadline = time.monotonic() + TIMEOUT
        while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
            if (root / ".size.lock").exists():
                with ledger_lock(root):
                    worst = max(worst, on_disk(root))
            time.sleep(0.002)
        outputs = [finish(w, timeout=10) for w in writers]
    finally:
        for w in writers:
            w.kill()
            w.communicate()
    worst = max(worst, on_disk(root))
    assert worst <= 60 * MB + 25 * MB + 4096, f"{worst / MB:.1f} MB on disk"
    assert 25 * MB <= on_disk(root) <= 60 * MB  # the newest entries stay
    assert [out.strip() for out in outputs] == ["0"] * 4  # each waited for room: no warning


# --- 14. an entry larger than max_size ------------------------------------------------------

TOO_BIG = """
import os, warnings
import memojar
cache = memojar.Cache(os.environ["CACHE"], max_size=1_000_000)

@cache.cached
def blob(n):
    return bytes(n)

for i in range(5):
    blob(100_000 + i)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert blob(2_000_000) == bytes(2_000_000)
for w in caught:
    print("warning:", w.category.__name__, w.message)
print(sum(blob.cache_contains(100_000 + i) for i in range(5)), blob.cache_contains(2_000_000))
"""


def test_an_entry_larger_than_max_size_is_not_stored_and_evicts_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    out = finish(spawn(TOO_BIG, CACHE=str(root)), timeout=TIMEOUT).splitlines()
    warnings = [line for line in out if line.startswith("warning:")]
    assert len(warnings) == 1, out
    assert "MemojarWarning" in warnings[0] and "larger than the cache's max_size" in warnings[0]
    assert out[-1] == "5 False"  # the five small entries are all still there
    assert on_disk(root) < 1_000_000


# --- 15. discarding a bad entry while another process stores a fresh one --------------------

MODULE = """
import errno
import os

def slow(x):
    with open(os.environ["LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    return [x] * 1000
"""

STORE = """
import os, memojar
from racemod import slow
f = memojar.Cache(os.environ["CACHE"]).cached(slow)
assert f(7) == [7] * 1000
"""

RACE = """
import os, subprocess, sys
import memojar
from racemod import slow
cache = memojar.Cache(os.environ["CACHE"])
f = cache.cached(slow)
path = cache.store.path(f.__memojar__.name, f.cache_key(7))
data = bytearray(open(path, "rb").read())
data[-1] ^= 0xFF  # a corrupt entry: its checksum fails
with open(path, "r+b") as out:
    out.write(data)
read = cache.store.read

def read_then_race(function, key):
    judged = read(function, key)  # the bad entry, about to be judged and discarded
    if fresh:  # once
        return judged
    subprocess.run([sys.executable, "-c", os.environ["STORE"]], check=True, timeout=60)
    fresh.append(open(path, "rb").read())
    return judged  # meanwhile, another process replaced it with a fresh entry

fresh = []
cache.store.read = read_then_race
assert f(7) == [7] * 1000
print(open(path, "rb").read() == fresh[0])
"""


def test_discarding_a_bad_entry_keeps_a_fresh_one_stored_meanwhile(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    log = tmp_path / "computed"
    (tmp_path / "racemod.py").write_text(MODULE)
    env = {"CACHE": str(root), "LOG": str(log), "PYTHONPATH": str(tmp_path), "STORE": STORE}
    finish(spawn(STORE, **env), timeout=TIMEOUT)
    out = finish(spawn(RACE, **env), timeout=TIMEOUT)
    computed = log.read_text().split()
    assert len(computed) == 2, computed  # the first store, and the other process's repair
    assert out.strip() == "True"  # the entry on disk is the other process's, not a rewrite


EXPIRING = """
import os, memojar
cache = memojar.Cache(os.environ["CACHE"])

@cache.cached(ttl=float(os.environ["TTL"]))
def f(x):
    with open(os.environ["LOG"], "a") as log:
        log.write(f"{x}\\n")
    return x

assert f(1) == 1
"""


def test_prune_keeps_an_entry_written_again_after_it_was_judged(tmp_path: Path) -> None:
    """prune reads every entry, judges them, then removes the doomed: an expired entry that
    another process computed again in between is a fresh one, and stays."""
    root, log = tmp_path / "cache", tmp_path / "computed"
    env = subprocess_env(CACHE=str(root), LOG=str(log))
    subprocess.run([sys.executable, "-c", EXPIRING], env={**env, "TTL": "0.2"}, check=True,
                   timeout=TIMEOUT)
    time.sleep(0.3)  # expired (its expiry is in its header: prune judges it so)
    rewrites: list[int] = []

    def rewrite_once_read(stage: str, n: int, total: int | None) -> None:
        if stage == "checking" and not rewrites:  # read: a fresh value is stored now
            rewrites.append(n)
            subprocess.run([sys.executable, "-c", EXPIRING], env={**env, "TTL": "3600"},
                           check=True, timeout=TIMEOUT)

    assert memojar.Cache(root).prune(progress=rewrite_once_read) == 0
    subprocess.run([sys.executable, "-c", EXPIRING], env={**env, "TTL": "3600"}, check=True,
                   timeout=TIMEOUT)
    assert log.read_text().split() == ["1", "1"]  # the first, the fresh one; then a hit


SIZED = """
import os, memojar
cache = memojar.Cache(os.environ["CACHE"], max_size=int(os.environ.get("MAX") or 0) or None)

@cache.cached(ttl=float(os.environ.get("TTL") or 3600))
def f(x):
    with open(os.environ["LOG"], "a") as log:
        log.write(f"{x}\\n")
    return bytes(100_000)

for x in os.environ["CALLS"].split():
    f(int(x))
if os.environ.get("REFRESH"):
    f.refresh(int(os.environ["REFRESH"]))
"""


def evict_while_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          victims: list[list[str]], expired: bool = False,
                          ) -> tuple[Path, Path, dict[str, str]]:
    """Entries of f(1), f(2), f(3) (f(1) the least recently used) in a cache that a write
    here then evicts from; once the eviction has chosen its victims, another process (one
    without ``max_size``) computes f(1) again (``refresh``; or, ``expired``, a call that
    finds its entry expired, removes it and computes)."""
    from memojar import _ledger

    root, log = tmp_path / "cache", tmp_path / "computed"
    env = subprocess_env(CACHE=str(root), LOG=str(log), MAX="350000")
    for x in "123":  # one process each: f(1) is used first
        subprocess.run([sys.executable, "-c", SIZED],
                       env={**env, "CALLS": x, "TTL": "0.2" if expired else ""}, check=True,
                       timeout=TIMEOUT)
        time.sleep(0.05)
    time.sleep(0.3 if expired else 0)
    again = {"CALLS": "1"} if expired else {"CALLS": "", "REFRESH": "1"}
    choose = _ledger.choose_victims

    def rewrite_once_chosen(*args: Any, **kwargs: Any) -> Any:
        chosen = choose(*args, **kwargs)
        if chosen[0] and not victims:
            victims.append([e.location for e in chosen[0]])
            subprocess.run([sys.executable, "-c", SIZED],
                           env={**env, "MAX": "", **again}, check=True, timeout=TIMEOUT)
        return chosen

    monkeypatch.setattr(_ledger, "choose_victims", rewrite_once_chosen)
    cache = memojar.Cache(root, max_size=350_000)
    assert cache.cached(lambda: bytes(100_000))() == bytes(100_000)  # evicts: no room
    return root, log, env


def test_max_size_keeps_an_entry_written_again_after_it_was_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An eviction lists the cache, chooses the least recently used, then removes them: an
    entry written again in between (by a process without ``max_size``, or one whose
    reservation came before) is the newest, and stays."""
    victims: list[list[str]] = []
    _, log, env = evict_while_rewritten(tmp_path, monkeypatch, victims)
    assert len(victims[0]) == 1  # f(1)'s, the least recently used
    subprocess.run([sys.executable, "-c", SIZED], env={**env, "CALLS": "1"}, check=True,
                   timeout=TIMEOUT)
    assert log.read_text().split() == ["1", "2", "3", "1"]  # the refresh; then a hit


def test_max_size_keeps_an_entry_written_again_at_the_inode_number_of_the_one_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The entry listed expired, and another process removed it on its read and computed
    it again: ext4 gives the new file the freed inode number, and the eviction still
    tells it apart (its times are its write's) and keeps it."""
    victims: list[list[str]] = []
    _, log, env = evict_while_rewritten(tmp_path, monkeypatch, victims, expired=True)
    assert victims  # the eviction ran
    subprocess.run([sys.executable, "-c", SIZED], env={**env, "CALLS": "1"}, check=True,
                   timeout=TIMEOUT)
    assert log.read_text().split() == ["1", "2", "3", "1"]  # computed again; then a hit


def test_max_size_counts_an_entry_written_again_after_it_was_listed_as_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The size ledger after an eviction that kept an entry written again since it was
    listed holds the bytes on disk: the kept entry is not taken for removed (the eviction
    chose another in its place)."""
    root, _, _ = evict_while_rewritten(tmp_path, monkeypatch, [])
    assert int((root / ".size").read_text()) == on_disk(root) <= 350_000


def test_clear_keeps_an_entry_written_again_after_it_was_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Cache.clear()`` lists the entries, then removes them: one written again in
    between by another process (its result computed after the clear began) stays."""
    from memojar._filestore import FileStore

    root, log = tmp_path / "cache", tmp_path / "computed"
    env = subprocess_env(CACHE=str(root), LOG=str(log), CALLS="1")
    subprocess.run([sys.executable, "-c", SIZED], env=env, check=True, timeout=TIMEOUT)
    unlink = FileStore._unlink

    def rewrite_first(store: FileStore, entries: Any) -> Any:
        subprocess.run([sys.executable, "-c", SIZED], env={**env, "CALLS": "",
                                                           "REFRESH": "1"},
                       check=True, timeout=TIMEOUT)
        return unlink(store, entries)

    monkeypatch.setattr(FileStore, "_unlink", rewrite_first)
    assert memojar.Cache(root).clear() == 0
    subprocess.run([sys.executable, "-c", SIZED], env=env, check=True, timeout=TIMEOUT)
    assert log.read_text().split() == ["1", "1"]  # the refresh; then a hit


def test_clear_removes_an_entry_read_after_it_was_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Cache.clear()`` lists the entries, then removes them: one only read in between by
    another process of a ``max_size`` cache (whose hit stamps the file's times) goes too.
    A clear keeping it served the value from before the clear afterwards."""
    from memojar._filestore import FileStore

    root, log = tmp_path / "cache", tmp_path / "computed"
    env = subprocess_env(CACHE=str(root), LOG=str(log), CALLS="1", MAX="10000000")
    subprocess.run([sys.executable, "-c", SIZED], env=env, check=True, timeout=TIMEOUT)
    unlink = FileStore._unlink

    def read_first(store: FileStore, entries: Any) -> Any:
        subprocess.run([sys.executable, "-c", SIZED], env=env, check=True, timeout=TIMEOUT)
        return unlink(store, entries)

    monkeypatch.setattr(FileStore, "_unlink", read_first)
    assert memojar.Cache(root).clear() == 1
    subprocess.run([sys.executable, "-c", SIZED], env=env, check=True, timeout=TIMEOUT)
    assert log.read_text().split() == ["1", "1"]  # the hit between computed nothing


# --- 16. kill -9 in the middle of any update ----------------------------------------------------

KILLED = """
import os, signal
import memojar
where = os.environ["WHERE"]

def killed_before(real):  # os.replace by path; os.rename, os.link relative to a folder's
    def rename(src, dst, *args, **kwargs):  # descriptor
        name = os.path.basename(str(src))
        if name.endswith(".tmp") and where in name:
            os.kill(os.getpid(), signal.SIGKILL)  # just before the rename: the file is whole
        return real(src, dst, *args, **kwargs)
    return rename

os.replace, os.rename = killed_before(os.replace), killed_before(os.rename)
os.link = killed_before(os.link)  # (a new entry takes its name by link)
cache = memojar.Cache(os.environ["CACHE"], max_size=10_000_000)
f = cache.cached(lambda x: bytes(5000) + bytes([x]))
for i in range(3):
    f(i)
"""


@pytest.mark.parametrize("where", [".size.", ".swept.", ".pkl."], ids=["ledger", "note", "entry"])
def test_prune_after_kill9_mid_update_leaves_no_temporary_file(tmp_path: Path, where: str) -> None:
    root = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-c", KILLED], capture_output=True, text=True,
                          env=subprocess_env(CACHE=str(root), WHERE=where), timeout=TIMEOUT)
    assert proc.returncode == -9, proc.stderr
    assert temporary_files(root), "the kill came too late to leave a temporary file"
    subprocess.run([sys.executable, "-c",
                    "import os, memojar; memojar.Cache(os.environ['CACHE']).prune()"],
                   env=subprocess_env(CACHE=str(root)), check=True, timeout=TIMEOUT)
    assert temporary_files(root) == []


HELD = """
import os, warnings
import memojar
from memojar import _filestore
_filestore.RESERVE_WAIT = 1.0
cache = memojar.Cache(os.environ["CACHE"], max_size=1_000_000)
blob = cache.cached(lambda n: bytes(n))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert blob(200_000) == bytes(200_000)
for w in caught:
    print("warning:", w.category.__name__, w.message)
print(blob.cache_contains(200_000), blob.cache_contains(1))
"""


def test_a_writer_finding_the_room_held_by_writers_in_flight_waits_then_stores_nothing(
    tmp_path: Path,
) -> None:
    from memojar import _filestore

    root = tmp_path / "cache"
    code = ("import os, memojar\nf = memojar.Cache(os.environ['CACHE'], max_size=1_000_000)"
            ".cached(lambda n: bytes(n))\nf(1)\nprint(f.__memojar__.name)")
    finish(spawn(code, CACHE=str(root)), timeout=TIMEOUT)
    shard = next(p for p in root.glob("*/*") if p.is_dir())
    # A writer in flight, alive on this host (this process), holding 900 kB of the room.
    host = getattr(_filestore, "_HOST", None)  # this host, in the names memojar writes
    writer = f"{os.getpid()}-{host}" if host else str(os.getpid())
    held = shard / f"{'ab' * 16}.pkl.{writer}.0badf00d.tmp"
    with open(held, "wb") as f:
        f.truncate(900_000)
    start = time.monotonic()
    out = finish(spawn(HELD, CACHE=str(root)), timeout=TIMEOUT).splitlines()
    assert 1.0 <= time.monotonic() - start < TIMEOUT
    warnings = [line for line in out if line.startswith("warning:")]
    assert len(warnings) == 1 and "no room under max_size" in warnings[0], out
    assert out[-1] == "False True"  # not stored, and the entry already there not evicted
    assert held.exists()


# --- the first ledger update of a process, after a removal ---------------------------------

REMOVER = """
import os, sys
import memojar
cache = memojar.Cache(os.environ["CACHE"], max_size=1_000_000)

@cache.cached(version=int(sys.argv[2]))
def f(i):
    return bytes([i]) * 10_000

if sys.argv[1] == "write":
    f(1), f(2), f(3)
elif sys.argv[1] == "delete":
    assert f.cache_delete(1)
else:  # another version: the entry of version 1 read first is discarded as incompatible
    f(1)
"""


@pytest.mark.parametrize("removal", ["delete", "discard"])
def test_a_removal_in_a_new_process_is_counted_once(tmp_path: Path, removal: str) -> None:
    """A process's first ledger update recounts the files (another process may have left
    the total behind): the recount already misses the removed entry, so subtracting its
    size once more made the ledger say less than what is on disk, and let the cache grow
    past max_size by as much."""
    root = tmp_path / "cache"
    script = tmp_path / "remover.py"
    script.write_text(REMOVER)
    env = {**subprocess_env(), "CACHE": str(root)}
    for step in ("write", removal):
        version = "2" if step == "discard" else "1"
        proc = subprocess.run([sys.executable, str(script), step, version], env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
    assert int((root / ".size").read_text()) == on_disk(root)


RECOUNT = """
import os, memojar
from memojar import _filestore
_filestore.LOCK_WAIT = 1.0  # a ledger held throughout by the remover: given up
try:
    memojar.Cache(os.environ["CACHE"], max_size=1_000_000).prune()  # recounts the ledger
except OSError as exc:
    assert "held by another process" in str(exc), exc
"""

RECOUNTED_MEANWHILE = """
import glob, os, subprocess, sys
import memojar
cache = memojar.Cache(os.environ["CACHE"], max_size=1_000_000)

@cache.cached
def f(i):
    return bytes([i]) * 10_000

@cache.cached
def g(i):
    return bytes([i]) * 20_000

if os.environ["REMOVAL"] == "write":  # the first process's entries
    f(1), f(2), f(3), g(10)
    sys.exit()
f(4)  # this process has used the ledger: its next update is a difference, not a recount

def recounted_after(real):  # another process recounts once the first entry file goes
    def change(src, *args, **kwargs):
        real(src, *args, **kwargs)
        if ".pkl" in str(src) and not recounted:
            recounted.append(src)
            subprocess.run([sys.executable, "-c", os.environ["RECOUNT"]], check=True,
                           timeout=60)
    return change

recounted = []

removal = os.environ["REMOVAL"]
if removal == "discard":  # a damaged entry: discarded on read
    [path] = glob.glob(os.path.join(cache.directory, "*", "*", f.cache_key(1) + ".pkl"))
    with open(path, "r+b") as damaged:
        damaged.seek(-1, os.SEEK_END)
        damaged.write(b"!")
os.unlink, os.rename = recounted_after(os.unlink), recounted_after(os.rename)
if removal == "delete":
    assert f.cache_delete(1)
elif removal == "discard":
    f(1)
elif removal == "clear":  # f's entries; g's stays
    assert f.cache_clear() == 4
else:  # a refresh renames its entry over the one there
    f.refresh(1)
"""


@pytest.mark.parametrize("removal", ["delete", "discard", "clear", "refresh"])
def test_a_removal_is_counted_once_when_the_ledger_is_recounted_meanwhile(
    tmp_path: Path, removal: str,
) -> None:
    """Another process's recount of the ledger (its eviction, ``prune``) between a removal
    and the remover's ledger update already misses the removed entry: subtracting its size
    then as well made the ledger say less than the files on disk (an entry's size each
    time), and the cache could grow past max_size by as much. A removal is now made and
    recorded under the ledger's lock."""
    root = tmp_path / "cache"
    env = subprocess_env(CACHE=str(root), RECOUNT=RECOUNT)
    subprocess.run([sys.executable, "-c", RECOUNTED_MEANWHILE], env={**env, "REMOVAL": "write"},
                   check=True, timeout=TIMEOUT)
    proc = subprocess.run([sys.executable, "-c", RECOUNTED_MEANWHILE],
                          env={**env, "REMOVAL": removal}, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert int((root / ".size").read_text()) == on_disk(root)


# --- a shard removed by another process's prune under a max_size write ------------------------

PRUNE = """
import errno
import os
from memojar import Cache, _filestore
_filestore.LOCK_WAIT = 1.0  # a ledger held throughout by the writer: given up
max_size = int(os.environ["PRUNER_MAX_SIZE"]) or None
try:
    Cache(os.environ["CACHE"], max_size=max_size).prune()
except OSError as exc:  # its recount, after the removals
    assert "held by another process" in str(exc), exc
"""

# One max_size miss; before each try at its temporary file, another process prunes the cache
# (the shard, just made, is empty). Prints the warnings, then how many prunes ran.
PRUNED_BEFORE_EACH_TRY = """
import os, subprocess, sys, warnings
from memojar import Cache, MemojarWarning, _filestore

cache = Cache(os.environ["CACHE"], max_size=1_000_000)
f = cache.cached(abs)
real = _filestore._create_new
prunes = []

def pruned_first(path, made=None, dir_fd=None):
    if dir_fd is not None and path.endswith(".pkl") and len(prunes) < 10:
        prunes.append(path)
        subprocess.run([sys.executable, "-c", os.environ["PRUNE"]], check=True, timeout=60)
    return real(path, made, dir_fd)

_filestore._create_new = pruned_first
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", MemojarWarning)
    assert f(-3) == 3
for w in caught:
    print(w.message)
print(len(prunes), f.cache_contains(-3))
"""


@pytest.mark.parametrize("pruner_max_size", [1_000_000, 0], ids=["max_size", "no_max_size"])
def test_a_shard_pruned_under_a_max_size_write_costs_it_nothing(
    tmp_path: Path, pruner_max_size: int,
) -> None:
    """``prune`` (its ``cleanup``) removes empty shards. A max_size write opens its shard,
    then makes its temporary file there under the ledger's lock: a prune in another process
    that removed the shard in between (twice: the write tried once more) cost the write its
    result, with a warning blaming "another program" (1 write in a few hundred, writers
    and a clear/prune loop in one shard). Shards are now removed under the ledger's lock
    too, so the try made under it finds its shard, or makes one no prune removes."""
    root = tmp_path / "cache"
    out = finish(spawn(PRUNED_BEFORE_EACH_TRY, CACHE=str(root), PRUNE=PRUNE,
                       PRUNER_MAX_SIZE=str(pruner_max_size)), TIMEOUT).splitlines()
    assert out[-1].split()[1] == "True", out  # stored
    assert out[:-1] == [], out  # no warning
    assert int((root / ".size").read_text()) == on_disk(root)


# Misses in one shard of a max_size cache while another process clears and prunes the cache
# in a loop (until STOP exists); then how many misses, and the warnings, one a line.
CLEARED_AND_PRUNED = """
import itertools, os, subprocess, sys, time, warnings
from memojar import Cache, MemojarWarning

cache = Cache(os.environ["CACHE"], max_size=1_000_000)
f = cache.cached(abs)
f(-1)
shard = f.cache_key(-1)[:2]
xs = list(itertools.islice((x for x in itertools.count(-2, -1) if f.cache_key(x)[:2] == shard),
                           300))
pruner = subprocess.Popen([sys.executable, "-c", os.environ["PRUNER"]])
end = time.monotonic() + float(os.environ["SECONDS"])
misses = 0
try:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MemojarWarning)
        # for SECONDS, and on a loaded machine until 1,200 misses (at most a minute more)
        while time.monotonic() < end or (misses < 1200 and time.monotonic() < end + 60):
            for x in xs:
                assert f(x) == -x
                misses += 1
            cache.clear()
finally:
    open(os.environ["STOP"], "w").close()  # not killed: a removal is not cut half way
    pruner.wait(timeout=60)
print(misses)
for w in caught:
    print(w.message)
"""

CLEAR_AND_PRUNE = """
import errno
import os
from memojar import Cache
cache = Cache(os.environ["CACHE"], max_size=1_000_000)
while not os.path.exists(os.environ["STOP"]):
    cache.clear()
    cache.prune()
"""


def test_max_size_misses_lose_nothing_to_a_clear_and_prune_loop(tmp_path: Path) -> None:
    """The race of the test above with real processes: writers' results were returned but
    not stored, 1 in a few hundred misses ("... was moved or removed while memojar was using
    it (by another program?)"). The ledger stays the bytes on disk throughout."""
    root = tmp_path / "cache"
    out = finish(spawn(CLEARED_AND_PRUNED, CACHE=str(root), PRUNER=CLEAR_AND_PRUNE,
                       STOP=str(tmp_path / "stop"), SECONDS="6"), TIMEOUT).splitlines()
    assert int(out[0]) > 1000, out  # the race was run
    assert out[1:] == [], out[:5]
    assert int((root / ".size").read_text()) == on_disk(root)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_a_process_going_through_many_caches_keeps_few_files_open(tmp_path: Path) -> None:
    """A process that uses a hundred caches' functions once each (a pipeline of cached steps,
    a test suite making a cache per test) ends with a bounded number of their files open, not
    one lock file per function it ever used: ``select`` fails past descriptor 1023 and
    ``open`` past the limit of open files, in the user's own code. A dropped cache closes its
    folders at once, without waiting for the cycle collector (off here), which a program with
    a big heap runs rarely."""
    script = f"""
import gc, os
from memojar import Cache
gc.disable()
for i in range(100):
    step = Cache({str(tmp_path)!r} + "/cache-%d" % i).cached(lambda x: x + 1)
    assert step(i) == i + 1
    del step
print(sum({str(tmp_path)!r} in os.path.realpath("/proc/self/fd/" + fd)
          for fd in os.listdir("/proc/self/fd")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) <= 40, f"{done.stdout.strip()} files of the caches still open"


def test_a_process_under_a_low_limit_of_open_files_keeps_room_for_its_own(
        tmp_path: Path) -> None:
    """Under a soft limit of 64 open files, a process using a hundred caches' functions
    (all kept) still stores every result and can open files of its own. Before, memojar
    kept 64 folders and 32 lock files open whatever the limit: they filled it, its own
    writes failed ("Too many open files", every result returned but not stored) and so did
    the user's ``open``."""
    script = f"""
import resource, warnings
from memojar import Cache
warnings.simplefilter("error")  # a result not stored is a failure here
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
steps = [Cache({str(tmp_path)!r} + "/cache-%d" % i).cached(lambda x: x + 1)
         for i in range(100)]
for i, step in enumerate(steps):
    assert step(i) == i + 1
mine = [open(__import__("os").devnull) for _ in range(40)]
print(sum(step.cache_info().entries for step in steps))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["100"]


CLEAR_OUT_OF_FILES = """
import os, resource, sys
from memojar import Cache
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
for extra in range(8):  # a few descriptors to spare: the listing's, not the files' looks
    for how in ("clear", "cache_clear"):
        cache = Cache(os.path.join(sys.argv[1], f"{how}-{extra}"))
        f = cache.cached(lambda x: x + 1)
        if sys.argv[2] == "fill":
            for i in range(20):
                f(i)
            continue
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + extra, hard))
        try:
            removed = cache.clear() if how == "clear" else f.cache_clear()
        except OSError as exc:
            removed = exc.errno
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        print(how, extra, removed, f.cache_info().entries)
"""


def test_a_clear_out_of_open_files_says_so_or_clears(tmp_path: Path) -> None:
    """``clear()`` and ``cache_clear()`` in a process with no descriptor to spare to look at
    each entry's first bytes (``ulimit -n`` low, or every descriptor in use): they raise
    "Too many open files", or remove every entry. Before, each entry that could not be
    opened was taken for another tool's file and left: they answered 0 and removed nothing
    (``memojar clear --yes`` said "nothing to clear" over a cache of entries)."""
    for step in ("fill", "clear"):  # (cleared by a process that has not opened its folders)
        done = subprocess.run([sys.executable, "-c", CLEAR_OUT_OF_FILES, str(tmp_path), step],
                              capture_output=True, text=True, timeout=TIMEOUT,
                              env=subprocess_env())
        assert done.returncode == 0, done.stderr[-2000:]
    for line in done.stdout.splitlines():
        _, _, removed, left = line.split()
        assert (removed, left) == ("20", "0") or (
            int(removed) == errno.EMFILE and int(left) > 0), line

def test_a_cache_dropped_while_its_redis_server_is_down_leaves_no_prober_behind(
        tmp_path: Path) -> None:
    """Caches made and dropped while their Redis server is down (a Cache per job, per
    test) each started a thread that pings the server until it answers: it held its store
    (and client), so it pinged forever, one more thread per cache. A dropped store now
    takes its prober with it (once the cycle collector has freed what redis-py's failed
    connect keeps in a cycle)."""
    pytest.importorskip("redis", reason="redis-py is not installed")
    import socket

    with socket.socket() as s:  # a port nobody listens on: every connect is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = f"""
import gc, threading, time, warnings
from memojar import Cache
warnings.simplefilter("ignore")
for i in range(20):
    cache = Cache("redis://127.0.0.1:{port}/0?socket_timeout=2&prefix=p%d:" % i)
    step = cache.cached(lambda x: x + 1)
    assert step(i) == i + 1  # the server is down: computed, not stored
    del step, cache
def probers():
    return sum(t.name.startswith("memojar-redis-probe") for t in threading.enumerate())
print(probers())
deadline = time.monotonic() + 60
while probers() and time.monotonic() < deadline:
    gc.collect()
    time.sleep(0.1)
print(probers())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    started, left = map(int, done.stdout.split())
    assert started > 0  # the test tests something: the servers' probers ran
    assert left == 0, f"{left} probers of dropped caches still running"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_a_process_going_through_many_functions_keeps_few_folders_open(tmp_path: Path) -> None:
    """Many functions of one live Cache (a pipeline of cached steps), and many caches kept
    for good (``cached(cache_dir=...)`` per test, whose Caches are shared by location), each
    kept its function's folder open: a descriptor per function the process ever used, past
    which ``select`` and ``open`` fail in the user's own code. The folders kept open are now
    the last few, across every store, and so are the caches' writer files (``.writers``:
    one a cache, held while the process may have changes of it to merge)."""
    script = f"""
import errno
import os
from memojar import Cache, cached
root = {str(tmp_path)!r}
cache = Cache(root + "/one")
for i in range(200):
    ns = {{}}
    exec("def step%d(x): return x + %d" % (i, i), ns)
    step = cache.cached(ns["step%d" % i])
    assert step(1) == 1 + i
    other = cached(cache_dir=root + "/dir-%d" % i)(lambda x: x * 2)
    assert other(i) == 2 * i
    assert step(1) == 1 + i and other(i) == 2 * i  # hits
paths = [os.path.realpath("/proc/self/fd/" + fd) for fd in os.listdir("/proc/self/fd")]
writers = sum("/.writers/" in p for p in paths)
print(sum(root in p for p in paths) - writers, writers)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    folders, writers = map(int, done.stdout.split())
    assert folders <= 120, f"{folders} folders and lock files of the caches still open"
    assert writers <= 64, f"{writers} writer files of 201 caches still open"


def test_a_process_changing_many_caches_in_turn_keeps_one_writer_file_a_cache(
        tmp_path: Path) -> None:
    """A process changing more caches in turn than it holds writer files of (80 caches
    kept, a miss in each in turn) lets the earliest go and holds it again at its next
    change: one file a cache in ``.writers``, none left at its exit. (Letting a file go
    and making a new one at each registration left 4,080 files after 4,000 misses.)"""
    script = f"""
import errno
import os
from memojar import Cache
root = {str(tmp_path)!r}
steps = [Cache(root + "/c%d" % i).cached(lambda x: x + 1) for i in range(80)]
for j in range(800):
    assert steps[j % 80](j) == j + 1
print(max(len(os.listdir(root + "/c%d/.writers" % i)) for i in range(80)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
    assert not any(os.listdir(tmp_path / f"c{i}" / ".writers") for i in range(80))


def test_a_process_changing_many_caches_at_random_leaves_no_writer_file(
        tmp_path: Path) -> None:
    """A process changing 200 caches in a random order (4,000 misses) leaves no writer file
    at its exit. Before, the record of the files it let go kept a cache whose file was
    held again, its list empty, and past 64 such caches the records of files still let go
    were dropped: those files were never used again nor removed (a new one made at the
    cache's next change), 40 left after 12,000 misses over 80 caches, 2,017 after 6,000
    over 200."""
    script = f"""
import os, random
from memojar import Cache
root = {str(tmp_path)!r}
steps = [Cache(root + "/c%d" % i).cached(lambda x: x + 1) for i in range(200)]
chosen = random.Random(1)
for j in range(4000):
    assert steps[chosen.randrange(200)](j) == j + 1
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    left = sum(len(os.listdir(tmp_path / f"c{i}" / ".writers")) for i in range(200))
    assert left == 0, f"{left} writer files left"


def test_a_process_out_of_files_as_it_holds_a_writer_file_again_leaves_none_at_its_exit(
        tmp_path: Path) -> None:
    """A process changing more caches in turn than it holds writer files of, out of open
    files (``EMFILE``) at every other opening of a file it let go, as it holds it again
    (its threads closing and opening files: its next file can be made), leaves no writer
    file at a normal exit. Before, the record of the file was dropped at that failure: the
    file was never held again nor removed, 1,951 left after 4,000 misses over 80 caches,
    each making the next reader of the counts drop them and list the folders again."""
    script = f"""
import errno, os
from memojar import Cache, _filestore
root = {str(tmp_path)!r}
opened = os.open
turns = [0]


def out_of_files_at_times(path, flags, mode=0o777, *, dir_fd=None):
    if dir_fd is not None and flags & os.O_NONBLOCK and _filestore._WRITER.fullmatch(path):
        turns[0] += 1
        if turns[0] % 2:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    return opened(path, flags, mode, dir_fd=dir_fd)


os.open = out_of_files_at_times
steps = [Cache(root + "/c%d" % i).cached(lambda x: x + 1) for i in range(80)]
for j in range(800):
    assert steps[j % 80](j) == j + 1
print(turns[0])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 100  # the test tests something: files let go, held again
    left = sum(len(os.listdir(tmp_path / f"c{i}" / ".writers")) for i in range(80))
    assert left == 0, f"{left} writer files left"


def test_a_process_out_of_files_as_it_lets_a_merged_writer_file_go_leaves_none_at_its_exit(
        tmp_path: Path) -> None:
    """A process letting go the writer file of a cache whose changes are merged (past
    ``_ENLISTED_MAX``, here 1), out of open files (``EMFILE``) as it opens ``.writers`` to
    remove it, leaves no writer file at a normal exit. Before, the file was forgotten
    there: left in ``.writers`` (a process at its descriptor limit: ``ulimit -n 32``, every
    time at one count of free descriptors), and taken for a dead writer's by the next
    reader of the counts."""
    script = f"""
import errno, os, sys
from memojar import Cache, _filestore
root = {str(tmp_path)!r}
_filestore._ENLISTED_MAX = 1
opened = os.open
refused = [0]


def out_of_files_in_withdraw(path, *args, **kwargs):
    if sys._getframe(1).f_code.co_name == "_withdraw":
        refused[0] += 1
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    return opened(path, *args, **kwargs)


os.open = out_of_files_in_withdraw
caches = [Cache(root + "/c%d" % i) for i in range(3)]
steps = [cache.cached(lambda x: x + 1) for cache in caches]
for j in range(30):
    assert steps[j % 3](j) == j + 1
    caches[j % 3].store.merge_stats({{}})  # (merged: its file is removed when let go)
os.open = opened
print(refused[0])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 10  # the test tests something: merged files let go
    left = sum(len(os.listdir(tmp_path / f"c{i}" / ".writers")) for i in range(3))
    assert left == 0, f"{left} writer files left"


COUNTED_STEP = """
import os, signal, sys, threading
from memojar import Cache
from memojar import _filestore
root = sys.argv[1]


def step(x):
    return x


caches = [Cache(root + "/c%d" % i) for i in range(3)]
steps = [cache.cached(step) for cache in caches]
"""
# c1's counts merged, a change of it not: the process killed (``counted_after_kill``)
C1_KILLED = """
for cache in caches:
    cache.flush_stats()
assert steps[1].cache_info().entries == 1
assert steps[1](2) == 2  # not merged: killed before
os.kill(os.getpid(), signal.SIGKILL)
"""


def counted_after_kill(tmp_path: Path, script: str, look: str) -> list[str]:
    """Run ``script`` (``COUNTED_STEP``'s, which kills itself with SIGKILL), then print
    ``look`` in a fresh process of ``COUNTED_STEP``: what the next reader counts."""
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                            text=True, timeout=TIMEOUT, env=subprocess_env())
    assert killed.returncode == -9, killed.stderr
    done = subprocess.run([sys.executable, "-c", COUNTED_STEP + f"print({look})", str(tmp_path)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_cache_let_go_by_another_thread_as_it_registers_is_registered_at_its_next_change(
        tmp_path: Path) -> None:
    """A thread registering as a writer of a cache while another thread, registering at
    another, lets the earliest caches' files go (past ``_ENLISTED_MAX``) keeps its cache
    registered: a process killed after its next change of it leaves its counts exact to
    the next reader. Before, the other thread could let that file go between its making
    and the cache's mark of it (``writer``): marked registered with no file, the cache's
    later changes went unseen at a SIGKILL, and every process said too few entries, for
    good (12 caches of 100 with 8 threads in 3 s)."""
    script = COUNTED_STEP + """
_filestore._ENLISTED_MAX = 2
enlist = _filestore._enlist


def between(store):  # the other thread, just after this one's file of c1 is made
    enlist(store)
    if store.root == caches[1].directory:
        other = threading.Thread(target=steps[2], args=(0,))
        other.start()
        other.join()


_filestore._enlist = between
steps[0](0)  # c0: changes not merged (held)
assert steps[1](1) == 1
""" + C1_KILLED
    entries = counted_after_kill(tmp_path, script, "steps[1].cache_info().entries")
    assert entries == ["2"], "an entry of c1 counted by no one"


# A cache (``d``) changed, merged and dropped: its writer file kept (``_let_go``); made again
# later (``again``: its Cache and step), its counts merged, a change not: the process killed.
DROPPED = COUNTED_STEP + """
import gc
_filestore._ENLISTED_MAX = 2
folder = root + "/d"
dropped = Cache(folder)
dropped.cached(step)(0)
dropped.flush_stats()
del dropped
gc.collect()
"""
AGAIN_KILLED = """
again[0].flush_stats()
assert again[1].cache_info().entries == 2
assert again[1](2) == 2  # not merged: killed before
os.kill(os.getpid(), signal.SIGKILL)
"""
AGAIN_LOOK = "Cache(root + '/d').cached(step).cache_info().entries"


def test_a_cache_made_again_as_another_thread_lets_its_kept_file_go_registers_again(
        tmp_path: Path) -> None:
    """A cache made again (a ``Cache`` of a folder whose last one was dropped, its writer
    file kept) whose first change registers with that file while another thread lets it go
    (past ``_ENLISTED_MAX``, having found no live tally of it) is registered at its next
    change: a process killed after it leaves the counts exact to the next reader. Before,
    the cache was marked registered with no file, for good: its later changes went unseen
    at a SIGKILL, and every process said too few entries."""
    script = DROPPED + """
assert _filestore._live_tally(folder) is None and folder in _filestore._ENLISTED
again = []
let_go_one = _filestore._let_go_one


def made_again():
    cache = Cache(folder)
    again.extend([cache, cache.cached(step)])
    assert again[1](1) == 1  # registers with the file kept


def between(held, tally):  # the other thread, just after it found no tally of the folder
    if held == folder and not again:
        other = threading.Thread(target=made_again)
        other.start()
        other.join()
    let_go_one(held, tally)


_filestore._let_go_one = between
steps[0](0)
assert steps[1](1) == 1  # past _ENLISTED_MAX: the folder's file goes
assert again
""" + AGAIN_KILLED
    entries = counted_after_kill(tmp_path, script, AGAIN_LOOK)
    assert entries == ["3"], "an entry of the cache made again counted by no one"


def test_a_cache_made_again_as_another_thread_forgets_dropped_tallies_registers_again(
        tmp_path: Path) -> None:
    """A cache made again (its last ``Cache`` dropped) while another thread, making a store
    of another cache, forgets the tallies no store holds (past ``_TALLIES_MAX``) keeps its
    tally known: its writer file let go later (past ``_ENLISTED_MAX``), it registers again
    at its next change, and a process killed after it leaves the counts exact. Before, the
    other thread could forget the new tally, found in place of the dead one it had listed:
    its file then went with no tally told, the cache marked registered with no file, for
    good."""
    script = DROPPED + """
_filestore._TALLIES_MAX = 2
again, listed_once = [], []


def made_again():
    cache = Cache(folder)
    again.extend([cache, cache.cached(step)])


class Listed(dict):  # the other thread, just after it listed the tallies
    def listed(self, listed):
        if not listed_once:
            listed_once.append(True)
            other = threading.Thread(target=made_again)
            other.start()
            other.join()
        return listed

    def items(self):
        return self.listed(list(super().items()))

    def __iter__(self):
        return iter(self.listed(list(super().__iter__())))


_filestore._TALLIES = Listed(_filestore._TALLIES)
Cache(root + "/e")  # forgets the dropped tallies
assert again[1](1) == 1  # registers
steps[0](0)
steps[1](1)  # past _ENLISTED_MAX: the folder's file goes
assert folder not in _filestore._ENLISTED
""" + AGAIN_KILLED
    entries = counted_after_kill(tmp_path, script, AGAIN_LOOK)
    assert entries == ["3"], "an entry of the cache made again counted by no one"


def test_a_signal_handler_writing_another_cache_as_one_registers_leaves_it_registered(
        tmp_path: Path) -> None:
    """A signal handler whose cached call misses in another cache, run while its thread
    registers as a writer of a cache (inside ``enlist``, its file just made), and letting
    that file go (past ``_ENLISTED_MAX``: the tally's lock is its thread's), leaves the
    cache registered at its next change: a process killed after it leaves the counts exact.
    Before, the cache was marked registered with no file, for good."""
    script = COUNTED_STEP + """
_filestore._ENLISTED_MAX = 2
signal.signal(signal.SIGUSR1, lambda signum, frame: steps[2](0))
let_go_earliest = _filestore._let_go_earliest
raised = []


def between(registered):  # c1's file just made: the signal comes
    if registered == caches[1].directory and not raised:
        raised.append(signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR1)
    let_go_earliest(registered)


_filestore._let_go_earliest = between
steps[0](0)  # c0: changes not merged (held)
assert steps[1](1) == 1
assert raised
""" + C1_KILLED
    entries = counted_after_kill(tmp_path, script, "steps[1].cache_info().entries")
    assert entries == ["2"], "an entry of c1 counted by no one"


def test_a_registration_whose_let_go_file_another_thread_took_makes_its_own(
        tmp_path: Path) -> None:
    """A cache registering again (its writer file let go past ``_ENLISTED_MAX``) whose
    record of that file another thread's registration of it took first (two tallies of
    one folder at once) makes a file of its own, and the call stores. Before, the record
    found empty as it was taken raised ``IndexError`` into the user's call."""
    script = COUNTED_STEP + """
class Taken(list):  # seen with one record, taken by the other thread before this pop
    def __bool__(self):
        return True


_filestore._UNHELD[caches[0].directory] = Taken()
assert steps[0](1) == 1
print(steps[0].cache_info().entries, len(os.listdir(caches[0].directory + "/.writers")))
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]


def test_a_cache_whose_registration_wanted_descriptors_registers_at_its_next_change(
        tmp_path: Path) -> None:
    """A process out of open files (``RLIMIT_NOFILE``) at its first change of a cache, its
    writer file not made, registers at its next change: killed after a later change, its
    counts stay exact to the next reader. Before, the cache was marked registered all the
    same, never tried again: under a soft limit of 32, 8 threads changing 100 caches left
    97 unregistered, and a SIGKILL left every process saying too few entries, for good."""
    script = COUNTED_STEP.replace("range(3)", "range(8)") + """
import resource, warnings
warnings.simplefilter("ignore")  # (the results not stored for want of descriptors)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
for free, step_of in enumerate(steps):  # the want strikes at each open of a first change
    fillers = []
    try:
        while True:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    for fd in fillers[:free]:
        os.close(fd)
    step_of(-1)
    for fd in fillers[free:]:
        os.close(fd)
for cache, step_of in zip(caches, steps):
    step_of(0)
    cache.flush_stats()
    step_of.cache_info()  # a look: the counts recorded
    step_of(1)  # not merged: killed before
os.kill(os.getpid(), signal.SIGKILL)
"""
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                            text=True, timeout=TIMEOUT, env=subprocess_env())
    assert killed.returncode == -9, killed.stderr
    reader = COUNTED_STEP.replace("range(3)", "range(8)") + """
for i, step_of in enumerate(steps):
    print(step_of.cache_info().entries == len(glob.glob(root + "/c%d/*/*/*.pkl" % i)))
"""
    done = subprocess.run([sys.executable, "-c", "import glob" + reader, str(tmp_path)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"] * 8, "entries counted by no one"


LET_GO = """
import fcntl, os, sys
from memojar import Cache
from memojar import _filestore

stepped = Cache(sys.argv[1] + "/c").cached(lambda x: x)
assert stepped(1) == 1  # registered
root, = _filestore._ENLISTED
tally = _filestore._live_tally(root)
with tally.lock:
    _filestore._let_go_one(root, tally)  # (changes not merged: left unlocked)
name, _ = _filestore._UNHELD[root][-1]
"""


def _writer_files_left(tmp_path: Path, then: str) -> list[str]:
    """The files left in ``.writers`` by a process that let its writer file go (``LET_GO``)
    and then ran ``then``, at its clean exit."""
    done = subprocess.run([sys.executable, "-c", LET_GO + then, str(tmp_path)],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=subprocess_env())
    assert done.returncode == 0, done.stderr
    return os.listdir(tmp_path / "c" / ".writers")


def test_a_writer_file_let_go_found_locked_at_its_next_registration_goes_at_the_exit(
        tmp_path: Path) -> None:
    """A writer file let go unmerged (``_unhold``: past ``_ENLISTED_MAX`` caches) is
    opened again at the cache's next change; a reader locking it just then (looking
    whether its writer died) makes that change register with a new file. Before, the
    record of the one let go was dropped: it stayed in ``.writers`` after the exit (7 to
    41 files of 120 caches in 6 s of 6 threads changing them while a seventh forked
    children changing them too), each costing the next reader a listing of every folder."""
    assert _writer_files_left(tmp_path, """
reader = os.open(os.path.join(root, ".writers", name), os.O_RDONLY)
fcntl.flock(reader, fcntl.LOCK_EX)  # a reader looking whether its writer died
assert stepped(2) == 2  # registers again: that file locked, another made
os.close(reader)
""") == []


def test_a_signal_handler_registering_the_cache_as_it_registers_leaves_no_writer_file(
        tmp_path: Path) -> None:
    """A signal handler's call of a cache, run as its thread registers that cache (its
    writer file made, not yet noted), registers it with a file of its own; the thread's
    registration then keeps that one and removes its own. Before, it noted its own over
    the handler's, whose file stayed in ``.writers`` after the exit (3 to 5 files of 120
    caches in 8 s of 6 threads changing them, a timer's signal calling them too), each
    costing the next reader a listing of every folder."""
    assert _writer_files_left(tmp_path, """
real_flock = fcntl.flock
inner = []


def flock(fd, operation):
    if not inner and operation & fcntl.LOCK_NB and os.readlink(
            "/proc/self/fd/%d" % fd).startswith(os.path.join(root, ".writers")):
        inner.append(0)
        inner[0] = stepped(3)  # a signal handler's call as this one registers
    return real_flock(fd, operation)


fcntl.flock = flock
with tally.lock:
    _filestore._withdraw(root)  # (its changes merged or not: as if never registered)
tally.writer = 0
_filestore._UNHELD.clear()
os.unlink(os.path.join(root, ".writers", name))
assert stepped(2) == 2 and inner == [3]
fcntl.flock = real_flock
""") == []


UNLISTED = """
import errno, os, sys, warnings
from memojar import Cache
root = sys.argv[1] + "/cache"
listdir = os.listdir


def out_of_files(path="."):  # the moment the process is out of descriptors
    if path == root:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    return listdir(path)


def step(x):
    return x


if sys.argv[2] == "first write":
    cache = Cache(root)
    os.mkdir(root)  # another thread's first write, out of files before it could tag it
    os.listdir = out_of_files
else:  # opened on an empty folder (adopted), pruned before any write
    os.mkdir(root)
    os.listdir = out_of_files
    cache = Cache(root, max_size=10**6)
    os.listdir = listdir
    cache.prune()
stepped = cache.cached(step)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert stepped(1) == 1
os.listdir = listdir
print(len(caught), all(os.strerror(errno.EMFILE) in str(w.message) for w in caught))
assert stepped(2) == 2
"""


@pytest.mark.parametrize("when", ["first write", "opened"])
def test_a_cache_folder_unlisted_for_want_of_files_gets_nothing_before_its_tag(
        tmp_path: Path, when: str) -> None:
    """A root that cannot be listed for want of descriptors (``EMFILE``) where memojar
    looks whether it may tag it gets nothing before its tag: a write into a root another
    thread has just made (its tag not there yet: that thread out of files too) stores
    nothing and says why, and a store opened then tags the root at its first use (a
    ``prune``). Later processes use the cache. Before, the entry (or the ledger) went into
    the untagged root, and every later write refused the cache as a folder of the user's
    (``NotACacheDirectory``), for good: under a soft limit of 32, 8 threads changing 100
    new caches left one so about a run in 15."""
    done = subprocess.run([sys.executable, "-c", UNLISTED, str(tmp_path), when],
                          capture_output=True, text=True, timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1" if when == "first write" else "0", "True"], done.stdout
    reader = """
import sys
from memojar import Cache


def step(x):
    return x


stepped = Cache(sys.argv[1] + "/cache").cached(step)
print(stepped(1), stepped(2), stepped.cache_info().hits)
"""
    done = subprocess.run([sys.executable, "-c", reader, str(tmp_path)], capture_output=True,
                          text=True, timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr[-2000:]
    hits = "1" if when == "first write" else "2"
    assert done.stdout.split() == ["1", "2", hits], done.stdout

OUT_OF_FILES = """
import os, resource, sys, warnings
from memojar import Cache
root = sys.argv[1]


def step(x):
    return x


assert Cache(root).cached(step)(1) == 1
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:  # the process out of open files: every descriptor taken
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
listdir = os.listdir


def freed_for_the_listing(path="."):  # another thread closes a file, and opens one again
    os.close(held.pop())
    try:
        return listdir(path)
    finally:
        held.append(os.open(os.devnull, os.O_RDONLY))


os.listdir = freed_for_the_listing
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    stepped = Cache(root).cached(step)
    assert stepped(2) == 2
print(*(str(w.message) for w in caught), sep="\\n")
"""


def test_a_cache_whose_tag_cannot_be_opened_for_want_of_files_is_not_refused(
        tmp_path: Path) -> None:
    """A process out of open files (``EMFILE``), its threads closing and opening files, that
    opens a cache of memojar's and writes to it: the cache is not refused as a folder of
    the user's; the result is returned, and the warning says the process was out of open
    files. Before, the tag could not be opened, the listing that followed could (a
    descriptor freed between), and ``Cache()`` raised ``NotACacheDirectory``: "an existing
    folder that memojar did not create"."""
    root = str(tmp_path / "cache")
    done = subprocess.run([sys.executable, "-c", OUT_OF_FILES, root], capture_output=True,
                          text=True, timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "did not create" not in done.stdout
    assert os.strerror(24) in done.stdout  # EMFILE
    from memojar._filestore import is_cache_dir

    assert is_cache_dir(root)


def test_threads_changing_many_caches_in_turn_store_every_result(tmp_path: Path) -> None:
    """Eight threads changing 140 caches in turn (past ``_ENLISTED_MAX``: writer files let
    go at most misses) store every result, and no call fails. Before, past 64 caches let
    go (``_UNHELD_MAX`` then), two threads trimming the record of the files let go at once
    raised in the user's call ("dictionary changed size during iteration", a KeyError):
    2 or 3 calls in 4,800, the result lost."""
    script = f"""
import random, sys, threading
from memojar import Cache
sys.setswitchinterval(1e-6)  # (threads switch often: the race every run)
root = {str(tmp_path)!r}
steps = [Cache(root + "/c%d" % i).cached(lambda x: x) for i in range(140)]
errors = []


def work(seed):
    chosen = random.Random(seed)
    try:
        for j in range(600):
            assert steps[chosen.randrange(140)]((seed, j)) == (seed, j)
    except Exception as exc:
        errors.append(repr(exc))


threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(errors)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"], done.stdout


FORKING = """
import multiprocessing, os, sys
import multiprocessing.util as util
from memojar import Cache
from memojar._cache import _Flusher

cache = Cache(os.environ["CACHE"])


@cache.cached
def f(x):
    return x


def hit():
    f(1)
    print(sum(1 for key in util._afterfork_registry
              if key[2] is _Flusher._merge_at_worker_exit), flush=True)


if __name__ == "__main__":
    f(1)
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    registered = sum(1 for key in util._afterfork_registry
                     if key[2] is _Flusher._merge_at_worker_exit)
    child = multiprocessing.get_context("fork").Process(target=hit)
    child.start()
    child.join()
    print(registered, child.exitcode, flush=True)
"""


def test_a_process_forking_often_keeps_one_merge_at_its_childrens_exit(tmp_path: Path) -> None:
    """Old: every fork registered the statistics merge with multiprocessing's after-fork
    hooks once more: a process forking 200 times held 200 registrations, and its next
    multiprocessing child ran them all (each registering a merge at its exit): a leak, and
    a cost per child growing with every fork (0.46 s a Process after 10,000 forks). The
    child's hit is still merged at its exit."""
    script = tmp_path / "forking.py"
    script.write_text(FORKING)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=subprocess_env(CACHE=str(tmp_path / "c")), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "1", "0"]
    from memojar import Cache

    hits = Cache(tmp_path / "c").store.read_stats()["functions"]["__main__.f"][0]
    assert hits == 1  # the child's, merged at its exit


DRIFTED = """
import os, sys
import memojar
cache = memojar.Cache(os.environ["CACHE"], max_size=None if sys.argv[1] == "unsized" else MB)

@cache.cached
def f(i):
    return bytes([i % 256]) * 10_000

if sys.argv[1] == "sized":
    f(1), f(2)
elif sys.argv[1] == "unsized":  # keeps no ledger: the stored total falls behind the files
    for i in range(10, 20):
        f(i)
else:
    assert not f.cache_delete(99)  # the process's first ledger holding: nothing removed
    f(3)
""".replace("MB", str(MB))


def test_a_process_whose_first_ledger_use_removes_nothing_still_recounts(
        tmp_path: Path) -> None:
    """A process trusts the stored total only after recounting it once (a store without
    max_size writes without counting). A ``cache_delete`` of a key with no entry, its first
    holding of the ledger, counted nothing but marked the total recounted: its writes then
    added to the total left behind, 30 kB where 132 kB were on disk, and the cache could grow
    past max_size by the difference."""
    root = tmp_path / "cache"
    script = tmp_path / "drifted.py"
    script.write_text(DRIFTED)
    env = {**subprocess_env(), "CACHE": str(root)}
    for step in ("sized", "unsized", "deleter"):
        proc = subprocess.run([sys.executable, str(script), step], env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
    assert int((root / ".size").read_text()) == on_disk(root)


def test_a_failed_max_size_write_leaves_no_temporary_file_when_the_ledger_is_held(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write with max_size that fails after its reservation (a disk error writing the
    sparse reservation; an interrupt) gives the reservation back under the ledger's lock.
    When that lock cannot be had (held past ``LOCK_WAIT`` by a stopped process; a second
    Ctrl-C while waiting), the temporary file still goes: before, it stayed, its bytes
    counted as a writer's in flight for the life of the process."""
    from memojar import _filestore

    root = tmp_path / "cache"
    cache = memojar.Cache(root, max_size=MB)

    @cache.cached
    def f(i: int) -> bytes:
        return bytes([i]) * 10_000

    f(1)  # the ledger's lock file made
    monkeypatch.setattr(_filestore, "LOCK_WAIT", 0.2)

    def failing_write(fd: int, chunks: Any) -> None:
        if sum(map(len, chunks)) < 10_000:  # the ledger's own file, under its lock
            write_all(fd, chunks)
            return
        held.__enter__()  # another process takes the ledger, and keeps it
        raise OSError(5, "Input/output error")  # the entry's write fails

    write_all = _filestore._write_all

    held = ledger_lock(root)
    monkeypatch.setattr(_filestore, "_write_all", failing_write)
    try:
        with pytest.warns(memojar.MemojarWarning):
            assert f(2) == bytes([2]) * 10_000
    finally:
        held.__exit__(None, None, None)
    assert temporary_files(root) == []


DROPPED_OUT_OF_FILES = """
import errno, gc, os, sys
from memojar import Cache, _cache
root = sys.argv[1]
real_open = os.open


def out_of_files(path, *args, **kwargs):  # the moment the process is out of descriptors
    if str(path).endswith("CACHEDIR.TAG"):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    return real_open(path, *args, **kwargs)


def step(x):
    return x


stepped = Cache(root).cached(step)
stepped(1), stepped(1)  # a miss and a hit
del stepped
gc.collect()  # the cache dropped: its counts wait for a merge
os.open = out_of_files
_cache._FLUSHER.flush()  # its folder's tag cannot be opened now
os.open = real_open
_cache._FLUSHER.flush()
"""


def test_a_dropped_caches_counts_wait_while_its_tag_cannot_be_opened(tmp_path: Path) -> None:
    """A dropped cache's hits and misses, merged while the process is out of descriptors
    (``EMFILE`` at its folder's tag), are merged at the next merge. Before, the folder was
    taken for no cache, and the counts were dropped."""
    done = subprocess.run([sys.executable, "-c", DROPPED_OUT_OF_FILES, str(tmp_path)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=subprocess_env())
    assert (done.returncode, done.stderr) == (0, "")
    (hits, misses, _), = memojar.Cache(tmp_path).saved_stats().values()
    assert (hits, misses) == (1, 1)


def test_an_entry_stored_after_a_writer_looked_for_one_is_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer looks at the key's name (nothing there), and another stores an entry there
    before the writer's file takes the name: the writer's replaces it, subtracted from the
    ledger as any entry replaced. Before, the rename replaced it as if nothing were there,
    and the ledger counted both: the total said more than the files, for good."""
    from memojar import _filestore

    root = tmp_path / "cache"
    writer, other = memojar.Cache(root, max_size=MB), memojar.Cache(root, max_size=MB)

    def f(i: int) -> bytes:
        return b"w" * 10_000

    size_at, stored = _filestore._size_at, []

    def stored_meanwhile(name: str, dir_fd: int) -> int:
        size = size_at(name, dir_fd)
        if not stored:
            stored.append(name)
            other.cached(f).cache_set(b"o" * 20_000, 1)
        return size

    monkeypatch.setattr(_filestore, "_size_at", stored_meanwhile)
    assert writer.cached(f)(1) == b"w" * 10_000
    monkeypatch.undo()
    assert stored and other.cached(f)(1) == b"w" * 10_000
    assert int((root / ".size").read_text()) == on_disk(root)


def test_an_interrupt_just_after_the_entry_is_linked_keeps_it_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C just after the new file is linked at the entry's name, before its temporary
    name goes: the temporary name is removed, and the ledger keeps the entry's room (the
    file is the entry's; giving its reservation back made the total say less than the
    files)."""
    root = tmp_path / "cache"
    cache = memojar.Cache(root, max_size=MB)
    link = os.link

    def interrupted(*args: Any, **kwargs: Any) -> None:
        link(*args, **kwargs)
        if str(args[1]).endswith(".pkl"):
            raise KeyboardInterrupt

    @cache.cached
    def f(i: int) -> bytes:
        return b"x" * 10_000

    monkeypatch.setattr(os, "link", interrupted)
    with pytest.raises(KeyboardInterrupt):
        f(1)
    monkeypatch.undo()
    assert not list(root.rglob("*.tmp"))
    assert int((root / ".size").read_text()) == on_disk(root) > 10_000
    assert f(1) == b"x" * 10_000


def test_a_file_system_without_hard_links_stores_under_max_size_by_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``link`` fails as on FAT (EPERM), the entry takes its name by rename."""
    root = tmp_path / "cache"
    cache = memojar.Cache(root, max_size=MB)

    def no_links(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted", args[1])

    @cache.cached
    def f(i: int) -> bytes:
        return bytes([i]) * 10_000

    monkeypatch.setattr(os, "link", no_links)
    assert [f(1), f(2)] == [b"\x01" * 10_000, b"\x02" * 10_000]
    monkeypatch.undo()
    assert not list(root.rglob("*.tmp"))
    assert len(list(root.rglob("*.pkl"))) == 2
    assert int((root / ".size").read_text()) == on_disk(root)


def test_a_recount_while_an_entry_is_placed_counts_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write with ``max_size`` links its file at the entry's name, then removes the
    temporary name: a recount between the two (another process's ``prune``, eviction or
    first ledger update) sees one file under two names, and counts it once (before: as the
    entry and as a writer's reservation, the total over by the entry until the next)."""
    root = tmp_path / "cache"
    writer, other = memojar.Cache(root, max_size=MB), memojar.Cache(root, max_size=MB)
    link = os.link

    def recounted_meanwhile(*args: Any, **kwargs: Any) -> None:
        link(*args, **kwargs)
        if str(args[1]).endswith(".pkl"):
            other.prune()

    @writer.cached
    def f(i: int) -> bytes:
        return b"x" * 10_000

    monkeypatch.setattr(os, "link", recounted_meanwhile)
    assert f(1) == b"x" * 10_000
    monkeypatch.undo()
    assert int((root / ".size").read_text()) == on_disk(root) > 10_000
