"""A cache shared by the workers of a distributed engine: dask.distributed, end to end.

A ``LocalCluster`` of 4 worker processes (loopback, one thread each) maps a cached function
over 50 inputs with an ``s3://`` cache (the session's moto server) and a ``redis://`` one (the
session's redis-server): each input is computed exactly once across the workers, even with
every input submitted twice at once; a second map is all hits; the client process hits too.

Computations are counted by a side channel that survives processes: each one creates a file
of its own in a directory of the test. The function lives either in a module the workers
import (by reference, from ``PYTHONPATH``), or in the test body, sent to the workers by value
by cloudpickle (the copy must behave as the original).
"""

from __future__ import annotations

import collections
import importlib
import itertools
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memojar import cached

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install -e '.[dev]')"
)

N = 50
WORKERS = 4
WAIT = 120  # seconds: a map that takes longer than this is hung, whatever the machine
_modules = itertools.count()

WORK_MODULE = """
import os
import time
import uuid

from memojar import Cache

cache = Cache({location!r}, secret="shared by the workers")


@cache.cached
def work(x):
    # One file per computation, whatever process computes: the test counts them.
    name = f"{{x}}-{{os.getpid()}}-{{uuid.uuid4().hex}}"
    open(os.path.join({count_dir!r}, name), "x").close()
    time.sleep(0.02)
    return {{"x": x, "square": x * x}}


def counts():
    info = work.cache_info()
    return info.hits, info.misses
"""


@pytest.fixture(scope="module")
def modules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory on the workers' ``sys.path``: each test writes its module of work here."""
    return tmp_path_factory.mktemp("modules")


@pytest.fixture(scope="module")
def cluster(modules_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """4 spawned worker processes, one thread each, on loopback; shared by this module.

    A spawned worker takes this process's ``sys.path`` (multiprocessing sends it, and it
    replaces the one the worker's ``PYTHONPATH`` made; the nanny's ``env=`` is applied only
    after start): ``modules_dir`` is put on it before the workers start, and the test
    server's AWS credentials in the environment.
    The nanny also writes its pre-spawn variables into this process's environment: all of it
    is put back afterwards.
    """
    from s3_server import TEST_ENV

    saved_env, saved_path = dict(os.environ), list(sys.path)
    os.environ.update(TEST_ENV)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(modules_dir))
    try:
        with distributed.LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, scheduler_port=0, worker_dashboard_address=None,
            # the scheduler's HTTP server starts even without a dashboard, on port 8787 unless
            # told otherwise: a free port, so two suites on one machine do not collide
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=40, death_timeout=WAIT,
            local_directory=str(tmp_path_factory.mktemp("dask")),  # not /tmp/dask-scratch-space
        ) as cluster:
            yield cluster
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster, timeout=WAIT) as client:
        client.wait_for_workers(WORKERS, timeout=WAIT)
        yield client


@pytest.fixture(params=["s3", "redis"])
def location(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_location")


def computed(count_dir: Path) -> collections.Counter[int]:
    """How many times each input was computed, by any process."""
    return collections.Counter(int(p.name.split("-")[0]) for p in count_dir.iterdir())


def mapped(client: Any, f: Callable[[int], Any], xs: list[int]) -> list[Any]:
    """``f`` over ``xs`` on the workers, every task run (``pure=False``: no deduplication)."""
    futures = client.map(f, xs, pure=False)
    distributed.wait(futures, timeout=WAIT)
    return client.gather(futures)


def expected(xs: list[int]) -> list[dict[str, int]]:
    return [{"x": x, "square": x * x} for x in xs]


def check_compute_once(client: Any, work: Callable[[int], Any], count_dir: Path) -> str:
    """The scenario: a stampede, a second map, the client process. Returns its timings."""
    xs = list(range(N))
    # Every input twice, side by side: the two tasks of an input run at once on two workers.
    twice = [x for x in xs for _ in range(2)]
    times = [time.monotonic()]
    assert mapped(client, work, twice) == expected(twice)
    times.append(time.monotonic())
    assert computed(count_dir) == dict.fromkeys(xs, 1)  # each input once across the workers

    assert mapped(client, work, xs) == expected(xs)  # the second map: all hits
    times.append(time.monotonic())
    assert computed(count_dir) == dict.fromkeys(xs, 1)

    assert [work(x) for x in xs] == expected(xs)  # the client process hits too
    times.append(time.monotonic())
    assert computed(count_dir) == dict.fromkeys(xs, 1)
    assert (work.cache_info().hits, work.cache_info().misses) == (N, 0)
    first, second, here = (b - a for a, b in itertools.pairwise(times))
    return f"first map {first:.2f}s, second map {second:.2f}s, client {here:.2f}s"


@pytest.mark.slow
def test_workers_compute_each_input_once_with_a_function_they_import(
    client: Any, location: str, modules_dir: Path, tmp_path: Path
) -> None:
    count_dir = tmp_path / "computed"
    count_dir.mkdir()
    name = f"mj_dask_work_{next(_modules)}_{uuid.uuid4().hex[:8]}"
    (modules_dir / f"{name}.py").write_text(
        WORK_MODULE.format(location=location, count_dir=str(count_dir))
    )
    importlib.invalidate_caches()
    module = importlib.import_module(name)  # the client's own copy, by the same name
    timings = check_compute_once(client, module.work, count_dir)
    per_worker = client.run(module.counts)
    hits = sum(h for h, _ in per_worker.values())
    misses = sum(m for _, m in per_worker.values())
    assert misses >= N  # each input missed at least once: by its computer
    assert hits + misses == 3 * N  # every task a hit or a miss; the second map all hits
    assert hits >= N
    print(f"{location.partition(':')[0]} by reference: {timings}")


@pytest.mark.slow
def test_workers_compute_each_input_once_with_a_function_sent_by_cloudpickle(
    client: Any, location: str, tmp_path: Path
) -> None:
    count_dir = tmp_path / "computed"
    count_dir.mkdir()
    directory = str(count_dir)

    @cached(cache_dir=location)
    def work(x):
        name = f"{x}-{os.getpid()}-{uuid.uuid4().hex}"
        open(os.path.join(directory, name), "x").close()
        time.sleep(0.02)
        return {"x": x, "square": x * x}

    timings = check_compute_once(client, work, count_dir)
    print(f"{location.partition(':')[0]} by value: {timings}")
