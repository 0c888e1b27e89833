"""The fresh process that judges caches after faulted runs.

usage: ijverify.py OP DIR:KILLED ...   (prints one JSON line per DIR)
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings

import ijfuncs
import ijops

ENTRY = re.compile(r"[0-9a-f]{32}\.(?:pkl|mj)")


def census(root: str) -> dict[str, object]:
    temps, entries, total = [], 0, 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".tmp"):
                temps.append(os.path.relpath(path, root))
            elif ENTRY.fullmatch(name):
                entries += 1
                total += os.lstat(path).st_size
    ledger = None
    try:
        with open(os.path.join(root, ".size"), "rb") as file:
            ledger = file.read().decode(errors="replace")
    except FileNotFoundError:
        pass
    return {"temps": sorted(temps), "entries": entries, "bytes": total, "ledger": ledger}


def main() -> None:
    op = ijops.OPS[sys.argv[1]]
    for arg in sys.argv[2:]:
        directory, killed = arg.rsplit(":", 1)
        out: dict[str, object] = {"dir": directory, "before": census(directory)}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if killed == "1":
                    from memojar import Cache
                    Cache(directory, max_size=op.max_size).prune()
                    out["pruned"] = census(directory)
                fs = ijops.open_cache(directory, op.max_size)
                wrong, computed = [], []
                for name, x in ijops.CHECKS[op.template]:
                    before = len(ijfuncs.COMPUTED)
                    value = fs[name](x)
                    accept = op.accept.get((name, x), [ijfuncs.expected(name, x)])
                    if value not in accept:
                        wrong.append(f"{name}({x}) = {repr(value)[:100]}")
                    if len(ijfuncs.COMPUTED) > before:
                        computed.append(f"{name}({x})")
                out["wrong"], out["computed"] = wrong, computed
                ijops._wait_threads()
            except BaseException as exc:  # noqa: BLE001 - reported
                import traceback
                out["raised"] = f"{type(exc).__name__}: {exc}"
                out["traceback"] = traceback.format_exc()[-2000:]
        out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
        out["after"] = census(directory)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
