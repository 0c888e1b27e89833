"""The modules import one way: command line -> cache -> decorator -> store policy ->
entry format -> keys; backends below the cache, above the store interface. No cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import memojar

SRC = Path(memojar.__file__).parent


def imports_of(module: Path, top_level: bool = False) -> set[str]:
    """The memojar modules ``module`` imports (at any depth of its code, or at its top
    level only: what importing it imports)."""
    found = set()
    tree = ast.parse(module.read_text())
    nodes = tree.body if top_level else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module)
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_the_import_graph_has_no_cycles() -> None:
    """At module level. (``_identity`` hashes constants with ``_keys.make_key``, which
    hashes functions by their identity: a mutual need, met by an import inside a function.)
    """
    graph = {path.stem: imports_of(path, top_level=True) for path in SRC.glob("*.py")}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dep in graph.get(name, ()):
            visit(dep, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())


def test_the_decorator_and_stores_never_import_the_cache() -> None:
    for low in ("_decorator", "_store", "_filestore", "_redisstore", "_locks", "_entry",
                "_keys", "_identity"):
        assert "_cache" not in imports_of(SRC / f"{low}.py"), low
        assert "_cli" not in imports_of(SRC / f"{low}.py"), low


def test_stores_never_import_the_decorator() -> None:
    for low in ("_store", "_filestore", "_redisstore", "_locks", "_entry", "_keys"):
        assert "_decorator" not in imports_of(SRC / f"{low}.py"), low
