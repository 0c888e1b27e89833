"""Notebooks: functions defined in cells, the ``%memojar`` magic, and a real kernel."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_python
from memojar import Cache

pytest.importorskip("IPython")

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

TOUR = Path(__file__).resolve().parents[1] / "examples" / "tour.ipynb"

CELL_V1 = """
from memojar import cached

@cached
def f(x):
    return x + 1
"""
CELL_V2 = CELL_V1.replace("x + 1", "x + 2")


@pytest.fixture(scope="module")
def _shell() -> InteractiveShell:
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    return InteractiveShell.instance(config=config)


@pytest.fixture
def shell(_shell: InteractiveShell) -> Iterator[InteractiveShell]:
    """IPython's shell, as a notebook kernel runs cells, with ``%memojar`` loaded."""
    _shell.reset(new_session=False)
    _shell.run_line_magic("load_ext", "memojar")
    yield _shell
    _shell.reset(new_session=False)


def run(shell: InteractiveShell, cell: str) -> object:
    result = shell.run_cell(cell)
    result.raise_error()
    return result.result


def shown(shell: InteractiveShell, cell: str) -> dict[str, str]:
    """What the one report ``cell`` shows (a magic shows its report: it returns None), by
    format."""
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        assert run(shell, cell) is None
    (output,) = captured.outputs
    return dict(output.data)


def cache_root() -> Path:
    return Path(os.environ["MEMOJAR_DIR"])


def entries_of(function: str) -> list:
    return list(Cache(cache_root()).entries(function))


# --- functions defined in cells ------------------------------------------------------------

def test_cell_function_is_cached(shell: InteractiveShell):
    run(shell, CELL_V1)
    assert run(shell, "f(1)") == 2
    assert run(shell, "f(1)") == 2
    assert run(shell, "f.cache_info()")[:2] == (1, 1)
    assert len(entries_of("__main__.f")) == 1


