"""How long the callers of one missing key wait on a remote store, and what they ask it.

    python benchmarks/waiters.py [--store redis s3] [-n 20] [--compute 0.3] [--rounds 3]

``-n`` threads, each with a ``Cache`` of its own (its own store object and connection, as
callers on different machines: no shortcut of a release seen in the same process), call one
function of one missing key at the same moment (a barrier). One computes (``--compute``
seconds); the others wait for it. Printed per round: how long after the value was stored
(the function's return, plus the holder's write) the last caller got it, the median of
those waits, and the requests the callers made of the store while waiting: lock tries (a
``SET NX`` script on Redis; an ``If-None-Match`` PUT of the lease on S3, with the HEAD of a
held one, and takeovers), entry reads, and the locks taken (a waiter that takes the lock
after the value is stored takes it only to read the entry).

Each store runs on a server of its own: ``redis-server`` (tests/redis_server.py) and moto
in a child process (tests/s3_server.py). Compare trees by running it with each one's
``src`` first on ``PYTHONPATH``::

    PYTHONPATH=/path/to/old/src python benchmarks/waiters.py
    PYTHONPATH=src python benchmarks/waiters.py

Timings on a shared machine vary; the request counts are what the change is about.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # the test servers


@contextmanager
def server(kind: str) -> Iterator[str]:
    """A location on a fresh server of ``kind``, stopped after."""
    if kind == "redis":
        from redis_server import RedisServer

        redis = RedisServer.start()
        try:
            yield redis.url(1)
        finally:
            redis.stop()
        return
    from s3_server import TEST_ENV, S3Server

    os.environ.update(TEST_ENV)
    s3 = S3Server.process()
    try:
        yield s3.location(s3.bucket("waiters"), "bench")
    finally:
        s3.stop()


def count_requests(store: Any, counts: collections.Counter[str]) -> None:
    """Count the store's requests by kind in ``counts`` (wrapping its primitives)."""

    def wrap(owner: Any, name: str, label: Callable[..., str]) -> None:
        real = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[label(*args, **kwargs)] += 1
            return real(*args, **kwargs)

        setattr(owner, name, counted)

    if store.kind == "Redis":
        wrap(store, "_acquire", lambda *a, **k: "lock tries")
        wrap(store, "_read", lambda *a, **k: "entry reads")
    else:
        bucket = store._bucket

        def what(name: str, *args: Any, **kwargs: Any) -> str:
            return "lock tries" if name.endswith(".lease") else "entry reads"

        wrap(bucket, "put", lambda name, *a, **k: "lock tries" if name.endswith(".lease")
             else "entry writes")
        wrap(bucket, "head", what)
        wrap(bucket, "get", what)


def one_round(location: str, n: int, compute: float, salt: int) -> dict[str, Any]:
    from memojar import Cache

    counts: collections.Counter[str] = collections.Counter()
    taken: list[int] = []
    computed: list[float] = []
    done: list[float] = [0.0] * n
    caches = [Cache(location, secret="bench") for _ in range(n)]
    funcs = []
    for cache in caches:
        count_requests(cache.store, counts)
        real_lock = cache.store.lock

        def lock(function: str, key: str, _real: Any = real_lock) -> Any:
            held = _real(function, key)
            real_try = held._try

            def try_() -> bool:
                ok = bool(real_try())
                if ok:
                    taken.append(1)
                return ok

            held._try = try_
            return held

        cache.store.lock = lock  # type: ignore[method-assign]

        def slow(x: int) -> int:
            time.sleep(compute)
            computed.append(time.monotonic())
            return x * 2

        slow.__qualname__ = slow.__name__ = "slow"  # one function for every cache
        funcs.append(cache.cached(slow))
    barrier = threading.Barrier(n)
    values: list[Any] = [None] * n

    def call(i: int) -> None:
        barrier.wait()
        values[i] = funcs[i](salt)
        done[i] = time.monotonic()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values == [salt * 2] * n, values
    assert len(computed) == 1, f"computed {len(computed)} times"
    for cache in caches:
        cache.store.close()
    waits = sorted(t - computed[0] for t in done)
    return {"last": waits[-1], "median": statistics.median(waits), "locks": len(taken),
            **counts}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", nargs="+", default=["redis", "s3"], choices=["redis", "s3"])
    p.add_argument("-n", type=int, default=20, help="concurrent callers of one key")
    p.add_argument("--compute", type=float, default=0.3, help="seconds the function takes")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    import memojar

    warnings.simplefilter("ignore")
    print(f"memojar from {os.path.dirname(memojar.__file__)}; {args.n} callers, compute "
          f"{args.compute:g} s")
    print(f"{'store':6} {'round':>5} {'last wait':>10} {'median':>8} {'locks':>6} "
          f"{'lock tries':>11} {'entry reads':>12}")
    for kind in args.store:
        with server(kind) as location:
            for r in range(args.rounds):
                got = one_round(location, args.n, args.compute, 1000 + r)
                print(f"{kind:6} {r:>5} {got['last']:>9.3f}s {got['median']:>7.3f}s "
                      f"{got['locks']:>6} {got.get('lock tries', 0):>11} "
                      f"{got.get('entry reads', 0):>12}")


if __name__ == "__main__":
    main()
