"""Entries as files: ``<root>/<function>/<key[:2]>/<key>.pkl``.

A reader sees the old entry or the new one, never half of one: a write goes to an unnamed
file in the entry's shard (``O_TMPFILE``), linked at the entry's name once whole (or, where
there is no unnamed file, and with ``max_size``, to a named temporary file beside the entry,
renamed into place). A hit takes no lock: open, fstat (the owner check), read, close. A
miss takes a per-key lock (released by the kernel if the holder dies), and writes relative
to the function's folder, opened once per process and used while it is still the folder at
its path, and to the entry's shard, opened from it without following links: a shard or
folder swapped for a link once checked is never written through. The total size lives in
a small ledger file, updated under its own lock, so that ``max_size`` is kept across
processes without listing the directory on every write.

What memojar touches: the root is a folder memojar created (it holds memojar's
``CACHEDIR.TAG`` and a ``.gitignore``), or an empty one it adopts; a non-empty folder
without the tag is refused. Inside it, listing and deleting walk directories by descriptor,
opened with ``O_NOFOLLOW``: a function folder or shard that is a symbolic link is never
entered. Only names memojar writes are ever deleted. Every named file is created with
``O_EXCL | O_NOFOLLOW`` under a name no other writer uses and renamed into place (an
unnamed one is linked at its name, which never follows what is there), and every file is
opened non-blocking and checked to be a regular file before it is read, so a planted
link, FIFO or device is never written through nor waited on.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import math
import mmap
import os
import re
import signal
import socket
import stat
import sys
import threading
import time
import weakref
from _weakref import _remove_dead_weakref  # type: ignore[attr-defined]  # (WeakValueDictionary's)
from collections import deque
from collections.abc import Callable, Container, Iterator, Sequence
from typing import Any, TypeVar

import xxhash

from ._entry import Miss, read_header, written_as_an_entry
from ._errors import PartlyRemoved, logger, warn
from ._ledger import Ledger, Oldest, evict_listed, least_recent
from ._locks import (
    LOCK_FILE,
    LOCK_SUFFIX,
    LOCKS_IN_FUNCTION_DIR,
    O_LOCK,
    kept_at_most,
    key_lock,
    range_lock,
    remove_if_idle,
    retire,
)
from ._store import (
    HEAD_BYTES,
    SECRET_ADVICE,
    KeyLock,
    Store,
    StoredEntry,
    complete_head,
    new_stamp,
)

try:
    import fcntl
except ImportError:  # not POSIX: the ledger falls back to filelock
    fcntl = None  # type: ignore[assignment]
try:
    import resource
except ImportError:  # not POSIX: no file size limit
    resource = None  # type: ignore[assignment]
_SIGXFSZ = getattr(signal, "SIGXFSZ", None)
# The C function (imported by ``signal``): ``signal.getsignal`` makes its answer an enum,
# ten times the cost (some 5,000 instructions, on every miss).
_getsignal: Callable[[int], Any] = getattr(sys.modules.get("_signal"), "getsignal",
                                           signal.getsignal)

SUFFIX = ".pkl"
OLD_SUFFIX = ".mj"  # formats 1-3: listed, so that prune removes them
NOTE_FILE = ".swept"  # the identity of the code that last swept the function's entries
GEN_FILE = ".gen"  # 8 bytes rewritten in place when the function's entries are removed
TMP_SUFFIX = ".tmp"
MMAP_THRESHOLD = 1 << 20  # entries this large are mapped copy-on-write instead of read
ORPHAN_AGE = 3600.0  # a temporary file of another host's writer this old is orphaned
RESERVE_WAIT = 60.0  # seconds a writer waits for room that other writers in flight hold
# Seconds a caller waits for the size ledger's lock, and for the statistics' lock, held by
# another process: held for moments, or for good by a process stopped while holding it
# (Ctrl-Z, a debugger), which costs others this delay, never a hang.
LOCK_WAIT = 60.0
STATS_WAIT = 5.0  # statistics are not worth a longer wait (at exit, every process merges)
_LEDGER = ".size"
_STATS = ".stats"  # hits, misses, time saved per function; entry counts per directory
_STATS_MAX = 64 << 20  # a statistics file larger than this is not memojar's: not read
_TAG = "CACHEDIR.TAG"
_TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by memojar.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
_GITIGNORE = ".gitignore"
_GITIGNORE_TEXT = "# Created by memojar: a cache is not source code.\n*\n"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _boot_id() -> bytes:
    """This boot of this machine (Linux); empty where the system does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read().strip()
    except OSError:
        return b""


def _pid_namespace() -> bytes:
    """This process's pid namespace (Linux): containers of one machine sharing its
    hostname (``docker run --network host``, pods on the host's network) each number
    their processes apart, so a pid in a name says something only within one."""
    try:
        return os.readlink("/proc/self/ns/pid").encode()
    except OSError:
        return b""


def _started(pid: int) -> bytes | None:
    """When process ``pid`` of this host started, in clock ticks since boot (Linux's
    ``/proc/PID/stat``, which no clock change moves); ``b""`` for a live process whose start
    is unknown (no ``/proc``, or hidden from this user); None if there is no such live
    process (none, or a zombie: its writing is over)."""
    if pid <= 0:  # a name no process writes: 0 and below are groups to ``kill``
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
        fields = stat_line[stat_line.rindex(b")") + 2:].split()  # after the command name
        return None if fields[0] in (b"Z", b"X") else fields[19]
    except (OSError, ValueError, IndexError):  # no /proc, or hidden: ask ``kill``
        return b"" if _alive(pid) else None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is alive."""
    if pid <= 0:  # a name no process writes: 0 and below are groups to ``kill``
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process (or pid)
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _process_tag(started: bytes) -> str:
    """Two hex digits of a process's start: another process given the same pid since
    differs (but for one in 256, which is then taken for the writer: its file stays until
    that process ends)."""
    return xxhash.xxh3_64_hexdigest(started)[:2]


# This machine in this boot and pid namespace, in temporary file names (6 hex digits),
# then this process's start (2): a pid says whether the writer is alive only there, and
# only while no other process has taken it since; a writer named so is judged by its
# process, whatever its file's age (a clock set forward, an mtime set back).
_MACHINE = xxhash.xxh3_64_hexdigest(
    b"\0".join([socket.gethostname().encode(), _boot_id(), _pid_namespace()]))[:6]
_HOST = _MACHINE + _process_tag(_started(os.getpid()) or b"")
# The names memojar writes, and so the only ones it deletes.
# A key is 32 hex digits (xxh3-128) and its shard its first two: a user's file of another
# name (``results/01/0042.pkl``) is never listed, judged unreadable and deleted.
_ENTRY = re.compile(r"[0-9a-f]{32}\.(?:pkl|mj)")  # SUFFIX, OLD_SUFFIX
_SHARD = re.compile(r"[0-9a-f]{2}")
_KEY_LOCK = re.compile(r"[0-9a-f]{32}\.lock")
# What ``function_dir`` names a folder: ``module.qualname`` (a dot, never first), or a
# name with 8 hex digits of a hash. Only such a folder's lock file, note and empty shards
# are removed, and it when empty: a folder ``data/`` of the user's is left as it is.
# A folder name ``function_dir`` made with a hash (or a function's own name so spelled).
_HASHED_DIR = re.compile(r".*-[0-9a-f]{8}", re.DOTALL)
_FUNCTION_DIR = re.compile(rf"[^.].*\..*|{_HASHED_DIR.pattern}", re.DOTALL)
_TEMP = re.compile(
    r"(?P<base>[0-9a-f]{32}\.(?:pkl|mj)|\.swept|\.gen|\.size|\.stats|CACHEDIR\.TAG|\.gitignore)"
    r"\.(?P<pid>[0-9]+)(?:-(?P<host>[0-9a-f]{8}))?\.[0-9a-f]{8}\.tmp"
    r"|\.size\.(?P<oldpid>[0-9]+)\.tmp"  # the ledger's temporary file before 2026-11
)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: opening a FIFO planted at an entry's name must not wait for a writer. It costs
# nothing on a regular file, and the fstat that follows rejects anything else.
_O_READ = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_O_STAMP = os.O_RDWR | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_O_READ_HEAD = _O_READ | getattr(os, "O_NOATIME", 0)
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
# An unnamed file in a shard, for the plain write: O_TMPFILE (Linux) implies O_DIRECTORY, and
# O_NOFOLLOW refuses a shard that is a link. It is linked at its name through /proc.
_O_TMPFILE = (
    getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | _NOFOLLOW | _CLOEXEC
)
_PROC_FD = "/proc/self/fd/"
_TMPFILE = hasattr(os, "O_TMPFILE") and os.path.isdir(_PROC_FD)
# What an open with O_TMPFILE says where the file system or kernel has none.
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)
# What ``ftruncate`` says where it cannot extend a file (FAT through FUSE: EPERM).
_NO_GROW = (errno.EPERM, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)
_WRITE_TRIES = 5  # a shard or folder removed under a writer is made again this often
_TRIES = range(_WRITE_TRIES)  # made once: a ``range`` made per miss cost it a frame
_SEP = os.sep  # in the paths made per call: one global, not ``os.sep``'s two lookups
_O_LEDGER_LOCK = os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_IOV_MAX = 512
_DELTAS_KEPT = 4096  # writes' count changes kept before they are added up (``_count``)


def function_dir(function: str, case_safe: bool = False) -> str:
    """A directory name for a function: its name if that is safe, else a safe, unique one.

    ``case_safe`` (the file store's folders): a name with capitals is made unique too, so
    that two functions whose names differ only in case (``f``, ``F``) get two folders on a
    file system that ignores case (FAT, exFAT, macOS and Windows by default, SMB shares):
    names without capitals are unique there as they are, the others carry a hash of the
    exact name. Object stores' keys keep case: their names are the plain ones."""
    safe = _SAFE.sub("_", function)[:150]
    if safe == function and not safe.startswith(".") and not (
            case_safe and safe != safe.lower()):
        return safe
    return f"{safe}-{xxhash.xxh3_64_hexdigest(function.encode())[:8]}"


def is_cache_dir(path: str) -> bool:
    """True if ``path`` holds memojar's tag: the only kind of directory memojar deletes in."""
    try:
        return holds_tag(path)
    except OSError:  # out of descriptors: not known to be one
        return False


def holds_tag(path: str) -> bool:
    """``is_cache_dir``, raising the ``OSError`` of a tag that could not be opened for want
    of descriptors (``EMFILE``, ``ENFILE``): where a folder not memojar's is refused, so
    that a cache of memojar's is not refused as a folder of the user's (``_claim``)."""
    try:
        fd = os.open(os.path.join(path, _TAG), _O_READ)
    except OSError as exc:
        if exc.errno in _OUT_OF_FILES:
            raise
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        text = os.read(fd, 4096)
    except OSError:
        return False
    finally:
        os.close(fd)
    # memojar's tag appears whole (``_mark``): another tool's, even one holding only the
    # signature line that memojar's starts with, is not memojar's.
    return b"memojar" in text


class NotACacheDirectory(ValueError):
    """The directory exists, holds files, and is not one memojar created."""

    def __init__(self, path: str, message: str | None = None) -> None:
        if message is None:  # what the folder holds now says why (a copy keeps the words)
            why = _foreign_tag(path)
            instead = f"e.g. {os.path.join(path, 'memojar')!r}"
            owner = owner_of_unreadable_tag(path)
            message = (
                f"cache_dir {path!r} {others_cache(owner)}" if owner is not None else
                f"cache_dir {path!r}: {why}, {instead}" if why is not None else
                f"cache_dir {path!r} is an existing folder that memojar did not create ("
                f"{why_not_ours(path)}); memojar keeps its entries only in folders it "
                "creates, so that it never deletes or tags your files. Pass a new or empty "
                f"folder instead, {instead}"
            )
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return type(self), (self.path, str(self))


def why_not_ours(path: str) -> str:
    """Why a folder is not memojar's, in words for its owner: what to do about it where
    memojar may have made it (a memojar killed, or another program's tag put there, while
    it was being made)."""
    names = _listdir(path)
    if _tag_temps_only(names):
        return (f"it holds only {', '.join(sorted(names))}, named like memojar's temporary "
                "tag but not holding memojar's tag text. If it is not a file of yours, "
                "delete it and memojar makes the cache here")
    return _foreign_tag(path, names) or f"it holds files and no {_TAG} written by memojar"


def owner_of_unreadable_tag(path: str) -> str | None:
    """The name of the user whose ``CACHEDIR.TAG`` in ``path`` this user may not read:
    another user's cache (memojar writes its files 0600). None if the tag can be read, or
    is missing or not a file."""
    tag = os.path.join(path, _TAG)
    try:
        st = os.lstat(tag)
    except PermissionError:
        # The folder may be listed but not entered (no search permission, as 0744): it is
        # its owner's. Before, an ``UnboundLocalError`` from ``Cache(...)``.
        try:
            return user_name(os.stat(path).st_uid)
        except OSError:
            return None
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        os.close(os.open(tag, _O_READ))
        return None
    except PermissionError:
        return user_name(st.st_uid)
    except OSError:
        return None


def user_name(uid: int) -> str:
    """The login name of ``uid``, else "user <uid>"."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"user {uid}"


def others_cache(owner: str) -> str:
    """The rest of a sentence about a cache of ``owner``'s (``owner_of_unreadable_tag``)
    that begins with the folder's name."""
    return (f"is {owner}'s memojar cache, and memojar keeps a cache private to the user who "
            "made it (folders 0700, files 0600): this user can neither read nor write it. Use "
            "a folder of your own, or, to share results between users, a Redis or S3 cache "
            "with a secret")


def _foreign_tag(path: str, names: list[str] | None = None) -> str | None:
    """What to say of a folder holding nothing but a ``CACHEDIR.TAG`` that is not memojar's
    (and memojar's temporary tags): another program's, put there perhaps while memojar was
    tagging the folder (``_mark``). None for any other folder."""
    names = _listdir(path) if names is None else names
    if _TAG not in names or not all(n == _TAG or _TAG_TEMP.fullmatch(n) for n in names):
        return None
    try:
        mode = os.lstat(os.path.join(path, _TAG)).st_mode
    except OSError:  # gone meanwhile
        return None
    kind = ("a symbolic link" if stat.S_ISLNK(mode) else
            "a file" if stat.S_ISREG(mode) else "something")
    return (f"its {_TAG} is {kind} that memojar did not write (another program put it there, "
            "perhaps while memojar was making this folder its cache), so memojar stores "
            f"nothing in it (every later process would refuse it). Remove that {_TAG} if the "
            "folder holds nothing else of yours, or pass another folder")


def _sane_stats(data: Any) -> dict[str, Any]:
    """The stats file's data with only well-formed rows: a damaged or hand-edited file
    (a row of strings, too short, negative, infinite) made ``memojar ls``, ``saved_stats``
    and ``cache_info`` raise, and every merge fail (so no count was saved any more). A bad
    row reads as none: the next merge writes the file whole again without it."""
    if not isinstance(data, dict):
        return {}
    functions = data.get("functions")
    if "functions" in data:
        data["functions"] = {
            name: [row[0], row[1], float(row[2])]
            for name, row in (functions.items() if isinstance(functions, dict) else ())
            if isinstance(name, str) and isinstance(row, list) and len(row) == 3
            and _count(row[0]) and _count(row[1]) and _count(row[2], seconds=True)
        }
    merged = data.get("merged")
    if "merged" in data:
        data["merged"] = {
            writer: row for writer, row in (merged.items() if isinstance(merged, dict) else ())
            if isinstance(row, list) and len(row) == 2 and isinstance(row[0], str)
            and _count(row[1], seconds=True)
        }
    counts = data.get("counts")
    if "counts" in data:
        data["counts"] = {
            fdir: row for fdir, row in (counts.items() if isinstance(counts, dict) else ())
            if isinstance(row, list) and len(row) == 2 and _count(row[0]) and _count(row[1])
        }
    for key in ("merges", "forgot"):  # a merge number
        if key in data and not _count(data[key]):
            data[key] = 0
    for key in ("listed", "changed"):  # folder -> a merge number
        if key in data:
            kept = data[key]
            data[key] = {fdir: at for fdir, at in (kept.items() if isinstance(kept, dict)
                                                   else ()) if _count(at)}
    return data


# A stats file that cannot be opened for these reasons is read as none by a merge, which
# replaces it: a merge of it was not written (any other error: asked again later)
_NOT_READ = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENOTDIR,
             errno.EISDIR, errno.ENXIO}

# The merges recorded in the stats file (``merge_stats``' ``merge``): each writer's last, with
# when it was written. A writer asks about its last merge within seconds (its next merge):
# those of writers silent for an hour, and all but the newest MERGES_KEPT, are dropped.
MERGED_TTL = 3600.0
MERGES_KEPT = 256


def _merges_kept(merges: dict[str, list[Any]], writer: str,
                 merge_id: str) -> dict[str, list[Any]]:
    now = time.time()
    kept = {w: row for w, row in merges.items() if w != writer and now - row[1] < MERGED_TTL}
    if len(kept) >= MERGES_KEPT:
        kept = dict(sorted(kept.items(), key=lambda item: item[1][1])[1 - MERGES_KEPT:])
    kept[writer] = [merge_id, now]
    return kept


