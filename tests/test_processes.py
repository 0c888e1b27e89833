"""Behaviour across real processes: one computation for many callers, edits, bad entries."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import immutable, run_python

MODULE = '''
import time
from memojar import cached


@cached
def slow(x):
    with open({log!r}, "a") as f:
        f.write(f"{{x}}\\n")
    time.sleep({delay})
    return {{"x": x, "square": x * x, "payload": list(range(x))}}
'''

CALLER = """
import sys
sys.path.insert(0, {folder!r})
import {module}
print(repr({module}.slow({arg})))
"""


def write_module(folder: Path, log: Path, name: str = "slowmod", delay: float = 0.0,
                 extra: str = "") -> None:
    folder.mkdir(exist_ok=True)
    source = MODULE.format(log=str(log), delay=delay) + extra
    (folder / f"{name}.py").write_text(source)


def computations(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def call(folder: Path, cache: Path, arg: int = 3, module: str = "slowmod",
         warnings_are_errors: bool = True) -> str:
    code = CALLER.format(folder=str(folder), module=module, arg=arg)
    env = {"MEMOJAR_DIR": str(cache), "PYTHONDONTWRITEBYTECODE": "1"}
    if warnings_are_errors:
        env["PYTHONWARNINGS"] = "error"
    return run_python(code, env=env).strip()


EXPECTED_3 = repr({"x": 3, "square": 9, "payload": [0, 1, 2]})


@pytest.mark.slow
def test_eight_processes_calling_at_once_compute_once(tmp_path: Path) -> None:
    folder, log, cache = tmp_path / "mod", tmp_path / "log", tmp_path / "cache"
    write_module(folder, log, delay=1.0)
    code = CALLER.format(folder=str(folder), module="slowmod", arg=3)
    env = {**os.environ, "MEMOJAR_DIR": str(cache), "PYTHONWARNINGS": "error"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(8)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == EXPECTED_3
    assert computations(log) == ["3"]


def test_a_root_filled_before_its_maker_tagged_it_is_still_the_cache(tmp_path: Path) -> None:
    """The stampede above, one interleaving made certain: process A creates the cache root
    and is descheduled before it writes CACHEDIR.TAG; B (opened before the root existed)
    creates a function folder in it; C then opens the cache. C must not refuse the root as a
    folder memojar did not create: B tags it before putting anything in."""
    from memojar._filestore import FileStore

    root = tmp_path / "cache"
    b = FileStore(root)  # B opens the cache before anyone created it
    root.mkdir(mode=0o700)  # A creates the root, then is descheduled before tagging it
    lock = b.lock("mod.f", "ab" * 16)  # B's first miss creates the function folder
    assert lock.acquire(blocking=False)
    lock.release()
    code = textwrap.dedent(f"""
        from memojar import cached

        @cached(cache_dir={str(root)!r})
        def f(x):
            return x + 1

        print(f(1))
    """)
    assert run_python(code, env={"PYTHONWARNINGS": "error"}).strip() == "2"  # C


def test_an_unchanged_module_hits_in_a_new_process(tmp_path: Path) -> None:
    folder, log, cache = tmp_path / "mod", tmp_path / "log", tmp_path / "cache"
    write_module(folder, log)
    assert call(folder, cache) == EXPECTED_3
    assert call(folder, cache) == EXPECTED_3
    assert computations(log) == ["3"]


def test_a_module_moved_down_or_recommented_still_hits(tmp_path: Path) -> None:
    folder, log, cache = tmp_path / "mod", tmp_path / "log", tmp_path / "cache"
    write_module(folder, log)
    assert call(folder, cache) == EXPECTED_3
    path = folder / "slowmod.py"
    path.write_text("# a new header comment\n\n\n" + path.read_text().replace(
        "def slow(x):", 'def slow(x):\n    """Now documented."""  # and commented'))
    assert call(folder, cache) == EXPECTED_3
    assert computations(log) == ["3"]


def test_an_edited_module_recomputes_in_a_new_process(tmp_path: Path) -> None:
    folder, log, cache = tmp_path / "mod", tmp_path / "log", tmp_path / "cache"
    write_module(folder, log)
    assert call(folder, cache) == EXPECTED_3
    path = folder / "slowmod.py"
    path.write_text(path.read_text().replace('"square": x * x', '"square": x ** 3'))
    assert call(folder, cache) == repr({"x": 3, "square": 27, "payload": [0, 1, 2]})
    assert computations(log) == ["3", "3"]
    assert call(folder, cache) == repr({"x": 3, "square": 27, "payload": [0, 1, 2]})
    assert computations(log) == ["3", "3"]


def test_an_edited_main_script_recomputes(tmp_path: Path) -> None:
    log, cache = tmp_path / "log", tmp_path / "cache"
    script = tmp_path / "script.py"
    body = textwrap.dedent(f"""
        from memojar import cached

        @cached
        def compute(x):
            with open({str(log)!r}, "a") as f:
                f.write("run\\n")
            return x + 1

        print(compute(1))
    """)
    env = {**os.environ, "MEMOJAR_DIR": str(cache), "PYTHONWARNINGS": "error"}

    def run() -> str:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    script.write_text(body)
    assert run() == "2"
    assert run() == "2"
    script.write_text(body.replace("return x + 1", "return x + 100"))
    assert run() == "101"
    assert computations(log) == ["run", "run"]


def _entry_file(cache: Path) -> Path:
    (path,) = cache.rglob("*.pkl")
    return path


def import_module(folder: Path, name: str):
    """Import ``folder/name.py`` in this process, as a new process would import it."""
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "damage",
    ["flip-payload-byte", "flip-header-byte", "truncate-half", "truncate-to-zero",
     "append-garbage", "replace-with-junk"],
)
def test_a_damaged_entry_is_a_miss_in_a_new_process(tmp_path: Path, damage: str) -> None:
    folder, log = tmp_path / "mod", tmp_path / "log"
    cache = tmp_path / "default-cache"  # $MEMOJAR_DIR here, and passed to the new process
    name = "damaged_" + damage.replace("-", "_")
    write_module(folder, log, name=name)
    module = import_module(folder, name)
    expected = {"x": 40, "square": 1600, "payload": list(range(40))}
    assert module.slow(40) == expected
    path = _entry_file(cache)
    data = bytearray(path.read_bytes())
    if damage == "flip-payload-byte":
        data[-5] ^= 0xFF
    elif damage == "flip-header-byte":
        data[30] ^= 0x01
    elif damage == "truncate-half":
        data = data[: len(data) // 2]
    elif damage == "truncate-to-zero":
        data = bytearray()
    elif damage == "append-garbage":
        data += b"\x80\x05garbage"
    else:
        data = bytearray(b"cos\nsystem\n(S'echo pwned'\ntR.")
    path.write_bytes(bytes(data))
    # no exception, no warning (PYTHONWARNINGS=error), the right value:
    assert call(folder, cache, arg=40, module=name) == repr(expected)
    assert computations(log) == ["40", "40"]
    assert module.slow.cache_contains(40)  # and the entry was replaced by a good one


def test_damaged_entry_in_this_process_is_a_miss(tmp_path: Path) -> None:
    from memojar import cached

    calls: list[int] = []

    @cached(cache_dir=tmp_path / "c")
    def f(x):
        calls.append(x)
        return list(range(x))

    f(100)
    path = _entry_file(tmp_path / "c")
    path.write_bytes(path.read_bytes()[:-7])
    assert f(100) == list(range(100))
    assert calls == [100, 100]


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only: mode 0500, or for root (who ignores modes) immutable."""
    if not hasattr(os, "geteuid"):
        pytest.skip("POSIX only")
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    # Root ignores permissions (the brief's chmod 0500 proves nothing): an immutable
    # directory is read-only even for root, where the file system and capabilities allow it.
    with immutable(folder, "running as root, which ignores permissions"):
        yield


