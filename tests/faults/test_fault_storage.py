"""Attack 5: storage faults. The caller always gets the result; a MemojarWarning names the
fault; once the fault is gone, the next call caches again.

The tests run as root, where permissions do not stop writes and mounting a small tmpfs is not
allowed, so disk-full, read-only and permission faults are raised from the system calls
memojar's file store makes (``os.open``, ``os.writev``, ``os.replace``, ``os.rename``,
``os.link``, ``os.mkdir``, ``os.utime``) for paths in the cache directory only (relative
paths through the directory descriptor they are relative to).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from faultkit import entry_files, subprocess_env, temp_files

from memojar import Cache, MemojarWarning
from memojar._filestore import function_dir

SIZES = [None, 1_000_000]


def _under(path: object, root: Path, dir_fd: int | None = None) -> bool:
    """Whether ``path`` (relative to the directory ``dir_fd``, if given) is in ``root``."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    if dir_fd is not None:
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    return os.fspath(path).startswith(os.fspath(root))


_O_TMPFILE = getattr(os, "O_TMPFILE", -1)  # an unnamed file in a directory: a creation too


def _inject(monkeypatch: pytest.MonkeyPatch, root: Path, fault: str) -> int:
    """Make the calls a fault breaks raise it; return the errno a warning must name."""
    real_open, real_mkdir, real_replace = os.open, os.mkdir, os.replace
    real_rename, real_link = os.rename, os.link
    code = {"ENOSPC": errno.ENOSPC, "EACCES": errno.EACCES}.get(fault, errno.EROFS)

    def error() -> OSError:
        return OSError(code, os.strerror(code))

    def open_(path, flags, *args, dir_fd=None, **kwargs):
        creates = flags & os.O_CREAT or flags & _O_TMPFILE == _O_TMPFILE
        if creates and _under(path, root, dir_fd) and fault in ("EROFS", "EACCES"):
            raise error()
        return real_open(path, flags, *args, dir_fd=dir_fd, **kwargs)

    def mkdir(path, *args, dir_fd=None, **kwargs):
        if _under(path, root, dir_fd) and fault in ("EROFS", "EACCES"):
            raise error()
        return real_mkdir(path, *args, dir_fd=dir_fd, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if _under(src, root) and fault in ("EROFS", "EROFS-at-rename"):
            raise error()
        return real_replace(src, dst, *args, **kwargs)

    def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        if _under(src, root, src_dir_fd) and fault in ("EROFS", "EROFS-at-rename"):
            raise error()
        return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def link(src, dst, *, dst_dir_fd=None, **kwargs):  # naming a written entry: its rename
        if _under(dst, root, dst_dir_fd) and fault in ("EROFS", "EROFS-at-rename"):
            raise error()
        return real_link(src, dst, dst_dir_fd=dst_dir_fd, **kwargs)

    def writev(fd, buffers):
        raise error()

    def utime(*args, **kwargs):
        raise error()

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "link", link)
    if fault == "ENOSPC":
        monkeypatch.setattr(os, "writev", writev)
    if fault == "EROFS":
        monkeypatch.setattr(os, "utime", utime)
    return code


@pytest.mark.file_only("it injects faults into the file system")
@pytest.mark.parametrize("max_size", SIZES, ids=["unbounded", "max_size"])
@pytest.mark.parametrize("fault", ["ENOSPC", "EROFS", "EACCES", "EROFS-at-rename"])
def test_write_fault_returns_result_warns_and_recovers(
    monkeypatch: pytest.MonkeyPatch, cache_dir: Path, fault: str, max_size: int | None
) -> None:
    cache = Cache(cache_dir, max_size=max_size)
    calls: list[int] = []

    @cache.cached
    def f(x: int) -> bytes:
        calls.append(x)
        return bytes([x]) * 5000

    assert f(0) == bytes(5000)
    with monkeypatch.context() as patch:
        code = _inject(patch, cache_dir, fault)
        with pytest.warns(MemojarWarning, match=os.strerror(code)) as caught:
            assert f(1) == b"\1" * 5000
        assert f(0) == bytes(5000)  # what is stored still serves hits during the fault
    assert len(caught) == 1
    assert calls == [0, 1]
    assert temp_files(cache_dir) == []
    assert f(1) == b"\1" * 5000  # the fault is fixed: computed again, and stored
    assert f(1) == b"\1" * 5000
    assert calls == [0, 1, 1]
    assert len(entry_files(cache_dir)) == 2
    if max_size is not None:  # the failed write's reservation was given back
        assert int((cache_dir / ".size").read_text()) == sum(
            p.stat().st_size for p in entry_files(cache_dir)
        )


