#!/usr/bin/env python3
"""memojar against its peers and against the floor, side by side.

    python benchmarks/compare.py --quick                 # < 5 minutes on 2 cores
    python benchmarks/compare.py --json benchmarks/results/full.json

Contenders, each on its own fresh temporary directory:

- ``memojar``      ``Cache(dir).cached``
- ``diskcache``    ``diskcache.Cache(dir).memoize()``
- ``joblib``       ``joblib.Memory(dir, verbose=0).cache``
- ``cachier``      ``cachier(cache_dir=dir, separate_files=True)``
- ``lru_cache``    ``functools.lru_cache(maxsize=None)``: the in-memory reference
- ``floor``        the least a disk memoizer can do: hash the pickled arguments with xxh3,
                   one read of one file (a copy-on-write ``mmap`` verified by an xxh3
                   checksum for results of 1 MiB or more), one unpickle; no metadata, no lock
- ``memojar-redis`` (small hit and miss only) ``Cache("redis://127.0.0.1:PORT")`` against a
                   ``redis-server`` this script starts on loopback, when ``memojar._redisstore``
                   exists
- ``memojar-s3``   (small hit and miss only, with ``--only memojar-s3 s3-floor``: not in the
                   default run, a request to moto takes milliseconds)
                   ``Cache("s3://bench/PREFIX?endpoint_url=...")`` against
                   moto's S3 server, which this script starts on loopback when moto and boto3
                   are installed; ``s3-floor`` beside it: one ``get_object`` with the same
                   client plus ``pickle.loads`` (a miss: one ``put_object``); ``s3fs``: the
                   peer a user would otherwise write, a memoizer over fsspec's
                   ``s3fs.S3FileSystem`` with ``pickle`` (see ``S3fs``), against the same
                   server. These rows also run ``big_hit`` (the 80 MB result), not its
                   memory child. ``--only memojar-s3 s3-floor s3fs --workloads small big_hit``;
                   with an S3 row, the small workloads make fewer calls a round

Workloads (medians of repeated, interleaved runs, after warm-up):

1. ``small_hit``   hit, small arguments and small result (µs per call)
2. ``small_miss``  miss, small (µs per call, the write and the lock included)
3. ``big_hit``     hit returning an 80 MB float64 array, timed through ``.sum()`` (ms)
4. ``big_arg``     hit with an 80 MB array argument and a small result (ms)
5. ``scale_N``     hit latency after N distinct entries in one function (µs); N = 1,000 /
                   100,000 / 1,000,000 (``--quick`` stops at 100,000)
6. ``import``      ``import <package>`` in a fresh interpreter (ms)
7. ``big_hit_mem`` peak extra memory of a hit on the 80 MB result, in a fresh process, as a
                   multiple of the result's size (peak RSS during the hit minus RSS before)
8. ``memory_hit``  the small hit of ``cached(memory=1000)`` (the memory tier) beside
                   ``lru_cache`` and memojar's disk hit (µs per call; ratios in the notes)
9. ``cache_info``  ``f.cache_info()`` of a function with 100,000 entries (``--quick``:
                   10,000): the first call lists the entries once, later calls read the
                   bookkeeping (µs per call)

Peers that are not installed are skipped with a note (``pip install -r
benchmarks/requirements.txt`` installs them). The goals of the performance issue are printed
at the end as met / not met with the measured ratio.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import mmap
import os
import pickle
import platform
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import xxhash

BIG_N = 10_000_000  # float64 values: 80 MB
BIG_BYTES = BIG_N * 8
HERE = os.path.dirname(os.path.abspath(__file__))


# --- the functions being cached ------------------------------------------------------------
# Module level, so every contender (joblib reads source, cachier and memojar name them by
# module and qualname) sees an ordinary function; a fresh subprocess finds the same ones.

def small(x, y="a"):
    return {"x": x, "y": y, "items": [x, x + 1, x + 2]}


def big_result(seed):
    import numpy as np

    return np.arange(BIG_N, dtype=np.float64) + seed


def big_arg(arr):
    return (arr.shape[0], str(arr.dtype))


def scaled(i):
    return (i, "value")


# --- the floor ---------------------------------------------------------------------------

_FLOOR_HEAD = struct.Struct("<QQI")  # checksum, payload length, number of buffers
_LEN = struct.Struct("<Q")
_ALIGN = 64
_MMAP_AT = 1 << 20


def _floor_key(args: tuple) -> str:
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(args, 5, buffer_callback=buffers.append)
    if not buffers:
        return xxhash.xxh3_128_hexdigest(data)
    h = xxhash.xxh3_128(data)
    for buf in buffers:
        h.update(buf.raw())
    return h.hexdigest()


def _floor_encode(value: Any) -> list[Any]:
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(value, 5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    lengths = b"".join(_LEN.pack(r.nbytes) for r in raws)
    body: list[Any] = [payload]
    offset = _FLOOR_HEAD.size + len(lengths) + len(payload)
    for raw in raws:
        pad = -offset % _ALIGN
        body += [b"\0" * pad, raw]
        offset += pad + raw.nbytes
    rest = [_FLOOR_HEAD.pack(0, len(payload), len(raws))[8:], lengths, *body]
    h = xxhash.xxh3_64()
    for chunk in rest:
        h.update(chunk)
    return [_LEN.pack(h.intdigest()), *rest]


def _floor_decode(data: Any, verify: bool) -> Any:
    view = memoryview(data)
    checksum, payload_len, nbuf = _FLOOR_HEAD.unpack_from(view)
    if verify and xxhash.xxh3_64_intdigest(view[8:]) != checksum:
        raise ValueError("checksum")
    at = _FLOOR_HEAD.size + 8 * nbuf
    end = at + payload_len
    buffers = []
    for i in range(nbuf):
        n = _LEN.unpack_from(view, _FLOOR_HEAD.size + 8 * i)[0]
        start = end + (-end % _ALIGN)
        buffers.append(view[start : start + n])
        end = start + n
    return pickle.loads(view[at : at + payload_len], buffers=buffers)


def floor_memoize(root: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The floor: hash, open, (fstat,) read or map, unpickle. No metadata, no lock."""
    for i in range(256):
        os.makedirs(os.path.join(root, f"{i:02x}"), exist_ok=True)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            key = _floor_key(args)
            path = f"{root}/{key[:2]}/{key}"
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                value = func(*args)
                tmp = f"{path}.tmp"
                wfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.writev(wfd, _floor_encode(value))
                finally:
                    os.close(wfd)
                os.replace(tmp, path)
                return value
            try:
                size = os.fstat(fd).st_size
                if size >= _MMAP_AT:
                    return _floor_decode(mmap.mmap(fd, size, access=mmap.ACCESS_COPY), True)
                return _floor_decode(os.read(fd, size), False)
            finally:
                os.close(fd)

        return wrapper

    return decorate


