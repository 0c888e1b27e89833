"""One cache shared by several scripts, notebooks, worker processes and Python versions.

Every test runs real interpreters: scripts as files, notebooks as IPython shells told their
path the ways Jupyter and VS Code tell it, and a second Python version when one is present
(``MEMOJAR_TEST_PYTHONS``, ``python3.X`` on ``PATH`` or pyenv's versions).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import memojar
from memojar import Cache, _entry

SRC = str(Path(memojar.__file__).resolve().parents[1])  # the memojar under test
TIMEOUT = 120

SCRIPT = """
from memojar import cached

@cached
def load(x):
    print("computed", flush=True)
    return {value}

print(load(3), load.cache_info().hits)
"""


def run(python: str, args: list[str], cache: Path, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> str:
    """Run ``python args`` on the cache with the memojar under test; its stdout."""
    full_env = {**os.environ, "MEMOJAR_DIR": str(cache), "PYTHONPATH": SRC,
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONWARNINGS": "error", **(env or {})}
    proc = subprocess.run([python, *args], capture_output=True, text=True, env=full_env,
                          timeout=TIMEOUT, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def script(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCRIPT.format(value=value))
    return path


def outcome(out: str) -> str:
    """'computed' or 'hit', from a run of SCRIPT (or of a notebook cell printing the same)."""
    return "computed" if "computed" in out.split() else "hit"


# --- scripts ----------------------------------------------------------------------------

def test_two_scripts_defining_load_keep_their_entries(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = script(tmp_path / "a" / "run.py", "'a'")
    b = script(tmp_path / "b" / "run.py", "'b'")
    outs = [run(sys.executable, [str(p)], cache) for p in (a, b, a, b)]
    assert [outcome(o) for o in outs] == ["computed", "computed", "hit", "hit"]
    assert [o.split()[-2] for o in outs] == ["a", "b", "a", "b"]


def test_the_same_script_by_a_link_or_a_relative_path_is_one_scope(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = script(tmp_path / "a" / "run.py", "'a'")
    link = tmp_path / "link.py"
    link.symlink_to(a)
    assert outcome(run(sys.executable, [str(a)], cache)) == "computed"
    assert outcome(run(sys.executable, [str(link)], cache)) == "hit"
    assert outcome(run(sys.executable, ["run.py"], cache, cwd=a.parent)) == "hit"


def test_an_edited_script_sweeps_only_its_own_old_entries(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = script(tmp_path / "a" / "run.py", "'a'")
    b = script(tmp_path / "b" / "run.py", "'b'")
    run(sys.executable, [str(a)], cache)
    run(sys.executable, [str(b)], cache)
    script(a, "'a2'")  # an edit: a's first store sweeps a's old code only
    assert outcome(run(sys.executable, [str(a)], cache)) == "computed"
    assert len(list(Cache(cache).entries("__main__.load"))) == 2
    assert outcome(run(sys.executable, [str(b)], cache)) == "hit"
    assert outcome(run(sys.executable, [str(a)], cache)) == "hit"


def test_prune_keeps_every_scripts_newest_entries(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = script(tmp_path / "a" / "run.py", "'a'")
    b = script(tmp_path / "b" / "run.py", "'b'")
    run(sys.executable, [str(a)], cache)
    run(sys.executable, [str(b)], cache)  # b's code is newer than a's, in another scope
    assert Cache(cache).prune() == 0
    assert [outcome(run(sys.executable, [str(p)], cache)) for p in (a, b)] == ["hit", "hit"]


def test_the_scope_is_in_the_entry_header(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = script(tmp_path / "a" / "run.py", "'a'")
    run(sys.executable, [str(a)], cache)
    (stored,) = Cache(cache).store.scan()
    assert _entry.read_header(stored.head).scope == str(a.resolve())


SPAWN_SCRIPT = """
import multiprocessing as mp
from memojar import cached

@cached
def load(x):
    return (x, mp.current_process().name)

def in_worker(x):
    return load(x), load.cache_info().hits, load.cache_key(x)

if __name__ == "__main__":
    parent = load(3)
    with mp.get_context({method!r}).Pool(1) as pool:
        value, hits, key = pool.apply_async(in_worker, (3,)).get(timeout=60)
    print(value == parent, hits, key == load.cache_key(3))
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_spawned_worker_keys_like_the_script(tmp_path: Path, method: str) -> None:
    """The worker's ``__mp_main__`` has the script's scope: the same key for the same call."""
    path = tmp_path / "main.py"
    path.write_text(SPAWN_SCRIPT.format(method=method))
    out = run(sys.executable, [str(path)], tmp_path / "cache")
    assert out.split()[-1] == "True"


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_spawned_worker_hits_the_scripts_entry(tmp_path: Path, method: str) -> None:
    path = tmp_path / "main.py"
    path.write_text(SPAWN_SCRIPT.format(method=method))
    out = run(sys.executable, [str(path)], tmp_path / "cache")
    assert out.split() == ["True", "1", "True"]  # the worker's __mp_main__.load hit


