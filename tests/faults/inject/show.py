"""Prints the driver's full record of chosen runs.

usage: python show.py OUT.jsonl SYSCALL#N:FAULT [OP:SYSCALL#N:FAULT ...]
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    want = set(sys.argv[2:])
    with open(sys.argv[1]) as lines:
        for line in lines:
            r = json.loads(line)
            if "targets" in r:
                continue
            sc, fault, n = r["inject"]
            if {f"{r['op']}:{sc}#{n}:{fault}", f"{sc}#{n}:{fault}"} & want:
                print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
