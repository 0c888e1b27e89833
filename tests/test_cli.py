"""The ``memojar`` command line: every command and option, exit codes, refusals, output."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import io
import itertools
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import as_another_user, immutable, traced_apart
from memojar import Cache, _cli, _entry, _filestore, _report, _store
from memojar._filestore import FileStore
from memojar._keys import make_key

SQUARE = "test_cli.square"
CUBE = "test_cli.cube"


def square(x: int) -> int:
    return x * x


def cube(x: int) -> int:
    return x * x * x


def fill(directory: Path, squares: int = 3, cubes: int = 2) -> None:
    """A cache with ``squares`` entries of ``square`` and ``cubes`` of ``cube``."""
    cache = Cache(directory)
    sq, cu = cache.cached(square), cache.cached(cube)
    for i in range(squares):
        sq(i)
    for i in range(cubes):
        cu(i)


def plant(
    directory: Path, function: str, n: int, *, created: float | None = None,
    expires: float | None = None, python: str = _entry.PYTHON, start: int = 0,
    compute_time: float = 0.25,
) -> None:
    """Write ``n`` entries with chosen header fields straight through the entry format."""
    store = FileStore(directory)
    ident = "\0".join((function, "", "0123456789abcdef", python, str(_entry.PROTOCOL), ""))
    for i in range(start, start + n):
        key = make_key((function, i))
        chunks = _entry.encode(
            i, ident=ident.encode(), key=key, created=created or time.time(),
            expires=expires, compute_time=compute_time,
        )
        store.write(function, key, chunks)


def count(directory: Path, function: str | None = None) -> int:
    return sum(1 for _ in Cache(directory).entries(function))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = _cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def memojar_command(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """The ``memojar`` command, as the installed script runs it (``python -m memojar``, so
    that this checkout's sources on PYTHONPATH are the ones run)."""
    return subprocess.run([sys.executable, "-m", "memojar", *argv], capture_output=True,
                          text=True, timeout=60, **kwargs)  # type: ignore[call-overload]


def one_line(err: str) -> str:
    """The single stderr line every error must be."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(autouse=True)
def a_terminal_that_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    """The progress tests draw on a terminal, also where the tests run under TERM=dumb."""
    monkeypatch.delenv("TERM", raising=False)


def parse_utc(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    assert when.utcoffset() == dt.timedelta(0)
    return when


# --- ls ---------------------------------------------------------------------------------

def test_ls_lists_functions_with_counts(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    fill(cache_dir)
    code, out, err = cli(capsys, "--dir", str(cache_dir), "ls")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:3]}
    assert rows[SQUARE][1] == "3"
    assert rows[CUBE][1] == "2"
    assert "2 functions, 5 entries" in out


def test_ls_json_shape(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    fill(cache_dir)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "ls", "--json")
    assert code == 0
    rows = {row["function"]: row for row in json.loads(out)}
    assert set(rows) == {SQUARE, CUBE}
    row = rows[SQUARE]
    assert {"function", "entries", "bytes", "oldest", "newest"} <= set(row)
    assert row["entries"] == 3 and row["bytes"] > 0
    assert parse_utc(row["oldest"]) <= parse_utc(row["newest"])


@pytest.mark.file_only("plants entries with a chosen creation time")
def test_ls_shows_an_entry_created_ahead_of_the_clock_as_ahead_and_stale(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Written by a clock two hours ahead: not "0s ago" and fresh, but its lead, and stale
    (the decorator would not serve it: its age is unknown)."""
    now = time.time()
    plant(cache_dir, "m.f", 1, created=now + 7200, expires=now + 7260)
    code, out, err = cli(capsys, "--dir", str(cache_dir), "ls")
    assert code == 0, err
    assert out.splitlines()[1].split()[4:8] == ["1h", "ahead", "1h", "ahead"]
    code, out, err = cli(capsys, "--dir", str(cache_dir), "ls", "m.f")
    assert code == 0, err
    row = out.splitlines()[1].split()
    assert row[3:5] == ["1h", "ahead"] and "stale" in row


def test_ls_function_lists_entries(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    fill(cache_dir)
    key = Cache(cache_dir).cached(square).cache_key(2)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "ls", SQUARE)
    assert code == 0
    assert key[:12] in out
    assert "3 entries" in out


def test_ls_function_notes_its_unreadable_entries(cache_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]):
    """Before, ``ls FUNCTION`` left them out without a word, where ``ls`` noted them."""
    fill(cache_dir)
    (entry,) = itertools.islice(Cache(cache_dir).store.scan(SQUARE), 1)
    torn = Path(entry.location)
    torn.write_bytes(torn.read_bytes()[:40])  # begins as an entry: unreadable
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "ls", SQUARE)
    assert code == 0
    assert "2 entries" in out
    assert f"1 unreadable entry in its folder ('memojar --dir {cache_dir} prune' removes" in out


