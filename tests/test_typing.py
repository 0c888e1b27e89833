"""Type checkers see a decorated function with its own signature and return type, as a
function, a method, a classmethod, a staticmethod, and async: mypy, and pyright (what VS
Code's Pylance runs for most of our users)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memojar import cached

SAMPLE = '''
from typing import Any, Callable
from memojar import Cache, cached

@cached
def load(path: str, sep: str = ",") -> list[str]:
    return []

@Cache().cached(ttl=5)
async def fetch(url: str) -> bytes:
    return b""

# a first parameter that also takes a class is not taken for a classmethod's cls:
@cached
def describe(x: object) -> str:
    return ""

@cached(ttl=5)
def run(fn: Callable[[], int], n: int = 1) -> int:
    return 0

@Cache().cached
def tag(x: Any, y: int) -> str:
    return ""

class Model:
    @cached
    def fit(self, k: int) -> list[float]:
        return []

    @cached
    async def afit(self, k: int) -> bytes:
        return b""

    @classmethod
    @cached
    def make(cls, name: str) -> "Model":
        return cls()

    @cached
    @classmethod
    def build(cls, n: int) -> dict[str, int]:
        return {}

    @staticmethod
    @cached
    def norm(x: float) -> float:
        return x

    @cached
    @staticmethod
    def scale(x: float, k: int) -> float:
        return x

m = Model()
reveal_type(load("a.csv"))  # L1
reveal_type(load.cache_info().hits)  # L2
reveal_type(load.cache_contains("a.csv", sep=";"))  # L3
coro = reveal_type(fetch("u"))  # L4
reveal_type(m.fit(1))  # L5
reveal_type(Model.fit(m, 1))  # L6
# the cache methods take self, as at run time:
reveal_type(m.fit.cache_contains(m, 1))  # L7
reveal_type(m.fit.cache_info().misses)  # L8
acoro = reveal_type(m.afit(1))  # L9
reveal_type(Model.make("a"))  # L10
reveal_type(m.make("a"))  # L11
reveal_type(Model.build(2))  # L12
reveal_type(Model.norm(2.0))  # L13
# a staticmethod through an instance is not bound (either decorator order):
reveal_type(m.norm(2.0))  # L14
reveal_type(m.scale(2.0, 3))  # L15
reveal_type(m.norm.cache_contains(2.0))  # L16
reveal_type(describe(1))  # L17
reveal_type(describe(x="a"))  # L18
reveal_type(run(lambda: 1, 2))  # L19
reveal_type(tag(1, 2))  # L20
reveal_type(describe.cache_delete(1))  # L21
m.fit.cache_set([1.0], m, 1)  # seeding through the bound method, as at run time
load(3)  # E1
m.fit("x")  # E2
Model.make(3)  # E3
'''

REVEALED = {
    "L1": "list[str]",
    "L2": "int",
    "L3": "bool",
    "L4": "typing.Coroutine[Any, Any, bytes]",
    "L5": "list[float]",
    "L6": "list[float]",
    "L7": "bool",
    "L8": "int",
    "L9": "typing.Coroutine[Any, Any, bytes]",
    "L10": "sample.Model",
    "L11": "sample.Model",
    "L12": "dict[str, int]",
    "L13": "float",
    "L14": "float",
    "L15": "float",
    "L16": "bool",
    "L17": "str",
    "L18": "str",
    "L19": "int",
    "L20": "str",
    "L21": "bool",
}


def _mypy(tmp_path: Path) -> dict[int, list[str]]:
    """mypy's messages on SAMPLE, by line."""
    pytest.importorskip("mypy", reason="mypy is in the dev extra")
    sample = tmp_path / "sample.py"
    sample.write_text(SAMPLE)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "mc"),
         "--no-error-summary", str(sample)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    out = proc.stdout.replace("builtins.", "")  # mypy versions differ in this spelling
    by_line: dict[int, list[str]] = {}
    for line in out.splitlines():
        path, _, rest = line.partition(":")
        number, _, message = rest.partition(":")
        if path.endswith("sample.py") and number.isdigit():
            by_line.setdefault(int(number), []).append(message.strip())
    return by_line


