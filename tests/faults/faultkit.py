"""Helpers for the fault and attack tests: entry files, forged headers, a malicious pickle.

Not a conftest (the tests directory's ``conftest`` module must stay the only one of that
name); test modules here import it as ``faultkit``, and subprocesses get this directory on
``PYTHONPATH`` through ``subprocess_env``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memojar import _entry

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"

# PROTO 5 + BINBYTES, header length, magic, format, flags, checksum (see memojar._entry)
PREFIX = struct.Struct("<3sI4sHHQ")
FIXED = struct.Struct("<dddQII")  # created, expires, compute_time, payload_len, ident, nbuf


# --- a pickle that would run code -----------------------------------------------------

def touch(path: str) -> str:
    """What unpickling a ``Marker`` calls: creates ``path``. Its existence proves a load."""
    Path(path).write_text("unpickled\n")
    return "pwned"


class Marker:
    """A value whose unpickling creates a marker file (a stand-in for arbitrary code)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return touch, (self.path,)


def malicious_pickle(marker: str | os.PathLike[str]) -> bytes:
    """A protocol-5 pickle that creates ``marker`` when loaded."""
    return pickle.dumps(Marker(marker), protocol=5)


# --- entry files ------------------------------------------------------------------------

def entry_files(root: str | os.PathLike[str]) -> list[Path]:
    """Every ``*.pkl`` entry file under a cache directory, sorted."""
    return sorted(Path(root).rglob("*.pkl"))


def temp_files(root: str | os.PathLike[str]) -> list[Path]:
    """Every temporary file (``*.tmp``) under a cache directory."""
    return sorted(Path(root).rglob("*.tmp"))


def the_entry(root: str | os.PathLike[str]) -> Path:
    """The one entry file of a cache directory (fails if there is not exactly one)."""
    files = entry_files(root)
    assert len(files) == 1, files
    return files[0]