def test_ls_function_json_shape(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    expires = time.time() + 3600
    plant(cache_dir, "mod.f", 2, expires=expires)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "ls", "mod.f", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 2
    row = rows[0]
    assert {"key", "size", "created", "expires", "compute_time"} <= set(row)
    assert len(row["key"]) == 32 and row["size"] > 0 and row["compute_time"] == 0.25
    assert abs(parse_utc(row["expires"]).timestamp() - expires) < 1e-3
    parse_utc(row["created"])


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), -1.0])
def test_ls_function_shows_a_compute_time_that_is_no_time_as_unknown(
    cache_dir: Path, capsys: pytest.CaptureFixture[str], seconds: float
):
    """A header's compute time the header's checks let through (written by hand, damaged)
    but no time: before, 'unexpected error: OverflowError' for the text listing, and
    Infinity or NaN in --json, which a strict JSON reader refuses."""
    plant(cache_dir, "mod.f", 1, compute_time=seconds)
    plant(cache_dir, "mod.f", 1, start=1)
    code, out, err = cli(capsys, "--dir", str(cache_dir), "ls", "mod.f")
    assert (code, err) == (0, "")
    assert sorted(line.split()[5] for line in out.splitlines()[1:3]) == ["-", "250"]
    code, out, err = cli(capsys, "--dir", str(cache_dir), "ls", "mod.f", "--json")
    assert (code, err) == (0, "")

    def strict(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    rows = json.loads(out, parse_constant=strict)
    assert sorted((r["compute_time"] for r in rows), key=str) == [0.25, None]


def test_ls_keeps_its_columns_in_line_past_a_name_of_wide_characters(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    """A function named in Japanese (a valid Python identifier) takes two columns of a
    terminal a character: before, the table padded it by ``len``, and every column after
    its name stood four columns left of the others' (``clear --dry-run`` too)."""
    import unicodedata

    def on_screen(text: str) -> int:  # the columns a terminal gives text
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

    plant(cache_dir, "mod.load", 1)
    plant(cache_dir, "mod.読み込み", 2)
    for argv in (["ls"], ["clear", "--dry-run"]):
        code, out, _ = cli(capsys, "--dir", str(cache_dir), *argv)
        assert code == 0
        head, *rows = out.splitlines()[:3]
        ends = {on_screen(head[:head.index("ENTRIES") + len("ENTRIES")])}
        ends |= {on_screen(re.match(r"\S+\s+\d+", row)[0]) for row in rows}  # type: ignore[index]
        assert len(ends) == 1, out
    assert _report.text_width("mod.読み込み") == on_screen("mod.読み込み") == 12


def test_ls_json_of_an_empty_cache_is_an_empty_list(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)
    Cache(cache_dir).clear()
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "ls", "--json")
    assert (code, json.loads(out)) == (0, [])


def test_ls_unknown_function_suggests_close_names(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)
    code, out, err = cli(capsys, "--dir", str(cache_dir), "ls", "test_cli.sqare")
    assert code == 1 and out == ""
    line = one_line(err)
    assert "test_cli.sqare" in line and repr(SQUARE) in line


def test_a_bare_qualname_suggests_the_full_name(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)
    code, _, err = cli(capsys, "--dir", str(cache_dir), "ls", "cube")
    assert code == 1
    assert repr(CUBE) in one_line(err)


@pytest.mark.parametrize("typed", ["test_cli.Model", "test_cli.make"])
def test_the_name_of_a_class_or_factory_suggests_the_functions_inside(
    typed: str, cache_dir: Path, capsys: pytest.CaptureFixture[str],
):
    # Before: no suggestion for the name of what holds the function (the class of a
    # method, the factory of a closure, as `memojar ls` lists them inside it).
    for function in ("test_cli.Model.predict", "test_cli.make.<locals>.add"):
        plant(cache_dir, function, 1)
    code, _, err = cli(capsys, "--dir", str(cache_dir), "ls", typed)
    assert code == 1
    inside = {"test_cli.Model": "test_cli.Model.predict",
              "test_cli.make": "test_cli.make.<locals>.add"}[typed]
    assert f"did you mean {inside!r}?" in one_line(err)


def test_dir_may_follow_the_command(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    fill(cache_dir)
    code, out, _ = cli(capsys, "ls", "--json", "--dir", str(cache_dir))
    assert code == 0 and len(json.loads(out)) == 2


def test_default_directory_is_memojar_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("MEMOJAR_DIR", str(tmp_path / "env-cache"))
    fill(tmp_path / "env-cache")
    code, out, _ = cli(capsys, "info", "--json")
    assert code == 0
    assert json.loads(out)["directory"] == str(tmp_path / "env-cache")


# --- info -------------------------------------------------------------------------------

def test_info_json_counts_stale_and_incompatible(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)  # 5 fresh entries
    plant(cache_dir, "mod.expired", 2, expires=time.time() - 10)
    plant(cache_dir, "mod.old_python", 3, python="2.7")
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "info", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["directory"] == str(cache_dir)
    assert info["entries"] == 10 and info["functions"] == 4
    assert info["bytes"] == sum(e.size for e in Cache(cache_dir).entries())
    assert (info["stale"], info["incompatible"], info["unreadable"]) == (2, 0, 0)
    assert info["other_python"] == 3  # kept for that Python, not incompatible


def test_info_counts_an_older_code_as_incompatible(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    now = time.time()
    plant(cache_dir, "mod.f", 2, created=now - 60)
    store = FileStore(cache_dir)  # a newer entry of other code for the same function
    ident = "\0".join(("mod.f", "", "fedcba9876543210", _entry.PYTHON, str(_entry.PROTOCOL),
                       ""))
    key = make_key(("new",))
    store.write("mod.f", key, _entry.encode(1, ident=ident.encode(), key=key, created=now,
                                           expires=None, compute_time=0.0))
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "info", "--json")
    assert code == 0 and json.loads(out)["incompatible"] == 2


def test_info_counts_unreadable_files(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    fill(cache_dir)
    first, second = (Path(e.location) for e in itertools.islice(Cache(cache_dir).store.scan(), 2))
    first.write_bytes(first.read_bytes()[:40])  # begins as an entry: unreadable
    second.write_bytes(b"garbage")  # does not: another tool's file, no entry (as on S3)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "info", "--json")
    assert code == 0
    info = json.loads(out)
    assert (info["entries"], info["unreadable"]) == (4, 1)


def test_info_text(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    fill(cache_dir)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "info")
    assert code == 0
    fields = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert fields["location"] == str(cache_dir)
    assert fields["entries"] == "5" and fields["functions"] == "2"
    assert fields["stale"] == "0" and fields["incompatible"] == "0"


# --- clear ------------------------------------------------------------------------------

def test_clear_function_removes_only_its_entries(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "clear", SQUARE)
    assert code == 0 and "removed 3 entries" in out
    assert (count(cache_dir, SQUARE), count(cache_dir, CUBE)) == (0, 2)


def test_clear_several_functions(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    fill(cache_dir)
    plant(cache_dir, "mod.keep", 1)
    code, _, _ = cli(capsys, "--dir", str(cache_dir), "clear", SQUARE, CUBE)
    assert code == 0
    assert count(cache_dir) == 1


def test_clear_unknown_function_removes_nothing(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)
    code, _, err = cli(capsys, "--dir", str(cache_dir), "clear", SQUARE, "test_cli.cub")
    assert code == 1
    assert repr(CUBE) in one_line(err)
    assert count(cache_dir) == 5


def test_clear_all_with_yes(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    fill(cache_dir)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "clear", "--yes")
    assert code == 0 and "removed 5 entries" in out
    assert count(cache_dir) == 0
    assert (cache_dir / "CACHEDIR.TAG").exists()


def test_clear_all_without_a_terminal_refuses(cache_dir: Path):
    fill(cache_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "memojar", "--dir", str(cache_dir), "clear"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--yes" in one_line(proc.stderr)
    assert count(cache_dir) == 5


@pytest.mark.parametrize(("argv", "says"), [
    ([], "refusing to clear every entry in"),
    (["--older-than", "30d"], "refusing to clear every function's entries older than 30d in"),
])
def test_clear_all_refused_says_what_it_would_have_cleared(
    argv: list[str], says: str, cache_dir: Path, capsys: pytest.CaptureFixture[str],
):
    # Before, `clear --older-than 30d` was refused as clearing "every entry".
    fill(cache_dir)
    code, out, err = cli(capsys, "--dir", str(cache_dir), "clear", *argv)
    assert (code, out) == (2, "")
    assert says in one_line(err)
    assert count(cache_dir) == 5



def test_clear_all_refused_keeps_a_urls_password_out(capsys: pytest.CaptureFixture[str]):
    # Before: "refusing to clear every entry in redis://:hunter2@db:6379/0 ...", the
    # password on stderr (a terminal, a CI log). Refused before any connection is made.
    code, out, err = cli(capsys, "--dir", "redis://:hunter2@db.invalid:6379/0", "clear")
    assert (code, out) == (2, "")
    line = one_line(err)
    assert "hunter2" not in line and "redis://:***@db.invalid:6379/0" in line


@pytest.mark.parametrize("given", ["c1", "./c1", "sub/../c1"])
def test_clear_all_refused_names_a_relative_dir_by_its_absolute_path(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    # Before: "refusing to clear every entry in c1", the folder as typed, where every other
    # message (ls, info, prune, a clear's report) names it by its absolute path.
    monkeypatch.chdir(tmp_path)
    fill(tmp_path / "c1")
    code, out, err = cli(capsys, "--dir", given, "clear")
    assert (code, out) == (2, "")
    assert f"refusing to clear every entry in {tmp_path / 'c1'} without" in one_line(err)
    assert count(tmp_path / "c1") == 5


def test_clear_dry_run_removes_nothing(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    fill(cache_dir)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "clear", "--dry-run")
    assert code == 0
    assert "would remove 5 entries" in out and SQUARE in out
    assert count(cache_dir) == 5


def test_clear_older_than(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    now = time.time()
    plant(cache_dir, "mod.f", 2, created=now - 3 * 86400)
    plant(cache_dir, "mod.f", 3, created=now - 60, start=10)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "clear", "mod.f", "--older-than", "2d")
    assert code == 0 and "removed 2 entries" in out
    assert count(cache_dir) == 3


def test_clear_older_than_with_dry_run(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    plant(cache_dir, "mod.f", 2, created=time.time() - 7200)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "clear", "--older-than", "90m",
                       "--dry-run")
    assert code == 0 and "would remove 2 entries" in out
    assert count(cache_dir) == 2


def test_clear_older_than_nothing_old(cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    fill(cache_dir)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "clear", "--older-than", "1w", "-y")
    assert code == 0 and "nothing to clear" in out
    assert count(cache_dir) == 5


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800), ("1.5h", 5400),
     ("2H", 7200), ("7D", 604800)],
)
def test_parse_duration(text: str, seconds: float):
    assert _cli.parse_duration(text) == seconds


@pytest.mark.parametrize("typed", ["1.5h", "1000d", "90m", "2h"])
def test_nothing_older_echoes_the_duration_as_typed(cache_dir: Path, typed: str):
    plant(cache_dir, "mod.f", 1, created=time.time() - 60)
    proc = memojar_command("--dir", str(cache_dir), "clear", "--older-than", typed, "--yes")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"nothing to clear older than {typed}"


def test_a_fractional_duration_cuts_off_where_typed(cache_dir: Path):
    now = time.time()
    plant(cache_dir, "mod.f", 2, created=now - 1.6 * 3600)  # older than 1.5h
    plant(cache_dir, "mod.f", 3, created=now - 1.4 * 3600, start=10)  # younger than 1.5h
    proc = memojar_command("--dir", str(cache_dir), "clear", "--older-than", "1.5h",
                           "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would remove 2 entries older than 1.5h (" in proc.stdout
    proc = memojar_command("--dir", str(cache_dir), "clear", "--older-than", "1.5h", "-y")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("removed 2 entries older than 1.5h (")
    assert count(cache_dir) == 3


@pytest.mark.parametrize("argv", [["clear", SQUARE, "--yes"], ["clear", "--yes"],
                                  ["clear", "--older-than", "0s", "--yes"]], ids=" ".join)
def test_a_command_that_removed_entries_leaves_no_writer_file_at_its_exit(
        cache_dir: Path, argv: list[str]):
    """``memojar clear`` registers as a writer of the cache (``.writers``) and merges its
    removals at its exit: its file goes then, and the counts kept stay exact (no listing
    needed). Before, its removals were dropped with its ``Cache`` unmerged, so its file was
    left for good: one more for every run (50 after 50), and the next count read found
    them dead and listed every folder again."""
    for _ in range(3):
        fill(cache_dir)
        assert Cache(cache_dir).cached(square).cache_info().entries == 3  # a count kept
        proc = memojar_command("--dir", str(cache_dir), *argv)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("removed "), proc.stdout
    others = [name for name in os.listdir(cache_dir / ".writers")
              if name.split("-")[1] != str(os.getpid())]
    assert others == []
    kept = FileStore(cache_dir).read_stats()["counts"]
    assert kept[_filestore.function_dir(SQUARE, case_safe=True)] == [0, 0]  # exact, kept
    assert Cache(cache_dir).cached(square).cache_info().entries == 0


@pytest.mark.parametrize("bad", ["7", "d", "3x", "-1d", "1 d 2h", "", "6M", "1.5 M", "\u0663d"])
def test_bad_duration_is_a_usage_error(
    bad: str, cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)
    code, _, err = cli(capsys, "--dir", str(cache_dir), "clear", "--older-than", bad, "-y")
    assert code == 2
    assert "--older-than" in one_line(err)
    assert count(cache_dir) == 5


@pytest.mark.parametrize("argv", [["--older-than", "-5d"], ["--older-than=-5d"],
                                  ["--older-than", "-1.5h"], ["-y", "--older-than", "-.5w"]],
                         ids=" ".join)
def test_a_negative_duration_says_so(
    argv: list[str], cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    # Before: "argument --older-than: expected one argument" (argparse took -5d for an
    # option), which says neither what is wrong nor how to write it.
    fill(cache_dir)
    code, _, err = cli(capsys, "--dir", str(cache_dir), "clear", *argv, "-y")
    assert code == 2
    assert "cannot be negative (--older-than " in one_line(err)
    assert "expected one argument" not in err
    assert count(cache_dir) == 5


def test_older_than_without_a_duration_says_what_it_takes(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    code, _, err = cli(capsys, "--dir", str(cache_dir), "clear", "--older-than")
    assert code == 2
    assert "a DURATION: a number and a unit s, m, h, d or w" in one_line(err)


# --- prune ------------------------------------------------------------------------------

def test_prune_removes_stale_incompatible_and_unreadable(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)
    plant(cache_dir, "mod.expired", 2, expires=time.time() - 10)
    plant(cache_dir, "mod.old_python", 1, python="2.7")
    (cache_dir / "mod.junk" / "ab").mkdir(parents=True)
    whole = next((cache_dir / "mod.old_python").glob("*/*.pkl")).read_bytes()
    torn = cache_dir / "mod.junk" / "ab" / ("ab" * 16 + ".pkl")
    torn.write_bytes(whole[:40])  # begins as an entry: unreadable, memojar's to remove
    theirs = cache_dir / "mod.junk" / "ab" / ("ab" * 15 + "cd.pkl")
    theirs.write_bytes(b"not an entry")  # another tool's: left (as on S3)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "prune")
    assert code == 0 and "removed 3 entries" in out  # Python 2.7's entry is 2.7's to keep
    assert not torn.exists() and theirs.read_bytes() == b"not an entry"
    assert {e.function for e in Cache(cache_dir).entries()} == {SQUARE, CUBE, "mod.old_python"}
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "prune", "--other-pythons")
    assert code == 0 and "removed 1 entry;" in out
    assert {e.function for e in Cache(cache_dir).entries()} == {SQUARE, CUBE}
    assert count(cache_dir) == 5


def test_an_option_typed_short_of_its_name_is_refused_and_its_name_suggested(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    """Before, argparse took ``--other-python`` (a typo) for ``--other-pythons``, and the
    prune removed the other Pythons' entries."""
    fill(cache_dir)
    plant(cache_dir, "mod.old_python", 1, python="2.7")
    code, _, err = cli(capsys, "--dir", str(cache_dir), "prune", "--other-python")
    assert code == 2
    assert "unrecognized arguments: --other-python; did you mean --other-pythons?" in one_line(
        err)
    assert "mod.old_python" in {e.function for e in Cache(cache_dir).entries()}


@pytest.mark.parametrize(("argv", "named"), [
    (["--dri", "x", "ls"], "--dri; did you mean --dir?"),
    (["--dri", "x"], "--dri; did you mean --dir?"),
    (["--jsn", "x", "info"], "--jsn; did you mean --json?"),
    (["--dir", "x", "--dri", "y", "ls"], "--dri; did you mean --dir?"),
    (["-z", "x", "ls"], "-z ("),
])
def test_an_unknown_option_before_the_command_is_named(
    capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    """Before, argparse took the option's value for the command: ``memojar --dri x ls``
    said "invalid choice: 'x'", and not a word of ``--dri``."""
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert f"memojar: unrecognized arguments: {named}" in one_line(err)
    assert "invalid choice" not in err


@pytest.mark.parametrize(("argv", "named"), [
    (["--json", "ls"], "--json; --json is an option of ls and info: after the command, as "
                       "'memojar ls --json'"),
    (["--older-than", "1d", "clear"], "--older-than; --older-than is an option of clear: "
                                      "after the command, as 'memojar clear --older-than "
                                      "DURATION'"),
])
def test_a_commands_option_before_it_is_said_to_go_after_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    """Before, ``memojar --json ls`` said "unrecognized arguments: --json; did you mean
    --json?", the very word typed."""
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert f"memojar: unrecognized arguments: {named}" in one_line(err)
    assert "did you mean" not in err


@pytest.mark.parametrize("argv", [["clear", "--json"], ["--json", "prune"],
                                  ["--dir", "ls", "clear", "--json"]])
def test_an_option_of_other_commands_is_said_to_be_none_of_this_ones(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Before, ``memojar clear --json`` said to put ``--json`` after the command, where it
    was."""
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    command = next(w for w in argv[::-1] if w in ("clear", "prune"))
    assert f"--json is an option of ls and info, not of {command} " in one_line(err)
    assert "after the command" not in err


def test_a_mistyped_command_after_known_options_is_still_named(
    capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "--dir", "x", "lss")
    assert code == 2 and "invalid choice: 'lss'" in err


def test_prune_of_a_clean_cache_removes_nothing(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "prune")
    assert code == 0 and "removed 0 entries" in out
    assert count(cache_dir) == 5


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True, timeout=60)
    return int(child.stdout)


def _orphaned_tag(root: Path) -> Path:
    """The temporary tag of a process killed between writing it and linking it."""
    orphan = root / f"CACHEDIR.TAG.{_dead_pid()}-{_filestore._HOST}.0badf00d.tmp"
    orphan.write_text(_filestore._TAG_TEXT)
    return orphan


def test_prune_counts_a_dead_writers_temporary_tag_as_no_entry(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)
    orphan = _orphaned_tag(cache_dir)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "prune")
    assert code == 0
    assert out.startswith("removed 0 entries and 1 temporary file left by an interrupted "
                          "write; 5 entries"), out
    assert not orphan.exists() and count(cache_dir) == 5


def test_cache_prune_counts_only_entries(cache_dir: Path):
    fill(cache_dir)
    orphan = _orphaned_tag(cache_dir)
    assert Cache(cache_dir).prune() == 0
    assert not orphan.exists()


# --- directories that are not memojar caches ----------------------------------------------

def foreign_dir(tmp_path: Path, tag: str | None = None) -> Path:
    """A directory laid out like a cache, with files memojar did not write."""
    root = tmp_path / "foreign"
    shard = root / "project" / "ab"
    shard.mkdir(parents=True)
    (shard / "abcd.pkl").write_text("someone's file")
    (shard / "x.1.ab.tmp").write_text("someone's temporary file")
    if tag is not None:
        (root / "CACHEDIR.TAG").write_text(tag)
    return root


@pytest.mark.parametrize("tag", [None, "Signature: 8a477f597d28d172789f06886806bc55\n"],
                         ids=["no-tag", "another-tools-tag"])
@pytest.mark.parametrize("argv", [["clear", "--yes"], ["prune"], ["clear", "project"]],
                         ids=["clear-all", "prune", "clear-function"])
def test_refuses_to_delete_in_a_foreign_directory(
    tmp_path: Path, tag: str | None, argv: list[str], capsys: pytest.CaptureFixture[str]
):
    root = foreign_dir(tmp_path, tag)
    before = sorted(p.name for p in root.rglob("*"))
    code, _, err = cli(capsys, "--dir", str(root), *argv)
    assert code == 1
    assert "not a memojar cache" in one_line(err)
    assert sorted(p.name for p in root.rglob("*")) == before


def test_ls_of_a_foreign_directory_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code, _, err = cli(capsys, "--dir", str(foreign_dir(tmp_path)), "ls")
    assert code == 1 and "not a memojar cache" in one_line(err)


# A cache that does not exist yet (a fresh machine, a new --dir) is an empty cache: a cron
# job's clear must not fail on it, and nothing is created by looking.
@pytest.mark.parametrize(
    ("argv", "says"),
    [(["ls"], "no cache at"), (["info"], "entries       0"),
     (["prune"], "nothing to prune"), (["clear", "--older-than", "30d", "--yes"],
                                       "nothing to clear older than 30d"),
     (["clear", "--yes"], "nothing to clear"), (["clear", "--dry-run"], "nothing to clear"),
     (["clear", SQUARE, "--yes"], f"nothing to clear of '{SQUARE}': no cache at"),
     (["clear", SQUARE], f"nothing to clear of '{SQUARE}': no cache at")],
    ids=["ls", "info", "prune", "clear-older-than", "clear-yes", "clear-dry-run",
         "clear-function-yes", "clear-function"],
)
def test_a_cache_not_made_yet_is_empty(tmp_path: Path, argv: list[str], says: str):
    missing = tmp_path / "nowhere"
    proc = memojar_command("--dir", str(missing), *argv)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert says in proc.stdout
    assert not missing.exists()


@pytest.mark.parametrize("argv", [["ls", "--json"], ["info", "--json"]], ids=["ls", "info"])
def test_a_cache_not_made_yet_in_json(tmp_path: Path, argv: list[str]):
    proc = memojar_command("--dir", str(tmp_path / "nowhere"), *argv)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    if argv[0] == "ls":
        assert data == []
    else:
        assert (data["entries"], data["bytes"], data["functions"]) == (0, 0, 0)
        assert data["directory"] == str(tmp_path / "nowhere")


def test_ls_of_a_function_in_a_cache_not_made_yet_is_not_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """``ls FUNCTION`` is a lookup: a typo must not pass silently (``clear FUNCTION`` there
    is an empty clear, above: a cron job's clear must not fail on a fresh machine)."""
    code, _, err = cli(capsys, "--dir", str(tmp_path / "nowhere"), "ls", SQUARE)
    assert code == 1
    assert f"no entries for function '{SQUARE}'" in one_line(err)


def test_dir_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "file").write_text("x")
    code, _, err = cli(capsys, "--dir", str(tmp_path / "file"), "ls")
    assert code == 1 and "is a file" in one_line(err)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_an_error_naming_a_path_with_a_line_break_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str,
):
    # Before: "memojar: /tmp/.../bad" and "dir is a file, ..." on two lines.
    path = tmp_path / "bad\ndir"
    if what == "file":
        path.write_text("x")
    else:
        path.mkdir()
        (path / "mine.txt").write_text("x")  # a folder of the user's: not a cache
    code, _, err = cli(capsys, "--dir", str(path), "ls")
    assert code == 1
    assert err.count("\n") == 1, err
    assert f"$'{tmp_path}/bad\\012dir'" in err  # as a shell reads it back (``_cli.shown``)


def test_another_users_cache_directory(shared_folder: Path):
    """A cache another user made (0700): reading it is denied, in one line. (Root reads
    any directory: the command runs as another user.)"""
    fill(shared_folder / "c")

    def ls() -> str:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = _cli.main(["--dir", str(shared_folder / "c"), "ls"])
        return f"{code} {err.getvalue()}"

    code, err = as_another_user(ls).split(" ", 1)
    assert code == "1" and "permission denied" in one_line(err)


def test_permission_error_while_listing_is_one_line(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)

    def denied(path: str) -> list[str]:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr("memojar._filestore._listdir", denied)
    code, _, err = cli(capsys, "--dir", str(cache_dir), "info")
    assert code == 1
    assert one_line(err) == f"memojar: permission denied: {cache_dir}"


def test_redis_url_that_cannot_be_reached_is_one_line(capsys: pytest.CaptureFixture[str]):
    code, _, err = cli(capsys, "--dir", "redis://127.0.0.1:1/0", "info")
    assert code == 1
    one_line(err)


def test_unexpected_error_is_one_line(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    fill(cache_dir)

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(_cli, "cmd_info", broken)
    code, _, err = cli(capsys, "--dir", str(cache_dir), "info")
    assert code == 1 and "RuntimeError: boom" in one_line(err)


# --- usage --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "argv",
    [[], ["bogus"], ["ls", "a", "b"], ["info", "--frobnicate"], ["prune", "--json"]],
    ids=["no-command", "unknown-command", "two-functions", "unknown-option", "json-on-prune"],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]):
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert one_line(err).startswith("memojar: ")


@pytest.mark.parametrize(("location", "client", "said"), [
    ("redis://127.0.0.1:1/0?bogus=1", "redis", "unknown option 'bogus' in its query string"),
    ("redis://127.0.0.1:1/0?ssl_certfile=c", "redis", "option 'ssl_certfile' is for a TLS"),
    ("s3://bucket/p?colour=red", "boto3", "unknown option(s) colour (known: endpoint_url"),
], ids=["redis", "redis-tls-only", "s3"])
def test_an_unknown_option_in_a_dir_url_is_a_usage_error_naming_it(
    location: str, client: str, said: str, capsys: pytest.CaptureFixture[str],
):
    # Before: status 1, as for a cache that cannot be read, where every other mistake in
    # the command line is 2.
    pytest.importorskip(client)
    code, out, err = cli(capsys, "--dir", location, "ls")
    assert code == 2 and out == ""
    assert one_line(err).startswith(f"memojar: cannot open the cache at {location}: ")
    assert said in err


@pytest.mark.parametrize("argv", [["--dir", "", "clear", "--yes"], ["clear", "--dir", " ", "--yes"],
                                  ["--dir", "", "info"]], ids=["before", "after", "info"])
def test_empty_dir_is_a_usage_error_not_the_default_cache(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    # --dir '' (an unset $CACHE in `memojar --dir "$CACHE" clear --yes`) was the default
    # cache, and cleared it.
    default = tmp_path / "default"
    fill(default)
    monkeypatch.setenv("MEMOJAR_DIR", str(default))
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert one_line(err).startswith("memojar: --dir is empty")
    assert len(list(Cache(default).entries())) == 5


def test_a_store_that_keeps_no_statistics_shows_them_unknown_not_zero(
    s3_location: str, capsys: pytest.CaptureFixture[str],
):
    # Before, after a hit on an S3 cache, `ls` said HITS 0, SAVED 0 ms and `info` "hits 0
    # (misses 0, all processes)": S3 keeps no statistics, so none is known.
    cache = Cache(s3_location)
    cached_square = cache.cached(square)
    cached_square(3), cached_square(3)
    cache.flush_stats()
    code, out, err = cli(capsys, "--dir", s3_location, "ls")
    assert code == 0, err
    row = out.splitlines()[1].split()
    assert row[0] == SQUARE and row[-2:] == ["-", "-"]
    assert "hits and time saved are not known: this store keeps no statistics" in out
    code, out, err = cli(capsys, "--dir", s3_location, "info")
    assert code == 0, err
    fields = dict(line.split(None, 1) for line in out.splitlines()[:12])
    assert (fields["hits"], fields["time"]) == ("-", "saved    -")
    for argv in (["ls"], ["info"]):
        code, out, err = cli(capsys, "--dir", s3_location, *argv, "--json")
        assert code == 0, err
        data = json.loads(out)
        row = data[0] if argv == ["ls"] else data
        assert (row["hits"], row["misses"], row["saved"]) == (None, None, None)


def test_a_store_that_keeps_statistics_shows_its_hits(
    cache_dir: Path, capsys: pytest.CaptureFixture[str],
):
    cache = Cache(cache_dir)
    cached_square = cache.cached(square)
    cached_square(3), cached_square(3)
    cache.flush_stats()
    code, out, err = cli(capsys, "--dir", str(cache_dir), "ls", "--json")
    assert code == 0, err
    assert (json.loads(out)[0]["hits"], json.loads(out)[0]["misses"]) == (1, 1)
    assert "not known" not in cli(capsys, "--dir", str(cache_dir), "info")[1]


# --- hints: the command they suggest reaches the cache the user looked at ------------------

def suggested(text: str) -> list[list[str]]:
    """The commands a report's hints suggest: the words between quotes that start with
    memojar (``'memojar --dir /x prune --other-pythons' removes them``; in double quotes
    when the command quotes its ``--dir``)."""
    import shlex

    found = re.findall(r"'(%?memojar [^']*)'|\"(%?memojar [^\"]*)\"", text)
    return [shlex.split(single or double) for single, double in found]


def test_a_hint_after_dir_names_that_dir_and_running_it_acts_on_that_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
):
    # Before, `memojar --dir DIR info` said "'memojar prune --other-pythons' removes them":
    # copied, that pruned the default cache ($MEMOJAR_DIR), not DIR.
    default, chosen = tmp_path / "default", tmp_path / "chosen"
    monkeypatch.setenv("MEMOJAR_DIR", str(default))
    for where in (default, chosen):
        plant(where, "mod.old_python", 2, python="2.7")
    code, out, err = cli(capsys, "--dir", str(chosen), "info")
    assert code == 0, err
    (hint,) = suggested(out)
    assert hint == ["memojar", "--dir", str(chosen), "prune", "--other-pythons"]
    code, _, err = cli(capsys, *hint[1:])
    assert code == 0, err
    assert (count(chosen), count(default)) == (0, 2)


def test_a_hint_without_dir_is_the_plain_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
):
    plant(tmp_path / "default-cache", "mod.old_python", 1, python="2.7")  # $MEMOJAR_DIR
    code, out, err = cli(capsys, "info")
    assert code == 0, err
    assert suggested(out) == [["memojar", "prune", "--other-pythons"]]


@pytest.mark.parametrize("argv", [["ls", "mod.g"], ["clear", "mod.g"]])
def test_an_unknown_functions_hint_lists_the_cache_it_looked_in(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
):
    plant(tmp_path / "chosen", "mod.f", 1)
    code, _, err = cli(capsys, "--dir", str(tmp_path / "chosen"), *argv)
    assert code == 1
    assert suggested(one_line(err)) == [["memojar", "--dir", str(tmp_path / "chosen"), "ls"]]


def test_a_redis_servers_password_missing_or_wrong_is_named_and_the_hint_keeps_it_out(
    capsys: pytest.CaptureFixture[str],
):
    # Before: "cannot reach the server (HELLO must be called with the client already
    # authenticated, ...)" for a server that answered, and wanted a password.
    pytest.importorskip("redis")
    from redis_server import RedisServer, redis_server_path

    if redis_server_path() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer.start("--requirepass", "s3cret")
    try:
        with_password = f"redis://:s3cret@127.0.0.1:{server.port}/0"
        for url in (server.url(), f"redis://:wrong@127.0.0.1:{server.port}/0"):
            code, out, err = cli(capsys, "--dir", url, "ls")
            assert (code, out) == (1, "")
            line = one_line(err)
            assert "cannot reach" not in line and "no password or a wrong one" in line
            assert "redis://:PASSWORD@HOST" in line
        Cache(with_password, secret="x").cached(square)(2)
        code, _, err = cli(capsys, "--dir", with_password, "ls", "test_cli.sqare")
        assert code == 1
        line = one_line(err)
        assert "s3cret" not in line
        assert suggested(line) == [
            ["memojar", "--dir", f"redis://:***@127.0.0.1:{server.port}/0", "ls"]]
    finally:
        server.stop()


def test_the_magics_hints_are_magics(tmp_path: Path):
    # In a notebook, "'memojar ls' lists the functions" named the shell's command.
    plant(tmp_path / "default-cache", "mod.f", 1)
    plant(tmp_path / "default-cache", "mod.old_python", 1, python="2.7")
    report = _cli.execute(["info"], prog="%memojar")
    assert suggested(report.text()) == [["%memojar", "prune", "--other-pythons"]]
    with pytest.raises(_cli.CliError) as raised:
        _cli.execute(["ls", "mod.g"], prog="%memojar")
    assert suggested(str(raised.value)) == [["%memojar", "ls"]]


def test_version(capsys: pytest.CaptureFixture[str]):
    import memojar

    code, out, _ = cli(capsys, "--version")
    assert (code, out.strip()) == (0, f"memojar {memojar.__version__}")


def test_help_has_examples(capsys: pytest.CaptureFixture[str]):
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    assert "examples:" in out and "memojar clear --older-than 7d --yes" in out


@pytest.mark.parametrize("command", ["ls", "info", "clear", "prune"])
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]):
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0 and f"memojar {command}" in out and "--dir" in out


# --- the two entry points -------------------------------------------------------------------

def test_python_dash_m(cache_dir: Path):
    fill(cache_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "memojar", "--dir", str(cache_dir), "info", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["entries"] == 5


# The script pip installs beside the interpreter (a venv's bin/, not necessarily on PATH).
SCRIPT = Path(sys.executable).with_name("memojar")


@pytest.mark.skipif(not SCRIPT.exists(), reason=f"console script not installed: {SCRIPT}")
def test_console_script(cache_dir: Path):
    fill(cache_dir)
    proc = subprocess.run(
        [str(SCRIPT), "--dir", str(cache_dir), "ls", SQUARE, "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 3


def test_console_script_error_has_no_traceback(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "memojar", "--dir", str(tmp_path / "file"), "ls"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    one_line(proc.stderr)


# --- on a terminal ------------------------------------------------------------------------

def on_terminal(argv: list[str], answer: str = "n\n", timeout: float = 30,
                python: tuple[str, ...] = ("-m", "memojar")) -> tuple[int, str]:
    """Run the command line with a pseudo-terminal as stdin/stdout/stderr; answer its
    question with the keys ``answer``; return the exit status and everything it printed."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, *python, *argv],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    output = b""
    answered = False
    deadline = time.monotonic() + timeout
    poller = select.poll()  # not ``select``: it fails on a descriptor past 1023
    poller.register(master, select.POLLIN)
    try:
        while time.monotonic() < deadline:
            ready = poller.poll(200)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if not answered and b"[y/N]" in output:
                os.write(master, answer.encode())
                answered = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(timeout=timeout), output.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_clear_all_asks_on_a_terminal_and_goes_on_with_yes(cache_dir: Path):
    fill(cache_dir)
    code, output = on_terminal(["--dir", str(cache_dir), "clear"], "y\n")
    assert code == 0, output
    assert "remove 5 entries" in output and "removed 5 entries" in output
    assert count(cache_dir) == 0


def test_clear_all_asks_on_a_terminal_and_stops_without_yes(cache_dir: Path):
    fill(cache_dir)
    code, output = on_terminal(["--dir", str(cache_dir), "clear"], "n\n")
    assert code == 1, output
    assert "nothing removed" in output
    assert count(cache_dir) == 5


def test_ctrl_d_at_the_question_ends_its_line(cache_dir: Path):
    fill(cache_dir)
    code, output = on_terminal(["--dir", str(cache_dir), "clear"], "\x04")  # Ctrl-D: EOF
    assert code == 1, output
    assert re.search(r"\[y/N\] (\^D)?\r?\nmemojar: not confirmed: nothing removed", output), output
    assert count(cache_dir) == 5


# The command line with progress lines drawn at once (the real delay is a second).
QUICK_PROGRESS = ("-c", "import sys; from memojar import _cli; _cli._PROGRESS_DELAY = 0.0; "
                  "_cli._PROGRESS_EVERY = 0.0; sys.exit(_cli.main(sys.argv[1:]))")


@pytest.mark.parametrize("argv", [["ls"], ["info"], ["ls", "mod.f"]],
                         ids=["ls", "info", "ls-function"])
def test_long_ls_and_info_show_progress_on_a_terminal(cache_dir: Path, argv: list[str]):
    plant(cache_dir, "mod.f", 40)
    code, output = on_terminal(["--dir", str(cache_dir), *argv], python=QUICK_PROGRESS)
    assert code == 0, output
    assert "memojar: reading entries 40" in output
    wiped = output.rindex("\r\033[K")  # the counter's line is wiped before the report
    assert "40" in output[wiped:] and "reading" not in output[wiped:]


@pytest.mark.parametrize("argv", [["ls"], ["info"], ["ls", "mod.f"]],
                         ids=["ls", "info", "ls-function"])
def test_ls_and_info_show_no_progress_off_a_terminal(cache_dir: Path, argv: list[str]):
    plant(cache_dir, "mod.f", 40)
    proc = subprocess.run([sys.executable, *QUICK_PROGRESS, "--dir", str(cache_dir), *argv],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "\r" not in proc.stdout and "40" in proc.stdout


def test_quick_ls_shows_no_progress_on_a_terminal(cache_dir: Path):
    plant(cache_dir, "mod.f", 40)
    code, output = on_terminal(["--dir", str(cache_dir), "ls"])  # far less than a second
    assert code == 0, output
    assert "reading entries" not in output and "\033[K" not in output


def test_long_prune_shows_progress_on_a_real_terminal(cache_dir: Path):
    plant(cache_dir, "mod.f", 20, expires=time.time() - 1)
    code, output = on_terminal(["--dir", str(cache_dir), "prune"], python=QUICK_PROGRESS)
    assert code == 0, output
    assert "memojar: checking entries 20" in output and "memojar: removing 20/20" in output
    assert count(cache_dir) == 0


def test_prune_reports_progress_through_its_callback(cache_dir: Path):
    plant(cache_dir, "mod.f", 12, expires=time.time() - 1)
    plant(cache_dir, "mod.g", 3, start=100)
    cache = Cache(cache_dir)
    calls: list[tuple[str, int, int | None]] = []
    assert cache.prune(progress=lambda *call: calls.append(call)) == 12
    assert [c for c in calls if c[0] == "checking"] == [("checking", n, None)
                                                         for n in range(1, 16)]
    assert calls[-1] == ("removing", 12, 12)
    assert not {"scan", "remove"} & vars(cache.store).keys()  # no method swapped in


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_long_clear_shows_progress_on_a_terminal(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    plant(cache_dir, "mod.f", 30)
    monkeypatch.setattr(_cli, "_PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(_cli, "_PROGRESS_EVERY", 0.0)
    monkeypatch.setattr(_store, "REMOVE_BATCH", 10)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = _cli.main(["--dir", str(cache_dir), "clear", "mod.f"])
    assert code == 0
    assert "removing 30/30 (100%)" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\033[K")  # the line is wiped when done


def test_long_prune_shows_progress_on_a_terminal(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    plant(cache_dir, "mod.f", 20, expires=time.time() - 1)
    monkeypatch.setattr(_cli, "_PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(_cli, "_PROGRESS_EVERY", 0.0)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _cli.main(["--dir", str(cache_dir), "prune"]) == 0
    assert "checking entries 20" in terminal.getvalue()
    assert "removing 20/20" in terminal.getvalue()
    assert count(cache_dir) == 0


def test_no_progress_when_not_a_terminal(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    plant(cache_dir, "mod.f", 30)
    monkeypatch.setattr(_cli, "_PROGRESS_DELAY", 0.0)
    code, _, err = cli(capsys, "--dir", str(cache_dir), "clear", "mod.f")
    assert code == 0 and err == ""


def test_no_progress_on_a_dumb_terminal(cache_dir: Path, monkeypatch: pytest.MonkeyPatch):
    # TERM=dumb (Emacs' M-x shell, some CI logs) draws no escape sequences: before, each
    # update wrote "\r\033[K", shown there as "^[[K" garbage before the report.
    plant(cache_dir, "mod.f", 30)
    monkeypatch.setattr(_cli, "_PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(_cli, "_PROGRESS_EVERY", 0.0)
    monkeypatch.setattr(_store, "REMOVE_BATCH", 10)
    monkeypatch.setenv("TERM", "dumb")
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _cli.main(["--dir", str(cache_dir), "clear", "mod.f"]) == 0
    assert terminal.getvalue() == ""


# --- install lines, help and docstrings ---------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_a_missing_redis_client_names_an_install_line_that_works_from_a_clone(tmp_path: Path):
    without_redis = ("import sys; sys.modules['redis'] = None; from memojar import _cli; "
                     "sys.exit(_cli.main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", without_redis, "--dir", "redis://localhost/0",
                           "ls"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "pip install -e '.[redis]'" in one_line(proc.stderr)


def test_a_missing_extras_install_line_names_this_pythons_pip():
    # Before: a bare "pip install ...", which in a notebook kernel or beside another
    # activated venv installs where this Python never looks.
    import shlex

    without_boto3 = ("import sys; sys.modules['boto3'] = None; from memojar import _cli; "
                     "sys.exit(_cli.main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", without_boto3, "--dir", "s3://bucket/p",
                           "ls"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    pip = f"{shlex.quote(sys.executable)} -m pip"
    assert f"run {pip} install -e '.[s3]' in your memojar clone" in line
    assert f"(for a published release: {pip} install 'memojar[s3]')" in line


def test_every_index_install_line_says_it_is_for_a_published_release():
    # `pip install 'memojar[...]'` fails from a clone: each such line must say where it applies.
    files = [ROOT / "README.md", *sorted((ROOT / "src" / "memojar").glob("*.py"))]
    for path in files:
        for line in path.read_text().splitlines():
            if re.search(r"pip install '?memojar", line):
                assert "published release" in line, f"{path.name}: {line.strip()}"


@pytest.mark.parametrize(
    "method", ["cache_info", "cache_clear", "cache_contains", "cache_delete", "refresh",
               "cache_key"],
)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_cache_methods_have_docstrings(tmp_path: Path, method: str, kind: str):
    async def afunc(x: int) -> int:
        return x

    decorated = Cache(tmp_path).cached(square if kind == "sync" else afunc)
    doc = getattr(decorated, method).__doc__
    assert doc and len(doc.split()) >= 5, (method, doc)
    assert getattr(decorated, method).__name__ == method  # not '<lambda>' in help()


def test_the_prune_docstring_names_no_private_function():
    doc = Cache.prune.__doc__ or ""
    assert "judge" not in doc and not re.search(r"``_\w", doc), doc


@pytest.mark.parametrize(("version", "shown"), [("2024-06", "2024-06"), (2, 2), (None, None)],
                         ids=["str", "int", "none"])
def test_entry_info_shows_the_users_version(tmp_path: Path, version: object, shown: object):
    Cache(tmp_path).cached(version=version)(square)(3)  # type: ignore[arg-type]
    (info,) = Cache(tmp_path).entries()
    assert info.version == shown and type(info.version) is type(shown)


# --- reports --------------------------------------------------------------------------------

def test_report_html_escapes_names():
    report = _report.Report(table=_report.Table(["FUNCTION"], [["<b>x</b>"]]), notes=["a & b"])
    assert "&lt;b&gt;x&lt;/b&gt;" in report.html() and "a &amp; b" in report.html()


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 << 30, "5.0 GiB")]
)
def test_human_size(size: int, text: str):
    assert _report.human_size(size) == text


@pytest.mark.parametrize(("size", "text"), [(1048575, "1.0 MiB"), ((1 << 30) - 1, "1.0 GiB")])
def test_a_size_that_rounds_up_to_the_next_unit_is_shown_in_it(size: int, text: str):
    assert _report.human_size(size) == text  # before: "1024.0 KiB", "1024.0 MiB"


@pytest.mark.parametrize(("seconds", "text"), [(0.9996, "1.0 s"), (99.96, "1m")])
def test_a_compute_time_that_rounds_up_to_the_next_unit_is_shown_in_it(seconds: float,
                                                                       text: str):
    assert _report.human_time(seconds) == text  # before: "1000 ms", "100.0 s"


def test_a_duration_that_rounds_up_to_a_minute_is_shown_in_minutes():
    assert _report.human_duration(59.6) == "1m"  # before: "60s"


# --- every store kind -------------------------------------------------------------------------

def test_every_command_on_every_store(location: str, capsys: pytest.CaptureFixture[str]):
    cache = Cache(location)
    sq, cu = cache.cached(square), cache.cached(cube)
    for i in range(3):
        sq(i)
    cu(1)
    code, out, _ = cli(capsys, "--dir", location, "ls", "--json")
    assert code == 0
    assert {(r["function"], r["entries"]) for r in json.loads(out)} == {(SQUARE, 3), (CUBE, 1)}
    code, out, _ = cli(capsys, "--dir", location, "ls", SQUARE, "--json")
    assert code == 0 and len(json.loads(out)) == 3
    code, out, _ = cli(capsys, "--dir", location, "info", "--json")
    assert code == 0 and json.loads(out)["entries"] == 4
    assert cli(capsys, "--dir", location, "clear", CUBE)[0] == 0
    assert cli(capsys, "--dir", location, "prune")[0] == 0
    assert [e.function for e in cache.entries()] == [SQUARE] * 3
    assert cli(capsys, "--dir", location, "clear", "--yes")[0] == 0
    assert list(cache.entries()) == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [(["ls"], "no cache at"), (["info"], "entries       0"), (["prune"], "nothing to prune"),
     (["clear", "--yes"], "nothing to clear")],
    ids=["ls", "info", "prune", "clear"],
)
def test_a_root_whose_tagging_was_killed_is_an_empty_cache(
    tmp_path: Path, argv: list[str], says: str
):
    """A process killed (-9) between writing its temporary tag and linking it leaves the
    root holding only that file: memojar's, as good as empty (the decorator's next use
    adopts it), as is a root another process is tagging now. Every command reports an
    empty cache, and nothing is created by looking."""
    root = tmp_path / "cache"
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import os, signal, sys
        import memojar
        os.link = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        memojar.Cache(sys.argv[1]).cached(lambda x: x)(1)
        """), str(root)], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    (orphan,) = os.listdir(root)
    assert orphan.startswith("CACHEDIR.TAG.") and orphan.endswith(".tmp")
    proc = memojar_command("--dir", str(root), *argv)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert says in proc.stdout
    assert os.listdir(root) == [orphan]


def test_ls_and_info_hold_no_memory_per_entry(tmp_path: Path) -> None:
    """``memojar ls`` and ``info`` total the headers as they read them: their memory does
    not grow with the cache (before: every entry and its header were held until the last
    was read, 1.6 GB for ``memojar info`` of 1,000,000 entries)."""
    cache = Cache(tmp_path)
    double = cache.cached(_double)
    for x in range(20_000):
        double(x)
    entries, function_entries, function_bytes, total_bytes, peak = traced_apart(
        "import json, sys\n"
        "from memojar import Cache\n"
        "from memojar._census import take_census\n"
        "cache = Cache(sys.argv[1])  # its imports, outside the measure\n"
        "census, peak = traced_peak(lambda: take_census(cache))\n"
        "stats, = census.functions.values()\n"
        "print(json.dumps([census.entries, stats.entries, stats.bytes, census.bytes, peak]))\n",
        str(tmp_path))
    assert (entries, function_entries, function_bytes) == (20_000, 20_000, total_bytes)
    assert peak < 2_000_000, f"{peak:,} bytes at the peak of a census of 20,000 entries"


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_ls_function_holds_no_memory_per_entry(tmp_path: Path, as_json: bool) -> None:
    """``memojar ls FUNCTION`` prints its rows as it reads them back, sorted, from runs
    of ``_runs.RUN`` rows: its memory does not grow with the function's entries (before:
    every entry and its header were held, sorted and formatted whole: 2.3 GB of RSS for
    1,000,000 entries). Measured for 1,500 and 6,000 entries, runs of 500 read back 10
    rows at a time."""
    for n in (1_500, 6_000):
        plant(tmp_path / str(n), "mod.f", n)
    peaks = traced_apart(
        "import json, os, sys\n"
        "from memojar import _cli, _runs\n"
        "_runs.RUN, _runs.CHUNK = 500, 10\n"
        "peaks = []\n"
        "with open(os.devnull, 'w') as sys.stdout:\n"
        "    for root in sys.argv[2:]:\n"
        "        argv = ['--dir', root, 'ls', 'mod.f'] + ['--json'] * (sys.argv[1] == 'json')\n"
        "        _cli.main(argv)  # imports and first-use caches, outside the measure\n"
        "        code, peak = traced_peak(lambda: _cli.main(argv))\n"
        "        assert code == 0, code\n"
        "        peaks.append(peak)\n"
        "print(json.dumps(peaks), file=sys.__stdout__)\n",
        "json" if as_json else "text", str(tmp_path / "1500"), str(tmp_path / "6000"))
    assert peaks[1] < peaks[0] * 1.3 + 100_000, f"{peaks} bytes at the peaks"
    assert peaks[1] < 1_500_000, f"{peaks[1]:,} bytes at the peak of 6,000 entries"


def test_ls_function_rows_sorted_in_runs_keep_their_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows sorted in runs on a temporary file and merged come out as one stable sort of
    them all: newest first, entries created at the same moment in listing order, the
    WHY column of another version's entries as before."""
    from memojar import _runs

    plant(tmp_path, "mod.f", 5, created=1000.0)
    plant(tmp_path, "mod.f", 7, start=5)
    plant(tmp_path, "mod.f", 4, created=1000.0, start=20)
    store = FileStore(tmp_path)
    ident = _entry.make_ident("mod.f", "2", "0123456789abcdef")
    for i in range(30, 33):
        key = make_key(("mod.f", i))
        store.write("mod.f", key, _entry.encode(i, ident=ident, key=key, created=time.time(),
                                                expires=None, compute_time=0.25))
    said = {}
    for run in (_runs.RUN, 3):
        monkeypatch.setattr(_runs, "RUN", run)
        code, out, _ = cli(capsys, "--dir", str(tmp_path), "ls", "mod.f", "--json")
        assert code == 0
        said[run] = json.loads(out)
        code, out, _ = cli(capsys, "--dir", str(tmp_path), "ls", "mod.f")
        assert code == 0
        assert out.splitlines()[0].split() == ["KEY", "SIZE", "AGE", "EXPIRES", "COMPUTE",
                                               "STATUS", "WHY"]
        assert [line.split()[0] for line in out.splitlines()[1:-1]] == [
            row["key"][:12] for row in said[run]]
    rows = said[3]
    assert rows == said[_runs.RUN] and len(rows) == 19
    created = [parse_utc(row["created"]) for row in rows]
    assert created == sorted(created, reverse=True)
    assert [row["reason"] for row in rows if row["status"] == "incompatible"] == [
        "another version"] * 16


def test_ls_function_whose_temporary_file_fills_lists_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``$TMPDIR`` that fills while ``ls FUNCTION`` spills its runs (a small tmpfs)
    lists every row as a listing held in memory does, status 0, nothing said of an
    ignored exception: before, the last bytes of a run waited in the temporary file's
    buffer and their write failed as the rows were printed, 'cannot write to stdout (No
    space left on device)', status 1, where stdout had room."""
    import gc
    import tempfile

    from memojar import _runs

    plant(tmp_path / "cache", "mod.f", 5, created=1000.0)
    plant(tmp_path / "cache", "mod.f", 9, start=5)
    argv = ("--dir", str(tmp_path / "cache"), "ls", "mod.f")
    expected = [cli(capsys, *argv), cli(capsys, *argv, "--json")]
    made, real_pwrite = tempfile.TemporaryFile, os.pwrite
    room = [0]  # bytes the temporary files may still take
    full: set[int] = set()  # their descriptors

    class Full(io.FileIO):
        def write(self, data: Any) -> int:
            return small_pwrite(self.fileno(), data, None)

    def small_pwrite(fd: int, data: Any, at: int | None) -> int:
        if fd not in full:
            return real_pwrite(fd, data, at)  # type: ignore[arg-type]
        if room[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        data = bytes(data)[:room[0]]
        done = os.write(fd, data) if at is None else real_pwrite(fd, data, at)
        room[0] -= done
        return done

    def small_tmpfs(*args: Any, buffering: int = -1, **kwargs: Any) -> Any:
        with made() as real:  # a file of its own, whose writes fill
            raw = Full(os.dup(real.fileno()), "r+b")
        full.add(raw.fileno())
        return raw if buffering == 0 else io.BufferedRandom(raw)

    monkeypatch.setattr(_runs.tempfile, "TemporaryFile", small_tmpfs)
    monkeypatch.setattr(os, "pwrite", small_pwrite)
    monkeypatch.setattr(_runs, "RUN", 3)
    monkeypatch.setattr(_runs, "CHUNK", 2)
    ignored: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    for bytes_free in (0, 50, 150, 400, 1000):
        for as_json, want in zip((False, True), expected, strict=True):
            room[0] = bytes_free
            assert cli(capsys, *argv, *["--json"] * as_json) == want, (bytes_free, as_json)
    gc.collect()
    assert not ignored, [hook.exc_value for hook in ignored]


def test_ls_function_raises_a_signal_handlers_exception_met_writing_its_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception of the caller's signal handler (an alarm's ``TimeoutError``, no errno)
    raised as ``ls FUNCTION``'s rows are written to its temporary file is raised: before,
    it was taken for a full ``$TMPDIR`` and the listing went on in memory, the caller's
    timeout lost."""
    from memojar import _runs

    def alarm(*args: Any) -> int:
        raise TimeoutError("the caller's alarm")

    monkeypatch.setattr(os, "pwrite", alarm)
    rows = _runs.SortedRuns(key=lambda row: row, run=3)
    with pytest.raises(TimeoutError, match="the caller's alarm"):
        for row in range(9):
            rows.add(row)
    rows.close()


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_ls_function_whose_temporary_file_cannot_be_read_back_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    as_json: bool,
) -> None:
    """A read of ``ls FUNCTION``'s temporary file that fails (EIO on the disk under
    ``$TMPDIR``) is said as that, naming the file's folder, status 1: before, 'cannot
    write to stdout (Input/output error)', where stdout was fine."""
    import tempfile

    from memojar import _runs

    plant(tmp_path, "mod.f", 9)
    monkeypatch.setattr(_runs, "RUN", 3)

    def failing_pread(fd: int, length: int, at: int) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pread", failing_pread)
    code, _, err = cli(capsys, "--dir", str(tmp_path), "ls", "mod.f",
                         *["--json"] * as_json)
    assert code == 1
    assert "stdout" not in err
    assert err == (f"memojar: cannot read back the listing from its temporary file in "
                   f"{tempfile.gettempdir()} (Input/output error): mod.f: 9 entries, "
                   f"{err.rsplit(', ', 1)[1]}")


@pytest.mark.parametrize("asked", [False, True], ids=["--yes", "asked"])
def test_clear_holds_no_memory_per_entry_it_removes(tmp_path: Path, asked: bool) -> None:
    """``memojar clear`` counts the entries for its question and report, then removes them
    as a second listing finds them (before: every entry listed was held until the last was
    removed)."""
    cache = Cache(tmp_path)
    double = cache.cached(_double)
    for x in range(20_000):
        double(x)
    data, questions, peak = traced_apart(
        "import json, sys\n"
        "from memojar import Cache, _cli\n"
        "questions = []\n"
        "def confirm(question):\n"
        "    questions.append(question)\n"
        "    return True\n"
        "Cache(sys.argv[1])  # its imports, outside the measure\n"
        "report, peak = traced_peak(lambda: _cli.cmd_clear(\n"
        "    Cache(sys.argv[1]), [], None, False, confirm if sys.argv[2] == 'asked' else None))\n"
        "print(json.dumps([report.data, questions, peak]))\n",
        str(tmp_path), "asked" if asked else "--yes")
    assert data == {"removed": 20_000, "bytes": data["bytes"]}
    assert data["bytes"] > 0 and Cache(tmp_path).stats().entries == 0
    assert [q.split(" (")[0] for q in questions] == ["remove 20,000 entries"] * asked
    assert peak < 2_000_000, f"{peak:,} bytes at the peak of a clear of 20,000 entries"


def _double(x: int) -> int:
    return 2 * x


# --- what the output's encoding cannot hold ---------------------------------------------------

@pytest.mark.parametrize("argv", [["ls"], ["ls", "données.charger"], ["info"],
                                  ["clear", "--dry-run"], ["prune"]],
                         ids=" ".join)
def test_names_and_paths_an_ascii_output_cannot_hold_are_escaped_not_an_error(
    tmp_path: Path, argv: list[str],
):
    # An output of another encoding (PYTHONIOENCODING=ascii, a C locale without UTF-8 mode,
    # a Windows console's code page): before, "unexpected error: UnicodeEncodeError ...
    # (please report it)", status 1, also after clear and prune had removed their entries.
    cache_dir = tmp_path / "café"
    plant(cache_dir, "données.charger", 1)
    proc = memojar_command("--dir", str(cache_dir), *argv,
                           env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.isascii()
    if argv == ["ls"]:
        assert "donn\\xe9es.charger" in proc.stdout and "caf\\xe9" in proc.stdout


def test_a_cache_path_that_is_not_utf8_is_not_an_error(tmp_path: Path):
    # A folder named by bytes that are not UTF-8 (os.fsdecode gives lone surrogates), on a
    # strict UTF-8 output: before, every text report failed as an unexpected error, also
    # after prune removed. Its bytes are shown quoted, as GNU ls shows them on a terminal.
    cache_dir = os.path.join(os.fsencode(tmp_path), b"bad\xff")
    plant(Path(os.fsdecode(cache_dir)), SQUARE, 1)
    for argv in (["ls"], ["info"], ["prune"]):
        proc = subprocess.run([sys.executable, "-m", "memojar", "--dir", cache_dir, *argv],
                              capture_output=True, timeout=60,
                              env={**os.environ, "PYTHONIOENCODING": "utf-8"})
        assert proc.returncode == 0, proc.stderr
        assert b"/bad\\377'" in proc.stdout



def test_a_cache_path_that_is_not_utf8_is_shown_as_a_shell_reads_it_back(tmp_path: Path):
    # Before: stderr said '/tmp/.../bad\udcff' (a name that is nowhere, in the hint's command
    # too) while stdout wrote the raw byte (a replacement character on a terminal, which a
    # copy does not give back). Now the path is quoted as GNU ls shows it, $'...\377', in
    # every message and hint, on both outputs.
    cache_dir = os.path.join(os.fsencode(tmp_path), b"bad\xff")
    plant(Path(os.fsdecode(cache_dir)), SQUARE, 1, expires=time.time() - 60)
    quoted = "$'" + os.fsdecode(tmp_path) + "/bad\\377'"
    seen = []
    for argv in (["ls", "nosuch"], ["clear"], ["info"], ["ls"], ["prune"]):
        proc = subprocess.run([sys.executable, "-m", "memojar", "--dir", cache_dir, *argv],
                              capture_output=True, timeout=60,
                              env={**os.environ, "PYTHONIOENCODING": "utf-8"})
        said = (proc.stdout + proc.stderr).decode()
        assert "udcff" not in said and "\ufffd" not in said, said
        assert quoted in said, said
        seen.append(said)
    hint = re.search(r"\"memojar --dir (.*) ls\"", seen[0])
    assert hint is not None, seen[0]
    word = subprocess.run(["bash", "-c", f"printf %s {hint[1]}"], capture_output=True,
                          timeout=60).stdout
    assert word == cache_dir


def test_info_json_of_a_cache_path_that_is_not_utf8_is_valid_json_and_utf8(tmp_path: Path):
    # Before: "directory": "/tmp/.../bad\\udcff", a lone surrogate: a name that is nowhere,
    # which strict JSON readers refuse (jq made it a replacement character). It is the
    # path as every other output shows it, $'.../bad\377', as a shell reads it back.
    cache_dir = os.path.join(os.fsencode(tmp_path), b"bad\xff")
    plant(Path(os.fsdecode(cache_dir)), SQUARE, 1)
    proc = subprocess.run([sys.executable, "-m", "memojar", "--dir", cache_dir, "info",
                           "--json"], capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.decode("utf-8"))
    assert info["directory"] == "$'" + os.fsdecode(tmp_path) + "/bad\\377'"
    assert info["entries"] == 1


def test_a_function_name_with_a_line_break_is_one_line_in_ls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
):
    # Before: ls FUNCTION's summary wrote the name as it is, "mod.two\nlines: 2 entries",
    # on two lines, and ls's table row of it was two rows. Shown as a shell reads it back.
    plant(tmp_path, "mod.two\nlines", 2)
    code, out, err = cli(capsys, "--dir", str(tmp_path), "ls", "mod.two\nlines")
    assert code == 0, err
    assert out.splitlines()[-1].startswith("$'mod.two\\012lines': 2 entries, ")
    code, out, err = cli(capsys, "--dir", str(tmp_path), "ls")
    assert code == 0, err
    assert out.splitlines()[1].split()[:2] == ["$'mod.two\\012lines'", "2"]
    assert "lines" not in out.splitlines()[2], out


@pytest.mark.parametrize("argv", [[b"ls", b"caf\xe9.f"], [b"clear", b"caf\xe9.f"],
                                  [b"clear", b"--older-than", b"caf\xe9"], [b"caf\xe9"]],
                         ids=lambda argv: b" ".join(argv).decode("latin-1"))
def test_an_error_quoting_an_argument_that_is_not_utf8_shows_it_as_typed(
    tmp_path: Path, argv: list[bytes],
):
    # A word typed with a byte that is not UTF-8 (Latin-1's é): before, the error quoted it
    # as Python decoded it, 'caf\udce9', a name that is nowhere. As a shell reads it back.
    fill(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "memojar", "--dir", str(tmp_path), *argv],
                          capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 2
    line = one_line(proc.stderr.decode("utf-8"))
    assert "udce9" not in line and "$'caf\\351" in line, line


# --- interrupted -----------------------------------------------------------------------------

def interrupt_the_second_removal(monkeypatch: pytest.MonkeyPatch, term: bool = False) -> None:
    """Ctrl-C (or a SIGTERM: ``term``) as the second batch of entries is being removed."""
    remove = FileStore._removed
    batches = []

    def interrupted(self: FileStore, entries: list[object]) -> list[object]:
        batches.append(len(entries))
        if len(batches) == 2:
            if term:
                os.kill(os.getpid(), signal.SIGTERM)
            raise KeyboardInterrupt
        return remove(self, entries)  # type: ignore[arg-type,return-value]

    monkeypatch.setattr(FileStore, "_removed", interrupted)


@pytest.mark.parametrize("argv", [["clear", SQUARE], ["clear", "--yes"]], ids=" ".join)
def test_an_interrupted_clear_says_how_many_entries_it_removed(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str],
):
    # Before: "memojar: interrupted", and nothing said of the 1,000 entries already gone.
    plant(cache_dir, SQUARE, 1_200)
    interrupt_the_second_removal(monkeypatch)
    code, out, err = cli(capsys, "--dir", str(cache_dir), *argv)
    assert code == 130 and out == ""
    assert count(cache_dir) == 200
    assert "interrupted: removed at least 1,000 entries" in err
    assert "the rest are kept" in err


def test_an_interrupted_prune_says_how_many_entries_it_removed(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
):
    plant(cache_dir, SQUARE, 2_500, expires=time.time() - 60)
    interrupt_the_second_removal(monkeypatch)
    code, out, err = cli(capsys, "--dir", str(cache_dir), "prune")
    assert code == 130 and out == ""
    assert count(cache_dir) == 1_500
    assert "interrupted: removed at least 1,000 entries" in err



def test_an_interrupted_prune_counts_only_the_entries_it_removed_itself(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
):
    # A shared cache pruned by two processes at once: the other one removed this one's
    # first batch before it did. Before: "removed at least 2 entries", of entries this
    # process had only handed to removal (it removed none).
    plant(cache_dir, SQUARE, 5, expires=time.time() - 60)
    monkeypatch.setattr(_store, "REMOVE_BATCH", 2)
    cache = Cache(cache_dir)
    unlink = type(cache.store)._unlink
    batches = []

    def raced(self: FileStore, entries: list[Any]) -> list[Any]:
        batches.append(len(entries))
        if len(batches) == 2:
            raise KeyboardInterrupt
        for entry in entries:  # the other process's prune, first
            os.unlink(entry.location)
        return unlink(self, entries)

    monkeypatch.setattr(type(cache.store), "_unlink", raced)
    with pytest.raises(_cli.Interrupted) as interrupted:
        _cli.cmd_prune(cache)
    assert "at least" not in str(interrupted.value), str(interrupted.value)


def test_prune_reports_the_entries_it_removed_not_those_another_process_did(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
):
    plant(cache_dir, SQUARE, 4, expires=time.time() - 60)
    cache = Cache(cache_dir)
    unlink = type(cache.store)._unlink

    def raced(self: FileStore, entries: list[Any]) -> list[Any]:
        os.unlink(entries[0].location)  # the other process's prune, first to one
        return unlink(self, entries)

    monkeypatch.setattr(type(cache.store), "_unlink", raced)
    calls: list[tuple[str, int, int | None]] = []
    assert cache.prune(progress=lambda *call: calls.append(call)) == 3
    assert [c for c in calls if c[0] == "removing"] == [("removing", 3, None),
                                                        ("removing", 3, 3)]


@pytest.mark.parametrize(("argv", "removed"), [(["clear", "--yes"], 1_000), (["prune"], 1_000)],
                         ids=["clear", "prune"])
def test_a_clear_or_prune_ended_by_sigterm_says_how_many_entries_it_removed(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], removed: int,
):
    # `timeout 60 memojar clear --yes`, a CI job cancelled: before, the process died at
    # once, status 143, and nothing said of the entries already gone.
    plant(cache_dir, SQUARE, 2_500, expires=time.time() - 60)
    interrupt_the_second_removal(monkeypatch, term=True)
    code, out, err = cli(capsys, "--dir", str(cache_dir), *argv)
    assert code == 128 + signal.SIGTERM and out == ""
    assert count(cache_dir) == 2_500 - removed
    assert one_line(err).startswith(f"memojar: terminated: removed at least {removed:,} entries")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_clear_that_met_an_immutable_entry_says_to_remove_the_mark(
    cache_dir: Path, capsys: pytest.CaptureFixture[str],
):
    # Before: "in folders root may not write (read-only: give them back their permissions,
    # chmod u+w, to remove them)", of a folder whose mode let its owner write all along.
    plant(cache_dir, SQUARE, 3)
    entry = next(cache_dir.rglob("*.pkl"))
    with immutable(entry):
        code, out, err = cli(capsys, "--dir", str(cache_dir), "clear", "--yes")
        assert code == 1 and out == ""
        line = one_line(err)
        assert "removed 2 entries; 1 entry was left, marked immutable or append-only" in line
        assert "chattr -i" in line and "chmod" not in line
        assert count(cache_dir) == 1

