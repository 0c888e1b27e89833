"""Shared fixtures: a fresh cache directory per test, and every store kind for store tests."""

from __future__ import annotations

import contextlib
import gc
import importlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from memojar import MemojarWarning

# Store kinds the store-level tests run on, and the behaviour tests (the modules below).
STORE_KINDS = ["file", "redis", "s3"]
# Test modules whose tests run on every store kind through ``cache_dir``: a directory for
# the file store, a URL for the others. A test that looks at files is marked
# ``@pytest.mark.file_only("why")`` and runs on the file store alone; one that needs what
# a store kind lacks is marked ``@pytest.mark.not_on("s3", "why")``.
BEHAVIOUR_MODULES = {"test_decorator", "test_cache"}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the user's cache, secret or kill switch."""
    monkeypatch.setenv("MEMOJAR_DIR", str(tmp_path / "default-cache"))
    monkeypatch.delenv("MEMOJAR_SECRET", raising=False)
    monkeypatch.delenv("MEMOJAR_DISABLE", raising=False)
    # Each test warns of a remote cache without a secret afresh (once per place a process).
    from memojar import _store

    monkeypatch.setattr(_store, "_UNSIGNED_WARNED", set())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    if "cache_dir" not in metafunc.fixturenames or (
        module not in BEHAVIOUR_MODULES and not module.startswith("test_fault_")
    ):
        return
    marker = metafunc.definition.get_closest_marker("file_only")
    kinds = ["file"] if marker is not None else STORE_KINDS
    for skip in metafunc.definition.iter_markers("not_on"):
        kinds = [k for k in kinds if k not in skip.args[:-1]]
    metafunc.parametrize("cache_dir", kinds, indirect=True)


@pytest.fixture(autouse=True)
def _no_periodic_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process's statistics thread merges nothing while a test runs: a ``.stats``
    file or ``<prefix>stats`` key appearing at a 5 s boundary would race tests that list a
    cache. Tests of the merging call ``flush_stats()`` or run other processes."""
    from memojar import _cache

    monkeypatch.setattr(_cache._FLUSHER, "flush", lambda: None)
    # ... nor the caches earlier tests left alive, nor the counts of those they dropped
    # (their folders, their servers): a test's merge (``merge_all``) merges its own. (In
    # the full suite test_statistics' merges at every interrupt point merged hundreds of
    # earlier caches each: one test ran over fifteen minutes.)
    monkeypatch.setattr(_cache._FLUSHER, "caches", weakref.WeakSet())
    monkeypatch.setattr(_cache, "_orphans", [])
    monkeypatch.setattr(_cache, "_dropped_counts", {})  # (``stats()`` of a reused location)


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """What earlier tests left on the heap set aside (``gc.freeze``) while the test runs,
    for a test that collects at each of hundreds of interrupt points: in the full suite a
    collection of the whole heap took most of a second each (a test ran two minutes)."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


# The key-lock lease of the remote stores in this process's tests (seconds; the products'
# are 2 s on Redis, 5 s on S3). Most tests are not about leases, and on a loaded 2-core
# machine (CI installing the other Pythons' venvs beside the suite) a test process has
# stalled past a 2 s lease: the late holder's store is then refused ("not cached", an error
# here). A test of lease expiry or takeover asks for the products' lengths with
# ``@pytest.mark.real_leases``; processes a test starts always have them.
BEHAVIOUR_LEASE = 60.0


def _long_lease(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                module: str, name: str) -> None:
    """BEHAVIOUR_LEASE for a remote store's lease, unless the test is marked
    ``real_leases``."""
    if request.node.get_closest_marker("real_leases") is None:
        monkeypatch.setattr(importlib.import_module(f"memojar.{module}"), name, BEHAVIOUR_LEASE)


@pytest.fixture
def cache_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Where a test's cache lives: a directory (a Path), or, for a behaviour test run on
    another store kind, that store's URL (a str)."""
    kind = getattr(request, "param", "file")
    if kind == "file":
        return tmp_path / "cache"
    return request.getfixturevalue(f"{kind}_location")  # skips if the client is missing