def test_a_read_only_cache_directory_still_returns_the_value(tmp_path: Path) -> None:
    from memojar import MemojarWarning, cached

    cache = tmp_path / "ro"
    cache.mkdir()
    calls: list[int] = []

    @cached(cache_dir=cache)
    def f(x):
        calls.append(x)
        return x * 2

    with read_only(cache):
        with pytest.warns(MemojarWarning, match="not cached") as caught:
            assert f(21) == 42
        assert str(cache) in str(caught[0].message)
        with pytest.warns(MemojarWarning, match="not cached"):
            assert f(21) == 42
    assert calls == [21, 21]


def test_a_read_only_cache_directory_still_serves_its_entries(tmp_path: Path) -> None:
    from memojar import cached

    cache = tmp_path / "ro"
    calls: list[int] = []

    @cached(cache_dir=cache)
    def f(x):
        calls.append(x)
        return x * 2

    f(1)
    folders = [cache, *(p for p in cache.rglob("*") if p.is_dir())]
    with contextlib.ExitStack() as stack:
        for folder in folders:
            stack.enter_context(read_only(folder))
        assert f(1) == 2  # a hit, and no warning: reading needs no write
    assert calls == [1]


def test_a_root_tagged_between_the_look_and_the_listing_is_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One interleaving of threads (or processes) making a missing cache at once: B looks
    for the tag (none yet), A writes it, B lists the root and finds it. B must see the
    cache, not a folder of the user's (16 threads computed twice: one could not lock)."""
    from memojar import _filestore

    root = tmp_path / "cache"
    root.mkdir(mode=0o700)  # A made the root and is about to tag it
    listdir = os.listdir

    def tagged_meanwhile(path: Any) -> list[str]:
        _filestore._mark(str(root))  # A tags it while B is between its look and its listing
        return listdir(path)

    monkeypatch.setattr(os, "listdir", tagged_meanwhile)
    _filestore._claim(str(root))  # B
    monkeypatch.setattr(os, "listdir", listdir)
    assert sorted(os.listdir(root)) == [".gitignore", "CACHEDIR.TAG"]


