"""Entries as files: ``<root>/<function>/<key[:2]>/<key>.pkl``.

Writes go to a temporary file beside the entry and are renamed into place, so a reader sees
the old entry or the new one, never half of one. A hit takes no lock: open, fstat (the owner
check), read, close. A miss takes a per-key ``filelock`` (``flock``: released by the kernel
if the holder dies). The total size lives in a small ledger file, updated under its own lock,
so that ``max_size`` is kept across processes without listing the directory on every write.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator, Sequence
from typing import Any

import xxhash

from ._entry import Miss, header_length
from ._errors import logger, warn
from ._locks import LOCK_FILE, LOCK_SUFFIX, key_lock, remove_if_idle
from ._store import KeyLock, Store, StoredEntry

SUFFIX = ".pkl"
OLD_SUFFIX = ".mj"  # formats 1-3: listed, so that prune removes them
NOTE_FILE = ".swept"  # the identity of the code that last swept the function's entries
TMP_SUFFIX = ".tmp"
MMAP_THRESHOLD = 1 << 20  # entries this large are mapped copy-on-write instead of read
HEAD_BYTES = 4096  # what ``scan`` reads of each entry: the header and then some
EVICT_TO = 0.9  # eviction frees room down to this fraction of max_size, so it runs rarely
ORPHAN_AGE = 3600.0  # a temporary file this old is orphaned even if its pid is alive
_LEDGER = ".size"
_TAG = "CACHEDIR.TAG"
_TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by memojar.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_O_READ_HEAD = _O_READ | getattr(os, "O_NOATIME", 0)
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_IOV_MAX = 512


def function_dir(function: str) -> str:
    """A directory name for a function: its name if that is safe, else a safe, unique one."""
    safe = _SAFE.sub("_", function)[:150]
    if safe == function and not safe.startswith("."):
        return safe
    return f"{safe}-{xxhash.xxh3_64_hexdigest(function.encode())[:8]}"


def is_cache_dir(path: str) -> bool:
    """True if ``path`` holds memojar's tag: the only kind of directory memojar deletes in."""
    return os.path.isfile(os.path.join(path, _TAG))


