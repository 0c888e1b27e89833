"""How much of a small miss's gap to the floor its system calls alone make.

    python benchmarks/miss_syscalls.py [--tmp /dev/shm] [-n 300] [--rounds 15]

Four memoizers of compare.py's ``small`` miss, interleaved on tmpfs, each on a fresh
directory:

- ``floor``: compare.py's floor (hash, a failed ``open``, ``open``/``writev``/``close`` of a
  temporary file, ``rename``: 5 system calls).
- ``floor+checks``: the floor's Python, making memojar's 13 system calls of a small miss
  instead (``tests/test_miss_syscalls.py``; 11 before 2026-12-02): the failed ``open``, the
  key's byte-range lock (``fcntl``) and its ``fstat``, the re-check (``access``), the
  function folder's ``fstat`` and ``lstat``, the shard opened ``O_NOFOLLOW`` (and closed),
  the unnamed file (``O_TMPFILE``) opened in it and written,
  ``linkat``, ``close`` and the unlock. No header, no bookkeeping: what the calls alone cost.
- ``flat``: ``floor+checks`` with memojar's own key (``make_key``: the bound arguments,
  the seed) and entry (``encode``: the header, the checksum, the classes the result holds),
  inlined in one function: what memojar's miss would cost with none of its layers (the
  decorator, the memo, the store, the lock object, the tallies).
- ``memojar``: ``Cache(dir).cached``.

The medians of the rounds' microseconds per miss are printed with their ratio to the floor:
``floor+checks`` is the least a miss that keeps memojar's promises (computed once across
processes, nothing written through a moved folder, a reused descriptor or a link) can cost
with the floor's Python, and ``flat`` the least it can cost with memojar's key and entry.
Beside them, each one's CPU time a miss over all rounds, split into user and system time
(``getrusage`` around each round; less disturbed by other processes than wall-clock time,
though a loaded machine inflates both: compare the ratios, not the figures, across runs).
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import itertools
import os
import resource
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from typing import Any

import compare  # this folder's (the script's own): its floor and its workload

_FLOCK = struct.Struct("hhqqi4x")
_O_TMPFILE = os.O_TMPFILE | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_SHARD = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def floor_with_checks(root: str, flat: bool = False
                      ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The floor's Python with memojar's system calls; ``flat``: with memojar's key and
    entry encoding too (see the module's docstring)."""
    from memojar import _depends, _entry, _keys

    seed = _entry.key_seed("")
    fingerprint = "0" * 32
    ident = (_entry.make_ident("compare.small", None, fingerprint)
             + _entry.manifest((("code", "", fingerprint),)))

    def memojar_key(args: tuple[Any, ...]) -> str:
        return _keys.make_key(args, seed)

    def memojar_encode(value: Any, key: str) -> list[Any]:
        created = time.time()
        return _entry.encode(value, ident=ident, key=key, created=created, expires=None,
                             compute_time=0.0, result_classes=_depends.result_classes)

    def floor_encode(value: Any, key: str) -> list[Any]:
        return compare._floor_encode(value)

    key_of = memojar_key if flat else compare._floor_key
    encode = memojar_encode if flat else floor_encode
    for i in range(256):
        os.makedirs(os.path.join(root, f"{i:02x}"), exist_ok=True)
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    lock = os.open(os.path.join(root, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            key = key_of(args)
            path = f"{root}/{key[:2]}/{key}"
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                offset = int(key[:15], 16)
                fcntl.fcntl(lock, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, 0, offset, 1, 0))
                try:
                    os.fstat(lock)
                    os.access(path, os.F_OK)
                    value = func(*args)
                    os.fstat(folder)
                    os.stat(root, follow_symlinks=False)
                    sfd = os.open(key[:2], _O_SHARD, dir_fd=folder)
                    try:
                        wfd = os.open(".", _O_TMPFILE, 0o600, dir_fd=sfd)
                        try:
                            os.writev(wfd, encode(value, key))
                            os.link(f"/proc/self/fd/{wfd}", key, dst_dir_fd=sfd,
                                    follow_symlinks=True)
                        finally:
                            os.close(wfd)
                    finally:
                        os.close(sfd)
                finally:
                    fcntl.fcntl(lock, fcntl.F_OFD_SETLK,
                                _FLOCK.pack(fcntl.F_UNLCK, 0, offset, 1, 0))
                return value
            try:
                return compare._floor_decode(os.read(fd, os.fstat(fd).st_size), False)
            finally:
                os.close(fd)

        return wrapper

    return decorate


def interleaved(contenders: dict[str, Callable[..., Any]], n: int, rounds: int,
                alternate: bool = False) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``rounds`` rounds of ``n`` fresh misses of each contender in turn (the order reversed
    every other round if ``alternate``): each round's microseconds a miss, by contender, and
    each one's CPU seconds (user, system) over all rounds (``getrusage``)."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    cpu = {name: [0.0, 0.0] for name in contenders}
    counters = {name: itertools.count() for name in contenders}
    for round_ in range(rounds):
        order = list(contenders.items())
        for name, f in reversed(order) if alternate and round_ % 2 else order:
            counter = counters[name]
            gc.collect()
            gc.disable()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            for _ in range(n):
                f(next(counter), "m")
            samples[name].append((time.perf_counter() - start) / n * 1e6)
            after = resource.getrusage(resource.RUSAGE_SELF)
            gc.enable()
            cpu[name][0] += after.ru_utime - usage.ru_utime
            cpu[name][1] += after.ru_stime - usage.ru_stime
    return samples, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tmp", default="/dev/shm", help="where all write (default: tmpfs)")
    p.add_argument("-n", type=int, default=300, help="misses a round")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    from memojar import Cache

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        dirs = {name: os.path.join(tmp, name)
                for name in ("floor", "checks", "flat", "memojar")}
        for d in dirs.values():
            os.mkdir(d)
        contenders = {
            "floor": compare.floor_memoize(dirs["floor"])(compare.small),
            "floor+checks": floor_with_checks(dirs["checks"])(compare.small),
            "flat": floor_with_checks(dirs["flat"], flat=True)(compare.small),
            "memojar": Cache(dirs["memojar"]).cached(compare.small),
        }
        for f in contenders.values():
            for i in range(100):
                f(-1 - i, "warm")
        samples, cpu = interleaved(contenders, args.n, args.rounds)
    floor = statistics.median(samples["floor"])
    misses = args.n * args.rounds
    for name, xs in samples.items():
        m = statistics.median(xs)
        user, system = (f"{t / misses * 1e6:6.1f} µs ({t / f:4.2f}x)" if f else "-"
                        for t, f in zip(cpu[name], cpu["floor"], strict=True))
        print(f"{name:<13} {m:7.1f} µs a miss  ({m / floor:4.2f}x the floor)  "
              f"user {user}  system {system}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
