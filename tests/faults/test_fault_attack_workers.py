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

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# --- the check of a copy's sender's identity, with its data globals taken as sent -----------
# A copy's data globals (an instance, a table) came inside it, pickled from the sender's
# objects: their rows are taken as the sender made them (a global of 5,000 instances cost a
# loky batch 0.1 s to digest again). What the worker resolves itself must still be checked.

SENDER = """\
import functools, sys
import cloudpickle
import helpers
from memojar import Cache

cache = Cache(sys.argv[1])
DATA = [helpers.Item(i) for i in range(50)]  # data sent inside the copy: taken as sent
TABLE = [*range(20000), helpers.scale]  # a helper past what the walk looks at

@cache.cached
def attribute(x):  # helpers.CFG is the worker's own (the module goes by reference)
    return helpers.CFG.k * x + 0 * len(DATA)

@cache.cached
def helper(x):  # helpers.scale too
    return helpers.scale(x) + 0 * len(DATA)

@cache.cached
def held(x):  # the class of DATA's items goes by reference: the worker's helpers.Item
    return DATA[0].scaled(x)

@cache.cached
def deep(x):  # only the digest of TABLE meets helpers.scale
    return TABLE[-1](x) + 0 * len(DATA)

partial = cache.cached(functools.partial(helpers.power, 1))  # helpers.CFG: the worker's

class Model:  # sent by value: a worker's ``__main__`` does not hold it
    def other(self, x):  # only the class reaches helpers.scale
        return helpers.scale(x)

    @cache.cached(ignore=("self",))
    def predict(self, x):
        return self.other(x) + 0 * len(DATA)

method = Model().predict

if __name__ == "__main__":
    f = globals()[sys.argv[2]]
    print(f(0), f(1))  # the identity is made here, with helpers as it is: x * 2
    with open(sys.argv[3], "wb") as out:
        out.write(cloudpickle.dumps(f))
"""

HELPERS = """\
class Item:
    def __init__(self, i):
        self.i = i

    def scaled(self, x):
        return scale(x)

class Cfg:
    def __init__(self, k):
        self.k = k

CFG = Cfg({k})

def scale(x):
    return x * {k}

def power(p, x):
    return CFG.k * x ** p
"""

WORKER = """\
import importlib, sys
import cloudpickle
import helpers

blob = open(sys.argv[1], "rb").read()
first = cloudpickle.loads(blob)
print(first(1), first.cache_info().hits)  # the sender's identity: its entry
if sys.argv[2] == "reload":  # dask's client.upload_file: the module edited and reloaded
    with open("helpers.py", "w") as f:
        f.write(sys.argv[3])
    importlib.invalidate_caches()
    importlib.reload(helpers)
copy = cloudpickle.loads(blob)  # the next batch's copy
print(copy(2), copy.cache_info().hits)
"""