class FileStore(Store):
    """A directory of entry files. See the module docstring for the layout."""

    def __init__(
        self, directory: str | os.PathLike[str], max_size: int | None = None,
        trust_foreign: bool = False,
    ) -> None:
        root = os.path.abspath(os.path.expanduser(os.fspath(directory)))
        if os.path.exists(root) and not os.path.isdir(root):
            raise ValueError(
                f"cache_dir {root!r} is a file, not a directory: pass a directory path "
                "(memojar creates it if missing)"
            )
        self.root = self.location = root
        self.max_size = max_size
        self._trust_foreign = trust_foreign  # with a secret, the signature decides
        self._uid = os.getuid() if hasattr(os, "getuid") else None
        self._warned_foreign = False
        self._dirs: dict[str, str] = {}  # function name -> its directory, computed once
        self._recounted = False  # the ledger is recounted once per process before trusting it

    def __repr__(self) -> str:
        return f"FileStore({self.root!r})"

    def path(self, function: str, key: str) -> str:
        fdir = self._dirs.get(function)
        if fdir is None:
            fdir = self._dirs[function] = os.path.join(self.root, function_dir(function))
        return f"{fdir}{os.sep}{key[:2]}{os.sep}{key}{SUFFIX}"

    # --- the hit path -------------------------------------------------------------------

    def read(self, function: str, key: str) -> Any | None:
        try:
            fd = os.open(self.path(function, key), _O_READ)
        except OSError:  # missing (the usual miss), a link, unreadable: all a miss
            return None
        try:
            st = os.fstat(fd)
            if st.st_uid != self._uid and self._uid is not None and not self._trust_foreign:
                self._foreign(st)
                return None
            size = st.st_size
            if size >= MMAP_THRESHOLD:
                data: Any = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
            else:
                data = os.read(fd, size)
                if len(data) != size:
                    data = _read_rest(fd, data, size)
            if self.max_size is not None:  # least-recently-used order: stamp the access
                try:
                    os.utime(fd, ns=(time.time_ns(), st.st_mtime_ns))
                except OSError:  # a read-only cache still serves its hits
                    pass
            return data
        except OSError as exc:
            logger.debug("read of %s failed: %s", self.path(function, key), exc)
            return None
        finally:
            os.close(fd)

    def _foreign(self, st: os.stat_result) -> None:
        if not self._warned_foreign:
            self._warned_foreign = True
            warn(
                f"cache directory {self.root} holds entries owned by another user "
                f"(uid {st.st_uid}); memojar never unpickles them and recomputes instead. "
                "For a cache shared between users, give every user the same secret= "
                "(or $MEMOJAR_SECRET) so entries are signed and checked."
            )

    # --- writing ----------------------------------------------------------------------

    def write(
        self, function: str, key: str, chunks: Sequence[Any], expires: float | None = None
    ) -> int:
        path = self.path(function, key)
        size = sum(memoryview(c).nbytes for c in chunks)
        if self.max_size is not None:  # make room first: the new entry fits under max_size
            with self._ledger() as ledger:
                ledger.reserve(size)
        tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
        try:
            try:
                fd = os.open(tmp, _O_CREATE, 0o600)
            except FileNotFoundError:
                _makedirs(os.path.dirname(path), self.root)
                fd = os.open(tmp, _O_CREATE, 0o600)
            try:
                _write_all(fd, chunks)
            finally:
                os.close(fd)
            replaced = _size_of(path) if self.max_size is not None else 0  # for the ledger
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            self._account(-size)
            raise
        self._account(-replaced)
        return size

    def delete(self, function: str, key: str) -> bool:
        path = self.path(function, key)
        size = _size_of(path) if self.max_size is not None else 0  # for the ledger
        if not _unlink(path):
            return False
        self._account(-size)
        return True

    def _account(self, delta: int) -> None:
        """Record a size change in the ledger; only caches with a max_size keep one."""
        if delta and self.max_size is not None:
            with self._ledger() as ledger:
                ledger.add(delta)

    def read_note(self, function: str) -> bytes | None:
        self.path(function, "")  # fills the function's directory in
        try:
            fd = os.open(os.path.join(self._dirs[function], NOTE_FILE), _O_READ)
        except OSError:  # no note yet: the usual first time
            return None
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)

    def write_note(self, function: str, note: bytes) -> None:
        self.path(function, "")
        path = os.path.join(self._dirs[function], NOTE_FILE)
        tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
        fd = os.open(tmp, _O_CREATE, 0o600)
        try:
            os.write(fd, note)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def lock(self, function: str, key: str) -> KeyLock:
        path = self.path(function, key)
        _makedirs(os.path.dirname(path), self.root)
        return key_lock(self._dirs[function], key, path)

    # --- listing and housekeeping ------------------------------------------------------

    def scan(self, function: str | None = None, heads: bool = True) -> Iterator[StoredEntry]:
        if function is not None:
            dirs = [function_dir(function)]
        else:
            dirs = sorted(d for d in _listdir(self.root) if not d.startswith("."))
        for name in dirs:
            fdir = os.path.join(self.root, name)
            for shard in sorted(_listdir(fdir)):
                sdir = os.path.join(fdir, shard)
                for file in _listdir(sdir):
                    if not file.endswith((SUFFIX, OLD_SUFFIX)):
                        continue
                    path = os.path.join(sdir, file)
                    try:
                        st = os.stat(path, follow_symlinks=False)
                        head = _read_head(path) if heads else b""
                    except OSError:  # removed since listed, or unreadable: not an entry now
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    yield StoredEntry(
                        name, file[: file.rindex(".")], st.st_size, st.st_atime, head, path
                    )

    def remove(self, entries: Sequence[StoredEntry]) -> int:
        removed = freed = 0
        for entry in entries:
            if _unlink(entry.location):
                removed += 1
                freed += entry.size
                logger.debug("evict %s %s (%d bytes)", entry.function_dir, entry.key, entry.size)
        self._account(-freed)
        return removed

    def cleanup(self) -> int:
        """Remove orphaned temporary files and idle lock files; recount the ledger.

        Returns the number of temporary files removed (lock files are not entries)."""
        removed = 0
        now = time.time()
        for name in _listdir(self.root):
            fdir = os.path.join(self.root, name)
            if name.startswith(".") or not os.path.isdir(fdir):
                continue
            for shard in _listdir(fdir):
                sdir = os.path.join(fdir, shard)
                if shard.endswith(TMP_SUFFIX) and _orphaned(shard, sdir, now):  # a note's
                    removed += _unlink(sdir)
                for file in _listdir(sdir):
                    path = os.path.join(sdir, file)
                    if file.endswith(TMP_SUFFIX) and _orphaned(file, path, now):
                        removed += _unlink(path)
                    elif file.endswith(LOCK_SUFFIX):
                        remove_if_idle(path)
                _rmdir_if_empty(sdir)
            remove_if_idle(os.path.join(fdir, LOCK_FILE))
            if set(_listdir(fdir)) <= {NOTE_FILE}:  # no entries left: the note goes too
                _unlink(os.path.join(fdir, NOTE_FILE))
            _rmdir_if_empty(fdir)
        if self.max_size is not None:
            with self._ledger() as ledger:
                ledger.set(sum(e.size for e in self.scan(heads=False)))
        return removed

    def evict(self, incoming: int = 0) -> int:
        if self.max_size is None:
            return 0
        with self._ledger() as ledger:
            return ledger.evict(incoming)

    def _ledger(self) -> _Ledger:
        return _Ledger(self)