@pytest.mark.file_only("a directory to delete")
@pytest.mark.parametrize("max_size", SIZES, ids=["unbounded", "max_size"])
def test_cache_directory_deleted_while_running(cache_dir: Path, max_size: int | None) -> None:
    cache = Cache(cache_dir, max_size=max_size)
    calls: list[int] = []

    @cache.cached
    def f(x: int) -> int:
        calls.append(x)
        return x + 100

    assert (f(1), f(2)) == (101, 102)
    shutil.rmtree(cache_dir)
    assert (f(1), f(2)) == (101, 102)  # recomputed; the directory is made again, quietly
    assert (f(1), f(2)) == (101, 102)  # and the results are stored again
    assert calls == [1, 2, 1, 2]
    assert len(entry_files(cache_dir)) == 2
    assert (cache_dir / "CACHEDIR.TAG").is_file()


@pytest.mark.file_only("a directory to remove part way")
@pytest.mark.parametrize("removed", ["its shards", "its function folder"])
def test_a_cache_whose_removal_fails_on_what_a_process_writes_meanwhile_stays_a_cache(
        cache_dir: Path, removed: str) -> None:
    """``rm -rf`` of a cache a process is writing to fails on what the process writes
    meanwhile ("Directory not empty"), after it took out the tag and some folders: the
    process puts the tag back as it makes a shard or a function folder again, so what is
    left is a cache the next process opens. Before, every later process refused it as a
    folder of the user's (``NotACacheDirectory``), for good (5 runs of 5: a process making
    a call every 2 ms while the user ran ``rm -rf``)."""
    cache = Cache(cache_dir)

    @cache.cached
    def f(x: int) -> int:
        return x + 100

    @cache.cached
    def g(x: int) -> int:  # (a folder the removal has not reached)
        return x + 200

    assert (f(1), g(1)) == (101, 201)
    (cache_dir / "CACHEDIR.TAG").unlink()  # the removal under way
    fdir = cache_dir / function_dir(f.__memojar__.name)
    if removed == "its shards":
        for shard in [p for p in fdir.iterdir() if p.is_dir()]:
            shutil.rmtree(shard)
    else:
        shutil.rmtree(fdir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (before, for the function folder: "not cached")
        assert f(2) == 102
    assert (cache_dir / "CACHEDIR.TAG").is_file()
    assert Cache(cache_dir).cached(f.__wrapped__)(2) == 102  # the next process's open


@pytest.mark.file_only("a directory to replace")
@pytest.mark.parametrize("max_size", SIZES, ids=["unbounded", "max_size"])
def test_cache_directory_replaced_by_a_file(cache_dir: Path, max_size: int | None) -> None:
    cache = Cache(cache_dir, max_size=max_size)
    calls: list[int] = []

    @cache.cached
    def f(x: int) -> int:
        calls.append(x)
        return x + 100

    assert f(1) == 101
    shutil.rmtree(cache_dir)
    cache_dir.write_text("not a directory")
    with pytest.warns(MemojarWarning, match=f"(?i){os.strerror(errno.ENOTDIR)}") as caught:
        assert f(1) == 101
        assert f(2) == 102
    assert {str(w.message) for w in caught} == {str(caught[0].message)}
    assert str(cache_dir) in str(caught[0].message)
    assert cache_dir.read_text() == "not a directory"  # memojar never writes over it
    cache_dir.unlink()
    assert (f(1), f(1)) == (101, 101)
    assert calls == [1, 1, 2, 1]
    assert len(entry_files(cache_dir)) == 1


# --- a really full disk: a small tmpfs -----------------------------------------------------

FULL_DISK_JOB = """
import os, sys, warnings
from memojar import Cache
cache = Cache(os.environ["CACHE"], max_size=int(os.environ["MAX"]) if os.environ["MAX"] else None)

@cache.cached
def f(i):
    return bytes([i]) * 20_000

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for i in (1, 2):
        assert f(i) == bytes([i]) * 20_000
print(f.cache_info().misses, [str(w.message) for w in caught])
"""


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 1 MB tmpfs, mounted for the test (root, and a kernel that lets it mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def _fill(mount: Path, free: int) -> Path:
    """A file taking all but ``free`` bytes of the file system."""
    filler = mount / "filler"
    st = os.statvfs(mount)
    with open(filler, "wb") as fh:
        try:
            fh.write(bytes(max(st.f_bavail * st.f_frsize - free, 0)))
        except OSError:  # full before the end: as intended
            pass
    return filler


@pytest.mark.parametrize("max_size", SIZES, ids=["unbounded", "max_size"])
@pytest.mark.parametrize("free", [0, 4096, 8192, 16384, 32768])
def test_a_cache_made_on_a_full_disk_works_once_there_is_room(
        small_tmpfs: Path, free: int, max_size: int | None) -> None:
    """The first process makes the cache on a full disk (its tag, .gitignore, ledger,
    stats, folders, entry: whichever the room runs out at); it gets its values. Once there
    is room, the next process caches, and the cache is whole: tagged, no partial
    .gitignore, its ledger equal to its entries. Before, a root whose tag could not be
    written got its function folder anyway, and every later process refused it as a folder
    of the user's."""
    root = small_tmpfs / "cache"
    env = subprocess_env(CACHE=str(root), MAX="" if max_size is None else str(max_size))

    def run() -> str:
        proc = subprocess.run([sys.executable, "-c", FULL_DISK_JOB], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    filler = _fill(small_tmpfs, free)
    full = run()
    assert "did not create" not in full  # a full disk says so, not that the folder is yours
    filler.unlink()
    assert run().endswith(" []\n")  # what the full disk did not keep is stored, no warning
    assert run().startswith("0 []")  # hits
    assert (root / "CACHEDIR.TAG").read_text().startswith("Signature: ")
    gitignore = root / ".gitignore"  # whole, or none where the disk had no room for it
    assert not gitignore.exists() or gitignore.read_text().endswith("\n*\n")
    assert temp_files(root) == []
    if max_size is not None:
        assert int((root / ".size").read_text()) == sum(
            p.stat().st_size for p in entry_files(root))


PRUNE_FULL = """
import os
from memojar import Cache
cache = Cache(os.environ["CACHE"], max_size=int(os.environ["MAX"]))
print(cache.prune(), len(list(cache.entries())))
"""


def _cache_filling_the_disk(mount: Path, entries: int) -> Path:
    """A cache of ``entries`` entries of 20 KB (``max_size`` 600 KB) on ``mount``, then the
    rest of the file system filled with a file of the user's."""
    root = mount / "cache"
    fill = FULL_DISK_JOB.replace("for i in (1, 2):", f"for i in range({entries}):")
    proc = subprocess.run([sys.executable, "-c", fill], capture_output=True, text=True,
                          env=subprocess_env(CACHE=str(root), MAX="600000"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(entry_files(root)) == entries
    _fill(mount, 0)
    return root


MISSES_ON_A_FULL_DISK = """
import os, warnings
from memojar import Cache, _filestore
counted = []
census = _filestore.FileStore._census
def counting(self):
    counted.append(1)
    return census(self)
_filestore.FileStore._census = counting
cache = Cache(os.environ["CACHE"], max_size=int(os.environ["MAX"]))

@cache.cached
def f(i):
    return bytes([i % 256]) * 20_000

warnings.simplefilter("ignore")  # each result is returned but not stored: no room
for i in range(100, 110):
    assert f(i) == bytes([i % 256]) * 20_000
print(len(counted))
"""


def test_misses_with_max_size_on_a_full_disk_count_the_cache_once(small_tmpfs: Path) -> None:
    """On a full disk, each miss with ``max_size`` reserves room, fails to write, and gives
    the room back: the new total is written over the old in place. Before, the total (which
    a new file has no room for) was removed, and every later miss counted the whole cache
    again (1.2 s a miss at 65,000 entries on a full btrfs)."""
    root = _cache_filling_the_disk(small_tmpfs, 5)
    env = subprocess_env(CACHE=str(root), MAX="600000")
    proc = subprocess.run([sys.executable, "-c", MISSES_ON_A_FULL_DISK], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) <= 1, f"the cache was counted {proc.stdout.strip()} times"
    assert int((root / ".size").read_text()) == sum(p.stat().st_size
                                                    for p in entry_files(root))


def test_prune_on_a_full_disk_evicts_down_to_max_size(small_tmpfs: Path) -> None:
    """A cache that filled a disk (with the user's files), pruned under a smaller
    ``max_size`` to make room: the ledger's new total has no room to be written. Before,
    ``prune`` raised ``OSError: No space left on device`` there, before evicting anything;
    now the stale total is removed (the next use counts again) and entries are evicted."""
    root = _cache_filling_the_disk(small_tmpfs, 20)
    proc = subprocess.run([sys.executable, "-c", PRUNE_FULL], capture_output=True, text=True,
                          env=subprocess_env(CACHE=str(root), MAX="100000"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    removed, left = map(int, proc.stdout.split())
    assert removed > 0 and left == len(entry_files(root)) < 20
    assert sum(p.stat().st_size for p in entry_files(root)) <= 100_000
    ledger = root / ".size"
    assert not ledger.exists() or int(ledger.read_text()) == sum(
        p.stat().st_size for p in entry_files(root))


MEMORY_ON_A_FULL_DISK = """
import os, warnings
from memojar import Cache
cache = Cache(os.environ["CACHE"])

@cache.cached
def f(i):
    return i

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")

    @cache.cached(memory=10)
    def g(i):
        return i + 1

    assert f(1) == 1 and g(1) == 2
print([str(w.message) for w in caught if "memory=" in str(w.message)])
"""


def test_memory_on_a_full_disk_says_the_disk_is_full(small_tmpfs: Path) -> None:
    """A function with ``memory=`` whose generation stamp cannot be made because the disk
    is full: the warning says so (no space left), not that the file system has no hard
    links. Before, it blamed the file system ("a file system without them, such as
    FAT"), on a tmpfs that has them."""
    root = small_tmpfs / "cache"
    env = subprocess_env(CACHE=str(root))
    subprocess.run([sys.executable, "-c", "import os, memojar; "
                    "memojar.Cache(os.environ['CACHE']).cached(abs)(-1)"],
                   env=env, check=True, timeout=60)
    _fill(small_tmpfs, 0)
    proc = subprocess.run([sys.executable, "-c", MEMORY_ON_A_FULL_DISK], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "No space left on device" in proc.stdout, proc.stdout
    assert "FAT" not in proc.stdout


FILE_SIZE_LIMIT_KILLS = """
import os, resource, signal, warnings
from memojar import Cache
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # as in an interpreter embedded without signals
cache = Cache(os.environ["CACHE"], max_size=int(os.environ["MAX"]) if os.environ["MAX"] else None)

@cache.cached
def f(n):
    return b"y" * n

f(1)  # the cache made before the limit
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    print(len(f(1_000_000)), len(f(1_000_000)), len(f(10_000)), len(f(10_000)), flush=True)
print([str(w.message) for w in caught])
print(f.cache_info().hits)
"""


@pytest.mark.parametrize("max_size", SIZES, ids=["unbounded", "max_size"])
def test_a_result_larger_than_the_file_size_limit_is_returned_not_stored(
        tmp_path: Path, max_size: int | None) -> None:
    """A process whose file size limit (``ulimit -f``, RLIMIT_FSIZE) is below a result's
    entry, with SIGXFSZ at its default action (killing the process), as in an interpreter
    embedded without Python's signal handling. Before, writing the entry killed the
    process ("File size limit exceeded"), and the result was lost; now it is returned with
    a warning naming the limit, and a result under the limit is cached."""
    root = tmp_path / "c"
    env = subprocess_env(CACHE=str(root), MAX="" if max_size is None else str(max_size))
    proc = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT_KILLS], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    sizes, warned, hits = proc.stdout.splitlines()
    assert sizes.split() == ["1000000", "1000000", "10000", "10000"]
    assert "file size limit" in warned and "RLIMIT_FSIZE" in warned, warned
    assert int(hits) == 1  # f(10_000) stored, then hit
    assert temp_files(root) == []