# --- an output that cannot be written ---------------------------------------------------------

def redirected(directory: Path, command: str) -> subprocess.CompletedProcess[str]:
    """``memojar --dir DIRECTORY COMMAND`` run by a shell, so that COMMAND may redirect
    stdout (``>/dev/full``, ``>&-``)."""
    return subprocess.run(
        ["/bin/sh", "-c", f'exec "$0" -m memojar --dir "$1" {command}', sys.executable,
         str(directory)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("stdout", [">/dev/full", ">&-"], ids=["full", "closed"])
def test_a_report_that_cannot_be_written_says_why_and_what_was_done(
    cache_dir: Path, stdout: str,
):
    # Before: "unexpected error: OSError: [Errno 28] No space left on device (please report
    # it)" (or "AttributeError: 'NoneType' object has no attribute 'flush'" with stdout
    # closed), and nothing said of the entries the clear had removed.
    if not os.path.exists("/dev/full") and stdout == ">/dev/full":
        pytest.skip("no /dev/full")
    plant(cache_dir, SQUARE, 3)
    proc = redirected(cache_dir, f"clear {SQUARE} {stdout}")
    assert proc.returncode == 1
    assert count(cache_dir) == 0
    line = one_line(proc.stderr)
    assert "cannot write to stdout" in line and "please report" not in line
    assert "removed 3 entries" in line


def to_a_reader_gone(cache_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``memojar ARGV | head -0``, its reader gone before the report is written (the pipe's
    read end closed before the command starts: with ``head -0`` it depends on which ends
    first)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "memojar", "--dir", str(cache_dir),
                               *argv], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    finally:
        os.close(write)


@pytest.mark.parametrize("argv", [["clear", "--yes"], ["clear", SQUARE], ["prune"]],
                         ids=" ".join)
def test_a_removal_whose_reader_left_says_what_it_removed_on_stderr(
    cache_dir: Path, argv: list[str],
):
    # `memojar clear --yes | head -0`: before, status 0 and not a word, the entries gone
    # and nobody told how many, or whether all went.
    plant(cache_dir, SQUARE, 3, expires=time.time() - 60)
    proc = to_a_reader_gone(cache_dir, *argv)
    assert proc.returncode == 0
    assert count(cache_dir) == 0
    line = one_line(proc.stderr)
    assert line.startswith("memojar: removed 3 entries") and "stdout" in line, line


@pytest.mark.parametrize("argv", [["ls"], ["ls", SQUARE], ["info"], ["clear", "--dry-run"]],
                         ids=" ".join)
def test_a_report_whose_reader_left_is_dropped_quietly(cache_dir: Path, argv: list[str]):
    # `memojar ls | head -1`: the reader had what it wanted; nothing was changed to say.
    plant(cache_dir, SQUARE, 3)
    proc = to_a_reader_gone(cache_dir, *argv)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert count(cache_dir) == 3


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["clear", "--help"]],
                         ids=" ".join)
