"""A cache shared between users by hand, and odd things at the names memojar keeps.

Each user's memojar makes its folders private (0700), also in a cache opened to all with
``chmod -R a+rwX``: the other users' walks meet folders they cannot read. Folders,
FIFOs, sockets and links put at the size ledger's lock, the generation stamp and the sweep
note; a folder of the user's named like a function's. Cross-user tests need root (CI runs
as root); they skip elsewhere, saying so.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import NOBODY, as_another_user

OTHER = NOBODY - 1  # a second user (no name: "user 65533")


def _square(x: int) -> int:
    return x * x


def _open_to_all(folder: Path) -> None:
    """``chmod -R a+rwX``: what a user does to share a cache by hand."""
    for dirpath, _dirs, files in os.walk(folder):
        os.chmod(dirpath, 0o777)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o666)


def _socket_at(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, bound through its folder's descriptor: a test's
    folder is longer than a socket's address may be. (Before, it was bound in /tmp and
    renamed there, which fails where the test's folder is on another file system.)"""
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        server = socket.socket(socket.AF_UNIX)
        server.bind(f"/proc/self/fd/{folder}/{path.name}")
    finally:
        os.close(folder)
    return server


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _cli(cache_dir: Path, *argv: str) -> str:
    from memojar._cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = main(["--dir", str(cache_dir), *argv])
    return f"{status} {out.getvalue()}"


def test_a_cache_shared_by_hand_counts_what_the_user_can_read(shared_folder: Path) -> None:
    """One user's cache opened to all by hand; another user caches there (its new shards
    are 0700). The first user's ``cache_info()``, ``stats()``, ``entries()``, ``prune()``,
    ``memojar ls``, ``info`` and ``prune`` count what it can read and say, in one warning,
    whose folders it could not; nothing of the other user's is removed. Before, each raised
    ``PermissionError`` naming the other user's folder."""
    import memojar

    cache_dir = shared_folder / "c"

    def fill(start: int) -> str:
        f = memojar.Cache(cache_dir).cached(_square)
        return str(sum(f(i) for i in range(start, start + 30)))

    assert as_another_user(lambda: fill(0), NOBODY)
    _open_to_all(cache_dir)
    assert as_another_user(lambda: fill(100), OTHER)
    theirs = [p for p in cache_dir.rglob("*") if p.is_dir() and p.stat().st_uid == OTHER]
    assert theirs and all(p.stat().st_mode & 0o777 == 0o700 for p in theirs)
    listed = [p for p in cache_dir.rglob("*.pkl") if p.parent.stat().st_uid == NOBODY]
    readable = len(listed)  # the entries in the folders the user can read
    headers = sum(p.stat().st_uid == NOBODY for p in listed)  # and the files it can read
    before = {p: _files(p) for p in theirs}

    def users_view() -> str:
        cache = memojar.Cache(cache_dir)
        f = cache.cached(_square)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            said = [f.cache_info().entries, cache.stats().entries,
                    len(list(cache.entries())), cache.prune()]
        messages = {str(w.message) for w in caught}
        return f"{said} {len(messages)} {messages.pop()}"

    said = as_another_user(users_view, NOBODY)
    counts, _, rest = said.partition("] ")
    assert counts == f"[{readable}, {readable}, {headers}, 0", said
    assert rest.startswith("1 ") and "folders of user 65533's in " in rest, said
    assert "cannot be read by nobody" in rest and "the entries there are not counted" in rest
    for argv in (["ls"], ["info"], ["prune"]):
        out = as_another_user(lambda argv=argv: _cli(cache_dir, *argv), NOBODY)
        assert out.startswith("0 memojar: warning: ") and "user 65533's" in out, out
    assert f"1 function, {headers} entries" in as_another_user(
        lambda: _cli(cache_dir, "ls"), NOBODY)
    assert {p: _files(p) for p in theirs} == before  # still theirs, and read by them
    assert as_another_user(lambda: str(memojar.Cache(cache_dir).cached(_square)
                                       .cache_info().entries), OTHER) != "0"


def test_a_folder_the_user_can_list_but_not_enter_is_named_with_its_owner(
        shared_folder: Path) -> None:
    """A folder root left in a user's cache (an older memojar run with ``sudo``) that the
    user may list but not enter (0744): ``stats()`` and the command line name it, its owner
    and what to do. Before, a bare ``PermissionError`` ("Permission denied") naming the
    folder inside it."""
    import memojar

    cache_dir = shared_folder / "c"
    assert as_another_user(lambda: str(memojar.Cache(cache_dir).cached(_square)(3))) == "9"
    theirs = cache_dir / "mod.g"
    (theirs / "ab").mkdir(parents=True)
    theirs.chmod(0o744)

    def stats() -> str:
        try:
            memojar.Cache(cache_dir).stats()
        except PermissionError as exc:
            return f"{exc.strerror}: {exc.filename}"
        return "no error"

    said = as_another_user(stats)
    assert said == ("permission denied (a folder of root's, which this user can list but not "
                    f"enter: remove it as root): {theirs}"), said
    assert as_another_user(lambda: _cli(cache_dir, "ls")) == f"1 memojar: {said}\n"


@pytest.mark.parametrize("mode", [0o700, 0o744])
def test_a_cache_the_user_cannot_read_is_named_as_its_owners(
        shared_folder: Path, mode: int) -> None:
    """A cache of root's (made by an older memojar run with ``sudo``) that the user cannot
    read (0700) or can list but not enter (0744): ``cache_info()`` says whose cache it is
    and what to do, and ``Cache(...)`` of the one it can list refuses it as root's cache.
    Before, a bare ``PermissionError`` from the listing, and an ``UnboundLocalError`` from
    ``Cache(...)``."""
    import memojar

    cache_dir = shared_folder / "c"
    assert memojar.Cache(cache_dir).cached(_square)(3) == 9
    cache_dir.chmod(mode)

    def info() -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the write's warning: this is about listing
            try:
                return str(memojar.Cache(cache_dir).cached(_square).cache_info())
            except (PermissionError, ValueError) as exc:
                return str(exc)

    said = as_another_user(info)
    assert "is root's memojar cache" in said and "Use a folder of your own" in said, said


def test_an_empty_folder_of_the_users_named_like_a_functions_is_left(tmp_path: Path) -> None:
    """``my.proj/ab/`` (empty) and ``my.proj2/ab/`` beside a file in a cache: ``prune`` and
    ``clear`` leave them. Before, ``prune`` removed both ``ab`` and then ``my.proj`` itself.
    memojar's own folders, emptied, still go."""
    import memojar

    cache = memojar.Cache(tmp_path / "c")
    f = cache.cached(_square)
    f(1)
    (tmp_path / "c" / "my.proj" / "ab").mkdir(parents=True)
    (tmp_path / "c" / "my.proj2" / "ab").mkdir(parents=True)
    (tmp_path / "c" / "my.proj2" / "notes").write_text("mine\n")
    assert cache.clear() == 1
    assert cache.prune() == 0
    assert _cli(tmp_path / "c", "clear", "--yes").startswith("0 ")
    assert (tmp_path / "c" / "my.proj" / "ab").is_dir()
    assert (tmp_path / "c" / "my.proj2" / "ab").is_dir()
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if p.is_dir()) == [
        ".writers", "my.proj", "my.proj2"]  # (memojar's: the processes writing, this one)


