"""How long clearing an S3 cache of many entries takes, and the requests it makes.

    python benchmarks/s3_clear.py [-n 2000] [--rounds 3]

Each round writes ``-n`` entries of one function (as memojar writes them, put by a pool of
threads), then times ``Cache.clear()`` and counts the requests the clear made, by
operation (a listing page, a ranged GET of an object's first bytes, a DELETE, a
multi-object delete of up to 1,000 keys, and the once-a-store look at whether the server
honours its ETags). moto runs in a child process (tests/s3_server.py), so the server does
not share this process's GIL, its multi-object delete made to honour ETags as S3's does
(``--ignored``: as moto's did before 5.2.6). Compare trees by
running it with each one's ``src`` first on ``PYTHONPATH``::

    PYTHONPATH=/path/to/old/src python benchmarks/s3_clear.py
    PYTHONPATH=src python benchmarks/s3_clear.py

moto answers each request on a new connection (its server closes every one), slower than
S3 on a kept connection; timings on a shared machine vary, and the request counts are what
a change is about.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import functools
import os
import statistics
import sys
import time
import warnings
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # the test servers


def fill(client: Any, bucket: str, prefix: str, n: int) -> None:
    """``n`` entries of one function, as memojar writes them."""
    from memojar import _entry
    from memojar._filestore import function_dir

    ident = _entry.make_ident("bench.f", None, "0" * 16)
    folder = f"{prefix}{function_dir('bench.f')}/"

    def put(i: int) -> None:
        key = f"{i:032x}"
        body = b"".join(_entry.encode(b"x" * 100, ident=ident, key=key, created=time.time(),
                                      expires=None, compute_time=0.0))
        client.put_object(Bucket=bucket, Key=f"{folder}{key}.pkl", Body=body)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n)))


def count(asked: collections.Counter[str], model: Any, **_: Any) -> None:
    asked[model.name] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="entries to clear")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ignored", action="store_true",
                        help="as moto before 5.2.6: a multi-object delete ignoring ETags (a store "
                        "removes one object a request there)")
    args = parser.parse_args()
    from s3_server import TEST_ENV, S3Server

    os.environ.update(TEST_ENV)
    warnings.simplefilter("ignore")  # no secret
    import memojar
    from memojar import Cache

    server = S3Server.process(multi_delete_etags=not args.ignored)
    try:
        bucket = server.bucket("clear")
        client = server.client()
        print(f"# memojar from {os.path.dirname(memojar.__file__)}; {args.n:,} entries")
        print("| round | seconds | requests of the clear |")
        print("|------:|--------:|:----------------------|")
        took = []
        for round_ in range(args.rounds):
            prefix = f"r{round_}/"
            fill(client, bucket, prefix, args.n)
            cache = Cache(server.location(bucket, prefix, timeout="60"))
            asked: collections.Counter[str] = collections.Counter()
            cache.store._bucket.client.meta.events.register(
                "before-call.s3", functools.partial(count, asked))
            start = time.perf_counter()
            removed = cache.clear()
            took.append(time.perf_counter() - start)
            cache.close()
            assert removed == args.n, removed
            said = ", ".join(f"{name} {count:,}" for name, count in sorted(asked.items()))
            print(f"| {round_ + 1} | {took[-1]:.2f} | {said} |")
        print(f"\nmedian {statistics.median(took):.2f} s to clear {args.n:,} entries "
              f"({statistics.median(took) / args.n * 1e3:.2f} ms an entry)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