def test_a_root_being_tagged_is_the_cache_to_a_process_that_looks_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tag appears whole: A writes it to a temporary file in the root and links it at
    its name. B, looking between the two, finds the root holding only A's temporary tag:
    being tagged, not a folder of the user's. Whichever links first wins; neither raises."""
    from memojar import _filestore

    root = tmp_path / "cache"
    root.mkdir(mode=0o700)  # A made the root, and is tagging it
    link = os.link
    looked: list[list[str]] = []

    def b_looks_before_a_links(src: Any, dst: Any, **kwargs: Any) -> None:
        if not looked:
            looked.append(os.listdir(root))
            _filestore._claim(str(root))  # B, while A's tag is a temporary file
        link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", b_looks_before_a_links)
    _filestore._claim(str(root))  # A
    monkeypatch.setattr(os, "link", link)
    assert len(looked) == 1 and len(looked[0]) == 1 and looked[0][0].endswith(".tmp")
    assert sorted(os.listdir(root)) == [".gitignore", "CACHEDIR.TAG"]
    assert b"memojar" in (root / "CACHEDIR.TAG").read_bytes()


def test_a_temporary_tag_linked_while_a_process_reads_it_is_a_root_being_tagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B lists the root (only A's temporary tag), A links its tag and removes the temporary
    file, then B opens that file to see whether it is being written: gone. It was (its
    writer just finished): B adopts the root, it does not refuse it (the 8-thread stampede
    in test_fault_stampede.py found this)."""
    from memojar import _filestore

    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    temp = root / f"CACHEDIR.TAG.{os.getpid()}-{_filestore._HOST}.0badf00d.tmp"
    temp.write_text(_filestore._TAG_TEXT)  # A's, about to be linked
    real_open = os.open

    def a_links_meanwhile(path: Any, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == str(temp):
            os.link(temp, root / "CACHEDIR.TAG")
            temp.unlink()
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", a_links_meanwhile)
    _filestore._claim(str(root))  # B
    monkeypatch.undo()
    assert sorted(os.listdir(root)) == [".gitignore", "CACHEDIR.TAG"]


def _without_hard_links(monkeypatch: pytest.MonkeyPatch, meanwhile: Any = None) -> None:
    """``os.link`` as on a file system without hard links (vfat, some network mounts):
    EPERM; ``meanwhile`` runs first (another program writing at the name)."""

    def link(src: Any, dst: Any, **kwargs: Any) -> None:
        if meanwhile is not None:
            meanwhile(dst)
        raise OSError(errno.EPERM, "Operation not permitted", dst)

    monkeypatch.setattr(os, "link", link)


def test_a_root_on_a_file_system_without_hard_links_gets_the_whole_tag_by_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memojar import _filestore

    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    _without_hard_links(monkeypatch)
    _filestore._claim(str(root))
    assert sorted(os.listdir(root)) == [".gitignore", "CACHEDIR.TAG"]  # no temporary file
    assert (root / "CACHEDIR.TAG").read_text() == _filestore._TAG_TEXT


def test_the_tag_renamed_where_there_are_no_hard_links_never_replaces_one_there_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link fails if a tag is at the name; the rename that stands in for it must not
    replace one either: another program's tag, written meanwhile, stays as it was."""
    from memojar import _filestore

    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    theirs = "Signature: 8a477f597d28d172789f06886806bc55\n# another tool's\n"
    _without_hard_links(monkeypatch, lambda dst: Path(dst).write_text(theirs))
    with pytest.raises(ValueError, match=r"its CACHEDIR\.TAG is a file that memojar did not"):
        _filestore._claim(str(root))  # and the folder is not memojar's
    assert (root / "CACHEDIR.TAG").read_text() == theirs
    assert not [n for n in os.listdir(root) if n.endswith(".tmp")]


@pytest.mark.parametrize("planted", ["link", "file"])
@pytest.mark.parametrize("hard_links", [True, False], ids=["linked", "renamed"])
def test_a_tag_planted_while_memojar_makes_the_root_keeps_the_process_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str, hard_links: bool
) -> None:
    """Another program puts a link or a file at CACHEDIR.TAG between the root's ``mkdir``
    and memojar's link of its tag. The process must not store into a root every later
    process refuses: it returns its values, warns naming the folder and what to do, and
    writes nothing there; a later process refuses the folder too."""
    from memojar import Cache, MemojarWarning

    root = tmp_path / "cache"
    victim = tmp_path / "victim"
    victim.write_text("precious\n")

    def plant(dst: Any) -> None:
        if planted == "link":
            os.symlink(victim, dst)
        else:
            Path(dst).write_text("Signature: 8a477f597d28d172789f06886806bc55\n")

    f = Cache(root).cached(lambda x: x * 2)  # the root is missing: made by the first miss
    link = os.link

    def planted_first(src: Any, dst: Any, **kwargs: Any) -> None:
        if str(dst).endswith("CACHEDIR.TAG"):
            if not os.path.lexists(dst):
                plant(dst)
            if not hard_links:  # as where there are none: the tag is renamed instead
                raise OSError(errno.EPERM, "Operation not permitted", dst)
        link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", planted_first)
    kind = "a symbolic link" if planted == "link" else "a file"
    with pytest.warns(MemojarWarning, match=rf"{root}': its CACHEDIR.TAG is {kind} that "
                      "memojar did not write.*Remove that CACHEDIR.TAG"):
        assert f(1) == 2
        assert f(1) == 2 and f.cache_info().misses == 2  # no entry: computed again
    monkeypatch.undo()
    assert sorted(os.listdir(root)) == ["CACHEDIR.TAG"]  # nothing of memojar's went in
    assert victim.read_text() == "precious\n"
    with pytest.raises(ValueError, match=r"its CACHEDIR\.TAG is .* memojar did not write"):
        Cache(root)  # a later process refuses it as well


