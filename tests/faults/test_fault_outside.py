"""Attack 11: nothing outside the cache is touched.

Folders memojar did not create, symbolic links planted in a cache, FIFOs at the names memojar
opens, and function names a directory listing hides. Each attack runs memojar in a real child
interpreter (bounded in time: a FIFO that blocks is a hang, reported as a timeout), against
real files, and then checks the victim's files byte for byte.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faultkit import subprocess_env

from conftest import NOBODY, as_another_user

TIMEOUT = 60


def run(code: str, timeout: float = TIMEOUT, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; a child still running after ``timeout`` fails."""
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=subprocess_env(**env), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"memojar blocked: still running after {timeout} s") from None


def ok(code: str, timeout: float = TIMEOUT, **env: str) -> str:
    proc = run(code, timeout, **env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def memojar(*argv: str) -> subprocess.CompletedProcess[str]:
    """The command line, in its own process."""
    try:
        return subprocess.run([sys.executable, "-m", "memojar", *argv], capture_output=True,
                              text=True, env=subprocess_env(), timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"memojar {argv} still running after {TIMEOUT} s") from None


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every path under ``folder`` (links not followed) with its content or kind."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(dirpath, name)
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                out[rel] = "link -> " + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = path.read_bytes()
    return out


def users_folder(folder: Path) -> Path:
    """A folder of the user's that looks like what memojar deletes, to the letter."""
    (folder / "results" / "ab").mkdir(parents=True)
    (folder / "empty").mkdir()
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "build.tmp").write_text("my build\n")
    (folder / "app.lock").write_text("my lock\n")
    (folder / "model.mj").write_text("my model\n")
    (folder / "results" / "ab" / "run.1.2.tmp").write_text("my run\n")
    (folder / "results" / "ab" / "0123.lock").write_text("my lock\n")
    (folder / "results" / ".lock").write_text("my lock\n")
    old = time.time() - 7200  # older than any orphan age
    for path in folder.rglob("*"):
        os.utime(path, (old, old))
    return folder


MODULE = """
def work(x):
    return x * 2
"""

USE_CACHE = """
import os, sys
import memojar
from work import work
try:
    cache = memojar.Cache(os.environ["CACHE"], max_size=10_000_000)
except ValueError as exc:
    print("refused:", exc)
    try:
        memojar.cached(cache_dir=os.environ["CACHE"])(work)
    except ValueError as exc:
        print("refused:", exc)
    sys.exit(0)
f = cache.cached(work)
f(1)
cache.prune()
cache.clear()
print("accepted")
"""


# --- 1. folders memojar did not create ----------------------------------------------------

# Another tool's cache: a CACHEDIR.TAG holding the standard signature line only (a prefix of
# memojar's tag, which once passed for one being written right now).
OTHER_TOOLS_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n"


@pytest.mark.parametrize("tag", [None, OTHER_TOOLS_TAG], ids=["untagged", "another-tools-tag"])
def test_a_folder_of_yours_is_refused_and_left_as_it_was(tmp_path: Path, tag: str | None) -> None:
    folder = users_folder(tmp_path / "project")
    if tag is not None:
        (folder / "CACHEDIR.TAG").write_text(tag)
    (tmp_path / "work.py").write_text(MODULE)
    before = snapshot(folder)
    out = ok(USE_CACHE, CACHE=str(folder), PYTHONPATH=str(tmp_path))
    refusals = out.splitlines()
    assert len(refusals) == 2 and all(line.startswith("refused:") for line in refusals), out
    assert str(folder) in refusals[0] and "did not create" in refusals[0]
    for argv in (["prune"], ["clear", "--yes"], ["ls"], ["info"]):
        proc = memojar("--dir", str(folder), *argv)
        assert proc.returncode == 1, proc
    assert snapshot(folder) == before  # no CACHEDIR.TAG, no file deleted, no folder removed


def test_another_users_cache_is_named_as_theirs(shared_folder: Path) -> None:
    """A folder a team shares (sticky, writable by all) holding one user's memojar cache:
    another user cannot read its tag, nor its folders (memojar makes them private). Before,
    both ``Cache`` and the command line told that user it was a folder memojar did not make,
    "no CACHEDIR.TAG written by memojar", and the tag is memojar's."""
    import memojar
    from memojar._cli import main

    shared = shared_folder
    cache = memojar.Cache(shared / "team")
    cache.cached(lambda x: x)(1)
    (shared / "team").chmod(0o1777)  # the team's folder, which root made memojar's

    def refusals() -> str:
        import contextlib
        import io

        try:
            memojar.Cache(shared / "team")
        except ValueError as exc:
            said = f"Cache: {exc}\n"
        else:
            said = "Cache: accepted\n"
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = main(["--dir", str(shared / "team"), "ls"])
        return f"{said}memojar ls: {status} {err.getvalue()}"

    said = as_another_user(refusals)
    assert said.count("is root's memojar cache") == 2, said
    assert "did not create" not in said and "no CACHEDIR.TAG" not in said, said
    assert said.count("Use a folder of your own, or, to share results between users, a Redis "
                      "or S3 cache with a secret") == 2, said
    assert "memojar ls: 1 " in said, said


def _double(x: int) -> int:
    return x * 2


def _triple(x: int) -> int:
    return x * 3