def _pyright(tmp_path: Path) -> dict[int, list[str]]:
    """pyright's messages on SAMPLE, by line: ``severity: first line of the message``."""
    pytest.importorskip("pyright", reason="pyright is in the dev extra")
    sample = tmp_path / "sample.py"
    sample.write_text(SAMPLE)
    env = {**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}  # no check for a newer one
    proc = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable,
         str(sample)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )
    by_line: dict[int, list[str]] = {}
    for found in json.loads(proc.stdout)["generalDiagnostics"]:
        message = found["message"].splitlines()[0]
        by_line.setdefault(found["range"]["start"]["line"] + 1, []).append(
            f"{found['severity']}: {message}")
    return by_line


def _line(tag: str) -> int:
    (number,) = [i for i, text in enumerate(SAMPLE.splitlines(), 1) if text.endswith(f"# {tag}")]
    return number


@pytest.mark.slow
def test_mypy_sees_each_kind_of_function_with_its_signature_and_return_type(
    tmp_path: Path,
) -> None:
    by_line = _mypy(tmp_path)
    for tag, revealed in REVEALED.items():
        messages = by_line.get(_line(tag), [])
        assert messages == [f'note: Revealed type is "{revealed}"'], (tag, messages, by_line)
    assert by_line[_line("E1")] == [
        'error: Argument 1 to "__call__" of "CachedFunction" has incompatible type "int"; '
        'expected "str"  [arg-type]']
    assert by_line[_line("E2")] == [
        'error: Argument 1 to "__call__" of "BoundCachedFunction" has incompatible type "str"; '
        'expected "int"  [arg-type]']
    assert by_line[_line("E3")][0] == (  # then the two variants: with cls and without
        'error: No overload variant of "__call__" of "CachedFunction" matches argument type '
        '"int"  [call-overload]')
    reported = {_line(t) for t in (*REVEALED, "E1", "E2", "E3")}
    assert set(by_line) == reported, by_line  # nothing else: the sample is accepted


def test_a_methods_cache_methods_take_self_as_the_types_say(cache_dir: Path) -> None:
    class Model:
        @cached(cache_dir=cache_dir, ignore=("self",))
        def fit(self, k: int) -> list[float]:
            return [float(k)]

    m = Model()
    assert not m.fit.cache_contains(m, 2)
    assert m.fit(2) == [2.0]
    assert m.fit.cache_contains(m, 2)  # the key of the call m.fit(2)
    assert m.fit.cache_info().misses == 1


@pytest.mark.slow
def test_pyright_sees_each_kind_of_function_with_its_signature_and_return_type(
    tmp_path: Path,
) -> None:
    by_line = _pyright(tmp_path)
    for tag, revealed in REVEALED.items():
        messages = by_line.get(_line(tag), [])
        assert len(messages) == 1, (tag, by_line)
        shown = messages[0].rpartition(" is ")[2].strip('"')
        # pyright's spelling of mypy's typing.Coroutine and sample.Model
        shown = shown.replace("CoroutineType[", "typing.Coroutine[")
        assert shown in (revealed, revealed.removeprefix("sample.")), (tag, messages)
    assert by_line[_line("E1")] == [
        'error: Argument of type "Literal[3]" cannot be assigned to parameter "path" of type '
        '"str" in function "__call__"']
    assert by_line[_line("E2")] == [
        'error: Argument of type "Literal[\'x\']" cannot be assigned to parameter "k" of type '
        '"int" in function "__call__"']
    assert by_line[_line("E3")] == [
        'error: Argument of type "Literal[3]" cannot be assigned to parameter "name" of type '
        '"str" in function "__call__"']
    reported = {_line(t) for t in (*REVEALED, "E1", "E2", "E3")}
    assert set(by_line) == reported, by_line  # nothing else: the sample is accepted


@pytest.mark.slow
def test_every_public_name_has_a_declared_type(tmp_path: Path) -> None:
    """``pyright --verifytypes``: nothing memojar exports is left for a checker to infer
    (each would infer it its own way)."""
    pytest.importorskip("pyright", reason="pyright is in the dev extra")
    # --verifytypes does not find a package installed editable (`pip install -e .`, the
    # README's and .ci/run's install: "No py.typed file found", a score of 0) unless its
    # folder is on PYTHONPATH: the memojar this Python imports.
    import memojar

    found = str(Path(memojar.__file__).resolve().parents[1])
    env = {**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [found, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable,
         "--verifytypes", "memojar", "--ignoreexternal"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )
    report = json.loads(proc.stdout)
    problems = [(d["file"], d["range"]["start"]["line"] + 1, d["message"])
                for symbol in report["typeCompleteness"]["symbols"]
                for d in symbol["diagnostics"]
                if d["severity"] == "error"]
    assert problems == []
    assert report["typeCompleteness"]["completenessScore"] == 1
