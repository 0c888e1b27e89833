"""Per-key compute locks for the file store, released by the kernel when a holder dies.

On Linux a function's directory has one lock file, ``<function>/.lock``, and a key's lock
is one byte of it, at an offset hashed from the key, locked with an open-file-description
lock (``F_OFD_SETLKW``). That is a lock per key, exclusive between threads (each acquire
opens its own description) and processes, that creates no file per key: a small miss
would otherwise pay for a second file creation. Elsewhere each key gets a
``filelock.FileLock`` on ``<key>.lock`` beside its entry. This module is the only place
the two differ.

An open file description is shared by a forked child, and closing a descriptor releases
the description's locks only if no other descriptor (the child's copy) still refers to it.
So a range lock is released by an explicit ``F_UNLCK`` before its descriptor is closed, and
a forked child closes the descriptors of the locks it inherited without unlocking them (an
unlock there would release the parent's lock): children never hold a key lock they did not
take, and a fork never keeps a key locked after its holder is done.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import struct
from collections.abc import Callable, Collection

import xxhash

from ._errors import warn
from ._store import WAIT_ID_BITS, KeyLock

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"  # the function directory's lock file (byte-range locks)
LOCK_SUFFIX = ".lock"  # per-key lock files, where byte-range locks are not available
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on 64-bit Linux: type, whence, start, len, pid
_OFD = (
    fcntl is not None and hasattr(fcntl, "F_OFD_SETLKW") and _FLOCK.size == 32
    and struct.calcsize("l") == 8
)
LOCKS_IN_FUNCTION_DIR = _OFD  # one lock file per function folder, not one per key
O_LOCK = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_O_PROBE = (
    os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)
)
_BUSY = (errno.EAGAIN, errno.EACCES)  # what a non-blocking lock attempt says when held
if fcntl is not None:
    _WRLCK, _UNLCK, _SEEK_SET = fcntl.F_WRLCK, fcntl.F_UNLCK, os.SEEK_SET
    _RDLCK = fcntl.F_RDLCK
if _OFD:  # bound once: a miss locks and unlocks
    _SETLK, _SETLKW, _fcntl = fcntl.F_OFD_SETLK, fcntl.F_OFD_SETLKW, fcntl.fcntl
    _GETLK = fcntl.F_OFD_GETLK
_pack, _digest = _FLOCK.pack, xxhash.xxh3_64_intdigest
if fcntl is not None:  # the type of a ``struct flock`` that unlocks: its first field
    _UNLOCK = _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0)[:2]
_Note = tuple[int, tuple[int, int], set[int]]  # see ``_RangeLock._note``


def key_lock(function_dir: str, key: str, entry_path: str) -> KeyLock:
    """The lock for computing ``key`` (a hex digest) of the function in ``function_dir``."""
    if _OFD:
        path = os.path.join(function_dir, LOCK_FILE)
        return range_lock(path, key, _open_lock, path)
    return _FileLock(entry_path.rsplit(".", 1)[0] + LOCK_SUFFIX)


def _open_lock(path: str) -> int:
    return os.open(path, O_LOCK, 0o600)


def remove_if_idle(name: str, dir_fd: int) -> bool:
    """Remove the lock file ``name`` (in the directory ``dir_fd``) if nobody holds any lock
    in it; True if it was removed. A link, FIFO or device there is left alone.

    A caller that opened the file before it was unlinked notices (``st_nlink == 0``) once it
    gets its lock and locks the new file instead, so removal never lets two callers in.
    """
    if fcntl is None:  # not POSIX: lock files stay (they are empty)
        return False
    try:
        fd = os.open(name, _O_PROBE, dir_fd=dir_fd)
    except OSError:  # gone, a link (ELOOP), unreadable
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size:  # memojar's lock files stay empty:
            return False  # one with content is someone else's (``app.lock``, ``.lock``)
        if _OFD and name == LOCK_FILE:  # byte-range locks: probe the whole file
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        else:  # filelock's flock
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(name, dir_fd=dir_fd)
        return True
    except OSError as exc:
        if exc.errno in _BUSY or exc.errno in (errno.ENOENT, errno.EWOULDBLOCK):
            return False  # held, or removed already
        raise
    finally:
        os.close(fd)


# The range locks this process holds, by descriptor number: for a forked child to drop, and
# so that a number held by one lock is never used by another (see ``acquire``).
_held: dict[int, _RangeLock] = {}


def _drop_inherited() -> None:
    """In a forked child: close the descriptors of the parent's held locks (and of those
    its threads were waiting for), unlocking nothing (the description, and its lock, stay
    the parent's)."""
    for fd, lock in list(_held.items()):
        lock._fd = None
        _close_if_ours(fd, lock._ident)
    _held.clear()
    for pool in list(_idle.values()):
        _close_idle(pool)
    _idle.clear()
    for fd, ident in list(_noting.items()):  # the parent's notes of waits: its own to end
        _close_if_ours(fd, ident)
    _noting.clear()


def _forget(fd: int, lock: _RangeLock) -> None:
    """``lock`` does not hold ``fd`` after all (``acquire`` noted it before waiting)."""
    if _held.get(fd) is lock:
        del _held[fd]


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _ours(fd: int, ident: tuple[int, int]) -> bool:
    """Whether ``fd`` is still the lock file this module opened: a caller that closes every
    descriptor (a daemon) and opens its own gets the same numbers, which are then its own."""
    try:
        return _identity(fd) == ident
    except OSError:
        return False


def _close_if_ours(fd: int, ident: tuple[int, int]) -> None:
    if _ours(fd, ident):
        try:
            os.close(fd)
        except OSError:
            pass


# Forks of this process so far (in the parent): a description that was in neither
# ``_held`` nor ``_idle`` at a fork (between a table and the next, a few bytecodes, or in an
# ``open`` or ``fstat`` that let another thread fork) was not closed in the child, so it is
# never used for a lock again. A list: read and bumped without a lock.
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


if _OFD and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited, after_in_parent=_count_fork)