def _function_folders(cache_dir: Path) -> list[Path]:
    """The cache's function folders (not its `.writers` registry)."""
    return [p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _users_run(cache_dir: Path) -> Callable[[], str]:
    """A job for ``as_another_user``: ``_double`` of 0 to 3 on ``cache_dir`` (the user's own
    cache: any warning is an error), the values and the hits."""

    def run() -> str:
        import warnings

        import memojar

        f = memojar.Cache(cache_dir).cached(_double)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = [f(i) for i in range(4)]
        return f"{values} {f.cache_info().hits}"

    return run


def test_root_writes_nothing_in_another_users_cache(shared_folder: Path) -> None:
    """``sudo`` keeping ``$HOME`` (or a container's root on a mounted folder) runs a script
    on a user's cache. Before, root's entries, shards and function folders (0600, 0700,
    root's) stayed there: keys that user could never cache again ("not cached" at every
    call), and ``memojar ls`` and ``clear`` failing with "permission denied". Now root gets
    its values, is told why nothing was cached, and leaves nothing of its own."""

    import memojar

    cache_dir = shared_folder / "c"

    users_run = _users_run(cache_dir)
    assert as_another_user(users_run) == "[0, 2, 4, 6] 0"
    f = memojar.Cache(cache_dir).cached(_double)
    with pytest.warns(memojar.MemojarWarning) as caught:
        assert [f(i) for i in range(8)] == [0, 2, 4, 6, 8, 10, 12, 14]
    said = [str(w.message) for w in caught]
    assert any("owned by another user" in w for w in said)  # never unpickled (as before)
    assert any("nobody's memojar cache, and this process runs as root: memojar writes "
               "nothing there" in w for w in said), said
    mine = [path for path in cache_dir.rglob("*") if path.lstat().st_uid == os.geteuid()]
    assert mine == []
    assert as_another_user(users_run) == "[0, 2, 4, 6] 4"  # the user's entries, whole
    assert memojar_as_user(cache_dir, "ls").startswith("0 ")
    assert memojar_as_user(cache_dir, "clear", "--yes").startswith("0 removed 4 entries")


def test_root_makes_no_cache_in_another_users_folder(shared_folder: Path) -> None:
    """``sudo`` keeping ``$HOME`` before the user ever cached: root made the missing
    ``~/.cache/memojar`` (and ``~/.cache``) in the user's home, root's and 0700, so the
    user's every later call warned "not cached (Permission denied)", their ``cache_info()``
    raised ``PermissionError`` and ``memojar ls`` said there was no cache; ``~/.cache`` was
    closed to every program of theirs. Now root makes nothing there, says why, and the user
    caches as if root had never run."""
    import memojar

    home = shared_folder / "home"
    home.mkdir(mode=0o700)
    os.chown(home, NOBODY, NOBODY)
    cache_dir = home / ".cache" / "memojar"
    f = memojar.Cache(cache_dir).cached(_double)
    with pytest.warns(memojar.MemojarWarning) as caught:
        assert [f(i) for i in range(4)] == [0, 2, 4, 6]
    said = [str(w.message) for w in caught]
    assert any(f"nobody's folder {home}, where this cache would be made, and this process "
               "runs as root: memojar writes nothing there" in w for w in said), said
    assert list(home.iterdir()) == []
    assert as_another_user(_users_run(cache_dir)) == "[0, 2, 4, 6] 0"
    assert as_another_user(_users_run(cache_dir)) == "[0, 2, 4, 6] 4"


def test_clearing_a_read_only_cache_names_the_whole_path(shared_folder: Path) -> None:
    """A cache made read-only (a shared or archived copy): ``clear`` raised (and ``memojar
    clear`` said) "permission denied: 306f52a954b0d8566e61a7d4a37c88de.pkl", the entry's file
    name without its folder. Now the whole path is named."""
    cache_dir = shared_folder / "c"

    def job() -> str:
        import contextlib
        import io

        import memojar
        from memojar._cli import main

        f = memojar.Cache(cache_dir).cached(_double)
        f(1)
        for folder in [p for p in cache_dir.rglob("*") if p.is_dir()] + [cache_dir]:
            folder.chmod(0o500)
        try:
            memojar.Cache(cache_dir).clear()
        except PermissionError as exc:
            said = f"clear: {exc.filename}\n"
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            main(["--dir", str(cache_dir), "clear", "--yes"])
        return said + err.getvalue()

    said = as_another_user(job)
    path = f"{cache_dir}/{__name__}._double/"
    assert f"clear: {path}" in said, said
    # the command line's one line: what was left, why, and the whole path of the first
    line = said.splitlines()[1]
    assert line.startswith("memojar: permission denied: removed 0 entries; 1 entry was left"
                           ", in folders nobody may not write (read-only"), said
    assert line.count(path) == 1 and line.endswith(".pkl"), said


def test_root_removing_in_another_users_cache_leaves_no_ledger_or_statistics(
        shared_folder: Path) -> None:
    """Root's ``clear``, ``cache_delete`` and ``prune`` in a user's cache with a
    ``max_size`` (or statistics counted): removals are root's to make, but they replaced
    the ledger and the statistics with root's 0600 files (``.size``, ``.size.lock``,
    ``.stats``), so every later write of that user's with a ``max_size`` failed ("not
    cached", permission denied) and its ``prune`` raised; and the user's ``cache_info``
    went on counting the entries root removed. Now nothing of root's is left, the user's
    counts follow, and the user caches and prunes as before."""
    import warnings

    import memojar

    cache_dir = shared_folder / "c"

    def users_run() -> str:
        cache = memojar.Cache(cache_dir, max_size=10**6)
        f = cache.cached(_double)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = [f(i) for i in range(4)] + [f(i) for i in range(4)]
            f.cache_info()
            pruned = cache.prune()
        return f"{values[4:]} {f.cache_info().hits} {pruned}"

    assert as_another_user(users_run) == "[0, 2, 4, 6] 4 0"
    cache = memojar.Cache(cache_dir, max_size=10**6)
    f = cache.cached(_double)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert f.cache_delete(0)
        cache.prune()
        assert cache.clear() == 3
    mine = [path for path in cache_dir.rglob("*") if path.lstat().st_uid == os.geteuid()]
    assert mine == []

    def users_count() -> str:
        return str(memojar.Cache(cache_dir).cached(_double).cache_info().entries)

    # The user's statistics, rewritten in place, no longer count the entries root removed
    # (before: 4 entries, when none was left).
    assert as_another_user(users_count) == "0"
    assert as_another_user(users_run) == "[0, 2, 4, 6] 4 0"


@pytest.mark.parametrize("planted", ["link", "fifo"])
def test_root_removing_in_another_users_cache_never_replaces_its_ledgers_lock(
        shared_folder: Path, planted: str) -> None:
    """Root's ``prune`` and ``clear`` in a user's cache whose size ledger's lock
    (``.size.lock``) is a link or a FIFO (a dangling link restored from a backup, say):
    the removal's cleanup took the ledger's lock, and so replaced what was there with a
    lock file of root's, private; every later write of that user's with a ``max_size`` was
    then returned but not cached ("the size ledger's lock ... is root's"), for good. Now
    root leaves it as it is (the empty folders stay), and the user caches as before."""
    import warnings

    import memojar

    cache_dir = shared_folder / "c"
    lock = cache_dir / ".size.lock"

    def users_run() -> str:
        f = memojar.Cache(cache_dir, max_size=10**6).cached(_double)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = [f(i) for i in range(4)] + [f(i) for i in range(4)]
        return f"{values[4:]} {f.cache_info().hits}"

    def users_plant() -> str:
        lock.unlink()
        if planted == "link":
            lock.symlink_to(shared_folder / "nowhere")
        else:
            os.mkfifo(lock)
        return ""

    assert as_another_user(users_run) == "[0, 2, 4, 6] 4"
    as_another_user(users_plant)
    cache = memojar.Cache(cache_dir, max_size=10**6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache.prune()
        assert cache.clear() == 4
    mine = [path for path in cache_dir.rglob("*") if path.lstat().st_uid == os.geteuid()]
    assert mine == []
    assert as_another_user(users_run) == "[0, 2, 4, 6] 4"


def test_memory_in_another_users_cache_says_why_it_is_not_used(shared_folder: Path) -> None:
    """``memory=`` in a script run by root on a user's cache: its warning blamed the file
    system ("made with a hard link: ... such as FAT"), when the stamp is not made because
    memojar writes nothing in another user's cache. Now it says that."""
    import memojar

    cache_dir = shared_folder / "c"

    def users_run() -> str:
        return str(memojar.Cache(cache_dir).cached(_double)(1))

    assert as_another_user(users_run) == "2"
    with pytest.warns(memojar.MemojarWarning) as caught:
        f = memojar.Cache(cache_dir).cached(memory=4)(_double)
        assert f(1) == 2
    (said,) = (str(w.message) for w in caught if "memory=" in str(w.message))
    assert "nobody's memojar cache, and this process runs as root" in said, said
    assert "FAT" not in said


def test_root_tags_no_empty_folder_of_another_users(shared_folder: Path) -> None:
    """A user's own empty folder given as ``cache_dir`` to a script run by root (``sudo``
    keeping the environment): root adopted it, writing its 0600 ``CACHEDIR.TAG`` and
    ``.gitignore``, so the folder was "root's memojar cache" to its owner, whose every
    ``Cache()`` on it raised. Now root leaves it untouched, and the user caches there."""
    import warnings

    import memojar

    cache_dir = shared_folder / "c"
    cache_dir.mkdir(mode=0o700)
    os.chown(cache_dir, NOBODY, NOBODY)
    f = memojar.Cache(cache_dir, max_size=10**6).cached(_double)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [f(i) for i in range(2)] == [0, 2]
    assert list(cache_dir.iterdir()) == []

    def users_run() -> str:
        g = memojar.Cache(cache_dir).cached(_double)
        values = [g(i) for i in range(4)] + [g(i) for i in range(4)]
        return f"{values[4:]} {g.cache_info().hits}"

    assert as_another_user(users_run) == "[0, 2, 4, 6] 4"


def test_root_writes_nothing_in_another_users_folder_of_its_own_cache(
        shared_folder: Path) -> None:
    """A cache of root's that users write to (root made it, and opened it to all): a user's
    function folder in it gets nothing of root's, which that user could not read or
    remove; root's own functions' folders still cache, and so does the user."""

    import memojar

    cache_dir = shared_folder / "c"
    memojar.Cache(cache_dir).cached(_triple)(1)  # root's cache, with a function of root's
    cache_dir.chmod(0o1777)  # opened to all by hand (and its writers' registry, as
    (cache_dir / ".writers").chmod(0o1777)  # ``chmod -R`` does: else the user is told
    (cache_dir / "CACHEDIR.TAG").chmod(0o644)  # that it may not register there)

    users_run = _users_run(cache_dir)
    assert as_another_user(users_run) == "[0, 2, 4, 6] 0"
    f = memojar.Cache(cache_dir).cached(_double)
    with pytest.warns(memojar.MemojarWarning) as caught:
        assert [f(i) for i in range(8)] == [0, 2, 4, 6, 8, 10, 12, 14]
    assert any("nobody's folder, and this process runs as root: memojar writes nothing "
               "there" in str(w.message) for w in caught)
    (users,) = (p for p in _function_folders(cache_dir) if p.owner() == "nobody")
    assert [p for p in users.rglob("*") if p.lstat().st_uid == os.geteuid()] == []
    assert as_another_user(users_run) == "[0, 2, 4, 6] 4"
    g = memojar.Cache(cache_dir).cached(_triple)
    assert (g(1), g(1), g.cache_info().hits) == (3, 3, 2)  # root's own: hits


def test_a_user_caches_in_a_folder_another_user_opened_to_all(shared_folder: Path) -> None:
    """Only root is refused another user's folder. A folder of a third user's (uid 1234)
    that its owner opened to all, as a share shows every file as one user's (NFS with
    ``all_squash``, SMB with ``uid=``): the process's user caches there as in its own (for
    a while every user but the owner was refused there, a secret or not)."""
    cache_dir = shared_folder / "c"
    cache_dir.mkdir()
    os.chown(cache_dir, 1234, 1234)
    cache_dir.chmod(0o1777)
    users_run = _users_run(cache_dir)
    assert as_another_user(users_run) == "[0, 2, 4, 6] 0"
    assert as_another_user(users_run) == "[0, 2, 4, 6] 4"


def test_a_cache_sent_to_another_users_process_trusts_that_users_entries(
        shared_folder: Path) -> None:
    """A cache pickled by one user and loaded by another's process (a worker started as
    another user, on a shared file system) trusts the entries of the process's own user.
    Before, the copy kept the sender's user: it refused the worker's own entries (a miss
    every time, and a warning) and would have unpickled the sender's."""
    import pickle
    import warnings

    import memojar
    from memojar._filestore import FileStore

    cache_dir = shared_folder / "c"

    def users_run() -> str:
        f = memojar.Cache(cache_dir).cached(_double)
        return str([f(i) for i in range(4)])

    assert as_another_user(users_run) == "[0, 2, 4, 6]"
    sent = pickle.dumps(FileStore(cache_dir))  # as a memo sends a store it was given

    def workers_run() -> str:
        f = memojar.Cache(store=pickle.loads(sent)).cached(_double)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = [f(i) for i in range(4)]
        return f"{values} {f.cache_info().hits}"

    assert as_another_user(workers_run) == "[0, 2, 4, 6] 4"


def test_a_folder_the_user_cannot_read_is_named_whole_with_its_owner(
        shared_folder: Path) -> None:
    """A user's cache holding a shard root made (by an older memojar run with ``sudo``, or
    by hand): the command line named it "permission denied: 3c", a name relative to a
    folder it did not say. Now the whole path, whose it is, and what to do."""
    import memojar

    cache_dir = shared_folder / "c"

    def users_run() -> str:
        f = memojar.Cache(cache_dir).cached(_double)
        return str(f(1))

    assert as_another_user(users_run) == "2"
    (function_folder,) = _function_folders(cache_dir)
    (function_folder / "3c").mkdir(mode=0o700)  # root's
    for argv, after in ((["ls"], ""), (["clear", "--yes"], "; nothing removed"),
                        (["prune"], "")):
        said = memojar_as_user(cache_dir, *argv)
        assert said == (f"1 memojar: permission denied (a folder of root's, which this user "
                        f"cannot read: remove it as root): {function_folder / '3c'}{after}\n"
                        ), said


def memojar_as_user(cache_dir: Path, *argv: str) -> str:
    """The command line on ``cache_dir``, run as another user: its exit status and what it
    wrote."""
    import contextlib
    import io

    from memojar._cli import main

    def run() -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            status = main(["--dir", str(cache_dir), *argv])
        return f"{status} {out.getvalue()}"

    return as_another_user(run)


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True, timeout=TIMEOUT)
    return int(child.stdout)


# A folder holding only a file named as memojar names its temporary tag. It is a root being
# tagged (or left so by a memojar killed while tagging it) if that file holds (a beginning
# of) memojar's tag text, whenever and by whomever it was written: only memojar writes that.
TAG_TEMPS = {  # (writer, age in seconds, content): adopted?
    "old, its process gone": ("dead", 7200, "tag", True),
    "old, another host's": ("other host", 7200, "tag", True),
    "old, killed before writing": ("dead", 7200, "", True),
    "young, its process gone": ("dead", 0, "tag", True),
    "young, not a tag": ("dead", 0, "my data\n", False),
    "old, its process alive, not a tag": ("alive", 7200, "my data\n", False),
}


@pytest.mark.parametrize("case", list(TAG_TEMPS))
def test_a_folder_holding_only_a_temporary_tag_is_adopted_only_if_it_holds_memojars_tag(
    tmp_path: Path, case: str
) -> None:
    from memojar import Cache, _filestore

    writer, age, content, adopted = TAG_TEMPS[case]
    pid = {"dead": _dead_pid(), "alive": os.getpid(), "other host": 1}[writer]
    host = "0123abcd" if writer == "other host" else _filestore._HOST
    folder = tmp_path / "mine"
    folder.mkdir()
    temp = folder / f"CACHEDIR.TAG.{pid}-{host}.0badf00d.tmp"
    temp.write_text(_filestore._TAG_TEXT if content == "tag" else content)
    when = time.time() - age
    os.utime(temp, (when, when))
    before = snapshot(folder)
    if adopted:
        Cache(folder).cached(abs)(-1)
        assert b"memojar" in (folder / "CACHEDIR.TAG").read_bytes()
        return
    with pytest.raises(ValueError, match=r"holds only .*CACHEDIR\.TAG\..*\.tmp.*delete"):
        Cache(folder)
    proc = memojar("--dir", str(folder), "ls")
    assert proc.returncode == 1 and temp.name in proc.stderr, proc
    for argv in (["prune"], ["clear", "--yes"], ["info"]):
        assert memojar("--dir", str(folder), *argv).returncode == 1
    assert snapshot(folder) == before


# The user's folder appears at the cache's path after the cache was opened: before memojar
# made it ("made later": ``Cache("out")`` at the top of a script that then writes its own
# output into a new ``out/``), or in place of the cache while a process runs ("replaced").
LATE_FOLDER = """
import os, shutil, warnings
import memojar
from work import work
cache = memojar.Cache(os.environ["CACHE"], max_size=int(os.environ["MAX"]) or None)
f = cache.cached(work)
if os.environ["WHEN"] == "replaced":
    f(1)
    shutil.rmtree(os.environ["CACHE"])
os.rename(os.environ["MINE"], os.environ["CACHE"])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    print(f(2), f(2), f.cache_info().misses, all("did not create" in str(w.message)
                                                 for w in caught) and len(caught))
cache.flush_stats()
"""


@pytest.mark.parametrize("max_size", [0, 10_000_000], ids=["unbounded", "max_size"])
@pytest.mark.parametrize("when", ["made later", "replaced"])
def test_a_folder_of_yours_at_the_path_later_is_refused_and_left_as_it_was(
    tmp_path: Path, when: str, max_size: int
) -> None:
    folder = users_folder(tmp_path / "mine")
    (tmp_path / "work.py").write_text(MODULE)
    before = snapshot(folder)
    cache = tmp_path / "cache"
    out = ok(LATE_FOLDER, CACHE=str(cache), MINE=str(folder), WHEN=when, MAX=str(max_size),
             PYTHONPATH=str(tmp_path))
    calls = 3 if when == "replaced" else 2
    assert out.split() == ["4", "4", str(calls), "2"]  # computed, returned, warned each time
    assert snapshot(cache) == before  # no CACHEDIR.TAG, no folder, no ledger, no .stats


def test_a_new_folder_is_tagged_and_ignored_by_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=TIMEOUT)
    (tmp_path / "work.py").write_text(MODULE)
    cache = repo / "data" / "cache"
    assert ok(USE_CACHE, CACHE=str(cache), PYTHONPATH=str(tmp_path)).strip() == "accepted"
    ok("import os, memojar\nf = memojar.cached(cache_dir=os.environ['CACHE'])(abs)\nf(-1)",
       CACHE=str(cache))
    assert b"memojar" in (cache / "CACHEDIR.TAG").read_bytes()
    assert list(cache.rglob("*.pkl"))
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                            cwd=repo, capture_output=True, text=True, check=True,
                            timeout=TIMEOUT).stdout
    assert status == ""  # nothing of the cache would be committed


