"""The README's first command ends in ``python -m memojar.demo``: it must run and show hits,
say where it cached and how to look, and leave nothing behind in the temporary directory."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MEMOJAR_DEMO_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "memojar.demo"], capture_output=True, text=True, timeout=120,
        env={**environ, **env},
    )


@pytest.mark.slow
def test_the_demo_computes_once_then_hits_in_this_process_and_the_next(tmp_path: Path) -> None:
    proc = run_demo({"MEMOJAR_DEMO_DIR": str(tmp_path / "demo")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert any("second call (cache hit)" in line and " ms " in line for line in lines)
    assert any("a new Python process (cache hit)" in line for line in lines)
    assert "CacheInfo(hits=2, misses=2, entries=2" in proc.stdout


def test_the_demo_whose_reader_leaves_ends_quietly(tmp_path: Path) -> None:
    """``python -m memojar.demo | head -1``: before, the cache was said to have failed
    ("Broken pipe"), with status 1."""
    environ = {k: v for k, v in os.environ.items() if k != "MEMOJAR_DEMO_DIR"}
    reader, writer = os.pipe()
    os.close(reader)  # the reader left before the first line
    try:
        proc = subprocess.run([sys.executable, "-m", "memojar.demo"], stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**environ, "MEMOJAR_DEMO_DIR": str(tmp_path / "demo")})
    finally:
        os.close(writer)
    assert (proc.returncode, proc.stderr) == (0, "")


@pytest.mark.slow
def test_the_demo_uses_the_default_cache_says_where_and_leaves_no_temporary_folder(
    tmp_path: Path,
) -> None:
    temp, cache = tmp_path / "tmp", tmp_path / "default cache"
    temp.mkdir()
    env = {"TMPDIR": str(temp), "MEMOJAR_DIR": str(cache)}
    for _ in range(2):  # every run computes first: it removed its own earlier entries
        proc = run_demo(env)
        assert proc.returncode == 0, proc.stderr
        assert "CacheInfo(hits=2, misses=2, entries=2" in proc.stdout
        assert list(temp.iterdir()) == []  # no memojar-demo-* folder left behind
    assert f"caching in the default cache directory ($MEMOJAR_DIR), {cache}" in proc.stdout
    (ls_line,) = [line.strip() for line in proc.stdout.splitlines()
                  if " --dir " in line and line.strip().endswith(" ls")]
    argv = shlex.split(ls_line)
    command, options = argv[:argv.index("--dir")], argv[argv.index("--dir"):]
    assert options == ["--dir", str(cache), "ls"]
    # memojar on PATH, the script beside this Python, or this Python's -m memojar
    script = Path(sys.executable).with_name("memojar")
    assert (command in (["memojar"], [sys.executable, "-m", "memojar"])
            or (len(command) == 1 and Path(command[0]).resolve() == script.resolve()))
    # The printed line, run through the installed command (this checkout's sources).
    listed = subprocess.run([sys.executable, "-m", "memojar", *options], capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "memojar.demo.slow_stats        2" in listed.stdout


@pytest.mark.slow
def test_the_demo_touches_no_other_function_of_the_cache(tmp_path: Path) -> None:
    from memojar import Cache

    def keep(x: int) -> int:
        return x

    Cache(tmp_path).cached(keep)(1)
    proc = run_demo({"MEMOJAR_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert sorted(e.function for e in Cache(tmp_path).entries()) == sorted([
        f"{__name__}.test_the_demo_touches_no_other_function_of_the_cache.<locals>.keep",
        "memojar.demo.slow_stats", "memojar.demo.slow_stats",
    ])


@pytest.mark.slow
def test_a_run_after_another_pythons_run_lists_only_its_own_two_entries(
    tmp_path: Path,
) -> None:
    # Before, the demo removed only this Python's entries of an earlier run: after a run
    # under another Python it listed that run's entries as "its entries on disk" too, and
    # CacheInfo counted 4 entries where it had made 2.
    import time

    from memojar import _entry
    from memojar._filestore import FileStore
    from memojar._keys import make_key

    function, other = "memojar.demo.slow_stats", "3.99"
    ident = "\0".join((function, "", "0123456789abcdef", other, str(_entry.PROTOCOL), ""))
    for n in (100_000, 50_000):  # what a run of that Python leaves
        key = make_key((function, other, n))
        FileStore(tmp_path).write(function, key, _entry.encode(
            {"n": n}, ident=ident.encode(), key=key, created=time.time(), expires=None,
            compute_time=1.5))
    proc = run_demo({"MEMOJAR_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "CacheInfo(hits=2, misses=2, entries=2," in proc.stdout
    listed = [line for line in proc.stdout.splitlines() if " key " in line]
    assert len(listed) == 2, proc.stdout


@pytest.mark.slow
def test_the_commands_it_prints_for_a_url_with_a_password_work_as_printed(
    tmp_path: Path,
) -> None:
    # Before: "memojar --dir 'redis://:***@127.0.0.1:PORT/0' ls", the password redacted,
    # which failed as run; now the variable that holds the URL, which a shell expands.
    pytest.importorskip("redis")
    from redis_server import RedisServer, redis_server_path

    if redis_server_path() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer.start("--requirepass", "s3cret")
    try:
        env = {"MEMOJAR_DIR": f"redis://:s3cret@127.0.0.1:{server.port}/0",
               "MEMOJAR_SECRET": "demo-secret"}
        proc = run_demo(env)
        assert proc.returncode == 0, proc.stderr
        assert "s3cret" not in proc.stdout and "***" in proc.stdout  # where it caches
        (ls_line,) = [line.strip() for line in proc.stdout.splitlines()
                      if line.strip().endswith(" ls")]
        assert ls_line.endswith(' --dir "$MEMOJAR_DIR" ls')
        argv = shlex.split(ls_line.replace('"$MEMOJAR_DIR"', shlex.quote(env["MEMOJAR_DIR"])))
        listed = subprocess.run([sys.executable, "-m", "memojar", *argv[argv.index("--dir"):]],
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert "memojar.demo.slow_stats        2" in listed.stdout
    finally:
        server.stop()


@pytest.mark.slow
def test_a_warning_of_the_cache_is_one_line_of_the_demo(redis_location: str) -> None:
    # Before: "<frozen runpy>:88: MemojarWarning: Redis cache ... has no secret" and the
    # source line of runpy under it, amid the demo's output.
    proc = run_demo({"MEMOJAR_DIR": redis_location})
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("memojar demo: warning: Redis cache ") and "has no secret" in line


@pytest.mark.parametrize("kind", ["users-folder", "mistyped-url", "unreachable-server"])
def test_a_cache_the_demo_cannot_use_is_one_line_not_a_traceback(
    kind: str, tmp_path: Path
) -> None:
    # Before: a traceback ending in NotACacheDirectory for a $MEMOJAR_DIR of the user's files,
    # a folder "redis" made in the current directory for "redis//...", a traceback ending in
    # ConnectionError for a server that does not answer.
    if kind == "unreachable-server":
        pytest.importorskip("redis")
    mine = tmp_path / "my files"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    location = {"users-folder": str(mine), "mistyped-url": "redis//127.0.0.1:1/0",
                "unreachable-server": "redis://127.0.0.1:1/0?socket_timeout=2"}[kind]
    proc = subprocess.run(
        [sys.executable, "-m", "memojar.demo"], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env={**{k: v for k, v in os.environ.items() if k != "MEMOJAR_DEMO_DIR"},
                           "MEMOJAR_DIR": location},
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith("memojar demo: ")
    assert "the default cache directory ($MEMOJAR_DIR)" in lines[0]
    why = {"users-folder": "memojar did not create", "mistyped-url": "mistyped redis:// URL",
           "unreachable-server": "cannot reach the server"}[kind]
    assert why in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my files"]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_cache_the_demo_cannot_write_is_said_not_shown_as_hits(tmp_path: Path) -> None:
    # Before: a cache directory it could not write ($HOME unset for a user whose home is
    # /nonexistent, a path under a file, a read-only mount) printed the store's warning, then
    # "second call (cache hit)  1.530 s" and "a new Python process (cache hit)  1522.68 ms",
    # each call computing again, and exited 0.
    (tmp_path / "a file").write_text("mine")
    proc = run_demo({"MEMOJAR_DEMO_DIR": str(tmp_path / "a file" / "cache")})
    assert proc.returncode == 1
    assert "(cache hit)" not in proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("memojar demo: warning: result of memojar.demo.slow_stats was "
                               "returned but not cached: ")
    assert lines[1] == (f"memojar demo: the first call's result was not stored in "
                        f"{tmp_path / 'a file' / 'cache'} (the warning above says why), so "
                        "there are no hits to show; set $MEMOJAR_DEMO_DIR to a folder this "
                        "user may write to run the demo there")
    assert (tmp_path / "a file").read_text() == "mine"