def test_help_or_version_whose_reader_left_is_dropped_quietly(tmp_path: Path,
                                                              argv: list[str]):
    # `memojar --help | head -1`: the reader had what it wanted, as of ls. On lead (d7ba8f3
    # made help's OSError an error) it said 'cannot write to stdout (Broken pipe)', status 1.
    proc = to_a_reader_gone(tmp_path, *argv)
    assert (proc.returncode, proc.stderr) == (0, "")


@pytest.mark.parametrize("stdout", [">/dev/full", ">&-"], ids=["full", "closed"])
@pytest.mark.parametrize("command", ["info", "info --json"])
def test_a_report_of_nothing_done_that_cannot_be_written_ends_with_why(
    cache_dir: Path, stdout: str, command: str,
):
    # Before: "memojar: cannot write to stdout (No space left on device): ", its colon
    # announcing what the command did, of a command that did nothing and has no notes.
    if not os.path.exists("/dev/full") and stdout == ">/dev/full":
        pytest.skip("no /dev/full")
    plant(cache_dir, SQUARE, 3)
    proc = redirected(cache_dir, f"{command} {stdout}")
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert "cannot write to stdout" in line
    assert not line.rstrip().endswith(":"), line


@pytest.mark.parametrize("option", ["--help", "--version", "clear --help"])
def test_help_or_version_that_cannot_be_written_is_an_error(tmp_path: Path, option: str):
    # Before: argparse swallows the OSError of its write: nothing was printed, and the
    # status was 0 (success) on a full disk.
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    proc = redirected(tmp_path, f"{option} >/dev/full")
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert "cannot write to stdout (No space left on device)" in line, line


