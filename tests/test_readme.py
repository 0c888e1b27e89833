"""The README's code blocks work as written, for a new user, and print what it says they print.

Every fenced block of README.md is found here and either run or excluded by its first line,
visibly, with the reason (``EXCLUDED``); a block added to the README later is run by default,
and one this file does not know how to run fails until it is run or excluded:

- ``python`` blocks run as scripts (IPython's, starting with ``%``, in an IPython shell), each
  in a fresh directory with a fresh ``HOME`` (so the default cache is a new one) and none of
  this machine's ``MEMOJAR_``/``XDG_``/``AWS_`` settings. A top-level line ``expr  # shown``
  whose comment starts with a value (``True``, ``CacheInfo(hits=1, ...)``) must show that
  value (``...`` matching anything). A block whose first line says ``"X" is printed once``
  runs twice at once, and prints X once in all. The README's ``redis://localhost:6379/0``
  and ``s3://`` buckets are a redis-server and a moto server started by the test.
- ``bash`` and ``console`` blocks: each command (``$ `` lines of a console session, parts of
  a ``&&`` list) that calls memojar (``memojar ...``, ``python -m memojar...``) runs in this
  checkout, in the state the block describes (``SETUPS``), and its output is compared with
  the lines the README shows under it, with what varies from run to run masked (keys, times,
  ages, sizes: their digits, not their units); any other command must be listed in
  ``EXCLUDED_COMMANDS`` with the reason.
- Blocks that are not code (diagrams, sample outputs, the source tree) are excluded or
  checked by a test of their own (``test_the_cache_explain_lines_*``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT = 120  # seconds for any one command or block
# Where the README's sessions say the default cache is (a user ada on Linux).
README_HOME_CACHE = "/home/ada/.cache/memojar"


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence
    info: str  # the fence's language: python, console, bash, or "" (none)
    text: str

    @property
    def first(self) -> str:
        return next((s.strip() for s in self.text.splitlines() if s.strip()), "")

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.info or 'no language'}) {self.first!r}"


def readme_blocks() -> list[Block]:
    """Every fenced block of the README (indented ones too, dedented)."""
    blocks, lines = [], README.read_text(encoding="utf-8").splitlines()
    fence = re.compile(r"^(\s*)```(\S*)\s*$")
    i = 0
    while i < len(lines):
        opening = fence.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, info = opening.groups()
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        assert i < len(lines), f"README.md:{len(blocks)}: a block is never closed"
        blocks.append(Block(i - len(body), info, "\n".join(body) + "\n"))
        i += 1
    return blocks


# --- what is not run, and why -----------------------------------------------------------

# Whole blocks, by their first line.
EXCLUDED = {
    "PROTO 5 | BINBYTES header length                     7-byte lead (pickle opcodes)":
        "a diagram of the entry format (tests/test_entry.py, tests/golden/ check the format)",
    "pip install -e . -r benchmarks/requirements.txt":
        "the benchmarks: installs the rivals from the package index and runs ~15 minutes",
    "Goals (memojar, ratios from this run):": "the output of a benchmark run",
    "src/memojar/": "the source tree, not code",
    "_cli, _ipython, _census, _report   the command line and the magic":
        "a diagram of the layers (tests/test_layers.py checks them)",
    "from dask.distributed import Client":
        "needs a dask scheduler at tcp://scheduler:8786; tests/test_distributed.py maps a "
        "cached function on a LocalCluster sharing an s3:// and a redis:// cache",
}
# Commands of bash and console blocks that the test does not run, by how they start.
EXCLUDED_COMMANDS = {
    "python3 -m venv .venv": "makes a virtual environment: the test runs in the one running it",
    ".venv/bin/pip install": "installs from the package index (.ci/run installs the dev extra)",
    "pip install": "installs from the package index",
    ".venv/bin/python -m pytest": "the test suite itself, which runs this test (.ci/run)",
    "redis-server --port 6379": "starts a server: the test starts its own on a free port "
        "(tests/redis_server.py) and points the README's redis://localhost:6379/0 at it",
    "moto_server -p 9000": "starts an S3-protocol server: the test starts its own on a free "
        "port (tests/s3_server.py)",
    "export AWS_": "the test gives the blocks this environment, with the endpoint of its own "
        "S3 server (tests/s3_server.py)",
    "python -c \"import boto3; boto3.client('s3').create_bucket(Bucket='team-cache')\"":
        "makes the bucket: the test makes it on its own S3 server",
    "cat lifecycle.json": "part of setting a lifecycle rule on a real AWS bucket",
    "aws s3api": "the AWS command line on a real AWS bucket",
}


def excluded_command(command: str) -> str | None:
    return next((why for start, why in EXCLUDED_COMMANDS.items()
                 if command.startswith(start)), None)


# Blocks checked by a test of their own, by their first line.
CHECKED = {"hit: stored 2026-11-29T21:33:18Z, computed in 12 ms":
           "test_the_cache_explain_lines_are_what_cache_explain_says"}


def test_every_block_is_run_or_excluded_and_every_exclusion_is_used() -> None:
    blocks = readme_blocks()
    firsts = {b.first for b in blocks}
    assert not [f for f in EXCLUDED if f not in firsts], "an exclusion names no block"
    unknown = [str(b) for b in blocks
               if b.first not in EXCLUDED and b.first not in CHECKED
               and b.info not in ("python", "bash", "console")]
    assert not unknown, (
        "blocks this test cannot run: give them a language it runs (python, bash, console), "
        f"or list them in EXCLUDED with the reason: {unknown}")
    commands = [c for b in blocks if b.info in ("bash", "console") for c, _ in commands_of(b)]
    assert not [s for s in EXCLUDED_COMMANDS if not any(c.startswith(s) for c in commands)], (
        "an excluded command is in no block")


# --- a new user --------------------------------------------------------------------------

def new_user(tmp: Path) -> dict[str, str]:
    """The environment of a user on a fresh machine: a new HOME (the default cache is
    ``~/.cache/memojar`` there), none of this machine's memojar, XDG or AWS settings. The
    rest (``PATH``, ``PYTHONPATH``) is kept, so memojar is this checkout."""
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMOJAR_", "XDG_", "AWS_", "JPY_", "PYTEST_"))}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    return env


def default_cache(env: dict[str, str]) -> str:
    return os.path.join(env["HOME"], ".cache", "memojar")


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


# --- servers the blocks talk to ------------------------------------------------------------

def servers_for(block: Block, request: pytest.FixtureRequest, env: dict[str, str],
                text: str) -> str:
    """Start what the block connects to; return its text pointed at the test's servers."""
    if "redis://localhost:6379/0" in text:  # an empty database, flushed after the test
        text = text.replace("redis://localhost:6379/0",
                            request.getfixturevalue("redis_location"))
    buckets = set(re.findall(r"s3://([a-z0-9.-]+)/", text))
    if buckets:
        from s3_server import TEST_ENV

        server = request.getfixturevalue("s3_server")
        for bucket in buckets:
            empty_bucket(server, server.bucket(bucket))
        env.update(TEST_ENV, AWS_ENDPOINT_URL=server.endpoint)
    return text