# --- contenders ----------------------------------------------------------------------------

class Contender:
    """One memoizer: how to make it on a fresh directory and decorate a function."""

    name = ""
    module = ""  # what ``import`` measures
    kwargs_ok = True

    def __init__(self, root: str) -> None:
        self.root = root

    def missing(self) -> str | None:
        if self.module and importlib.util.find_spec(self.module.split(".")[0]) is None:
            return (f"{self.name}: not installed, skipped "
                    "(pip install -r benchmarks/requirements.txt)")
        return None

    def wrap(self, func: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError

    def populate(self, wrapped: Callable[..., Any], func: Callable[..., Any],
                 calls: Iterable[tuple]) -> None:
        """Store one entry per call (the plain miss path; faster where the peer has one)."""
        for args in calls:
            wrapped(*args)

    def close(self) -> None:
        pass


class Memojar(Contender):
    name, module = "memojar", "memojar"

    def wrap(self, func):
        from memojar import Cache

        self.cache = Cache(self.root)
        return self.cache.cached(func)

    def populate(self, wrapped, func, calls):
        memo = getattr(wrapped, "__memojar__", None)
        if memo is None or not hasattr(memo, "put"):
            return super().populate(wrapped, func, calls)
        for args in calls:  # what a miss stores, without the per-key lock
            memo.put(memo.key_of(args, {}), func(*args), 0.0)

    def close(self):
        cache = getattr(self, "cache", None)
        if cache is not None:
            cache.close()


class MemojarRedis(Memojar):
    name, module = "memojar-redis", "redis"
    url = ""

    def missing(self):
        if importlib.util.find_spec("memojar._redisstore") is None:
            return "memojar-redis: memojar._redisstore does not exist yet, skipped"
        if importlib.util.find_spec("redis") is None:
            return "memojar-redis: the redis client is not installed, skipped"
        if shutil.which("redis-server") is None:
            return "memojar-redis: redis-server not found, skipped"
        return None

    def wrap(self, func):
        from memojar import Cache

        # a loopback server of our own: the "entries are not authenticated" warning is moot
        warnings.filterwarnings("ignore", message="Redis cache .* has no secret")
        self.cache = Cache(self.url)
        return self.cache.cached(func)


class MemojarS3(Memojar):
    name, module = "memojar-s3", "boto3"
    endpoint = ""

    def missing(self):
        for module in ("boto3", "moto"):
            if importlib.util.find_spec(module) is None:
                return f"memojar-s3: {module} is not installed (pip install -e '.[dev]'), skipped"
        return None

    def wrap(self, func):
        from memojar import Cache

        # a loopback server of our own: the "entries are not authenticated" warning is moot
        warnings.filterwarnings("ignore", message="S3 cache .* has no secret")
        prefix = os.path.basename(self.root)  # each workload's own
        self.cache = Cache(f"s3://bench/{prefix}?endpoint_url={self.endpoint}")
        return self.cache.cached(func)


class S3Floor(MemojarS3):
    """The floor on S3: hash the arguments, one GET, one unpickle (a miss: one PUT)."""

    name = "s3-floor"

    def wrap(self, func):
        from memojar._s3store import _client

        client = _client({"endpoint_url": self.endpoint}, 5.0)
        prefix = os.path.basename(self.root)

        def wrapper(*args: Any) -> Any:
            key = f"{prefix}/{_floor_key(args)}"
            try:
                body = client.get_object(Bucket="bench", Key=key)["Body"].read()
            except client.exceptions.NoSuchKey:
                value = func(*args)
                client.put_object(Bucket="bench", Key=key, Body=pickle.dumps(value, 5))
                return value
            return pickle.loads(body)

        return wrapper


class S3fs(MemojarS3):
    """The peer on S3: what a user writes without memojar, by hand over fsspec's s3fs.

    joblib.Memory, diskcache and cachier keep local files (joblib's request for S3, #390,
    is open since 2016; its store-backend hook has third-party S3 backends only), so a team
    that wants its results in a bucket writes this: hash the pickled arguments, ``fs.open`` the
    object and ``pickle.load`` it, and on ``FileNotFoundError`` compute and ``pickle.dump``
    it there. ``fs.open`` is how s3fs's documentation reads and writes objects; it asks the
    object's size first (a HEAD) and then GETs it. It checks nothing (no checksum, version,
    code identity, ttl, lock or signature), so it is a floor of a kind, not a like-for-like
    peer: it says what a user would give up memojar's checks for.
    """

    name, module = "s3fs", "s3fs"

    def missing(self):
        for module in ("s3fs", "boto3", "moto"):
            if importlib.util.find_spec(module) is None:
                return (f"s3fs: {module} is not installed (pip install -r "
                        "benchmarks/requirements.txt), skipped")
        return None

    def wrap(self, func):
        import hashlib

        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=self.endpoint, skip_instance_cache=True)
        base = f"bench/{os.path.basename(self.root)}/{func.__module__}.{func.__qualname__}"

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = hashlib.sha256(pickle.dumps((args, kwargs))).hexdigest()
            path = f"{base}/{key}.pkl"
            try:
                with fs.open(path, "rb") as f:
                    return pickle.load(f)
            except FileNotFoundError:
                value = func(*args, **kwargs)
                with fs.open(path, "wb") as f:
                    pickle.dump(value, f)
                return value

        return wrapper


