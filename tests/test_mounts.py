"""Caches on the mounts containers use: a cache baked into an image (an overlay's read-only
lower layer, written to through the merged mount: copy-up) and a warm cache mounted
read-only (a bind mount remounted ``ro``). Real mounts, so these need root (CI runs as
root) and a kernel that lets this machine mount; each skips, saying why, where it cannot.
Every mount is undone when its test ends."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import freed_without_the_collector, run_python
from memojar import Cache

Mounter = Callable[[Path], "contextlib.AbstractContextManager[Path]"]


def _mount(*args: str) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here (mount {' '.join(args)}: {proc.stderr.strip()}): "
                    "needs root and a kernel that allows it")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture
def container(tmp_path: Path) -> Mounter:
    """``with container(lower) as merged``: ``lower`` (an image's layer, written before)
    seen through an overlay at ``merged``, with a new upper layer on a tmpfs (another file
    system than the lower's, as a container's writable layer often is)."""
    count = iter(range(100))

    @contextlib.contextmanager
    def mount(lower: Path) -> Iterator[Path]:
        n = next(count)
        disk, merged = tmp_path / f"upper{n}", tmp_path / f"merged{n}"
        disk.mkdir()
        merged.mkdir()
        _mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk))
        try:
            (disk / "u").mkdir()
            (disk / "w").mkdir()
            _mount("-t", "overlay", "overlay", "-o",
                   f"lowerdir={lower},upperdir={disk / 'u'},workdir={disk / 'w'}", str(merged))
            try:
                yield merged
            finally:
                _umount(merged)
        finally:
            _umount(disk)

    return mount


@pytest.fixture
def read_only(tmp_path: Path) -> Mounter:
    """``with read_only(folder) as view``: ``folder`` bind-mounted read-only at ``view``
    (a warm cache handed to a container with ``:ro``)."""
    count = iter(range(100))

    @contextlib.contextmanager
    def mount(folder: Path) -> Iterator[Path]:
        view = tmp_path / f"ro{next(count)}"
        view.mkdir()
        _mount("--bind", str(folder), str(view))
        try:
            _mount("-o", "remount,bind,ro", str(view))
            yield view
        finally:
            _umount(view)

    return mount


def _warm(root: Path, max_size: int | None = None) -> Callable[[int], bytes]:
    """A function of a cache at ``root`` with entries for 0, 1 and 2."""
    def f(x: int) -> bytes:
        return bytes(1000) + bytes([x])

    cached = Cache(root, max_size=max_size).cached(f)
    for x in range(3):
        cached(x)
    return cached


COUNTING = """
import sys
from pathlib import Path
from memojar import Cache
calls = Path(sys.argv[2])

@Cache(sys.argv[1]).cached(memory=4)
def f(x):
    calls.write_text(str(int(calls.read_text()) + 1))
    return int(calls.read_text())
"""


def test_a_clear_in_a_container_reaches_the_memory_tier_of_a_baked_cache(
        tmp_path: Path, container: Mounter) -> None:
    """The image's build left the function's generation stamp in the lower layer. A
    process mapping it maps the lower file; the clear's bump copies it up and writes the
    copy. Before, the mapping never saw the bump: after ``clear()`` (in this process or
    another one of the container), ``memory=`` returned the cleared value for good."""
    calls = tmp_path / "calls"
    calls.write_text("0")
    image = tmp_path / "image"
    run_python(COUNTING + "print(f(1))", str(image / "c"), str(calls))
    with container(image) as merged:
        out = run_python(COUNTING + """
print(f(1))  # the image's entry, now held in memory too
Cache(sys.argv[1]).clear()
print(f(1))
""", str(merged / "c"), str(calls))
    assert out.split() == ["1", "2"]


def test_removing_from_a_read_only_cache_with_max_size_says_so(
        tmp_path: Path, read_only: Mounter) -> None:
    """Before, the ledger lock's EROFS was taken for each file being removed by another
    process first: ``clear()`` answered 0 and ``cache_delete`` False, removing nothing,
    with nothing said; without max_size both raised EROFS, as they do now."""
    f = _warm(tmp_path / "c", max_size=1_000_000)
    with read_only(tmp_path / "c") as view:
        cache = Cache(view, max_size=1_000_000)
        g = cache.cached(f.__wrapped__)
        with pytest.raises(OSError, match="Read-only file system"):
            cache.clear()
        with pytest.raises(OSError, match="Read-only file system"):
            g.cache_delete(0)
        assert g.cache_info().entries == 3
        assert cache.prune() == 0  # nothing to remove: before, EROFS from the ledger's lock


def test_clearing_a_read_only_cache_names_the_entry_by_its_path(
        tmp_path: Path, read_only: Mounter) -> None:
    """Before, the error named the entry's file alone ('memojar: read-only file system:
    676c...pkl'): no cache, no folder."""
    _warm(tmp_path / "c")
    with read_only(tmp_path / "c") as view:
        with pytest.raises(OSError, match="Read-only file system") as caught:
            Cache(view).clear()
        assert caught.value.filename.startswith(f"{view}/")
        proc = subprocess.run([sys.executable, "-m", "memojar", "--dir", str(view), "clear",
                               "--yes"], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert f"memojar: read-only file system: {view}/" in proc.stderr
        assert Cache(view).stats().entries == 3


def test_memory_tier_on_a_read_only_warm_cache_sees_a_clear_made_elsewhere(
        tmp_path: Path, read_only: Mounter) -> None:
    """The cache's stamp is there: it is mapped, and a clear through the writable mount
    (the host's, while the container reads) reaches it. Before, memory= was not used, with
    a warning blaming the file system ('a file system without [hard links], such as
    FAT')."""
    calls = tmp_path / "calls"
    calls.write_text("0")
    run_python(COUNTING + "print(f(1))", str(tmp_path / "c"), str(calls))
    with read_only(tmp_path / "c") as view:
        out = run_python("""
import warnings
warnings.simplefilter("always")
warnings.showwarning = lambda message, *_, **__: print("warning:", message)
""" + COUNTING + """
print(f(1), f(1))
Cache(sys.argv[3]).clear()
print(f(1))  # computed, returned, not stored: read-only
""", str(view), str(calls), str(tmp_path / "c"))
    warned = "".join(line for line in out.splitlines() if line.startswith("warning:"))
    values = [line for line in out.splitlines() if not line.startswith("warning:")]
    assert " ".join(values).split() == ["1", "1", "2"]
    assert "memory=" not in warned
    assert "Read-only file system" in warned


class _Argument:
    """An argument, to see whether a call frees it."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_a_removal_from_a_read_only_cache_with_max_size_frees_its_argument_without_the_collector(
        tmp_path: Path, read_only: Mounter, monkeypatch: pytest.MonkeyPatch) -> None:
    """The removal's EROFS was thrown into the ledger's context manager (``_settling``)
    while it handled the EROFS of the ledger's lock: it had that one for its context,
    whose traceback held the generator's frame, linked back on 3.12 and later to
    contextlib's ``__exit__``, which kept the removal's error: a cycle holding the call's
    frames and its argument until the collector ran."""
    import logging

    monkeypatch.setattr(logging.getLogger("memojar"), "propagate", False)  # (no record kept)

    def size(argument: _Argument) -> int:
        return argument.n

    def refused(argument: _Argument) -> None:
        with pytest.raises(OSError, match="Read-only file system"):
            delete(argument)

    warm = Cache(tmp_path / "c", max_size=1_000_000).cached(size)
    for n in range(3):
        warm(_Argument(n))
    with read_only(tmp_path / "c") as view:
        delete = Cache(view, max_size=1_000_000).cached(size).cache_delete
        refused(_Argument(0))  # what a first call makes once
        assert freed_without_the_collector(refused, lambda: _Argument(1))