def test_an_empty_folder_is_adopted(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (tmp_path / "work.py").write_text(MODULE)
    assert ok(USE_CACHE, CACHE=str(folder), PYTHONPATH=str(tmp_path)).strip() == "accepted"
    assert (folder / "CACHEDIR.TAG").is_file() and (folder / ".gitignore").is_file()
    assert memojar("--dir", str(folder), "info").returncode == 0


def test_an_existing_cache_keeps_working_and_gets_no_new_file(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    code = ("import os, memojar\nf = memojar.cached(abs)\nprint(f(-3), f.cache_info().hits)")
    assert ok(code, MEMOJAR_DIR=str(folder)).split() == ["3", "0"]
    (folder / ".gitignore").unlink(missing_ok=True)  # as written before memojar wrote one
    assert ok(code, MEMOJAR_DIR=str(folder)).split() == ["3", "1"]
    assert not (folder / ".gitignore").exists()


def test_a_cache_tagged_by_an_earlier_memojar_is_accepted(tmp_path: Path) -> None:
    """Earlier versions wrote the tag in place (this text, since the first release) and,
    before 2026-11, no .gitignore: such a cache is memojar's, and gets no new file."""
    folder = tmp_path / "cache"
    (folder / "old.function" / "ab").mkdir(parents=True, mode=0o700)
    (folder / "CACHEDIR.TAG").write_text(
        "Signature: 8a477f597d28d172789f06886806bc55\n"
        "# This file is a cache directory tag created by memojar.\n"
        "# For information about cache directory tags see https://bford.info/cachedir/\n")
    (tmp_path / "work.py").write_text(MODULE)
    out = ok(USE_CACHE.replace("cache.clear()\n", ""), CACHE=str(folder),
             PYTHONPATH=str(tmp_path))
    assert out.strip() == "accepted"
    assert list(folder.rglob("*.pkl")) and not (folder / ".gitignore").exists()


def test_prune_deletes_only_names_memojar_writes(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (tmp_path / "work.py").write_text(MODULE)
    ok(USE_CACHE.replace("cache.clear()\n", ""), CACHE=str(root), PYTHONPATH=str(tmp_path))
    users_folder(root / "mine")
    (root / "mine.tmp").write_text("my file\n")
    before = snapshot(root / "mine")
    ok("import os, memojar\nmemojar.Cache(os.environ['CACHE']).prune()", CACHE=str(root))
    assert memojar("--dir", str(root), "prune").returncode == 0
    assert memojar("--dir", str(root), "clear", "--yes").returncode == 0
    assert snapshot(root / "mine") == before
    assert (root / "mine.tmp").read_text() == "my file\n"


def test_files_of_the_users_at_the_top_of_the_cache_are_left_as_they_are(
    tmp_path: Path,
) -> None:
    """Where memojar's own names sit: a folder of the user's at the top of the cache, files
    in its subfolders named as shards (``results/01/0042.pkl``, a number, which is hex), its
    own ``.lock``. Before, ``prune`` judged ``0042.pkl`` an unreadable entry and deleted it,
    and deleted ``.lock``, ``0042.lock`` and the empty folders ``data/`` and ``mine/ab``."""
    root = tmp_path / "cache"
    (tmp_path / "work.py").write_text(MODULE)
    ok(USE_CACHE.replace("cache.clear()\n", ""), CACHE=str(root), PYTHONPATH=str(tmp_path))
    (root / "data").mkdir()
    (root / "mine" / "ab").mkdir(parents=True)
    (root / "mine" / ".lock").write_text("my lock\n")
    (root / "mine2").mkdir()
    (root / "mine2" / ".swept").write_text("my notes\n")
    (root / "results" / "01").mkdir(parents=True)
    (root / "results" / "01" / "0042.pkl").write_bytes(b"my model\n")
    (root / "results" / "01" / "0042.lock").write_bytes(b"")
    (root / "my.project").mkdir()
    (root / "my.project" / ".lock").write_text("my lock\n")  # a name like a function's
    old = time.time() - 7200  # older than any orphan age
    for path in root.rglob("*"):
        os.utime(path, (old, old), follow_symlinks=False)
    before = {name: snapshot(root / name) for name in ("data", "mine", "mine2", "results",
                                                        "my.project")}
    ok("import os, memojar\nprint(memojar.Cache(os.environ['CACHE']).prune())",
       CACHE=str(root))
    for argv in (["prune"], ["clear", "--yes"], ["prune"]):
        assert memojar("--dir", str(root), *argv).returncode == 0
    ok("import os, memojar\nmemojar.Cache(os.environ['CACHE'], max_size=1).prune()",
       CACHE=str(root))
    assert {name: snapshot(root / name) for name in before} == before
    assert [p.name for p in root.rglob("*.pkl")] == ["0042.pkl"]  # only the user's is left


# --- 2. symbolic links in the cache ---------------------------------------------------------

FILL = """
import os, memojar
cache = memojar.Cache(os.environ["CACHE"])
f = cache.cached(abs)
for i in range(1, 6):
    f(-i)
name = f.__memojar__.name
print(os.path.dirname(os.path.dirname(cache.store.path(name, f.cache_key(-1)))))
"""

EVERYTHING = """
import os, memojar
root = os.environ["CACHE"]
cache = memojar.Cache(root)
listed = [e.function for e in cache.entries()]
print(len(listed), sorted(set(listed)))
cache.prune()
small = memojar.Cache(root, max_size=3000)
g = small.cached(lambda i: bytes(1000) + bytes([i]))
for i in range(8):
    g(i)
small.prune()
cache.clear()
"""


def test_linked_function_folders_and_shards_are_never_followed(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    fdir = Path(ok(FILL, CACHE=str(root)).strip())
    entry = next(fdir.rglob("*.pkl")).read_bytes()  # a real entry, which a listing would take
    victims = []
    for name in ("elsewhere", "elsewhere2"):
        victim = tmp_path / name
        (victim / "ab").mkdir(parents=True)
        (victim / "ab" / ("ab" + "0" * 30 + ".pkl")).write_bytes(entry)
        (victim / "ab" / ("ab" + "1" * 30 + ".pkl.1.0badf00d.tmp")).write_bytes(b"x")
        (victim / "ab" / ("ab" + "2" * 30 + ".lock")).write_bytes(b"")
        (victim / ".lock").write_bytes(b"")
        (victim / "ab" / "empty").mkdir()
        old = time.time() - 7200
        for path in victim.rglob("*"):
            os.utime(path, (old, old))
        victims.append((victim, snapshot(victim)))
    (root / "evil").symlink_to(victims[0][0])  # a function folder
    (fdir / "zz").symlink_to(victims[1][0] / "ab")  # a shard
    for argv in (["ls"], ["ls", "builtins.abs"], ["info"]):
        assert memojar("--dir", str(root), *argv).returncode == 0
    out = ok(EVERYTHING, CACHE=str(root))
    assert out.startswith("5 ['builtins.abs']"), out  # the links' entries are not listed
    for argv in (["prune"], ["clear", "--yes"]):
        assert memojar("--dir", str(root), *argv).returncode == 0
    for victim, before in victims:
        assert snapshot(victim) == before
    assert (root / "evil").is_symlink()


# --- 3. links planted at the names memojar writes ------------------------------------------

PLANTED = """
import os, memojar
root = os.environ["CACHE"]
victim = os.environ["VICTIM"]
os.symlink(victim, os.path.join(root, f".size.{os.getpid()}.tmp"))  # a name it could guess
try:
    cache = memojar.Cache(root, max_size=10_000_000)
except ValueError as exc:  # the tag replaced by a link: no longer memojar's folder
    raise SystemExit(print("refused:", exc))
f = cache.cached(abs)
print(f(-7), f(-8))
cache.prune()
"""


@pytest.mark.parametrize("name", [
    "ledger temp", ".size", ".size.lock", "CACHEDIR.TAG", ".gitignore", "FN/.swept",
    "FN/.lock",
])
def test_a_link_planted_at_a_name_memojar_writes_is_not_written_through(
    tmp_path: Path, name: str
) -> None:
    root = tmp_path / "cache"
    fdir = Path(ok(FILL, CACHE=str(root)).strip())
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    if name != "ledger temp":
        at = fdir / name[3:] if name.startswith("FN/") else root / name
        at.unlink(missing_ok=True)
        at.symlink_to(victim)
    ok(PLANTED, CACHE=str(root), VICTIM=str(victim))
    assert victim.read_text() == "precious\n"
    assert not victim.is_symlink()


def test_a_link_planted_at_the_next_temporary_name_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Temporary names are this host, this pid and a counter: a link planted at the next
    one is neither opened nor written through; the write takes the name after it."""
    import itertools

    from memojar import _filestore

    store = _filestore.FileStore(tmp_path / "cache", max_size=1_000_000)
    key = "ab" + "0" * 30
    path = store.path("fn", key)
    store.write("fn", "ab" + "1" * 30, [b"another entry"])  # memojar makes the shard
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    monkeypatch.setattr(_filestore, "_SEQUENCE", itertools.count(0x1234))
    planted = Path(f"{path}.{os.getpid()}-{_filestore._HOST}.00001234.tmp")
    planted.symlink_to(victim)
    store.write("fn", key, [b"an entry"])
    assert bytes(store.read("fn", key)) == b"an entry"
    assert victim.read_text() == "precious\n"
    assert planted.is_symlink()


@pytest.mark.parametrize("size", [8, 40])
def test_a_hard_link_at_the_generation_stamp_is_never_written_in_place(
    tmp_path: Path, size: int
) -> None:
    """A file of the user's hard-linked at a function's ``.gen`` (the stamp a ``clear``
    rewrites in place for the memory tiers of other processes): a ``clear`` in this process,
    in another and on the command line leave the file as it was. Before, each rewrote its
    first 8 bytes."""
    from memojar import Cache, MemojarWarning

    root = tmp_path / "cache"
    f = Cache(root).cached(memory=10)(abs)
    assert f(-1) == 1
    gen = Path(Cache(root).store.path(f.__memojar__.name, "")).parent / ".gen"
    assert gen.stat().st_size == 8
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious user data, forty bytes long....."[:size])
    gen.unlink()
    os.link(victim, gen)
    before = victim.read_bytes()
    with pytest.warns(MemojarWarning, match="generation stamp"):
        g = Cache(root).cached(memory=10)(abs)  # not its stamp: no memory tier
        assert g(-2) == 2
    assert g.cache_clear() == 2
    assert g(-1) == 1
    ok("import os, memojar\nmemojar.Cache(os.environ['CACHE']).clear()", CACHE=str(root))
    assert memojar("--dir", str(root), "clear", "--yes").returncode == 0
    assert victim.read_bytes() == before


def test_a_hard_link_at_an_entrys_name_keeps_its_times_on_a_read_with_max_size(
    tmp_path: Path,
) -> None:
    """A file of the user's hard-linked at an entry's name, in a cache with ``max_size``
    (whose hits stamp their entry's times, for least-recently-used order): the call reads
    it, finds no entry and computes; the file keeps its modification time. Before, the
    read stamped it before the entry was checked (a build tool then took the file for
    edited)."""
    from memojar import Cache

    f = Cache(tmp_path / "cache", max_size=1_000_000).cached(abs)
    assert f(-1) == 1
    (entry,) = (tmp_path / "cache").glob("*/*/*.pkl")
    victim = tmp_path / "victim"
    victim.write_bytes(b"the user's own file")
    os.utime(victim, ns=(1_000_000_000 * 10**9, 1_000_000_000 * 10**9))
    entry.unlink()
    os.link(victim, entry)
    assert f(-1) == 1
    assert victim.stat().st_mtime_ns == 1_000_000_000 * 10**9  # (its access time is the
    # kernel's to move on a read, relatime)
    assert victim.read_bytes() == b"the user's own file"


def test_a_folder_at_the_ledgers_name_is_left_and_max_size_still_holds(tmp_path: Path) -> None:
    """A folder of the user's at ``.size``, the size ledger's name: writes with ``max_size``
    are stored and evicted down to it (each counts the files), ``prune`` works, the folder
    stays. Before, every such write was returned but not stored (``Is a directory``, with
    a warning) and ``prune`` raised ``IsADirectoryError``."""
    import warnings

    from memojar import Cache

    root = tmp_path / "cache"
    assert Cache(root).cached(abs)(-1) == 1
    (root / ".size").mkdir()
    (root / ".size" / "keep").write_text("mine\n")
    cache = Cache(root, max_size=3000)
    f = cache.cached(lambda i: bytes(500) + bytes([i]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [len(f(i)) for i in range(12)] == [501] * 12
        assert cache.prune() == 0
    assert 0 < f.cache_info().entries < 12
    assert cache.stats().bytes <= 3000
    assert (root / ".size" / "keep").read_text() == "mine\n"


# --- 4. FIFOs at the names memojar opens -----------------------------------------------------

FIFO = """
import os, memojar
root = os.environ["CACHE"]
cache = memojar.Cache(root, max_size=int(os.environ.get("MAX", "0")) or None)
f = cache.cached(abs)
f(-1)
name = f.__memojar__.name
where = os.environ["WHERE"]
path = {
    "entry": cache.store.path(name, f.cache_key(-2)),
    "ledger": os.path.join(root, ".size"),
    "note": os.path.join(os.path.dirname(os.path.dirname(cache.store.path(name, "00"))),
                         ".swept"),
}[where]
os.makedirs(os.path.dirname(path), exist_ok=True)
if os.path.exists(path):
    os.unlink(path)
os.mkfifo(path)
if where == "entry":
    os.mkfifo(path.replace(f.cache_key(-2), "ab" + "0" * 30))  # one no call replaces
again = memojar.Cache(root, max_size=int(os.environ.get("MAX", "0")) or None).cached(abs)
print(again(-2), again(-3))
print(len(list(cache.entries())))
"""


@pytest.mark.parametrize("where", ["entry", "ledger", "note"])
def test_a_fifo_never_blocks(tmp_path: Path, where: str) -> None:
    root = tmp_path / "cache"
    out = ok(FIFO, CACHE=str(root), WHERE=where, MAX="10000000", timeout=20)
    assert out.splitlines()[0] == "2 3"
    for argv in (["ls"], ["ls", "builtins.abs"], ["info"], ["prune"]):
        assert memojar("--dir", str(root), *argv).returncode == 0


@pytest.mark.parametrize("kind", ["folder", "fifo", "link"])
def test_what_is_put_at_an_entrys_name_is_not_deleted_as_the_entry(
    tmp_path: Path, kind: str
) -> None:
    """A folder (with a file of the user's), a FIFO or a link at an entry's name:
    ``cache_delete`` says no entry was removed and leaves it, as ``clear`` and ``prune`` do.
    Before, a folder there made ``cache_delete`` raise ``IsADirectoryError``, and a FIFO or
    a link there was deleted as if it were the entry."""
    import memojar

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    cache = memojar.Cache(tmp_path / "cache", max_size=1_000_000)
    f = cache.cached(abs)
    assert f(-1) == 1
    at = Path(cache.store.path(f.__memojar__.name, f.cache_key(-2)))
    at.parent.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        at.mkdir()
        (at / "keep").write_text("mine\n")
    elif kind == "fifo":
        os.mkfifo(at)
    else:
        at.symlink_to(victim)
    assert f.cache_contains(-2) is False
    assert f.cache_delete(-2) is False
    assert f.cache_delete(-1) is True
    assert cache.clear() == 0
    assert cache.prune() == 0
    if kind == "folder":
        assert (at / "keep").read_text() == "mine\n"
    elif kind == "fifo":
        assert at.is_fifo()
    else:
        assert at.is_symlink()
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("where", ["a function's folder", "a folder of the user's"])
def test_a_file_named_like_an_entry_survives_clear_and_prune(tmp_path: Path,
                                                             where: str) -> None:
    """Another tool's pickle named as memojar names entries (``<2 hex>/<32 hex>.pkl``), in
    a function's folder or a folder of the user's in the cache: ``clear``, ``cache_clear``
    and ``prune`` leave it and do not count it removed, as on S3. Before, they removed it by
    its name ("removed 4 entries" for 2)."""
    import memojar

    cache = memojar.Cache(tmp_path / "cache")
    f = cache.cached(abs)
    f(-1)
    fdir = Path(cache.store.path(f.__memojar__.name, f.cache_key(-1))).parent.parent
    at = (fdir if where == "a function's folder" else tmp_path / "cache" / "my.data"
          ) / "ab" / ("ab" + "0" * 30 + ".pkl")
    at.parent.mkdir(parents=True, exist_ok=True)
    at.write_bytes(pickle.dumps({"precious": 1}))
    os.utime(at, (time.time() - 30 * 86_400, time.time() - 30 * 86_400))
    assert cache.prune() == 0
    assert f.cache_clear() == 1
    f(-1)
    assert cache.clear() == 1
    assert pickle.loads(at.read_bytes()) == {"precious": 1}


def test_a_file_named_like_an_entry_is_not_evicted_and_room_is_made_all_the_same(
        tmp_path: Path) -> None:
    """Another tool's pickle at an entry's name, older than every entry: ``max_size``
    eviction leaves it and evicts entries in its place; the cache stays under its size."""
    import memojar

    cache = memojar.Cache(tmp_path / "cache", max_size=9_000)
    f = cache.cached(lambda i: bytes(2_000))
    f(0)
    at = Path(cache.store.path(f.__memojar__.name, f.cache_key(-1)))
    at.parent.mkdir(parents=True, exist_ok=True)
    at.write_bytes(pickle.dumps({"precious": 1}))
    os.utime(at, (time.time() - 86_400, time.time() - 86_400))
    for i in range(1, 12):
        f(i)
    assert pickle.loads(at.read_bytes()) == {"precious": 1}
    kept = [e for e in cache.entries() if e.size > 1_000]
    assert 0 < len(kept) <= 4
    assert f(11) == bytes(2_000)


# --- 5. function names a listing could hide -----------------------------------------------

ODD_NAMES = """
import os, json, memojar
cache = memojar.Cache(os.environ["CACHE"])
funcs = []
for module, qualname in ((".hidden", "f"), ("m", "a/b"), ("m", "nul\\0x"), ("m", "..")):
    def f(x):
        return bytes(1000) + bytes([x])
    f.__module__, f.__qualname__ = module, qualname
    funcs.append(cache.cached(f))
for g in funcs:
    g(1)
print(json.dumps(sorted({e.function for e in cache.entries()})))
small = memojar.Cache(os.environ["CACHE"], max_size=4000)
h = small.cached(lambda i: bytes(1000) + bytes([i]))
for i in range(20):
    h(i)
print(json.dumps(sorted({e.function for e in cache.entries()})))
"""


def test_odd_function_names_stay_visible(tmp_path: Path) -> None:
    import json

    root = tmp_path / "cache"
    first, second = ok(ODD_NAMES, CACHE=str(root)).splitlines()
    names = [".hidden.f", "m...", "m.a/b", "m.nul\0x"]
    assert json.loads(first) == names
    assert not set(json.loads(second)) & set(names)  # evicted, like any other function
    sizes = sum(p.stat().st_size for p in root.rglob("*.pkl"))
    assert sizes <= 4000


WRITE_THROUGH = """
import os, warnings, memojar
cache = memojar.Cache(os.environ["CACHE"])
f = cache.cached(abs)
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    print(f(-1), f(-2), f(-3), f(-1))
"""


@pytest.mark.parametrize("what", ["function folder", "shard"])
def test_nothing_is_written_through_a_linked_function_folder(tmp_path: Path, what: str) -> None:
    root = tmp_path / "cache"
    fdir = Path(ok(FILL, CACHE=str(root)).strip())
    victim = tmp_path / "elsewhere"
    victim.mkdir()
    if what == "shard":
        for shard in fdir.iterdir():
            if shard.is_dir():
                subprocess.run(["rm", "-r", str(shard)], check=True, timeout=TIMEOUT)
                shard.symlink_to(victim)
    else:
        subprocess.run(["rm", "-r", str(fdir)], check=True, timeout=TIMEOUT)
        fdir.symlink_to(victim)
    assert ok(WRITE_THROUGH, CACHE=str(root)).split() == ["1", "2", "3", "1"]
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize("what", ["function folder", "shard"])
def test_a_folder_replaced_by_a_link_in_a_running_process_is_not_written_through(
    tmp_path: Path, what: str
) -> None:
    """The miss path writes relative to the function folder this process opened: a folder
    (or shard) removed and replaced by a link since is not followed."""
    import warnings

    from memojar import Cache

    cache = Cache(tmp_path / "cache")
    f = cache.cached(abs)
    assert f(-1) == 1  # the folder opened
    entry = Path(cache.store.path(f.__memojar__.name, f.cache_key(-2)))
    f.refresh(-2)  # its shard made
    target = entry.parent.parent if what == "function folder" else entry.parent
    victim = tmp_path / "elsewhere"
    (victim / entry.parent.name).mkdir(parents=True)  # what the link would lead into
    subprocess.run(["rm", "-r", str(target)], check=True, timeout=TIMEOUT)
    target.symlink_to(victim if what == "function folder" else victim / entry.parent.name)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert f(-2) == 2
    assert snapshot(victim) == {entry.parent.name: "dir"}



def test_a_function_folder_moved_out_of_the_cache_and_linked_back_is_not_written_through(
        tmp_path: Path) -> None:
    """The function's folder moved out of the cache while the process runs, and a link to
    it put at its name: the folder is the one this process opened, but reached through a
    link, where listings, ``prune`` and ``max_size`` never look (links are not followed):
    nothing is written there. (A miss that opened the shard by its path and checked only
    its parent's inode wrote through the link into every shard that was there.)"""
    import warnings

    from memojar import Cache

    cache = Cache(tmp_path / "cache")
    f = cache.cached(abs)
    assert f(-1) == 1  # the folder opened
    entry = Path(cache.store.path(f.__memojar__.name, f.cache_key(-2)))
    f.refresh(-2)  # its shard made
    entry.unlink()
    folder = entry.parent.parent
    moved = tmp_path / "moved"
    folder.rename(moved)
    folder.symlink_to(moved)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert f(-2) == 2
    assert not (moved / entry.parent.name / entry.name).exists()


SWAP = """
import os, sys, time
target, aside, victim, seconds = sys.argv[1:5]
end = time.monotonic() + float(seconds)
while time.monotonic() < end:
    try:
        os.rename(target, aside)
    except OSError:  # made again by the writer meanwhile, or not yet
        time.sleep(0.0005)
        continue
    os.symlink(victim, target)
    time.sleep(0.0005)
    os.unlink(target)
    try:
        os.rename(aside, target)
    except OSError:  # the writer made it again meanwhile: the one moved aside goes
        os.system(f"rm -rf '{aside}'")
    time.sleep(0.0005)
"""

SWAPPED_WRITES = """
import os, subprocess, sys, time, warnings, memojar
cache = memojar.Cache(os.environ["CACHE"], max_size=int(os.environ["MAX_SIZE"]) or None)
f = cache.cached(abs)
victim, seconds = os.environ["VICTIM"], os.environ["SECONDS"]
warnings.simplefilter("ignore", memojar.MemojarWarning)
f(-1)
target = os.path.dirname(cache.store.path(f.__memojar__.name, f.cache_key(-1)))
if os.environ["WHAT"] == "function folder":  # the link leads to a folder with that shard
    os.mkdir(os.path.join(victim, os.path.basename(target)))
    target = os.path.dirname(target)
swapper = subprocess.Popen([sys.executable, "-c", os.environ["SWAP"], target,
                            target + "-aside", victim, seconds])
end = time.monotonic() + float(seconds)
writes = 0
while time.monotonic() < end and not any(files for _, _, files in os.walk(victim)):
    f.refresh(-1)
    writes += 1
swapper.kill()
swapper.wait()
print(writes)
"""


@pytest.mark.parametrize("max_size", [0, 10**8], ids=["plain", "max_size"])
@pytest.mark.parametrize("what", ["shard", "function folder"])
def test_a_write_racing_a_folder_swapped_for_a_link_writes_nothing_outside(
    tmp_path: Path, what: str, max_size: int
) -> None:
    """A shard (or the function folder) swapped for a link to a folder outside the cache
    and back, every half millisecond (by someone who can write the folder above it), while
    writes run for up to 3 s. Before, a ``max_size`` write (a named temporary file) checked
    the folders with ``lstat`` and then created and renamed its temporary file by path, and
    the plain write opened its unnamed file in the shard by name and linked it at
    ``shard/name``: the temporary file or the entry landed in the folder the link led to
    (within a second here). Both now work relative to the shard's descriptor, opened
    ``O_NOFOLLOW`` from the function folder's."""
    victim = tmp_path / "elsewhere"
    victim.mkdir()
    writes = ok(SWAPPED_WRITES, CACHE=str(tmp_path / "cache"), VICTIM=str(victim),
                SECONDS="3", WHAT=what, SWAP=SWAP, MAX_SIZE=str(max_size))
    planted = {name: what for name, what in snapshot(victim).items() if what != "dir"}
    assert planted == {}, f"after {writes.strip()} writes"
    assert int(writes) > 100, writes  # the race was run


@pytest.mark.parametrize("operation", ["sweep note", "generation stamp", "bump", "discard"])
def test_a_function_folder_swapped_for_a_link_just_after_its_check_is_not_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    """The function folder is swapped for a link to a folder outside the cache right after
    memojar's ``lstat`` of it (the window another user of a shared cache, or a hostile
    process, races for). Before, the sweep note (its temporary file and rename), the
    generation stamp (its temporary file, link, and the removal of a link planted at its
    name), ``bump`` (8 bytes written into an 8-byte ``.gen`` where the link led) and
    ``discard`` (the key's lock file) then went by path, through the link. Now each is made
    relative to a descriptor of the folder opened without following links."""
    from memojar import Cache

    cache = Cache(tmp_path / "cache")
    f = cache.cached(abs)
    assert f(-1) == 1
    name, key = f.__memojar__.name, f.cache_key(-1)
    entry = Path(cache.store.path(name, key))
    fdir = entry.parent.parent
    judged = entry.read_bytes()
    if operation == "bump":
        assert cache.store.generation(name) is not None  # a stamp to bump
    victim = tmp_path / "elsewhere"
    victim.mkdir()
    (victim / ".gen").write_bytes(b"12345678")  # a user's 8-byte file, named like a stamp
    (victim / ".swept").write_bytes(b"mine")
    before = snapshot(victim)
    real_lstat = os.lstat
    swapped: list[bool] = []

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        st = real_lstat(path, *args, **kwargs)
        if not swapped and not kwargs.get("dir_fd") and os.fspath(path) == str(fdir):
            swapped.append(True)
            os.rename(fdir, tmp_path / "aside")
            fdir.symlink_to(victim)
        return st

    monkeypatch.setattr(os, "lstat", lstat)
    store = cache.store
    if operation == "sweep note":
        store.write_note(name, b"swept")
    elif operation == "generation stamp":
        (victim / ".gen").unlink()
        (victim / ".gen").symlink_to(victim / ".swept")  # a link planted where it leads
        before = snapshot(victim)
        store.generation(name)
    elif operation == "bump":
        store.bump(name)
    else:
        from memojar import _locks

        (victim / entry.parent.name).mkdir()  # the shard's check passes through the link
        before = snapshot(victim)
        # as in a process that has not locked the key yet: no idle lock description kept
        _locks._close_idle(_locks._idle.pop(str(fdir / _locks.LOCK_FILE), None))
        store.discard(name, key, judged)
    monkeypatch.undo()
    assert snapshot(victim) == before


# --- 4. a write refused by a folder's permissions says which folder, whose, what to do -----


def _warnings_of_calls(cache_dir: Path, umask: int | None = None) -> Callable[[], str]:
    """A job for ``as_another_user``: ``_double`` of 0 and 1 on ``cache_dir`` (under
    ``umask``, if given), the values and what memojar warned, one line each."""

    def run() -> str:
        import warnings

        import memojar

        if umask is not None:
            os.umask(umask)
        f = memojar.Cache(cache_dir).cached(_double)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = [f(0), f(1)]
        return "\n".join([str(values), *(str(w.message) for w in caught)])

    return run


def test_a_write_in_another_users_private_cache_names_it_as_theirs(
        shared_folder: Path) -> None:
    """Another user's cache (memojar's folders are 0700: this user may not even list it), in
    a folder both reach (a team's). ``Cache(...)`` cannot read its tag, so each call's
    warning is the place to say whose cache it is and what to do. Before, only "writing to
    <cache> failed (Permission denied)", naming no owner; the command line named it."""
    import memojar

    cache_dir = shared_folder / "team-cache"
    memojar.Cache(cache_dir).cached(_double)(5)  # root's cache, 0700
    said = as_another_user(_warnings_of_calls(cache_dir))
    lines = said.splitlines()
    assert lines[0] == "[0, 2]", said
    assert len(lines) == 3, said  # one warning a call: the value returned, not stored
    assert all(f"(permission denied: the folder {cache_dir} is root's memojar cache" in line
               and "Use a folder of your own" in line for line in lines[1:]), said


def test_a_write_in_another_users_cache_opened_read_only_says_so(shared_folder: Path) -> None:
    """Another user's cache its owner opened to others to read only (``chmod -R go+rX``, or
    an ACL granting read): this user's new results are returned, not stored, and the
    warning says the cache may be read but not written, not that it cannot be read."""
    import memojar

    cache_dir = shared_folder / "team-cache"
    memojar.Cache(cache_dir).cached(_double)(5)
    for dirpath, _dirs, files in os.walk(cache_dir):
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
    said = as_another_user(_warnings_of_calls(cache_dir))
    lines = said.splitlines()
    assert lines[0] == "[0, 2]" and len(lines) == 3, said
    assert all(f"the folder {cache_dir} is root's memojar cache, which this user may read "
               "but not write in" in line for line in lines[1:]), said


def test_a_cache_made_under_a_umask_taking_the_owners_bits_says_to_give_them_back(
        shared_folder: Path) -> None:
    """A process whose umask takes the owner's write bit (0200, 0277) makes the cache's
    folder ``dr-x------``: memojar can write nothing in the cache it made, in that process
    and every later one. Each value is returned with a warning; before, it said only
    "Permission denied", not which folder, that it is the user's own, nor what to do."""
    cache_dir = shared_folder / "c"
    said = as_another_user(_warnings_of_calls(cache_dir, umask=0o277))
    lines = said.splitlines()
    assert lines[0] == "[0, 2]", said
    assert len(lines) == 3, said
    assert all(f"the folder {cache_dir} is this user's, but it may not write in it" in line
               and "chmod u+rwx" in line for line in lines[1:]), said
    said = as_another_user(_warnings_of_calls(cache_dir))  # the usual umask: still so
    assert said.count("chmod u+rwx") == 2, said


def test_a_write_in_another_users_shard_names_it_and_its_owner(shared_folder: Path) -> None:
    """A cache shared by hand (``chmod -R a+rwX``) where root, after the sharing, made a
    shard (0700): another user's calls whose keys fall there are returned, not stored.
    Before, the warning said "Permission denied" naming only the cache; now the shard,
    whose it is, and what to do."""
    import memojar

    cache_dir = shared_folder / "c"
    f = memojar.Cache(cache_dir).cached(_double)
    f(0)
    for dirpath, _dirs, files in os.walk(cache_dir):
        os.chmod(dirpath, 0o777)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o666)
    (function_folder,) = _function_folders(cache_dir)
    shard = function_folder / f.cache_key(1)[:2]
    assert f.cache_key(0)[:2] != shard.name
    shard.mkdir(mode=0o700)  # root's, private
    said = as_another_user(_warnings_of_calls(cache_dir))
    lines = said.splitlines()
    assert lines[0] == "[0, 2]", said
    (refused,) = (line for line in lines if "not cached" in line)  # f(1)'s: f(0) is stored
    assert (f"permission denied: folders in {function_folder} that root made are root's "
            "alone" in refused and f"chmod -R go+rwX {function_folder})" in refused), said


def test_a_write_in_a_folder_root_left_in_the_users_cache_says_to_remove_it_as_root(
        shared_folder: Path) -> None:
    """A user's own cache holding a shard root made (an older memojar run with ``sudo``, or
    by hand): the user's calls whose keys fall there are returned, not stored, with a
    warning naming the shard and what to do (before: "Permission denied" after the
    cache's name)."""
    import memojar

    cache_dir = shared_folder / "c"
    assert as_another_user(_warnings_of_calls(cache_dir)) == "[0, 2]"
    (function_folder,) = _function_folders(cache_dir)
    key = memojar.Cache(cache_dir).cached(_double).cache_key(7)
    (function_folder / key[:2]).mkdir(mode=0o700)  # root's

    def users_run() -> str:
        import warnings

        f = memojar.Cache(cache_dir).cached(_double)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = f(7)
        return "\n".join([str(value), *(str(w.message) for w in caught)])

    said = as_another_user(users_run)
    assert said.startswith("14\n") and said.count("not cached") == 1, said
    assert (f"permission denied: the folder {function_folder / key[:2]} is root's, in this "
            "user's cache" in said and "remove it as root" in said), said


@pytest.mark.parametrize("home_mode", [0o700, 0o755], ids=["closed", "readable"])
def test_a_cache_in_another_users_home_names_the_folder_barring_it(
        shared_folder: Path, home_mode: int) -> None:
    """A process run as another user keeping this user's ``$HOME`` (``sudo -u``, as
    Ubuntu's did): its default cache is in a home it may not enter (0700) or make folders
    in (0755). Each value is returned with a warning naming that folder, whose it is and
    what to do, and ``cache_info()`` raises with the same words; before, both said only
    "Permission denied" after the cache's path."""
    import memojar

    home = shared_folder / "home"
    home.mkdir(mode=home_mode)  # root's
    cache_dir = home / ".cache" / "memojar"
    said = as_another_user(_warnings_of_calls(cache_dir))
    lines = said.splitlines()
    assert lines[0] == "[0, 2]" and len(lines) == 3, said
    why = "may not enter it" if home_mode == 0o700 else "may not make folders in it"
    assert all(f"permission denied: the folder {home} is root's, and nobody {why}" in line
               and "give this process a cache directory of its own" in line
               for line in lines[1:]), said
    assert not cache_dir.parent.exists()

    def info() -> str:
        try:
            memojar.Cache(cache_dir).cached(_double).cache_info()
        except PermissionError as exc:
            return str(exc)
        return "no error"

    said = as_another_user(info)
    if home_mode == 0o755:  # missing, and seen to be: nothing stored, no error
        assert said == "no error", said
    else:
        assert said.startswith(f"[Errno 13] permission denied: the folder {home} is root's, "
                               "and nobody may not enter it"), said


def test_a_default_cache_unreachable_with_home_unset_says_home_is_unset() -> None:
    """A service's process with ``$HOME`` unset (cron, systemd, ``env -u HOME``) whose user's
    home in the password database does not exist (nobody's ``/nonexistent``): its default
    cache cannot be made there. Each value is returned with a warning saying ``$HOME`` is
    unset and which home was used; before, it guessed "a process run as nobody with another
    user's $HOME, as sudo -u keeping it?", with no $HOME at all."""
    import pwd

    home = pwd.getpwuid(NOBODY).pw_dir
    if os.path.lexists(home):
        pytest.skip(f"nobody's home, {home}, exists here")
    cache_dir = os.path.join(home, ".cache", "memojar")

    def run() -> str:
        for name in ("HOME", "MEMOJAR_DIR", "XDG_CACHE_HOME"):
            os.environ.pop(name, None)
        import warnings

        import memojar

        f = memojar.Cache().cached(_double)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = [f(0), f(1)]
        return "\n".join([str(values), *(str(w.message) for w in caught)])

    said = as_another_user(run)
    lines = said.splitlines()
    assert lines[0] == "[0, 2]" and len(lines) == 3, said
    assert all(f"the cache directory {cache_dir} cannot be reached ($HOME is unset, and "
               f"nobody's home in the password database is {home})" in line
               and "give this process a cache directory of its own" in line
               and "sudo" not in line for line in lines[1:]), said


def test_a_default_cache_in_another_users_home_asks_about_sudo_keeping_home(
        shared_folder: Path) -> None:
    """``sudo -u nobody`` keeping this user's ``$HOME``: the default cache is in a home
    nobody may not enter, and the warning asks whether that is what happened (as before)."""
    home = shared_folder / "home"
    home.mkdir(mode=0o700)  # root's

    def run() -> str:
        os.environ["HOME"] = str(home)
        for name in ("MEMOJAR_DIR", "XDG_CACHE_HOME"):
            os.environ.pop(name, None)
        from memojar._cache import default_directory

        return _warnings_of_calls(Path(default_directory()))()

    said = as_another_user(run)
    lines = said.splitlines()
    assert lines[0] == "[0, 2]" and len(lines) == 3, said
    assert all(f"the cache directory {home}/.cache/memojar cannot be reached (a process run "
               "as nobody with another user's $HOME, as sudo -u keeping it?)" in line
               for line in lines[1:]), said


@pytest.mark.parametrize("where", ["the root", "a function's folder", "a shard"])
def test_a_folder_at_a_temporary_name_is_left_by_prune(tmp_path: Path, where: str) -> None:
    """A folder (holding a file of the user's) named as a dead writer's temporary file,
    at the top of the cache, in a function's folder or in a shard: ``prune()`` and
    ``memojar prune`` leave it and finish, as the census of a write with ``max_size``
    does. Before, ``prune`` raised ``IsADirectoryError`` on it (``memojar prune``: exit
    1, "is a directory"), for every prune after, removing nothing else."""
    import memojar as mj

    root = tmp_path / "cache"
    cache = mj.Cache(root, max_size=1_000_000)
    f = cache.cached(abs)
    assert f(-1) == 1
    entry = Path(cache.store.path(f.__memojar__.name, f.cache_key(-1)))
    pid = _dead_pid()
    at = {"the root": root / f".size.{pid}.tmp",
          "a function's folder": entry.parent.parent / f".swept.{pid}.0000000a.tmp",
          "a shard": entry.parent / f"{entry.name}.{pid}.0000000b.tmp"}[where]
    at.mkdir()
    (at / "keep").write_text("mine\n")
    proc = memojar("--dir", str(root), "prune")
    assert proc.returncode == 0, proc.stderr
    assert cache.prune() == 0
    assert (at / "keep").read_text() == "mine\n"
    assert f(-1) == 1
    assert cache.stats().hits == 1


def test_a_folder_at_an_entrys_name_is_named_in_the_warning(tmp_path: Path) -> None:
    """A folder planted at an entry's name: the value is returned, the folder left, and the
    warning names the entry's file. Before, only the cache's folder ("writing to <cache>
    failed (Is a directory)")."""
    import warnings

    import memojar

    cache = memojar.Cache(tmp_path / "cache")
    f = cache.cached(lambda x: x + 1)
    entry = Path(cache.store.path(f.__memojar__.name, f.cache_key(1)))
    entry.mkdir(parents=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert f(1) == 2
    assert entry.is_dir() and list(entry.iterdir()) == []
    assert [f"(Is a directory: {entry.name})" in str(w.message) for w in caught] == [True]