@contextlib.contextmanager
def ledger_lock(root: Path) -> Iterator[None]:
    """The size ledger's lock (``flock`` on ``.size.lock``), taken as writers take it: a
    moment between its updates."""
    fd = os.open(root / ".size.lock", os.O_RDWR | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def checksum_of(data: bytes) -> int:
    """The entry checksum, as the reader computes it."""
    return _entry.checksum_of(data)


def rechecksum(data: bytes | bytearray) -> bytes:
    """``data`` with a correct checksum, as an attacker without the secret can compute."""
    out = bytearray(data)
    struct.pack_into("<Q", out, _entry.CHECKSUM_AT, checksum_of(bytes(out)))
    return bytes(out)


def regions(data: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges ``[start, end)`` of each region of a well-formed entry."""
    flags = PREFIX.unpack_from(data)[4]
    _, _, _, payload_len, ident_len, nbuf = FIXED.unpack_from(data, PREFIX.size)
    at = _entry.HEAD
    out = {"lead": (0, 7), "prefix": (7, PREFIX.size), "fixed": (PREFIX.size, at)}
    out["ident"] = (at, at + ident_len)
    at += ident_len
    out["key"] = (at, at + _entry.KEY_LEN)
    at += _entry.KEY_LEN
    lengths = [struct.unpack_from("<Q", data, at + 8 * i)[0] for i in range(nbuf)]
    if nbuf:
        out["buffer_lengths"] = (at, at + 8 * nbuf)
    at += 8 * nbuf
    if flags & _entry.SIGNED:
        out["signature"] = (at, at + _entry.SIG_LEN)
        at += _entry.SIG_LEN
    out["pop"] = (at, at + 1)
    at += 1
    out["payload"] = (at, at + payload_len)
    end = at + payload_len
    for i, n in enumerate(lengths):
        start = end + (-end % _entry.ALIGN)
        out[f"buffer{i}"] = (start, start + n)
        end = start + n
    assert end == len(data), (end, len(data))
    return out


def with_fields(data: bytes, **fields: float) -> bytes:
    """``data`` with header fields (``created``, ``expires``) replaced, checksum fixed."""
    names = ("created", "expires", "compute_time", "payload_len", "ident_len", "nbuf")
    values = dict(zip(names, FIXED.unpack_from(data, PREFIX.size), strict=True))
    values.update(fields)
    out = bytearray(data)
    FIXED.pack_into(out, PREFIX.size, *(values[n] for n in names))
    return rechecksum(out)


def with_payload(data: bytes, payload: bytes) -> bytes:
    """``data`` (an entry without buffers) with its payload replaced, checksum fixed."""
    where = regions(data)
    start, end = where["payload"]
    assert end == len(data), "only for entries without out-of-band buffers"
    out = bytearray(data[:start] + payload)
    created, expires, compute, _, ident_len, nbuf = FIXED.unpack_from(data, PREFIX.size)
    FIXED.pack_into(out, PREFIX.size, created, expires, compute, len(payload), ident_len, nbuf)
    return rechecksum(out)


def with_ident(data: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with ``old`` replaced by ``new`` (same length) in its ident, checksum fixed."""
    assert len(old) == len(new)
    start, end = regions(data)["ident"]
    ident = data[start:end]
    assert ident.count(old) == 1, ident
    return rechecksum(data[:start] + ident.replace(old, new) + data[end:])


# --- processes --------------------------------------------------------------------------

def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child interpreter: this directory and ``src`` importable."""
    paths = [extra.pop("PYTHONPATH", ""), str(HERE), str(SRC), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, **extra, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def spawn(code: str, **env: str) -> subprocess.Popen[str]:
    """Start ``code`` in a fresh interpreter with pipes for stdout and stderr."""
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=subprocess_env(**env),
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """Wait for ``proc`` (killing it after ``timeout``); return stdout, failing on error."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"child still running after {timeout} s: {err}") from None
    assert proc.returncode == 0, err
    return out


def read_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The child's next stdout line, waiting at most ``timeout`` seconds.

    Reads the pipe byte by byte, below Python's buffering, so that no line is held back in a
    buffer while ``poll`` waits for more (not ``select``: it fails on a descriptor past 1023,
    which a test process that opened many files hands out)."""
    import select

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not line.endswith(b"\n"):
        if not poller.poll(max(deadline - time.monotonic(), 0) * 1000):
            proc.kill()
            raise AssertionError(f"no line from child within {timeout} s (got {line!r})")
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode().strip()


class RawEntry:
    """The stored bytes of one entry of any store kind, as a test reads and damages them:
    the file itself in a file store (rewritten in place), the stored object elsewhere."""

    def __init__(self, f: Any, x: Any) -> None:
        memo = f.__memojar__
        self.store, self.name, self.key = memo.store, memo.name, f.cache_key(x)

    def _file(self) -> Any:
        path = getattr(self.store, "path", None)
        return None if path is None else Path(path(self.name, self.key))

    def read_bytes(self) -> bytes:
        file = self._file()
        if file is not None:
            return file.read_bytes()
        data = self.store.read(self.name, self.key)
        assert data is not None, f"no entry for {self.name} {self.key}"
        return bytes(data)

    def write_bytes(self, data: bytes) -> None:
        file = self._file()
        if file is not None:
            file.write_bytes(data)
        else:
            self.store.write(self.name, self.key, [data])

    def exists(self) -> bool:
        file = self._file()
        return file.exists() if file is not None else self.store.read(self.name,
                                                                      self.key) is not None


# A daemon (another thread) closes every descriptor while ``work(2)`` computes, after its
# key's lock was taken; with MINE set, it then opens that folder of the user's at every number
# memojar held. Prints work(1), work(2), then work(3), work(2) again and what MINE holds.
DAEMON_DURING_A_CALL = """
import os, threading
from memojar import Cache

mine = os.environ.get("MINE")
started, done = threading.Event(), threading.Event()

@Cache(os.environ["CACHE"]).cached
def work(x):
    if x == 2:
        started.set()
        assert done.wait(20)
    return x + 100

def daemon():
    assert started.wait(20)
    held = [int(n) for n in os.listdir("/proc/self/fd")]
    os.closerange(3, 4096)
    if mine:
        fd = os.open(mine, os.O_RDONLY | os.O_DIRECTORY)
        for n in held:
            if n > fd:
                os.dup2(fd, n)  # its own, with the numbers memojar held
    done.set()

print(work(1))
thread = threading.Thread(target=daemon)
thread.start()
print(work(2))
thread.join()
print(work(3), work(2), sorted(os.listdir(mine)) if mine else [])
"""


# A child that calls ``leasejob.work(1)`` (a module the test writes, holding its lock or
# lease while it computes) and prints the value and every warning it was given.
LEASE_HOLDER = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from leasejob import work
    print(work(1), flush=True)
for w in caught:
    print("warning:", w.message, flush=True)
"""