def test_a_function_name_typed_in_an_ascii_locale_is_read_as_utf8(tmp_path: Path):
    # In a C locale without UTF-8 mode, Python decodes argv as ASCII with surrogateescape:
    # before, 'memojar ls données.charger' said the name "holds a byte that is not valid
    # text" (status 2), and 'clear' could not name the function at all.
    plant(tmp_path, "données.charger", 2)
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    env.pop("PYTHONIOENCODING", None)
    listed = memojar_command("--dir", str(tmp_path), "ls", "données.charger", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "2 entries" in listed.stdout
    cleared = memojar_command("--dir", str(tmp_path), "clear", "données.charger", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert count(tmp_path) == 0


def test_ctrl_c_at_the_question_says_nothing_was_removed(cache_dir: Path):
    # Before: "memojar: interrupted" alone, after a question about removing every entry.
    fill(cache_dir)

    def ctrl_c(question: str) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as interrupted:
        _cli.execute(["--dir", str(cache_dir), "clear"], confirm=ctrl_c)
    assert str(interrupted.value) == "nothing removed"  # main: "interrupted: nothing removed"
    assert count(cache_dir) == 5


def test_a_function_named_twice_is_counted_once_by_the_dry_run(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    """``clear mod.f mod.f --dry-run`` would remove mod.f's entries once: it says so.
    Before: "would remove 6 entries" of 3, each counted once a time its name was typed."""
    plant(cache_dir, "mod.f", 3)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "clear", "mod.f", "mod.f", "--dry-run")
    assert code == 0 and "would remove 3 entries" in out, out
    assert re.search(r"^mod\.f +3$", out, re.MULTILINE), out
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "clear", "mod.f", "mod.f")
    assert code == 0 and out.startswith("removed 3 entries"), out
    assert count(cache_dir) == 0


def test_the_dry_run_shows_names_as_ls_does(cache_dir: Path,
                                           capsys: pytest.CaptureFixture[str]):
    """A function's name holding a line break or a tab is quoted in the dry run's table as
    ``ls`` quotes it (``$'mod.a\\012b'``). Before, it was written raw: the row split in two,
    a function "mod.a" with no count and a function "b" with one."""
    plant(cache_dir, "mod.a\nb", 2)
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "ls")
    assert code == 0 and "$'mod.a\\012b'" in out, out
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "clear", "--dry-run")
    assert code == 0 and "would remove 2 entries" in out, out
    assert re.search(r"^\$'mod\.a\\012b' +2$", out, re.MULTILINE), out
    assert "\nb " not in out


