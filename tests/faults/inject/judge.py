"""Reads the driver's JSONL and prints every run that broke a promise, grouped.

usage: python judge.py OUT.jsonl [-v]
"""

from __future__ import annotations

import collections
import json
import sys

RAISING_OK = {"delete", "delete_max", "cache_clear", "clear", "clear_max", "prune",
              "prune_small"}  # judged by hand: an OSError with a clear message


def problems(r: dict) -> list[str]:
    out = []
    op, status = r["op"], r.get("status")
    inj = r.get("inject")
    if status == "HANG":
        out.append("HANG")
    if status == "nostart":
        out.append("nostart")
        return out
    if inj and not r.get("injected"):
        out.append("not-injected")
    res = r.get("result")
    killed = status == "signal9"
    if status not in ("exit", "signal9"):
        out.append(f"status {status}")
    if not killed and res is None and status == "exit":
        out.append("no result")
    if res:
        if "raised" in res:
            kind = "raised-ok?" if op in RAISING_OK else "RAISED"
            if "in cache_info" in res.get("traceback", ""):
                kind = "cache_info raised"
            out.append(f"{kind} {res['raised'][:160]}")
        if res.get("right") is False:
            out.append("WRONG value returned")
        if "status" in res:  # the CLI
            if res["status"] not in (0, 1):
                out.append(f"cli status {res['status']}: {res.get('output', '')[-200:]}")
            if "Traceback" in res.get("output", ""):
                out.append("cli traceback")
        for w in res.get("warnings", []):
            if not w.startswith("MemojarWarning"):
                out.append(f"foreign warning {w[:120]}")
    v = r.get("verify")
    if v in (None, "HANG") or (isinstance(v, dict) and "missing" in v):
        out.append(f"verify {v}")
        return out
    if v.get("raised"):
        out.append(f"VERIFY RAISED {v['raised'][:160]}")
    if v.get("wrong"):
        out.append(f"WRONG later {v['wrong']}")
    for w in v.get("warnings", []):
        out.append(f"verify warned {w[:160]}")
    before, after = v["before"], v["after"]
    def new(temps: list[str]) -> list[str]:  # the template's orphan is not the run's
        return [t for t in temps if ".4000000-" not in t]
    if not killed and new(before["temps"]):
        out.append(f"temps left {new(before['temps'])}")
    if killed:
        pruned = v.get("pruned", after)
        if pruned["temps"]:
            out.append(f"temps after prune {pruned['temps']}")
    if new(after["temps"]) and not killed:
        out.append(f"temps after verify {new(after['temps'])}")
    for label, c in (("exit", before), ("after", after)):
        if killed and label == "exit":
            continue
        if c["ledger"] is not None and c["ledger"].strip() != str(c["bytes"]):
            out.append(f"ledger@{label} {c['ledger']!r} != {c['bytes']}")
    if res and "info_f" in res and not killed:
        pass  # compared per function below when useful
    if r.get("outside_touched"):
        out.append(f"OUTSIDE {r['outside_touched']}")
    # a miss whose value was not stored must have warned (a write fault)
    if op.startswith("miss") and res and "f(100)" in v.get("computed", []) and \
            not any(w.startswith("MemojarWarning") for w in res.get("warnings", [])):
        out.append("miss not stored, no warning")
    return out


def main() -> None:
    verbose = "-v" in sys.argv
    groups: dict[str, list[str]] = collections.defaultdict(list)
    covered: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    with open(sys.argv[1]) as file:
        records = [json.loads(line) for line in file]
    for r in records:
        if "targets" in r:
            continue
        sc, fault, n = r["inject"]
        covered[r["op"]][fault] += 1
        for p in problems(r):
            key = f"{r['op']}: {p.split(' [')[0][:150]}"
            groups[key].append(f"{sc}#{n}:{fault}")
    for op, c in covered.items():
        print(f"covered {op}: {sum(c.values())} runs {dict(c)}")
    for key, where in sorted(groups.items()):
        print(f"{len(where):4d}  {key}")
        print("        " + " ".join(where[: None if verbose else 12]))


if __name__ == "__main__":
    main()