@pytest.fixture(params=STORE_KINDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A cache location of each store kind: a directory, a redis:// or an s3:// URL."""
    if request.param == "file":
        yield str(tmp_path / "cache")
    else:  # pragma: no cover - filled in by the store kinds above
        yield request.getfixturevalue(f"{request.param}_location")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """One real redis-server for the session (loopback, free port, no persistence)."""
    pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[dev]')")
    from redis_server import RedisServer, redis_server_path

    if redis_server_path() is None:  # .ci/run installs it, so CI never skips these
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis() -> Iterator[Callable[..., Any]]:
    """Start private redis-servers (a test freezes, kills or restarts them; ``start(*options,
    port=None)``: extra redis-server options, a port to start again on); all stopped after
    the test."""
    pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[dev]')")
    from redis_server import RedisServer, redis_server_path

    if redis_server_path() is None:  # .ci/run installs it, so CI never skips these
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    servers: list[Any] = []

    def start(*args: str, port: int | None = None) -> Any:
        servers.append(RedisServer.start(*args, port=port))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


_redis_dbs = itertools.cycle(range(1, 256))


@pytest.fixture
def redis_location(redis_server: Any, request: pytest.FixtureRequest,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A redis:// URL of an empty database of the session's server, flushed after the test.

    Store-level tests open stores without a secret; the one warning that says so (tested in
    test_redis.py) would fail them under ``filterwarnings = error``, so it is ignored here.
    """
    _long_lease(request, monkeypatch, "_redislease", "LOCK_TTL")
    db = next(_redis_dbs)
    client = redis_server.client(db)
    client.flushdb()
    warnings.filterwarnings("ignore", message=r"Redis cache .* has no secret",
                            category=MemojarWarning)
    yield redis_server.url(db)
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """One real S3-protocol server for the session: moto's server mode on loopback.

    moto is a dev dependency (``pip install -e '.[dev]'``), so CI never skips these."""
    from s3_server import S3Server

    server = S3Server.threaded()
    yield server
    server.stop()


_s3_buckets = itertools.count(1)
# The request timeout of the behaviour tests' S3 locations. They are not about the server's
# speed, and the session's moto server answers from a thread of this busy process: on a
# loaded 2-core machine it has taken longer than the store's default 5 s, and a timed-out
# request costs a "not cached" warning (an error here). The timeout itself is tested on
# servers of the tests' own (tests/test_s3.py).
S3_TIMEOUT = 60


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials and no user configuration, for this process and its children."""
    from s3_server import TEST_ENV

    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_location(s3_server: Any, s3_env: None, request: pytest.FixtureRequest,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An s3:// URL of a fresh bucket of the session's server (with a prefix).

    Store-level tests open stores without a secret; the one warning that says so (tested in
    test_s3.py) would fail them under ``filterwarnings = error``, so it is ignored here.
    """
    _long_lease(request, monkeypatch, "_s3store", "LEASE_TTL")
    bucket = s3_server.bucket(f"memojar-test-{next(_s3_buckets)}")
    warnings.filterwarnings("ignore", message=r"S3 cache .* has no secret",
                            category=MemojarWarning)
    yield s3_server.location(bucket, "cache", timeout=str(S3_TIMEOUT))


@contextlib.contextmanager
def _mounted_fat(base: Path, size: int, options: str
                 ) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A FAT image of ``size`` bytes in ``base``, mounted through FUSE (fusefat ``-o
    options``) at ``base / "mnt"`` while the block runs: the mount and its driver. Skipped,
    saying why, without root, /dev/fuse, fusefat or dosfstools (.ci/run installs the tools
    and runs as root, so CI never skips)."""
    import shutil

    if os.geteuid() != 0:
        pytest.skip("mounting a FAT image through FUSE needs root")
    if not os.path.exists("/dev/fuse"):  # a container started without it: no FUSE mounts
        pytest.skip("this machine has no /dev/fuse: no FUSE file system can be mounted")
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"  # mkfs.vfat is in sbin
    tools = {t: shutil.which(t, path=path) for t in ("fusefat", "mkfs.vfat", "fusermount")}
    missing = [tool for tool, found in tools.items() if found is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install fusefat dosfstools)")
    image, mount = base / "fat.img", base / "mnt"
    with open(image, "wb") as f:
        f.truncate(size)
    mount.mkdir()
    subprocess.run([str(tools["mkfs.vfat"]), str(image)], check=True, capture_output=True,
                   timeout=30)
    # In the foreground, as a child of the tests: a driver that locks up (fusefat has, under
    # the fault tests) is killed by ``fat_dir``'s watchdog, which fails the file system
    # calls waiting on it (ENOTCONN) instead of leaving the suite hanging.
    driver = subprocess.Popen([str(tools["fusefat"]), "-f", "-o", options, str(image),
                               str(mount)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.ismount(mount):
        if driver.poll() is not None or time.monotonic() > deadline:
            driver.kill()
            pytest.fail(f"fusefat did not mount {mount} (exit code {driver.poll()})")
        time.sleep(0.05)
    try:
        yield mount, driver
    finally:
        # Lazily: stores still hold their folders open.
        subprocess.run([str(tools["fusermount"]), "-u", "-z", str(mount)], check=True,
                       capture_output=True, timeout=30)
        driver.kill()
        driver.wait(30)


@pytest.fixture(scope="session")
def fat_mount(tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A FAT file system mounted through FUSE for the session (case-insensitive, no links,
    no ``O_TMPFILE``, no ``chmod``, a ``ftruncate`` that cannot grow a file), as on a USB
    drive."""
    with _mounted_fat(tmp_path_factory.mktemp("fat"), 64 << 20, "rw+") as mounted:
        yield mounted


@pytest.fixture
def fat_shown_open_to_all(tmp_path: Path) -> Iterator[Path]:
    """A FAT file system mounted through FUSE with every file shown 0777 (``umask=000``,
    as a USB drive is often mounted), where ``chmod`` fails: a folder that looks shared by
    hand."""
    with _mounted_fat(tmp_path, 16 << 20, "rw+,umask=000") as (mount, _):
        yield mount


_fat_dirs = itertools.count()
FAT_WATCHDOG = 120  # seconds a FAT test may take before its driver is killed


@pytest.fixture
def fat_dir(fat_mount: tuple[Path, subprocess.Popen[bytes]]) -> Iterator[Path]:
    """A new, empty folder on the session's FAT mount (names differing in case are one name
    there: a counter keeps the tests' folders apart). A test still running after
    ``FAT_WATCHDOG`` seconds has its driver killed: it fails, the suite goes on."""
    mount, driver = fat_mount
    path = mount / f"t{next(_fat_dirs)}"
    path.mkdir()
    watchdog = threading.Timer(FAT_WATCHDOG, driver.kill)
    watchdog.start()
    try:
        yield path
    finally:
        watchdog.cancel()


def run_python(code: str, *args: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> str:
    """Run ``code`` (with ``args`` as its ``sys.argv[1:]``) in a fresh interpreter; return
    its stdout (fails the test on error)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def traced_peak(call: Callable[[], Any]) -> tuple[Any, int]:
    """``call()``'s result, and the most memory Python held meanwhile beyond what it held
    before (``tracemalloc``): what an operation's memory grows with."""
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def traced_apart(program: str, *args: str, timeout: float = 300) -> Any:
    """What ``program`` printed last (one JSON value), run with ``args`` in a Python of its
    own, with ``traced_peak`` imported and this folder and ``src`` on its path: an
    operation's memory measured where no thread, finalizer or collection left by another
    test allocates meanwhile (``tracemalloc`` counts every thread's). In the suite's
    process, CI saw 10 MB at the peaks of a census, a listing and a clear that hold 1 MB."""
    here = Path(__file__).parent
    path = os.pathsep.join([str(here), str(here.parent / "src"), os.environ.get("PYTHONPATH", "")])
    out = run_python("from conftest import traced_peak\n" + program, *args,
                     env={"PYTHONPATH": path}, timeout=timeout)
    return json.loads(out.splitlines()[-1])


def strace_path() -> str | None:
    """The ``strace`` that can trace here (installed, and allowed to: not in every
    container), or None."""
    path = shutil.which("strace")
    if path is None:
        return None
    probe = subprocess.run([path, "-o", os.devnull, "true"], capture_output=True, timeout=30)
    return path if probe.returncode == 0 else None


# --- another user --------------------------------------------------------------------------

NOBODY = 65534


@contextlib.contextmanager
def immutable(path: Path, why: str = "marks a file immutable") -> Iterator[None]:
    """``chattr +i path`` for the block: as root, on a file system that has the mark (CI
    runs as root on ext4); else the test says why it skips."""
    chattr = shutil.which("chattr")
    if chattr is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip(f"{why}: needs chattr, as root")
    made = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"{why}: this file system has no immutable mark ({made.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def as_another_user(job: Callable[[], str], uid: int = NOBODY,
                    groups: Sequence[int] = ()) -> str:
    """What ``job()`` returns, run as another user (uid and gid ``uid``, in the
    supplementary ``groups``; by default 65534, ``nobody``, in none) in a forked child of
    this process (or the traceback of its exception): memojar is imported already, so
    nothing that user cannot reach (this interpreter, the sources) is needed. Only root can
    act as another user: CI runs as root, so CI never skips these."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("acting as another user needs root (CI runs as root)")
    import traceback

    # Every module the job may import: that user may not be able to read this interpreter's
    # files (its standard library under a user's home, as pyenv's).
    for module in ("memojar._cli", "memojar._filestore", "pwd"):
        importlib.import_module(module)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        status = 1
        try:
            os.close(read)
            os.setgroups(list(groups))
            os.setgid(uid)
            os.setuid(uid)
            said = job()
            status = 0
        except BaseException:  # noqa: BLE001 (what went wrong, for the assertion below)
            said = traceback.format_exc()
        finally:
            try:
                os.write(write, said.encode())
            finally:
                os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    assert os.waitpid(pid, 0)[1] == 0, said
    return said


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder every user can reach and write (sticky, as ``/tmp``): pytest's own temporary
    folders are private to the user running it."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="memojar-shared-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder)


def freed_without_the_collector(call: Callable[[Any], object], make: Callable[[], Any]) -> bool:
    """Whether a value ``make()`` made, passed to ``call``, is freed by reference counting
    alone once ``call`` returns (or raises) and the value's last name is dropped: no
    reference cycle left holding it (a user's 2 GB argument kept until the collector ran).
    Made here, not passed in: the caller's expression would hold it until this returns."""
    value = make()
    freed = weakref.ref(value)
    gc.collect()
    gc.disable()
    try:
        call(value)
        del value
        return freed() is None
    finally:
        gc.enable()


def views_left_in_a_collection(call: Callable[[], object]) -> tuple[int, list[Any]]:
    """How many objects a collection after ``call()`` frees (a cycle left behind), and the
    views among them still exported: the collector clearing a view while a buffer is
    exported from it crashes the interpreter (SIGSEGV: CPython 3.11, 3.12)."""
    import gc
    import pickle

    gc.collect()
    gc.disable()
    try:
        call()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        kept = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    views = [o for o in kept if isinstance(o, (memoryview, pickle.PickleBuffer))]
    return len(kept), [v for v in views if _exported(v)]


def _exported(view: Any) -> bool:
    try:
        (view if type(view) is memoryview else view.raw()).obj  # noqa: B018
    except ValueError:  # released
        return False
    return True