# A process that makes a cache root, killed (-9) at its K-th system call of it.
KILLED_AT = """
import os, signal, sys
import memojar

f = memojar.Cache(sys.argv[1]).cached(abs)
calls = [0]


def counted(call):
    def at(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        return call(*args, **kwargs)
    return at


for name in ("mkdir", "open", "write", "link", "rename", "unlink", "close", "listdir",
             "lstat", "stat", "fstat", "read", "kill"):
    setattr(os, name, counted(getattr(os, name)))
f(-1)
print(calls[0])
"""


@pytest.mark.slow
def test_a_process_killed_at_any_moment_of_making_a_root_leaves_one_the_next_uses(
    tmp_path: Path,
) -> None:
    """Killed after its mkdir, mid-tag, between its temporary tag and the link, before the
    .gitignore or the function's folder: the next process (at once: a temporary tag of a
    dead writer counts for a minute) uses the root, with no refusal and no warning, and
    prune then leaves no temporary tag."""
    from memojar import Cache

    killed = 0
    for k in range(1, 40):
        root = tmp_path / str(k) / "cache"
        victim = subprocess.run([sys.executable, "-c", KILLED_AT, str(root), str(k)],
                                capture_output=True, text=True, timeout=60)
        if victim.returncode == 0:  # it made the root and stored before its K-th call
            break
        assert victim.returncode == -9, victim.stderr
        killed += 1
        cache = Cache(root)
        assert cache.cached(abs)(-2) == 2
        cache.prune()
        names = sorted(os.listdir(root))
        # Killed between the tag's link and the .gitignore, a root stays without one: like
        # a cache of a memojar older than the .gitignore, it gets none later.
        assert "CACHEDIR.TAG" in names, (k, names)
        assert not [n for n in names if n.endswith(".tmp")], (k, names)
    assert killed >= 10, "the kills did not land in the making of the root"