def test_a_hashed_folders_name_is_not_its_functions_name(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]):
    """``mod.outer.<locals>.g`` lives in the folder ``mod.outer._locals_.g-<hash>``. That
    folder's name, typed as a FUNCTION (copied from a listing of the cache directory), names
    no function: ``ls`` and ``clear`` say so, and nothing is removed. Before, ``clear`` of it
    removed ``mod.outer.<locals>.g``'s entries ("removed 2 entries") while ``ls`` of it said
    "0 entries, 0 B", and so did ``Cache.clear``. A function whose own name is so spelled
    keeps its entries listed and cleared."""
    plant(cache_dir, "mod.outer.<locals>.g", 2)
    plant(cache_dir, "mod.x-0123abcd", 3)
    folder = _filestore.function_dir("mod.outer.<locals>.g", case_safe=True)
    assert folder != "mod.outer.<locals>.g" and (cache_dir / folder).is_dir()
    code, out, err = cli(capsys, "--dir", str(cache_dir), "ls", folder)
    assert code == 1 and "no entries for function" in err, (out, err)
    code, out, err = cli(capsys, "--dir", str(cache_dir), "clear", folder)
    assert code == 1 and "no entries for function" in err, (out, err)
    assert Cache(cache_dir).clear(folder) == 0
    assert count(cache_dir, "mod.outer.<locals>.g") == 2
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "ls", "mod.x-0123abcd")
    assert code == 0 and "mod.x-0123abcd: 3 entries" in out, out
    code, out, _ = cli(capsys, "--dir", str(cache_dir), "clear", "mod.x-0123abcd")
    assert code == 0 and out.startswith("removed 3 entries"), out
    assert count(cache_dir) == 2