def empty_bucket(server: Any, bucket: str) -> None:
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])


# --- python blocks -----------------------------------------------------------------------

PYTHON_BLOCKS = [b for b in readme_blocks() if b.info == "python" and b.first not in EXCLUDED]
# A value shown in a comment: ``load_table.cache_contains("b.csv")  # False; computes nothing``.
SHOWN_VALUE = re.compile(r"(True|False|None|-?\d+|[A-Z]\w*\(.*\)|'.*')(;.*)?")

CHECK_SHOWN = '''
import fnmatch as _fnmatch
def _shown(value, shown, line):
    if not _fnmatch.fnmatchcase(repr(value), shown.replace("...", "*")):
        raise SystemExit(f"README line {line}: shows {shown}, the value is {value!r}")
'''

# What an IPython block runs first: the function of examples/tour.ipynb it names.
IPYTHON_PRELUDE = '''
from memojar import cached

@cached
def slow_square(x):
    return x * x

slow_square(3)
'''
IPYTHON_RUNNER = '''
import sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for cell in (sys.argv[1], open(sys.argv[2]).read()):
    shell.run_cell(cell).raise_error()
'''


def with_shown_values_checked(block: Block) -> str:
    """The block, each top-level ``expr  # value`` line checking that it shows that value."""
    out = [CHECK_SHOWN]
    for number, line in enumerate(block.text.splitlines(), block.line + 1):
        code, sep, comment = line.partition("  # ")
        shown = SHOWN_VALUE.fullmatch(comment.strip()) if sep else None
        if shown and not line[:1].isspace() and is_expression(code):
            line = f"_shown({code.strip()}, {shown[1]!r}, {number})"
        out.append(line)
    return "\n".join(out) + "\n"


