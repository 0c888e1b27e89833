"""In IPython, a helper, constant or class that a cell changes is seen at the next cell.

Each test runs its cells in a real IPython shell (``InteractiveShell``, as ipykernel runs
them: ``pre_run_cell`` and ``%autoreload`` included) in a fresh interpreter, so that no
shell, callback or record outlives it, and compares what each cell returned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_python

pytest.importorskip("IPython")

SHELL = r"""
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

config = Config()
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)
shown = []
for cell in json.loads(sys.argv[1]):
    result = shell.run_cell(cell)
    result.raise_error()
    shown.append(repr(result.result))
print(json.dumps(shown))
"""

DEFINE = """
from memojar import Cache
cache = Cache({directory!r})
K = 1
def g(x):
    return x + 1

@cache.cached{options}
def f(x):
    return g(x) * K
"""


def cells(tmp_path: Path, *cells: str, options: str = "") -> list[str]:
    """What each cell returned (its repr), after a first cell defining ``g``, ``K`` and the
    cached ``f(x) = g(x) * K`` on a cache in ``tmp_path``."""
    first = DEFINE.format(directory=str(tmp_path / "cache"), options=options)
    out = run_python(SHELL, json.dumps([first, *cells]), env={"PYTHONDONTWRITEBYTECODE": "1"})
    return json.loads(out.splitlines()[-1])[1:]


def kernel_cells(tmp_path: Path, sources: list[str]) -> list[str]:
    """What each cell of a notebook of ``sources`` shows (its ``text/plain``), run by a real
    ipykernel through nbclient, as Jupyter runs a notebook, in ``tmp_path``."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return ["".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs)
            for cell in notebook.cells]


def test_a_helper_redefined_in_another_cell_is_seen_at_the_next_cell(tmp_path: Path):
    # Before: 2, the old helper's value, until the cached function's own cell ran again.
    assert cells(tmp_path, "f(1)", "def g(x):\n    return x + 100", "f(1)") == [
        "2", "None", "101"]


def test_a_constant_bound_again_in_another_cell_is_seen_at_the_next_cell(tmp_path: Path):
    assert cells(tmp_path, "f(1)", "K = 5", "f(1)") == ["2", "None", "10"]


def test_a_helper_defined_after_the_first_call_is_seen(tmp_path: Path):
    # ``f`` read ``h`` as a builtin-free missing name at its first call; a cell defines it.
    out = cells(tmp_path,
                "@cache.cached\ndef k(x):\n    try:\n        return h(x)\n"
                "    except NameError:\n        return 'none'", "k(1)",
                "def h(x):\n    return x * 7", "k(1)")
    assert out[1:] == ["'none'", "None", "7"]


def test_the_memory_tier_does_not_return_the_old_helpers_value(tmp_path: Path):
    assert cells(tmp_path, "f(1)", "f(1)", "def g(x):\n    return x + 100", "f(1)",
                 options="(memory=10)") == ["2", "2", "None", "101"]


POINT = ("class P:\n    def __init__(self, x):\n        self.x = x\n"
         "    def __repr__(self):\n        return f'P({self.x * {sign}})'")


@pytest.mark.parametrize("memory", [None, 10], ids=["disk", "memory"])
def test_a_result_class_redefined_in_a_cell_is_not_returned_from_memory(
        tmp_path: Path, memory: int | None) -> None:
    # ``mk`` finds the class by a name computed when it runs: not in its identity, checked
    # at each hit as a result class. Before, the memory tier returned the instance of the
    # old class it held (P(1), not P(-1)), where a disk hit found the entry incompatible.
    out = cells(tmp_path, POINT.replace("{sign}", "1"),
                f"@cache.cached(memory={memory})\ndef mk(x):\n    return globals()['P'](x)",
                "mk(1)", "mk(1)", POINT.replace("{sign}", "-1"),
                "r = mk(1)\n(r, type(r) is P)", "mk(1)")
    assert out[2:] == ["P(1)", "P(1)", "None", "(P(-1), True)", "P(-1)"]


def test_a_helper_redefined_in_the_same_cell_is_seen_from_the_next_cell(tmp_path: Path):
    # The granularity is the cell: a cell's first call re-checks (after the cell's own
    # redefinitions before it); within the cell, later calls keep what that one found,
    # as a script does.
    out = cells(tmp_path, "f(1)",
                "def g(x):\n    return x + 100\nf(1)",
                "a = f(1)\ndef g(x):\n    return x + 1000\n(a, f(1))",
                "f(1)")
    assert out == ["2", "101", "(101, 101)", "1001"]