@pytest.mark.file_only("plants entries with a chosen expiry")
def test_an_entry_of_a_negative_expiry_is_stale_to_ls_prune_and_the_decorator(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An expiry before 1970 (a header written by hand, or by a clock far off) is a time
    past: before, ``ls`` called the entry fresh and ``prune`` kept it, while the decorator
    recomputed over it at every call."""
    cache = Cache(cache_dir)
    sq = cache.cached(square)
    key = sq.cache_key(3)
    store = FileStore(cache_dir)
    sq(3)
    (stored,) = store.scan(SQUARE)
    header = _entry.read_header(Path(stored.location).read_bytes())
    store.write(SQUARE, key, _entry.encode(
        -1, ident=header.ident, key=key, created=header.created, expires=-5.0,
        compute_time=0.25))
    code, out, err = cli(capsys, "--dir", str(cache_dir), "ls", SQUARE, "--json")
    assert code == 0, err
    assert [row["status"] for row in json.loads(out)] == ["stale"]
    assert sq.cache_contains(3) is False and sq(3) == 9  # the decorator: stale
    store.write(SQUARE, key, _entry.encode(
        -1, ident=header.ident, key=key, created=header.created, expires=-5.0,
        compute_time=0.25))
    code, out, err = cli(capsys, "--dir", str(cache_dir), "prune")
    assert code == 0 and "removed 1 entry" in out, (out, err)
    assert count(cache_dir) == 0
