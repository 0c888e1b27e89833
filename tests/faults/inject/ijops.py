"""The operations the strace fault-injection driver attacks: how each cache is made, what
its template holds, what the operation does and which values are right afterwards."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import ijfuncs

from memojar import Cache

SMALL = 4000  # max_size of the evicting cache: 8 entries of f fill it
BIG = 10**7


class Op:
    def __init__(self, name: str, run: Callable[[dict[str, Any]], Any], *,
                 max_size: int | None = None, template: str = "full",
                 accept: dict[tuple[str, int], list[Any]] | None = None,
                 cli: list[str] | None = None, gen: int = 0, want: Any = None) -> None:
        self.name, self.run, self.max_size, self.template = name, run, max_size, template
        self.want = want  # the value the call must return (None: not judged here)
        self.accept = accept or {}
        self.cli, self.gen = cli, gen


def functions(cache: Cache, memory: int | None = None) -> dict[str, Any]:
    kw = {} if memory is None else {"memory": memory}
    return {
        "cache": cache,
        "f": cache.cached(**kw)(ijfuncs.f),
        "big": cache.cached(ijfuncs.big),
        "s": cache.cached(ttl=1, stale_while_revalidate=3600)(ijfuncs.s),
        "t": cache.cached(ttl=1)(ijfuncs.t),
    }


def open_cache(directory: str, max_size: int | None, memory: int | None = None
               ) -> dict[str, Any]:
    return functions(Cache(directory, max_size=max_size), memory)


def fill(directory: str, template: str, max_size: int | None) -> None:
    """The cache an operation starts from (made untraced, once, then copied)."""
    if template == "none":
        return
    fs = open_cache(directory, max_size)
    for x in range(8):
        fs["f"](x)
    if template == "full":
        fs["big"](0)
        fs["s"](0)
        fs["t"](0)
        time.sleep(1.2)  # s and t stale
        # an orphaned temporary file of a writer that died (pid not alive)
        from memojar import _filestore
        fdir = os.path.dirname(fs["cache"].store.path("ijfuncs.f", fs["f"].cache_key(0)))
        name = f"{fs['f'].cache_key(0)}.pkl.4000000-{_filestore._HOST}.0000abcd.tmp"
        with open(os.path.join(fdir, name), "wb") as out:
            out.write(b"x" * 100)
        past = time.time() - 7200
        os.utime(os.path.join(fdir, name), (past, past))


def _wait_threads() -> None:
    import threading
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and thread.name != "memojar-stats":
            thread.join(timeout=30)


def _swr(fs: dict[str, Any]) -> Any:
    value = fs["s"](0)
    _wait_threads()
    return value


E = ijfuncs.expected
F = ("f", 0)
NEW = ("f", 100)
SET = {"x": 0, "set": True}
OPS: dict[str, Op] = {op.name: op for op in [
    Op("miss", lambda fs: fs["f"](100), want=E("f", 100)),
    Op("miss_new", lambda fs: fs["f"](100), template="none", want=E("f", 100)),
    Op("miss_max", lambda fs: fs["f"](100), max_size=BIG, want=E("f", 100)),
    Op("evict", lambda fs: fs["f"](100), max_size=SMALL, template="small", want=E("f", 100)),
    Op("hit", lambda fs: fs["f"](0), want=E("f", 0)),
    Op("hit_big", lambda fs: fs["big"](0), want=E("big", 0)),
    Op("hit_memory", lambda fs: [fs["f"](0), fs["f"](0), fs["f"](0)], want=[E("f", 0)] * 3),
    Op("delete", lambda fs: fs["f"].cache_delete(0)),
    Op("delete_max", lambda fs: fs["f"].cache_delete(0), max_size=BIG),
    Op("cache_clear", lambda fs: fs["f"].cache_clear()),
    Op("clear", lambda fs: fs["cache"].clear()),
    Op("clear_max", lambda fs: fs["cache"].clear(), max_size=BIG),
    Op("prune", lambda fs: fs["cache"].prune(), max_size=BIG),
    Op("prune_small", lambda fs: fs["cache"].prune(), max_size=2000, template="small"),
    Op("swr", _swr, want=E("s", 0)),
    Op("set", lambda fs: fs["f"].cache_set(SET, 100),
       accept={NEW: [ijfuncs.expected("f", 100), {**SET}]}),
    Op("set_max", lambda fs: fs["f"].cache_set(SET, 0), max_size=BIG,
       accept={F: [ijfuncs.expected("f", 0), SET]}),
    Op("refresh", lambda fs: fs["f"].refresh(0), max_size=BIG, gen=1, want=E("f", 0, 1),
       accept={F: [ijfuncs.expected("f", 0), ijfuncs.expected("f", 0, 1)]}),
    Op("cli_ls", None, cli=["ls"]),  # type: ignore[arg-type]
    Op("cli_ls_f", None, cli=["ls", "ijfuncs.f"]),  # type: ignore[arg-type]
    Op("cli_info", None, cli=["info", "--json"]),  # type: ignore[arg-type]
    Op("cli_prune", None, cli=["prune"]),  # type: ignore[arg-type]
    Op("cli_clear", None, cli=["clear", "--yes"]),  # type: ignore[arg-type]
    Op("cli_clear_f", None, cli=["clear", "ijfuncs.t"]),  # type: ignore[arg-type]
]}

# what the verifier calls afterwards, per template
CHECKS = {
    "none": [("f", 100)],
    "small": [("f", x) for x in range(8)] + [("f", 100)],
    "full": [("f", x) for x in range(8)] + [("f", 100), ("big", 0), ("s", 0), ("t", 0)],
}