BUMPING = """
calls = 0
def bump():
    global calls
    calls += 1

@cache.cached
def counted(x):
    global calls
    calls += 1
    return x * 2

@cache.cached
def counted_by_helper(x):
    bump()
    return x * 3
"""


def test_a_global_counter_the_function_bumps_does_not_make_every_cell_miss(tmp_path: Path):
    # Before: each cell saw ``calls`` bound again (by the function itself), made the
    # identity again, recomputed and evicted the entry: in a notebook it never hit.
    out = cells(tmp_path, BUMPING, "counted(1), counted_by_helper(1)",
                "counted(1), counted_by_helper(1)", "counted.cache_explain(1)",
                "counted(1), counted_by_helper(1), calls",
                "counted.cache_info()[:2], counted_by_helper.cache_info()[:2]")
    assert out[1:] == ["(2, 3)", "(2, 3)", out[3], "(2, 3, 2)", "((2, 1), (2, 1))"]
    assert out[3].startswith("'hit")


def test_a_global_counter_bumped_by_a_call_that_raised_keeps_the_hit(tmp_path: Path):
    # A call that raised (or was interrupted) after bumping the counter: before, the next
    # cell made the identity again, recomputed and evicted the entry.
    out = cells(tmp_path, "n = 0\n@cache.cached\ndef h(x):\n    global n\n    n += 1\n"
                "    if x < 0:\n        raise ValueError(x)\n    return x * 2", "h(1)",
                "try:\n    h(-1)\nexcept ValueError:\n    pass", "h(1)", "h.cache_info()[:2]")
    assert out[1:] == ["2", "None", "2", "(1, 2)"]  # the call that raised: a miss too


def test_a_global_another_cached_function_binds_is_seen_by_a_reader(tmp_path: Path):
    # ``put`` binds STATE; ``get`` only reads it: its next cell sees the new value.
    out = cells(tmp_path, "STATE = 1\n@cache.cached\ndef put(x):\n    global STATE\n"
                "    STATE = x\n    return x\n@cache.cached\ndef get(x):\n"
                "    return STATE + x", "get(0)", "put(5)", "get(0)")
    assert out[1:] == ["1", "5", "5"]


def test_a_global_counter_bound_again_by_a_cell_is_still_seen(tmp_path: Path):
    out = cells(tmp_path, "n = 0\n@cache.cached\ndef h(x):\n    global n\n    n += 1\n"
                "    return x + n", "h(1)", "h(1)", "n = 10", "h(1)")
    assert out[1:] == ["2", "2", "None", "12"]


def test_a_global_a_cell_bound_again_stays_seen_after_another_function_binding_it_ran(
        tmp_path: Path):
    # ``get`` and ``put`` both bind ``MODE`` (a lazy setting); a cell binds it again, then
    # ``put`` runs before ``get`` is called. Before: ``put``'s run held the cell's value
    # for ``get`` as the functions' own, and ``get(1)`` hit the old mode's value, 1.
    define = ("MODE = 1\n@cache.cached\ndef get(x, mode=None):\n    global MODE\n"
              "    if mode is not None:\n        MODE = mode\n    return x * MODE\n"
              "@cache.cached\ndef put(x):\n    global MODE\n    MODE = MODE\n    return x")
    assert cells(tmp_path, define, "get(1)", "MODE = 5", "put(0)", "get(1)") == [
        "None", "1", "None", "0", "5"]


def test_cache_explain_names_the_helper_a_cell_changed(tmp_path: Path):
    out = cells(tmp_path, "f(1)", "def g(x):\n    return x + 100", "f.cache_explain(1)")
    assert out[-1] == "'incompatible: helper __main__.g changed'"


def test_cache_explain_names_the_constant_a_cell_changed(tmp_path: Path):
    out = cells(tmp_path, "f(1)", "K = 5", "f.cache_explain(1)")
    assert out[-1] == "'incompatible: constant __main__.K changed'"


# A call started in one cell and still running in a later one: a thread of the notebook's, or
# a task on the kernel's event loop (which runs between cells).
RUNNING = """
import asyncio, threading
go, started = threading.Event(), threading.Event()
@cache.cached
def slow(x):
    started.set()
    go.wait(60)
    return g(x)
@cache.cached
async def aslow(x):
    started.set()
    while not go.is_set():
        await asyncio.sleep(0.01)
    return g(x)
"""
START = {"thread": "out = []\nt = threading.Thread(target=lambda: out.append(slow(1)))\n"
                   "t.start()\nstarted.wait(60)",
         "task": "t = asyncio.ensure_future(aslow(1))\nawait asyncio.sleep(0)\nstarted.is_set()"}
FINISH = {"thread": "go.set()\nt.join()\nout[0]", "task": "go.set()\nawait t"}