def is_expression(code: str) -> bool:
    try:
        compile(code.strip(), "<line>", "eval")
    except SyntaxError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: f"line{b.line}")
def test_python_block(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = new_user(tmp_path)
    text = servers_for(block, request, env, block.text)
    named = re.match(r"#\s*(\w+\.py):", block.first)
    script = tmp_path / (named[1] if named else "block.py")
    if block.first.startswith("%"):  # IPython's: line magics
        script = tmp_path / "block.ipy"
        script.write_text(text)
        argv = [sys.executable, "-c", IPYTHON_RUNNER, IPYTHON_PRELUDE, str(script)]
    else:
        script.write_text(with_shown_values_checked(Block(block.line, block.info, text)))
        argv = [sys.executable, str(script)]
    once = re.search(r'"(\w+)" is printed once', block.first)
    if once is None:
        proc = run(argv, tmp_path, env)
        assert proc.returncode == 0, f"{block}\n{proc.stdout}\n{proc.stderr}"
        if not block.first.startswith("%"):  # (IPython may talk about its own profile)
            assert proc.stderr == "", f"{block} warned:\n{proc.stderr}"
        return
    # "run it twice at once": both processes print their result, and X once in all.
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0 and err == "", f"{block}\n{out}\n{err}"
    printed = [line for out, _ in outputs for line in out.splitlines()
               if line.split()[:1] == [once[1]]]
    assert len(printed) == 1, f"{block}: {printed}"


# --- bash and console blocks ---------------------------------------------------------------

SHELL_BLOCKS = [b for b in readme_blocks()
                if b.info in ("bash", "console") and b.first not in EXCLUDED]


def commands_of(block: Block) -> Iterator[tuple[str, list[str]]]:
    """(command, the output lines the README shows under it) for each command of a block:
    ``$ `` lines of a console session (``\\`` continues a line), every line of a bash
    block; a ``&&`` list is one command a part."""
    prompted = block.info == "console"
    pending: list[tuple[str, list[str]]] = []
    joined = ""
    for line in block.text.splitlines():
        if joined or not prompted or line.startswith("$ "):
            command = joined + (line[2:] if line.startswith("$ ") and not joined else line)
            if command.endswith("\\"):
                joined = command[:-1]
                continue
            joined = ""
            pending.extend((part.strip().rstrip("&").strip(), []) for part in
                           command.split(" && "))
        elif line.startswith("# ") or not pending:
            continue  # a comment between commands
        else:
            pending[-1][1].append(line)
    for command, shown in pending:
        while shown and not shown[-1].strip():
            shown.pop()  # the blank line before the next command
        yield command, shown


def memojar_argv(command: str) -> list[str] | None:
    """The argv that runs ``command`` with this checkout's memojar, if it calls memojar."""
    words = shlex.split(command, comments=True)
    if words and os.path.basename(words[0]) == "memojar":
        return [sys.executable, "-m", "memojar", *words[1:]]
    if (len(words) > 2 and os.path.basename(words[0]).startswith("python")
            and words[1] == "-m" and words[2].split(".")[0] == "memojar"):
        return [sys.executable, *words[1:]]
    return None


# The README's command-line session: two functions of a module, analysis.fit_model (2
# entries of ~440 KiB, each computed in 1.2 s, hit 14 times) and analysis.load_table (3
# entries of ~29 KiB computed in milliseconds, hit 6 times). Their digits are masked, not
# their units: a compute time stays on its side of 1 s on a loaded machine.
ANALYSIS = '''
import time

from memojar import cached

import helpers


@cached(ttl=3600)
def fit_model(n):
    time.sleep(1.2)
    return bytes(450_000 + n)


@cached
def load_table(name):
    time.sleep(SECONDS)
    return helpers.clean(name).encode() + bytes(29_900)
'''
HELPERS = "def clean(name):\n    return name.strip().lower()\n"
SESSION = '''
import analysis

for name in ("a", "b", "c"):
    analysis.load_table(name)
for _ in range(8):
    analysis.fit_model(1)
    analysis.fit_model(2)
for _ in range(2):
    for name in ("a", "b", "c"):
        analysis.load_table(name)
'''
# `memojar ls analysis.load_table` while a process of the old code still stores: the new
# code (helpers.clean edited) swept the old code's entries, the old process stored one more,
# then the new code stored the newest.
OLD_CODE_STILL_STORING = '''
import pathlib
import subprocess
import sys

import analysis

def new_code(call):
    subprocess.run([sys.executable, "-c", f"import analysis; analysis.{call}"], check=True)

analysis.load_table("x1")
pathlib.Path("helpers.py").write_text(
    'def clean(name):\\n    return name.strip().lower().replace(" ", "_")\\n')
new_code('load_table("x3")')
analysis.load_table("x2")
new_code('load_table.refresh("x3")')
'''


def analysis_module(workdir: Path, seconds: float) -> None:
    (workdir / "analysis.py").write_text(ANALYSIS.replace("SECONDS", repr(seconds)))
    (workdir / "helpers.py").write_text(HELPERS)


def run_script(code: str, workdir: Path, env: dict[str, str]) -> None:
    proc = run([sys.executable, "-c", code], workdir, env)
    assert proc.returncode == 0, proc.stderr


def the_session(workdir: Path, env: dict[str, str]) -> None:
    analysis_module(workdir, 0.02)  # far from 1 s, where the unit of COMPUTE and SAVED changes
    run_script(SESSION, workdir, env)


def old_code_still_storing(workdir: Path, env: dict[str, str]) -> None:
    analysis_module(workdir, 0.2)
    run_script(OLD_CODE_STILL_STORING, workdir, env)


# The state a block's commands run in, by the block's first line (others run in a new
# user's empty one); a command whose comment is a key of COMMAND_SETUPS runs in a state of
# its own instead; words of a command that name no real thing, and what the test puts there.
SETUPS: dict[str, Callable[[Path, dict[str, str]], None]] = {
    "$ memojar ls": the_session,
    "$ memojar info --json": the_session,
}
COMMAND_SETUPS = {"# while a process of the old code still stores": old_code_still_storing}
PLACEHOLDERS = {"FUNCTION": "analysis.fit_model"}

# What varies from run to run, masked in the README's lines and in the real ones alike:
# digits of keys, times, ages and sizes (not their units), and numbers of JSON fields.
MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+(\+00:00|Z)"), "<time>"),
    (re.compile(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{12}\b"), "<key>"),
    (re.compile(r"\d[\d.,]*(?= (B|KiB|MiB|GiB|ms|s|bytes\))(\W|$))"), "<n>"),
    (re.compile(r"\b\d+(?=[smhdw](\W|$))"), "<n>"),
    (re.compile(r'("(bytes|size|saved|compute_time)": )[\d.e-]+'), r"\1<n>"),
]


def masked(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        for pattern, mask in MASKS:
            line = pattern.sub(mask, line)
        out.append(" ".join(line.split()))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: f"line{b.line}")
def test_shell_block(block: Block, tmp_path: Path) -> None:
    env = new_user(tmp_path)
    ran = 0
    if block.first in SETUPS:
        SETUPS[block.first](tmp_path, env)
    for command, shown in commands_of(block):
        argv = memojar_argv(command)
        if argv is None:
            assert excluded_command(command), (
                f"{block}: {command!r} is neither memojar's nor in EXCLUDED_COMMANDS")
            continue
        argv = [PLACEHOLDERS.get(word, word) for word in argv]
        here, its_env = tmp_path, env
        comment = command.partition("  #")[2].strip()
        if f"# {comment}" in COMMAND_SETUPS:
            here, its_env = tmp_path / "its own", new_user(tmp_path / "its own")
            COMMAND_SETUPS[f"# {comment}"](here, its_env)
        proc = run(argv, here, its_env)
        ran += 1
        output = (proc.stdout + proc.stderr).replace(default_cache(its_env), README_HOME_CACHE)
        error = bool(shown) and shown[0].startswith("memojar: ")
        assert proc.returncode == (1 if error else 0), f"{command}\n{output}"
        json_keys = re.search(r"#\s*\[\{(.*)\}, \.\.\.\]", command)
        if json_keys:  # `memojar ls --json   # [{"function", "entries", ...}, ...]`
            rows = json.loads(proc.stdout)
            assert rows and list(rows[0]) == re.findall(r'"(\w+)"', json_keys[1]), command
        if shown:
            assert masked(output.splitlines()) == masked(shown), f"$ {command}"
    assert ran or all(excluded_command(c) for c, _ in commands_of(block)), block


# --- the sample lines of cache_explain ------------------------------------------------------

EXPLAIN_HELPERS = "FACTOR = 2\n\ndef scale(x):\n    return x * FACTOR\n"
EXPLAIN_MODELS = "class Point:\n    def __init__(self, x):\n        self.x = x\n"
EXPLAIN_ANALYSIS = '''
import time

from memojar import cached

import helpers


@cached
def load(x):
    time.sleep(0.012)
    return helpers.scale(x)


@cached(ttl=0.2)
def quote(x):
    return x


@cached(version=VERSION)
def table(x):
    return x


@cached
def point(x):
    from models import Point  # imported in its body: the result class is checked at a hit
    return Point(x)
'''
EXPLAIN = '''
import sys, time
import analysis
calls = {"hit": "load(1)", "miss": "load(2)", "helper": "load(1)", "constant": "load(1)",
         "result class": "point(1)", "version": "table(1)"}
if sys.argv[1] == "store":
    for call in ("load(1)", "quote(1)", "table(1)", "point(1)"):
        eval("analysis." + call)
    time.sleep(0.3)
    print("stale", analysis.quote.cache_explain(1), sep="\\t")
for what in sys.argv[2:]:
    function, _, argument = calls[what].partition("(")
    print(what, getattr(analysis, function).cache_explain(int(argument[:-1])), sep="\\t")
'''
# Lines of the README's sample that this test does not make, and where they are checked.
EXPLAIN_NOT_MADE = {
    "incompatible: package ": "needs a package's version changed: tests/test_depends.py "
        "(test_a_package_upgrade_*) checks the line with a fake distribution",
    "miss: no entry for this Python ": "needs a second Python: tests/test_depends.py checks "
        "the line with an entry of another Python's",
    "incompatible: memojar's keying ": "needs an older memojar's entry: "
        "tests/golden/test_golden.py checks the line with one",
}


def explain_lines(tmp_path: Path) -> dict[str, str]:
    """What ``cache_explain`` says of real calls, by what happened to them."""
    env = new_user(tmp_path)
    (tmp_path / "helpers.py").write_text(EXPLAIN_HELPERS)
    (tmp_path / "models.py").write_text(EXPLAIN_MODELS)
    (tmp_path / "analysis.py").write_text(EXPLAIN_ANALYSIS.replace("VERSION", "1"))

    def explain(*what: str, store: bool = False) -> dict[str, str]:
        proc = run([sys.executable, "-c", EXPLAIN, "store" if store else "-", *what],
                   tmp_path, env)
        assert proc.returncode == 0, proc.stderr
        return dict(line.split("\t") for line in proc.stdout.splitlines())

    said = explain("hit", "miss", store=True)
    (tmp_path / "helpers.py").write_text(EXPLAIN_HELPERS.replace("x * FACTOR", "FACTOR * x"))
    said |= explain("helper")
    (tmp_path / "helpers.py").write_text(EXPLAIN_HELPERS.replace("2", "3"))
    (tmp_path / "analysis.py").write_text(
        EXPLAIN_ANALYSIS.replace("VERSION", "2").replace("0.012", "0.013"))
    (tmp_path / "models.py").write_text(EXPLAIN_MODELS.replace("self.x = x", "self.y = x"))
    said |= explain("constant", "result class", "version")
    return said


@pytest.mark.slow
def test_the_cache_explain_lines_are_what_cache_explain_says(tmp_path: Path) -> None:
    (block,) = [b for b in readme_blocks() if b.first in CHECKED]
    lines = block.text.splitlines()
    not_made = [line for line in lines if line.startswith(tuple(EXPLAIN_NOT_MADE))]
    assert len(not_made) == len(EXPLAIN_NOT_MADE), "EXPLAIN_NOT_MADE names a line not shown"
    said = explain_lines(tmp_path)
    # The README's lines in its order, each what a call in that situation says.
    made = [said[what] for what in
            ("hit", "miss", "stale", "helper", "constant", "result class", "version")]
    assert masked([line for line in lines if line not in not_made]) == masked(made)


def test_the_reader_finds_every_fence_indented_or_not() -> None:
    text = README.read_text(encoding="utf-8").splitlines()
    fences = [i + 1 for i, line in enumerate(text) if line.strip().startswith("```")]
    blocks = readme_blocks()
    assert [n for b in blocks for n in (b.line, b.line + len(b.text.splitlines()) + 1)] == fences