# --- notebooks ---------------------------------------------------------------------------

NOTEBOOK = """
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
import os, sys
config = Config()
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)
tell = sys.argv[1]
if tell != "env":  # ipykernel copies $JPY_SESSION_NAME into __session__; VS Code sets its own
    shell.user_ns[tell] = sys.argv[2]
cell = '''
from memojar import cached

@cached
def load(x):
    print("computed")
    return "same code in every notebook"
'''
shell.run_cell(cell).raise_error()
shell.run_cell("print(load(3))").raise_error()
"""


@pytest.mark.parametrize("tell", ["env", "__session__", "__vsc_ipynb_file__"])
def test_two_notebooks_defining_load_keep_their_entries(tmp_path: Path, tell: str) -> None:
    pytest.importorskip("IPython")
    cache = tmp_path / "cache"
    runner = tmp_path / "notebook.py"
    runner.write_text(NOTEBOOK)

    def notebook(path: str) -> str:
        env = {"JPY_SESSION_NAME": path} if tell == "env" else {}
        return outcome(run(sys.executable, [str(runner), tell, path], cache, env=env))

    a, b = str(tmp_path / "a.ipynb"), str(tmp_path / "b.ipynb")
    assert [notebook(p) for p in (a, b, a, b)] == ["computed", "computed", "hit", "hit"]


def test_a_real_kernel_is_scoped_by_its_notebook(tmp_path: Path) -> None:
    """ipykernel, started as Jupyter Server starts it (``JPY_SESSION_NAME``)."""
    pytest.importorskip("ipykernel")
    manager_mod = pytest.importorskip("jupyter_client.manager")
    cache = tmp_path / "cache"
    cell = textwrap.dedent("""
        from memojar import cached

        @cached
        def load(x):
            print("computed")
            return 1

        load(3)
        print(load.__memojar__.scope)
    """)

    def kernel(notebook: str) -> list[str]:
        env = {**os.environ, "MEMOJAR_DIR": str(cache), "PYTHONPATH": SRC,
               "JPY_SESSION_NAME": notebook}
        km, kc = manager_mod.start_new_kernel(kernel_name="python3", env=env,
                                              startup_timeout=60)
        out: list[str] = []
        try:
            reply = kc.execute_interactive(
                cell, timeout=60,
                output_hook=lambda msg: out.append(msg["content"].get("text", "")),
            )
            assert reply["content"]["status"] == "ok", reply["content"]
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        return "".join(out).split()

    a, b = str(tmp_path / "a.ipynb"), str(tmp_path / "b.ipynb")
    assert kernel(a) == ["computed", a]
    assert kernel(b) == ["computed", b]
    assert kernel(a) == [a]


# --- Python versions ---------------------------------------------------------------------

def _candidates() -> list[str]:
    found = os.environ.get("MEMOJAR_TEST_PYTHONS", "").split(os.pathsep)
    found += [shutil.which(f"python3.{minor}") or "" for minor in range(10, 15)]
    found += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python")))
    return [p for p in dict.fromkeys(found) if p]


DEPENDENCIES = ("xxhash", "filelock", "platformdirs")


def _version(python: str, imports: tuple[str, ...] = ()) -> str | None:
    """``python``'s major.minor if it runs (and imports ``imports``), else None."""
    probe = f"import sys; {'; '.join(f'import {m}' for m in imports) or 'pass'}; " \
            "print('%d.%d' % sys.version_info[:2])"
    try:
        proc = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