@pytest.mark.parametrize("running", ["thread", "task"])
def test_a_call_running_while_a_cell_redefines_its_helper_stores_nothing_under_the_old_one(
        tmp_path: Path, running: str) -> None:
    # Before: the call's identity was made with the old ``g`` as it started, its value
    # computed with the new one (defined by a cell while it ran) and stored under that
    # identity: a kernel with the old ``g`` (the next day's, the first cells run again) got
    # 101 from ``slow(1)`` where ``g(1) * K`` is 2.
    edited = cells(tmp_path, RUNNING, START[running],
                   "def g(x):\n    return x + 100\ngo.set()", FINISH[running])
    assert edited[-1] == "101"
    again = cells(tmp_path, RUNNING, START[running], FINISH[running])
    assert again[-1] == "2"


@pytest.mark.parametrize("running", ["thread", "task"])
def test_a_call_running_while_its_own_cell_redefines_its_helper_stores_nothing_under_the_old_one(
        tmp_path: Path, running: str) -> None:
    # As above, within one cell: no cell starts while the call runs. Before: 101 stored
    # under the identity made with the old ``g``, and a kernel with it got 101 for 2.
    edited = cells(tmp_path, RUNNING, "\n".join((
        START[running], "def g(x):\n    return x + 100\ngo.set()", FINISH[running])))
    assert edited[-1] == "101"
    call = {"thread": "slow(1)", "task": "await aslow(1)"}[running]
    assert cells(tmp_path, RUNNING, f"go.set()\n{call}")[-1] == "2"


BINDING = """
import asyncio, threading
go, started = threading.Event(), threading.Event()
@cache.cached
def slow(x, reset=False):
    global K
    if reset:
        K = 1
    if x == 1:
        started.set()
        go.wait(60)
    return x * K
@cache.cached
async def aslow(x, reset=False):
    global K
    if reset:
        K = 1
    if x == 1:
        started.set()
        while not go.is_set():
            await asyncio.sleep(0.01)
    return x * K
"""


