"""Instructions of ``import memojar``, counted by callgrind (deterministic, unlike timings).

    python benchmarks/import_instructions.py [TREE ...] [--peers] [--python PY]

Each TREE is a source tree (a checkout with ``src/memojar``; default: this one). For each, a
child interpreter with ``PYTHONPATH=TREE/src`` runs ``import memojar`` under ``valgrind
--tool=callgrind``, and once ``pass``: the difference is the import, the interpreter's
start-up cancelling out. The ``.pyc`` files are written first (``PYTHONDONTWRITEBYTECODE``
is dropped), as an installed package has them. Also printed: the modules the import adds to
``sys.modules``. ``--peers`` adds the rivals of ``compare.py``'s import row (diskcache and
its floor, ``pickle, mmap, xxhash``), whose milliseconds in the README's table turn
instructions into a time on the machine of that run.

Example, the first release against this tree::

    git worktree add /tmp/oldmain 6ac7585   # or any checkout of it
    python benchmarks/import_instructions.py /tmp/oldmain . --peers

Needs valgrind. Counts vary by a few hundred thousand from run to run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from hit_instructions import callgrind_total  # this folder: the script's own

PEERS = {"diskcache": "import diskcache", "floor": "import pickle, mmap, xxhash"}
COUNT = "import sys; before = set(sys.modules); {}; print(len(set(sys.modules) - before))"


def _env(tree: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "src"),
               PYTHONHASHSEED="0")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def instructions(tree: str, statement: str, python: str) -> int:
    """Total instructions of ``python -c statement`` (callgrind's summary)."""
    return callgrind_total([python, "-c", statement], _env(tree))


def row(name: str, tree: str, statement: str, python: str) -> str:
    modules = subprocess.run([python, "-c", COUNT.format(statement)], env=_env(tree),
                             check=True, timeout=120, capture_output=True, text=True)
    cost = instructions(tree, statement, python) - instructions(tree, "pass", python)
    return f"{name:<40} {cost / 1e6:>14,.1f} {modules.stdout.strip():>8}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="*", default=[os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))], help="source trees (with src/memojar)")
    p.add_argument("--peers", action="store_true", help="also diskcache and the floor")
    p.add_argument("--python", default=sys.executable, help="the interpreter to run")
    args = p.parse_args()
    print(f"{'import':<40} {'M instructions':>14} {'modules':>8}")
    for tree in args.trees:
        print(row(f"memojar from {tree}", tree, "import memojar", args.python), flush=True)
    if args.peers:
        for name, statement in PEERS.items():
            print(row(name, args.trees[0], statement, args.python), flush=True)


if __name__ == "__main__":
    main()
