"""Attack: a script's own classes and functions as arguments of calls made in joblib's loky
workers.

Found by the attack session: in a loky worker the running ``__main__`` is loky's launcher,
a file in site-packages, so memojar took ``__main__`` for library code there; the script's
classes and functions that cloudpickle sent by value (which still say ``__main__``) were then
pickled by reference to make the key, and every such call raised ``TypeError: argument 'cfg'
of run cannot be pickled`` in the worker (a dataclass config, a bound method of the
script's class, a function passed as an argument). The worker must key them as the script
does: it hits the script's entries.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("joblib")

HANG = 120

SCRIPT = """\
import dataclasses, os, sys
from joblib import Parallel, delayed
from memojar import Cache

cache = Cache(sys.argv[1])
LOG = sys.argv[2]

def log(what):
    with open(LOG, "a") as f:
        f.write(what + "\\n")

@dataclasses.dataclass
class Config:
    k: int

@cache.cached
def run(cfg, x):
    log(f"run {cfg.k} {x}")
    return (cfg.k, x)

def double(x):
    return 2 * x

@cache.cached
def apply(fn, x):
    log(f"apply {x}")
    return fn(x)

class Model:
    def __init__(self, k):
        self.k = k

    @cache.cached
    def predict(self, x):
        log(f"predict {self.k} {x}")
        return (self.k, x)

if __name__ == "__main__":
    assert run(Config(2), 1) == (2, 1) and apply(double, 1) == 2
    assert Model(2).predict(1) == (2, 1)
    jobs = ([delayed(run)(Config(k), 1) for k in (2, 3)]
            + [delayed(apply)(double, x) for x in (1, 2)]
            + [delayed(Model(k).predict)(1) for k in (2, 3)])
    print(Parallel(n_jobs=2, backend="loky")(jobs))
"""


def test_a_scripts_classes_and_functions_key_alike_in_loky_workers(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    log = tmp_path / "calls.log"
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "cache"), str(log)], capture_output=True,
        text=True, timeout=HANG, cwd=tmp_path,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[(2, 1), (3, 1), 2, 4, (2, 1), (3, 1)]"
    # the script's three calls, then only the workers' new ones: (2, 1) and 1 were hits
    assert sorted(log.read_text().split("\n")[3:-1]) == ["apply 2", "predict 3 1", "run 3 1"]


CLASS_WITH_A_CACHED_METHOD = """\
import sys
from memojar import Cache

cache = Cache(sys.argv[1])

class Model:
    def __init__(self, k):
        self.k = k

    @cache.cached(ignore=("self",))
    def warm(self, x):
        return x

@cache.cached
def score(model):
    print("computed")
    return model.k

if sys.argv[2] == "warm":
    Model(1).warm(1)  # the method's memo changes state (its counters, its sweep)
print(score(Model(2)))
"""


def test_an_instance_keys_alike_whatever_its_classs_cached_methods_did(tmp_path: Path) -> None:
    """Found by the same attack: a class's identity took in the state of the memo behind each
    of its cached methods, so an instance keyed differently once a method had been called."""
    script = tmp_path / "job.py"
    script.write_text(CLASS_WITH_A_CACHED_METHOD)
    src = Path(__file__).resolve().parents[2] / "src"
    outs = [subprocess.run([sys.executable, str(script), str(tmp_path / "cache"), mode],
                           capture_output=True, text=True, timeout=HANG,
                           env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
            for mode in ("warm", "cold")]
    assert [o.returncode for o in outs] == [0, 0], outs[0].stderr + outs[1].stderr
    assert [o.stdout.split() for o in outs] == [["computed", "2"], ["2"]]


EDITED_HELPER = """\
import pathlib, sys
from joblib import Parallel, delayed
from memojar import Cache
from helpers import scale

cache = Cache(sys.argv[1])

@cache.cached
def load(x):
    return scale(x)

if __name__ == "__main__":
    print(load(0))  # the identity is made here, with helpers.scale as it is: x * 2
    if sys.argv[2] == "edit":  # edited before the workers start: they import x * 3
        pathlib.Path("helpers.py").write_text("def scale(x):\\n    return x * 3\\n")
    elif sys.argv[2] == "partial":  # the helper made a partial: another kind of row
        pathlib.Path("helpers.py").write_text(
            "import functools, operator\\nscale = functools.partial(operator.mul, 3)\\n")
    if sys.argv[2] != "again":
        print(Parallel(n_jobs=2, backend="loky")(delayed(load)(x) for x in (1, 2)))
    print(load(1))
"""


def test_a_copy_in_a_worker_that_imports_an_edited_helper_stores_under_its_own_identity(
    tmp_path: Path,
) -> None:
    """A function of ``__main__`` sent by value to loky workers kept the identity its
    sender made; workers started after an edit of ``helpers.py`` ran the new helper and
    stored its results under the old code's identity: a later run of the old code got
    ``3`` for ``load(1)`` (the new helper's value), not ``2``."""
    (tmp_path / "job.py").write_text(EDITED_HELPER)
    src = Path(__file__).resolve().parents[2] / "src"

    def run(mode: str) -> list[str]:
        (tmp_path / "helpers.py").write_text("def scale(x):\n    return x * 2\n")
        proc = subprocess.run(
            [sys.executable, "-B", "job.py", str(tmp_path / "cache"), mode],
            capture_output=True, text=True, timeout=HANG, cwd=tmp_path,
            env={"PYTHONPATH": f"{src}:{tmp_path}", "PATH": "/usr/bin:/bin",
                 "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.split("\n")[:-1]

    for edit in ("edit", "partial"):
        assert run(edit) == ["0", "[3, 6]", "2"]
        assert run("again") == ["0", "2"]  # the old helper again: its own value, never 3


OPTIMIZED_PARENT = """\
import sys
from joblib import Parallel, delayed
from memojar import Cache
import helpers

cache = Cache(sys.argv[1])

@cache.cached
def describe(x):
    return helpers.Model.__doc__

if __name__ == "__main__":
    print(repr(describe(0)))
    print(Parallel(n_jobs=2, backend="loky")(delayed(describe)(x) for x in (1, 2)))
    print(repr(describe(1)))
"""


def test_a_copy_in_a_worker_without_the_scripts_optimize_flag_keys_as_the_worker(
    tmp_path: Path,
) -> None:
    """loky starts its workers without the script's ``-OO``: a copy keyed its calls with
    the script's (``-OO``) keys, and stored the docstring the worker sees where the
    ``-OO`` script, whose ``describe(1)`` is ``None``, then read it."""
    (tmp_path / "job.py").write_text(OPTIMIZED_PARENT)
    (tmp_path / "helpers.py").write_text('class Model:\n    """Sales rows."""\n')
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.run(
        [sys.executable, "-OO", "-B", "job.py", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=HANG, cwd=tmp_path,
        env={"PYTHONPATH": f"{src}:{tmp_path}", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, _, last = proc.stdout.split("\n")[:3]
    assert (first, last) == ("None", "None")