class DiskCache(Contender):
    name, module = "diskcache", "diskcache"

    def wrap(self, func):
        import diskcache

        self.cache = diskcache.Cache(self.root)
        return self.cache.memoize()(func)

    def populate(self, wrapped, func, calls):
        make_key = getattr(wrapped, "__cache_key__", None)
        if make_key is None:
            return super().populate(wrapped, func, calls)
        with self.cache.transact():  # what memoize stores, in one transaction
            for args in calls:
                self.cache.set(make_key(*args), func(*args))

    def close(self):
        self.cache.close()


class Joblib(Contender):
    name, module = "joblib", "joblib"

    def wrap(self, func):
        import joblib

        return joblib.Memory(self.root, verbose=0).cache(func)


class Cachier(Contender):
    name, module = "cachier", "cachier"

    def wrap(self, func):
        from cachier import cachier

        return cachier(cache_dir=self.root, separate_files=True)(func)


class LruCache(Contender):
    name, module = "lru_cache", "functools"

    def wrap(self, func):
        return functools.lru_cache(maxsize=None)(func)


class Floor(Contender):
    name, module = "floor", "xxhash"

    def wrap(self, func):
        return floor_memoize(self.root)(func)


CONTENDERS: list[type[Contender]] = [Memojar, DiskCache, Joblib, Cachier, LruCache, Floor]
ORDER = ["memojar", "memojar-redis", "memojar-s3", "s3-floor", "s3fs", "diskcache", "joblib",
         "cachier", "lru_cache", "floor"]