@pytest.fixture(scope="session")
def other(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter of another minor version that can import memojar's dependencies: one
    that has them, else a venv of another installed Python with them installed by pip."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    others = [p for p in _candidates() if _version(p) not in (None, here)]
    for python in others:
        if _version(python, DEPENDENCIES):
            return python
    tried = []
    for python in others:
        venv = tmp_path_factory.mktemp("other-python") / "venv"
        bin_python = str(venv / "bin" / "python")
        try:
            subprocess.run([python, "-m", "venv", str(venv)], check=True,
                           capture_output=True, timeout=120)
            subprocess.run([bin_python, "-m", "pip", "install", "-q", *DEPENDENCIES],
                           check=True, capture_output=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"{python}: {type(exc).__name__}")
            continue
        if _version(bin_python, DEPENDENCIES):
            return bin_python
    pytest.skip(
        "no second Python version to share the cache with: found "
        + ("; ".join(tried) if tried else "no other python3.X")
        + " (set MEMOJAR_TEST_PYTHONS to another 3.x with xxhash, filelock and platformdirs)"
    )


@pytest.mark.parametrize("where", ["script", "module"])
def test_two_python_versions_alternating_each_hit_from_their_second_run(
    tmp_path: Path, other: str, where: str
) -> None:
    """A script's __main__.load, or analysis.load imported by a 3.11 and a 3.12 project."""
    cache = tmp_path / "cache"
    if where == "script":
        args = [str(script(tmp_path / "run.py", "'value'"))]
    else:
        script(tmp_path / "lib" / "analysis.py", "'value'")
        args = ["-c", f"import sys; sys.path.insert(0, {str(tmp_path / 'lib')!r}); "
                      "import analysis"]
    runs = [sys.executable, other, sys.executable, other, sys.executable]
    assert [outcome(run(p, args, cache)) for p in runs] == [
        "computed", "computed", "hit", "hit", "hit"]
    pythons = sorted(e.python for e in Cache(cache).entries())
    assert len(set(pythons)) == 2 and len(pythons) == 2


def test_prune_on_another_python_keeps_this_pythons_entries(tmp_path: Path, other: str) -> None:
    cache = tmp_path / "cache"
    a = script(tmp_path / "run.py", "'value'")
    run(sys.executable, [str(a)], cache)
    out = run(other, ["-m", "memojar", "--dir", str(cache), "prune"], cache)
    assert out.startswith("removed 0 entries")
    assert outcome(run(sys.executable, [str(a)], cache)) == "hit"


def test_prune_other_pythons_removes_them_when_asked(tmp_path: Path, other: str) -> None:
    cache = tmp_path / "cache"
    a = script(tmp_path / "run.py", "'value'")
    run(sys.executable, [str(a)], cache)
    run(other, [str(a)], cache)
    out = run(other, ["-m", "memojar", "--dir", str(cache), "prune", "--other-pythons"], cache)
    assert out.startswith("removed 1 entry;")
    assert outcome(run(sys.executable, [str(a)], cache)) == "computed"
    assert outcome(run(other, [str(a)], cache)) == "hit"


def test_ls_on_another_python_shows_other_python_not_incompatible(
    tmp_path: Path, other: str
) -> None:
    cache = tmp_path / "cache"
    a = script(tmp_path / "run.py", "'value'")
    run(sys.executable, [str(a)], cache)
    listing = run(other, ["-m", "memojar", "--dir", str(cache), "ls", "__main__.load"], cache)
    assert "other Python" in listing and "incompatible" not in listing


def test_ls_function_shows_each_entrys_script(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = script(tmp_path / "a" / "run.py", "'a'")
    b = script(tmp_path / "b" / "run.py", "'b'")
    for path in (a, b):
        run(sys.executable, [str(path)], cache)
    listing = run(sys.executable, ["-m", "memojar", "--dir", str(cache), "ls", "__main__.load"],
                  cache)
    assert "SCRIPT OR NOTEBOOK" in listing
    assert str(a.resolve()) in listing and str(b.resolve()) in listing
    assert listing.count("fresh") == 2  # neither supersedes the other


DOCSTRING = """
from memojar import cached

class Model:
    \"\"\"Rows of the sales table.\"\"\"

@cached
def describe(x):
    return Model.__doc__

print(repr(describe(1)))
"""


def test_runs_with_and_without_optimize_flags_keep_their_own_values(tmp_path: Path) -> None:
    """``-OO`` strips docstrings, which the code's fingerprint leaves out: a plain run and
    an ``-OO`` run of one script shared a key, and each got the other's value (``None``
    for the docstring, or the docstring where ``-OO`` has none)."""
    path = tmp_path / "describe.py"
    path.write_text(DOCSTRING)
    cache = tmp_path / "cache"
    outs = [run(sys.executable, [*flags, str(path)], cache).strip()
            for flags in ([], ["-OO"], [], ["-OO"], ["-O"])]
    assert outs == ["'Rows of the sales table.'", "None", "'Rows of the sales table.'", "None",
                    "'Rows of the sales table.'"]


ASSERTING = """
from memojar import cached

@cached
def check(x):
    assert x >= 0, "negative"
    print("computed")
    return x

check(1)
"""


def test_runs_with_and_without_o_keep_each_others_entries(tmp_path: Path, location: str) -> None:
    """``-O`` strips a function's ``assert``, so its code's fingerprint differs from a plain
    run's. Old: the header named the same Python for both, so the ``-O`` run's first store
    swept the plain run's entry as older code of its scope and Python, and ``prune`` in
    either run removed the other's as superseded: the two recomputed each other's keys."""
    path = tmp_path / "asserting.py"
    path.write_text(ASSERTING)
    env = {"MEMOJAR_SECRET": "team"}

    def call(*flags: str) -> str:
        return outcome(run(sys.executable, [*flags, str(path)], location, env))

    def prune(*flags: str) -> None:
        run(sys.executable, [*flags, "-c", "from memojar import Cache; Cache().prune()"],
            location, env)

    assert [call(), call("-O"), call(), call("-O")] == ["computed", "computed", "hit", "hit"]
    prune("-O")
    assert call() == "hit"
    prune()
    assert call("-O") == "hit"