@pytest.mark.parametrize("running", ["thread", "task"])
def test_a_call_running_while_a_cell_binds_a_global_its_code_binds_keeps_it_seen(
        tmp_path: Path, running: str) -> None:
    # ``K``, which the function's code may bind itself, bound again by a cell while a call
    # runs. Before: the call's end held ``K = 5`` as the function's own, and the next
    # cell's ``slow(2)`` hit the value of ``K = 1``, 2.
    call = {"thread": "slow(2)", "task": "await aslow(2)"}[running]
    out = cells(tmp_path, BINDING, call, START[running], "K = 5\n" + FINISH[running], call)
    assert out[1:] == ["2", "True", "5", "10"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter_core's paths notice
@pytest.mark.parametrize("running", ["thread", "task"])
def test_a_real_kernel_sees_a_global_its_own_cell_binds_while_a_call_binding_it_runs(
        tmp_path: Path, running: str) -> None:
    # As above, the cell that started the call binds ``K`` itself while it runs: no cell
    # starts meanwhile. Before: the call's end held ``K = 5`` as the function's own (it
    # began and ended within the cell), and the next cell's ``slow(2)`` hit the value of
    # ``K = 1``, 2 (in ipykernel and InteractiveShell alike).
    call = {"thread": "slow(2)", "task": "await aslow(2)"}[running]
    sources = [DEFINE.format(directory=str(tmp_path / "cache"), options=""), BINDING, call,
               "\n".join((START[running], "K = 5", FINISH[running])), call, "K"]
    assert kernel_cells(tmp_path, sources)[2:] == ["2", "5", "10", "5"]


@pytest.mark.parametrize("change", ["def g(x):\n    return x + 100", "K = 100"])
def test_a_miss_after_a_change_within_its_cell_stores_nothing_under_the_old_identity(
        tmp_path: Path, change: str) -> None:
    # Before: ``f(2)``, computed with the new ``g`` (or ``K``) in the cell that changed it
    # after ``f(1)`` had made the identity, was stored under the old one's identity: a
    # kernel with the old ``g`` (the next day's, the first cell run alone) got its value.
    edited = cells(tmp_path, f"f(1)\n{change}\nf(2)")
    assert edited[-1] in ("102", "300")
    assert cells(tmp_path, "f(2)") == ["3"]


SENT = """
import subprocess, sys
import cloudpickle

class Config:
    def __init__(self, k):
        self.k = k

CONFIG = Config(1)

@cache.cached
def scaled(x):
    return x * CONFIG.k

def in_a_worker(*args):
    # another process, as a joblib (loky), dask or ray worker gets the function
    run = ("import cloudpickle, sys; f = cloudpickle.loads(sys.stdin.buffer.read()); "
           f"print([f(x) for x in {args!r}])")
    return subprocess.run([sys.executable, "-c", run], input=cloudpickle.dumps(scaled),
                          capture_output=True, check=True).stdout.decode().strip()
"""


def test_a_copy_sent_after_a_cell_bound_a_global_again_keys_by_the_new_one(tmp_path: Path):
    # ``CONFIG`` bound again by a cell; the function sent to a worker before its next call
    # here. Before: the copy carried the identity made with ``Config(1)`` and took its
    # data global as its sender had hashed it: it returned ``Config(1)``'s values for 1 and
    # 2 ("[1, 2, 15]") and stored 15 under the old identity, where a kernel with
    # ``Config(1)`` read it for ``scaled(3)``.
    pytest.importorskip("cloudpickle")
    out = cells(tmp_path, SENT, "scaled(1), scaled(2)", "CONFIG = Config(5)",
                "in_a_worker(1, 2, 3)", "CONFIG = Config(1)", "scaled(3)")
    assert out[1:] == ["(1, 2)", "None", "'[5, 10, 15]'", "None", "3"]


HELPERS = "FACTOR = {factor}\n\ndef scale(x):\n    return x * {times}\n"


@pytest.mark.parametrize("spelling", ["from helpers_nb import scale, FACTOR",
                                      "import helpers_nb\nscale = lambda x: helpers_nb.scale(x)"
                                      "\nFACTOR = None"])
def test_a_module_helper_autoreloaded_is_seen_at_the_next_cell(tmp_path: Path,
                                                               spelling: str):
    # %autoreload 2 replaces the __code__ of the module's old functions in place and binds
    # its names to new objects: either is seen at the next cell.
    module = tmp_path / "helpers_nb.py"
    module.write_text(HELPERS.format(factor=1, times=2))
    edit = (f"import os\nopen({str(module)!r}, 'w').write({HELPERS.format(factor=1, times=3)!r})"
            f"\nos.utime({str(module)!r}, (2e9, 2e9))")
    out = cells(tmp_path, "%load_ext autoreload", "%autoreload 2",
                f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n{spelling}",
                "@cache.cached\ndef m(x):\n    return scale(x)", "m(5)", edit, "m(5)")
    assert out[-4:] == ["None", "10", "None", "15"]


def test_a_module_constant_autoreloaded_is_seen_at_the_next_cell(tmp_path: Path):
    module = tmp_path / "consts_nb.py"
    module.write_text("FACTOR = 2.5\n")
    edit = (f"import os\nopen({str(module)!r}, 'w').write('FACTOR = 3.5\\n')"
            f"\nos.utime({str(module)!r}, (2e9, 2e9))")
    out = cells(tmp_path, "%load_ext autoreload", "%autoreload 2",
                f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport consts_nb",
                "@cache.cached\ndef m(x):\n    return x * consts_nb.FACTOR", "m(2)", edit,
                "m(2)")
    assert out[-3:] == ["5.0", "None", "7.0"]


def test_a_class_autoreloaded_in_place_is_seen_at_the_next_cell(tmp_path: Path):
    module = tmp_path / "model_nb.py"
    source = "class Model:\n    def predict(self, x):\n        return x * {times}\n"
    module.write_text(source.format(times=2))
    edit = (f"import os\nopen({str(module)!r}, 'w').write({source.format(times=3)!r})"
            f"\nos.utime({str(module)!r}, (2e9, 2e9))")
    out = cells(tmp_path, "%load_ext autoreload", "%autoreload 2",
                f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nfrom model_nb import Model",
                "@cache.cached\ndef m(x):\n    return Model().predict(x)", "m(5)", edit, "m(5)")
    assert out[-3:] == ["10", "None", "15"]


COUNTING = """
import memojar._identity as identity
walks, hashes = [], []
_walk, _state = identity._walk_callable, identity.state_key
def counting_walk(*a):
    walks.append(1)
    return _walk(*a)
def counting_state(value):
    if type(value).__name__ == 'Big':
        hashes.append(1)
    return _state(value)
identity._walk_callable, identity.state_key = counting_walk, counting_state
class Big:
    def __init__(self):
        self.data = list(range(1000))
BIG = Big()
@cache.cached
def b(x):
    return g(x) + len(BIG.data)
"""


def test_a_cell_that_changes_nothing_it_reads_costs_no_new_identity(tmp_path: Path):
    # Cost guard: the re-check compares objects; it walks and hashes nothing.
    out = cells(tmp_path, COUNTING, "b(1)", "(len(walks) > 0, len(hashes))",
                "x = 1", "walks.clear()\nb(1)", "(len(walks), len(hashes), b.cache_info()[:2])")
    assert out[1:] == ["1002", "(True, 1)", "None", "1002", "(0, 1, (1, 1))"]


def test_a_changed_helper_rebuilds_without_hashing_a_big_global_again(tmp_path: Path):
    # The global read by name is hashed once per process while it is the same object.
    out = cells(tmp_path, COUNTING, "b(1)", "def g(x):\n    return x + 100", "b(1)",
                "len(hashes)", "BIG = Big()", "b(1)", "len(hashes)")
    assert out[1:] == ["1002", "None", "1101", "1", "None", "1101", "2"]


def test_rerunning_a_helpers_cell_unchanged_keeps_the_hit(tmp_path: Path):
    # "Run all" again: every helper is a new object with the same code; the identity is
    # made again, the same, and the call hits.
    out = cells(tmp_path, "f(1)", "def g(x):\n    return x + 1\nK = 1", "f(1)",
                "tuple(f.cache_info())[:3]")
    assert out == ["2", "None", "2", "(1, 1, 1)"]


def test_a_script_resolves_once_at_the_first_call(tmp_path: Path):
    # Outside IPython nothing is marked or recorded: README's script promise is unchanged.
    out = run_python(DEFINE.format(directory=str(tmp_path / "cache"), options="") + (
        "import memojar._identity as identity\n"
        "a = f(1)\n"
        "def g(x):\n    return x + 100\n"
        "print(a, f(1), identity.RECORD, identity.resolved(f.__wrapped__))\n"))
    assert out.split() == ["2", "2", "False", "None"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter_core's paths notice
def test_a_real_kernel_sees_a_helper_redefined_in_another_cell(tmp_path: Path):
    # The same through ipykernel (ZMQInteractiveShell), as Jupyter runs a notebook.
    sources = [DEFINE.format(directory=str(tmp_path / "cache"), options=""), "f(1)",
               "def g(x):\n    return x + 100", "f(1)", "K = 5", "f(1)"]
    shown = kernel_cells(tmp_path, sources)
    assert shown[1::2] == ["2", "101", "505"]


def test_a_helper_of_a_function_given_as_an_argument_redefined_in_a_cell_is_seen(
        tmp_path: Path):
    # apply(h, 1) keys h with what it calls: g redefined in a cell is another key (before:
    # h's own code only, and the old g's value came back).
    define = ("@cache.cached\ndef apply(fn, x):\n    return fn(x)\n\n"
              "def h(x):\n    return g(x) * 10")
    assert cells(tmp_path, define, "apply(h, 1)", "def g(x):\n    return x + 100",
                 "apply(h, 1)", "apply(h, 1)") == ["None", "20", "None", "1010", "1010"]


def test_a_helper_a_function_in_a_global_deque_calls_is_seen_at_the_next_cell(tmp_path: Path):
    # A function met pickling a global's state (in a deque: no plain container) is followed
    # like a helper, and again when a later record reuses that state's digest (attack3).
    # Before: 2, the old helper's value: only the lambda's own code counted.
    assert cells(tmp_path, "import collections\nQ = collections.deque([lambda v: g(v)])\n"
                           "@cache.cached\ndef h(x):\n    return Q[0](x)",
                 "h(1)", "def g(x):\n    return x + 100", "h(1)", "K = 1", "h(1)",
                 "def g(x):\n    return x + 1000", "h(1)") == [
        "None", "2", "None", "101", "None", "101", "None", "1001"]


RELOADED = ("from memojar import Cache\ncache = Cache({directory!r})\n\n"
            "@cache.cached{options}\ndef f(x):\n    return x * {times}\n\n"
            "class Model:\n    @cache.cached{options}\n    def predict(self, x):\n"
            "        return x * {times}\n")


def _autoreload_modes() -> list[str]:
    import IPython

    # IPython 9's %autoreload 2 patches in place (deduperreload); --full, and %autoreload 2
    # of earlier versions, reloads the whole module (superreload)
    return ["2", "2 --full"] if IPython.version_info >= (9,) else ["2"]


@pytest.mark.parametrize("options", [""])
@pytest.mark.parametrize("mode", _autoreload_modes())
def test_a_cached_function_and_method_of_a_module_autoreloaded_run_the_new_code(
        tmp_path: Path, mode: str, options: str):
    # The notebook holds the old decorated function and class (imported by name), which
    # autoreload patches with the new ones. Before: superreload left the old code running
    # (f(1) and predict(1) were 2, and f(2) computed 4, after the edit to x * 3);
    # deduperreload left a method keyed for its old code: predict(1) hit its old value, 2.
    module = tmp_path / "model_rl.py"
    source = dict(directory=str(tmp_path / "cache"), options=options)
    module.write_text(RELOADED.format(times=2, **source))
    edit = (f"import os\nopen({str(module)!r}, 'w').write("
            f"{RELOADED.format(times=3, **source)!r})\nos.utime({str(module)!r}, (2e9, 2e9))")
    calls = "(f(1), Model().predict(1), f(2), Model().predict(2))"
    out = cells(tmp_path, "%load_ext autoreload", f"%autoreload {mode}",
                f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
                "from model_rl import f, Model", calls, edit, calls, calls,
                "sorted({e.function for e in cache.entries()})")
    assert out[-5:] == ["(2, 2, 4, 4)", "None", "(3, 3, 6, 6)", "(3, 3, 6, 6)",
                        "['model_rl.Model.predict', 'model_rl.f']"]  # (not the name of
    # deduperreload's scratch class, model_rl.__autoreload_class__.predict)


OPTIONED = ("import os\nfrom memojar import Cache\ncache = Cache({directory!r})\n\n"
            "@cache.cached{options}\ndef f(x):\n    return sum(x) * int(os.environ['SCALE'])\n")


@pytest.mark.parametrize("change", [
    ("(version=1)", "(version=2)"),  # bumped: the values of version 1 are not read
    ("(memory=5)", "(memory=5, ttl=0.001)"),  # an expiry added: the old entry is stale
    ("(key=lambda x: x[0])", "(key=lambda x: tuple(x))"),  # (1, 2) is no longer (1, 5)
], ids=["version", "ttl", "key"])
@pytest.mark.parametrize("mode", _autoreload_modes())
def test_a_cached_function_autoreloaded_with_other_options_runs_with_the_new_ones(
        tmp_path: Path, mode: str, change: tuple[str, str]):
    # The module's source edited to other decorator options (and SCALE, which the function
    # reads from outside, changed beside). Before, with the old wrapper kept (superreload:
    # --full, and %autoreload 2 before IPython 9), the new code ran with the old options:
    # f((1, 5)) returned the old value 12 (version 1's entry, an entry past the new ttl)
    # where 6 * 3 is 18, and f((1, 2)) hit the entry of (1, 5), 12 for 9 (the old key=).
    module = tmp_path / "options_rl.py"
    old, new = (OPTIONED.format(directory=str(tmp_path / "cache"), options=o) for o in change)
    module.write_text(old)
    edit = (f"open({str(module)!r}, 'w').write({new!r})\n"
            f"os.utime({str(module)!r}, (2e9, 2e9))\nos.environ['SCALE'] = '3'")
    call, value = ("f((1, 2))", "9") if "key" in change[0] else ("f((1, 5))", "18")
    out = cells(tmp_path, "%load_ext autoreload", f"%autoreload {mode}",
                f"import os, sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
                "os.environ['SCALE'] = '2'\nfrom options_rl import f\nf((1, 5))", edit,
                f"import time\ntime.sleep(0.01)\n{call}")
    assert out[-3:] == ["12", "None", value]


def test_a_cached_function_wrapped_over_another_keeps_its_own_code(tmp_path: Path):
    # ``functools.wraps(f)`` gives the decorated ``g`` the ``__memojar__`` of ``f``, as a
    # reload does: not taken for one (``g`` keeps computing its own code).
    define = ("import functools\n@cache.cached\ndef one(x):\n    return x + 1\n\n"
              "@functools.wraps(one)\n@cache.cached\ndef two(x):\n    return x + 2")
    assert cells(tmp_path, define, "two(1)", "K = 2", "two(5)", "(one(1), two(1))") == [
        "None", "3", "None", "7", "(2, 3)"]


def test_what_a_cached_function_prints_or_displays_is_not_shown_again_by_a_hit(tmp_path: Path):
    # README, Notebooks: output is the computation's, not the value's (documented).
    define = ("from IPython.display import display\nfrom IPython.utils.capture import "
              "capture_output\n@cache.cached\ndef shown(x):\n    print('computing', x)\n"
              "    display('table', x)\n    return x * 2\n\n"
              "def call(x):\n    with capture_output() as out:\n        value = shown(x)\n"
              "    return value, out.stdout, len(out.outputs)")
    assert cells(tmp_path, define, "call(1)", "call(1)") == [
        "None", "(2, 'computing 1\\n', 2)", "(2, '', 0)"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter_core's paths notice
def test_a_real_kernel_runs_the_new_code_of_an_autoreloaded_cached_method(tmp_path: Path):
    # The autoreload case above through ipykernel, as Jupyter runs a notebook.
    module = tmp_path / "model_kernel.py"
    source = dict(directory=str(tmp_path / "cache"), options="")
    module.write_text(RELOADED.format(times=2, **source))
    edit = (f"import os\nopen({str(module)!r}, 'w').write("
            f"{RELOADED.format(times=3, **source)!r})\nos.utime({str(module)!r}, (2e9, 2e9))")
    calls = "(f(1), Model().predict(1), f(2), Model().predict(2))"
    sources = ["%load_ext autoreload\n%autoreload 2",
               f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
               "from model_kernel import f, Model", calls, edit, calls, calls]
    shown = kernel_cells(tmp_path, sources)
    assert shown[2:] == ["(2, 2, 4, 4)", "", "(3, 3, 6, 6)", "(3, 3, 6, 6)"]


def test_looking_for_reloaded_functions_walks_the_live_ones_once_a_cell(tmp_path: Path):
    # Cost guard: 50 functions called after a cell look at themselves, and all of them are
    # looked at once (a walk per function would be 2,500).
    define = ("import memojar._notebook as notebook\nlooks = []\n_patched = notebook._patched\n"
              "def counting(memo, make):\n    looks.append(1)\n    return _patched(memo, make)\n"
              "notebook._patched = counting\nfs = []\nfor i in range(50):\n"
              "    exec(f'@cache.cached\\ndef f{i}(x):\\n    return x + {i}\\nfs.append(f{i})')\n"
              "sum(f(1) for f in fs)")
    out = cells(tmp_path, define, "looks.clear()", "sum(f(1) for f in fs)", "len(looks)")
    assert out[0] == out[2] == "1275"
    assert 50 <= int(out[3]) <= 102  # the 51 live memos (f of the first cell too), and 50


WRAPPED = ("import functools\nfrom memojar import Cache\ncache = Cache({directory!r})\n\n"
           "def deco(fn):\n    @functools.wraps(fn)\n    def inner(*a, **k):\n"
           "        return fn(*a, **k)\n    return inner\n\n"
           "@deco\n@cache.cached\ndef above(x):\n    return x * {times}\n\n"
           "@cache.cached\n@deco\ndef below(x):\n    return x * {times}\n\n"
           "class Model:\n    @deco\n    @cache.cached\n    def above(self, x):\n"
           "        return x * {times}\n\n    @cache.cached\n    @deco\n"
           "    def below(self, x):\n        return x * {times}\n")


@pytest.mark.parametrize("mode", [*_autoreload_modes(), "3"])
def test_a_function_under_another_decorator_autoreloaded_never_stores_old_code_as_new(
        tmp_path: Path, mode: str):
    # README: autoreload may leave such a function running its old code (as it does the
    # same functions without memojar); its values stay under the old code's identity, and
    # a kernel started with the new source computes the new code's.
    module = tmp_path / "model_wrapped.py"
    source = dict(directory=str(tmp_path / "cache"))
    module.write_text(WRAPPED.format(times=2, **source))
    edit = (f"import os\nopen({str(module)!r}, 'w').write("
            f"{WRAPPED.format(times=3, **source)!r})\nos.utime({str(module)!r}, (2e9, 2e9))")
    calls = "[(above(x), below(x), Model().above(x), Model().below(x)) for x in {xs}]"
    path = f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
    cells(tmp_path, "%load_ext autoreload", f"%autoreload {mode}",
          f"{path}from model_wrapped import above, below, Model", calls.format(xs=(1,)), edit,
          calls.format(xs=(1, 2)), calls.format(xs=(1, 2)))  # 2: computed after the edit
    assert cells(tmp_path, f"{path}from model_wrapped import above, below, Model",
                 calls.format(xs=(1, 2)))[-1] == "[(3, 3, 3, 3), (6, 6, 6, 6)]"


SCALE = ("def scale(x):\n    scale.calls += 1\n    return x * scale.factor\n"
         "scale.factor = {factor}\nscale.calls = 0")


def test_a_helpers_attribute_edited_in_its_cell_recomputes(tmp_path: Path):
    # ``scale.factor``, a plain value the helper holds as an attribute, counts as a
    # constant (``scale.calls``, which its code bumps, does not). Before: the cell run
    # again with ``scale.factor = 3``, and a kernel started after the edit, got 2.
    define = "@cache.cached\ndef h(x):\n    return scale(x)"
    out = cells(tmp_path, define, SCALE.format(factor=2), "h(1)", "scale(5)",
                SCALE.format(factor=3), "h(1)", "h.cache_explain(1)")
    assert out[2:] == ["2", "10", "None", "3",
                       out[-1]]
    assert out[-1].startswith("'hit")
    assert cells(tmp_path, define, SCALE.format(factor=3), "scale(1)", "h(1)",
                 "h.cache_info()[:2]")[-2:] == ["3", "(1, 0)"]  # a hit, whatever calls
    assert cells(tmp_path, define, SCALE.format(factor=4), "h(1)")[-1] == "4"


def test_an_attribute_of_the_cached_function_itself_counts(tmp_path: Path):
    define = "@cache.cached\ndef own(x):\n    return x * own.factor\nown.factor = {factor}"
    assert cells(tmp_path, define.format(factor=2), "own(1)")[-1] == "2"
    assert cells(tmp_path, define.format(factor=3), "own(1)")[-1] == "3"  # before: 2


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter_core's paths notice
def test_a_real_kernel_sees_a_helpers_attribute_edited_in_its_cell(tmp_path: Path):
    sources = [DEFINE.format(directory=str(tmp_path / "cache"), options=""),
               "@cache.cached\ndef h(x):\n    return scale(x)", SCALE.format(factor=2),
               "h(1)", SCALE.format(factor=3), "h(1)"]
    shown = kernel_cells(tmp_path, sources)
    assert shown[3::2] == ["2", "3"]  # before: 2, 2


SILENT = r"""
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
from comm.base_comm import BaseComm

config = Config()
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)

class Comm(BaseComm):  # a front end's comm (an ipywidget's): no kernel to publish to
    def publish_msg(self, *args, **kwargs):
        pass

shown = []
for how, cell in json.loads(sys.argv[1]):
    if how == "comm":  # a message from the front end, as ipykernel hands it over
        comm = Comm(target_name="t")
        comm.on_msg(lambda msg: exec(cell, shell.user_ns))  # a handler's code, no cell
        comm.handle_msg({"content": {"data": {}}})
    else:
        shell.run_cell(cell, silent=how == "silent").raise_error()
    shown.append(repr(shell.user_ns.get("out")))
print(json.dumps(shown))
"""


@pytest.mark.parametrize("how", ["silent", "comm"])
def test_a_global_bound_by_a_silent_execution_or_a_comm_message_is_seen(
        tmp_path: Path, how: str) -> None:
    # A front end's silent execute (a classic notebook's ``kernel.execute``, an extension's
    # request) and a comm message (an ipywidget's ``observe`` handler) run no cell: IPython
    # starts them with ``pre_execute`` only. Before, ``K = 5`` bound there was not seen by
    # the calls after it until a cell ran: ``f(1)`` hit the value of ``K = 1``, 2.
    first = DEFINE.format(directory=str(tmp_path / "cache"), options="")
    steps = [["cell", first], ["cell", "out = f(1)"], [how, "K = 5"], [how, "out = f(1)"],
             [how, "K = 7\nout = f(1)"], ["silent", "out = f(1)"]]
    out = run_python(SILENT, json.dumps(steps), env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert json.loads(out.splitlines()[-1])[1:] == ["2", "2", "10", "14", "14"]


INTERRUPTED_RENEW = r"""
import json, sys
sys.path.insert(0, sys.argv[3])  # tests/: the interrupt kit
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
from interrupt_kit import interrupted_at, lines_of
import memojar._decorator as dec

config = Config()
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)
shell.showtraceback = lambda *args, **kwargs: None
shell.run_cell(sys.argv[1]).raise_error()
code = getattr(dec._Memo, sys.argv[2]).__code__
wrong, bound = [], 1
for at in lines_of(code):
    shell.run_cell("out = f(1)").raise_error()  # made for this K (held in memory too)
    bound += 1
    shell.run_cell(f"K = {bound}").raise_error()  # f's next call makes its identity again
    with interrupted_at(code, at):
        shell.user_ns["f"](1)
    shell.run_cell("out = f(1)").raise_error()
    if shell.user_ns["out"] != 2 * bound:
        wrong.append([at, shell.user_ns["out"], 2 * bound])
print(json.dumps(wrong))
"""


@pytest.mark.parametrize(("where", "options"), [("_unmake", ""), ("_remake", "(memory=10)")])
def test_an_interrupt_in_the_first_call_after_a_cell_changed_a_constant_leaves_no_old_value(
        tmp_path: Path, where: str, options: str) -> None:
    # Ctrl-C at each line of ``_unmake`` (``_remake`` with a memory tier) in ``f(1)`` after
    # a cell bound ``K`` again, where the identity is made again; the next cell's ``f(1)``
    # is of the new ``K``. Before, an interrupt between dropping the identity and its
    # reader left the old identity's reader, and one after dropping both, before the
    # memory tier was emptied, left the old value held: every later call returned the
    # value of the ``K`` of before (helper 275's find).
    first = DEFINE.format(directory=str(tmp_path / "cache"), options=options)
    out = run_python(INTERRUPTED_RENEW, first, where, str(Path(__file__).parent),
                     env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert json.loads(out.splitlines()[-1]) == []