class _RangeLock(KeyLock):
    """``key``'s byte of the lock file ``path`` (where ``_OFD``), write-locked by this open
    file description.

    ``opener(what)`` opens (creating it if missing) the lock file, never through a link;
    the caller checks the directory. Called only when no idle description of the file is at
    hand: a miss then opens nothing. A function and its argument, not a ``partial``: the
    file store makes a lock per miss, and a partial cost it more than a frame."""

    __slots__ = ("_fd", "_ident", "_note", "_open", "_path", "_range", "_what")
    _note: _Note | None
    _path: str  # the lock file's
    _open: Callable[[str], int]  # its opener, called with ``_what``
    _what: str
    _range: bytes  # the ``struct flock`` write-locking the key's byte
    _fd: int | None
    _ident: tuple[int, int]  # the lock file's (st_dev, st_ino), while held
    # ``_note``, while this lock is waited for by a caller holding others: the description
    # noting it (``note_waiting``), the lock file's identity, and the ids noted. Set only
    # then (read with ``getattr``): a miss pays nothing for it.

    def __new__(cls, path: str, key: str, opener: Callable[[str], int],
                what: str) -> _RangeLock:
        return range_lock(path, key, opener, what)

    def _fresh(self) -> tuple[int, tuple[int, int]]:
        fd = self._open(self._what)
        try:
            return fd, _identity(fd)
        except BaseException:
            os.close(fd)
            raise

    def acquire(self, blocking: bool = True) -> bool:
        command = _SETLKW if blocking else _SETLK
        while True:
            forks = _forks[0]
            pool = _idle.get(self._path)
            fd = -1
            if pool:
                try:
                    fd, ident = pool.pop()  # list.pop is atomic
                except IndexError:  # another thread took the last idle one
                    pass
                else:
                    if fd in _held:  # put back by a lock whose number the caller closed
                        continue  # and reused while it was held: another lock's now
            if fd < 0:
                fd, ident = self._fresh()
                stale = _held.get(fd)
                if stale is not None:  # the number was free: the caller closed it under
                    stale._fd = None  # that lock, whose release now unlocks and keeps nothing
            # Noted as held before the wait (atomic: no lock needed for a fork), so that a
            # child forked while this thread waits closes its copy: else the description,
            # and the lock it then takes, would outlive this process in the child.
            self._ident = ident
            _held[fd] = self
            if _forks[0] != forks:  # forked while the description was in no table: the
                _forget(fd, self)  # child may have kept a copy, so it never holds a lock
                _close_if_ours(fd, ident)
                continue
            try:
                _fcntl(fd, command, self._range)
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != ident:  # an idle number the caller reused
                    _fcntl(fd, _SETLK, _UNLOCK + self._range[2:])  # its file: left as it was
                    _forget(fd, self)
                    continue  # and never closed here
                if st.st_nlink:
                    self._fd = fd
                    return True
                # ``remove_if_idle`` unlinked the file (while we waited on it, or while the
                # description was idle): lock the new one
            except OSError as exc:
                _forget(fd, self)
                if not _ours(fd, ident):  # an idle number the caller closed, or reused
                    continue
                if not blocking and exc.errno in _BUSY:
                    _put_idle(self._path, fd, ident, forks)  # it holds no lock: reusable
                    return False
                os.close(fd)
                raise
            except BaseException:
                _forget(fd, self)
                os.close(fd)
                raise
            _forget(fd, self)
            os.close(fd)

    def release(self) -> None:
        """Unlock; the lock is forgotten only once unlocked, so that a release cut short
        by an interrupt (KeyboardInterrupt, a signal handler's exception: they run between
        any two calls) is finished by calling it again, as the decorator does."""
        fd = self._fd
        if fd is None:
            return
        if _held.get(fd) is not self:  # taken over (``acquire``)
            self._fd = None
            return
        try:
            # Unlock explicitly: a child forked while the lock was held may still have a
            # descriptor of this description, and closing ours alone would release nothing.
            _fcntl(fd, _SETLK, _UNLOCK + self._range[2:])
        except OSError as exc:
            self._fd = None
            _held.pop(fd, None)
            if exc.errno is not None and not _ours(fd, self._ident):
                # The caller closed the number while the lock was held (a daemon closing
                # every descriptor): the kernel released the lock with its description, and
                # the caller's result is not lost for it. Whatever is there now is not ours.
                return
            _close_if_ours(fd, self._ident)
            if exc.errno is None:  # not the system call's: the caller's signal handler's
                raise
            # The unlock failed (EIO: an NFS server that lost its locks): the description is
            # closed, which releases its locks (a forked child's copy keeps them until it
            # ends: a delay for waiters, ``lock_timeout``). The caller's value is computed
            # and stored by now; raising would lose it.
            warn(f"memojar could not unlock {self._path} ({exc}); the lock's file was "
                 "closed instead")
            return
        # No call from here until the description is idle again: nothing can cut this short
        # but an interrupt before it is kept (a descriptor without a lock left open).
        self._fd = None
        forks = _forks[0]
        try:
            del _held[fd]
        except KeyError:  # dropped by a fork handler meanwhile
            pass
        # ``_put_idle``'s usual case, inline (a frame less a miss): keep the two alike.
        path, ident = self._path, self._ident
        pool = _idle.get(path)
        if (pool is None or len(pool) >= _IDLE_MAX
                or (_retired and ident in _retired)):
            _put_idle(path, fd, ident, forks)
            return
        pool.append((fd, ident))
        if _idle.get(path) is not pool or _forks[0] != forks:  # see ``_put_idle``
            try:
                pool.remove((fd, ident))
            except ValueError:
                return
            _close_if_ours(fd, ident)


    # --- lock-order cycles between processes (see ``KeyLock.note_waiting``) ------------
    # A key's notes are read locks on the bytes of its region of the lock file, above every
    # key's byte (those are below 2**62): region ``r`` (30 bits hashed from the key's byte)
    # spans ``_EDGES + r * 2**31`` and the 2**31 bytes after, a byte for each id a waiter
    # notes (``WAIT_ID_BITS``). A holder reads its key's region with ``F_OFD_GETLK``, which
    # names one conflicting lock and its range at a time: the rest are looked for on either
    # side of it.

    def _offset(self) -> int:
        return int(_FLOCK.unpack(self._range)[2])

    def _region(self) -> int:
        """The first byte of this key's region of notes."""
        return _EDGES + ((_digest(struct.pack("<q", self._offset())) >> 34) << _ID_BITS)

    def wait_id(self) -> int | None:
        """From the lock file's device and inode and the key's byte: the same for every
        spelling of its path (a symlink, a bind mount's other name)."""
        note: _Note | None = getattr(self, "_note", None)
        if note is not None:
            ident = note[1]
        elif self._fd is not None:
            ident = self._ident
        else:
            return None
        return int(_digest(f"{ident[0]}:{ident[1]}:{self._offset()}".encode())
                   >> (64 - _ID_BITS))

    def note_waiting(self, behind: Collection[int], ends: list[Callable[[], None]]) -> None:
        """A description of this lock's file of its own for the wait, read-locking the
        byte of each id ``behind`` in this key's region (and no other): released by the
        kernel if this process dies, unlocked explicitly by the callable put in ``ends``
        (a child forked meanwhile closes its copy: ``_drop_inherited``). A miss that
        waits for nothing, or holds no other lock, pays nothing for it."""
        if not _OFD:
            return
        note: _Note | None = getattr(self, "_note", None)
        if note is None:
            fd = -1
            end: functools.partial[None] | None = None
            try:
                fd = self._open(self._what)
                ident = _identity(fd)
                # Given to ``ends`` in this ``try``: an interrupt after the description was
                # opened and before its end was known left it open for good (and locks
                # taken on it later, a wait that never ended for other processes).
                end = functools.partial(self._end_note, fd, ident)
                _noting[fd] = ident
                ends.append(end)
            except BaseException as exc:
                if fd >= 0 and (end is None or not ends or ends[-1] is not end):
                    if end is not None and _noting.get(fd) is end.args[1]:
                        del _noting[fd]
                    os.close(fd)
                if isinstance(exc, OSError):
                    return  # no note: the cycle, if any, costs lock_timeout
                raise
            note = self._note = (fd, ident, set())
        fd, _, noted = note
        base = self._region()
        for i in [i for i in noted if i not in behind]:  # no longer behind it (its waiter
            try:  # gave up): a cycle through it is not one now
                _fcntl(fd, _SETLK, _pack(_UNLCK, _SEEK_SET, base + i, 1, 0))
            except OSError:
                continue
            noted.discard(i)
        for i in behind:
            if i in noted:
                continue
            try:
                _fcntl(fd, _SETLK, _pack(_RDLCK, _SEEK_SET, base + i, 1, 0))
            except OSError:
                continue  # that one is not noted
            noted.add(i)

    def _end_note(self, fd: int, ident: tuple[int, int]) -> None:
        note: _Note | None = getattr(self, "_note", None)
        if note is not None and note[0] == fd:
            self._note = None
        _end_note(fd, ident)

    def waiters(self) -> Collection[int]:
        fd = self._fd
        if fd is None or not _OFD:
            return ()
        base = self._region()
        found: set[int] = set()
        spans = [(base, base + (1 << _ID_BITS))]
        try:
            while spans and len(found) < _WAITERS_MAX:
                low, high = spans.pop()
                got = _FLOCK.unpack(_fcntl(fd, _GETLK, _pack(_WRLCK, _SEEK_SET, low,
                                                              high - low, 0)))
                if got[0] == _UNLCK:
                    continue
                start = max(got[2], low)
                end = min(got[2] + got[3], high) if got[3] else high
                if end - start <= _MERGED_MAX:  # a waiter's adjacent bytes merge; a lock
                    found.update(range(start - base, end - base))  # over the whole file
                if low < start:  # (``remove_if_idle``'s probe, a moment) says nothing
                    spans.append((low, start))
                if end < high:
                    spans.append((end, high))
        except OSError:
            pass
        return found