def _copy_runs(tmp_path: Path, name: str, edit: str) -> list[str]:
    """The sender makes its identity with ``helpers`` as ``x * 2`` and sends a copy; a worker
    runs it with ``helpers`` edited to ``x * 3`` (before it starts, or reloaded between two
    copies); then the sender's code runs again: ``f(2)`` must be its own value."""
    (tmp_path / "job.py").write_text(SENDER)
    (tmp_path / "worker.py").write_text(WORKER)
    src = Path(__file__).resolve().parents[2] / "src"
    env = {"PYTHONPATH": f"{src}:{tmp_path}", "PATH": "/usr/bin:/bin",
           "PYTHONDONTWRITEBYTECODE": "1"}
    cache, blob = str(tmp_path / "cache"), str(tmp_path / "copy.pkl")
    old, new = HELPERS.format(k=2), HELPERS.format(k=3)

    def run(*argv: str) -> str:
        proc = subprocess.run([sys.executable, "-B", *argv], capture_output=True, text=True,
                              timeout=HANG, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.strip().replace("\n", " | ")

    (tmp_path / "helpers.py").write_text(old)
    outs = [run("job.py", cache, name, blob)]
    if edit == "before":
        (tmp_path / "helpers.py").write_text(new)
    outs.append(run("worker.py", blob, edit, new))
    (tmp_path / "helpers.py").write_text(old)
    outs.append(run("job.py", cache, name, blob + ".again"))
    outs.append(run("-c", "import sys, cloudpickle\n"
                    f"f = cloudpickle.loads(open({blob!r} + '.again', 'rb').read())\n"
                    "print(f(2))"))
    return outs


@pytest.mark.parametrize(
    "name", ["attribute", "helper", "held", "deep", "partial", "method"])
def test_a_copy_whose_data_is_taken_as_sent_still_checks_what_the_worker_imports(
    tmp_path: Path, name: str,
) -> None:
    """A worker started after ``helpers.py`` was edited: its copy's data global is taken as
    sent, and what it reaches in ``helpers`` (an attribute of the module, a function
    imported from it, the class of the data's items, a function only the digest of a big
    table meets, the module globals
    of a partial's function, another method of a cached method's class, which cloudpickle
    sends by value) is checked: the worker stores ``x * 3`` under its own identity, and
    the sender's code gets ``4`` for ``f(2)``, never ``6``. The method failed before this
    commit's fix of ``_class_of_method``: its class was not found in the worker."""
    first, worker, again, later = _copy_runs(tmp_path, name, "before")
    assert first == "0 2"
    assert worker == "3 0 | 6 0"  # its own identity: computed, not the sender's entries
    assert (again, later) == ("0 2", "4")


@pytest.mark.parametrize("name", ["attribute", "helper", "held", "deep", "method"])
def test_a_copy_in_a_worker_that_reloads_a_helper_checks_each_copy(
    tmp_path: Path, name: str,
) -> None:
    """dask's ``client.upload_file`` edits and reloads a helper module in running workers:
    the copy before the reload takes the sender's identity (it hits its entry), the next
    batch's copy after it must not (no identity agreed before is trusted again)."""
    first, worker, again, later = _copy_runs(tmp_path, name, "reload")
    assert first == "0 2"
    assert worker == "2 1 | 6 0"
    assert (again, later) == ("0 2", "4")


MUTATED_AFTER_THE_FIRST_CALL = """\
import sys
import cloudpickle
from memojar import Cache

cache = Cache(sys.argv[1])

class Item:
    def __init__(self, i):
        self.i = i

ITEMS = [Item(i) for i in range(3)]

@cache.cached
def count(x):
    return len(ITEMS) + x

print(count(1))  # the identity is made here: ITEMS read once
ITEMS.append(Item(3))
copy = cloudpickle.loads(cloudpickle.dumps(count))  # a worker's copy: ITEMS as it is now
print(copy(1), copy.cache_info().hits, count(1))
"""


def test_a_copy_takes_its_data_globals_as_its_sender_hashed_them(tmp_path: Path) -> None:
    """A global mutated after the function's first call is read once (Known limits): the
    function keeps the identity of its first call, and a copy sent after the mutation
    behaves as it (it hits its entries). Before, the copy digested the mutated global
    again, made another identity and computed 5 where the function returns 4."""
    (tmp_path / "job.py").write_text(MUTATED_AFTER_THE_FIRST_CALL)
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.run([sys.executable, "job.py", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=HANG, cwd=tmp_path,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["4", "4", "1", "4"]


def test_a_copy_made_by_another_pythons_bytecode_is_refused_when_it_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """cloudpickle sends a copy's code by value, memojar's wrapper too: a copy made by Python
    3.12 loaded in a 3.11 worker (or the reverse; the two take the same code() arguments)
    and crashed it with a segmentation fault at its first call. The copy now says which
    Python made it, and one of another bytecode is refused as it is unpickled."""
    cloudpickle = pytest.importorskip("cloudpickle")
    from memojar import Cache, _decorator

    cache = Cache(str(tmp_path / "cache"))

    def make() -> Any:
        @cache.cached
        def load(x: int) -> int:
            return x * 2

        return load

    blob = cloudpickle.dumps(make())
    assert cloudpickle.loads(blob)(2) == 4  # the same Python: as before
    monkeypatch.setattr(_decorator, "_BYTECODE", b"\x00\x00\r\n", raising=False)
    with pytest.raises(pickle.UnpicklingError, match=r"made by Python 3\.\d+\.\d+ and "
                       r"cannot run in Python .*run the workers on the sender's Python"):
        cloudpickle.loads(blob)


NOT_WALKED_AGAIN = """\
import sys
import cloudpickle
import helpers
from memojar import Cache, _identity

cache = Cache(sys.argv[1])
DATA = [helpers.Item(i) for i in range(5000)]

@cache.cached
def load(x):
    return DATA[0].scaled(x)

class Model:  # sent by value with a copy of its method
    DATA = [helpers.Item(i) for i in range(5000)]

    @cache.cached(ignore=("self",))
    def load(self, x):
        return self.DATA[0].scaled(x)

load = load if sys.argv[2] == "global" else Model().load
print(load(1))
blob = cloudpickle.dumps(load)
del Model  # as in a loky worker, whose __main__ does not hold it

def refused(*args, **kwargs):
    raise AssertionError("digested again")

_identity._value_shape = refused  # a digest of DATA's state now fails the check
copy = cloudpickle.loads(blob)
print(copy(1), copy.cache_info().hits)
"""


@pytest.mark.parametrize("where", ["global", "class"])
def test_a_copys_data_global_is_not_digested_again_where_it_lands(
    tmp_path: Path, where: str,
) -> None:
    """Each task batch of joblib/loky or dask brings a new copy: one that digested its
    global of 5,000 instances again paid ~0.1 s a batch (a class attribute of a cached
    method's class, sent by value with it, too). Its sender's row is taken (the class of
    the items, which the worker imports, is still checked): the copy hits."""
    (tmp_path / "job.py").write_text(NOT_WALKED_AGAIN)
    (tmp_path / "helpers.py").write_text(HELPERS.format(k=2))
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.run([sys.executable, "-B", "job.py", str(tmp_path / "cache"), where],
                          capture_output=True, text=True, timeout=HANG, cwd=tmp_path,
                          env={"PYTHONPATH": f"{src}:{tmp_path}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["2", "2", "1"]


REIMPORTED_MAIN = """\
import multiprocessing, pathlib, sys
import cloudpickle
import runner
from memojar import Cache

cache = Cache(sys.argv[1])

class Model:
    def other(self, x):
        return x * 2

    @cache.cached(ignore=("self",))
    def predict(self, x):
        return self.other(x)

if __name__ == "__main__":
    if sys.argv[2] == "again":
        print(Model().predict(2))
        raise SystemExit
    print(Model().predict(1))
    blob = cloudpickle.dumps(Model().predict)  # the class goes by value, as it is now
    script = pathlib.Path(__file__)  # edited before the worker imports it again
    script.write_text(script.read_text().replace("return x * 2", "return x * 3"))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print(pool.apply(runner.run, (blob, 2)))
"""


NESTED = REIMPORTED_MAIN.replace("class Model:", "class Outer:\n  class Model:").replace(
    "Model()", "Outer.Model()")


@pytest.mark.parametrize("script", [REIMPORTED_MAIN, NESTED], ids=["class", "nested"])
def test_a_copy_of_a_method_in_a_worker_that_imported_the_script_again_follows_its_own_class(
    tmp_path: Path, script: str
) -> None:
    """A spawn worker (dask's are) imports the script again as ``__main__``: a copy of a
    cached method walked the class of that name there, the edited file's, not the one
    sent with it, whose old ``other`` it ran; it stored 4 under the new class's identity,
    and the edited script's ``predict(2)`` read 4, not 6. Still so for a class nested in
    a class (``Outer.Model``), which cloudpickle makes again as ``Model``: the copy did
    not know it for its own."""
    (tmp_path / "job.py").write_text(script)
    (tmp_path / "runner.py").write_text(
        "import cloudpickle\n\ndef run(blob, x):\n    return cloudpickle.loads(blob)(x)\n")
    src = Path(__file__).resolve().parents[2] / "src"

    def run(mode: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-B", "job.py", str(tmp_path / "cache"), mode],
            capture_output=True, text=True, timeout=HANG, cwd=tmp_path,
            env={"PYTHONPATH": f"{src}:{tmp_path}", "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.split()

    assert run("send") == ["2", "4"]  # the copy runs the class it came with: x * 2
    assert run("again") == ["6"]  # the edited script: its own value



def _run_logged(tmp_path: Path, script: str) -> tuple[list[str], list[str]]:
    """Run ``script`` (argv: the cache, a log) in ``tmp_path``: its output lines and the
    lines its calls logged, the script's and, after ``workers``, the workers'."""
    (tmp_path / "job.py").write_text(script)
    log = tmp_path / "calls.log"
    log.write_text("")
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.run(
        [sys.executable, "job.py", str(tmp_path / "cache"), str(log)], capture_output=True,
        text=True, timeout=HANG, cwd=tmp_path,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines(), log.read_text().splitlines()


CLASS_ATTRIBUTES = """\
import enum, sys
from joblib import Parallel, delayed
from memojar import Cache

cache = Cache(sys.argv[1])

def log(what):
    with open(sys.argv[2], "a") as f:
        f.write(what + "\\n")

class Scaler:
    FACTOR = 2

    def apply(self, x):
        return x * self.FACTOR

class Color(enum.Enum):
    RED = 1

@cache.cached
def run(kind, x):
    return kind().apply(x)

@cache.cached
def paint(color):
    log(f"paint {color.name}")
    return color.value

if __name__ == "__main__":
    print(paint(Color.RED))
    log("workers")
    print(Parallel(n_jobs=2, backend="loky")(
        [delayed(run)(Scaler, 5), delayed(run)(Scaler, 6), delayed(paint)(Color.RED)]))
"""


def test_a_scripts_class_attributes_count_in_loky_workers(tmp_path: Path) -> None:
    """A loky worker's ``__main__`` is loky's launcher, in site-packages: the rows of a
    script's class attributes (``__main__.Scaler.FACTOR``) were taken for a library's
    there and left out. ``Scaler`` given as an argument keyed alike in the workers
    whatever its ``FACTOR``: the script edited to ``FACTOR = 3`` got 10 and 12 from them,
    the old code's values. An Enum's (``_member_type_``) was left out the same way, so an
    Enum argument never hit the script's entries in a worker."""
    out, calls = _run_logged(tmp_path, CLASS_ATTRIBUTES)
    assert out == ["1", "[10, 12, 1]"]
    assert calls == ["paint RED", "workers"]  # the worker hit the script's entry
    out, calls = _run_logged(tmp_path, CLASS_ATTRIBUTES.replace("FACTOR = 2", "FACTOR = 3"))
    assert out == ["1", "[15, 18, 1]"]
    assert calls == ["workers"]


CLASSES_A_FUNCTION_MAKES = """\
import sys
from joblib import Parallel, delayed
from memojar import Cache

cache = Cache(sys.argv[1])

def log(what):
    with open(sys.argv[2], "a") as f:
        f.write(what + "\\n")

def make(k):
    class Local:
        K = k

        def scale(self, x):
            return x * self.K

        @cache.cached
        def twice(self, x):
            log(f"twice {self.K} {x}")
            return 2 * x * self.K

    return Local

class Outer:
    class Inner:
        def scale(self, x):
            return x * 7

@cache.cached
def run(kind, x):
    log(f"run {kind.__name__} {x}")
    return kind().scale(x)

if __name__ == "__main__":
    Local = make(1)
    print(Local().twice(1), run(Outer.Inner, 1))
    log("workers")
    print(Parallel(n_jobs=2, backend="loky", batch_size=1)(
        [delayed(run)(make(k), 5) for k in (2, 3, 4, 5)]
        + [delayed(Local().twice)(x) for x in (1, 2)] + [delayed(run)(Outer.Inner, 1)]))
"""


def test_classes_a_function_makes_key_by_what_they_hold_in_loky_workers(
    tmp_path: Path,
) -> None:
    """cloudpickle makes a class a function made (``make.<locals>.Local``) again in a
    worker under its bare name (``Local``), and the data of such a class counted in its
    fingerprint only under a ``<locals>`` name: in loky workers ``make(2)``, ``make(3)``,
    ``make(4)`` and ``make(5)`` keyed alike, and all four calls returned 10. An instance
    of one (``self`` of a cached method) keyed under the other name in the workers: no
    worker hit the script's entries. Nor did a class nested in a class (``Outer.Inner``,
    sent without ``Outer``, which counted in its key)."""
    out, calls = _run_logged(tmp_path, CLASSES_A_FUNCTION_MAKES)
    assert out == ["2 7", "[10, 15, 20, 25, 2, 4, 7]"]
    assert calls[:3] == ["twice 1 1", "run Inner 1", "workers"]
    # twice(1) and run(Outer.Inner, 1) hit the script's entries
    assert sorted(calls[3:]) == ["run Local 5"] * 4 + ["twice 1 2"]


MODULE_METADATA = """\
\"\"\"A script.\"\"\"
import multiprocessing, sys
from memojar import Cache

cache = Cache(sys.argv[1])

def log(what):
    with open(sys.argv[2], "a") as f:
        f.write(what + "\\n")

@cache.cached
def describe(x):
    log("describe")
    return (type(x).__name__, describe.__doc__, len(type(x).__annotations__))

class Point:
    x: int = 0

if __name__ == "__main__":
    print(describe(Point()))
    log("workers")
    for method in ("spawn", "forkserver"):
        with multiprocessing.get_context(method).Pool(1) as pool:
            print(pool.apply(describe, (Point(),)))
"""


def test_a_function_reading_dunder_attributes_hits_its_scripts_entries_in_spawned_workers(
    tmp_path: Path,
) -> None:
    """A name loaded as an attribute (``type(x).__name__``) is looked up among the
    module's globals too, and ``__name__`` there is ``__mp_main__`` in a spawn or
    forkserver worker (``__package__``, ``__loader__``, ``__annotations__`` differ too):
    the worker's identity of ``describe`` was another than the script's, and it computed
    again every call the script had stored."""
    out, calls = _run_logged(tmp_path, MODULE_METADATA)
    assert out == ["('Point', None, 1)"] * 3
    assert calls == ["describe", "workers"]  # both workers hit the script's entry


NOTEBOOK_CELL = """\
import sys
from joblib import Parallel, delayed
from memojar import Cache

cache = Cache(CACHE)

def log(what):
    with open(LOG, "a") as f:
        f.write(what + "\\n")

@cache.cached
def load(x):
    log(f"load {x}")
    return x * 2

print(load(1))
log("workers")
print(Parallel(n_jobs=2, backend="loky")(delayed(load)(x) for x in (1, 1, 2)))
"""

NOTEBOOK = """\
import sys
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
config = Config()
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)
shell.user_ns.update(CACHE=sys.argv[1], LOG=sys.argv[2])
shell.run_cell(open("cell.py").read()).raise_error()
"""


def test_a_notebooks_function_calling_open_hits_its_entries_in_loky_workers(
    tmp_path: Path,
) -> None:
    """IPython binds ``open`` in a notebook's namespace to a function of its own whose
    ``__module__`` says ``io``: cloudpickle sends it by value, and a loky worker, which
    never imported IPython, took the module its globals name
    (``IPython.core.interactiveshell``) for the user's code and walked it. Each worker
    made another identity for every cached function of a notebook that calls ``open``
    (here through ``log``) and computed again what the notebook had stored."""
    pytest.importorskip("IPython")
    (tmp_path / "cell.py").write_text(NOTEBOOK_CELL)
    out, calls = _run_logged(tmp_path, NOTEBOOK)
    assert out == ["2", "[2, 2, 4]"]
    assert calls == ["load 1", "workers", "load 2"]  # load(1) hit the notebook's entry


CLASS_CHANGED_IN_PLACE = [
    """\
from joblib import Parallel, delayed
from memojar import Cache

cache = Cache(CACHE)

class Model:
    def predict(self, x):
        return x * 2

@cache.cached
def score(model, x):
    return model.predict(x)

@cache.cached
def predicted(x):
    return Model().predict(x)

print(Parallel(n_jobs=2, backend="loky")(delayed(score)(Model(), x) for x in (1, 2)))
print(Parallel(n_jobs=2, backend="loky")(delayed(predicted)(x) for x in (1, 2)))
""",
    """\
def triple(self, x):
    return x * 3

Model.predict = triple  # the same class, changed in place
print(score(Model(), 5), predicted(5))
print(Parallel(n_jobs=2, backend="loky")(delayed(score)(Model(), x) for x in (1, 2)))
print(Parallel(n_jobs=2, backend="loky")(delayed(predicted)(x) for x in (1, 2)))
"""]


def test_a_class_a_notebook_changes_in_place_is_made_again_in_loky_workers(
    tmp_path: Path,
) -> None:
    """cloudpickle sends a notebook's class with an id; when it comes again to a worker
    that has it (loky's workers live from one ``Parallel`` to the next), it sets the
    members of the class it made the first time. The notebook saw its own
    ``Model.predict = triple`` (a cell re-checks what identities were made from), but the
    workers kept the identity they had made of ``Model`` and returned the old
    ``predict``'s values: 2 and 4 for 3 and 6, as an argument's class and as a class the
    cached function reads."""
    pytest.importorskip("IPython")
    script = NOTEBOOK.replace('open("cell.py").read()', "cell").replace(
        "shell.run_cell(", "for cell in CELLS:\n    shell.run_cell(")
    out, _ = _run_logged(tmp_path, f"CELLS = {CLASS_CHANGED_IN_PLACE!r}\n{script}")
    assert out == ["[2, 4]", "[2, 4]", "15 15", "[3, 6]", "[3, 6]"]


CAPTURED_DATA = """\
import sys
from joblib import Parallel, delayed
from memojar import Cache

cache = Cache(sys.argv[1])

def make(columns):
    return lambda row: [row[c] for c in columns]

PICK = make(["a"])

@cache.cached
def picked(row):
    return PICK(row)

@cache.cached
def apply(fn, row):
    return fn(row)

if __name__ == "__main__":
    row = {"a": 1, "b": 2}
    print(picked(row), apply(make(["a"]), row), apply(make(["b"]), row))
    print(Parallel(n_jobs=2, backend="loky")(
        delayed(apply)(make([c]), row) for c in ("b", "a", "b")))
"""


def test_what_a_closure_captures_counts_as_a_global_and_as_an_argument(
    tmp_path: Path,
) -> None:
    """A closure counted what it captures by type when it was no decorated function (a
    list, a dict, an instance: ``sibling_of`` tells only decorated closures apart):
    ``apply(make(["b"]), row)`` keyed as ``apply(make(["a"]), row)`` and returned its
    value, in the script and in its workers; and ``PICK = make(["a"])`` edited to
    ``make(["b"])`` kept ``picked``'s identity, which returned the old value."""
    out, _ = _run_logged(tmp_path, CAPTURED_DATA)
    assert out == ["[1] [1] [2]", "[[2], [1], [2]]"]
    out, _ = _run_logged(tmp_path, CAPTURED_DATA.replace('make(["a"])', 'make(["b"])'))
    assert out == ["[2] [2] [2]", "[[2], [1], [2]]"]
