"""System call faults injected by strace into a real process (Linux, strace installed).

``strace -P PATH -e inject=CALLS:error=ERRNO:when=N`` fails the N-th of those calls that
name PATH (or a descriptor open on it), whatever Python does at start-up: the faults land
exactly where memojar's code makes them. Found by ``tests/faults/inject/driver.py``, which
fails every call an operation makes in the cache, one at a time, with each errno and with
SIGKILL; each case here is one it found broken.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from faultkit import subprocess_env

from conftest import strace_path
from memojar import Cache, _filestore, _locks

pytestmark = pytest.mark.skipif(strace_path() is None,
                                reason="strace is not installed or cannot trace here")

STAT = "newfstatat,stat,lstat,statx,fstat"


def injected(tmp_path: Path, code: str, path: Path, calls: str, fault: str, when: int,
             *args: str) -> dict[str, object]:
    """Run ``code`` (which prints one JSON line last) with the ``when``-th of ``calls``
    naming ``path`` failing with ``fault``; its report, and the injected calls seen."""
    log = tmp_path / "strace.log"
    script = tmp_path / "script.py"
    script.write_text(code)
    done = subprocess.run(
        [str(strace_path()), "-f", "-qq", "-o", str(log), "-P", str(path), "-e", f"trace={calls}",
         "-e", f"inject={calls}:error={fault}:when={when}", sys.executable, str(script),
         *args],
        capture_output=True, text=True, timeout=120, env=subprocess_env(),
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    report["injected"] = [line for line in log.read_text().splitlines() if "INJECTED" in line]
    return report


OPEN_AND_CALL = """
import json, sys, warnings
from memojar import Cache

try:
    cache = Cache(sys.argv[1])
except ValueError as exc:
    print(json.dumps({"raised": str(exc)}))
    raise SystemExit
f = cache.cached(lambda x: x * 2)
print(json.dumps({"value": f(21)}))
"""


@pytest.mark.parametrize("fault", ["ENOENT", "EIO"])
def test_a_cache_folder_whose_second_look_fails_is_not_taken_for_a_file(
    tmp_path: Path, fault: str
) -> None:
    """Opening a cache looked at its folder twice (exists, then isdir): a folder removed in
    between (another process's ``rm -rf``) or a look failing with an I/O error was reported
    as 'is a file, not a directory'."""
    root = tmp_path / "c"
    Cache(root).cached(lambda x: x)(1)  # a cache with an entry
    report = injected(tmp_path, OPEN_AND_CALL, root, STAT, fault, 2, str(root))
    assert report["injected"], "the fault was not injected"
    assert report == {"value": 42, "injected": report["injected"]}


CLI = """
import contextlib, io, json, sys
from memojar._cli import main

err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    status = main(["--dir", sys.argv[1], "ls"])
print(json.dumps({"status": status, "said": err.getvalue()}))
"""


@pytest.mark.parametrize("when", [1, 2])
def test_the_command_line_says_a_fault_looking_at_the_cache_as_it_is(
    tmp_path: Path, when: int
) -> None:
    """``memojar ls`` looked at the cache's folder three times (``lexists``, ``isdir``,
    ``access``), each taking a failure for an answer: an I/O error at the first said there
    was no cache yet (exit 0, nothing listed), at the second that the folder was a file."""
    root = tmp_path / "c"
    Cache(root).cached(lambda x: x)(1)
    report = injected(tmp_path, CLI, root, STAT, "EIO", when, str(root))
    assert report["injected"], "the fault was not injected"
    assert report["status"] == 1
    said = str(report["said"])
    assert "Input/output error" in said and "is a file" not in said, said


CALL = """
import json, sys, warnings
from memojar import Cache

cache = Cache(sys.argv[1])