def _end_note(fd: int, ident: tuple[int, int]) -> None:
    """The wait ``note_waiting`` noted ended: unlock (a child forked meanwhile may hold a
    copy of the description) and close."""
    if _noting.get(fd) is not ident:  # this very tuple: another note's may have the number
        return  # ended already
    try:
        if _ours(fd, ident):
            _fcntl(fd, _SETLK, _pack(_UNLCK, _SEEK_SET, 0, 0, 0))
    except OSError:
        pass
    finally:
        _close_if_ours(fd, ident)  # then forgotten: one interrupted is ended again
        if _noting.get(fd) is ident:
            del _noting[fd]


_noting: dict[int, tuple[int, int]] = {}  # descriptions noting waits (``note_waiting``)
_EDGES = 1 << 62  # the bytes of waits noted start here (a key's byte is below)
_ID_BITS = WAIT_ID_BITS  # a region of notes per key: 2**30 regions of 2**31 bytes, < 2**63
_WAITERS_MAX = 4096  # ids read from one key's notes at most
_MERGED_MAX = 64  # the longest run of adjacent ids one description's locks merge into

def range_lock(path: str, key: str, opener: Callable[[str], int], what: str) -> _RangeLock:
    """A ``_RangeLock`` (made by the file store per miss): made without a call of the class,
    whose ``__init__`` cost a miss the type's call and a frame more."""
    lock = _new(_RangeLock)
    lock._path = path
    lock._open, lock._what = opener, what
    lock._range = _pack(_WRLCK, _SEEK_SET, _digest(key.encode()) >> 2, 1, 0)  # < 2**62: an
    lock._fd = None  # off_t; its unlock is this with the type ``_UNLOCK`` (``release``)
    return lock