@pytest.mark.parametrize("kind", ["folder", "socket"])
def test_a_folder_or_socket_at_the_ledgers_lock_does_not_stop_max_size(
        tmp_path: Path, kind: str) -> None:
    """A folder of the user's (with a file in it) or a socket at ``.size.lock``: writes with
    ``max_size`` are stored and evicted down to it, ``prune`` works, the folder stays as it
    was. Before, every such write was returned but not stored ("Is a directory", naming the
    cache only; a socket: "No such device or address") and ``prune`` raised."""
    import memojar

    root = tmp_path / "c"
    assert memojar.Cache(root).cached(abs)(-1) == 1
    lock = root / ".size.lock"
    if lock.exists():
        lock.unlink()
    server = None
    if kind == "folder":
        lock.mkdir()
        (lock / "keep").write_text("mine\n")
    else:
        server = _socket_at(lock)
    try:
        cache = memojar.Cache(root, max_size=3000)
        f = cache.cached(lambda i: bytes(500) + bytes([i]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert [len(f(i)) for i in range(12)] == [501] * 12
            assert cache.prune() == 0
        assert 0 < f.cache_info().entries < 12
        assert cache.stats().bytes <= 3000
    finally:
        if server is not None:
            server.close()
    if kind == "folder":
        assert (lock / "keep").read_text() == "mine\n"


@pytest.mark.parametrize("kind", ["fifo", "socket", "link"])
def test_a_thing_planted_at_the_generation_stamp_is_replaced_by_a_stamp(
        tmp_path: Path, kind: str) -> None:
    """A FIFO, socket or link at a function's ``.gen``: ``memory=`` works (a stamp is made
    in its place; a link's target is untouched), and another process's ``clear`` is seen.
    Before, ``memory=`` was not used, with a warning blaming the file system (FAT)."""
    import memojar

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    cache = memojar.Cache(tmp_path / "c")
    calls = []

    def work(x: int) -> int:
        calls.append(x)
        return x + 1

    f = cache.cached(work)
    f(1)
    gen = Path(cache.store.path(f.__memojar__.name, "")).parent / ".gen"
    if gen.exists():
        gen.unlink()
    server = None
    if kind == "fifo":
        os.mkfifo(gen)
    elif kind == "socket":
        server = _socket_at(gen)
    else:
        gen.symlink_to(victim)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            g = memojar.Cache(tmp_path / "c").cached(memory=4)(work)
            assert g(1) == 2 and g(1) == 2
            assert gen.is_file() and not gen.is_symlink()
            memojar.Cache(tmp_path / "c").clear()
            assert g(1) == 2
        assert calls == [1, 1]  # computed again after the clear: the stamp told it
    finally:
        if server is not None:
            server.close()
    assert victim.read_text() == "precious\n"


def test_a_folder_at_the_generation_stamp_is_named_in_the_warning(tmp_path: Path) -> None:
    """A folder at ``.gen``: left as it is; the warning that ``memory=`` is not used names
    it and says what to do (before, it blamed the file system: "such as FAT")."""
    import memojar

    cache = memojar.Cache(tmp_path / "c")
    f = cache.cached(_square)
    f(1)
    gen = Path(cache.store.path(f.__memojar__.name, "")).parent / ".gen"
    if gen.exists():
        gen.unlink()
    gen.mkdir()
    with pytest.warns(memojar.MemojarWarning, match=r"\.gen is not a stamp memojar made .*"
                      "move it away to use memory=") as caught:
        assert memojar.Cache(tmp_path / "c").cached(memory=4)(_square)(2) == 4
    assert "FAT" not in str(caught[0].message)
    assert gen.is_dir()


def test_a_folder_at_the_sweep_note_does_not_stop_prune(tmp_path: Path) -> None:
    """A folder at a function's ``.swept``, its entries cleared: ``prune`` leaves it and
    finishes. Before, it raised ``IsADirectoryError``."""
    import memojar

    cache = memojar.Cache(tmp_path / "c")
    f = cache.cached(_square)
    f(1)
    note = Path(cache.store.path(f.__memojar__.name, "")).parent / ".swept"
    if note.exists():
        note.unlink()
    note.mkdir()
    assert cache.clear() == 1
    assert cache.prune() == 0
    assert note.is_dir()


def _cube(x: int) -> int:
    return x * x * x


def test_users_of_a_cache_shared_by_hand_keep_each_others_statistics(
        shared_folder: Path) -> None:
    """Two users take turns in a cache opened to all: each one's hits, misses and time
    saved (``memojar ls``) stay after the other's merge, and the ledger is one they both
    read. Before, the statistics and the ledger were 0600: each user's merge could not read
    the other's file and replaced it with its own counts alone."""
    import memojar

    cache_dir = shared_folder / "c"

    def run(fn: Callable[[int], int]) -> str:
        cache = memojar.Cache(cache_dir, max_size=1_000_000)
        f = cache.cached(fn)
        for _ in range(2):
            for i in range(5):
                f(i)
        cache.flush_stats()
        return "ok"

    assert as_another_user(lambda: run(_square), NOBODY) == "ok"
    _open_to_all(cache_dir)
    assert as_another_user(lambda: run(_cube), OTHER) == "ok"
    assert as_another_user(lambda: run(_square), NOBODY) == "ok"
    assert as_another_user(lambda: run(_cube), OTHER) == "ok"

    def saved() -> str:
        kept = memojar.Cache(cache_dir).saved_stats()
        return str(sorted((name.rsplit(".", 1)[1], hits, misses)
                          for name, (hits, misses, _) in kept.items()))

    assert as_another_user(saved, NOBODY) == "[('_cube', 15, 5), ('_square', 15, 5)]"
    assert (cache_dir / ".stats").stat().st_mode & 0o777 == 0o666
    assert (cache_dir / ".size").stat().st_mode & 0o777 == 0o666


def _killed_writer_jobs(cache_dir: Path, umasks: tuple[int, int] | None = None,
                       ) -> tuple[Callable[[], str], Callable[[], str], Callable[[], str]]:
    """Jobs for ``as_another_user`` (under ``umasks``, if given): the first writes 64
    entries and keeps their count, then leaves as at an exit; the second forks a writer of
    3 more (in shards already there: a user's own are its alone), killed before merging;
    the third says the count read (entries and bytes)."""
    import signal

    import memojar
    from memojar import _filestore

    def first() -> str:
        if umasks is not None:
            os.umask(umasks[0])
        cache = memojar.Cache(cache_dir)
        f = cache.cached(_square)
        for x in range(64):
            f(x)
        count = f.cache_info().entries  # a listing: the count kept from here
        cache.flush_stats()
        _filestore.withdraw()  # as at an exit (the job leaves by ``os._exit``)
        return str(count)

    def killed() -> str:
        pid = os.fork()
        if pid == 0:
            if umasks is not None:
                os.umask(umasks[1])
            f = memojar.Cache(cache_dir).cached(_square)
            shards = set(os.listdir(next(cache_dir.glob("*_square*"))))
            new = [x for x in range(64, 1000) if f.cache_key(x)[:2] in shards][:3]
            for x in new:
                f(x)
            os.kill(os.getpid(), signal.SIGKILL)
        return str(os.waitpid(pid, 0)[1] == signal.SIGKILL)

    def counted() -> str:
        info = memojar.Cache(cache_dir).cached(_square).cache_info()
        return f"{info.entries} {info.bytes}"

    return first, killed, counted


def test_entries_another_user_wrote_before_being_killed_are_counted(
        shared_folder: Path) -> None:
    """In a cache opened to all, a process of another user killed (SIGKILL) before it
    merged its entries' counts: this user's ``cache_info()`` finds its writer file's
    process gone (the file is 0600, as every file memojar makes: judged by its pid and
    start), lists the folder again and removes the file. Before, the count stayed 64 of
    67."""
    cache_dir = shared_folder / "c"
    first, killed, counted = _killed_writer_jobs(cache_dir)
    assert as_another_user(first, NOBODY) == "64"
    assert os.listdir(cache_dir / ".writers") == []
    _open_to_all(cache_dir)
    assert as_another_user(killed, OTHER) == "True"
    assert [p.stat().st_uid for p in (cache_dir / ".writers").iterdir()] == [OTHER]
    files = list(cache_dir.glob("*_square*/*/*.pkl"))
    assert len(files) == 67
    assert as_another_user(counted, NOBODY) == f"67 {sum(p.stat().st_size for p in files)}"
    assert os.listdir(cache_dir / ".writers") == []


def test_entries_another_user_of_a_group_wrote_before_being_killed_are_counted(
        shared_folder: Path) -> None:
    """A cache its owner shared with a group by hand (``chgrp -R``, ``chmod -R g+rwXs``)
    before any process registered in it (an older memojar's cache): the first user to
    write makes ``.writers``, with the root's bits for the group (2770 here), whatever its
    umask; another user of the group registers there, and, killed before merging, is
    found dead by the first. Before, the folder was 0700: the second user could not
    register, the first could not list it, and its ``cache_info()`` said 64 entries of
    67, silently, for good."""
    cache_dir = shared_folder / "c"
    first, killed, counted = _killed_writer_jobs(cache_dir, umasks=(0o022, 0o077))
    assert as_another_user(first, NOBODY, [TEAM]) == "64"
    (cache_dir / ".writers").rmdir()
    for p in [cache_dir, *cache_dir.rglob("*")]:
        os.chown(p, -1, TEAM)
        p.chmod(0o2770 if p.is_dir() else 0o660)
    assert as_another_user(killed, OTHER, [TEAM]) == "True"
    writers = (cache_dir / ".writers").stat()
    assert (writers.st_uid, writers.st_gid, oct(writers.st_mode & 0o7777)) == (
        OTHER, TEAM, oct(0o2770))
    assert [p.stat().st_uid for p in (cache_dir / ".writers").iterdir()] == [OTHER]
    files = list(cache_dir.glob("*_square*/*/*.pkl"))
    assert len(files) == 67
    assert as_another_user(counted, NOBODY, [TEAM]) == (
        f"67 {sum(p.stat().st_size for p in files)}")
    assert os.listdir(cache_dir / ".writers") == []


@pytest.mark.parametrize("closed_by", ["another user", "this user"])
@pytest.mark.parametrize("job", ["writes", "reads the counts"])
def test_a_writers_folder_closed_to_a_user_of_the_cache_is_said(
        shared_folder: Path, closed_by: str, job: str) -> None:
    """A cache shared with a group whose ``.writers`` (where each process writing in it
    registers, to be found dead if killed before merging its counts) is closed to a user of
    it: another user's 0700 (made so by hand, by an older memojar, or before the cache was
    shared with ``chmod g+rwx`` of the folder alone), or the user's own left unreadable.
    That user's process can neither register nor see others' deaths: killed before
    merging, its 3 entries were counted by no one, and ``cache_info()`` said 64 entries of
    67 in every process, silently, until a prune; one that only reads the counts does not
    see a writer die. It is said now, once, naming the folder and the chmod that opens
    it."""
    import memojar

    cache_dir = shared_folder / "c"
    first, _, counted = _killed_writer_jobs(cache_dir, umasks=(0o022, 0o077))
    assert as_another_user(first, NOBODY, [TEAM]) == "64"
    for p in [cache_dir, *cache_dir.rglob("*")]:
        os.chown(p, -1, TEAM)
        p.chmod(0o2770 if p.is_dir() else 0o660)
    writers = cache_dir / ".writers"
    if closed_by == "another user":
        writers.chmod(0o700)  # NOBODY's
    else:
        os.chown(writers, OTHER, TEAM)
        writers.chmod(0o2070)  # OTHER's, closed to OTHER itself

    def written_unmerged() -> str:
        """3 entries written (in shards already there), their counts left unmerged (the
        job leaves by ``os._exit``, as a process killed), and the warnings given."""
        os.umask(0o077)
        f = memojar.Cache(cache_dir).cached(_square)
        shards = set(os.listdir(next(cache_dir.glob("*_square*"))))
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            if job == "writes":
                for x in [x for x in range(64, 1000) if f.cache_key(x)[:2] in shards][:3]:
                    f(x)
            f.cache_info()
            f.cache_info()
        return "|".join(f"{w.category.__name__}: {w.message}" for w in seen)

    warned = as_another_user(written_unmerged, OTHER, [TEAM]).split("|")
    assert len(warned) == 1, warned
    assert warned[0].startswith("MemojarWarning: ") and str(writers) in warned[0]
    assert ("chmod 2770" if closed_by == "another user" else "chmod u+rwx") in warned[0]
    if job == "writes":
        assert len(list(cache_dir.glob("*_square*/*/*.pkl"))) == 67
        assert as_another_user(counted, NOBODY, [TEAM]).split()[0] == "64"  # what was said


def test_readers_of_a_cache_opened_read_only_see_its_statistics(shared_folder: Path) -> None:
    """A cache its owner opened to be read (``chmod -R go=rX``): the owner's later merges
    keep the statistics readable to the readers, whose ``memojar info`` counts the hits.
    Before, each merge made the file 0600 again: "hits 0 (misses 0, all processes)"."""
    import memojar
    from memojar._cli import main

    cache_dir = shared_folder / "c"

    def run() -> str:
        cache = memojar.Cache(cache_dir)
        f = cache.cached(_square)
        for _ in range(3):
            f(4)
        cache.flush_stats()
        return "ok"

    assert as_another_user(run, NOBODY) == "ok"
    for p in [cache_dir, *cache_dir.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    assert as_another_user(run, NOBODY) == "ok"  # a merge: the file replaced

    def info() -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["--dir", str(cache_dir), "info"]) == 0
        return out.getvalue()

    assert "hits          5 (misses 1, all processes)" in as_another_user(info, OTHER)
    assert (cache_dir / ".stats").stat().st_mode & 0o777 == 0o644

@pytest.mark.parametrize("why", ["no count kept", "a dead writer's file it cannot remove"])
def test_a_reader_that_cannot_write_the_cache_lists_it_once_for_its_counts(
        shared_folder: Path, why: str) -> None:
    """Another user's cache opened to be read (``chmod -R go=rX``), whose counts this
    reader must list (none kept, or a writer of it died before merging, whose file the
    reader may not remove): it lists the folder once and keeps the count it found while
    no merge or newly dead writer says otherwise. Before, it could record neither, and
    every ``cache_info()`` listed the whole folder again (100 calls: 4.6 s at 12,000
    entries, 46 ms each; 9.2 s on a read-only mount)."""
    import signal

    import memojar
    from memojar import _filestore

    cache_dir = shared_folder / "c"
    f = memojar.Cache(cache_dir).cached(_square)
    for x in range(200):
        f(x)
    if why == "no count kept":
        memojar.Cache(cache_dir).flush_stats()
    else:
        assert f.cache_info().entries == 200  # a count kept
        pid = os.fork()
        if pid == 0:  # killed before merging (its file stays: root's, 0600)
            f(200), f(201)
            os.kill(os.getpid(), signal.SIGKILL)
        assert os.waitpid(pid, 0)[1] == signal.SIGKILL
    for p in [cache_dir, *cache_dir.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    entries = len(list(cache_dir.glob("*_square*/*/*.pkl")))

    def counted() -> str:
        scans = []
        scan = _filestore.FileStore.scan

        def spied(self: Any, *args: Any, **kwargs: Any) -> Any:
            scans.append(args)
            return scan(self, *args, **kwargs)

        _filestore.FileStore.scan = spied  # type: ignore[method-assign]
        g = memojar.Cache(cache_dir).cached(_square)
        counts = {g.cache_info().entries for _ in range(20)}
        return f"{counts} {len(scans)}"

    assert as_another_user(counted, NOBODY) == f"{{{entries}}} 1"


def test_a_private_caches_statistics_and_ledger_stay_private(tmp_path: Path) -> None:
    import memojar

    cache = memojar.Cache(tmp_path / "c", max_size=1_000_000)
    cache.cached(_square)(2)
    cache.flush_stats()
    assert (tmp_path / "c" / ".stats").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "c" / ".size").stat().st_mode & 0o777 == 0o600


PRUNE_UNTAGGED = """
import os, resource, warnings
from memojar import Cache
resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))  # < the tag's size
cache = Cache(os.environ["CACHE"], max_size=1_000_000)
f = cache.cached(lambda x: x + 1)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # (the value's: "not stored, File too large")
    print(f(1), cache.prune(), cache.clear())
"""


def test_prune_of_a_cache_whose_tag_a_file_size_limit_refused_answers(tmp_path: Path) -> None:
    """A first call made the cache's folder, and its ``CACHEDIR.TAG`` could not be written
    (a file size limit: EFBIG; a full disk: ENOSPC). Before, ``prune`` with ``max_size``
    wrote the tag to take the ledger's lock, and raised ``OSError: File too large``,
    naming no file."""
    import subprocess
    import sys

    from faultkit import subprocess_env

    proc = subprocess.run([sys.executable, "-c", PRUNE_UNTAGGED], capture_output=True,
                          text=True, env=subprocess_env(CACHE=str(tmp_path / "c")), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "0", "0"]
    assert not (tmp_path / "c" / "CACHEDIR.TAG").exists()



PRUNE_UNDER_NO_FILE_SIZE = """
import os, resource, warnings
from memojar import Cache
cache = Cache(os.environ["CACHE"], max_size=1_000_000)
f = cache.cached(lambda x: x + 1)
print(f(1), f(2), f.cache_delete(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))  # ulimit -f 0
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    print(cache.prune(), len(list(cache.entries())), cache.clear())
"""


def test_prune_with_max_size_under_a_file_size_limit_of_nothing_answers(tmp_path: Path) -> None:
    """A process that may write no file (``ulimit -f 0``, RLIMIT_FSIZE 0: a sandbox) prunes a
    cache with ``max_size``: the ledger's new total cannot be written, as on a full disk
    (EFBIG, not ENOSPC). Before, ``prune`` raised ``OSError: File too large``, naming no
    file; now it answers, and the total, no longer right, is removed (counted again at the
    next use), as on a full disk."""
    import subprocess
    import sys

    from faultkit import entry_files, subprocess_env

    root = tmp_path / "c"
    proc = subprocess.run([sys.executable, "-c", PRUNE_UNDER_NO_FILE_SIZE], capture_output=True,
                          text=True, env=subprocess_env(CACHE=str(root)), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "3", "True", "0", "1", "1"]
    assert entry_files(root) == []
    ledger = root / ".size"
    assert not ledger.exists() or int(ledger.read_text()) == 0


PRUNE_FULL = """
import os
from memojar import Cache
cache = Cache(os.environ["CACHE"], max_size=100_000)
print(cache.prune(), len(list(cache.entries())))
"""


def test_prune_on_a_disk_too_full_for_the_ledgers_lock_still_evicts(tmp_path: Path) -> None:
    """A cache filled without ``max_size`` (no ledger lock file yet) on a small tmpfs whose
    bytes and inodes are all taken, pruned with ``max_size`` to make room: the lock file
    cannot be made, so eviction goes by a listing. Before, ``prune`` raised ``OSError: No
    space left on device`` before evicting anything."""
    import subprocess
    import sys

    from faultkit import subprocess_env

    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,nr_inodes=200", "tmpfs",
                           str(mount)], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}): needs root")
    try:
        import memojar

        root = mount / "cache"
        f = memojar.Cache(root).cached(lambda i: bytes([i]) * 20_000)
        for i in range(20):
            f(i)
        assert not (root / ".size.lock").exists()
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        with open(mount / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
            fh.write(bytes(free))
        with contextlib.suppress(OSError):
            for n in range(1000):
                (mount / f"i{n}").touch()
        proc = subprocess.run([sys.executable, "-c", PRUNE_FULL], capture_output=True,
                              text=True, env=subprocess_env(CACHE=str(root)), timeout=60)
        assert proc.returncode == 0, proc.stderr
        removed, left = map(int, proc.stdout.split())
        assert removed > 0 and left < 20
        assert sum(p.stat().st_size for p in root.rglob("*.pkl")) <= 100_000
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def test_another_users_stamp_in_a_cache_shared_by_hand_is_named_in_the_warning(
        shared_folder: Path) -> None:
    """In a cache opened to all, another user's process made a function's ``.gen`` (0600,
    theirs): this user's ``memory=`` is not used, and the warning says whose stamp it is.
    Before, it blamed the file system ("a file system without them, such as FAT")."""
    import memojar

    cache_dir = shared_folder / "c"

    def run(memory: int | None) -> str:
        cache = memojar.Cache(cache_dir)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            f = cache.cached(memory=memory)(_square) if memory else cache.cached(_square)
            values = [f(i) for i in range(3)]
        said = [str(w.message) for w in caught if "memory=" in str(w.message)]
        return f"{values} {said}"

    assert as_another_user(lambda: run(None), NOBODY) == "[0, 1, 4] []"
    _open_to_all(cache_dir)
    assert as_another_user(lambda: run(4), OTHER).startswith("[0, 1, 4] []")
    said = as_another_user(lambda: run(4), NOBODY)
    assert ".gen is user 65533's, and memojar uses only a stamp of this user's" in said, said
    assert "FAT" not in said


@pytest.mark.parametrize("planted", [
    '{"functions": [1, 2]}', '{"functions": {"builtins.abs": "abc"}}',
    '{"functions": {"builtins.abs": [1]}}', '{"counts": {"builtins.abs": 5}}', '{"counts": []}',
    '{"counts": {"builtins.abs": ["a", null]}}', '{"functions": {"builtins.abs": [1, 2, "x"]}}',
], ids=["functions-list", "functions-str", "short", "counts-int", "counts-list", "counts-str",
        "seconds-str"])
def test_statistics_of_another_shape_are_dropped_not_raised(
        tmp_path: Path, planted: str) -> None:
    """A ``.stats`` that is JSON of another shape (damaged, another program's, or planted
    by another user of a cache shared by hand): ``cache_info()``, ``stats()``, the merge,
    ``saved_stats()``, ``prune()`` and ``memojar ls`` work, its odd items dropped. Before,
    they raised ``TypeError``, ``AttributeError``, ``IndexError`` or ``ValueError`` (the
    merge at exit, and ``memojar ls`` as an "unexpected error")."""
    import memojar

    root = tmp_path / "c"
    cache = memojar.Cache(root)
    f = cache.cached(abs)
    f(-1)
    cache.flush_stats()
    (root / ".stats").write_text(planted)
    assert f(-2) == 2
    assert f.cache_info().entries == 2
    assert cache.stats().entries == 2
    cache.flush_stats()
    assert set(cache.saved_stats()) <= {"builtins.abs"}
    assert cache.prune() == 0
    assert _cli(root, "ls").startswith("0 FUNCTION")


def test_a_huge_statistics_file_is_not_read(tmp_path: Path) -> None:
    """A sparse 50 GB ``.stats``: ``cache_info()`` and ``saved_stats()`` answer (the file is
    not read, and the next merge replaces it). Before, ``MemoryError``."""
    import memojar

    root = tmp_path / "c"
    cache = memojar.Cache(root)
    f = cache.cached(abs)
    f(-1)
    cache.flush_stats()
    os.truncate(root / ".stats", 50 << 30)
    assert f.cache_info().entries == 1
    assert set(cache.saved_stats()) <= {"builtins.abs"}
    assert (root / ".stats").stat().st_size < 1 << 20


def test_the_command_line_says_whose_an_unreadable_cache_directory_is(
        shared_folder: Path) -> None:
    """``memojar ls`` on a cache directory of root's the user cannot read: one line saying
    whose it is and what to do. Before, only "cannot read the cache directory"."""
    import memojar

    cache_dir = shared_folder / "c"
    assert memojar.Cache(cache_dir).cached(_square)(3) == 9
    cache_dir.chmod(0o700)
    said = as_another_user(lambda: _cli(cache_dir, "ls"))
    assert said == (f"1 memojar: permission denied: cannot read the cache directory {cache_dir}"
                    ", which is root's (memojar keeps a cache private to the user who made it):"
                    " use a folder of your own, or, to share results between users, a Redis "
                    "or S3 cache with a secret\n"), said


def _blob(i: int) -> bytes:
    return bytes([i % 256]) * 1000


def _theirs_read_only(shared_folder: Path, ttl: float | None = None) -> tuple[Path, dict]:
    """A cache of NOBODY's opened to all by hand, where OTHER cached 40 entries (in its own
    folders, mostly) and then made its folders readable by all but writable by itself
    alone (``chmod -R go=rX``): NOBODY lists them and may not remove them. The cache, and
    OTHER's entry files with their contents."""
    import memojar

    cache_dir = shared_folder / "c"

    def fill(start: int, n: int) -> str:
        f = memojar.Cache(cache_dir).cached(ttl=ttl)(_blob)
        return str(sum(len(f(i)) for i in _apart(f, cache_dir, start, n)))

    assert as_another_user(lambda: fill(0, 10), NOBODY) == "10000"
    _open_to_all(cache_dir)
    assert as_another_user(lambda: fill(100, 40), OTHER) == "40000"
    for p in cache_dir.rglob("*"):
        if p.stat().st_uid == OTHER:
            p.chmod(0o755 if p.is_dir() else 0o644)
    theirs = {p: p.read_bytes() for p in cache_dir.rglob("*.pkl") if p.stat().st_uid == OTHER}
    assert len(theirs) == 40
    return cache_dir, theirs


def _apart(f: Any, cache_dir: Path, start: int, n: int) -> list[int]:
    """``n`` arguments from ``start`` up whose entries fall in shards nobody made yet: the
    user's own folders, whatever Python (a key, so a shard, differs between versions: a
    test that took the first ``n`` held on one Python and not another)."""
    made = {d.name for d in cache_dir.glob("*/*") if d.is_dir()}
    found: list[int] = []
    i = start
    while len(found) < n:
        shard = f.cache_key(i)[:2]
        if shard not in made:
            found.append(i)
            made.add(shard)  # one entry a shard: each stays this user's
        i += 1
    return found


def _pkl_bytes(cache_dir: Path) -> int:
    return sum(p.stat().st_size for p in cache_dir.rglob("*.pkl"))


def test_max_size_evicts_around_entries_the_user_may_not_remove(shared_folder: Path) -> None:
    """In a cache shared by hand, another user's entries sit in folders this user may read
    but not write. Writes with ``max_size`` evict the user's own entries in their place and
    the cache stays under ``max_size``; when the others' entries alone hold the room, a
    write is returned, not stored, with a warning saying so, at once. Before, the first
    eviction that chose one of them raised ``PermissionError``: every write was returned
    but not stored ("Permission denied"), for good."""
    import time

    import memojar

    cache_dir, theirs = _theirs_read_only(shared_folder)
    held = sum(map(len, theirs.values()))

    def write(max_size: int) -> str:
        f = memojar.Cache(cache_dir, max_size=max_size).cached(_blob)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            started = time.monotonic()
            right = all(f(i) == _blob(i) for i in range(1000, 1060))
            took = time.monotonic() - started
        said = {str(w.message).split(" failed (")[-1][:40] for w in caught}
        mine = sum(p.stat().st_uid == NOBODY for p in cache_dir.rglob("*.pkl"))
        return f"{right} {took < 10} {mine} {sorted(said)}"

    said = as_another_user(lambda: write(held + 12_000), NOBODY)
    right, quick, mine, _ = said.split(" ", 3)
    assert (right, quick) == ("True", "True") and int(mine) >= 5, said
    assert _pkl_bytes(cache_dir) <= held + 12_000
    before = {p for p in cache_dir.rglob("*.pkl") if p.stat().st_uid == NOBODY}
    said = as_another_user(lambda: write(held - 5_000), NOBODY)
    assert said.startswith(f"True True {len(before)} "), said
    assert "'no room under max_size" in said, said
    assert {p for p in cache_dir.rglob("*.pkl") if p.stat().st_uid == NOBODY} == before
    assert "Permission denied" not in said, said
    assert {p: p.read_bytes() for p in theirs} == theirs


def test_clear_removes_the_users_entries_and_names_whose_it_left(shared_folder: Path) -> None:
    """``cache_clear()``, ``Cache.clear()`` and ``memojar clear`` in a cache shared by hand
    where another user's entries sit in folders this user may not write: the user's own
    entries are removed, and a ``PermissionError`` says how many, how many were left and
    whose they are. Before, the first such entry raised ``PermissionError`` naming only the
    file, and the entries after it were not removed: the user's own stayed."""
    import memojar

    cache_dir, theirs = _theirs_read_only(shared_folder)

    def clear(how: str) -> str:
        cache = memojar.Cache(cache_dir)
        f = cache.cached(_blob)
        try:
            if how == "cli":
                return _cli(cache_dir, "clear", "--yes")
            f.cache_clear() if how == "function" else cache.clear()
        except PermissionError as exc:
            return f"{exc.strerror}: {exc.filename}"
        return "no error"

    for how in ("function", "cache", "cli"):
        if how != "function":  # a fresh cache of NOBODY's
            (shared_folder / how).mkdir(mode=0o1777)
            (shared_folder / how).chmod(0o1777)
            cache_dir, more = _theirs_read_only(shared_folder / how)
            theirs.update(more)
        said = as_another_user(lambda how=how: clear(how), NOBODY)
        assert "removed 10 entries; 40 entries were left, of user 65533's" in said, (how, said)
        assert said.rstrip().endswith(".pkl") and "remove them as user 65533" in said, said
        assert sum(p.stat().st_uid == NOBODY for p in cache_dir.rglob("*.pkl")) == 0
    assert {p: p.read_bytes() for p in theirs} == theirs


def test_prune_removes_what_it_may_and_warns_of_the_rest(shared_folder: Path) -> None:
    """``prune`` in a cache shared by hand where another user's expired entries sit in
    folders this user may not write: its own expired entries go, theirs stay, and one
    warning says whose. Before, it raised ``PermissionError`` at the first of theirs."""
    import time

    import memojar

    cache_dir, theirs = _theirs_read_only(shared_folder, ttl=0.5)
    time.sleep(0.6)

    def prune() -> str:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            removed = memojar.Cache(cache_dir).prune()
        return f"{removed} {[str(w.message) for w in caught]}"

    said = as_another_user(prune, NOBODY)
    assert said.startswith("10 ") and "left entries it may not remove" in said, said
    assert "40 entries were left, of user 65533's" in said, said
    assert sum(p.stat().st_uid == NOBODY for p in cache_dir.rglob("*.pkl")) == 0
    assert {p: p.read_bytes() for p in theirs} == theirs


@pytest.mark.parametrize("mode", [0o777, 0o1777], ids=["open", "sticky"])
def test_every_user_of_a_cache_shared_by_hand_stores_with_max_size(
        shared_folder: Path, mode: int) -> None:
    """A cache opened to all by hand (``chmod -R a+rwX``, or 1777 as /tmp), then used with
    ``max_size`` by its owner (who makes the ledger, its lock, the statistics) and by
    another user: the other user's results are stored, counted in the ledger and its
    statistics saved, with no warning but the one about the owner's private folders. Before,
    the ledger's lock was 0600 (every max_size write of the other user was returned but
    not stored, "Permission denied"), and in a sticky root the ledger and the statistics,
    the owner's, could not be replaced ("Operation not permitted")."""
    import memojar

    cache_dir = shared_folder / "c"

    def run(start: int) -> str:
        cache = memojar.Cache(cache_dir, max_size=200_000)
        f = cache.cached(_blob)
        calls = _apart(f, cache_dir, start, 20)  # not in the other user's private shards
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            right = all(f(i) == _blob(i) for i in calls)
            hits = sum(f(i) == _blob(i) for i in calls)
            cache.flush_stats()
        said = [str(w.message) for w in caught if "cannot be read by" not in str(w.message)]
        return f"{right} {hits} {said}"

    assert as_another_user(lambda: str(len(memojar.Cache(cache_dir).cached(_blob)(0))),
                           NOBODY) == "1000"
    for p in [cache_dir, *cache_dir.rglob("*")]:
        p.chmod(mode if p.is_dir() else 0o666)
    assert as_another_user(lambda: run(100), NOBODY) == "True 20 []"
    assert as_another_user(lambda: run(200), OTHER) == "True 20 []"
    assert sum(p.stat().st_uid == OTHER for p in cache_dir.rglob("*.pkl")) == 20
    kept = as_another_user(lambda: str(memojar.Cache(cache_dir).saved_stats()), NOBODY)
    assert "(40, 40, " in kept, kept  # hits and misses of both users


def test_a_hard_link_at_the_ledgers_lock_keeps_its_mode_in_a_cache_opened_to_others(
        shared_folder: Path) -> None:
    """A private file of the user's hard-linked at ``.size.lock`` (the size ledger's lock)
    of a cache the user opened to others by hand: writes with ``max_size`` lock through it
    but leave its mode, so another user still may not read it. Before, memojar opened it
    to others as it does the lock file it makes itself (0666 here): the file was anyone's
    to read and write."""
    import memojar

    cache_dir = shared_folder / "c"
    assert memojar.Cache(cache_dir).cached(_square)(2) == 4
    cache_dir.chmod(0o777)
    private = shared_folder / "private"
    private.write_text("the user's own")
    private.chmod(0o600)
    os.link(private, cache_dir / ".size.lock")
    assert memojar.Cache(cache_dir, max_size=100_000).cached(_square)(3) == 9
    assert (private.stat().st_mode & 0o777, private.read_text()) == (0o600, "the user's own")

    def read_it() -> str:
        try:
            return private.read_text()
        except PermissionError:
            return "refused"

    assert as_another_user(read_it, NOBODY) == "refused"


def test_a_user_who_may_only_read_a_shared_cache_computes_and_prunes_nothing(
        shared_folder: Path) -> None:
    """A cache its owner opened to others read-only (``chmod -R go=rX``), used by another
    user with ``max_size`` and ``memory=``: every call computes and returns its value (one
    warning a line saying it was not stored), the ``memory=`` warning says whose folder it
    may not write, ``prune`` removes nothing and raises nothing, nothing of the owner's
    changes. Before, ``prune`` raised ``PermissionError`` for the size ledger's lock it
    could not make, and the ``memory=`` warning blamed the file system ("such as FAT")."""
    import memojar

    cache_dir = shared_folder / "c"

    def fill() -> str:
        f = memojar.Cache(cache_dir).cached(_blob)
        return str(sum(len(f(i)) for i in range(10)))

    assert as_another_user(fill, NOBODY) == "10000"
    for p in [cache_dir, *cache_dir.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    before = _files(cache_dir)

    def read_only() -> str:
        cache = memojar.Cache(cache_dir, max_size=100_000)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            f = cache.cached(memory=4)(_blob)
            right = all(f(i) == _blob(i) for i in [*range(10), *range(50, 60)] * 2)
            pruned = cache.prune()
        said = [str(w.message) for w in caught]
        stamp = [m for m in said if "memory=" in m]
        stored = [m for m in said if "was returned but not cached" in m]
        return f"{right} {pruned} {len(stored)} {stamp}"

    said = as_another_user(read_only, OTHER)
    assert said.startswith("True 0 1 ["), said
    assert "cannot be made: the folder is nobody's, and user 65533 may not write" in said
    assert "FAT" not in said
    assert _files(cache_dir) == before


def test_entries_another_user_may_not_read_are_said_to_recompute(shared_folder: Path) -> None:
    """Two users with one secret in a cache opened to all by hand: the entries each writes
    afterwards are private (0600, whatever the umask), so the other's calls of them compute
    again, and replace them where they may; each user is told once, whose entry it could
    not read and what to use instead. Before, nothing was said to the owner of the cache,
    whose calls computed again at every turn."""
    import memojar

    importlib.import_module("hmac")  # signing's: those users may not read this Python's
    cache_dir = shared_folder / "c"

    def run(start: int, stop: int) -> str:
        cache = memojar.Cache(cache_dir, secret="team")
        f = cache.cached(_blob)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            right = all(f(i) == _blob(i) for i in range(start, stop))
        said = [str(w.message) for w in caught if "private to them" in str(w.message)]
        return f"{right} {len(said)} {said}"

    assert as_another_user(lambda: run(0, 300), NOBODY) == "True 0 []"
    _open_to_all(cache_dir)
    assert as_another_user(lambda: run(300, 400), NOBODY) == "True 0 []"
    said = as_another_user(lambda: run(300, 400), OTHER)
    assert said.startswith("True 1 ") and "is nobody's and private to them" in said, said
    assert "use a Redis or S3 cache with a secret" in said
    said = as_another_user(lambda: run(300, 400), NOBODY)
    assert said.startswith("True 1 ") and "is user 65533's and private to them" in said, said


def test_explain_names_the_private_folder_of_another_users_entry(shared_folder: Path) -> None:
    """``cache_explain`` of a call whose entry another user keeps in its private folder of
    a cache shared by hand says whose folder it cannot read. Before: "no entry for these
    arguments", though the entry is there."""
    import memojar

    cache_dir = shared_folder / "c"
    assert as_another_user(lambda: str(len(memojar.Cache(cache_dir).cached(_blob)(0))),
                           NOBODY) == "1000"
    _open_to_all(cache_dir)
    assert as_another_user(lambda: str(sum(map(len, map(
        memojar.Cache(cache_dir).cached(_blob), range(100, 110))))), OTHER) == "10000"

    def explain() -> str:
        f = memojar.Cache(cache_dir).cached(_blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the warnings about the other user's files
            return "\n".join(f.cache_explain(i) for i in range(100, 110))

    said = as_another_user(explain, NOBODY).splitlines()
    private = [s for s in said if "is user 65533's and private to them" in s]
    assert len(private) >= 8 and not [s for s in said if "no entry" in s], said


def test_another_users_orphaned_temporary_file_does_not_stop_max_size(
        shared_folder: Path) -> None:
    """A temporary file another user's killed writer left in its folder of a cache shared
    by hand, which this user may read but not write: writes with ``max_size`` are stored
    and ``prune`` finishes, the file left (its bytes counted). Before, every census raised
    ``PermissionError`` at it: each write was returned but not stored, and ``prune``
    raised."""
    import memojar

    cache_dir, theirs = _theirs_read_only(shared_folder)
    shard = next(p.parent for p in theirs)
    orphan = shard / f"{shard.name}{'a' * 30}.pkl.4000000.deadbeef.tmp"  # pid 4000000: dead
    orphan.write_bytes(b"partial")
    os.chown(orphan, OTHER, OTHER)

    def write() -> str:
        cache = memojar.Cache(cache_dir, max_size=1_000_000)
        f = cache.cached(_blob)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            right = all(f(i) == _blob(i) for i in range(1000, 1010))
            pruned = cache.prune()
        said = [str(w.message) for w in caught if "not cached" in str(w.message)]
        return f"{right} {pruned} {said}"

    said = as_another_user(write, NOBODY)
    assert said.startswith("True 0 "), said
    assert len([m for m in said.split("', '") if "not cached" in m]) <= 1, said  # its shard
    assert orphan.read_bytes() == b"partial"
    assert sum(p.stat().st_uid == NOBODY for p in cache_dir.rglob("*.pkl")) >= 19


def test_prune_leaves_another_users_sweep_note_it_may_not_remove(shared_folder: Path) -> None:
    """A function folder of another user's in a cache shared by hand, which this user may
    read but not write, holding only its sweep note (its entries cleared): ``prune`` leaves
    it and finishes. Before, it raised ``PermissionError: '.swept'`` (the bare name)."""
    import memojar

    cache_dir = shared_folder / "c"
    assert as_another_user(lambda: str(memojar.Cache(cache_dir).cached(_blob)(0)[:1]),
                           NOBODY) == "b'\\x00'"
    _open_to_all(cache_dir)

    def theirs() -> str:
        f = memojar.Cache(cache_dir).cached(_square)
        return str([f(i) for i in range(3)] and f.cache_clear())

    assert as_another_user(theirs, OTHER) == "3"
    folder = next(p for p in cache_dir.iterdir() if p.name.endswith("._square"))
    for p in folder.iterdir():
        if p.name != ".swept":
            p.rmdir() if p.is_dir() else p.unlink()
    folder.chmod(0o755)
    note = (folder / ".swept").read_bytes()

    def prune() -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return str(memojar.Cache(cache_dir).prune())

    assert as_another_user(prune, NOBODY) == "0"
    assert (folder / ".swept").read_bytes() == note


@pytest.mark.parametrize("stamp", ["new", "old"])
def test_another_users_clear_is_seen_by_this_users_memory_tier(
        shared_folder: Path, stamp: str) -> None:
    """In a cache opened to all by hand, a process of one user holds a result in its
    ``memory=`` tier; another user clears the function's entries (which it may: they are in
    folders open to it): the first process's next call computes again. Before, the stamp
    was 0600, the other user's bump of it failed silently, and the first process kept
    returning the cleared result from memory. An ``old`` stamp (0600, made by an earlier
    memojar) is opened to others by its owner's next process."""
    import memojar

    cache_dir = shared_folder / "c"
    assert as_another_user(lambda: str(list(map(memojar.Cache(cache_dir).cached(_square),
                                                [0, 5]))), NOBODY) == "[0, 25]"
    _open_to_all(cache_dir)  # OTHER's entry of 5 replaces NOBODY's, in a folder open to all
    if stamp == "old":
        def make_stamp() -> str:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return str(memojar.Cache(cache_dir).cached(memory=4)(_square)(0))

        assert as_another_user(make_stamp, OTHER) == "0"
        for gen in cache_dir.rglob(".gen"):
            gen.chmod(0o600)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a process of OTHER's, kept while NOBODY clears
        status = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            os.setgroups([])
            os.setgid(OTHER)
            os.setuid(OTHER)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NOBODY's files: not this test's point
                f = memojar.Cache(cache_dir).cached(memory=4)(_square)
                f(5), f(5)
                os.write(ready_w, b"1")
                if os.read(go_r, 1) == b"1":
                    f(5)
                    os.write(ready_w, str(f.cache_info().misses).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(ready_w)
    os.close(go_r)
    try:
        import select

        assert select.select([ready_r], [], [], 60)[0] and os.read(ready_r, 1) == b"1"
        cleared = as_another_user(lambda: str(memojar.Cache(cache_dir).clear()), NOBODY)
        os.write(go_w, b"1")
        assert select.select([ready_r], [], [], 60)[0]
        computed = os.read(ready_r, 16)
    finally:
        os.close(go_w)  # a child still waiting reads the end, and ends
        os.waitpid(pid, 0)
        os.close(ready_r)
    assert cleared == "2", cleared
    assert computed == b"2"  # computed once, and again after the other user's clear


# --- what memojar makes in a cache shared by hand -------------------------------------------

TEAM = NOBODY - 4  # a group both users are in (no name: "group 65530")


@pytest.mark.parametrize("max_size", [None, 10**7])
def test_what_memojar_makes_in_a_group_shared_setgid_folder_stays_private(
        shared_folder: Path, max_size: int | None) -> None:
    """A cache its owner shared by hand with a group (``chgrp -R``, ``chmod -R g+rwXs``:
    every folder 2770, group-writable and setgid); two users of that group cache there
    under a umask of 0, making new function folders, shards, entries (also with
    ``max_size``, whose writes rename a temporary file into place), lock files and sweep
    notes. Each is private to the user who made it, as the contract says: folders 0700
    (the setgid bit is the kernel's, passed on by ``mkdir``), files 0600. A memojar that
    gave them the shared folder's bits (2770, 0640) broke that promise."""
    import memojar

    cache_dir = shared_folder / "c"

    def fill(start: int, stop: int) -> str:
        os.umask(0)
        cache = memojar.Cache(cache_dir, max_size=max_size)
        f = cache.cached(_blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the other user's folders: not this point
            done = sum(len(f(i)) for i in range(start, stop))
            cache.prune()  # a sweep note in each function folder it may write
        return str(done)

    assert as_another_user(lambda: fill(0, 5), NOBODY, [TEAM]) == "5000"
    for p in [cache_dir, *cache_dir.rglob("*")]:
        os.chown(p, -1, TEAM)
        p.chmod(0o2770 if p.is_dir() else 0o660)
    before = set(cache_dir.rglob("*"))
    assert as_another_user(lambda: fill(5, 300), OTHER, [TEAM]) == "295000"
    assert as_another_user(lambda: str(memojar.Cache(cache_dir).cached(_cube)(3)), OTHER,
                           [TEAM]) == "27"  # a function folder, its lock file
    assert as_another_user(lambda: fill(300, 600), NOBODY, [TEAM]) == "300000"
    made = set(cache_dir.rglob("*")) - before
    owners = {p.stat().st_uid for p in made}
    assert owners == {NOBODY, OTHER}, owners
    folders = {p for p in made if p.is_dir()}
    assert len(folders) > 100 and next(cache_dir.glob("*._cube")) in folders
    assert {p.stat().st_mode & 0o777 for p in folders} == {0o700}
    files = {p for p in made if not p.is_dir()}
    assert {p.name for p in files} >= {".lock", ".swept"}
    assert any(p.suffix == ".pkl" for p in files)
    assert {p.stat().st_mode & 0o777 for p in files} == {0o600}


@pytest.mark.parametrize("older", ["some of theirs", "mine"])
def test_eviction_in_a_sticky_shared_cache_keeps_the_users_entries(
        shared_folder: Path, older: str) -> None:
    """A cache shared by hand whose folders are sticky (``chmod -R 1777``, as /tmp): another
    user's entries in its own folders there are ones this user may write beside but not
    remove. Writes with ``max_size`` evict this user's entries in their place and stay
    under it; when the others' alone hold the room, a write is returned, not stored, and
    none of this user's entries goes, whichever are the least recently used (some of the
    other's, then this user's; or this user's). Before,
    eviction took the others' entries for removable (their folders are writable) and
    removed this user's own next in LRU order with them; and, in any cache shared by hand,
    this user's own entries older than the others' went before the others' were found to
    hold the room: for a write then not stored all the same, results lost for nothing."""
    import time

    import memojar

    cache_dir = shared_folder / "c"

    def fill(start: int, n: int) -> str:
        f = memojar.Cache(cache_dir).cached(_blob)
        return str(sum(len(f(i)) for i in _apart(f, cache_dir, start, n)))

    assert as_another_user(lambda: fill(0, 10), NOBODY) == "10000"
    for p in [cache_dir, *cache_dir.rglob("*")]:
        p.chmod(0o1777 if p.is_dir() else 0o666)
    assert as_another_user(lambda: fill(100, 40), OTHER) == "40000"
    theirs = {p: p.read_bytes() for p in cache_dir.rglob("*.pkl") if p.stat().st_uid == OTHER}
    assert len(theirs) == 40
    held = sum(p.stat().st_size for p in theirs)
    for p in cache_dir.rglob("*"):  # as OTHER would, sharing its folders the same way
        if p.stat().st_uid == OTHER:
            p.chmod(0o1777 if p.is_dir() else 0o644)
    # Used one, two or three hours ago: ``older`` the least recently.
    first = set(sorted(theirs)[:5]) if older == "some of theirs" else set()
    now = time.time()
    for p in cache_dir.rglob("*.pkl"):
        ago = 3 if p in first else 1 if p in theirs else 2
        os.utime(p, (now - ago * 3600, now - ago * 3600))

    def write(max_size: int) -> str:
        f = memojar.Cache(cache_dir, max_size=max_size).cached(_blob)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            right = all(f(i) == _blob(i) for i in range(1000, 1020))
        said = {str(w.message).split(" failed (")[-1][:22] for w in caught}
        return f"{right} {sorted(said)}"

    mine = {p for p in cache_dir.rglob("*.pkl") if p.stat().st_uid == NOBODY}
    said = as_another_user(lambda: write(held - 5_000), NOBODY)
    assert said == "True ['no room under max_size']", said
    assert {p for p in cache_dir.rglob("*.pkl") if p.stat().st_uid == NOBODY} == mine
    said = as_another_user(lambda: write(held + 12_000), NOBODY)
    assert said == "True []", said
    assert _pkl_bytes(cache_dir) <= held + 12_000
    assert sum(p.stat().st_uid == NOBODY for p in cache_dir.rglob("*.pkl")) >= 5
    assert {p: p.read_bytes() for p in theirs} == theirs


def test_two_threads_clearing_a_shared_cache_name_each_its_own_left_entries(
        shared_folder: Path) -> None:
    """Two threads of one process clear two functions at once in a cache shared by hand
    where another user's entries of each sit in folders this user may not write (40 of
    one, 1 of the other): each ``cache_clear()`` raises ``PermissionError`` naming its own
    40 or 1 entries left, and whose. Before, whose they were was kept on the store between
    the removal and the error, so the other thread's removal could replace it meanwhile: a
    clear then raised ``ValueError`` (``zip``: lengths differ), or named the other's owners.
    That moment is forced here: where that code kept them (``_refused_owners``), each
    thread waits until the other has kept its own (a store that keeps nothing there never
    waits)."""
    import threading

    import memojar
    from memojar._errors import PartlyRemoved
    from memojar._filestore import FileStore

    cache_dir, _ = _theirs_read_only(shared_folder)  # 40 of OTHER's entries of _blob
    assert as_another_user(lambda: str(memojar.Cache(cache_dir).cached(_cube)(2)),
                           OTHER) == "8"
    for p in cache_dir.rglob("*"):
        if p.stat().st_uid == OTHER:
            p.chmod(0o755 if p.is_dir() else 0o644)

    def clear_at_once() -> str:
        both = threading.Barrier(2, timeout=10)

        def keep(store: Any, owners: list[int]) -> None:
            store.__dict__["_refused_owners"] = owners
            if owners:  # a removal's refusals, not the store's first empty list
                both.wait()

        FileStore._refused_owners = property(  # type: ignore[attr-defined]
            lambda store: store.__dict__["_refused_owners"], keep)
        cache = memojar.Cache(cache_dir)
        functions = {"blob": cache.cached(_blob), "cube": cache.cached(_cube)}
        said: dict[str, str] = {}

        def clear(name: str) -> None:
            try:
                functions[name].cache_clear()
                said[name] = "no error"
            except PartlyRemoved as exc:  # what was left, and whose
                said[name] = f"{len(exc.left)} left, {sorted({o for _, o in exc.left})}"
            except Exception as exc:  # noqa: BLE001 (what each said, for the test)
                said[name] = f"{type(exc).__name__}: {exc}"

        threads = [threading.Thread(target=clear, args=(name,)) for name in functions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return str(sorted(said.items()))

    said = as_another_user(clear_at_once, NOBODY)
    assert said == str([("blob", "40 left, ['user 65533']"),
                        ("cube", "1 left, ['user 65533']")]), said


@pytest.mark.parametrize("max_size", [None, 10**6])
def test_a_file_system_that_shows_all_open_and_refuses_modes_still_stores(
        fat_shown_open_to_all: Path, max_size: int | None) -> None:
    """A FAT drive mounted with every file shown 0777 (``umask=000``), where ``chmod``
    fails ("Function not implemented"): it looks shared by hand, and the statistics file
    and size ledger, which memojar gives the root's bits there, cannot be given modes.
    Every result is stored, hits after, with no warning, with and without ``max_size``.
    Before, with ``max_size`` every write was returned but not stored: the size ledger,
    given the root's bits, failed its ``chmod``."""
    import memojar

    assert fat_shown_open_to_all.stat().st_mode & 0o777 == 0o777
    cache = memojar.Cache(fat_shown_open_to_all / "c", max_size=max_size)
    f = cache.cached(_square)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [f(i) for i in range(20)] == [f(i) for i in range(20)]
        cache.flush_stats()
    assert f.cache_info()[:3] == (20, 20, 20)


def test_cache_delete_of_a_key_in_another_users_private_folder_names_it_whole(
        shared_folder: Path) -> None:
    """A cache shared by hand where another user made the key's shard after the sharing
    (0700): ``cache_delete`` of that key cannot reach its entry. Before, it raised
    "Permission denied: 'd2'", the shard's bare name; now the shard's whole path, whose it
    is and what to do; the keys in folders the user may write are deleted."""
    import memojar

    cache_dir = shared_folder / "c"
    f = memojar.Cache(cache_dir).cached(_square)
    f(0)
    _open_to_all(cache_dir)
    f(1)  # root's shard, made after the sharing: 0700
    (function_folder,) = cache_dir.glob("*._square")
    shard = function_folder / f.cache_key(1)[:2]
    assert shard.stat().st_mode & 0o777 == 0o700 and shard.name not in (
        f.cache_key(0)[:2], f.cache_key(2)[:2])

    def delete() -> str:
        g = memojar.Cache(cache_dir).cached(_square)
        g(2)
        said = [str(g.cache_delete(2))]
        try:
            g.cache_delete(1)
        except PermissionError as exc:
            said.append(f"{exc.strerror}: {exc.filename}")
        return "\n".join(said)

    said = as_another_user(delete)
    assert said.splitlines()[0] == "True", said
    assert said.splitlines()[1] == (f"permission denied (a folder of root's, which this user "
                                    f"cannot read: remove it as root): {shard}"), said