class _Ledger:
    """The cache's total size in bytes, in ``<root>/.size``, under ``<root>/.size.lock``.

    Only an estimate between recounts (a crash between a rename and the ledger update, or
    files removed by hand, make it drift): every eviction recounts from the directory, so a
    drift costs at most one early eviction or one late one.
    """

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self.path = os.path.join(store.root, _LEDGER)

    def __enter__(self) -> _Ledger:
        from filelock import FileLock

        _makedirs(self.store.root, None)
        self._lock = FileLock(self.path + LOCK_SUFFIX, mode=0o600)
        self._lock.acquire()
        try:
            with open(self.path, "rb") as f:
                self.total = int(f.read() or 0)
        except (OSError, ValueError):
            self.total = None  # no ledger yet, or a damaged one: recount on first use
        if not self.store._recounted:  # caches without max_size write without counting
            self.total = None
            self.store._recounted = True
        self._dirty = False
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._dirty:
                tmp = f"{self.path}.{os.getpid()}{TMP_SUFFIX}"
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "w") as f:  # private like every file of the cache
                        f.write(str(max(self.total or 0, 0)))
                    os.replace(tmp, self.path)
                except BaseException:
                    try:
                        os.unlink(tmp)
                    except OSError:  # never created, or its directory is gone
                        pass
                    raise
        finally:
            self._lock.release()

    def _known(self) -> int:
        if self.total is None:
            self.total = sum(e.size for e in self.store.scan(heads=False))
        return self.total

    def add(self, delta: int) -> None:
        self.total = self._known() + delta
        self._dirty = True

    def set(self, total: int) -> None:
        self.total = total
        self._dirty = True

    def reserve(self, size: int) -> None:
        """Make room for ``size`` more bytes under max_size, then count them."""
        max_size = self.store.max_size
        assert max_size is not None
        if self._known() + size > max_size:
            self.evict(size)
        self.add(size)

    def evict(self, incoming: int) -> int:
        """Remove least-recently-used entries until ``incoming`` bytes fit; recount."""
        max_size = self.store.max_size
        assert max_size is not None
        entries = sorted(self.store.scan(heads=False), key=lambda e: e.accessed)
        total = sum(e.size for e in entries)
        target = max(int(max_size * EVICT_TO) - incoming, 0)
        if total + incoming <= max_size:
            self.set(total)
            return 0
        victims = []
        for entry in entries:
            if total <= target:
                break
            victims.append(entry)
            total -= entry.size
        removed = 0
        for entry in victims:
            if _unlink(entry.location):
                removed += 1
                logger.debug("evict %s %s (%d bytes, lru)", entry.function_dir, entry.key,
                             entry.size)
        self.set(total)
        return removed


# --- small file helpers ---------------------------------------------------------------

def _read_rest(fd: int, data: bytes, size: int) -> bytes:
    parts = [data]
    while data and sum(map(len, parts)) < size:
        data = os.read(fd, size - sum(map(len, parts)))
        parts.append(data)
    return b"".join(parts)  # shorter than fstat said, if the file shrank: verify rejects it


def _write_all(fd: int, chunks: Sequence[Any]) -> None:
    views = [memoryview(c).cast("B") for c in chunks if memoryview(c).nbytes]
    while views:
        n = os.writev(fd, views[:_IOV_MAX])
        while n:
            if n >= views[0].nbytes:
                n -= views.pop(0).nbytes
            else:
                views[0] = views[0][n:]
                n = 0


def _read_head(path: str) -> bytes:
    # O_NOATIME: listing is not use. With relatime, reading a never-read entry stamps its
    # access time, and least-recently-used eviction goes by it.
    try:
        fd = os.open(path, _O_READ_HEAD)
    except PermissionError:  # O_NOATIME needs the file's owner: another user's entry
        fd = os.open(path, _O_READ)
    try:
        head = os.read(fd, HEAD_BYTES)
        try:
            need = header_length(head)
        except Miss:  # not an entry: whoever reads the head says so
            return head
        while len(head) < need:  # 8 bytes a buffer: a result of many arrays runs past
            more = os.read(fd, need - len(head))
            if not more:
                break
            head += more
        return head
    finally:
        os.close(fd)


def _size_of(path: str) -> int:
    try:
        return os.stat(path, follow_symlinks=False).st_size
    except OSError:
        return 0


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:  # removed by another process first: the race we expect
        return False


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _makedirs(path: str, root: str | None) -> None:
    """Create ``path`` and any missing parents, each private to the user (0700).

    ``os.makedirs`` applies its mode to the last directory only; this applies it to all.
    The cache root, when created, gets a CACHEDIR.TAG so backup tools skip it and the
    command line can tell a memojar directory from any other.
    """
    if os.path.isdir(path):
        return
    missing = []
    head = path
    while head and not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:  # another process made it first
            if not os.path.isdir(d):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", d) from None
    top = root if root is not None else path
    tag = os.path.join(top, _TAG)
    if top in missing or not os.path.exists(tag):
        try:
            fd = os.open(tag, _O_CREATE, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as f:
            f.write(_TAG_TEXT)


def _orphaned(name: str, path: str, now: float) -> bool:
    """A temporary file whose writer is gone (its pid is dead) or that is an hour old."""
    try:
        pid = int(name.rsplit(".", 3)[-3])
        age = now - os.stat(path).st_mtime
    except (ValueError, IndexError, OSError):
        return True
    if age > ORPHAN_AGE:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _rmdir_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:  # not empty (the usual case), or gone
        pass