IMPORTS = {
    "memojar": "memojar",
    "diskcache": "diskcache",
    "joblib": "joblib",
    "cachier": "cachier",
    "lru_cache": "functools",
    "floor": "pickle, mmap, xxhash",
}


# --- timing helpers ------------------------------------------------------------------------

def per_call(fn: Callable[[], Any], n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls, the collector off (as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n
    finally:
        gc.enable()


def median(xs: list[float]) -> float:
    return statistics.median(xs)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.tmp = tempfile.mkdtemp(prefix="memojar-bench-", dir=args.tmp)
        self.results: dict[str, dict[str, float]] = {}
        self.notes: list[str] = []
        self.redis: subprocess.Popen[bytes] | None = None
        self.s3: subprocess.Popen[bytes] | None = None
        self.contenders = [c for c in CONTENDERS if not args.only or c.name in args.only]
        available = []
        for cls in self.contenders:
            note = cls(self.tmp).missing()
            if note:
                self.notes.append(note)
            else:
                available.append(cls)
        self.contenders = available
        self.redis_cls: type[Contender] | None = None
        if not args.only or "memojar-redis" in args.only:
            note = MemojarRedis(self.tmp).missing()
            if note:
                self.notes.append(note)
            else:
                self.redis_cls = MemojarRedis
        self.s3_classes: list[type[Contender]] = []
        # only when asked for (--only memojar-s3 s3-floor s3fs): a request to moto's server
        # takes milliseconds, which would make the quick run several minutes longer
        for cls in (MemojarS3, S3Floor, S3fs):
            if args.only and cls.name in args.only:
                note = cls(self.tmp).missing()
                if note:
                    self.notes.append(note)
                else:
                    self.s3_classes.append(cls)

    def fresh(self, cls: type[Contender], workload: str) -> Contender:
        path = os.path.join(self.tmp, f"{workload}-{cls.name}")
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return cls(path)

    def record(self, workload: str, name: str, value: float | None) -> None:
        if value is not None:
            self.results.setdefault(workload, {})[name] = value

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # --- redis -------------------------------------------------------------------------

    def start_redis(self) -> None:
        if self.redis_cls is None:
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.notes.append("memojar-redis: redis-server did not start, skipped")
            self.redis_cls = None
            return
        MemojarRedis.url = f"redis://127.0.0.1:{port}/0"

    def start_s3(self) -> None:
        """moto's S3 server in a child process (not a thread: no GIL shared with the
        client), dummy credentials, and a bucket."""
        if not self.s3_classes:
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.s3 = subprocess.Popen(
            [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_DEFAULT_REGION="us-east-1")
        from memojar._s3store import _client

        deadline = time.monotonic() + 20
        while True:
            try:
                _client({"endpoint_url": endpoint}, 1.0).create_bucket(Bucket="bench")
                break
            except Exception:  # noqa: BLE001 - not up yet (connection refused)
                if time.monotonic() > deadline:
                    self.notes.append("memojar-s3: moto's server did not start, skipped")
                    self.s3_classes = []
                    return
                time.sleep(0.1)
        MemojarS3.endpoint = endpoint

    def stop(self) -> None:
        if self.s3 is not None:
            self.s3.terminate()
            try:
                self.s3.wait(10)
            except subprocess.TimeoutExpired:
                self.s3.kill()
        if self.redis is not None:
            self.redis.terminate()
            try:
                self.redis.wait(10)
            except subprocess.TimeoutExpired:
                self.redis.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- workloads ---------------------------------------------------------------------

    def interleaved(self, workload: str, makers: dict[str, Callable[[], Any]], n: int,
                    repeats: int, scale: float = 1e6) -> None:
        """Time each contender's ``call`` in rounds, one contender after the other."""
        samples: dict[str, list[float]] = {name: [] for name in makers}
        for _ in range(repeats):
            for name, call in makers.items():
                samples[name].append(per_call(call, n) * scale)
        for name, xs in samples.items():
            self.record(workload, name, median(xs))

    def small_hit(self) -> None:
        # Many short rounds, interleaved: a burst of load from elsewhere spoils a few rounds
        # of every contender alike, and the median steps over them.
        n, repeats = (250, 31) if self.quick else (500, 61)
        if self.s3_classes:  # a request to moto takes milliseconds: fewer calls a round
            n, repeats = (20, 21) if self.quick else (40, 31)
        calls, open_ = {}, []
        for cls in self.hit_contenders():
            c = self.fresh(cls, "small_hit")
            f = c.wrap(small)
            f(1, "b")
            for _ in range(200):  # warm-up
                f(1, "b")
            calls[cls.name] = functools.partial(f, 1, "b")
            open_.append(c)
        self.interleaved("small_hit", calls, n, repeats)
        info = getattr(calls.get("memojar"), "func", None)
        if info is not None and info.cache_info().misses != 1:
            self.notes.append(f"small_hit memojar: {info.cache_info()} (expected 1 miss)")
        for c in open_:
            c.close()

    def memory_hit(self) -> None:
        from memojar import Cache

        n, repeats = (2000, 31) if self.quick else (5000, 61)
        path = os.path.join(self.tmp, "memory_hit")
        shutil.rmtree(path, ignore_errors=True)
        cache = Cache(path)
        tier = cache.cached(memory=1000)(small)
        disk = Memojar(path + "-disk").wrap(small)
        lru = functools.lru_cache(maxsize=None)(small)
        calls = {}
        for name, f in (("memojar memory=", tier), ("memojar", disk), ("lru_cache", lru)):
            for _ in range(200):  # warm-up
                f(1, "b")
            calls[name] = functools.partial(f, 1, "b")
        self.interleaved("memory_hit", calls, n, repeats)
        got = self.results["memory_hit"]
        self.notes.append(
            f"memory_hit: memory tier {got['memojar memory=']:.2f} µs = "
            f"{got['memojar memory='] / got['lru_cache']:.1f}x lru_cache, "
            f"1/{got['memojar'] / got['memojar memory=']:.0f} of a disk hit"
        )

    def cache_info(self) -> None:
        from memojar import Cache

        size = 10_000 if self.quick else 100_000
        path = os.path.join(self.tmp, "cache_info")
        shutil.rmtree(path, ignore_errors=True)
        c = Memojar(path)
        f = c.wrap(scaled)
        start = time.perf_counter()
        c.populate(f, scaled, ((i,) for i in range(size)))
        self.log(f"  cache_info: {size:,} entries filled in {time.perf_counter() - start:.1f} s")
        cache = Cache(path)  # a new process's view: no count kept in memory
        g = cache.cached(scaled)
        start = time.perf_counter()
        first = g.cache_info()
        self.record("cache_info", f"first ({size:,})", (time.perf_counter() - start) * 1e6)
        self.interleaved("cache_info", {f"then ({size:,})": g.cache_info}, 200, 9)
        if first.entries != size or g.cache_info().entries != size:
            self.notes.append(f"cache_info: {g.cache_info()} (expected {size:,} entries)")
        if self.quick:
            self.notes.append("cache_info: --quick fills 10,000 entries (100,000 without it)")
        shutil.rmtree(path, ignore_errors=True)

    def hit_contenders(self) -> list[type[Contender]]:
        extra = [self.redis_cls] if self.redis_cls else []
        return [*self.contenders, *extra, *self.s3_classes]

    def small_miss(self) -> None:
        n, repeats = (200, 5) if self.quick else (500, 9)
        if self.s3_classes:  # a miss on moto is several requests of milliseconds each
            n, repeats = (20, 9) if self.quick else (40, 15)
        state = {}
        for cls in self.hit_contenders():
            if cls is LruCache:
                continue  # an in-memory miss is just the call; no disk to compare with
            c = self.fresh(cls, "small_miss")
            f = c.wrap(small)
            for i in range(50):  # warm-up: directories made, code paths hot
                f(-1 - i, "warm")
            state[cls.name] = (c, f, iter(range(10**9)))
        samples: dict[str, list[float]] = {name: [] for name in state}
        for _ in range(repeats):
            for name, (_, f, counter) in state.items():
                samples[name].append(per_call(lambda f=f, it=counter: f(next(it), "m"), n) * 1e6)
        for name, xs in samples.items():
            self.record("small_miss", name, median(xs))
        for c, _, _ in state.values():
            c.close()

    def big_hit(self) -> None:
        repeats = 5 if self.quick else 9
        calls, keep = {}, []
        for cls in [*self.contenders, *self.s3_classes]:
            c = self.fresh(cls, "big_hit")
            f = c.wrap(big_result)
            f(0)
            f(0).sum()  # warm-up
            calls[cls.name] = functools.partial(lambda f: f(0).sum(), f)
            keep.append(c)
        self.interleaved("big_hit", calls, 1, repeats, scale=1e3)
        self.big_dirs = {c.name: c for c in keep}

    def big_hit_mem(self) -> None:
        """Peak extra RSS of one hit on the 80 MB result, in a fresh process per contender."""
        children = {cls.name for cls in CONTENDERS}
        for name, c in getattr(self, "big_dirs", {}).items():
            if name == "lru_cache":
                continue  # nothing survives the process: a fresh one has no hit to measure
            if name not in children:
                continue  # the S3 rows: their server is this process's, not the child's
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--_memchild", name, c.root],
                capture_output=True, text=True, timeout=600,
            )
            if out.returncode != 0:
                self.notes.append(f"big_hit_mem {name}: child failed: {out.stderr.strip()[-300:]}")
                continue
            extra = json.loads(out.stdout.strip().splitlines()[-1])["extra"]
            self.record("big_hit_mem", name, extra / BIG_BYTES)
        for c in getattr(self, "big_dirs", {}).values():
            c.close()
            shutil.rmtree(c.root, ignore_errors=True)

    def big_arg(self) -> None:
        import numpy as np

        repeats = 5 if self.quick else 9
        arr = np.arange(BIG_N, dtype=np.float64)
        calls, open_ = {}, []
        for cls in self.contenders:
            if cls is LruCache:
                self.notes.append("big_arg lru_cache: n/a (a numpy array is not hashable)")
                continue
            c = self.fresh(cls, "big_arg")
            f = c.wrap(big_arg)
            f(arr)
            f(arr)  # warm-up
            calls[cls.name] = functools.partial(f, arr)
            open_.append(c)
        self.interleaved("big_arg", calls, 1, repeats, scale=1e3)
        for c in open_:
            c.close()
            shutil.rmtree(c.root, ignore_errors=True)

    def scale(self) -> None:
        sizes = [1000, 100_000] if self.quick else [1000, 100_000, 1_000_000]
        slow_cap = 10_000 if self.quick else 100_000  # joblib and cachier fill at ~ms per miss
        sample, repeats = 2000, 5
        rng = random.Random(6)
        for size in sizes:
            workload = f"scale_{size}"
            calls, open_ = {}, []
            for cls in self.contenders:
                if cls in (Joblib, Cachier) and size > slow_cap:
                    self.notes.append(
                        f"{workload} {cls.name}: skipped, filling {size:,} entries through "
                        f"its miss path takes too long (cap {slow_cap:,})"
                    )
                    continue
                c = self.fresh(cls, workload)
                f = c.wrap(scaled)
                start = time.perf_counter()
                c.populate(f, scaled, ((i,) for i in range(size)))
                self.log(f"  {workload} {cls.name}: filled in {time.perf_counter() - start:.1f} s")
                picks = [rng.randrange(size) for _ in range(sample)]
                for i in picks[:200]:  # warm-up
                    f(i)
                it = iter(picks * (repeats + 1))
                calls[cls.name] = lambda f=f, it=it: f(next(it))
                open_.append(c)
            self.interleaved(workload, calls, sample, repeats)
            for c in open_:
                c.close()
                shutil.rmtree(c.root, ignore_errors=True)

    def imports(self) -> None:
        repeats = 7 if self.quick else 15
        names = [c.name for c in self.contenders]
        samples: dict[str, list[float]] = {n: [] for n in names}
        # As installed: with bytecode written and current. Under PYTHONDONTWRITEBYTECODE (set
        # on some machines) a source checkout's stale or missing bytecode would be compiled
        # afresh at every import, timing the compiler; the first, untimed run writes it.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        for round_ in range(repeats + 1):
            for name in names:
                code = (
                    "import time; t = time.perf_counter(); import "
                    f"{IMPORTS[name]}; print(time.perf_counter() - t)"
                )
                out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True, check=True, env=env)
                if round_:
                    samples[name].append(float(out.stdout) * 1e3)
        for name, xs in samples.items():
            self.record("import", name, median(xs))

    def run(self) -> None:
        steps = [
            ("small_hit", self.small_hit),
            ("small_miss", self.small_miss),
            ("big_hit", self.big_hit),
            ("big_hit_mem", self.big_hit_mem),
            ("big_arg", self.big_arg),
            ("scale", self.scale),
            ("import", self.imports),
            ("memory_hit", self.memory_hit),
            ("cache_info", self.cache_info),
        ]
        numpy = importlib.util.find_spec("numpy") is not None
        self.start_redis()
        self.start_s3()
        for name, step in steps:
            if self.args.workloads and not any(name.startswith(w) for w in self.args.workloads):
                continue
            if name.startswith("big") and not numpy:
                self.notes.append(f"{name}: numpy not installed, skipped")
                continue
            start = time.perf_counter()
            self.log(f"{name} ...")
            step()
            self.log(f"{name} done in {time.perf_counter() - start:.1f} s")


# --- the memory child -----------------------------------------------------------------------

def _status(field: str) -> int:
    """A size from /proc/self/status, in bytes (VmRSS: now; VmHWM: the peak of this image,
    unlike ru_maxrss, which a child inherits from its parent across fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def mem_child(name: str, root: str) -> None:
    import numpy  # noqa: F401 - imported before the baseline, as a user's would be

    cls = {c.name: c for c in CONTENDERS}[name]
    c = cls(root)
    f = c.wrap(big_result)
    gc.collect()
    before = _status("VmRSS")
    value = f(0)
    total = float(value.sum())
    peak = _status("VmHWM")
    assert total > 0
    print(json.dumps({"extra": max(peak - before, 0)}))


# --- report -------------------------------------------------------------------------------

UNITS = {
    "small_hit": "µs/call",
    "small_miss": "µs/call",
    "big_hit": "ms/call",
    "big_arg": "ms/call",
    "import": "ms",
    "big_hit_mem": "x result",
    "memory_hit": "µs/call",
    "cache_info": "µs/call",
}
LABELS = {
    "small_hit": "1. hit, small",
    "small_miss": "2. miss, small",
    "big_hit": "3. hit, 80 MB result + .sum()",
    "big_arg": "4. hit, 80 MB argument",
    "import": "6. import",
    "big_hit_mem": "7. peak extra memory, 80 MB hit",
    "memory_hit": "8. hit, small, memory tier",
    "cache_info": "9. cache_info()",
}


def unit(workload: str) -> str:
    return UNITS.get(workload, "µs/call")


def label(workload: str) -> str:
    if workload.startswith("scale_"):
        return f"5. hit after {int(workload[6:]):,} entries"
    return LABELS.get(workload, workload)


def workload_order(results: dict[str, Any]) -> list[str]:
    fixed = ["small_hit", "small_miss", "big_hit", "big_arg"]
    scales = sorted((w for w in results if w.startswith("scale_")), key=lambda w: int(w[6:]))
    return [w for w in [*fixed, *scales, "import", "big_hit_mem"] if w in results]


EXTRA = ("memory_hit", "cache_info")  # workloads of memojar's own variants, tabled apart


def fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def table(results: dict[str, dict[str, float]]) -> str:
    names = [n for n in ORDER if any(n in r for r in results.values())]
    rows = [["workload", "unit", *names]]
    for w in workload_order(results):
        rows.append([label(w), unit(w), *(fmt(results[w][n]) if n in results[w] else "-"
                                           for n in names)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(widths[i + 2]) for i, cell in enumerate(row[2:])]
        lines.append("| " + " | ".join(cells) + " |")
        if j == 0:
            lines.append("|" + "|".join(
                "-" * (w + 2) if i < 2 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
            ) + "|")
    return "\n".join(lines)


def goals(results: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    def ratio(w: str, a: str, w2: str, b: str) -> float | None:
        try:
            return results[w][a] / results[w2][b]
        except (KeyError, ZeroDivisionError):
            return None

    scales = sorted((w for w in results if w.startswith("scale_")), key=lambda w: int(w[6:]))
    top = scales[-1] if scales else "scale_1000000"
    out = [
        ("small hit <= 1.3x floor", ratio("small_hit", "memojar", "small_hit", "floor"), 1.3),
        ("small hit <= 0.8x diskcache",
         ratio("small_hit", "memojar", "small_hit", "diskcache"), 0.8),
        ("small miss <= 1.0x diskcache",
         ratio("small_miss", "memojar", "small_miss", "diskcache"), 1.0),
        ("80 MB result hit (with .sum()) <= 0.5x joblib",
         ratio("big_hit", "memojar", "big_hit", "joblib"), 0.5),
        ("80 MB argument hashing <= 2x floor", ratio("big_arg", "memojar", "big_arg", "floor"),
         2.0),
        (f"hit at {int(top[6:]):,} entries <= 1.3x hit at 1,000"
         if scales else "hit at 1,000,000 entries <= 1.3x hit at 1,000",
         ratio(top, "memojar", "scale_1000", "memojar") if len(scales) > 1 else None, 1.3),
        ("import memojar <= 30 ms", (results.get("import", {}).get("memojar") or 0) / 30
         if "memojar" in results.get("import", {}) else None, 1.0),
        ("peak extra memory of the 80 MB hit <= 1.1x result",
         results.get("big_hit_mem", {}).get("memojar"), 1.1),
    ]
    context = {  # what the physical floor itself does on the same measure
        2: ratio("small_miss", "floor", "small_miss", "diskcache"),
        5: ratio(top, "floor", "scale_1000", "floor") if len(scales) > 1 else None,
    }
    return [{"goal": g, "ratio": r, "limit": lim, "met": None if r is None else r <= lim,
             "floor_ratio": context.get(i)}
            for i, (g, r, lim) in enumerate(out)]


def goal_lines(gs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for g in gs:
        if g["met"] is None:
            lines.append(f"  not measured  {g['goal']}")
        else:
            shown = g["ratio"] * 30 if g["goal"].startswith("import") else g["ratio"]
            what = f"{shown:.1f} ms" if g["goal"].startswith("import") else f"{shown:.2f}x"
            if g.get("floor_ratio") is not None:
                what += f" (the floor itself: {g['floor_ratio']:.2f}x)"
            lines.append(f"  {'met    ' if g['met'] else 'NOT MET'}  {g['goal']}: {what}")
    return lines


def create_cost(directory: str, n: int = 200) -> float:
    """µs to create one empty file in ``directory`` (what every disk miss pays at least)."""
    probe = tempfile.mkdtemp(prefix="probe-", dir=directory)
    try:
        start = time.perf_counter()
        for i in range(n):
            os.close(os.open(os.path.join(probe, str(i)), os.O_WRONLY | os.O_CREAT, 0o600))
        return (time.perf_counter() - start) / n * 1e6
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for mod in ("memojar", "diskcache", "joblib", "cachier", "numpy", "xxhash", "filelock",
                "boto3", "botocore", "s3fs", "moto"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:  # noqa: BLE001 - not installed
            pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg": os.getloadavg(),
        "versions": versions,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats; scale stops at 100,000")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="contenders to run (default all but the S3 rows, which run only when "
                        "named: memojar-s3 s3-floor s3fs)")
    p.add_argument("--workloads", nargs="+", metavar="NAME",
                   help="workloads to run: small_hit small_miss big_hit big_hit_mem big_arg "
                        "scale import (default all)")
    p.add_argument("--tmp", help="where the temporary directories go (default: the system's)")
    p.add_argument("--_memchild", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._memchild:
        mem_child(*args._memchild)
        return 0
    started = time.perf_counter()
    bench = Bench(args)
    try:
        before = create_cost(bench.tmp)
        bench.run()
        after = create_cost(bench.tmp)
    finally:
        bench.stop()
    bench.notes.append(
        f"temporary directories under {os.path.dirname(bench.tmp)}: creating a file there took "
        f"{before:.0f} µs before the run and {after:.0f} µs after it"
    )
    elapsed = time.perf_counter() - started
    gs = goals(bench.results)
    print()
    if workload_order(bench.results):
        print(table(bench.results))
        print()
    for w in EXTRA:
        if w in bench.results:
            cells = ", ".join(f"{name} {fmt(v)}" for name, v in bench.results[w].items())
            print(f"{label(w)} ({unit(w)}): {cells}")
    print()
    if bench.notes:
        print("Notes:")
        for note in bench.notes:
            print(f"  - {note}")
        print()
    print("Goals (memojar, ratios from this run):")
    print("\n".join(goal_lines(gs)))
    for w in ("small_hit", "small_miss"):
        r = bench.results.get(w, {})
        if "memojar-redis" in r and "diskcache" in r:
            print(f"  (no goal)  memojar-redis {label(w)[3:]} on loopback: "
                  f"{r['memojar-redis'] / r['diskcache']:.2f}x diskcache")
        if "memojar-s3" in r and "s3-floor" in r:
            goal = "(goal 1.3x)" if w == "small_hit" else "  (no goal)"
            print(f"  {goal} memojar-s3 {label(w)[3:]} on loopback (moto): "
                  f"{r['memojar-s3'] / r['s3-floor']:.2f}x one GET + pickle.loads")
        if "memojar-s3" in r and "s3fs" in r:
            print(f"    (no goal) memojar-s3 {label(w)[3:]} on loopback (moto): "
                  f"{r['memojar-s3'] / r['s3fs']:.2f}x s3fs + pickle by hand")
    r = bench.results.get("big_hit", {})
    for peer in ("s3-floor", "s3fs"):
        if "memojar-s3" in r and peer in r:
            print(f"    (no goal) memojar-s3 80 MB hit on loopback (moto): "
                  f"{r['memojar-s3'] / r[peer]:.2f}x {peer}")
    print(f"\n{sum(bool(g['met']) for g in gs)} of {len(gs)} goals met; ran in {elapsed:.0f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({
                "command": "python benchmarks/compare.py " + " ".join(argv or sys.argv[1:]),
                "quick": args.quick,
                "machine": machine(),
                "seconds": round(elapsed, 1),
                "units": {w: unit(w) for w in bench.results},
                "labels": {w: label(w) for w in bench.results},
                "results": bench.results,
                "notes": bench.notes,
                "goals": gs,
            }, f, indent=2, ensure_ascii=False)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
