#!/usr/bin/env python3
"""Memory and time of ``memojar ls FUNCTION`` and of eviction on a large cache.

    python benchmarks/scale_commands.py [--ls-entries 200000] [--evict-entries 100000]
                                        [--against REV] [--repeats 1]

Writes a cache under ``$TMPDIR`` (a disk, not tmpfs: use ``TMPDIR=/var/tmp`` where /tmp is
one) through the file store's own write (entries of one function, each created a
microsecond after the last), then, in a fresh interpreter per run, measures:

- ``ls FUNCTION``       peak RSS and time of ``memojar ls mod.f`` (text and ``--json``),
                        output to /dev/null
- ``evict, ledger``     ``FileStore.evict(0)`` under a smaller ``max_size`` (the ledger's
                        eviction, what ``prune()`` runs), on a fresh copy of the cache
- ``evict, no lock``    the same where the ledger's lock cannot be made (a full disk)
- ``evict, listing``    ``Store.evict(0)`` of a store whose listing makes its entries as
                        it lists them (S3's eviction, without the network)

each evicting "near" (``max_size`` just under the total: about a tenth goes) and "far"
(a quarter of the total: three quarters go). ``--against REV`` runs the same with the
sources of a git revision (``git archive``) as well, for before/after tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SRC = str(HERE / "src")

MAKE = """
import sys, time
from memojar import _entry
from memojar._filestore import FileStore
from memojar._keys import make_key
store = FileStore(sys.argv[1])
ident = _entry.make_ident("mod.f", None, "0123456789abcdef")
start = time.time() - 3600
for i in range(int(sys.argv[2])):
    key = make_key(("mod.f", i))
    store.write("mod.f", key, _entry.encode(b"x" * 200, ident=ident, key=key,
                created=start + i * 1e-6, expires=None, compute_time=0.01))
"""

LS = """
import resource, sys, time
from memojar import _cli
sys.stdout = open("/dev/null", "w")
t = time.perf_counter()
code = _cli.main(sys.argv[1:])
took = time.perf_counter() - t
print(code, took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr)
"""

EVICT = """
import errno, resource, sys, time
from memojar import _filestore
from memojar._filestore import FileStore
from memojar._store import Store, StoredEntry

root, how, share = sys.argv[1], sys.argv[2], float(sys.argv[3])

class Listed(Store):
    location = "listed"
    def __init__(self, n, max_size):
        self.max_size = max_size
        self.gone = bytearray(n)
    def _list(self, function, heads):
        for i, gone in enumerate(self.gone):
            if not gone:
                yield StoredEntry("f", f"{i:032x}", 300, float(i), b"", f"listed/{i}")
    def _unlink(self, entries):
        for entry in entries:
            self.gone[int(entry.key, 16)] = 1
        return list(entries)
    _write = delete = lock = None

if how == "listing":
    n = int(root)
    store = Listed(n, int(n * 300 * share))
else:
    total = sum(e.size for e in FileStore(root).scan(heads=False))
    store = FileStore(root, max_size=int(total * share))
    if how == "no lock":
        def no_room():
            raise _filestore._NoRoomForLock(errno.ENOSPC, "No space left on device")
        store._total_lock = no_room
t = time.perf_counter()
removed = store.evict(0)
took = time.perf_counter() - t
print(removed, took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr)
"""

SHARES = {"near": 0.99, "far": 0.25}


def run(src: str, code: str, *argv: str) -> tuple[str, float, int]:
    env = dict(os.environ, PYTHONPATH=src)
    proc = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    first, took, rss = proc.stderr.split()[-3:]
    return first, float(took), int(rss)


def sources(against: str | None, tmp: Path) -> dict[str, str]:
    found = {"this": SRC}
    if against:
        out = tmp / "against"
        out.mkdir()
        archive = subprocess.run(["git", "-C", str(HERE), "archive", against, "src"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
        found = {against: str(out / "src"), **found}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ls-entries", type=int, default=200_000)
    parser.add_argument("--evict-entries", type=int, default=100_000)
    parser.add_argument("--against", help="a git revision to compare with (before)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="memojar-scale-"))
    try:
        srcs = sources(args.against, tmp)
        print(f"{'measure':<28} {'sources':<12} {'result':>10} {'time':>9} {'peak RSS':>10}")
        if args.ls_entries:
            cache = tmp / "ls"
            t = time.perf_counter()
            run(SRC, MAKE + "\nprint(0, 0, 0, file=sys.stderr)", str(cache),
                str(args.ls_entries))
            print(f"# {args.ls_entries:,} entries written in {time.perf_counter() - t:.0f} s")
            for json_flag in ([], ["--json"]):
                for name, src in srcs.items():
                    for _ in range(args.repeats):
                        code, took, rss = run(src, LS, "--dir", str(cache), "ls", "mod.f",
                                              *json_flag)
                        print(f"{'ls mod.f ' + ' '.join(json_flag):<28} {name:<12} "
                              f"{'exit ' + code:>10} {took:8.1f}s {rss / 2**20:8.0f}MB")
            shutil.rmtree(cache)
        if args.evict_entries:
            cache = tmp / "evict"
            run(SRC, MAKE + "\nprint(0, 0, 0, file=sys.stderr)", str(cache),
                str(args.evict_entries))
            for how in ("ledger", "no lock", "listing"):
                for where, share in SHARES.items():
                    for name, src in srcs.items():
                        for _ in range(args.repeats):
                            target = str(args.evict_entries)
                            if how != "listing":
                                copy = tmp / "copy"
                                shutil.rmtree(copy, ignore_errors=True)
                                subprocess.run(["cp", "-a", str(cache), str(copy)],
                                               check=True)
                                target = str(copy)
                            removed, took, rss = run(src, EVICT, target, how, str(share))
                            print(f"{'evict, ' + how + ', ' + where:<28} {name:<12} "
                                  f"{int(removed):>10,} {took:8.2f}s {rss / 2**20:8.0f}MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