def test_rerunning_an_unchanged_cell_keeps_its_entries_and_hits(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(1)")
    run(shell, CELL_V1)
    assert run(shell, "f(1)") == 2
    assert run(shell, "f.cache_info()")[:2] == (1, 0)
    assert len(entries_of("__main__.f")) == 1


def test_editing_a_cell_recomputes(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(1)")
    run(shell, CELL_V2)
    assert run(shell, "f(1)") == 3
    assert run(shell, "f.cache_info()")[:2] == (0, 1)


def test_editing_a_cell_leaves_only_the_new_codes_entries(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(1); f(2)")
    run(shell, CELL_V2)
    run(shell, "f(1)")
    entries = entries_of("__main__.f")
    assert [e.key for e in entries] == [run(shell, "f.cache_key(1)")]
    assert run(shell, "f.cache_contains(1)") is True


def test_a_new_process_running_the_same_cell_hits(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(5)")
    out = run_python(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "from traitlets.config import Config\n"
        "c = Config(); c.HistoryManager.hist_file = ':memory:'\n"
        "shell = InteractiveShell.instance(config=c)\n"
        f"shell.run_cell({CELL_V1!r}).raise_error()\n"
        "shell.run_cell('print(f(5), tuple(f.cache_info())[:2])').raise_error()\n",
        env={"MEMOJAR_DIR": str(cache_root())},
    )
    assert out.split() == ["6", "(1,", "0)"]


CLASS_SENTINEL_CELL = """
from memojar import cached

class opts:
    UNSET = object()

@cached
def unset(x):
    return x is opts.UNSET
"""


def test_a_class_sentinel_keys_alike_in_a_kernel_that_showed_its_class(
        shell: InteractiveShell):
    """A sentinel of a cell's class (``opts.UNSET``) keys by the class's name, not by
    IPython's name of an output that showed the class (``_2``): a new kernel running the
    same cell hits. Before, ``_2.UNSET`` sorted first: it computed again."""
    run(shell, CLASS_SENTINEL_CELL)
    run(shell, "opts")  # shown: IPython names it _2 (and _)
    assert run(shell, "unset(opts.UNSET)") is True
    out = run_python(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "from traitlets.config import Config\n"
        "c = Config(); c.HistoryManager.hist_file = ':memory:'\n"
        "shell = InteractiveShell.instance(config=c)\n"
        f"shell.run_cell({CLASS_SENTINEL_CELL!r}).raise_error()\n"
        "shell.run_cell('print(unset(opts.UNSET), tuple(unset.cache_info())[:2])')"
        ".raise_error()\n",
        env={"MEMOJAR_DIR": str(cache_root())},
    )
    assert out.split() == ["True", "(1,", "0)"]


def test_classes_made_at_run_time_are_not_kept_alive_in_a_notebook(shell: InteractiveShell):
    """A cell that makes a class per call (a namedtuple, a dataclass factory) and passes
    its instances to a cached function: each class's identity kept a record of what it was
    made from (its MRO, which holds the class), under the class itself, weakly: the record
    kept its own key alive, and every such class for good (as many as the key maker's
    bounded table holds stay: test_keys::test_classes_made_at_run_time_are_not_kept_by_the_keys,
    which failed after this file for it)."""
    run(shell, """
import gc, weakref
from memojar import cached

@cached
def g(x):
    return x.value

made = []
for i in range(2000):
    cls = type(f"Made{i}", (), {"value": i})
    made.append(weakref.ref(cls))
    g.cache_key(cls())
assert g(cls()) == 1999
del cls
gc.collect()
alive = sum(ref() is not None for ref in made)
""")
    assert run(shell, "alive") <= 1100


def test_enums_made_at_run_time_are_not_kept_alive_in_a_notebook(shell: InteractiveShell):
    """A cell that makes an Enum (or a class with a method using ``super()``, a property, a
    classmethod) per call and passes it to a cached function: the record of what the
    class's identity was made from held the class's members, strongly (an Enum's members
    and its member map hold the class; a ``super()`` method's closure does), under the
    class itself, weakly: 600 of 600 kept alive for good."""
    run(shell, """
import enum, gc, weakref
from memojar import cached

@cached
def g(x):
    return x

made = []
for i in range(300):
    Color = enum.Enum(f"Color{i}", {"RED": i, "BLUE": i + 1000})
    made.append(weakref.ref(Color))
    g.cache_key(Color)
    class Shape:
        size = i
        def area(self):
            return super().__hash__()
        @property
        def side(self):
            return self.size
        @classmethod
        def make(cls):
            return cls()
    made.append(weakref.ref(Shape))
    g.cache_key(Shape)
del Color, Shape
gc.collect()
alive = sum(ref() is not None for ref in made)
""")
    assert run(shell, "alive") == 0


# --- the magic -------------------------------------------------------------------------------

def test_import_memojar_does_not_import_ipython():
    out = run_python("import sys, memojar; print('IPython' in sys.modules)")
    assert out.strip() == "False"


def test_load_ext_registers_the_line_magic(shell: InteractiveShell):
    assert "memojar" in shell.magics_manager.magics["line"]


def test_magic_ls_renders_an_html_table(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(1); f(2)")
    formats = shown(shell, "%memojar ls")
    assert "<table" in formats["text/html"] and "__main__.f" in formats["text/html"]
    assert "__main__.f" in formats["text/plain"]


def test_magic_shows_its_report_in_a_cell_of_several(shell: InteractiveShell):
    # The README's block as one cell: before, a report was the magic's value, shown only as
    # a cell's last line, so that cell (ending in `rows = %memojar ls --json`) showed
    # nothing at all; one ending in `%memojar prune` showed only prune's line.
    run(shell, CELL_V1)
    run(shell, "f(1); f(2)")
    from IPython.utils.capture import capture_output

    with capture_output() as shown:
        run(shell, "%memojar ls                      # functions, as a table\n"
                   "%memojar ls __main__.f           # one function's entries\n"
                   "%memojar info\n"
                   "rows = %memojar ls --json        # with --json the magic returns the data\n"
                   "%memojar clear __main__.f        # one function\n"
                   "%memojar prune")
    texts = [o.data["text/plain"] for o in shown.outputs]
    htmls = [o.data.get("text/html", "") for o in shown.outputs]
    assert len(texts) == 5, texts
    assert "FUNCTION" in texts[0] and "__main__.f" in texts[0] and "<table" in htmls[0]
    assert "KEY" in texts[1] and "<table" in htmls[1]
    assert str(cache_root()) in texts[2]
    assert "removed 2 entries" in texts[3] and "removed 0 entries" in texts[4]
    assert shown.stdout == ""
    assert [r["function"] for r in run(shell, "rows")] == ["__main__.f"]


def test_magic_ls_json_returns_the_rows(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(1); f(2)")
    rows = run(shell, "%memojar ls --json")
    assert [(r["function"], r["entries"]) for r in rows] == [("__main__.f", 2)]
    keys = run(shell, "%memojar ls __main__.f --json")
    assert {r["key"] for r in keys} == {run(shell, "f.cache_key(1)"), run(shell, "f.cache_key(2)")}


def test_magic_info_json(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(1)")
    info = run(shell, "%memojar info --json")
    assert info["directory"] == str(cache_root())
    assert (info["entries"], info["functions"]) == (1, 1)


def _deleted_files_open() -> list[str]:
    """What this process holds open of files removed (a temporary file is one at once)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself held
            continue
        if target.endswith(" (deleted)"):
            held.append(target)
    return held


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("json", ["", " --json"])
def test_magic_ls_interrupted_leaves_no_temporary_file_open(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch, json: str
):
    # ``%memojar ls FUNCTION`` of more rows than RUN reads them back from a temporary file.
    # Interrupted while shown (Ctrl-C in a long listing), the report stayed in the frames of
    # the notebook's last traceback, its file open until the next error replaced it.
    import memojar._cli
    import memojar._runs

    run(shell, CELL_V1)
    run(shell, "[f(i) for i in range(30)]")
    monkeypatch.setattr(memojar._runs, "RUN", 5)
    rows_of = memojar._cli._Rows.__iter__

    def interrupted(self):  # type: ignore[no-untyped-def]
        for at, row in enumerate(rows_of(self)):
            if at == 3:
                raise KeyboardInterrupt
            yield row

    held = _deleted_files_open()
    monkeypatch.setattr(memojar._cli._Rows, "__iter__", interrupted)
    assert isinstance(shell.run_cell(f"%memojar ls __main__.f{json}").error_in_exec,
                      KeyboardInterrupt)
    assert _deleted_files_open() == held
    monkeypatch.setattr(memojar._cli._Rows, "__iter__", rows_of)
    assert len(run(shell, "%memojar ls __main__.f --json")) == 30
    assert _deleted_files_open() == held


def test_magic_counts_the_hits_of_its_own_kernel(shell: InteractiveShell):
    # `%memojar ls` and `info` counted the hits other processes had merged, not those of the
    # kernel running them until its next merge (every 5 s): examples/tour.ipynb's
    # `%memojar ls` showed HITS 1 after its two hits of a new kernel.
    run(shell, CELL_V1)
    run(shell, "f(1); f(1); f(1)")
    [row] = run(shell, "%memojar ls --json")
    assert (row["hits"], row["misses"]) == (2, 1)
    info = run(shell, "%memojar info --json")
    assert (info["hits"], info["misses"]) == (2, 1)


def test_magic_takes_dir(shell: InteractiveShell, tmp_path: Path):
    other = tmp_path / "other"
    Cache(other).cached(len)("abc")
    info = run(shell, f"%memojar --dir '{other}' info --json")
    assert info["directory"] == str(other) and info["entries"] == 1


def test_magic_clear_function(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(1); f(2)")
    assert "removed 2 entries" in shown(shell, "%memojar clear __main__.f")["text/plain"]
    assert entries_of("__main__.f") == []


def test_magic_ignores_a_comment_as_the_shell_does(shell: InteractiveShell):
    # As in the README: a comment after a magic's words was taken for arguments (function
    # names to clear: '#', 'one', 'function'), or failed on an apostrophe in it.
    run(shell, CELL_V1)
    run(shell, "f(1); f(2)")
    rows = run(shell, "%memojar ls --json   # with --json the magic returns the data")
    assert [(r["function"], r["entries"]) for r in rows] == [("__main__.f", 2)]
    assert len(run(shell, "%memojar ls __main__.f --json  # one function's entries")) == 2
    report = shown(shell, "%memojar clear __main__.f   # one function")
    assert "removed 2 entries" in report["text/plain"]


def test_magic_keeps_a_hash_inside_a_word_or_quotes(shell: InteractiveShell, tmp_path: Path):
    # Only a '#' starting a word begins a comment, as in the shell: a folder named 'a#b'
    # (or '# b', quoted) is that folder, never 'a' with the rest dropped.
    for name, typed in [("a#b", "a#b"), ("# b", "'# b'"), ("c #d", 'c\\ \\#d')]:
        folder = tmp_path / name
        Cache(folder).cached(len)("abc")
        info = run(shell, f"%memojar --dir {tmp_path}/{typed} info --json  # a comment")
        assert info["directory"] == str(folder) and info["entries"] == 1


def test_magic_clear_everything_needs_yes(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(1)")
    with pytest.raises(UsageError, match="--yes"):
        shell.run_line_magic("memojar", "clear")
    assert len(entries_of("__main__.f")) == 1
    run(shell, "%memojar clear --yes")
    assert entries_of("__main__.f") == []


def test_magic_clear_dry_run_and_older_than(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(1)")
    assert "would remove 1 entry" in shown(shell, "%memojar clear --dry-run")["text/plain"]
    assert "nothing to clear" in shown(shell, "%memojar clear --older-than 1d --yes")["text/plain"]
    assert len(entries_of("__main__.f")) == 1


def test_magic_prune(shell: InteractiveShell):
    run(shell, CELL_V1)
    run(shell, "f(1)")
    assert "removed 0 entries" in shown(shell, "%memojar prune")["text/plain"]


@pytest.mark.parametrize(
    ("line", "message"),
    [("ls __main__.g", "no entries for function '__main__.g'"),
     ("frobnicate", "invalid choice"),
     ("clear --older-than soon --yes", "invalid duration"),
     ("ls 'unclosed", "quotation")],
)
def test_magic_errors_are_usage_errors(shell: InteractiveShell, line: str, message: str):
    run(shell, CELL_V1)
    run(shell, "f(1)")
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("memojar", line)


def test_magic_on_a_missing_directory_is_an_empty_cache(shell: InteractiveShell, tmp_path: Path):
    data = shell.run_line_magic("memojar", f"--dir {tmp_path / 'nowhere'} info --json")
    assert (data["entries"], data["functions"]) == (0, 0)
    assert not (tmp_path / "nowhere").exists()


def test_magic_help_shows_magic_examples(shell: InteractiveShell,
                                         capsys: pytest.CaptureFixture[str]):
    assert shell.run_line_magic("memojar", "--help") is None
    out = capsys.readouterr().out
    assert "  %memojar ls   " in out and "  %memojar clear --older-than 7d --yes" in out
    assert "  memojar " not in out  # no shell command where a magic is typed


# --- a real kernel --------------------------------------------------------------------------

def execute_tour(workdir: Path, env: dict[str, str]) -> list:
    """Execute examples/tour.ipynb in a fresh ipykernel; return its cells with outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(TOUR, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=env)
    return notebook.cells


def tagged(cells: list, tag: str) -> str:
    """The text output of the cell tagged ``tag``."""
    (cell,) = [c for c in cells if tag in c.metadata.get("tags", [])]
    return "".join(
        o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs
    )


def cache_info_of(text: str) -> tuple[int, int]:
    match = re.search(r"CacheInfo\(hits=(\d+), misses=(\d+)", text)
    assert match, text
    return int(match[1]), int(match[2])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter_core's paths notice
def test_tour_notebook_runs_twice_and_the_second_kernel_hits(tmp_path: Path):
    env = {**os.environ, "MEMOJAR_DIR": str(tmp_path / "nb-cache")}
    first = execute_tour(tmp_path, env)
    assert cache_info_of(tagged(first, "first-call")) == (0, 1)
    second = execute_tour(tmp_path, env)
    assert cache_info_of(tagged(second, "first-call")) == (1, 0)
    (ls_cell,) = [c for c in second if "ls" in c.metadata.get("tags", [])]
    html = "".join(o.get("data", {}).get("text/html", "") for o in ls_cell.outputs)
    assert "<table" in html and "__main__.slow_square" in html
    assert [e.function for e in Cache(tmp_path / "nb-cache").entries()] == [
        "__main__.slow_square"
    ]
