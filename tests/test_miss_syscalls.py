"""The miss path's file operations: the function's lock file is opened once per process,
not once per miss, and a forked child never shares a lock description with its parent."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache, _locks

pytestmark = pytest.mark.skipif(not _locks._OFD, reason="byte-range OFD locks (Linux)")


def test_misses_open_the_lock_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache(tmp_path / "c")

    @cache.cached
    def f(x: int) -> int:
        return x

    f(-1)  # the folders, the lock file
    opened: list[str] = []
    real_open = os.open

    def counting(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(os.fsdecode(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting)
    for i in range(20):
        assert f(i) == i
    monkeypatch.undo()
    assert [p for p in opened if p.endswith(os.sep + ".lock")] == []
    # per miss: the entry (a miss), again under the lock, the temporary file
    assert len(opened) <= 3 * 20


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_forked_child_does_not_share_an_idle_lock_description(tmp_path: Path) -> None:
    from memojar._filestore import FileStore

    store = FileStore(tmp_path / "c")
    lock = store.lock("fn", "ab" * 16)
    assert lock.acquire()
    lock.release()  # its description is idle now, kept for reuse
    read, write = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child takes the key's lock and holds it until told
        try:
            child = store.lock("fn", "ab" * 16)
            ok = child.acquire(blocking=False)
            os.write(write, b"1" if ok else b"0")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(read, 1) == b"1"
        again = store.lock("fn", "ab" * 16)
        assert not again.acquire(blocking=False)  # the child holds it: excluded
    finally:
        os.write(done_w, b"x")
        os.waitpid(pid, 0)
    assert again.acquire(blocking=False)
    again.release()