@cache.cached
def double(x):
    return x * 2

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value = double(int(sys.argv[2]))
print(json.dumps({"value": value, "warnings": [str(w.message) for w in caught]}))
"""


def test_a_key_lock_whose_unlock_fails_loses_no_result(tmp_path: Path) -> None:
    """The key's lock is a byte-range lock, released by ``fcntl(F_OFD_SETLK, F_UNLCK)``.
    An unlock failing (EIO: an NFS server that lost its locks) raised from the call after the
    value was computed and stored: the caller lost it. The lock file's descriptor is closed
    (which releases its locks), the value returned, with a warning naming the fault."""
    root = tmp_path / "c"
    script = tmp_path / "script.py"  # as ``injected`` runs it: the same scope
    script.write_text(CALL)
    subprocess.run([sys.executable, str(script), str(root), "0"], check=True, timeout=120,
                   env=subprocess_env())  # the function's folder and lock file
    (lock,) = root.glob("*/.lock")
    # the lock file's fcntl calls: the key's lock, then its unlock
    report = injected(tmp_path, CALL, lock, "fcntl", "EIO", 2, str(root), "21")
    assert report["injected"], "the fault was not injected"
    assert report["value"] == 42
    assert [w for w in report["warnings"] if "Input/output error" in w], report
    # stored, and the key free: another process hits at once
    again = subprocess.run([sys.executable, str(script), str(root), "21"], check=True,
                           capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert json.loads(again.stdout) == {"value": 42, "warnings": []}


def test_a_signal_handlers_exception_at_the_key_locks_unlock_is_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's own exception (a ``SIGALRM`` handler's ``TimeoutError``: an ``OSError``
    with no errno) landing in the unlock is the caller's, raised, not taken for the lock
    file's fault and warned about (as an EIO there is, above)."""
    cache = Cache(tmp_path / "c")
    double = cache.cached(lambda x: 2 * x)
    double(0)  # the folder and its lock file made
    real = _locks._fcntl

    def fcntl(fd: int, command: int, arg: bytes) -> Any:
        if arg[:2] == _locks._UNLOCK[:2]:
            raise TimeoutError("the caller's deadline")
        return real(fd, command, arg)

    monkeypatch.setattr(_locks, "_fcntl", fcntl)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TimeoutError, match="the caller's deadline"):
            double(21)
    monkeypatch.setattr(_locks, "_fcntl", real)
    assert double(21) == 42


MAX_SIZE_MISSES = """
import json, sys
from memojar import Cache

cache = Cache(sys.argv[1], max_size=10**7)

@cache.cached
def pad(x):
    return "p" * 1000 + str(x)

for x in sys.argv[2:]:
    pad(int(x))
print(json.dumps({}))
"""


def _entries_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.pkl"))


def test_a_recount_that_could_not_stat_an_entry_is_not_trusted(tmp_path: Path) -> None:
    """A process's first write with max_size recounts the files into the size ledger; an
    entry whose ``stat`` failed (EIO) was left out of the count, and the total, short by
    its size, was trusted by every later write of the process (the cache could grow past
    max_size by as much). Such a count is used once, and the next write counts again."""
    root = tmp_path / "c"
    script = tmp_path / "script.py"  # as ``injected`` runs it: the same scope
    script.write_text(MAX_SIZE_MISSES)
    subprocess.run([sys.executable, str(script), str(root), "0"], check=True, timeout=120,
                   env=subprocess_env())
    (entry,) = root.rglob("*.pkl")
    # The recount stats the entry through its shard: which of the shard's stats it is,
    # counted on a copy.
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    log = tmp_path / "plain.log"
    subprocess.run([str(strace_path()), "-f", "-qq", "-o", str(log), "-P",
                    str(copy / entry.relative_to(root).parent), "-e", "trace=newfstatat",
                    sys.executable, str(script), str(copy), "1", "2"],
                   check=True, capture_output=True, timeout=120, env=subprocess_env())
    stats = log.read_text().splitlines()
    when = next(i for i, line in enumerate(stats, 1) if entry.name in line)
    report = injected(tmp_path, MAX_SIZE_MISSES, entry.parent, "newfstatat", "EIO", when,
                      str(root), "1", "2")
    assert report["injected"], "the fault was not injected"
    assert entry.name in report["injected"][0], report["injected"]
    assert (root / ".size").read_text() == str(_entries_bytes(root))


DELETE = """
import json, sys, warnings
from memojar import Cache

cache = Cache(sys.argv[1], max_size=10**7)

@cache.cached
def pad(x):
    return "p" * 1000 + str(x)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    removed = pad.cache_delete(int(sys.argv[2])) if len(sys.argv) > 2 else pad(0)
print(json.dumps({"removed": removed, "warnings": [str(w.message) for w in caught]}))
"""