def _identity_of(folder: str) -> tuple[int, int] | None:
    """Which folder is at ``folder`` (its device and inode; None: none)."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _identity(path: str) -> tuple[int, int] | None:
    """Which file is at ``path`` (None: none): a file replaced has another inode."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _count(value: Any, seconds: bool = False) -> bool:
    """A count as the stats file holds it: a whole number >= 0 (``seconds``: or a finite
    float >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float) if seconds else int):
        return False
    return 0 <= value < math.inf


class FileStore(Store):
    """A directory of entry files. See the module docstring for the layout."""

    maps_memory = True  # entries of MMAP_THRESHOLD bytes or more are mapped, not read
    eviction = "ledger"  # a total in ``.size`` under a lock; ``_write`` reserves room first

    def __init__(
        self, directory: str | os.PathLike[str], max_size: int | None = None,
        trust_foreign: bool = False,
    ) -> None:
        root = os.path.abspath(os.path.expanduser(os.fspath(directory)))
        # What ``kept_at_most`` reads, imported now rather than inside the first call: an
        # import takes Python's import lock outside the ``try`` that gives it back, so a
        # Ctrl-C landing just after left it held for good, and every import of every other
        # thread (their first calls' own) waited for ever (a storm of interrupts on the
        # main thread of four calling cached functions: a hang in 1 run of 8 on 3.10).
        try:
            import resource  # noqa: F401
        except ImportError:  # (not POSIX: ``kept_at_most`` does without)
            pass
        # One look: before, ``exists`` then ``isdir``, and a folder removed between the two
        # (or a second look failing, EIO) was reported as a file.
        try:
            is_dir = stat.S_ISDIR(os.stat(root).st_mode)
        except OSError as exc:  # missing (made on the first write), or a fault met on use
            if exc.errno is None:  # not the file system's: the caller's signal handler's
                raise
            is_dir = None
        if is_dir is False:
            raise ValueError(
                f"cache_dir {root!r} is a file, not a directory: pass a directory path "
                "(memojar creates it if missing)"
            )
        location = root
        if is_dir and os.path.islink(root):
            # The user's link to their cache's folder (``MEMOJAR_DIR=/scratch/cache`` on a
            # big disk): the folder it leads to now, where links planted later are refused
            # as in any folder of the cache. Before, the statistics, written only where the
            # root is no link, were never saved (``memojar ls`` said 0 hits, silently).
            root = os.path.realpath(root)
        # Whether the root is known to hold memojar's tag (claimed now, or tagged by this
        # store's first ``_makedirs``): until then, creating a folder checks the tag first.
        self._tagged = bool(is_dir) and _claim(root)
        # The root's (st_dev, st_ino) once known tagged: its tag found gone later is put back
        # only in that folder (``_tag_again``), never in one made at its path since
        self._root_id = _identity_of(root) if self._tagged else None
        self.root, self.location = root, location
        self.max_size = max_size
        self.signed = trust_foreign  # with a secret, the signature decides
        self._uid = os.getuid() if hasattr(os, "getuid") else None
        self._root_writable = False  # the root is known to be this user's or root's
        self._dirs: dict[str, str] = {}  # function name -> its directory, computed once
        # Function name -> (device, inode) of the generation stamp this process mapped
        # (``generation``), None once its folder was seen removed (``restamp``).
        self._stamps: dict[str, tuple[int, int] | None] = {}
        # The function, key and path of the last entry ``read`` found missing (a tuple,
        # replaced whole: threads read it without a lock), which ``maybe_stored`` reuses.
        self._missed: tuple[str, str, str] = ("", "", "")
        # The path, inode, access and modification times before, and the stamp, of the
        # last entry a hit stamped (a tuple, replaced whole), which ``unstamp`` takes back.
        self._stamped: tuple[str, int, int, int, int] = ("", 0, 0, 0, 0)
        # Function name -> its folder, opened by this process (the miss path writes through
        # it); the path of each function's lock file.
        self._open: dict[str, _Folder] = {}
        self._lockers: dict[str, str] = {}
        self._tmpfile = _TMPFILE  # unnamed temporary files work here (until one fails)
        self._truncate_grows = True  # ftruncate extends a file here (until it refuses)
        self._hard_links = True  # link makes a second name here (until it refuses)
        self._recounted = False  # the ledger is recounted once per process before trusting it
        # Function folder -> the stats file's merge number when ``counted`` found no count
        # (the listing that follows is recorded by ``recount`` only if no merged change
        # of the folder came since)
        self._listing_from: dict[str, int] = {}
        # Function folder -> a listing's count this process could not record (a cache it
        # may only read): (the merge number and dead writers when it began, entries,
        # bytes), its count while those stay (``_unrecorded``)
        self._listed_here: dict[str, tuple[tuple[int, frozenset[tuple[str, int]]], int, int]] = {}
        self._dead_found: frozenset[tuple[str, int]] = frozenset()  # by the last count read
        self._forgotten: frozenset[tuple[str, int]] = frozenset()  # their counts dropped
        self._census_whole = True  # the last census saw the size of every file it listed
        # Entries and bytes this process added or removed, not yet merged into the stats
        # file: one tally for every store of this folder in the process (``_Tally``).
        self._tallied = _tally_of(root)
        # Function folders the last walk of them could not see whole: other users' shards
        # in a cache shared by hand (``_shards``), whose counts are not recorded.
        self._unseen: set[str] = set()
        self._stamp_why: str | None = None  # what was found at a stamp's name, if not one
        self._unreadable_said = False  # another user's entry it may not read was warned of
        # The size ledger is another user's, which this one may not replace nor write
        # (``_write_total``): each use counts the files.
        self._total_unwritable = False
        # The ledger's lock file was given the mode of a cache shared by hand (``_flock``).
        self._lock_mode_set = False

    def __repr__(self) -> str:
        return f"FileStore({self.root!r})"

    def __getstate__(self) -> dict[str, Any]:
        """A copy (a function sent to a worker by value) starts with no tally of its own and
        opens the folders itself."""
        state = self.__dict__.copy()
        del state["_tallied"], state["_open"], state["_lockers"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._tallied = _tally_of(self.root)
        self._open, self._lockers = {}, {}
        self._tagged = False  # another process, perhaps another host: looks at the tag again
        # run perhaps by another user: trusts that user's entries, and writes only where
        # that user may
        self._uid = os.getuid() if hasattr(os, "getuid") else None
        self._root_writable = False
        self._unseen, self._stamp_why, self._listing_from = set(), None, {}
        self._listed_here, self._dead_found, self._forgotten = {}, frozenset(), frozenset()

    def close(self) -> None:
        """Close the folders this process opened (a later call opens them again)."""
        self._open.clear()  # each closes when no thread writes through it any more

    def path(self, function: str, key: str) -> str:
        fdir = self._dirs.get(function)
        if fdir is None:
            fdir = self._dirs[function] = os.path.join(self.root,
                                                       function_dir(function, case_safe=True))
        return f"{fdir}{_SEP}{key[:2]}{_SEP}{key}{SUFFIX}"

    # --- the hit path -------------------------------------------------------------------

    def read(self, function: str, key: str) -> Any | None:
        fdir = self._dirs.get(function)  # ``path``, inline: a frame less a hit
        path = (self.path(function, key) if fdir is None
                else f"{fdir}{_SEP}{key[:2]}{_SEP}{key}{SUFFIX}")
        try:
            fd = os.open(path, _O_READ)
        except OSError as exc:  # missing (the usual miss), a link, unreadable: all a miss
            if exc.errno is None:  # not a system call's: the caller's signal handler's
                raise
            self._missed = (function, key, path)  # for the miss's re-check (maybe_stored)
            if exc.errno == errno.EACCES and not self._unreadable_said:
                self._unreadable_entry(path)
            return None
        try:
            st = os.fstat(fd)
            if st.st_uid != self._uid and self._uid is not None and not self.signed:
                if not self._warned:
                    self._foreign(st)
                return None
            if not stat.S_ISREG(st.st_mode):  # a FIFO, socket or device planted there
                return None
            size = st.st_size
            if size >= MMAP_THRESHOLD:
                data: Any = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
            else:
                data = os.read(fd, size)
                if len(data) != size:
                    data = _read_rest(fd, data, size)
            # Least-recently-used order: stamp the access, on a file with no other name (one
            # hard-linked there is a file of someone's, not an entry memojar wrote: its times
            # stay; before, they were stamped before the entry was checked). The times of
            # before are kept: an entry its reader then rejects is no use (``unstamp``).
            if self.max_size is not None and st.st_nlink == 1:
                try:  # both times: FAT keeps no access time (``_used``)
                    now = time.time_ns()
                    os.utime(fd, ns=(now, now))
                    self._stamped = (path, st.st_ino, st.st_atime_ns, st.st_mtime_ns, now)
                except OSError:  # a read-only cache still serves its hits
                    pass
            return data
        except OSError as exc:
            if exc.errno is None:  # not a system call's: the caller's signal handler's
                raise
            logger.debug("read of %s failed: %s", path, exc)
            return None
        finally:
            os.close(fd)

    def look(self, function: str, key: str) -> Any | None:
        """``Store.look``: read, with the entry's times as they were before put back. Before,
        ``unstamp`` took them from the store's record of its last stamp, which another
        thread's hit of another entry had replaced meanwhile: the entry looked at was left
        the most recently used, and eviction removed another in its place. ``read`` stays
        as it is (the hit path); the times are taken here, one ``stat`` before it."""
        if self.max_size is None:  # nothing stamped
            return self.read(function, key)
        path = self.path(function, key)
        try:
            before = os.stat(path, follow_symlinks=False)
        except OSError:
            return self.read(function, key)
        data = self.read(function, key)
        if data is None:
            return None
        try:
            fd = os.open(path, _O_READ)
        except OSError:
            return data
        try:
            st = os.fstat(fd)
            # The file stat'ed (not replaced since), stamped since (by this read; a hit of
            # it in another thread meanwhile is taken back too, a use as near as this look)
            if (stat.S_ISREG(st.st_mode) and st.st_ino == before.st_ino and st.st_nlink == 1
                    and st.st_mtime_ns > before.st_mtime_ns and st.st_uid == _euid()):
                os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))
        except OSError:
            pass
        finally:
            os.close(fd)
        return data

    def unstamp(self, function: str, key: str) -> None:
        """``Store.unstamp``: the times the entry had before this thread's ``read`` stamped
        it are put back, if the file is still the one stamped and has that stamp (nobody
        read it or wrote it again since: a time of another's stays). Before, an entry
        rejected (expired, damaged, another secret's) and left where it was (seen by
        ``cache_contains``, or its discard waiting on a writer of the key) kept the stamp
        of a use: eviction took live entries before it. So too an entry only looked at."""
        path, ino, accessed, modified, now = self._stamped
        if path != self.path(function, key):  # no stamp of it (another thread's since)
            return
        try:
            fd = os.open(path, _O_READ)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            if (stat.S_ISREG(st.st_mode) and st.st_ino == ino and st.st_nlink == 1
                    and st.st_mtime_ns == now and st.st_uid == _euid()):
                os.utime(fd, ns=(accessed, modified))
        except OSError:
            pass
        finally:
            os.close(fd)

    def held_here(self) -> str | None:
        """The size ledger's or the statistics' lock, if this thread holds one (``_flock``)."""
        locks: dict[str, Callable[[], Any]] = _ledgers_held.__dict__.get("locks", {})
        for path, held in locks.copy().items():
            lock = held()
            if lock is not None and lock._fd >= 0:
                return path
        return None

    def maybe_stored(self, function: str, key: str) -> bool:
        """False if there is certainly no entry file for ``key``: the re-check of a miss
        under the key's lock, one ``access`` (no exception raised for the usual answer).
        The path is the one ``read`` just failed to open for the same call (the very
        ``function`` and ``key`` objects: a path depends on nothing else), not made again."""
        missed = self._missed
        if missed[1] is key and missed[0] is function:
            return os.access(missed[2], os.F_OK)
        return os.access(self.path(function, key), os.F_OK)

    def unread(self, function: str, key: str) -> str | None:
        path = self.path(function, key)
        try:
            st = os.stat(path, follow_symlinks=False)
        except PermissionError:
            # A shard this user may not enter: another user's, in a cache shared by hand.
            # Before, "no entry for these arguments", which the entry may well be there.
            shard = os.path.dirname(path)
            try:
                owner = os.stat(shard, follow_symlinks=False).st_uid
            except OSError:
                return None
            if owner == _euid():
                return (f"the entry's folder {shard} is this user's, but it may not enter it "
                        "(its permissions changed by hand: chmod u+rwx)")
            return (f"the entry's folder {shard} is {user_name(owner)}'s and private to "
                    "them: what is there cannot be read by this user")
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return f"what is at the entry's name is not a file ({path}): never read"
        if st.st_uid != self._uid and self._uid is not None and not self.signed:
            return (f"the entry is {user_name(st.st_uid)}'s, and without a secret memojar "
                    "never unpickles another user's entries")
        try:
            os.close(os.open(path, _O_READ))
        except OSError as exc:
            return f"the entry cannot be read ({exc.strerror}: {path})"
        return None

    def _unreadable_entry(self, path: str) -> None:
        """Warn, once per store, that another user's entry (or folder) this user may not
        read makes its calls compute again: a cache shared between users by hand, where
        each user's memojar keeps its new entries and folders private (0600, 0700, whatever
        the umask). Before, nothing was said: with a secret, two users computing the same
        calls replaced each other's entries at every call, and never hit."""
        self._unreadable_said = True
        st, what = None, path
        for what in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
            try:
                st = os.stat(what, follow_symlinks=False)
                break
            except OSError:
                continue
        if st is None or st.st_uid == _euid():
            return  # its own, made unreadable by hand: a miss, as before
        if not self.signed:  # never loaded anyway: the usual warning about others' entries
            if not self._warned:
                self._foreign(st)
            return
        warn(f"{what} is {user_name(st.st_uid)}'s and private to them (memojar keeps each "
             f"user's entries and folders private, 0600 and 0700, also in a cache opened to "
             f"all by hand): {user_name(_euid())}'s calls whose entries are another user's "
             "compute again, whatever the secret. To share results between users, use a "
             "Redis or S3 cache with a secret")

    def _foreign(self, st: os.stat_result) -> None:
        self._untrusted(
            f"cache directory {self.root} holds entries owned by another user "
            f"(uid {st.st_uid}); memojar never unpickles them and recomputes instead. "
            "For a cache shared between users, give every user " + SECRET_ADVICE
        )

    # --- writing ----------------------------------------------------------------------

    def write(
        self, function: str, key: str, chunks: Sequence[Any], expires: float | None = None
    ) -> int:
        if _SIGXFSZ is not None and _getsignal(_SIGXFSZ) == signal.SIG_DFL:
            _within_file_size_limit(chunks)
        try:
            if self.max_size is None and self._tmpfile:  # the plain write: the usual miss's
                try:
                    return self._link_new(function, key, chunks)
                except _NoTmpfile:  # this file system has no unnamed files: temporary names
                    self._tmpfile = False
            return super().write(function, key, chunks, expires)
        except PermissionError as exc:
            raise _refused(exc, self.root, self.path(function, key)) from exc

    def _write(
        self, function: str, key: str, views: list[memoryview], size: int,
        expires: float | None,
    ) -> None:
        """A write with ``max_size`` (room reserved first), or where there are no unnamed
        files: a named temporary file beside the entry, renamed into place.

        Both are made relative to the shard's descriptor, opened ``O_NOFOLLOW`` from the
        function folder's (``_open_shard``): a shard or folder swapped for a link after it
        was opened is never written through. Before, the folders were checked with
        ``lstat`` and the file created and renamed by path: a shard swapped for a link
        in between got the temporary file, or the entry."""
        shard, name = key[:2], f"{key}{SUFFIX}"
        at = [self._open_shard(function, shard)]  # another if the shard is made again
        try:
            if self._tallied.writer != _PID[0]:  # registered before the entry is there
                self._tallied.enlist(self)
            self._write_at(function, shard, name, at, views, size)
        finally:
            os.close(at[0])

    def _write_at(self, function: str, shard: str, name: str, at: list[int],
                  views: list[memoryview], size: int) -> None:
        """``_write`` in the shard whose descriptor is ``at[0]``."""
        made: list[str] = []  # the temporary name once made: an interrupt that loses the
        try:  # return value below still removes it
            written = False
            if self.max_size is not None:  # make room first: the new entry fits under max_size
                fd, tmp, written = self._reserve(function, shard, name, at, size, views, made)
            else:
                fd, tmp = self._create_temp(function, shard, name, at, made)
        except BaseException:
            for made_name in made:
                _unlink(made_name, at[0])
            raise
        sfd = at[0]
        begun = False  # the stamp made busy: made otherwise again whatever happens
        try:
            try:
                if not written:
                    _write_all(fd, views)
            finally:
                os.close(fd)
            replaced = _size_at(name, sfd)  # for the ledger and the entry count
            try:
                # An entry there goes: replaced and recorded under the ledger's lock, as a
                # removal (``_settling``); memory tiers forget the old value before the
                # rename as well as after it, as at a removal: a writer killed between the
                # two (SIGKILL, the OOM killer) left them serving it for good, where every
                # reader of the disk got the new one. (Only one that read the old entry
                # between this bump and the rename kept it: now the stamp is busy until the
                # bump that ends it, ``_bump``.) With none there, the file takes the name
                # only if there is still none: one stored since by a writer not serialised
                # with this one (past ``lock_timeout``) is replaced as above. Before, the
                # rename replaced it unseen by memory tiers, and the ledger counted both.
                if replaced or not self._place_new(tmp, name, sfd):
                    begun = True
                    self._bump(os.path.basename(self._dirs[function]), busy=True)
                    with self._settling() as ledger:
                        replaced = _size_at(name, sfd)
                        os.rename(tmp, name, src_dir_fd=sfd, dst_dir_fd=sfd)
                        if ledger is not None:
                            ledger.settle(-replaced)
            except FileNotFoundError as exc:  # the temporary file went (a shard holding it
                path = os.path.join(self._dirs[function], shard)  # cannot be removed)
                raise OSError(errno.ENOENT, f"the temporary file {path}{_SEP}{tmp} was "
                              "removed while memojar was writing it (by another program?); "
                              "nothing was stored", tmp) from exc
        except BaseException:
            try:
                with self._settling() as ledger:  # the reservation given back, unless the
                    if _unlink_alone(tmp, sfd) and ledger is not None:  # entry is its file
                        ledger.settle(-size)
            except OSError as exc:  # its lock held past LOCK_WAIT: the total over-states
                logger.debug("no ledger update in %s: %s", self.root, exc)  # (recounted)
            finally:
                # The file goes also when the lock was not had (that error, or a second
                # interrupt while waiting for it): before, it stayed, counted as a writer's
                # reservation for the life of the process, and the lock's error replaced
                # the write's own.
                _unlink(tmp, sfd)
                if begun:  # (also when a second interrupt lands on it: ``_each``)
                    _each(self._bump, [os.path.basename(self._dirs[function])])
            raise
        fdir = os.path.basename(self._dirs[function])
        if begun:  # (the entry it replaces may have gone meanwhile: ended all the same)
            # An entry replaced, not only removed, is another value under the key (a
            # stale_while_revalidate recomputation, a caller that waited past lock_timeout,
            # or its holder finishing after it): every process's memory tier holding the
            # old one forgets it, as at a removal. After the rename too: a value read
            # before it and held with the stamp of before is then forgotten at the next call.
            _each(self._bump, [fdir])
        self._count(fdir, 0 if replaced else 1, size - replaced)

    def _place_new(self, tmp: str, name: str, sfd: int) -> bool:
        """Put the written temporary file ``tmp`` at ``name`` in the shard ``sfd`` if
        nothing is there: linked, then its temporary name unlinked (an interrupt between
        leaves it a second name, ``_unlink_alone``). False if something is. Where the file
        system has no hard links (FAT: learned at the first write), renamed, as before:
        there a file stored at the name since ``_size_at`` looked is replaced."""
        if self._hard_links:
            try:
                os.link(tmp, name, src_dir_fd=sfd, dst_dir_fd=sfd, follow_symlinks=False)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                self._hard_links = False
            else:
                _unlink(tmp, sfd)
                return True
        os.rename(tmp, name, src_dir_fd=sfd, dst_dir_fd=sfd)
        return True

    def _link_new(self, function: str, key: str, chunks: Sequence[Any]) -> int:
        """The plain write (no ``max_size``): the entry goes into an unnamed file in its
        shard (``O_TMPFILE``), which is linked at the entry's name; only if an entry is
        there already is it linked at a temporary name and renamed over it. Its size.

        Everything is relative to the shard's descriptor, opened ``O_DIRECTORY |
        O_NOFOLLOW`` from the function's folder as this process opened it without following
        links: nothing is written through a link, with no ``lstat``. Before, the unnamed
        file was opened in the shard by name, and linked at ``shard/name`` relative to the
        folder: a shard swapped for a link between the two got the entry. A crash leaves
        no temporary file: an unnamed one vanishes with its descriptor. The folder is
        checked now, not when the key's lock was taken: a caller that closed every
        descriptor while the function ran may have opened a folder of its own at its number.
        A shard removed after it was opened (``clear``, ``prune``) is made again in the
        folder checked again, and the write tried again (ext4 says ``EPERM`` for it).
        """
        shard = key[:2]
        name = f"{key}{SUFFIX}"
        folder = self._folder(function)
        size = sum(map(len, chunks))  # bytes, or byte views (``Store.write``)
        tallied = self._tallied  # (``_count``'s test, before the entry is there)
        if tallied.writer != _PID[0]:
            tallied.enlist(self)
        begun = ""  # the folder whose stamp a replacement made busy: ended at the end
        try:
            for _ in _TRIES:
                try:  # ``_shard_in``'s usual case, inline (a frame less a miss)
                    sfd = os.open(shard, _O_DIR, dir_fd=folder.fd)
                except OSError as exc:  # missing (made), a link (refused), the folder removed:
                    if exc.errno is None:  # (not a system call's: the caller's signal handler's)
                        raise
                    sfd, folder = self._shard_in(function, folder, shard)  # all in ``_shard_in``
                try:
                    try:
                        fd = os.open(".", _O_TMPFILE, 0o600, dir_fd=sfd)
                    except FileNotFoundError:  # the shard was removed since (an empty one)
                        folder = self._make_shard(function, self._folder(function), shard)
                        continue
                    except OSError as exc:
                        if exc.errno in _NO_TMPFILE:
                            raise _NoTmpfile from exc
                        if exc.errno == errno.EPERM and _removed(sfd):  # ext4's word for it
                            folder = self._make_shard(function, self._folder(function), shard)
                            continue
                        raise
                    try:
                        written = os.writev(fd, chunks) if len(chunks) <= _IOV_MAX else 0
                        if written != size:  # a short write: the rest after it
                            _write_rest(fd, chunks, written)
                        source = f"{_PROC_FD}{fd}"
                        try:
                            try:
                                os.link(source, name, dst_dir_fd=sfd, follow_symlinks=True)
                                replaced = 0
                            except FileExistsError:  # an entry is there (refresh, cache_set,
                                begun = folder.name  # a race): as ``_write_at``
                                self._bump(begun, busy=True)
                                replaced = _rename_over(source, sfd, name)
                        except FileNotFoundError:  # the shard was removed meanwhile (as above),
                            # also once the entry there was seen (before: the result was lost)
                            folder = self._make_shard(function, self._folder(function), shard)
                            continue
                    finally:
                        os.close(fd)
                finally:
                    os.close(sfd)
                # ``_count``, inline (a frame less a miss): keep the two alike
                deltas = tallied.deltas
                deltas.append((folder.name, 0 if replaced else 1, size - replaced))
                if len(deltas) > _DELTAS_KEPT:
                    with tallied.lock:
                        tallied.added_up()
                return size
            raise OSError(errno.ENOENT, "the function's folder keeps being removed",
                          self._dirs[function])
        finally:
            if begun:  # memory tiers holding the old value forget it (see ``_write_at``;
                _each(self._bump, [begun])  # also when a second interrupt lands on it)

    def _folder(self, function: str) -> _Folder:
        """The function's folder as this process writes to it (created if missing).

        The folder opened before is used only while its descriptor is still the one this
        store opened (one ``fstat``: a daemon closes every descriptor and opens its own,
        which get the same numbers) and it is still the folder at the function's path (one
        ``lstat``: a folder moved aside, or the whole cache, would take every result where
        no process reads it, this one included)."""
        folder = self._open.get(function)
        if folder is not None:
            try:
                mine = os.fstat(folder.fd)
            except OSError:  # closed by someone else
                mine = None
            if mine is None or mine.st_ino != folder.ino or mine.st_dev != folder.dev:
                folder.fd = -1  # not this store's descriptor any more: never closed here
                return self._open_folder(function, folder)
            fdir = folder.path
            try:
                st = os.lstat(fdir)
            except OSError:  # removed (made again), or unreachable (said by the open)
                st = None
            if st is not None and st.st_ino == folder.ino and st.st_dev == folder.dev:
                return folder
            # Keys are locked in the lock file of the folder at the path from now on.
            try:
                lock = os.stat(LOCK_FILE, dir_fd=folder.fd, follow_symlinks=False)
                retire(os.path.join(fdir, LOCK_FILE), (lock.st_dev, lock.st_ino))
            except OSError:  # none there: no description of it is kept
                pass
        return self._open_folder(function, folder)

    def _refuse_another_users(self) -> None:
        """Raise ``PermissionError`` if this process runs as root and the cache is another
        user's: its root belongs to that user (``_refuse_others``). A process run as root
        in a user's cache (``sudo`` keeping ``$HOME``, a container's root on a mounted
        folder) would leave
        files and folders there that the user can neither read nor remove (0600, 0700): keys
        that user could never cache again, and a ``memojar ls`` or ``clear`` that fails. So
        nothing is written there; results are returned, with the usual warning. Looked at
        on each write until the root is found writable (one ``stat``), then never again."""
        if self._root_writable or self._uid != 0:
            return
        try:
            owner = os.stat(self.root).st_uid
        except FileNotFoundError:
            # Missing: this process makes it, and any folder missing above it, in the
            # nearest folder that exists. In another user's (``sudo`` keeping ``$HOME``
            # before that user ever cached), they were root's 0700 folders: that user's own
            # cache (and ``~/.cache`` itself, for every program) became unusable to them.
            parent = os.path.dirname(self.root)
            while True:
                try:
                    owner = os.stat(parent).st_uid
                    break
                except FileNotFoundError:
                    if os.path.dirname(parent) == parent:
                        return
                    parent = os.path.dirname(parent)
                except OSError:  # the write says why
                    return
            _refuse_others(self.root, owner, self._uid,
                           f"folder {parent}, where this cache would be made")
            return
        except OSError:  # the write says why
            return
        _refuse_others(self.root, owner, self._uid, "memojar cache")
        self._root_writable = True

    def no_stamp_why(self) -> str | None:
        try:
            self._refuse_another_users()
        except PermissionError as exc:
            return exc.strerror
        return self._stamp_why

    def _anothers(self) -> bool:
        """Whether the cache is another user's (``_refuse_another_users``): a removal made
        there (root's ``clear``, ``prune``) leaves its ledger and statistics as they are,
        rather than replacing them with files that user could not read (its ledger, then
        over-counted, is recounted by its next process)."""
        try:
            self._refuse_another_users()
        except PermissionError:
            return True
        return False

    def _open_folder(self, function: str, gone: _Folder | None) -> _Folder:
        """Open the function's folder (creating it if missing), never through a link, in
        place of ``gone`` (a folder removed or moved since it was opened, a descriptor no
        longer this store's, or None)."""
        self._refuse_another_users()
        self.path(function, "")
        fdir = self._dirs[function]
        for _ in range(_WRITE_TRIES):
            try:
                fd = os.open(fdir, _O_DIR)
                break
            except FileNotFoundError:  # missing, or moved away again since it was made
                self._makedirs(fdir, recheck=True)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _not_a_folder(fdir) from exc
                raise
        else:
            raise _not_a_folder(fdir)
        try:
            st = os.fstat(fd)
            if self._uid is not None:  # a function's folder in a cache that is root's
                _refuse_others(fdir, st.st_uid, self._uid, "folder")
            folder = _Folder(fdir, st)
        except BaseException:  # an interrupt too: the descriptor is not left open
            os.close(fd)
            raise
        folder.fd = fd  # the folder's from here (no interrupt point between)
        current = self._open.get(function)
        if current is None or current is gone:
            self._open[function] = folder
            _keep_open(self, function)
            return folder
        return current  # another thread opened it first (this one closes when dropped)

    def _make_shard(self, function: str, folder: _Folder, shard: str) -> _Folder:
        """Create ``shard`` in the folder; the folder reopened if it was removed. A shard
        made (rare: 256 a function) looks at the root's tag (``_tag_again``)."""
        try:
            os.mkdir(shard, 0o700, dir_fd=folder.fd)
        except FileExistsError:  # another process made it first
            pass
        except FileNotFoundError:  # the folder itself was removed (clear, prune)
            return self._open_folder(function, folder)
        else:
            self._tag_again()
        return folder

    def _tag_again(self) -> None:
        """Put the root's tag back if it went while this store writes in the root (an
        ``rm -rf`` of the cache under way, which then fails on what this process writes
        meanwhile: "Directory not empty"), where the root is still the folder this store
        found tagged. Before, what was left was a folder of memojar's entries with no tag,
        which every later process refused as a folder of the user's
        (``NotACacheDirectory``), for good. A folder made at the root's path since (another
        inode) is left to ``_claim``, and so is another user's root under ``sudo``
        (``_anothers_folder``: a tag of root's there would lock its owner out)."""
        if self._root_id is None or is_cache_dir(self.root):
            return
        if _identity_of(self.root) == self._root_id and not _anothers_folder(self.root):
            with contextlib.suppress(OSError, NotACacheDirectory):
                _mark(self.root)

    def _open_lock_file(self, function: str) -> int:
        """Open (creating it) the function folder's lock file, never through a link."""
        folder = self._folder(function)
        try:
            return os.open(LOCK_FILE, O_LOCK, 0o600, dir_fd=folder.fd)
        except FileNotFoundError:  # the folder was removed since this process opened it
            folder = self._open_folder(function, folder)
            return os.open(LOCK_FILE, O_LOCK, 0o600, dir_fd=folder.fd)

    def _open_shard(self, function: str, shard: str) -> int:
        """A descriptor of the function's ``shard``, opened ``O_DIRECTORY | O_NOFOLLOW``
        from the function folder's (``_folder``; both made if missing): a link there is
        refused, and what is made through the descriptor stays in the folder it opened."""
        fd, _ = self._shard_in(function, self._folder(function), shard)
        if self._uid == 0:  # root writes nothing in another user's shard
            try:
                _refuse_others(os.path.join(self._dirs[function], shard),
                               os.fstat(fd).st_uid, self._uid, "folder")
            except BaseException:
                os.close(fd)
                raise
        return fd

    def _shard_in(self, function: str, folder: _Folder, shard: str) -> tuple[int, _Folder]:
        """A descriptor of ``shard`` opened ``O_DIRECTORY | O_NOFOLLOW`` from ``folder``'s,
        made if missing (with the folder, if that was removed: the folder it is in now)."""
        for _ in _TRIES:
            try:
                return os.open(shard, _O_DIR, dir_fd=folder.fd), folder
            except OSError as exc:
                if exc.errno == errno.ENOENT:  # a new shard, or the folder was removed
                    folder = self._make_shard(function, folder, shard)
                    continue
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _not_a_folder(os.path.join(self._dirs[function], shard),
                                        dir_fd=folder.fd) from exc
                raise
        raise OSError(errno.ENOENT, "the function's folder keeps being removed",
                      self._dirs[function])

    def _create_temp(self, function: str, shard: str, name: str, at: list[int],
                     made: list[str] | None = None) -> tuple[int, str]:
        """A new temporary file beside the entry ``name`` in the shard ``at[0]``; a shard
        removed since it was opened (``prune``'s ``cleanup``) is made and opened again, in
        ``at[0]``, as often as ``_link_new`` makes it (before: once, and a shard removed
        again meanwhile lost the result). Its name is appended to ``made`` (see
        ``_create_new``).

        A max_size write calls this under the ledger's lock (``_reserve``), under which
        ``cleanup`` removes shards (``_unsharing``): the shard made again here stays."""
        for attempt in _TRIES:
            try:
                return _create_new(name, made, at[0])
            except FileNotFoundError as exc:  # the shard was removed since it was opened
                if attempt == _WRITE_TRIES - 1:  # by someone else each time
                    raise _not_a_folder(os.path.join(self._dirs[function], shard)) from exc
            old = at[0]
            at[0] = self._open_shard(function, shard)
            os.close(old)
        raise AssertionError("unreachable")  # pragma: no cover

    def _makedirs(self, path: str, recheck: bool = False) -> None:
        """``_makedirs`` under this store's root; ``recheck``: look at the root's tag even if
        it was memojar's (a function folder is being made: the root may have been replaced
        by a folder of the user's since). A root that is not memojar's is an ``OSError``
        here, so a call that was storing its result warns and returns it."""
        if recheck and self._tagged:
            self._tag_again()
        try:
            _makedirs(path, self.root, self._tagged and not recheck)
        except NotACacheDirectory as exc:
            self._tagged = False
            raise OSError(errno.EEXIST, str(exc), self.root) from None
        if recheck or not self._tagged:  # (tagged now: perhaps a root made again)
            self._root_id = _identity_of(self.root)
        self._tagged = True
        tallied = self._tallied
        if recheck and tallied.writer == _PID[0] and _unlisted(self.root):
            # (a folder found missing) The cache was removed with this process's writer
            # file (``rm -rf``) and is made again: registered again at the next change.
            # Before, once a process: killed, its later changes went uncounted for good.
            tallied.writer = 0

    def _folders(self, path: str) -> None:
        """Make sure the function folder and shard of ``path`` exist as real directories
        (creating them if missing): memojar never writes through a link planted there."""
        self._refuse_another_users()
        shard = os.path.dirname(path)
        folders = (os.path.dirname(shard), shard)
        for _ in range(_WRITE_TRIES):
            try:
                _no_links(*folders, uid=self._uid)
                return
            except FileNotFoundError:  # missing, or moved away again since it was made
                self._makedirs(shard, recheck=True)
        raise _not_a_folder(shard, making=True)

    def _reserve(self, function: str, shard: str, name: str, at: list[int], size: int,
                 views: list[memoryview], made_here: list[str] | None = None,
                 ) -> tuple[int, str, bool]:
        """The temporary file for an entry of ``size`` bytes, once there is room for it,
        and whether ``views`` were written to it already (``_grow``).

        The reservation is the temporary file itself, extended to its final size under the
        ledger's lock: every recount counts it, so writers in flight never overcommit the
        room between them. While they hold it all, this one waits (``RESERVE_WAIT``). The
        file is made in the shard ``at[0]`` (``_write``: opened first, so a root that is no
        longer memojar's gets no ledger file)."""
        max_size = self.max_size
        assert max_size is not None  # and size <= max_size: ``Store.write`` refused others
        deadline = time.monotonic() + RESERVE_WAIT
        delay = 0.005
        while True:
            made: tuple[int, str] | None = None
            written = False
            try:
                with self._ledger() as ledger:
                    if ledger.fits(size):
                        made = self._create_temp(function, shard, name, at, made_here)
                        written = self._grow(made[0], size, views)
                        ledger.add(size)
                    elif ledger.held + size > max_size:
                        # Entries this user may not remove hold the room: no wait frees it.
                        raise OSError(errno.ENOSPC, _held_message(self.root, max_size,
                                                                  ledger.held, size))
            except BaseException:
                if made is not None:
                    os.close(made[0])
                    _unlink(made[1], at[0])
                raise
            if made is not None:
                return made[0], made[1], written
            if time.monotonic() > deadline:
                raise OSError(
                    errno.ENOSPC,
                    f"no room under max_size ({max_size:,} bytes) for an entry of {size:,} "
                    f"bytes after {RESERVE_WAIT:.0f} s: other writers in flight hold it",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _grow(self, fd: int, size: int, views: list[memoryview]) -> bool:
        """Extend the new, empty file ``fd`` to ``size`` bytes (the reservation); True if
        the entry's bytes (``views``) were written instead. Where ``ftruncate`` cannot grow
        a file (FAT through FUSE says EPERM, and there bytes rewritten in the same open
        are lost, so no placeholder byte will do), the entry itself is written under the
        ledger's lock: learned by the first write, and done from then on."""
        if self._truncate_grows:
            try:
                os.ftruncate(fd, size)
                return False
            except OSError as exc:
                if exc.errno not in _NO_GROW:
                    raise
                self._truncate_grows = False
        _write_all(fd, views)
        return True

    def delete(self, function: str, key: str) -> bool:
        """Remove the entry; its size for the ledger is the one of the file removed, seen
        through the shard's descriptor. Before, it was looked up by path beforehand (a
        shard swapped for a link got the ledger the size of a file where the link led)."""
        return bool(self._unlink_entries([self.path(function, key)], settle=True))

    def discard(self, function: str, key: str, judged: Any) -> bool:
        """Delete the entry if it is still the file whose content ``judged`` is.

        Another process may have renamed a fresh entry into place since it was read: that
        one stays. Under the key's lock, so no writer of the key renames meanwhile; if a
        writer holds it, its new entry replaces the bad one anyway."""
        path = self.path(function, key)
        fdir, shard = self._dirs[function], key[:2]
        # The key's lock file opened through the folder as this process opened it, and the
        # entry read through descriptors: before, both went by path after an ``lstat``, and
        # a folder swapped for a link meanwhile got a lock file where the link led.
        # Released in the ``finally`` from the moment it is made (a no-op unless held):
        # before, an interrupt as ``acquire`` returned (Ctrl-C in a cell whose first store
        # swept the old code's entries) left the key's lock held by this process for
        # good, and every later call of the key waited lock_timeout.
        lock: KeyLock | None = None
        try:
            try:
                _no_links(fdir, os.path.dirname(path))  # missing: nothing to discard
                lock = self.lock(function, key)
                if not lock.acquire(blocking=False):
                    return False
            except OSError:
                return False
            with _dir_at(self.root, os.path.basename(fdir), shard) as sfd:
                try:
                    if sfd is None:
                        return False
                    fd = os.open(f"{key}{SUFFIX}", _O_READ, dir_fd=sfd)
                except OSError:
                    return False
            try:
                st = os.fstat(fd)
                view = memoryview(judged).cast("B")
                if st.st_size != view.nbytes:
                    return False
                n = min(view.nbytes, 1 << 16)  # the header (created, checksum) and then some
                if not stat.S_ISREG(st.st_mode) or os.read(fd, n) != view[:n]:
                    return False
            finally:
                os.close(fd)
            return bool(self._unlink_entries([path], settle=True))
        finally:
            if lock is not None:
                try:
                    lock.release()
                except BaseException:  # an interrupt inside: finished (``release``)
                    lock.release()
                    raise

    @contextlib.contextmanager
    def _settling(self) -> Iterator[Ledger | None]:
        """The ledger, locked, for a removal made under its lock and recorded there
        (``Ledger.settle``); None where none is kept (no max_size) or its lock cannot be
        made (a full disk, a cache shared by hand that this user may not write: the total
        over-states until the next eviction recounts).

        Made and recorded under one holding of the lock, a removal is never seen by a
        recount (another process's eviction, ``prune``) and then subtracted once more:
        before, a removal made outside it and recorded after such a recount made the total
        say less than the files by the entry's size, each time, and the cache grew past
        max_size by as much."""
        if self.max_size is None or self._anothers():
            yield None
            return
        ledger, done = None, False
        try:
            with self._ledger() as ledger:
                yield ledger
                done = True
        except OSError as exc:
            if done and exc.errno is not None:  # (None: the caller's signal handler's)
                # The removal is made; only its record failed (the new total not written,
                # the lock's unlock: EIO). Before, the caller was told the removal failed
                # (``cache_delete`` raised after removing). The total is counted again at
                # this process's next use.
                self._recounted = False
                warn(f"memojar could not update the size ledger of {self.root} ({exc}); "
                     "it is counted again at the next write")
                return
            # A full disk; a cache this user may not write (its lock another user's,
            # private); or raised by the removal itself.
            if ledger is not None or not isinstance(exc, (_NoRoomForLock, PermissionError)):
                raise
            logger.debug("no ledger update in %s: %s", self.root, exc)
        else:
            return
        # Yielded once the lock's error is handled: yielded while handling it, the
        # removal's own error (a read-only folder), thrown in there, had it for its context,
        # whose traceback holds this frame, which on 3.12 and later links back (f_back) to
        # contextlib's __exit__, which keeps the removal's error: a cycle holding the
        # call's frames and its argument until the collector ran
        yield None

    def read_note(self, function: str) -> bytes | None:
        self.path(function, "")  # fills the function's directory in
        try:
            fd = os.open(os.path.join(self._dirs[function], NOTE_FILE), _O_READ)
        except OSError:  # no note yet: the usual first time
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return os.read(fd, 4096)
        finally:
            os.close(fd)

    def write_note(self, function: str, note: bytes) -> None:
        """Replace the function's sweep note, relative to its folder as this process opened
        it (``_folder``): a folder swapped for a link after an ``lstat`` took the note (its
        temporary file, its rename) to where the link led."""
        self._refuse_another_users()
        folder = self._folder(function)
        _replace_small(NOTE_FILE, note, dir_fd=folder.fd)

    def generation(self, function: str) -> Any | None:
        """The function's ``.gen`` file, mapped read-only (created if missing): another
        process's ``bump`` rewrites its 8 bytes in place, which every mapping sees at once.
        None if it cannot be made or is not a regular 8-byte file of this user."""
        self.path(function, "")
        gen = os.path.join(self._dirs[function], GEN_FILE)  # for messages
        try:
            # Relative to the folder as this process opened it: a folder swapped for a link
            # after an ``lstat`` took the stamp's temporary file and link (and the removal
            # of a link planted at its name) to where the link led.
            folder = self._folder(function)
            dfd = folder.fd
            # In a folder opened to others by hand, the stamp gets its write bits: another
            # user's clear of entries there bumps it, so this user's memory tiers forget
            # them. Before, it was 0600: their bump failed silently, and this user's
            # processes kept returning the cleared entries from memory.
            opened = os.fstat(dfd).st_mode
            shared = opened & 0o066 if opened & _OPENED_TO_OTHERS else 0
            for tries in range(2):
                try:
                    fd, tmp = _create_new(GEN_FILE, dir_fd=dfd)
                except OSError as exc:
                    # A cache mounted read-only (a warm cache bind-mounted ro into a
                    # container), a full disk: a stamp already there is mapped, and a
                    # clear through a writable mount reaches it. Before, memory= was not
                    # used, with a warning blaming the file system's hard links.
                    try:
                        os.stat(GEN_FILE, dir_fd=dfd, follow_symlinks=False)
                    except OSError:
                        raise exc from None
                    break
                try:
                    try:
                        os.write(fd, new_stamp())
                        if shared:
                            os.fchmod(fd, 0o600 | shared)
                    finally:
                        os.close(fd)
                    # never replaces a stamp others have mapped
                    os.link(tmp, GEN_FILE, src_dir_fd=dfd, dst_dir_fd=dfd,
                            follow_symlinks=False)
                except FileExistsError:
                    pass
                finally:
                    _unlink(tmp, dfd)
                kind = stat.S_IFMT(os.stat(GEN_FILE, dir_fd=dfd, follow_symlinks=False).st_mode)
                if kind in (stat.S_IFLNK, stat.S_IFIFO, stat.S_IFSOCK) and not tries:
                    # A link, FIFO or socket planted at memojar's name: it goes (a link,
                    # not its target), and a stamp is made. Before, memory= was not used,
                    # with a warning blaming the file system.
                    _unlink(GEN_FILE, dfd)
                    continue
                break
            try:
                # Opened for writing where it may be (then mapped read-only all the same):
                # on an overlay (a cache baked into a container's image), a stamp of the
                # lower layer is then copied up first, and mapped where bumps write. Before,
                # the mapping kept the lower file's bytes, and the first bump wrote a copy
                # it never saw: memory= returned cleared values for good.
                fd = os.open(GEN_FILE, _O_STAMP, dir_fd=dfd)
            except OSError:  # not this user's to write, a read-only cache, not a file
                try:
                    fd = os.open(GEN_FILE, _O_READ, dir_fd=dfd)
                except PermissionError:
                    st = os.stat(GEN_FILE, dir_fd=dfd, follow_symlinks=False)
                    self._stamp_why = self._not_a_stamp(gen, st)
                    raise
            try:
                st = os.fstat(fd)
                for _ in range(_LINKED_TRIES):  # made by another process, which is
                    if st.st_nlink == 1:  # unlinking its temporary name just now
                        break
                    time.sleep(0.001)
                    st = os.fstat(fd)
                if not _own_stamp(st) or (self._uid is not None and st.st_uid != self._uid):
                    self._stamp_why = self._not_a_stamp(gen, st)
                    return None
                if shared and st.st_mode & shared != shared:  # made before the folder was
                    os.fchmod(fd, stat.S_IMODE(st.st_mode) | shared)  # opened to others
                self._stamps[function] = (st.st_dev, st.st_ino)
                return mmap.mmap(fd, 8, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
        except (OSError, ValueError) as exc:
            logger.debug("no generation stamp for %s in %s: %s", function, self.root, exc)
            # A read-only cache, a full disk (bytes or quota): said so. Before, a full disk
            # was put down to the file system's lack of hard links ("such as FAT").
            if isinstance(exc, OSError) and exc.errno in _NO_ROOM_OR_READ_ONLY:
                self._stamp_why = f"{gen} cannot be made ({exc.strerror})"
            if (isinstance(exc, PermissionError) and self._stamp_why is None
                    and not os.access(self._dirs[function], os.W_OK)):
                # A folder of another user's this one may read but not write (a cache
                # shared by hand, read-only to others). Before, the warning blamed the
                # file system ("such as FAT"). (A folder it may write whose file system
                # refuses hard links, FAT's EPERM, is the file system's.)
                self._stamp_why = _no_stamp_made(self._dirs[function], exc)
            return None

    def restamp(self, function: str) -> Any | None:
        """A new view of the function's stamp if the file at its name is no longer the one
        this process mapped: the cache directory or the function's folder was removed
        (``rm -rf``) while the process ran, and others' bumps now go to a new stamp, or to
        none. None if it is the same (or this process mapped none). A folder removed and
        not made again gives random bytes once (what was held was cleared) and makes
        nothing; one made again gets a stamp, mapped. Called every few seconds from the
        statistics thread, never on a call's path: a ``stat``."""
        if function not in self._stamps:
            return None
        known = self._stamps[function]
        fdir = self._dirs[function]
        try:
            st = os.stat(os.path.join(fdir, GEN_FILE), follow_symlinks=False)
            now: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:  # removed with its folder (or alone)
            now = None
        if now is not None and now == known:
            return None
        if now is None and not os.path.isdir(fdir):
            if known is None:  # seen removed before: nothing changed since
                return None
            self._stamps[function] = None
            return bytearray(new_stamp())
        return self.generation(function) or bytearray(new_stamp())

    def _not_a_stamp(self, gen: str, st: os.stat_result) -> str:
        """Why the file at a stamp's name is not used (``no_stamp_why``)."""
        if stat.S_ISREG(st.st_mode) and self._uid is not None and st.st_uid != self._uid:
            # A cache shared between users: before, the warning blamed the file system.
            return (f"{gen} is {user_name(st.st_uid)}'s, and memojar uses only a stamp of "
                    "this user's (a cache shared between users)")
        return (f"{gen} is not a stamp memojar made (a folder, or a file of another size or "
                "with other names): memojar leaves it as it is; move it away to use memory=")

    def bump(self, function: str) -> None:
        self.path(function, "")
        self._bump(os.path.basename(self._dirs[function]))

    def _bump(self, fdir: str, busy: bool = False) -> None:
        """Rewrite a function directory's stamp in place, if it has one (no one maps a
        stamp that does not exist). Never truncates it: mappings stay valid.

        ``busy``: a change of its entries begins (a busy stamp, ``_store.new_stamp``), which
        a bump without it ends, also when the change fails. Memory tiers hold
        nothing read while the stamp is busy: a value read between the two may be the one
        the change replaces or removes. Before, a tier that read the old entry then held it
        under the stamp of the change, and served it for good when the writer was killed
        (SIGKILL, the OOM killer) before its second bump; now such a writer leaves the
        tiers holding nothing until the next change ends, never the old value.

        A busy bump finding no stamp makes none: a stamp keeps its folder from being
        removed once empty (``cleanup``), and is its maker's (another user's memory tier
        would refuse it). A busy bump that cannot open the stamp for want of descriptors or memory
        (``_SHORT``) raises: the change is not made unseen (before, a process near its limit
        of open files replaced an entry with no bump at all). A busy bump whose write fails
        (EIO, EFBIG under ``ulimit -f 0``, ENOSPC on a copy-on-write file system) removes
        the stamp instead, so that the memory tiers that mapped it forget at their next
        look (``restamp``, within seconds), and raises if that fails too. Before, the
        change went on unseen: they served what it replaced or removed for good."""
        try:  # relative to the folder opened without following links: one swapped for a
            with _dir_at(self.root, fdir) as ffd:  # link after an ``lstat`` took the write
                if ffd is None:  # to an 8-byte file where the link led
                    return
                fd = os.open(GEN_FILE, os.O_WRONLY | _NOFOLLOW | _CLOEXEC
                             | getattr(os, "O_NONBLOCK", 0), dir_fd=ffd)
                try:
                    st = os.fstat(fd)
                    for _ in range(_LINKED_TRIES):  # a new stamp's temporary name, going
                        if st.st_nlink == 1 or not stat.S_ISREG(st.st_mode) or st.st_size != 8:
                            break
                        time.sleep(0.001)
                        st = os.fstat(fd)
                    if _own_stamp(st):
                        os.pwrite(fd, new_stamp(busy), 0)
                    elif stat.S_ISREG(st.st_mode) and st.st_size == 8:
                        # A stamp with other names (the cache copied with ``cp -al``, or a
                        # file of the user's linked there) is never written in place: a
                        # new one is put at its name, which the memory tiers that mapped
                        # the old one map at their next look (``restamp``). Before, nothing
                        # was bumped: a process holding a result in memory when the cache
                        # was copied returned it after every later clear, for good.
                        _replace_small(GEN_FILE, new_stamp(busy), stat.S_IMODE(st.st_mode),
                                       dir_fd=ffd)
                except OSError as exc:
                    if busy:  # not made unseen: the stamp goes, or the change is refused
                        try:
                            os.unlink(GEN_FILE, dir_fd=ffd)
                        except OSError:
                            raise exc from None
                    logger.debug("cannot bump the generation of %s: %s", fdir, exc)
                finally:
                    os.close(fd)
        except OSError as exc:  # no stamp (no memory tier made one), no directory, not ours
            if busy and exc.errno in _SHORT:  # the change is not made unseen: refused
                raise
            return

    # --- saved statistics ---------------------------------------------------------------
    # ``<root>/.stats`` (JSON, replaced whole under a lock on the root) holds, per
    # function name, the hits, misses and compute time saved of every process, and, per
    # function directory, its entries and bytes. Processes count in memory and merge their
    # deltas now and then (``merge_stats``); the counts start from one listing (``count``).

    def _count(self, fdir: str, entries: int, size: int) -> None:
        """Note a write's change of ``fdir``'s entries and bytes (inline in ``_link_new``:
        keep the two alike)."""
        tallied = self._tallied
        if tallied.writer != _PID[0]:  # (the writes test before: see ``enlist``)
            tallied.enlist(self)
        deltas = tallied.deltas
        deltas.append((fdir, entries, size))
        if len(deltas) > _DELTAS_KEPT:  # merged every few seconds; a store alone is not
            with tallied.lock:
                tallied.added_up()

    def read_stats(self) -> dict[str, Any]:
        """The merged statistics: ``{"functions": {name: [hits, misses, saved]}, "counts":
        {dir: [entries, bytes]}}``; empty if none were kept yet or the file is unreadable."""
        try:
            fd = os.open(os.path.join(self.root, _STATS), _O_READ)
        except OSError:
            return {}
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return {}
            size = os.fstat(fd).st_size
            if size > _STATS_MAX:  # not memojar's (a sparse 50 GB file: MemoryError)
                logger.debug("statistics file %s of %d bytes ignored", self.root, size)
                return {}
            data = json.loads(_read_rest(fd, os.read(fd, size), size))
        except (OSError, ValueError, RecursionError):
            return {}
        finally:
            os.close(fd)
        return _sane_stats(data)

    def merge_stats(self, functions: dict[str, tuple[int, int, float]],
                    recount: dict[str, tuple[int, int]] | None = None,
                    merge: tuple[str, str] | None = None,
                    listed_from: int | None = None) -> None:
        """Add hits, misses and time saved per function, and this process's entry count
        changes, to the stats file, under its lock. ``recount``: exact counts of function
        directories (from a listing begun when the file's merge number was
        ``listed_from``, if given), replacing what was kept. ``merge``: (writer, id), written in the
        same file as the counts (``merged`` reads it back).

        Changes and listings meet by the file's merge number (``merges``, one more each
        write): a process's changes merged after a listing began may be in it or not (the
        listing is not recorded: the next look lists again), and a listing recorded since
        a process's last merge may hold its changes not merged yet (they are not added:
        the count is dropped, the next look lists). Before, both were taken as they came:
        a listing while another process wrote counted its changes twice, or not at all.

        A merge that raised may have been written all the same (an interrupt between the
        file's rename and the return): the caller asks ``merged`` before it merges those
        counts again. (Before, the store remembered what such merges had written in an
        attribute set by its exception handlers, and an interrupt between two of them, at
        ``os.path.join``, lost it: the next merge added those counts a second time.)"""
        tallied = self._tallied
        tallied.forked()
        path = os.path.join(self.root, _STATS)
        tally: dict[str, list[int]] = {}
        lock: Any = None
        before: tuple[int, int] | bool | None = False  # False: not looked at, not written
        try:
            if self._anothers():  # its own calls are not that user's statistics
                functions, merge = {}, None
            with tallied.lock:
                if not (functions or recount or tallied.unmerged()):
                    return
            _no_links(self.root)
            lock = self._stats_lock()
            # The changes are taken under the file's lock: every listing recorded before has
            # a lower merge number than this merge's (``since`` from here), and every change
            # noted after them was made after those listings.
            with tallied.lock:
                tally, tallied.counts = tallied.added_up(), {}
            before = _identity(path)  # under the lock: only this merge replaces the file
            root = os.fstat(lock._fd) if fcntl is not None else os.stat(self.root)
            if before is None and tallied.made == (root.st_dev, root.st_ino):
                # Removed from the folder this process's last merge wrote in: the cache is
                # being removed (``rm -rf``, a ``TemporaryDirectory``'s cleanup), whose
                # ``rmdir`` fails on a file made meanwhile ("Directory not empty": before,
                # 1 run in 30 of a script removing its cache of 5,000 entries, and every
                # one with merges 2 ms apart, a later merge making it again while the
                # removal went on). The file is made again in a folder made again (a new
                # inode: the cache used after its removal); meanwhile the counts wait.
                raise FileNotFoundError(errno.ENOENT, "statistics file removed", path)
            data = self.read_stats()
            kept = data.setdefault("functions", {})
            for name, (hits, misses, saved) in functions.items():
                old = kept.get(name) or [0, 0, 0.0]
                kept[name] = [old[0] + hits, old[1] + misses, old[2] + saved]
            counts = data.setdefault("counts", {})
            listed = data.setdefault("listed", {})  # folder -> merge number of its listing
            changed = data.setdefault("changed", {})  # -> of the last changes merged
            merges = data["merges"] = data.get("merges", 0) + 1
            # The listings recorded: no merged change of their folders since they began.
            # This process's changes of those folders are in them; of the others, not
            # recorded, they are merged as any. (Before, ``recount`` dropped them first
            # either way: a listing not recorded took them with it, and a clear's removals
            # were lost, the count too high for good.)
            exact = {fdir: listing for fdir, listing in (recount or {}).items()
                     if listed_from is None or max(changed.get(fdir, 0),
                                                   data.get("forgot", 0)) <= listed_from}
            for fdir, (entries, size) in tally.items():
                if not (entries or size) or fdir in exact:
                    continue
                changed[fdir] = merges
                if listed.get(fdir, 0) > tallied.since:
                    # Listed by another process since this one's last merge: its changes
                    # since may be in the listing, or not. Dropped, the next look lists.
                    # Before, they were added to it: a count made while this process
                    # wrote said 818 entries of 649, for good.
                    counts.pop(fdir, None)
                    listed.pop(fdir, None)
                elif fdir in counts:  # else no listing counted it yet: the next one will
                    old = counts[fdir]
                    now = [old[0] + entries, old[1] + size]
                    if now[0] < 0 or now[1] < 0:
                        # Out of step: a removal merged before the write it undid (each
                        # process merges now and then). Dropped, the next look lists;
                        # before, clamped at 0, the write's +1 came on top: a writer and a
                        # delete loop left 12,856 entries counted over 2 files, for good.
                        del counts[fdir]
                    else:
                        counts[fdir] = now
            for fdir, listing in exact.items():
                counts[fdir] = list(listing)
                listed[fdir] = merges
            if merge is not None:
                data["merged"] = _merges_kept(data.get("merged", {}), *merge)
            self._write_stats(data)
            tallied.since, tallied.made = merges, (root.st_dev, root.st_ino)
        except BaseException:
            if before is False or _identity(path) == before:  # not written
                self._restore(tally)
            raise
        finally:
            if lock is not None:
                lock.release()

    def merged(self, writer: str, merge_id: str) -> bool:
        """Whether the stats file holds ``merge_id`` as ``writer``'s last merge: ``OSError``
        if the file cannot be read now (a merge that ran may not be taken for one that did
        not), False if there is none."""
        try:
            fd = os.open(os.path.join(self.root, _STATS), _O_READ)
        except OSError as exc:
            if exc.errno in _NOT_READ:  # what the merge reads as no statistics, and replaces
                return False
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > _STATS_MAX:
                return False
            data = json.loads(_read_rest(fd, os.read(fd, st.st_size), st.st_size))
        except (ValueError, RecursionError):  # damaged: what it held is lost either way
            return False
        finally:
            os.close(fd)
        row = _sane_stats(data).get("merged", {}).get(writer)
        return row is not None and row[0] == merge_id

    def _stats_lock(self) -> Any:
        """The stats file's lock: a ``flock`` on the root directory itself, so no lock file
        is left for ``prune`` to remove (and none can be removed under a waiter)."""
        if fcntl is None:
            return _flock(os.path.join(self.root, _STATS + ".lock"))
        # Held by its lock object before it is locked: an interrupt while that object was
        # made, after the lock was taken, left the descriptor locked for the process's life
        # (every merge of every process then waited STATS_WAIT and failed). A lock object
        # lost to an interrupt now gives it back when dropped.
        lock = _FlockLock(os.open(self.root, _O_DIR))
        try:
            _lock_within(lock._fd, STATS_WAIT, f"the statistics' lock (on {self.root})")
        except BaseException:
            lock.release()
            raise
        return lock

    def _write_stats(self, data: dict[str, Any]) -> None:
        if not holds_tag(self.root):  # replaced by a folder of the user's since it opened
            raise OSError(errno.EEXIST, "not memojar's folder (no CACHEDIR.TAG)", self.root)
        if self._anothers():
            # Another user's cache (root's clear in it): its file rewritten in place, staying
            # that user's, so its counts do not keep entries root removed; none is made.
            _rewrite_in_place(os.path.join(self.root, _STATS), json.dumps(data).encode())
            return
        path = os.path.join(self.root, _STATS)
        try:
            _replace_small(path, json.dumps(data).encode(), self._shared_mode())
        except PermissionError:
            # Another user's file in a cache shared by hand whose root is sticky (1777): it
            # may not be replaced, only written in place, opened to others as it is. Before,
            # no user but its owner could save statistics there.
            if not _rewrite_in_place(path, json.dumps(data).encode()):
                raise

    def _shared_mode(self) -> int:
        """The mode of the cache's statistics and size ledger: private (0600), except in a
        cache its owner opened to others by hand (``chmod -R a+rwX``, a group's folder),
        where they get the root's read and write bits. Both are numbers (JSON, never
        unpickled), and every user's processes read and replace them: before, each user's
        were 0600, so another user's merge could not read them and replaced them with its
        own alone (every user's hits, misses and time saved wiped the others'), and each
        use of the ledger by another user counted every file again. In a cache opened to
        be read only (``chmod -R go=rX``) they get the root's read bits: before, the
        owner's next merge made them 0600 again, and the readers' ``memojar info`` said
        "hits 0 (misses 0, all processes)" of a cache with thousands."""
        try:
            st = os.stat(self.root)
        except OSError:
            return 0o600
        opened = 0o066 if st.st_mode & _OPENED_TO_OTHERS else 0o044
        return 0o600 | (st.st_mode & opened)

    def _restore(self, tally: dict[str, list[int]]) -> None:
        for fdir, (entries, size) in tally.items():
            self._count(fdir, entries, size)

    def counted(self, function: str) -> tuple[int, int] | None:
        """The function's entries and bytes from the stats file plus this process's changes
        not merged yet; None if no listing counted them yet."""
        self.path(function, "")
        fdir = os.path.basename(self._dirs[function])
        data = self.read_stats()
        # (a listing follows a None: ``recount`` records it unless merged changes of the
        # folder came meanwhile)
        merges = data.get("merges", 0)
        kept = data.get("counts", {}).get(fdir)
        # (dead writers looked for first, with no count kept too: before, their files were
        # left, and found at the next read, which dropped the listing just recorded)
        try:
            forgot = self._writers_died()
        except OSError:  # found dead, the counts not dropped (a cache it may only read)
            forgot = -1
        died = forgot != 0
        if forgot > 0:  # the listing that follows begins after that
            self._listing_from[fdir] = forgot
        else:
            self._listing_from.setdefault(fdir, merges)
        if died or not kept:
            listed = self._listed_here.get(fdir)
            if listed is None or listed[0] != (merges, self._dead_found):
                return None
            kept = listed[1:]  # listed by this process, neither merged into nor died since
        tallied = self._tallied
        tallied.forked()
        with tallied.lock:
            entries, size = tallied.added_up().get(fdir, (0, 0))
        if kept[0] + entries < 0 or kept[1] + size < 0:  # out of step (see ``merge_stats``)
            return None
        self._listing_from.pop(fdir, None)
        return kept[0] + entries, kept[1] + size

    def recount(self, function: str, entries: int, size: int) -> None:
        """Record a listing's exact count of the function's entries (what this process
        changed before it is in the listing)."""
        self.path(function, "")
        fdir = os.path.basename(self._dirs[function])
        since = self._listing_from.pop(fdir, None)  # (None: a count given as exact)
        if fdir in self._unseen:  # a listing that could not see all: a partial count
            return
        self._listed_here.pop(fdir, None)
        try:
            # (this process's changes of the folder, in the listing, are dropped with its
            # recording: see ``merge_stats``)
            self.merge_stats({}, {fdir: (entries, size)}, listed_from=since)
        except OSError:
            # Not recorded (a cache this user may only read, a read-only mount): kept here,
            # while no merge nor newly dead writer comes. Before, every ``cache_info()``
            # listed the folder again (46 ms each at 12,000 entries).
            if since is not None:
                self._listed_here[fdir] = ((since, self._dead_found), entries, size)
                with self._tallied.lock:  # (in the listing)
                    self._tallied.added_up().pop(fdir, None)
            raise

    def _writers_died(self) -> int:
        """Whether a process that wrote in the cache died before merging all it changed
        (its writer file found unlocked: see ``_enlist``): then every kept count is dropped
        (the next look at each function lists its folder) and its file removed. Before,
        ``cache_info()`` of every process said the count merged before (too low after
        writes, too high after removals) until a ``prune``. The merge number that dropped
        them (``_drop_counts``; 0: no writer found dead since this store last dropped
        them, -1: not written). A dead writer's file found again (one this user may not
        remove) drops them only once a store: before, at every count read, each of which
        then listed the folder again."""
        self._dead_found = frozenset()
        if fcntl is None:
            return 0
        dfd, dead = _dead_writers(self.root)
        if dfd < 0:
            return 0
        try:
            found = self._dead_found = frozenset((name, ino) for name, _, ino in dead)
            if found <= self._forgotten:
                return 0
            forgot = self._drop_counts() or -1
            self._forgotten = found
            for name, _, ino in dead:  # (the inode looked at, not one made since)
                _remove_writer(name, ino, dfd)
            return forgot
        finally:
            _close_all(dead)
            os.close(dfd)

    def forget_counts(self) -> None:
        """Drop every kept count (after ``prune``): the next ``counted`` lists again."""
        self._listed_here.clear()
        self._drop_counts()

    def _drop_counts(self) -> int:
        """Drop every kept count and this process's changes not merged; the merge number
        written (0: none), from which listings may be recorded again: one begun before
        may have passed where a dead writer, or this process, changed since (those
        changes are in no count now), and is not recorded (``merge_stats``). Before, it
        was, over the listing of the process that found the writer dead: 5 entries of 6."""
        with self._tallied.lock:
            self._tallied.added_up().clear()
        try:
            _no_links(self.root)
        except OSError:
            return 0
        lock = self._stats_lock()
        try:
            data = self.read_stats()
            data["counts"], data["listed"] = {}, {}  # ("changed" kept: a listing under way)
            merges: int = data.get("merges", 0) + 1
            data["merges"] = data["forgot"] = merges
            self._write_stats(data)
            return merges
        finally:
            lock.release()

    def lock(self, function: str, key: str) -> KeyLock:
        if LOCKS_IN_FUNCTION_DIR:  # the function folder's lock file, opened through it
            path = self._lockers.get(function)
            if path is None:
                self.path(function, "")
                path = self._lockers[function] = os.path.join(self._dirs[function], LOCK_FILE)
            # The opener is bound per lock, never kept by the store: the store would then
            # be in a reference cycle, and a dropped cache's open folders would wait for
            # the cycle collector, which a program with a big heap runs rarely.
            return range_lock(path, key, self._open_lock_file, function)
        path = self.path(function, key)  # a lock file per key, beside the entry
        self._folders(path)
        return key_lock(self._dirs[function], key, path)

    # --- listing and housekeeping ------------------------------------------------------
    # Every walk below opens each directory under the root with O_NOFOLLOW and works
    # relative to its descriptor: a link planted anywhere is never entered, even one swapped
    # in while the walk runs.

    def _shards(
        self, function: str | None = None, quiet: bool = False
    ) -> Iterator[tuple[str, int, str, int, list[str]]]:
        """(function dir, its fd, shard, shard fd, file names) for every shard.

        In a cache shared between users by hand, other users' folders this user cannot read
        are passed over (``_open_listed``), their function folders noted in ``_unseen`` (a
        count of them is partial: never recorded), and one ``MemojarWarning`` at the end of
        the walk says so (unless ``quiet``: a write's census); before, the walk raised
        ``PermissionError`` at the first, so ``cache_info()``, ``prune()`` and ``memojar ls``
        failed for every user but the one whose folder it was."""
        try:
            root_fd = _open_dir(self.root)
        except PermissionError as exc:  # before, a bare "Permission denied" and the path
            raise _unreadable_root(exc, self.root) from exc
        if root_fd is None:
            return
        skipped: list[tuple[str, int]] = []
        try:
            # The root by path, for messages: one of its names that is not a directory (or
            # is a link) fails to open as one below.
            if function is None:
                names = _listdir(self.root)
            else:  # and the folder memojar named it by before 2026-12, if another (_list)
                names = list(dict.fromkeys(
                    [function_dir(function, case_safe=True), function_dir(function)]))
            for name in sorted(names):
                before = len(skipped)
                ffd = _open_listed(name, root_fd, self.root, skipped)
                if ffd is None:
                    self._seen(name, len(skipped) == before)
                    continue
                try:
                    for shard in sorted(_subdirs(ffd)):
                        sfd = _open_listed(shard, ffd, os.path.join(self.root, name), skipped)
                        if sfd is None:
                            continue
                        try:
                            yield name, ffd, shard, sfd, _listdir(sfd)
                        finally:
                            os.close(sfd)
                finally:
                    os.close(ffd)
                self._seen(name, len(skipped) == before)
        finally:
            os.close(root_fd)
        if skipped:
            message = _skipped_warning(self.root, skipped)
            if quiet:
                logger.debug("%s", message)
            else:
                warn(message)

    def _seen(self, fdir: str, whole: bool) -> None:
        """Note whether a walk saw the whole of a function's folder (``_unseen``)."""
        if whole:
            self._unseen.discard(fdir)
        else:
            self._unseen.add(fdir)

    def _list(self, function: str | None, heads: bool) -> Iterator[StoredEntry]:
        """Entries with whole headers (read on from the descriptor opened for the size).

        A function's entries are in its folder, and in the folder its name had before
        folders were named case-safely (``function_dir``), if that is another: there only
        those whose header names it, as on a file system that ignores case that folder is
        also the one of another function whose name differs only in case."""
        legacy = shared = None
        if function is not None and function_dir(function) != function_dir(function, True):
            legacy = function_dir(function)
        if function is not None and _HASHED_DIR.fullmatch(function):
            # A name spelled as a hashed folder's (``mod.outer._locals_.g-1a66d170``, as a
            # listing of the cache shows it) is its own folder's name, which is also that
            # of the function it was hashed from: there only entries whose header names it.
            # Before, ``clear`` of such a name removed the other function's entries, and
            # ``ls`` of it said "0 entries" (it filters by header) where ``clear`` removed 3.
            shared = function
        for name, _, shard, sfd, files in self._shards(function):
            mixed = name in (legacy, shared)
            for file in files:
                if not _is_entry(file, shard):
                    continue
                try:
                    if heads or mixed:
                        st, head = _read_head(file, sfd)
                    else:
                        st, head = os.stat(file, dir_fd=sfd, follow_symlinks=False), b""
                except OSError:  # removed since listed, or unreadable: not an entry now
                    continue
                if st is None or not stat.S_ISREG(st.st_mode):
                    continue
                if heads and not _memojars(head):
                    continue  # another tool's file at an entry's name: not listed, as on S3
                    # (before, ``ls`` and ``info`` counted it "unreadable", for ``prune``)
                if mixed and _named(head) != function:
                    continue
                path = os.path.join(self.root, name, shard, file)
                key = file[: file.rindex(".")]
                yield StoredEntry(name, key, st.st_size, _used(st), head if heads else b"",
                                  path, etag=_as_seen(st, times=False))

    def _read_range(self, entry: StoredEntry, start: int, end: int) -> bytes | None:
        """Bytes of a listed entry, walking to it by descriptor (``_list`` reads whole
        headers already: this reads on only for an entry shorter than its header says)."""
        rel = self._entry_rel(entry.location)
        if rel is None:
            return None
        with _dir_at(self.root, *rel[:2]) as sfd:
            if sfd is None:
                return None
            try:
                fd = os.open(rel[2], _O_READ, dir_fd=sfd)
            except OSError:  # removed since listed, or unreadable
                return None
            try:
                return os.pread(fd, end - start, start) if stat.S_ISREG(
                    os.fstat(fd).st_mode) else None
            except OSError:
                return None
            finally:
                os.close(fd)

    def _entry_rel(self, path: str) -> list[str] | None:
        """[function dir, shard, file name] of an entry file of this cache, else None."""
        rel = os.path.relpath(path, self.root).split(os.sep)
        if len(rel) != 3 or rel[0] in ("..", ".") or not _is_entry(rel[2], rel[1]):
            return None  # not an entry of this cache: never read nor deleted
        return rel

    def _unlink_entries(self, paths: Sequence[str],
                        refused: list[tuple[str, int]] | None = None,
                        listed: dict[str, StoredEntry] | None = None,
                        kept: list[str] | None = None, settle: bool = False) -> list[str]:
        """Unlink entry files given by path, walking to each by descriptor; the removed.

        An entry this user may not remove (another user's, in a folder of a cache shared by
        hand that it may not write) is left, and the others are still removed: with
        ``refused``, it is appended there (its path and whose it is); without, a
        ``PartlyRemoved`` at the end says how many were removed and whose were left. Before,
        the first such entry raised ``PermissionError`` naming only the file, and the
        entries after it were left too (a ``clear`` that met another user's shard first
        removed nothing of the user's own).

        ``listed``: each path's entry as a listing gave it. A file there now that is not
        the one listed was written since (a stale key computed again, a ``refresh``) and
        stays, a fresh entry (its path goes to ``kept``). Where the listing read the
        header (``prune``, ``cache_clear``, a sweep judge by it), the file must still start
        with it; before, ``prune`` removed an expired entry computed again while it read
        the rest of the cache. Else the ``stat`` made here must show what the listing's did
        (``_as_seen``): for ``max_size`` eviction the inode, size and times (before, an
        entry written again between the listing and the unlink was removed, the newest
        taken for the least recently used; the inode alone tells nothing: an expired entry
        is removed on its read, and its number is often the new file's, whose times are
        then its write's; a hit's stamp in between keeps an entry too, used since), for
        ``Cache.clear`` the inode and size (a hit's stamp keeps nothing from a clear; an
        entry written again at the number of the expired one it replaced, with its size,
        goes with the rest).

        ``settle``: each shard's files are removed and recorded in the ledger under its lock
        (``_settling``), taken at the first file found there (before: for every shard, so
        a ``cache_delete`` of a key with no entry made a cache not made yet, and raised
        EROFS on a read-only one); an eviction, which holds it already, records its own."""
        removed: list[str] = []
        denied: list[tuple[str, int]] = [] if refused is None else refused
        by_dir: dict[tuple[str, str], list[str]] = {}
        for path in paths:
            rel = self._entry_rel(path)
            if rel is not None:
                by_dir.setdefault((rel[0], rel[1]), []).append(rel[2])
        touched = {fdir for fdir, _ in by_dir}
        # Memory tiers forget what they held before the first unlink as well as after the
        # last: a process killed (SIGKILL, the OOM killer) between them gets no ``finally``,
        # and a clear run again finds nothing of what it removed, so bumps nothing. Before,
        # other processes' memory tiers then returned those removed entries' values for good.
        try:
            for fdir in touched:  # (in the try: an interrupt between two ends each)
                self._bump(fdir, busy=True)
            if touched and self._tallied.writer != _PID[0]:  # registered before the first
                self._tallied.enlist(self)  # unlink
            for (fdir, shard), files in by_dir.items():
                with contextlib.ExitStack() as held, _dir_at(self.root, fdir, shard) as sfd:
                    if sfd is None:
                        continue
                    ledger, settling = None, settle
                    for file in files:
                        st = _stat_at(file, sfd)
                        if st is not None and settling:
                            # The ledger's lock, for a file there only (its own faults
                            # raised: before, caught as for a file removed first, an EIO
                            # taking it made ``cache_delete`` answer False, silently), and
                            # the file looked at again under it.
                            ledger, settling = held.enter_context(self._settling()), False
                            st = _stat_at(file, sfd)
                        if st is None:  # removed by another process first, unreadable
                            continue
                        seen = listed.get(os.path.join(self.root, fdir, shard, file)
                                          ) if listed else None
                        if seen is not None and (
                                not _starts_with(file, sfd, seen.head) if seen.head
                                else seen.etag and seen.etag != _as_seen(
                                    st, times=seen.etag.count(":") > 1)):
                            if kept is not None:  # written again since it was listed
                                kept.append(os.path.join(self.root, fdir, shard, file))
                            continue
                        if not stat.S_ISREG(st.st_mode):
                            # A folder, link or FIFO put at an entry's name is not an entry:
                            # left as it is (a folder made ``cache_delete`` raise EISDIR).
                            continue
                        if listed is not None and not (
                                _memojars(seen.head) if seen is not None
                                and seen.head else _begins_as_an_entry(file, sfd)):
                            # Named like an entry, written by someone else (another tool's
                            # pickles keyed by an MD5): left by ``clear``, ``prune`` and
                            # eviction, as on S3 (before, removed, and counted an entry).
                            # One key's removal (``cache_delete``, a failed read's) is
                            # asked of that key: as on S3, whatever is at its name goes.
                            continue
                        try:
                            gone = _unlink(file, sfd)
                        except IsADirectoryError:  # a folder made there since the stat
                            continue
                        except PermissionError:  # a folder this user may not write
                            folder = os.fstat(sfd).st_uid
                            denied.append((os.path.join(self.root, fdir, shard, file),
                                           folder if folder != _euid() else st.st_uid))
                            continue
                        except OSError as exc:  # EROFS (a cache mounted read-only), EIO:
                            # named by its whole path (before, by the entry's file name
                            # alone: 'memojar: read-only file system: 676c...pkl')
                            if exc.errno is None:  # the caller's signal handler's: as it is
                                raise
                            raise OSError(exc.errno, exc.strerror, os.path.join(
                                self.root, fdir, shard, file)) from exc
                        if gone:
                            if ledger is not None:
                                ledger.settle(-st.st_size)
                            removed.append(os.path.join(self.root, fdir, shard, file))
                            self._count(fdir, -1, -st.st_size)
        finally:
            # Memory tiers forget what they held: also when an interrupt (Ctrl-C in
            # ``memojar clear``) or an error ends this part way, after some unlinks; and
            # each folder's change is ended, also when another interrupt lands meanwhile
            # (before, the folders after it kept busy stamps: no memory tier held anything)
            _each(self._bump, list(touched))
        if denied and refused is None:
            raise _partly_removed(len(removed), denied)
        return removed

    def cleanup(self) -> int:
        """Remove orphaned temporary files and idle lock files; recount the ledger.

        Returns the number of temporary files removed (lock files are not entries)."""
        removed = 0
        now = _Clocks(self.root)
        root_fd = _open_dir(self.root)
        if root_fd is None:
            return 0
        try:
            # The files of writers killed before they exited: before, only a count read
            # (``cache_info()``) removed them, one a process killed (``kill -9``, the OOM
            # killer, ``pool.terminate()``), and prune left them all.
            self._writers_died()
        except OSError as exc:  # a cache this user may only read
            logger.debug("dead writers of %s left: %s", self.root, exc)
        try:
            removed += _remove_orphans(root_fd, now)  # the ledger's, the tag's
            skipped: list[tuple[str, int]] = []  # said by the listing before this
            given_up: list[bool] = []  # the ledger's lock, for empty folders (``_unsharing``)
            for name in _listdir(self.root):
                ffd = _open_listed(name, root_fd, self.root, skipped)
                if ffd is None:
                    continue
                # A folder named like a function's is memojar's only if it holds something
                # memojar writes (its marks, or files in its shards): an empty folder of the
                # user's (``my.proj/ab/``) is left, as its other folders are. Before, its
                # empty shard went, and then the folder itself.
                ours = _FUNCTION_DIR.fullmatch(name) is not None and _marked(ffd)
                empty = []
                try:
                    removed += _remove_orphans(ffd, now)  # the note's
                    for shard in _subdirs(ffd):
                        sfd = _open_listed(shard, ffd, os.path.join(self.root, name), skipped)
                        if sfd is None:  # another user's, in a cache shared by hand: theirs
                            continue
                        try:
                            files = _listdir(sfd)
                            ours = ours or any(map(_memojars_file, files))
                            removed += _remove_orphans(sfd, now)
                            for file in files:
                                if _KEY_LOCK.fullmatch(file) and file[:2] == shard:
                                    remove_if_idle(file, sfd)
                        finally:
                            os.close(sfd)
                        if _SHARD.fullmatch(shard):
                            empty.append(shard)
                    if ours:
                        with self._unsharing(given_up) as unshare:
                            if unshare:
                                for shard in empty:
                                    _rmdir_if_empty(shard, ffd)
                            remove_if_idle(LOCK_FILE, ffd)
                            if set(_listdir(ffd)) <= {NOTE_FILE}:  # no entries: nor the note
                                _unlink_file(NOTE_FILE, ffd)
                            # A generation stamp (GEN_FILE) stays: a process may have it
                            # mapped. The folder goes if empty (open here: Linux removes it).
                            if unshare:
                                _rmdir_if_empty(name, root_fd)
                finally:
                    os.close(ffd)
        finally:
            os.close(root_fd)
        if self.max_size is not None and not self._anothers():
            try:
                with self._ledger() as ledger:
                    ledger.set(self._census())
            except (_NoRoomForLock, PermissionError) as exc:  # a full disk, or a cache
                # this user may not write (``evict`` makes room without it)
                logger.debug("no recount of %s: %s", self.root, exc)
        return removed

    @contextlib.contextmanager
    def _unsharing(self, given_up: list[bool]) -> Iterator[bool]:
        """Held while ``cleanup`` removes a function's empty shards and its folder: the
        ledger's lock, if the cache has one (whatever this store's max_size: a max_size
        writer made it), under which every max_size write makes its temporary file
        (``_reserve``). So a shard goes before such a write looks into it (it makes the
        shard again, and nothing removes that one while it holds the lock) or after its
        temporary file is in it (then it is not empty). Before, a shard removed between a
        write's opening it and its temporary file, twice, cost the write its result, with a
        warning blaming "another program". True if they may be removed; False if the lock
        could not be had (held past ``LOCK_WAIT``, unreadable): empty folders then stay, and
        ``given_up`` says so to the next function's (one wait a ``cleanup``, not one each)."""
        path = os.path.join(self.root, _LEDGER) + LOCK_SUFFIX
        lock = None
        if not given_up and os.path.lexists(path):  # else no max_size write made it yet
            try:
                if self._anothers() and stat.S_IFMT(os.lstat(path).st_mode) not in (
                        stat.S_IFREG, stat.S_IFDIR):
                    # Root in another user's cache: ``_flock`` would replace the link or
                    # FIFO there with a lock file of root's, private, refusing every later
                    # max_size write of the owner's (before, for good). Left as it is.
                    raise OSError(errno.EPERM, "not replaced in another user's cache", path)
                lock = _flock(path)
            except OSError as exc:
                logger.debug("empty folders of %s left: %s", self.root, exc)
                given_up.append(True)
        try:
            yield not given_up
        finally:
            if lock is not None:
                lock.release()

    def _census(self) -> int:
        """The bytes on disk: entries plus writers' reservations (their temporary files;
        those of dead writers are removed). Memory for none of the entries."""
        return self._oldest(0, frozenset()).total

    def _oldest(self, limit: int, skip: Container[str]) -> Oldest:
        """The ``limit`` least recently used entries not at a path in ``skip``, oldest
        first (ties in listing order, as a stable sort), and what the census counted:
        memory for ``limit`` entries, not for all."""
        counts = [0, 0]  # bytes of entries, of reservations
        oldest, newest = least_recent(self._walk(counts), limit, skip)
        return Oldest(oldest, counts[0] + counts[1], counts[1], newest)

    def _entries(self) -> Iterator[StoredEntry]:
        """Every entry, as ``_census`` counts them."""
        return self._walk([0, 0])

    def _walk(self, counts: list[int]) -> Iterator[StoredEntry]:
        """Every entry, as the census lists it, adding its bytes to ``counts[0]`` and those
        of writers' reservations to ``counts[1]`` (those of dead writers are removed)."""
        now = _Clocks(self.root)
        whole = True
        for name, _, shard, sfd, files in self._shards(quiet=True):
            folder = os.path.join(self.root, name, shard) + os.sep  # joined once a shard
            # A file of two names here, counted once: an entry being placed by a write with
            # max_size (linked at its name, its temporary name not yet unlinked: ``_place_new``),
            # its inode -> whether counted as a reservation. Before, counted under both.
            placed: dict[int, bool] = {}
            for file in files:
                match = _TEMP.fullmatch(file)
                try:
                    st = os.stat(file, dir_fd=sfd, follow_symlinks=False)
                except FileNotFoundError:  # removed since the listing: not there
                    continue
                except OSError as exc:  # there, of a size unknown (EIO): counted again
                    if exc.errno is None:  # (the caller's signal handler's: raised)
                        raise
                    whole = False
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                again = placed.get(st.st_ino) if st.st_nlink > 1 else None
                if match is not None:
                    if (again is None
                            and not (_orphaned(match, st, now) and _unlink_orphan(file, sfd))):
                        counts[1] += st.st_size
                        if st.st_nlink > 1:
                            placed[st.st_ino] = True
                elif _is_entry(file, shard):
                    if again:  # its bytes were counted as its writer's reservation: moved
                        counts[1] -= st.st_size
                    counts[0] += st.st_size
                    if st.st_nlink > 1:
                        placed[st.st_ino] = False
                    yield StoredEntry(name, file[: file.rindex(".")], st.st_size, _used(st),
                                      b"", folder + file, st.st_uid, _as_seen(st, times=True))
        self._census_whole = whole

    def _ledger(self) -> Ledger:
        return Ledger(self)

    def evict(self, incoming: int = 0) -> int:
        """``Store.evict`` (prune's; a write reserves room in ``_write``), except that a
        cache not made yet holds nothing to evict and is not made for it, as ``scan`` and
        ``cleanup`` make nothing (the ledger's lock would create the root, or raise where
        the user cannot)."""
        if not os.path.lexists(self.root) or self._anothers():
            return 0
        try:
            return super().evict(incoming)
        except (_NoRoomForLock, PermissionError):
            # A full disk (or quota) with no lock file yet: evicting is what makes room, so
            # it goes by a listing, as a store without a ledger does; the stored total is
            # recounted by the next eviction. Before, ``prune`` raised ENOSPC here. Or a
            # cache this user may read but not write (shared by hand, read-only to others):
            # no lock file can be made; what it may remove goes (before, prune raised).
            # Exact LRU, a batch at a time (``evict_listed``), as the ledger evicts: before,
            # every entry was listed into memory and sorted. Entries this user may not
            # remove are left, as the ledger leaves them.
            return evict_listed(self, incoming)

    # --- the ledger's primitives (see _ledger.SizedBackend) ------------------------------

    def _total_lock(self) -> Any:
        self._refuse_another_users()
        try:
            # (the root made and tagged first: a tag a full disk or a file size limit
            # refused is written then; before, its ENOSPC or EFBIG was raised out of
            # ``prune`` as it was, naming no file)
            self._makedirs(self.root)
            lock = _flock(os.path.join(self.root, _LEDGER) + LOCK_SUFFIX,
                          None if self._lock_mode_set else self._shared_mode())
            self._lock_mode_set = True
            return lock
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
                raise _NoRoomForLock(exc.errno, exc.strerror, exc.filename) from exc
            raise

    def _read_total(self) -> int | None:
        if self._total_unwritable:  # another user's, which this one may not keep
            return None
        return _read_int(os.path.join(self.root, _LEDGER))

    def _write_total(self, total: int) -> None:
        path = os.path.join(self.root, _LEDGER)
        try:
            _replace_small(path, str(total).encode(), self._shared_mode())
        except IsADirectoryError:
            # A folder someone made at the ledger's name: left as it is. With no total to
            # read (``_read_int``), each use counts the files. Before, every write with
            # max_size was not stored, and ``prune`` raised.
            return
        except PermissionError:
            # Another user's total in a cache shared by hand whose root is sticky (1777,
            # as /tmp): it may not be replaced. Opened to others (``_shared_mode``), it is
            # written in place, under the ledger's lock that every reader of it holds;
            # else this store counts the files at each use from now on (a total it read
            # but could not keep would never grow, and the cache with it). Before, every
            # write with max_size of every user but the total's owner was returned but
            # not stored ("Operation not permitted").
            if not _rewrite_in_place(path, str(total).encode()):
                logger.debug("the size ledger %s cannot be written: counting instead", path)
                self._total_unwritable = True
            return
        except OSError as exc:
            # (EFBIG: a process that may write no file, ``ulimit -f 0``, as a full disk;
            # before, ``prune`` with max_size raised it, naming no file)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            # A full disk has no room for a new file: the total is written over the old one
            # in place (under the ledger's lock, which every reader holds; its block is the
            # file's already). Before, it was removed at once, and every later write with
            # max_size counted the cache again while the disk stayed full (1.2 s a miss at
            # 65,000 entries on a full btrfs, each miss's own write failing). Only if that
            # fails too is the old total, wrong now, removed (which needs no room), so the
            # next use counts the files again. Before that, ``prune`` on a full disk raised
            # here, before evicting what would make room.
            try:
                if _rewrite_in_place(path, str(total).encode()):
                    return
            except OSError:  # no room even for that
                pass
            _unlink(path)

    def _unlink(self, entries: Sequence[StoredEntry]) -> list[StoredEntry]:
        """``Store._unlink``; entries this user may not remove are left, the others removed
        (and recorded in the ledger), then ``PartlyRemoved`` says so."""
        removed, denied, _ = self._unlink_owned(entries, settle=True)
        if denied:
            raise _partly_removed(len(removed), denied)
        return removed

    def _removable(self, entries: Sequence[StoredEntry]) -> list[bool]:
        """One ``stat`` and one ``access`` a shard (of the effective user, as unlink
        checks), not a try. In a sticky shard (``chmod +t``, 1777 as /tmp) only the file's
        owner, the shard's or root may remove a file: the entry's owner, from the census,
        says which (no system call an entry). Before, a sticky shard this user may write
        said every entry in it removable: eviction chose other users' entries, whose
        removal was refused, together with this user's own next in LRU order, which went
        though the others' alone held the room (the write then not stored all the same)."""
        shards: dict[str, tuple[bool, bool]] = {}  # shard -> (writable, only own files)
        effective = os.access in os.supports_effective_ids
        me = _euid()
        found = []
        for entry in entries:
            shard = os.path.dirname(entry.location)
            known = shards.get(shard)
            if known is None:
                try:
                    st = os.stat(shard, follow_symlinks=False)
                except OSError:  # gone: nothing held
                    st = None
                if st is None or not stat.S_ISDIR(st.st_mode):
                    known = (True, False)
                else:
                    known = (os.access(shard, os.W_OK | os.X_OK, effective_ids=effective),
                             bool(st.st_mode & stat.S_ISVTX) and me not in (0, st.st_uid))
                shards[shard] = known
            writable, own_only = known
            found.append(writable and (not own_only or entry.owner in (None, me)))
        return found

    def _unlink_refused(
        self, entries: Sequence[StoredEntry]
    ) -> tuple[list[StoredEntry], list[StoredEntry], list[StoredEntry]]:
        removed, denied, kept = self._unlink_owned(entries)
        by_path = {e.location: e for e in entries}
        return removed, [by_path[p] for p, _ in denied], kept

    def _unlink_owned(
        self, entries: Sequence[StoredEntry], settle: bool = False,
    ) -> tuple[list[StoredEntry], list[tuple[str, int]], list[StoredEntry]]:
        """The entries removed, the path and owner of each this user may not remove (kept
        per call: before, the owners were kept on the store, so two threads removing at
        once, two ``clear``s, an eviction and a ``prune``, read each other's: a
        ``ValueError`` from ``zip`` when the counts differed, else the wrong owners named),
        and the entries left as written again since they were listed."""
        by_path = {e.location: e for e in entries}
        denied: list[tuple[str, int]] = []
        kept: list[str] = []
        removed = [by_path[p] for p in self._unlink_entries(list(by_path), denied,
                                                            listed=by_path, kept=kept,
                                                            settle=settle)]
        return removed, denied, [by_path[p] for p in kept]


def _partly_removed(removed: int, refused: list[tuple[str, int]]) -> PartlyRemoved:
    """The error of a removal that met entries this user may not remove."""
    me = _euid()
    return PartlyRemoved(removed, [(path, "" if uid == me else user_name(uid))
                                   for path, uid in refused], user_name(me),
                         marked=all(_writable_by_mode(os.path.dirname(path), me)
                                    for path, uid in refused if uid == me))


def _writable_by_mode(folder: str, me: int) -> bool:
    """Whether ``folder``'s mode lets ``me`` remove what is in it (root: always): an entry
    refused there was refused for a mark (``chattr +i``/``+a``), not for the mode."""
    try:
        st = os.stat(folder, follow_symlinks=False)
    except OSError:
        return False
    return me == 0 or (st.st_uid == me and st.st_mode & 0o300 == 0o300)


def _held_message(root: str, max_size: int, held: int, size: int) -> str:
    """Why a write with max_size is not stored when others' entries hold the room."""
    # (or entries whose removal was refused, ``_ledger.Refusals``: before, those too
    # were said to be other users', of a file marked immutable)
    return (f"no room under max_size ({max_size:,} bytes) in {root} for an entry of "
            f"{size:,} bytes: entries {user_name(_euid())} may not remove hold {held:,} "
            "bytes of it (other users' entries, in folders this user may not write: a "
            "cache shared by hand; or files marked immutable, chattr +i), so they cannot be "
            "evicted: raise max_size, or have them removed (their owners clear them)")


class _NoRoomForLock(OSError):
    """The size ledger's lock cannot be had now: its file cannot be made (the disk, or
    quota, is full; a cache mounted read-only, where nothing is removed either), or this
    thread holds it (``_HeldHere``). The total then over-states until the next recount.

    On a read-only cache with max_size, ``clear``, ``cache_clear`` and ``cache_delete``
    took the lock's EROFS for a file removed by another process first: they answered 0
    (or False) and removed nothing, silently; ``prune`` raised it with nothing to remove.
    Now they go on without the ledger, as without max_size: the removal's own EROFS."""


class _HeldHere(_NoRoomForLock):
    """The size ledger's lock is held by this thread: a signal handler's call made while
    its thread updates the ledger (``flock`` on a new descriptor waits for its own thread's
    holding). Before, that call waited ``LOCK_WAIT`` (60 s) and then failed its write."""


_ledgers_held = threading.local()  # .locks: path -> the ledger lock this thread took last
if hasattr(os, "register_at_fork"):  # a child holds none (``_FlockLock.__del__``: its
    os.register_at_fork(after_in_child=lambda: _ledgers_held.__dict__.clear())  # parent's)


# The descriptors of the ``flock``s this process holds or waits for (the size ledger's, the
# statistics'), by number. A forked child closes its copies (``_forked``), unlocking nothing:
# before, it kept them, and the lock of a parent killed while holding it (a ``kill -9`` in
# a recount) stayed held for as long as the child lived (a worker or server forked
# meanwhile): every write with max_size, in every process, then waited ``LOCK_WAIT`` (60 s)
# and stored nothing. (A fork between an ``os.open`` and the lock noting it, a few
# bytecodes, still leaves the child that copy.)
# Weakly: a lock its holder lost is given back when dropped (``_FlockLock.__del__``).
_flocks: dict[int, weakref.ref[_FlockLock]] = {}


class _FlockLock:
    """An exclusive ``flock`` on a file opened without following links or blocking."""

    _fd = -1  # until set (an interrupt inside ``__init__``: nothing for ``__del__`` to do)

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pid = _PID[0]
        _flocks[fd] = weakref.ref(self)  # closed by a child forked while it is held

    def release(self) -> None:
        """Unlock and close; forgotten only once unlocked, so that a release cut short by
        an interrupt at its start is finished by calling it again (``Ledger.__exit__``)."""
        fd = self._fd
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child may share the fd
            finally:
                self._fd = -1
                mine = _flocks.get(fd)
                if mine is not None and mine() in (self, None):
                    del _flocks[fd]
                os.close(fd)

    def __del__(self) -> None:
        """A lock its holder lost (an interrupt between its return and the assignment of
        it, e.g. ``Ledger.__enter__``) is given back when dropped, never held until the
        process ends; a forked child's copy leaves the parent's lock alone."""
        if self._fd >= 0 and self._pid == _PID[0]:
            self.release()


def _lock_within(fd: int, wait: float, what: str) -> None:
    """``flock`` ``fd`` exclusively, waiting at most ``wait`` seconds (then ``OSError``):
    a holder stopped with it costs a delay, never a hang."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the usual case: free
        return
    except BlockingIOError:
        pass
    deadline = time.monotonic() + wait
    delay = 0.001
    while True:
        time.sleep(delay)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise OSError(errno.ENOLCK, f"{what} has been held by another process for "
                              f"over {wait:g} s (one stopped while holding it: Ctrl-Z, a "
                              "debugger?)") from None
        delay = min(delay * 2, 0.05)


def _flock(path: str, mode: int | None = None) -> Any:
    """The ledger's lock. ``flock`` like filelock's (so tools that take it with filelock
    agree), but a link planted at ``path`` is refused, never truncated or written. Waits
    at most ``LOCK_WAIT`` seconds.

    ``mode``: that of a cache shared by hand (``_shared_mode``), given to the lock file if it
    is this user's and private. Another user's that this one may read but not write (an
    older memojar's, 0644) is locked through a read-only descriptor (``flock`` needs no
    more). Before, the lock file was 0600 whoever made it, and in a cache shared by hand
    every write with max_size of every other user was returned but not stored
    ("Permission denied")."""
    held: dict[str, Callable[[], _FlockLock | _Taking | None]] = _ledgers_held.__dict__.setdefault(
        "locks", {})
    mine = held.get(path)
    holding = mine() if mine is not None else None
    if holding is not None and holding._fd >= 0:  # (a mark left by an interrupt: not held)
        raise _HeldHere(errno.EDEADLK, "the size ledger's lock is held by this thread (a "
                        "signal handler's call made while its thread updates it)", path)
    # Marked taken before it is: a signal handler's call in this thread that ran just as
    # the flock returned (before the lock was noted) opened its own descriptor and waited
    # LOCK_WAIT (60 s) for its own thread's lock, and so did every writer with max_size
    # meanwhile, in every process. Set back if it is not taken.
    try:
        held[path] = _taking
        lock = _flock_within(path, mode)
        if isinstance(lock, _FlockLock):  # (filelock's, elsewhere than POSIX: its own rules)
            held[path] = weakref.ref(lock)  # weakly: one its holder lost is given back
        else:
            held.pop(path, None)
    except BaseException:
        if mine is None:
            held.pop(path, None)
        else:
            held[path] = mine
        raise
    return lock


class _Taking:
    """What ``_flock`` notes of a ledger's lock it is taking: held, as far as a signal
    handler's call in the same thread can tell."""

    _fd = 0


_TAKING = _Taking()


def _taking() -> _Taking:
    return _TAKING


def _flock_within(path: str, mode: int | None) -> Any:
    """``_flock``, without the check for this thread's own holding."""
    if fcntl is None:
        from filelock import FileLock

        lock = FileLock(path, mode=0o600)
        lock.acquire(timeout=LOCK_WAIT)
        return lock
    for _ in range(3):
        try:
            fd = os.open(path, _O_LEDGER_LOCK, 0o600)
        except IsADirectoryError:
            # A folder someone made at the lock's name: left as it is, and locked itself
            # (every process opens the same folder, so they still exclude each other).
            # Before, every write with max_size was returned but not stored ("Is a
            # directory", naming the cache only), and ``prune`` raised.
            try:
                fd = os.open(path, _O_DIR)
            except OSError as exc:
                raise OSError(exc.errno, f"the size ledger's lock is a folder memojar did not "
                              f"make, which it cannot open ({exc.strerror}): move it away",
                              path) from exc
            lock = _FlockLock(fd)
            try:
                _lock_within(fd, LOCK_WAIT, f"the size ledger's lock {path}")
            except BaseException:
                lock.release()
                raise
            return lock
        except PermissionError as exc:  # another user's (a cache shared by hand)
            try:
                fd = os.open(path, _O_READ)
            except OSError:
                raise _private_lock(exc, path) from exc
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a socket planted there: open never opens one
                _unlink(path)
                continue
            if exc.errno != errno.ELOOP:
                raise
            _unlink(path)  # a link planted at memojar's name: the link goes, not its target
            continue
        lock = _FlockLock(fd)  # made before the flock: dropped, it gives the lock back
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # a FIFO or socket planted there
                lock.release()
                _unlink(path)
                continue
            # Opened to others only if it is a lock file memojar made: this user's, private
            # and with no other name (a file of the user's hard-linked at the lock's name is
            # locked through, and keeps its mode; before, it was opened to all).
            if (mode is not None and mode != 0o600 and st.st_uid == _euid()
                    and stat.S_IMODE(st.st_mode) == 0o600 and st.st_nlink == 1):
                os.fchmod(fd, mode)
            _lock_within(fd, LOCK_WAIT, f"the size ledger's lock {path}")
        except BaseException:
            lock.release()
            raise
        return lock
    raise OSError(errno.EINVAL, "not a regular file", path)


def _no_stamp_made(fdir: str, exc: OSError) -> str:
    """Why no generation stamp could be made in the function folder ``fdir``."""
    try:
        owner = os.stat(fdir, follow_symlinks=False).st_uid
    except OSError:
        return f"{fdir}{_SEP}{GEN_FILE} cannot be made ({exc.strerror})"
    whose = "this user's" if owner == _euid() else f"{user_name(owner)}'s"
    return (f"{fdir}{_SEP}{GEN_FILE} cannot be made: the folder is {whose}, and "
            f"{user_name(_euid())} may not write in it ({exc.strerror})")


def _private_lock(exc: OSError, path: str) -> PermissionError:
    """The error for a size ledger's lock of another user's this one may not open."""
    try:
        owner = user_name(os.stat(path, follow_symlinks=False).st_uid)
    except OSError:
        return PermissionError(exc.errno, exc.strerror, path)
    return PermissionError(
        exc.errno, f"permission denied (the size ledger's lock of this cache shared by hand "
        f"is {owner}'s, and private: {owner} may open it to others, chmod a+rw)", path)


# The folders kept open, across every store of the process, the earliest first: a process
# that goes through many functions (thousands of cached steps in one Cache, a cache_dir per
# test through ``cached(cache_dir=...)``, whose Caches are kept for good) keeps the last
# ``_FOLDERS_MAX`` open, never one descriptor per folder it ever wrote to (past 1023
# ``select`` fails, past the limit of open files ``open`` does, in the user's own code). A
# folder let go closes when the last thread writing through it drops it, and is opened
# again by its function's next miss. Stores are held weakly: a dropped one closes its
# folders at once.
_kept: dict[tuple[int, str], weakref.ref[FileStore]] = {}
_FOLDERS_MAX = 64


def _keep_open(store: FileStore, function: str) -> None:
    _kept.pop((id(store), function), None)  # now the latest
    _kept[id(store), function] = weakref.ref(store)
    kept = kept_at_most(_FOLDERS_MAX, 16)
    while len(_kept) > kept:
        try:
            earliest = next(iter(_kept))
            ref = _kept.pop(earliest)
        except (StopIteration, KeyError, RuntimeError):  # emptied, or changed meanwhile
            return
        name = earliest[1]
        owner = ref()
        if owner is not None:
            owner._open.pop(name, None)


class _Folder:
    """A function's folder opened by this process (``O_DIRECTORY | O_NOFOLLOW``): the miss
    path creates, links and locks files relative to it. Closed when the last thread holding
    it drops it, so a thread still writing through it never sees its descriptor reused."""

    __slots__ = ("dev", "fd", "ino", "name", "path")

    def __init__(self, path: str, st: os.stat_result) -> None:
        # Its descriptor is given by its opener once it is made (``_open_folder``), which
        # closes it if an interrupt comes first. Before, an interrupt in ``__init__``
        # between ``fd`` and ``ino`` made ``__del__`` fail ("no attribute 'ino'", printed)
        # and left the descriptor open.
        self.fd = -1
        self.path = path  # where it must still be (``FileStore._folder``)
        self.name = os.path.basename(path)  # its name under the root (the tally's key)
        self.dev, self.ino = st.st_dev, st.st_ino  # what the function's path must still be

    def __del__(self, _close: Callable[[int], None] = os.close,
                _fstat: Callable[[int], os.stat_result] = os.fstat) -> None:
        if self.fd < 0:  # not given one yet, or disowned: the number is someone else's now
            return
        try:
            st = _fstat(self.fd)
            if st.st_ino == self.ino and st.st_dev == self.dev:  # not a number reused since
                _close(self.fd)
        except OSError:
            pass


class _NoTmpfile(Exception):
    """The file system cannot make unnamed temporary files (``O_TMPFILE``)."""


def _removed(dfd: int) -> bool:
    """Whether the directory ``dfd`` was removed since it was opened: ext4 refuses an unnamed
    file in it with ``EPERM`` (``ENOENT`` elsewhere, as for a named one)."""
    try:
        return os.fstat(dfd).st_nlink == 0
    except OSError:
        return False


def _not_a_folder(path: str, mode: int | None = None, dir_fd: int | None = None,
                  making: bool = False) -> OSError:
    """The error for a folder of the cache (``path``; relative to ``dir_fd`` if given) that
    was not a directory where memojar went to write or make it, saying what happened as far
    as one ``lstat`` (or ``mode``, from one) tells: a link, a file, or a folder moved,
    removed or replaced meanwhile. Its text names the folder: the warning shows only it."""
    if mode is None:
        try:
            mode = os.lstat(path if dir_fd is None else os.path.basename(path),
                            dir_fd=dir_fd).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:  # a folder above it is not one now, or unreadable
            return OSError(exc.errno, f"{exc.strerror}: {path} or a folder above it; "
                           "nothing is written there", path)
    doing = "making" if making else "using"
    if mode is None:
        return OSError(errno.ENOENT, f"{path} was moved or removed while memojar was {doing} "
                       "it (by another program?); nothing was stored in it", path)
    if stat.S_ISDIR(mode):
        return OSError(errno.ESTALE, f"{path} was replaced while memojar was {doing} it (by "
                       "another program?); nothing was stored in it", path)
    if stat.S_ISLNK(mode):
        return OSError(errno.ELOOP, f"{path} is a symbolic link, not a folder of the cache; "
                       "nothing is written through it", path)
    return OSError(errno.ENOTDIR, f"{path} is not a directory but a file (or another kind); "
                   "nothing is written in it", path)


def _stat_at(name: str, dir_fd: int) -> os.stat_result | None:
    """``lstat`` of ``name`` in the folder ``dir_fd``; None if it cannot be had (removed,
    unreadable). The caller's signal handler's exception (no errno) is raised."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno is None:
            raise
        return None


def _rename_over(source: str, dir_fd: int, name: str) -> int:
    """Link the unnamed file ``source`` (``/proc/self/fd/N``) at a temporary name beside
    ``name`` and rename it over the entry there; the size of the entry it replaced."""
    for attempt in range(_NAME_TRIES):
        tmp = _temp_name(name)
        try:
            os.link(source, tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
            break
        except FileExistsError:  # a name taken (planted, or a dead process's): the next
            if attempt == _NAME_TRIES - 1:
                raise
        except BaseException:  # an interrupt just after the link was made: no orphan left
            _unlink(tmp, dir_fd)
            raise
    try:
        try:
            replaced = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
        except FileNotFoundError:  # removed meanwhile
            replaced = 0
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        _unlink(tmp, dir_fd)
        raise
    return replaced


# --- small file helpers ---------------------------------------------------------------

def _temp_name(path: str) -> str:
    """A temporary name beside ``path``, with this host and pid in it (so that an orphan is
    told from a live writer's file) and a number this process uses once."""
    return f"{path}.{_PID[0]}-{_HOST}.{next(_SEQUENCE) & 0xFFFFFFFF:08x}{TMP_SUFFIX}"


def _create_new(path: str, made: list[str] | None = None,
                dir_fd: int | None = None) -> tuple[int, str]:
    """A new private file under a temporary name beside ``path``, created with ``O_EXCL |
    O_NOFOLLOW``: whatever is planted at a name (a link, a file) is never opened; the next
    name is tried instead. The name is appended to ``made`` once the file exists, so that a
    caller whose return value an interrupt lost can still remove it. ``dir_fd``: ``path``
    and the name made are relative to that folder's descriptor."""
    for attempt in range(_NAME_TRIES):
        tmp = _temp_name(path)
        fd = -1
        try:
            fd = os.open(tmp, _O_CREATE, 0o600, dir_fd=dir_fd)
            if made is not None:
                made.append(tmp)
            return fd, tmp
        except FileExistsError:  # planted, or left by a dead process of the same pid
            if attempt == _NAME_TRIES - 1:
                raise
        except BaseException as exc:  # an interrupt just after the file was made: not left
            if fd != -1:
                os.close(fd)
            if fd != -1 or not isinstance(exc, OSError):  # (else the open's own error:
                _unlink(tmp, dir_fd)  # nothing made, and the unlink, ENAMETOOLONG too, hid it)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


_PID = [os.getpid()]  # this process's pid, without a system call per write
_START = [int(_started(_PID[0]) or 0)]  # its start (``_started``), 0 if not known
_LEFT: dict[str, dict[str, list[int]]] = {}  # root -> changes of dropped tallies, by folder
# root -> the lowest ``since`` of those tallies: listings recorded after it may hold them
_LEFT_SINCE: dict[str, int] = {}


class _Tally:
    """Entries and bytes a process added (+) or removed (-) in a cache, by function
    folder, not yet merged into its stats file: each write appends its change to ``deltas``
    (``deque.append`` is atomic: a miss takes no lock for it, which cost it as much as a
    system call), added up into ``counts`` under ``lock`` when read. One for every store of
    the folder in the process (``_tally_of``): before, one a store, so a count (``counted``:
    the file's plus this process's changes) left out the changes of another ``Cache`` of the
    same folder: a ``cache_clear`` through one and five writes through the other said 11
    entries of 5 files to the second, and 0 to the first.

    ``writer`` is the pid that registered as a writer of the cache (``enlist``) before its
    first change: the miss path's one test, as ``pid``'s before."""

    __slots__ = ("__weakref__", "counts", "deltas", "lock", "made", "pid", "root", "since",
                 "writer")

    def __init__(self, root: str = "") -> None:
        self.counts: dict[str, list[int]] = {}
        self.deltas: deque[tuple[str, int, int]] = deque()
        self.lock = threading.RLock()
        self.pid = _PID[0]  # a forked child starts with none: its parent's to merge
        self.root = root
        self.writer = 0  # no change noted yet: registered at the first (``enlist``)
        # The statistics file's merge number when this process last merged (or registered):
        # a listing recorded after it may hold changes of its not merged yet (``merge_stats``)
        self.since = 0
        # The folder (device, inode) this process's last merge wrote the statistics file in
        self.made: tuple[int, int] | None = None

    def forked(self) -> None:
        """In a forked child, the inherited tally is the parent's to merge."""
        if self.pid != _PID[0]:
            self.lock = threading.RLock()
            self.counts, self.deltas, self.pid = {}, deque(), _PID[0]

    def enlist(self, store: FileStore) -> None:
        """Before this process's first change of the cache (a forked child's too): it
        registers as a writer (``_enlist``), so that a reader of the counts finds out if it
        dies before merging them. Once a process: never on the miss path again."""
        self.forked()
        with self.lock:
            if self.writer != _PID[0]:
                if not self.unmerged():  # (a dropped tally's changes: any listing may
                    self.since = store.read_stats().get("merges", 0)  # hold them)
                enlisted = _enlist(store)
                if enlisted == _HELD:
                    self.held()
                elif enlisted:  # (else tried again at the next change)
                    self.writer = _PID[0]

    def held(self) -> None:
        """Mark the cache registered with the writer file this process holds of it
        (``_ENLISTED``), unless that file went meanwhile: a thread letting it go finds this
        tally and unmarks it (``_unheld``), unless it looked before the tally was there, or
        is this thread (a signal handler's call registering another cache past
        ``_ENLISTED_MAX``: the tally's lock is its thread's, ``_let_go_earliest``); then the
        look after the mark sees the file gone, and the next change registers again.
        Before, the mark came after: a cache made again while another thread let its kept
        file go, or one whose registration a signal handler's write interrupted, stayed
        marked with no file, its changes unseen at a SIGKILL, for good."""
        self.writer = _PID[0]
        if self.root not in _ENLISTED:
            self.writer = 0

    def unmerged(self) -> bool:
        """Whether changes are noted that no merge took yet."""
        return bool(self.deltas) or any(row != [0, 0] for row in self.counts.values())

    def __del__(self, _pid: list[int] = _PID,
                _left: dict[str, dict[str, list[int]]] = _LEFT,
                _left_since: dict[str, int] = _LEFT_SINCE) -> None:
        """A tally dropped with changes not merged (every store of its cache dropped
        before a merge: a ``Cache`` made in a function that returned) leaves them to the
        process's next tally of the cache (``_tally_of``), which merges them. Before, they
        were lost: that function's ``cache_info()`` said too few entries in every process,
        for good. The process's writer file of the cache is let go (``_let_go``): left,
        unlocked, where changes were not merged, so that the next reader lists the
        folders again."""
        # (the module's names as defaults: it may be torn down before the last tally)
        if self.pid != _pid[0]:
            return
        if self.unmerged():
            # (the lowest: a listing recorded since either tally's last merge may hold its
            # changes; before, none was kept and their merge dropped every listed count)
            _left_since[self.root] = min(_left_since.get(self.root, self.since), self.since)
            left = _left.setdefault(self.root, {})
            for fdir, (entries, size) in self.added_up().items():
                row = left.setdefault(fdir, [0, 0])
                row[0] += entries
                row[1] += size
        try:
            _let_go(self)
        except (AttributeError, TypeError, OSError):  # (at the interpreter's end: names gone)
            pass

    def added_up(self) -> dict[str, list[int]]:
        """The counts, with the changes written since added to them; ``lock`` held (the
        only place that takes from ``deltas``, so one that is not empty gives)."""
        deltas, counts = self.deltas, self.counts
        while deltas:
            fdir, entries, size = deltas.popleft()
            kept = counts.get(fdir)
            if kept is None:
                kept = counts[fdir] = [0, 0]
            kept[0] += entries
            kept[1] += size
        return counts


# --- the processes writing in a cache ---------------------------------------------------
# A process's changes of the entry counts are merged into the stats file every few seconds
# and at its exit: one killed before (SIGKILL, the OOM killer, a spawn pool's
# ``terminate()``) took its last ones with it, and every process's ``cache_info()`` then
# said too few entries (or too many, of removals) until a ``prune``. Before its first
# change, a process registers: a file of its own in ``<root>/.writers``, which it holds
# locked (``flock``) while it lives, and removes at an exit that merged everything
# (``withdraw``). A reader of the counts (``FileStore.counted``) that can lock one knows
# its writer died, perhaps with changes not merged (another user's, which it may not
# open: by its pid and start, on this machine): the counts are dropped, and each
# function's next look lists its folder (exact, off the hit and miss paths).
_WRITERS = ".writers"
# Its name: the machine (``_MACHINE``), pid, start (``_started``; 0: not known) and a
# random token. Another user's, which this one may not open (0600, as every file memojar
# makes but the statistics'), is judged by its process where that is of this machine.
_WRITER = re.compile(r"(?P<machine>[0-9a-f]{6})-(?P<pid>[0-9]+)-(?P<start>[0-9]+)-[0-9a-f]{16}")
_ENLISTED: dict[str, tuple[int, str]] = {}  # root -> this process's file: its fd and name
# The roots whose last tally was dropped, their writer file kept (``_let_go``), oldest first
_KEPT: dict[str, None] = {}
_KEPT_MAX = 8
_ENLISTED_MAX = 64  # writer files held open at once (``_let_go_earliest``)
# root -> the writer files of it this process let go unmerged (``_unhold``): name and inode
_UNHELD: dict[str, list[tuple[str, int]]] = {}
_UNHELD_MAX = 1024  # (past it, a record dropped leaves its file to the readers: one a run)
_ENLIST_TRIES = 3
# ``_enlist``'s answers: tried again at the next change; a file held (``_ENLISTED``); none
# can be had (no locks, another user's cache): taken for registered all the same
_AGAIN, _HELD, _NO_FILE = 0, 1, 2


def _enlist(store: FileStore) -> int:
    """Register this process as a writer of ``store``'s cache (see above); nothing where
    locks or the folder cannot be had (then its death goes unseen, as before). ``_AGAIN``
    where the process was out of open files (``EMFILE``): tried again at the next change.
    Before, the cache was taken for registered all the same, for good: under a soft limit
    of 32, 8 threads changing 100 caches left 97 unregistered."""
    root = store.root
    # (root writes no file in another user's cache; none is made in a folder not memojar's)
    if fcntl is None or store._anothers():
        return _NO_FILE
    if not is_cache_dir(root):  # (its tag there: unread for want of descriptors)
        return _AGAIN if os.path.lexists(os.path.join(root, _TAG)) else _NO_FILE
    held = _ENLISTED.get(root)
    if held is not None:
        if not _unlisted(root):  # still there (not removed with the cache)
            return _HELD
        _ENLISTED.pop(root, None)
        _close_quietly(held[0])
    try:
        dfd = _writers_folder(store)
    except OSError as exc:
        if isinstance(exc, PermissionError):
            _writers_closed(root, "register there")
        logger.debug("cannot register as a writer of %s: %s", root, exc)
        return _AGAIN if exc.errno in _OUT_OF_FILES else _NO_FILE
    try:
        for attempt in range(_ENLIST_TRIES):
            fd, name = _unheld_again(root, dfd) if attempt == 0 else (-1, "")
            again = fd >= 0  # (the file ``_unhold`` let go)
            if fd < 0:
                name = f"{_MACHINE}-{_PID[0]}-{_START[0]}-{os.urandom(8).hex()}"
                fd = os.open(name, os.O_RDONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
                             | _CLOEXEC, 0o600, dir_fd=dfd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # A reader may have locked it between the two, taken it for a dead
                # writer's and removed it: a new one then.
                if os.fstat(fd).st_nlink:
                    if _ENLISTED.setdefault(root, (fd, name))[1] != name:
                        # Registered meanwhile (a signal handler's call in this thread, or
                        # the tally of the cache made again in another): that file is kept,
                        # this one goes. Before, it was noted over that one, whose file
                        # stayed in ``.writers`` for good.
                        with contextlib.suppress(OSError):
                            if again:
                                _UNHELD.setdefault(root, []).append(
                                    (name, os.fstat(fd).st_ino))
                            else:
                                os.unlink(name, dir_fd=dfd)
                        return _HELD
                    fd = -1
                    _let_go_earliest(root)
                    return _HELD
            except BlockingIOError:
                if again:
                    # A reader's look at it (whether its writer died): still this process's
                    # to remove at the exit. Before, its record was dropped, and the file
                    # left in ``.writers`` (each costing the next reader a listing).
                    with contextlib.suppress(OSError):
                        _UNHELD.setdefault(root, []).append((name, os.fstat(fd).st_ino))
            finally:
                if fd >= 0:
                    os.close(fd)
    except OSError as exc:
        logger.debug("cannot register as a writer of %s: %s", root, exc)
        return _AGAIN if exc.errno in _OUT_OF_FILES else _NO_FILE
    finally:
        os.close(dfd)
    return _NO_FILE


_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE)  # (``_enlist``: tried again at the next change)
# Why a generation stamp cannot be made that is not the file system's kind (no hard links):
# a read-only cache, a full disk or quota (``FileStore.generation``)
_NO_ROOM_OR_READ_ONLY = (errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _unheld_again(root: str, dfd: int) -> tuple[int, str]:
    """This process's last writer file of ``root`` that ``_unhold`` let go, opened to be
    held again, if it is still the one it was; (-1, "") if none. Before, a process that
    changed more caches in turn than it holds files of (``_let_go_earliest``) made a new
    file at each registration: 4,080 in ``.writers`` after 4,000 misses over 80 caches."""
    unheld = _UNHELD.get(root)
    try:
        name, ino = unheld.pop() if unheld else ("", 0)
    except IndexError:  # another thread's registration of it (two tallies) took the last
        return -1, ""
    if not name:
        return -1, ""
    if not unheld:  # (kept, an empty list counted past ``_UNHELD_MAX`` and dropped the
        _UNHELD.pop(root, None)  # records of files still let go: never removed, 40 left)
    try:  # (O_NONBLOCK: a FIFO planted at its name never blocks the open)
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
    except OSError as exc:  # removed by a reader that found it unlocked
        if exc.errno in _OUT_OF_FILES:
            # Out of descriptors: its record is kept for the next registration (``_enlist``
            # tries again at the next change) and its removal at the exit. Before, it was
            # dropped: the file was never held again, and was left at a normal exit (one
            # a time, 1,951 after 4,000 misses over 80 caches out of files at every other),
            # so that the next reader dropped the counts and listed the folders again.
            _UNHELD.setdefault(root, []).append((name, ino))
            raise
        return -1, ""
    try:
        st = os.fstat(fd)
    except OSError:
        st = None
    if st is None or st.st_ino != ino or not _a_writers(st):
        os.close(fd)
        return -1, ""
    return fd, name


def _let_go_earliest(registered: str) -> None:
    """Past ``_ENLISTED_MAX`` caches registered (fewer under a low limit of open files:
    ``kept_at_most``), a writer file goes, as a dropped cache's does (``_let_go``): the
    earliest registered whose changes are all merged is removed (its next change
    registers again, at the cost of a file made); if every one has changes not merged
    yet (each changed since the last merge, ``FLUSH_EVERY``), the earliest is left
    unlocked (a reader then lists its folders again). Before, every cache a process ever
    changed kept its file open: 200 functions kept for good (``cached(cache_dir=...)``
    each) held 200 descriptors, and under a soft limit of 64 a process of 100 caches
    failed to store its results ("Too many open files").
    Never ``registered`` (the cache this thread registers now), nor one whose tally
    another thread holds (registering it): each is let go under its tally's lock, so
    that a registration is never marked (``writer``) once its file went. Before, a
    thread letting go the file another had just made left that cache marked registered
    with no file: its later changes went unseen at a SIGKILL, for good (12 caches of 100
    with 8 threads in 3 s).
    A thread that noted a change of that cache just as its file went is not covered
    until its next change registers again: if killed before it merges, that change is
    counted by no one until the folder is listed again (a prune, a clear)."""
    most = kept_at_most(_ENLISTED_MAX, 16)
    while len(_ENLISTED) > most:
        try:
            roots = [root for root in _ENLISTED if root != registered]
        except RuntimeError:  # changed meanwhile
            return
        for root in roots:
            tally = _live_tally(root)
            if root not in _LEFT and (tally is None or not tally.unmerged()):
                roots.insert(0, root)  # (tried first)
                break
        for root in roots:
            tally = _live_tally(root)
            if tally is None:
                _let_go_one(root, None)
                break
            if tally.lock.acquire(blocking=False):  # (else another thread's, registering it)
                try:
                    _let_go_one(root, tally)
                finally:
                    tally.lock.release()
                break
        else:
            return


def _live_tally(root: str) -> _Tally | None:
    ref = _TALLIES.get(root)
    return None if ref is None else ref()


def _let_go_one(root: str, tally: _Tally | None) -> None:
    """``_let_go_earliest``'s, of ``root`` (``tally``'s lock held): removed if its changes
    are merged, else left unlocked (``_unhold``)."""
    if root not in _ENLISTED:  # let go by another thread meanwhile
        return
    _KEPT.pop(root, None)
    if tally is not None:
        tally.writer = 0  # (first: a change noted from now on registers again)
    if root in _LEFT or (tally is not None and tally.unmerged()):
        _unhold(root)
    else:
        _withdraw(root)


def _unlisted(root: str) -> bool:
    """Whether this process's writer file of ``root`` was removed (with the cache)."""
    held = _ENLISTED.get(root)
    if held is None:  # none (or none could be made: not tried again)
        return False
    try:
        return not os.fstat(held[0]).st_nlink
    except OSError:
        return True


def _writers_folder(store: FileStore) -> int:
    """``<root>/.writers``, opened (made if missing), with the root's bits for its group and
    others where it is this user's (``_opened_as_root``)."""
    path = os.path.join(store.root, _WRITERS)
    try:
        dfd = os.open(path, _O_DIR)
    except FileNotFoundError:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        dfd = os.open(path, _O_DIR)
    try:
        _opened_as_root(dfd, store.root)
    except OSError as exc:
        logger.debug("cannot open %s to the cache's other users: %s", path, exc)
    return dfd


def _opened_as_root(dfd: int, root: str) -> None:
    """Give the writers' folder (``dfd``, if this user's) the root's read, write and search
    bits for its group and others, whatever the umask: every process writing in the cache
    registers there, and every reader lists it. In a private cache that is 0700, as every
    folder memojar makes. Before, it was always 0700 (and the umask's): in a cache its
    owner had shared with a group by hand (``chmod -R g+rwXs``) before it was made, the
    others of the group could neither register nor see the dead writers of the one who
    made it, and their counts went wrong silently, for good. (Not the root's sticky bit:
    a dead writer's file is removed by whoever finds it.)"""
    st = os.fstat(dfd)
    if st.st_uid != os.getuid():
        return
    wanted = os.stat(root).st_mode & 0o077
    if stat.S_IMODE(st.st_mode) & wanted != wanted:
        os.fchmod(dfd, stat.S_IMODE(st.st_mode) | wanted)


def _dead_writers(root: str) -> tuple[int, list[tuple[str, int, int]]]:
    """The folder of ``root``'s writers (-1: none) and the writers found dead: (name, fd
    holding its lock, inode) each. A writer another user's reader may not open is taken
    for alive."""
    try:
        dfd = os.open(os.path.join(root, _WRITERS), _O_DIR)
    except PermissionError:
        _writers_closed(root, "see those that died")
        return -1, []
    except OSError:
        return -1, []
    dead: list[tuple[str, int, int]] = []
    try:
        mine = _ENLISTED.get(root, (-1, ""))[1]
        for name in os.listdir(dfd):
            named = _WRITER.fullmatch(name)
            if name == mine or not named:
                continue
            try:
                fd = os.open(name, _O_READ, dir_fd=dfd)
            except PermissionError:  # another user's (0600)
                st = _stat_at(name, dfd)
                if st is not None and _a_writers(st) and _writer_gone(named):
                    dead.append((name, -1, st.st_ino))
                continue
            except OSError:
                continue
            try:
                # (looked at before its lock is tried: before, a hard link to a user's file
                # planted here had an fcntl lock taken on it at every count read, and the
                # user's own program trying to lock it failed meanwhile, 88,816 times in
                # 3 s of cache_info() calls)
                st = os.fstat(fd)
                if _a_writers(st):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    dead.append((name, fd, st.st_ino))
                    fd = -1
            except OSError:  # alive: it holds its lock
                pass
            finally:
                if fd >= 0:
                    os.close(fd)
    except BaseException:
        _close_all(dead)
        os.close(dfd)
        raise
    return dfd, dead


def _writers_closed(root: str, what: str) -> None:
    """Say, once a folder, that ``root``'s ``.writers`` is closed to this user (``what``
    it cannot do): a process of its killed before merging, or one it cannot see die,
    leaves counts wrong for every process until a prune. Before, this was logged at debug
    level only: another user's 0700 ``.writers`` in a cache shared with a group (made so
    by an older memojar, or by hand), and the counts went wrong silently."""
    path = os.path.join(root, _WRITERS)
    if path in _CLOSED_SAID:
        return
    _CLOSED_SAID.add(path)
    try:
        st, mode = os.stat(path), stat.S_IMODE(os.stat(root).st_mode)
    except OSError:
        return
    if st.st_uid == _euid():
        fix = f"chmod u+rwx {path}"
    else:
        fix = f"{user_name(st.st_uid)} may open it as the cache folder is, chmod {mode:o} {path}"
    warn(f"{path}, where the processes writing in the cache register, is closed to "
         f"{user_name(_euid())}, who may not {what}: a process killed before merging its "
         "counts goes unseen, and cache_info() and memojar info say too few or too many "
         f"entries until a prune ({fix})")


_CLOSED_SAID: set[str] = set()  # the writers' folders said closed (``_writers_closed``)


def _a_writers(st: os.stat_result) -> bool:
    """Whether a file in ``.writers`` can be a writer's: an empty regular file of one link
    (memojar never links one, nor writes in it). Before, a hard link to a user's file named
    like one was removed; and a user's file moved there (its only link) was too, with what
    it held."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and not st.st_size


def _writer_gone(named: re.Match[str]) -> bool:
    """Whether the process a writer file names is gone: known only of this machine's."""
    if named["machine"] != _MACHINE:
        return False
    pid = int(named["pid"])
    started = _started(pid)
    return started is None or (named["start"] != "0" and started not in (
        b"", named["start"].encode()))


def _close_all(dead: list[tuple[str, int, int]]) -> None:
    for _, fd, _ in dead:
        if fd >= 0:
            os.close(fd)


def _remove_writer(name: str, ino: int, dfd: int, own: bool = False) -> None:
    """Remove a writer's file, if it is still the one looked at (``ino``): this process's
    (``own``: linked elsewhere too by a ``cp -al`` of the cache, still its), or one that
    can be a writer's (``_a_writers``)."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if st.st_ino == ino and (own or _a_writers(st)):
            os.unlink(name, dir_fd=dfd)
    except OSError as exc:  # another user's, in a folder this one may not write
        logger.debug("cannot remove the record of a writer gone, %s: %s", name, exc)


def withdraw() -> None:
    """At the exit (``_Flusher.at_exit``, once every live cache merged): the changes of
    dropped tallies are merged (``_merge_left``), and this process's writer files go,
    those it let go (``_let_go``) too. One with changes not merged (a merge that failed)
    stays, so that the next reader lists the folders again. Before, a tally dropped
    unmerged (the ``Cache`` of ``memojar clear``, of a function that returned) left its
    file at every exit: one more in ``.writers`` for every run of the command, for good
    where no count was read, and each found dead by the next count read, which listed
    every folder again."""
    for root in list(_LEFT):
        _merge_left(root)
    for root in list(_ENLISTED) + list(_UNHELD):
        ref = _TALLIES.get(root)
        tally = None if ref is None else ref()
        if root in _LEFT or (tally is not None and tally.unmerged()):
            continue
        if root in _ENLISTED:
            _withdraw(root)
        unheld = _UNHELD.pop(root, None)
        if unheld is not None:
            _remove_at(root, unheld)


def _merge_left(root: str) -> None:
    """Merge the changes of ``root``'s dropped tallies (``_LEFT``) through a store opened
    for them, where ``root`` is still a cache (none is made for them); left as they are if
    the merge fails."""
    if not is_cache_dir(root):
        return
    try:
        store = FileStore(root)
        left = _LEFT.pop(root, None)  # (a live tally's store: its tally takes them)
        if left is not None:
            tally = store._tallied
            with tally.lock:
                tally.since = min(tally.since, _LEFT_SINCE.pop(root, 0))
                for fdir, (entries, size) in left.items():
                    tally.deltas.append((fdir, entries, size))
        store.merge_stats({})
    except Exception as exc:  # noqa: BLE001 - statistics never fail the program
        logger.debug("cannot save the entry counts in %s: %s", root, exc)


def _let_go(tally: _Tally) -> None:
    """The last store of ``tally``'s cache dropped: this process's writer file of it is
    kept for the next store (a ``Cache`` made a call registers once), for the last
    ``_KEPT_MAX`` caches so dropped; an older one's goes, or, with changes not merged, is
    left unlocked (a dead writer's to a reader, which lists the folders again), and its
    next tally registers again. Before, each stayed open until the exit: a process using
    a cache a folder in turn (a test suite's ``Cache(tmp_path)``) ran out of open files
    (every write then failed)."""
    root = tally.root
    ref = _TALLIES.get(root)
    other = None if ref is None else ref()
    if other is not None and other is not tally:  # made since: the file is its now
        return
    if tally.writer != _PID[0] or root not in _ENLISTED:
        return
    _KEPT.pop(root, None)
    _KEPT[root] = None
    # (another thread's store of a cache, ``_tally_of``, or its drop of one, here, may take
    # a name out meanwhile: ``_taken_past``)
    for oldest, _ in _taken_past(_KEPT, _KEPT_MAX):
        ref = _TALLIES.get(oldest)
        if ref is not None and ref() is not None:  # a store of it made since: its file
            continue
        if oldest in _LEFT:
            _unhold(oldest)
        else:
            _withdraw(oldest)


def _unhold(root: str) -> None:
    """Let this process's writer file of ``root`` go unlocked, left for a reader (a dead
    writer's: it lists the folders again), noted to be removed at the exit once the
    changes are merged (``withdraw``), for the last ``_UNHELD_MAX`` caches."""
    fd, name = _ENLISTED.pop(root, (-1, ""))
    if fd < 0:
        return
    _unheld(root)
    try:
        held = _UNHELD.setdefault(root, [])
        held.append((name, os.fstat(fd).st_ino))
        del held[:-_KEPT_MAX]
        # (another thread may trim it, or note a file, meanwhile: ``_let_go_earliest``, on
        # the miss path of a process changing many caches; ``_taken_past``)
        for oldest, dropped in _taken_past(_UNHELD, _UNHELD_MAX):
            tally = _live_tally(oldest)
            if dropped and oldest not in _LEFT and (tally is None or not tally.unmerged()):
                _remove_at(oldest, dropped)  # merged since: no reader needs them
    except OSError:
        pass
    finally:
        _close_quietly(fd)


_Name = TypeVar("_Name")
_Held = TypeVar("_Held")
_GONE: Any = object()  # a name another thread took first (``_taken_past``)


def _taken_past(table: dict[_Name, _Held], most: int) -> Iterator[tuple[_Name, _Held]]:
    """The earliest names of ``table`` (``_KEPT``, ``_UNHELD``), taken out while it holds
    more than ``most``, with what each held. Another thread may take one first, or change
    the table meanwhile: that name is its, and the next is tried. Before, the KeyError (or
    the RuntimeError of a table changed while read) went to the user: "Exception ignored
    in _Tally.__del__" from ``_let_go`` (8 threads using 24 caches in turn: 3 in 6 s); and
    from ``_unhold``, on the miss path, the user's call failed, its result not stored (8
    threads changing 140 caches: 2 or 3 calls in 4,800)."""
    while len(table) > most:
        try:
            name = next(iter(table))
        except (RuntimeError, StopIteration):
            continue
        held = table.pop(name, _GONE)
        if held is not _GONE:
            yield name, held


def _remove_at(root: str, held: list[tuple[str, int]]) -> None:
    """Remove the writer files ``_unhold`` let go, each if still the one it was."""
    try:
        dfd = os.open(os.path.join(root, _WRITERS), _O_DIR)
    except OSError:
        return
    try:
        for name, ino in held:
            _remove_writer(name, ino, dfd)
    finally:
        os.close(dfd)


def _withdraw(root: str) -> None:
    """Remove this process's writer file of ``root`` and let its lock go. One whose folder
    cannot be opened for want of descriptors is let go as ``_unhold`` lets one go: removed
    at the exit (or held again at the next registration). Before, it was forgotten, and
    left in ``.writers`` after a normal exit (a process at its descriptor limit letting an
    older cache's file go), taken for a dead writer's by the next reader."""
    held = _ENLISTED.pop(root, None)
    if held is None:
        return
    _unheld(root)
    fd, name = held
    try:
        dfd = os.open(os.path.join(root, _WRITERS), _O_DIR)
    except OSError as exc:
        if exc.errno in _OUT_OF_FILES:
            with contextlib.suppress(OSError):
                _UNHELD.setdefault(root, []).append((name, os.fstat(fd).st_ino))
        _close_quietly(fd)
        return
    try:
        _remove_writer(name, os.fstat(fd).st_ino, dfd, own=True)
    except OSError:
        pass
    finally:
        os.close(dfd)
        _close_quietly(fd)


def _unheld(root: str) -> None:
    """This process's writer file of ``root`` went (``_unhold``, ``_withdraw``): its tally,
    if one is there now, registers again at its next change. One made since the file was
    looked at (``_let_go_earliest``, ``_let_go``: no tally then, a ``Cache`` of the folder
    made again) found it held (``_HELD``), and was marked registered (``_Tally.held``)."""
    tally = _live_tally(root)
    if tally is not None:
        tally.writer = 0


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


_TALLIES: dict[str, weakref.ref[_Tally]] = {}  # by cache folder, held by its stores


def _tally_of(root: str) -> _Tally:
    """The tally of the cache at ``root`` this process's stores share (made if none). No
    lock: a signal handler making a ``Cache`` runs inside this in its thread (a lock would
    hang it); two threads making the first stores of a folder at once may each make one,
    and the earlier one's store then counts alone, as every store did before."""
    root = os.fspath(root)  # a Path (a test's store) names the same folder as its text
    ref = _TALLIES.get(root)
    tally = None if ref is None else ref()
    if tally is None:
        tally = _Tally(root)
        _KEPT.pop(root, None)  # (its writer file, if kept, is this one's)
        left = _LEFT.pop(root, None)
        if left is not None:  # a dropped tally's changes (``_Tally.__del__``)
            tally.counts = left
            tally.since = _LEFT_SINCE.pop(root, 0)
        if len(_TALLIES) >= _TALLIES_MAX:  # the folders no store holds any longer go
            # Each only if its tally is still dead, in one step (as WeakValueDictionary
            # drops its dead values): another thread may make a store of it meanwhile (a
            # ``Cache`` made again). Before, a live tally found in place of a dead one
            # listed went: no let-go of its writer file found it, and it stayed marked
            # registered with no file (``_unheld``), for good.
            for name in list(_TALLIES):
                _remove_dead_weakref(_TALLIES, name)
        _TALLIES[root] = weakref.ref(tally)
        if left is not None:  # registered, where its file is held (else at the next change;
            tally.held()  # once found here: ``_Tally.held``)
    return tally


_TALLIES_MAX = 64
# Temporary names number from a random start: a name is the host, the pid and this number,
# so no two live writers pick the same one, and no system call is made per name.
_SEQUENCE = itertools.count(int.from_bytes(os.urandom(4), "little"))
_NAME_TRIES = 3


def _forked() -> None:
    """A forked child: its own pid and start in the names it writes; its copies of the
    parent's writer files closed (the parent's locks stay the parent's: a parent killed is
    seen dead while its child lives), its own made at its first change."""
    global _HOST
    _PID[0] = os.getpid()
    started = _started(_PID[0]) or b""
    _HOST = _MACHINE + _process_tag(started)
    _START[0] = int(started or 0)
    for fd, _ in _ENLISTED.values():
        _close_quietly(fd)
    _ENLISTED.clear()
    for fd, ref in list(_flocks.items()):  # the parent's ``flock``s: its own to give back
        lock = ref()
        if lock is not None and lock._fd == fd:  # (a dropped lock released its descriptor,
            lock._fd = -1  # whose number may be another file's now: never closed here)
            _close_quietly(fd)
    _flocks.clear()
    # Each tally's lock, which a thread of the parent may have held at the fork (its first
    # change of a cache registering it as a writer, a merge): renewed now, not at the
    # child's first change. Before, a child's ``prune()`` (or ``cache_info()`` once a
    # writer died) took it first and waited for ever (16 forks in 150 from a process whose
    # other thread wrote in new caches).
    for kept in list(_TALLIES.values()):
        tally = kept()
        if tally is not None:
            tally.forked()
    _KEPT.clear()
    _UNHELD.clear()
    _LEFT.clear()  # the parent's to merge
    _LEFT_SINCE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _replace_small(path: str, data: bytes, mode: int = 0o600,
                   dir_fd: int | None = None) -> None:
    """Write a small file (a note, the ledger) atomically: a new private temporary file,
    created without following links, renamed over ``path`` (relative to ``dir_fd`` if
    given); ``mode``: opened to others (``_shared_mode``)."""
    made: list[str] = []  # the temporary name once made: an interrupt that loses the
    try:  # return value below still removes it (before: left for good, one an interrupted
        fd, tmp = _create_new(path, made, dir_fd)  # notebook call's sweep note)
    except BaseException:
        for name in made:
            _unlink(name, dir_fd)
        raise
    try:
        try:
            if mode != 0o600:
                try:
                    os.fchmod(fd, mode)
                except OSError as exc:  # modes refused (FAT shown 0777): written as is
                    if exc.errno is None:
                        raise
                    logger.debug("cannot give %s the mode %o: %s", path, mode, exc)
            _write_all(fd, [data])  # the statistics file grows with the functions
        finally:
            os.close(fd)
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        _unlink(tmp, dir_fd)
        raise


def _read_int(path: str) -> int | None:
    try:
        fd = os.open(path, _O_READ)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return int(os.read(fd, 64) or 0)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _read_rest(fd: int, data: bytes, size: int) -> bytes:
    parts = [data]
    while data and sum(map(len, parts)) < size:
        data = os.read(fd, size - sum(map(len, parts)))
        parts.append(data)
    return b"".join(parts)  # shorter than fstat said, if the file shrank: verify rejects it


def _within_file_size_limit(chunks: Sequence[Any]) -> None:
    """Raise ``EFBIG`` if an entry of ``chunks`` is larger than the process's file size
    limit (``ulimit -f``). Asked only where SIGXFSZ has its default action (an interpreter
    embedded without Python's signal handling, or the user's ``SIG_DFL``), which kills the
    process at the write that passes the limit: before, the result was lost with it. Python
    ignores SIGXFSZ otherwise, and such a write fails with EFBIG, as any fault does."""
    if resource is None:
        return
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit == resource.RLIM_INFINITY:
        return
    size = sum(memoryview(c).nbytes for c in chunks)
    if size > limit:
        raise OSError(errno.EFBIG, f"the entry ({size:,} bytes) is larger than the process's "
                      f"file size limit (RLIMIT_FSIZE, ulimit -f: {limit:,} bytes)")


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


def _write_rest(fd: int, chunks: Sequence[Any], written: int) -> None:
    """Write what is left of bytes or byte views after the first ``written`` bytes (one
    ``writev`` took fewer than all, or was not tried: more than ``_IOV_MAX`` chunks)."""
    rest = []
    for chunk in chunks:
        view = memoryview(chunk)
        if written >= view.nbytes:
            written -= view.nbytes
        else:
            rest.append(view[written:])
            written = 0
    _write_all(fd, rest)


def _used(st: os.stat_result) -> float:
    """When an entry was last read or written: a hit stamps its access and modification
    times (an entry is never written in place, so its modification time is free for it);
    FAT keeps no access time, and a file system mounted ``noatime`` may drop it."""
    return max(st.st_atime, st.st_mtime)


def _is_entry(name: str, shard: str) -> bool:
    """``name`` is an entry's file name, in the shard its key names."""
    return name[:2] == shard and _ENTRY.fullmatch(name) is not None


def _named(head: bytes) -> str | None:
    """The function an entry's header names; None if it cannot be read."""
    try:
        return read_header(head).function
    except Miss:
        return None


def _open_to_look(name: str, dir_fd: int) -> int:
    """Open an entry file to look at it: ``O_NOATIME``, listing is not use. With relatime,
    reading a never-read entry stamps its access time, and least-recently-used eviction
    goes by it."""
    try:
        return os.open(name, _O_READ_HEAD, dir_fd=dir_fd)
    except PermissionError:  # O_NOATIME needs the file's owner: another user's entry
        return os.open(name, _O_READ, dir_fd=dir_fd)


def _read_head(name: str, dir_fd: int) -> tuple[os.stat_result | None, bytes]:
    fd = _open_to_look(name, dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, b""
        head = complete_head(os.read(fd, HEAD_BYTES), lambda start, end: os.read(fd, end - start))
        return st, head
    finally:
        os.close(fd)


def _begins_as_an_entry(name: str, dir_fd: int) -> bool:
    """Whether the file ``name`` begins as memojar begins its entries (``_memojars``); True
    if this user may not read it (another user's, in a cache shared by hand: theirs to
    judge, as before), False if it cannot be read otherwise (then it is not removed)."""
    first = _first_bytes(name, dir_fd, _HEAD_LOOK)
    return first is _UNREADABLE or (first is not None and _memojars(first))


_HEAD_LOOK = 16  # bytes: as many as ``written_as_an_entry`` looks at, and more


def _memojars(head: bytes) -> bool:
    """Whether a file at an entry's name that begins with ``head`` is memojar's: it begins
    as an entry, or it is empty or begins with zeros, as a file system that lost an entry's
    data in a crash leaves it (memojar does not sync its writes): nobody's data, removed as
    unreadable. Anything else there is another tool's, and left."""
    return written_as_an_entry(head) or not head[:_HEAD_LOOK].strip(b"\0")


def _starts_with(name: str, dir_fd: int, head: bytes) -> bool:
    """Whether the file ``name`` still starts with ``head`` (what a judgement read of it);
    False if it cannot be read (then it is not removed either)."""
    return _first_bytes(name, dir_fd, len(head)) == head


_UNREADABLE = b"\0unreadable"  # (``_first_bytes``: a marker no read returns, by identity)


def _first_bytes(name: str, dir_fd: int, n: int) -> bytes | None:
    """The file ``name``'s first ``n`` bytes, looked at (``_open_to_look``); ``_UNREADABLE``
    if this user may not open it, None if it cannot be read otherwise."""
    try:
        fd = _open_to_look(name, dir_fd)
    except PermissionError:
        return _UNREADABLE
    except OSError as exc:
        if exc.errno in _OUT_OF_FILES:
            # This process's want of descriptors, not the file's: nothing can be told, and
            # the caller says so. Before, every entry of a process at its ``ulimit -n`` was
            # taken for another tool's file and left: ``clear()`` answered 0, removing
            # nothing, and ``memojar clear --yes`` said "nothing to clear".
            raise
        return None
    try:
        return os.pread(fd, n, 0)
    except OSError:
        return None
    finally:
        os.close(fd)


def _as_seen(st: os.stat_result, times: bool) -> str:
    """Which file a listing saw at an entry's name (``StoredEntry.etag``): one written there
    since has another inode or size, or the same number given again with its own write's
    times. ``times`` for eviction's census (a hit's stamp since, with ``max_size``, keeps
    the entry: used since, it is not the least recently used), not for ``Cache.clear``'s
    listing: an entry only read since goes with the rest (kept, it served the value from
    before the clear afterwards)."""
    if times:
        return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    return f"{st.st_ino}:{st.st_size}"


def _size_of(path: str) -> int:
    try:
        return os.stat(path, follow_symlinks=False).st_size
    except OSError:
        return 0


def _size_at(name: str, dir_fd: int) -> int:
    """The size of the file at ``name`` (not followed), 0 if there is none."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
    except OSError:
        return 0


def _unlink(path: str, dir_fd: int | None = None) -> bool:
    try:
        os.unlink(path, dir_fd=dir_fd)
        return True
    except FileNotFoundError:  # removed by another process first: the race we expect
        return False


def _unlink_alone(name: str, dir_fd: int) -> bool:
    """Unlink the temporary file ``name``; whether it was its file's only name (an entry
    linked from it keeps the file, and its room)."""
    try:
        alone = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_nlink == 1
    except FileNotFoundError:
        return False
    return _unlink(name, dir_fd) and alone


def _unlink_file(name: str, dir_fd: int) -> None:
    """Unlink ``name`` if it is a file (not a folder: one put at the sweep note's name made
    ``prune`` raise ``IsADirectoryError``)."""
    try:
        if not stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            _unlink(name, dir_fd)
    except FileNotFoundError:  # removed by another process first
        pass
    except PermissionError:  # another user's folder this one may not write (a cache
        pass  # shared by hand): theirs to remove. Before, ``prune`` raised ('.swept')


def _rewrite_in_place(path: str, data: bytes) -> bool:
    """Write ``data`` over the regular file at ``path``, keeping its owner (nothing if there
    is none, or it cannot be written); whether it was. Not atomic: a reader meeting it half
    written finds no statistics (a listing counts again)."""
    try:
        fd = os.open(path, os.O_WRONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:  # a hard link: someone else's
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            return True
        return False
    finally:
        os.close(fd)


_LINKED_TRIES = 20  # a new stamp has its temporary name as a second link for a moment


def _each(act: Callable[[str], None], names: list[str]) -> None:
    """``act`` on each of ``names`` (taken from the list's end), also when an exception (an
    interrupt: a second Ctrl-C) is raised meanwhile, the first one raised after the last.
    A name is acted on again after an exception (``act`` may have been cut short, or not
    begun), and left after a second one on it."""
    raised: BaseException | None = None
    failed: list[str] = []
    while names:
        try:
            while names:
                act(names[-1])
                names.pop()
        except BaseException as exc:  # noqa: BLE001 - raised after the rest are done
            if raised is None:
                raised = exc
            if names and failed and failed[-1] is names[-1]:
                names.pop()
            elif names:
                failed.append(names[-1])
    if raised is not None:
        try:
            raise raised
        finally:  # this frame is in its traceback: no cycle through the call's frames
            del raised


# Errors of a process short of descriptors or memory, not of the file or folder.
_SHORT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})


def _own_stamp(st: os.stat_result) -> bool:
    """A generation stamp memojar made: a regular 8-byte file with no other name. A hard
    link put there (a file of the user's, or a copy made with ``cp -al``) is never written
    in place: before, a ``clear`` overwrote its first 8 bytes."""
    return stat.S_ISREG(st.st_mode) and st.st_size == 8 and st.st_nlink == 1


def _no_links(*dirs: str, uid: int | None = None) -> None:
    """Raise unless each of a function's folders (its folder, a shard) is a real directory:
    memojar never writes through a link planted in its cache. One ``lstat`` each, on the
    miss path only. ``uid``: and of this user or root (``_refuse_others``)."""
    for d in dirs:
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode):
            raise _not_a_folder(d, st.st_mode)
        if uid is not None:
            _refuse_others(d, st.st_uid, uid, "folder")


def _refuse_others(path: str, owner: int, uid: int, what: str) -> None:
    """Raise ``PermissionError`` if ``uid`` is root and ``path`` (a cache's root, a
    function's folder) another user's: files root made there would be ones its owner could
    neither read nor remove (0600, 0700): keys that user could never cache again, and a
    ``memojar ls`` or ``clear`` that fails. Any other user writes where the file system
    lets it: only root passes over the owner's modes, and where another user's folder
    is writable the owner opened it, or the file system shows every file as one user's
    (a share mounted with ``all_squash`` or a fixed ``uid=``, sshfs), where files made
    there are no less the owner's."""
    if uid == 0 and owner != 0:
        raise PermissionError(errno.EACCES, f"it is {user_name(owner)}'s {what}, and this "
                              f"process runs as {user_name(uid)}: memojar writes nothing "
                              "there (files that user could neither read nor remove). Give "
                              "this process a cache directory of its own", path)


def _open_dir(name: str, dir_fd: int | None = None) -> int | None:
    """A descriptor of the directory ``name`` (relative to ``dir_fd``), never through a link;
    None if it is missing, not a directory, a link, or unreadable."""
    try:
        return os.open(name, _O_DIR if dir_fd is not None else _O_DIR & ~_NOFOLLOW,
                       dir_fd=dir_fd)  # the root itself may be a link: the user chose it
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symbolic link
            return None
        raise


def _open_listed(name: str, dir_fd: int, parent: str,
                 skipped: list[tuple[str, int]] | None = None) -> int | None:
    """``_open_dir`` of a folder met while walking the cache. One this user may not read is
    a ``PermissionError`` naming it whole, its owner and what to do, where the walk stops
    (another user's folder left in a private cache by an older memojar run with ``sudo``,
    or put there by hand); except, given ``skipped``, another user's folder in a folder
    opened to others (a cache shared by hand, ``chmod -R a+rwX``, where each user's memojar
    makes its new folders private): that is appended to ``skipped`` (its path and owner)
    and passed over (None), as the folders a walk cannot see."""
    try:
        return _open_dir(name, dir_fd)
    except PermissionError as exc:
        path = os.path.join(parent, name)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except PermissionError:
            # The folder holding it may be listed but not entered (no search permission):
            # that folder is the one to name. Before, a bare "Permission denied".
            raise _unreadable(exc, parent, os.fstat(dir_fd).st_uid,
                              "which this user can list but not enter") from exc
        except OSError:
            raise PermissionError(exc.errno, exc.strerror, path) from exc
        if (skipped is not None and st.st_uid != _euid()
                and os.fstat(dir_fd).st_mode & _OPENED_TO_OTHERS):
            skipped.append((path, st.st_uid))
            return None
        raise _unreadable(exc, path, st.st_uid, "which this user cannot read") from exc


_OPENED_TO_OTHERS = stat.S_IWGRP | stat.S_IWOTH  # a folder others may write in: shared


def _refused(exc: PermissionError, root: str, entry: str) -> PermissionError:
    """A write's bare ``PermissionError`` (the system's words only) as one naming the
    folder of the entry's path that refused it (the cache's root, the function's folder or
    the shard: the first this user may not enter or write in), whose it is and what to do.
    Before, "Permission denied" alone, after the cache's name: another user's private cache
    (0700: ``Cache(...)`` cannot read its tag to say so), a shard another user made in a
    cache shared by hand, or the user's own folder made under a umask that takes the
    owner's bits (0277) or changed by hand. Any other error (memojar's own words, a
    refusal no folder's permissions explain) is returned as it is."""
    if exc.errno not in (errno.EACCES, errno.EPERM) or exc.strerror != os.strerror(exc.errno):
        return exc
    shard = os.path.dirname(entry)
    above = 0  # the mode of the folder holding this one (none for the root)
    for folder in (root, os.path.dirname(shard), shard):
        try:
            st = os.stat(folder)
            allowed = os.access(folder, os.W_OK | os.X_OK, effective_ids=_EFFECTIVE)
        except OSError:  # missing (made by the write, which its folder allows), or gone;
            if folder != root:  # the root missing or out of reach: a folder above it
                return exc
            barred = _barred_above(root, making=True)
            return exc if barred is None else PermissionError(exc.errno, barred, root)
        if allowed:
            above = st.st_mode
            continue
        owner = user_name(st.st_uid)
        if st.st_uid == _euid() and st.st_mode & stat.S_IRWXU == stat.S_IRWXU:
            why = (f"the folder {folder} is this user's and its modes let it write, but the "
                   "file system refuses: an immutable folder (lsattr -d; chattr -i as root)")
        elif st.st_uid == _euid():
            why = (f"the folder {folder} is this user's, but it may not write in it (made "
                   "under a umask that takes the owner's bits, as 0277, or changed by hand: "
                   "chmod u+rwx it)")
        elif folder == root and os.access(root, os.R_OK | os.X_OK, effective_ids=_EFFECTIVE):
            why = (f"the folder {folder} is {owner}'s memojar cache, which this user may read "
                   f"but not write in (opened to others read-only): {owner} may open it to "
                   f"writing (chmod -R go+rwX {folder}), or pass a folder of this user's")
        elif folder == root:
            why = f"the folder {folder} {others_cache(owner)}"
        elif above & _OPENED_TO_OTHERS:  # a cache shared by hand: the words the same for
            fdir = os.path.dirname(shard)  # every shard, so the warning is said once
            why = (f"folders in {os.path.dirname(folder)} that {owner} made are {owner}'s "
                   "alone (memojar keeps each user's folders 0700, also in a cache opened "
                   "to all by hand), so this user's results whose keys fall there are not "
                   f"stored: {owner} may open them to others (chmod -R go+rwX {fdir}), or "
                   "use a Redis or S3 cache with a secret")
        else:  # in the user's own private cache: left by a run as root (sudo), or by hand
            why = (f"the folder {folder} is {owner}'s, in this user's cache (left by an "
                   f"older memojar run as {owner}, or put there by hand): remove it as "
                   f"{owner}")
        return PermissionError(exc.errno, f"permission denied: {why}", folder)
    return exc


_EFFECTIVE = os.access in os.supports_effective_ids  # judged as this process's user


def _barred_above(root: str, making: bool = False) -> str | None:
    """Why this user cannot reach the cache directory ``root`` (``making``: nor make it),
    when a folder above it bars the way: the first one it may not enter, or the one it
    would be made in and may not write in; whose that is and what to do. A process run as
    another user with this user's ``$HOME`` (``sudo -u`` keeping it) has its default cache
    in a home it may not enter: before, a bare "Permission denied". None if no folder
    above bars it (or it cannot be told)."""
    chain = [root]
    while os.path.dirname(chain[0]) != chain[0]:
        chain.insert(0, os.path.dirname(chain[0]))
    for folder, below in itertools.pairwise(chain):  # from the top
        try:
            st = os.stat(folder)
        except OSError:
            return None
        if not os.access(folder, os.X_OK, effective_ids=_EFFECTIVE):
            why = "may not enter it"
        elif os.path.lexists(below):
            continue
        elif making and not os.access(folder, os.W_OK, effective_ids=_EFFECTIVE):
            why = "may not make folders in it"
        else:  # the rest is made here
            return None
        me = user_name(_euid())
        owner = "this user's" if st.st_uid == _euid() else f"{user_name(st.st_uid)}'s"
        return (f"permission denied: the folder {folder} is {owner}, and {me} {why}, so the "
                f"cache directory {root} cannot be reached{_home_guess(root, me)}: give this "
                "process a cache directory of its own (cache_dir=, or $MEMOJAR_DIR)")
    return None


def _home_guess(root: str, me: str) -> str:
    """Why a cache directory under a home may be one this user cannot reach, in parentheses:
    ``$HOME`` unset (cron, systemd: the password database's home, ``/nonexistent`` for a
    service's user), or another user's ``$HOME`` (``sudo -u`` keeping it); "" for a
    directory under neither. Before, the ``sudo -u`` guess was given for every directory,
    with ``$HOME`` unset too."""
    home = os.environ.get("HOME")
    try:
        import pwd

        own: str | None = pwd.getpwuid(_euid()).pw_dir
    except (ImportError, KeyError, OSError):  # no password database, or no entry in it
        own = None
    if home is None or not home.strip():
        if own and _within(root, own):
            said = "unset" if home is None else "empty"
            return f" ($HOME is {said}, and {me}'s home in the password database is {own})"
        return ""
    if _within(root, home) and own and not _within(own, home):
        return f" (a process run as {me} with another user's $HOME, as sudo -u keeping it?)"
    return ""


def _within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or under it (a relative one: from here)."""
    folder = os.path.abspath(folder)
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def _euid() -> int:
    """This process's user now (a process may change it after importing memojar)."""
    return os.geteuid() if hasattr(os, "geteuid") else -1


def _unreadable(exc: OSError, path: str, owner: int, why: str) -> PermissionError:
    """The error for a folder of the cache this user may not walk: whose it is, what to do."""
    name = user_name(owner)
    if owner == _euid():  # the user's own, its permissions changed by hand
        return PermissionError(exc.errno, f"permission denied (a folder of this user's, {why}: "
                               "give it back its permissions, chmod u+rwx)", path)
    return PermissionError(exc.errno, f"permission denied (a folder of {name}'s, {why}: "
                           f"remove it as {name})", path)


def _unreadable_root(exc: OSError, root: str) -> PermissionError:
    """The error for a cache directory this user may not read: whose it is, what to do."""
    try:
        owner = os.stat(root).st_uid
    except OSError:
        barred = _barred_above(root)
        return PermissionError(exc.errno, exc.strerror if barred is None else barred, root)
    if owner == _euid():
        return _unreadable(exc, root, owner, "which this user cannot read")
    return PermissionError(
        exc.errno, f"permission denied: the folder {others_cache(user_name(owner))}", root)


def _skipped_warning(root: str, skipped: list[tuple[str, int]]) -> str:
    """What a walk of a cache shared between users says of the folders it passed over."""
    owners = " and ".join(f"{name}'s" for name in sorted({user_name(u) for _, u in skipped}))
    folders = "1 folder" if len(skipped) == 1 else f"{len(skipped):,} folders"
    return (f"{folders} of {owners} in {root} cannot be read by {user_name(_euid())} (the "
            f"first: {skipped[0][0]}): the entries there are not counted here, and are left "
            "as they are. memojar makes each user's folders private (0700), also in a cache "
            "opened to all by hand; to share results between users, use a Redis or S3 cache "
            "with a secret")


@contextlib.contextmanager
def _dir_at(root: str, *names: str) -> Iterator[int | None]:
    """A descriptor of ``root/names...``, each directory opened by the descriptor of the
    one before it (never through a link); None if any is missing, a link, or not a
    directory. One this user may not read is a ``PermissionError`` naming it whole, whose it
    is and what to do (``_open_listed``; before, a ``cache_delete`` of a key in another
    user's private shard raised "Permission denied: 'd2'"). Every descriptor is closed on
    leaving."""
    fds: list[int] = []
    try:
        fd = _open_dir(root)
        parent = root
        for name in names:
            if fd is None:
                break
            fds.append(fd)
            fd = _open_listed(name, fd, parent)
            parent = os.path.join(parent, name)
        if fd is not None:
            fds.append(fd)
        yield fd
    finally:
        for opened in fds:
            os.close(opened)


def _subdirs(dir_fd: int) -> list[str]:
    """Names of the real directories (not links) in a directory."""
    try:
        with os.scandir(dir_fd) as it:
            return [e.name for e in it if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _listdir(path: str | int) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _claim(root: str, writing: bool = False) -> bool:
    """Check that an existing ``root`` is memojar's; adopt it if it is empty. Whether its
    tag is there now.

    Raises ``NotACacheDirectory`` for a folder with files and no memojar tag. A folder that
    cannot be listed is left to fail (or not) on use: that is a storage fault, not a refusal.
    ``writing``: something is about to go in, so a tag that cannot be written (a full disk)
    raises its ``OSError`` (see ``_mark``), and so does a listing that failed. Before, the
    write went on: a thread out of descriptors (``EMFILE``) at the first write of a root
    another thread had just made, untagged yet, put its entry there, and every later
    process refused the cache (``NotACacheDirectory``), for good (8 threads over 100 new
    caches under a soft limit of 32: one so about a run in 15); and a store opened then
    took the root for tagged, and its ``prune`` put the ledger there, with the same end.
    """
    if is_cache_dir(root):
        return True
    try:
        names = os.listdir(root)
    except OSError:
        if writing:
            raise
        return False
    if names:
        # The memojar that made the root (another thread or process) may have tagged it
        # between the look above and the listing: its tag is the first name it writes. Or
        # it is tagging it now: the root then holds only its temporary tag files
        # (``_mark``), and is as good as empty. A tag that cannot be opened for want of
        # descriptors (another thread closed one for the listing, and took it again) is
        # that storage fault, not a refusal: before, a cache of memojar's was refused as a
        # folder of the user's (``NotACacheDirectory``, from ``Cache()`` too).
        try:
            if holds_tag(root):
                return True
        except OSError:
            if writing:
                raise
            return False
        if not _being_tagged(root, names):
            raise NotACacheDirectory(root)
    if _anothers_folder(root):
        # Another user's empty folder (root by sudo on the user's own cache_dir): a tag of
        # this user's (0600) would make it look like this user's cache to its owner, who
        # could never use it; it is left as it is, and nothing is written there.
        return False
    return _mark(root, writing)


def _anothers_folder(path: str) -> bool:
    """Whether this process runs as root and ``path`` is another user's
    (``_refuse_others``)."""
    if not hasattr(os, "getuid") or os.getuid() != 0:
        return False
    try:
        owner = os.stat(path).st_uid
    except OSError:
        return False
    return owner != 0


def not_tagged_yet(path: str) -> bool:
    """True if ``path`` holds nothing, or only memojar's temporary tag files, one of them
    memojar's (``_being_tagged``): a root memojar made and is tagging now (or whose tagging
    a process killed left unfinished). As good as empty, and adopted
    by the cache's next use (``_claim``): nothing cached yet."""
    names = _listdir(path)
    return not names or _being_tagged(path, names)


def _tag_temps_only(names: list[str]) -> bool:
    return bool(names) and all(_TAG_TEMP.fullmatch(name) for name in names)


def _being_tagged(root: str, names: list[str]) -> bool:
    """True if ``names`` (the root's) are memojar's temporary tags only, one of them holding
    (a beginning of) memojar's tag text: a root a writer is tagging now, or whose tagging a
    process killed left unfinished. Only memojar writes that text under that name, so a
    killed writer's root is adopted however long ago it was killed (nobody has to delete
    its file); a file of the user's so named, holding anything else, is not memojar's."""
    return _tag_temps_only(names) and any(_tag_in_writing(root, name) for name in names)


def _tag_in_writing(root: str, name: str) -> bool:
    text = _TAG_TEXT.encode()
    try:
        fd = os.open(os.path.join(root, name), _O_READ)
    except FileNotFoundError:  # linked at the tag and removed since: a writer at work
        return True
    except OSError:  # a link, or unreadable: not one memojar writes
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and text.startswith(
            os.read(fd, len(text) + 1))
    except OSError:
        return False
    finally:
        os.close(fd)


# The temporary name of a tag being written (``_temp_name`` of CACHEDIR.TAG): a root that
# holds only such names, one of them holding memojar's tag text (``_being_tagged``), is
# being tagged by memojar, not a folder of the user's.
_TAG_TEMP = re.compile(r"CACHEDIR\.TAG\.[0-9]+-[0-9a-f]{8}\.[0-9a-f]{8}\.tmp")
# What ``os.link`` says where the file system has no hard links: the tag is renamed instead.
_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


def _mark(root: str, writing: bool = False) -> bool:
    """Tag a directory memojar created (or adopted empty): CACHEDIR.TAG, so backup tools
    skip it and memojar knows it as its own, and a .gitignore, so a cache placed in a
    repository is not committed. Never into a folder that was not memojar's.

    The tag appears whole or not at all: it is written to a temporary file in the root,
    then linked at its name, which fails if another process's tag is there first. So a tag
    in a root is memojar's and complete, and another tool's is never taken for one that
    memojar is writing. If what is at the name now is not memojar's tag (another program
    put a link or a file there first), the root is not memojar's: ``NotACacheDirectory``,
    and nothing else goes in (every later process would refuse it).

    A tag that cannot be written (read-only, a full disk) is left to the first write, which
    says why (``writing``: this is that write, and the error is raised here): nothing goes
    into the root before its tag, or every later process would refuse it as a folder of
    the user's, also once there is room again. A ``.gitignore`` that cannot be written
    whole is removed: the cache then has none, as one whose maker was killed between.
    Whether the tag is there now."""
    tag = os.path.join(root, _TAG)
    try:
        if not os.path.lexists(tag):  # else another process tagged it
            _link_tag(root)
    except OSError:
        if writing:
            raise
        return False
    try:
        tagged = holds_tag(root)
    except OSError:  # out of descriptors (see ``_claim``)
        if writing:
            raise
        return False
    if not tagged:
        if os.path.lexists(tag):  # else gone again (or the root): the first write says so
            raise NotACacheDirectory(root)
        return False
    path = os.path.join(root, _GITIGNORE)
    try:
        fd = os.open(path, _O_CREATE, 0o600)
    except OSError:  # read-only (the first write will say so), or the .gitignore is there
        return True
    try:
        data = _GITIGNORE_TEXT.encode()
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # a full disk: no partial .gitignore (the cache works without one)
        _unlink(path)
    finally:
        os.close(fd)
    return True


def _link_tag(root: str) -> None:
    """Write memojar's tag at ``root``/CACHEDIR.TAG through a temporary file."""
    path = os.path.join(root, _TAG)
    fd, tmp = _create_new(path)
    try:
        try:
            data = _TAG_TEXT.encode()
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        try:
            os.link(tmp, path, follow_symlinks=False)
        except FileExistsError:  # another process tagged it first
            pass
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            # A file system without hard links: as whole, by rename, which (unlike the
            # link) would replace a tag there now: another process's, or another tool's.
            if not os.path.lexists(path):
                os.rename(tmp, path)
    finally:
        _unlink(tmp)


def _makedirs(path: str, root: str, tagged: bool) -> None:
    """Create ``path`` (the root or a folder under it) and any missing parents, each private
    to the user (0700); the root is claimed before anything goes in (``_claim``: tagged if
    memojar made it or it is empty, ``NotACacheDirectory`` if it holds files of someone
    else's), unless it is known to be memojar's (``tagged``: its store claimed it, or tagged
    it since).

    ``os.makedirs`` applies its mode to the last directory only; this applies it to all.
    """
    if tagged and os.path.isdir(path):
        return
    if not os.path.isdir(root):
        missing = []
        head = os.path.dirname(root)
        while head and not os.path.isdir(head):
            missing.append(head)
            parent = os.path.dirname(head)
            if parent == head:
                break
            head = parent
        for d in reversed(missing):
            _mkdir(d, links_ok=True)
        _mkdir(root, links_ok=True)  # or another process made it first
        tagged = False
    # Claimed before anything goes in, by whichever process gets here first (the tag is
    # created exclusively): the process that made the root may be descheduled before it
    # tags it, and a root filled untagged meanwhile is refused by every process that opens
    # it next. A root that was missing when its store opened and exists now is not
    # necessarily another memojar's: a script that made ``Cache("out")`` and then wrote its
    # own files into a new ``out/`` has it refused here, never tagged (backup tools that
    # honour the tag would skip the user's files).
    if not tagged:
        _claim(root, writing=True)
    below = os.path.relpath(path, root)
    if below == ".":
        return
    d = root
    for part in below.split(os.sep):
        d = os.path.join(d, part)
        _mkdir(d)


def _mkdir(d: str, links_ok: bool = False) -> None:
    """Create the directory ``d`` (0700) unless one is there (``links_ok``: or a link to
    one: the root and the folders above it are the user's to link). One found there and
    moved or removed again before it could be looked at (another program renaming it
    meanwhile) is made again, a few times; anything else there is an error saying what it
    is."""
    for _ in range(_WRITE_TRIES):
        try:
            os.mkdir(d, 0o700)
            return
        except FileExistsError:  # another process made it first (or moved one here)
            try:
                mode = os.stat(d, follow_symlinks=links_ok).st_mode
            except FileNotFoundError:  # and it is gone again: make it
                continue
            if stat.S_ISDIR(mode):
                return
            raise _not_a_folder(d, mode) from None
    raise _not_a_folder(d, making=True)


class _Clocks:
    """What an orphan's age is judged by: this machine's clock, and the file system's
    (the modification time of a file created now in the cache's root: an NFS server's
    clock there), read once and only if asked. Another host's temporary file is old only
    if both say so: a clock of this machine set forward, or ahead of the server's, does not
    make a live writer's file look an hour old."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.local = time.time()
        self._fs: float | None = None

    def old(self, st: os.stat_result) -> bool:
        if self.local - st.st_mtime <= ORPHAN_AGE:
            return False
        if self._fs is None:
            self._fs = _fs_now(self.root, self.local)
        return self._fs - st.st_mtime > ORPHAN_AGE


def _fs_now(root: str, local: float) -> float:
    """The file system's time now at ``root`` (``local`` where nothing can be made there):
    a temporary file named as the ledger's, so that a process killed before removing it
    leaves an orphan that ``cleanup`` knows."""
    try:
        fd, tmp = _create_new(os.path.join(root, _LEDGER))
    except OSError:  # read-only, or gone
        return local
    try:
        return os.fstat(fd).st_mtime
    except OSError:
        return local
    finally:
        os.close(fd)
        _unlink(tmp)


def _orphaned(match: re.Match[str], st: os.stat_result, now: _Clocks) -> bool:
    """A temporary file whose writer is gone. A writer of this machine in this boot is
    judged by its process alone: gone if its pid is dead, or now another process's (one
    started since), and never by its file's age: a writer stopped mid-write (SIGSTOP, a
    laptop lid) whose file looks old (the clock set forward, an mtime set back) is alive.
    A writer on another host, before a reboot, or of a memojar that named no start, is
    judged by age: an hour old, the only sign where a pid says nothing."""
    host = match.group("host")
    pid = int(match.group("pid") or match.group("oldpid"))
    if host is None:  # a name of memojar before 2026-11 (no host): as it judged them
        return _started(pid) is None or now.old(st)
    if host[:6] != _MACHINE:
        return now.old(st)
    started = _started(pid)
    return started is None or (started != b"" and _process_tag(started) != host[6:])


def _remove_orphans(dir_fd: int, now: _Clocks) -> int:
    """Remove the orphaned temporary files memojar wrote in one directory."""
    removed = 0
    for name in _listdir(dir_fd):
        match = _TEMP.fullmatch(name)
        if match is None:
            continue
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        # Only a file, as memojar's temporary files are (and as the census judges them): a
        # folder of the user's so named is left. Before, unlinking it raised
        # ``IsADirectoryError`` out of every ``prune``, which then removed nothing more.
        if stat.S_ISREG(st.st_mode) and _orphaned(match, st, now):
            removed += _unlink_orphan(name, dir_fd)
    return removed


def _unlink_orphan(name: str, dir_fd: int) -> bool:
    """Remove an orphaned temporary file; False if gone already, or if this user may not
    (another user's killed writer's, in a folder of a cache shared by hand that this user
    may not write: its bytes still count). Before, that ``PermissionError`` ended every
    census: every write with max_size was returned but not stored, and ``prune`` raised."""
    try:
        return _unlink(name, dir_fd)
    except PermissionError as exc:
        logger.debug("cannot remove the orphaned temporary file %s: %s", name, exc)
        return False


def _marked(dir_fd: int) -> bool:
    """Whether a function's folder holds one of the files memojar keeps there: its lock
    file (empty), the sweep note, the generation stamp (``_own_stamp``)."""
    for name in (LOCK_FILE, NOTE_FILE, GEN_FILE):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (
                name == NOTE_FILE or (name == LOCK_FILE and not st.st_size)
                or (name == GEN_FILE and _own_stamp(st))):
            return True
    return False


def _memojars_file(name: str) -> bool:
    """A name memojar gives files in a shard: an entry, a temporary file, a key's lock."""
    return bool(_ENTRY.fullmatch(name) or _TEMP.fullmatch(name) or _KEY_LOCK.fullmatch(name))


def _rmdir_if_empty(name: str, dir_fd: int) -> None:
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError:  # not empty (the usual case), or gone
        pass