_new = object.__new__


# Open descriptions of lock files that hold no lock, kept for the next acquire of the same
# file: a miss then opens no lock file (each description is used by one lock at a time, so
# threads still exclude each other). A forked child closes them: sharing a description with
# its parent would share its locks.
# Each is kept with the file's identity, checked by the ``fstat`` every acquire makes: a
# caller that closed the number and opened its own file there is never locked nor closed.
# Bounded: a process that goes through many functions' folders (a pipeline of many cached
# steps, a test suite making a cache per test) keeps the lock files of the last ``_FILES_MAX``
# it used open, never one per folder it ever used (a descriptor each, up to the limit of
# open files, past which ``select`` and ``open`` fail in the user's own code).
_idle: dict[str, list[tuple[int, tuple[int, int]]]] = {}
_IDLE_MAX = 8  # idle descriptions kept per lock file (about the threads that miss at once)
_FILES_MAX = 32  # lock files with idle descriptions kept, the earliest let go first


def kept_at_most(most: int, share: int) -> int:
    """How many descriptors of a kind to keep open: ``most``, or under a low limit of open
    files (``RLIMIT_NOFILE``) a ``share``th of it, at least 2. Before, 64 folders and 32
    lock files were kept whatever the limit: under a soft limit of 80 (300 cached functions)
    they filled it, and both memojar's own reads and the user's ``open`` failed. Read when
    a new one is kept (not at import: ``resource`` is not imported at ``import memojar``),
    so a limit changed by the program counts from then on."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # no ``resource`` (not POSIX)
        return most
    return most if soft < 0 else max(2, min(most, soft // share))  # < 0: RLIM_INFINITY


def retire(path: str, ident: tuple[int, int]) -> None:
    """The lock file ``ident`` (st_dev, st_ino) is no longer the one at ``path`` (its folder
    was moved aside): its descriptions are closed, the idle ones now, the held ones when
    released, and the next lock opens the file now at ``path``."""
    _retired.add(ident)
    _close_idle(_idle.pop(path, None))
    if len(_retired) >= _retired_prune_at[0]:
        _let_go_retired()


# Lock files moved away with their folder. Before, kept for good: one row per function folder
# moved aside under the process (another process's clear, a service's folder per job). A
# lock file is forgotten once no lock of this process holds (or waits for) it, checked when
# the set has grown past ``_retired_prune_at`` (doubled from what is left each time).
_retired: set[tuple[int, int]] = set()
_RETIRED_KEPT = 64
_retired_prune_at = [_RETIRED_KEPT]
_unheld: set[tuple[int, int]] = set()  # retired lock files no lock held at the last look
# The looks under way, a token each: the first looks, the others leave it (one look at a
# time). A list, not a ``Lock``: a token is put in inside the ``try`` whose ``finally``
# takes it out, so a Ctrl-C as it is put in leaves nothing; a ``Lock`` taken just ahead
# of that ``try`` stayed taken, and no look was made again in the process (the set grew
# with each retire). A fork's child makes its own.
_looking: list[object] = []


def _new_looking() -> None:
    """In a forked child: a list of its own (another thread may have been looking)."""
    global _looking
    _looking = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_looking)


def _let_go_retired() -> None:
    """Forget the retired lock files no description of this process refers to: none held
    (nor waited for: ``acquire`` notes it in ``_held`` first) at two looks in a row. One
    found unheld once is kept until the next look, as many retires later as the set holds:
    a release between its ``del _held`` and its look at ``_retired`` (a few bytecodes, in
    another thread) must still find it there, or it would keep the old file's description
    idle for the path's next lock. So at most about twice ``_RETIRED_KEPT`` and the lock
    files held are remembered."""
    looking, token = _looking, object()
    try:
        looking.append(token)  # (list.append and ``[0]``: atomic)
        if looking[0] is not token:
            return  # another thread looks now
        # Looked at by another thread just now (both past ``retire``'s check at once): a
        # second look in a row would forget one found unheld a few bytecodes ago, which a
        # release between its ``del _held`` and its look at ``_retired`` still needs.
        if len(_retired) >= _retired_prune_at[0]:
            _look_at_retired()
    finally:
        try:  # (no call before it here: nothing can interrupt ahead of it)
            looking.remove(token)
        except ValueError:  # not put in: interrupted before
            pass


def _look_at_retired() -> None:
    """``_let_go_retired``'s look, one thread at a time."""
    held = {lock._ident for lock in list(_held.values())}
    for ident in list(_retired):
        if ident in held:
            _unheld.discard(ident)
        elif ident in _unheld:
            _retired.discard(ident)
            _unheld.discard(ident)
        else:
            _unheld.add(ident)
    _unheld.intersection_update(_retired)
    _retired_prune_at[0] = max(_RETIRED_KEPT, 2 * len(_retired))  # the next look: later