@pytest.mark.parametrize(("target", "calls", "when", "warns"), [
    (".size.lock", "flock", 2, True),  # the ledger's unlock: a write fault
    ("", "getdents64", 1, False),  # the recount's listing (a read): counted next time
], ids=["unlock", "recount"])
def test_a_removal_whose_ledger_update_fails_still_says_it_removed(
    tmp_path: Path, target: str, calls: str, when: int, warns: bool
) -> None:
    """``cache_delete`` with max_size removes the entry, then records it in the size
    ledger (a recount at the process's first use, the new total, the ledger's unlock). A
    fault there (EIO) raised from ``cache_delete`` after the entry was gone: the caller was
    told it failed. The removal stands (with a warning if the ledger could not be written or
    unlocked); the total is counted again at the next use."""
    root = tmp_path / "c"
    script = tmp_path / "script.py"  # as ``injected`` runs it: the same scope
    script.write_text(DELETE)
    subprocess.run([sys.executable, str(script), str(root)], check=True, timeout=120,
                   env=subprocess_env())  # pad(0) stored
    report = injected(tmp_path, DELETE, root / target if target else root, calls, "EIO",
                      when, str(root), "0")
    assert report["injected"], "the fault was not injected"
    assert report["removed"] is True, report
    assert bool([w for w in report["warnings"] if "Input/output error" in w]) == warns, report
    assert list(root.rglob("*.pkl")) == []


def test_a_signal_handlers_exception_at_an_entrys_unlink_is_raised_as_it_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's own exception (a ``SIGALRM`` handler's ``TimeoutError``: an ``OSError``
    with no errno) landing in the unlink of an entry is raised as it is. Before, it was
    raised again as a plain ``OSError(None, None, path)`` (meant for the unlink's own faults,
    EROFS, EIO, to name the entry's path): the caller's ``except TimeoutError`` missed it."""
    cache = Cache(tmp_path / "c")
    double = cache.cached(lambda x: 2 * x)
    double(21)
    real = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if str(path).endswith(".pkl"):
            raise TimeoutError("the caller's deadline")
        real(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(TimeoutError, match="the caller's deadline"):
        double.cache_delete(21)
    monkeypatch.setattr(os, "unlink", real)
    assert double.cache_delete(21) is True


def test_a_signal_handlers_exception_in_a_removals_recount_is_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A removal with max_size in a process that has not recounted the size ledger yet
    counts the files (``Ledger.settle``); a fault there (EIO) is the ledger's, counted again
    later, but the caller's own exception (a signal handler's ``TimeoutError``, no errno)
    landing in that count is raised. Before, it was logged as a failed recount and lost."""
    root = tmp_path / "c"
    Cache(root, max_size=10**7).cached(lambda x: 2 * x)(21)
    double = Cache(root, max_size=10**7).cached(lambda x: 2 * x)  # a store not recounted

    def census(self: Any) -> Any:
        raise TimeoutError("the caller's deadline")

    monkeypatch.setattr(_filestore.FileStore, "_census", census)
    with pytest.raises(TimeoutError, match="the caller's deadline"):
        double.cache_delete(21)


@pytest.mark.parametrize("fault", [OSError(errno.EIO, "Input/output error"),
                                   TimeoutError("the caller's deadline")],
                         ids=["EIO", "signal-handler"])
def test_a_removal_whose_ledger_lock_fails_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: OSError) -> None:
    """With max_size, a removal takes the size ledger's lock at the first file it finds in
    a shard. That lock failing (EIO), or the caller's signal handler raising while it is
    taken, was caught as 'the file was removed by another process first': ``cache_delete``
    answered False, removing nothing, silently, and the caller's exception was lost."""
    double = Cache(tmp_path / "c", max_size=10**7).cached(lambda x: 2 * x)
    double(21)

    def total_lock(self: Any) -> Any:
        raise fault

    monkeypatch.setattr(_filestore.FileStore, "_total_lock", total_lock)
    with pytest.raises(type(fault), match=str(fault.args[-1])):
        double.cache_delete(21)
    monkeypatch.undo()
    assert double.cache_contains(21)  # nothing removed


def test_a_signal_handlers_exception_opening_a_cache_or_counting_it_is_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The look at the cache's folder when it is opened, and the size ledger's count of its
    files, take a failing ``stat`` for a folder not made yet or a file of unknown size; the
    caller's own exception (no errno) landing there is raised, not taken for either."""
    root = tmp_path / "c"
    cache = Cache(root, max_size=10**7)
    cache.cached(lambda x: 2 * x)(21)
    real = os.stat

    def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        if os.fspath(path) == str(root) or str(path).endswith(".pkl"):
            raise TimeoutError("the caller's deadline")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    with pytest.raises(TimeoutError, match="the caller's deadline"):
        Cache(root)
    with pytest.raises(TimeoutError, match="the caller's deadline"):
        cache.store._census()