def _put_idle(path: str, fd: int, ident: tuple[int, int], forks: int) -> None:
    """Keep ``fd`` idle, unless the process forked since ``forks`` (``_forks``) was read:
    the description was in no table then, so the child may have kept a copy of it."""
    pool = _idle.get(path)
    if pool is None:
        kept = kept_at_most(_FILES_MAX, 32)
        while len(_idle) >= kept:
            _let_go_earliest()
        pool = _idle.setdefault(path, [])
    if len(pool) < _IDLE_MAX and ident not in _retired:
        pool.append((fd, ident))
        if _idle.get(path) is not pool or _forks[0] != forks:  # let go (or retired) by
            try:  # another thread meanwhile, which may have closed the others before this
                pool.remove((fd, ident))
            except ValueError:  # closed with them
                return
            _close_if_ours(fd, ident)
    else:  # a number the caller closed and reused while the lock was held stays its own
        _close_if_ours(fd, ident)


def _let_go_earliest() -> None:
    """Close the idle descriptions of the lock file that was kept the earliest."""
    try:
        earliest = next(iter(_idle))
    except (StopIteration, RuntimeError):  # emptied, or changed by another thread meanwhile
        return
    _close_idle(_idle.pop(earliest, None))


def _close_idle(pool: list[tuple[int, tuple[int, int]]] | None) -> None:
    while pool:
        try:
            _close_if_ours(*pool.pop())
        except IndexError:  # another thread took the last one
            break


class _FileLock(KeyLock):
    """A ``filelock.FileLock`` per key, where byte-range OFD locks are not available."""

    def __init__(self, path: str) -> None:
        from filelock import FileLock

        self._lock = FileLock(path, mode=0o600)

    # One try; the base's loop waits (``KeyLock.acquire_within``), looking meanwhile for the
    # value stored and for a holder stalled or in a cycle. Before, filelock's own wait,
    # which looked at nothing: a waiter whose holder's event loop had stopped waited
    # ``lock_timeout`` (where the range locks are not available: macOS).
    def _try(self) -> bool:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()
