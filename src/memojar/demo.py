"""A one-minute demo: ``python -m memojar.demo``.

A slow function becomes instant on its second call, in this process and in the next one.
The demo caches in the default cache directory (``$MEMOJAR_DIR``, else the user cache
directory), says where, and prints the ``memojar`` command that lists what it stored. It
first removes its own function's earlier entries, of any Python (and nothing else), so it
shows the same thing every run; ``$MEMOJAR_DEMO_DIR`` picks another directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from typing import TextIO

from memojar import Cache
from memojar._cache import default_directory, url_scheme
from memojar._location import redact

DELAY = 1.5  # seconds the "expensive" function takes


def slow_stats(n: int) -> dict[str, float]:
    """Stand-in for a slow loader or model fit: sleeps, then computes a small summary."""
    time.sleep(DELAY)
    values = [((i * 7919) % 1000) / 10 for i in range(n)]
    return {"n": n, "mean": sum(values) / n, "max": max(values)}


def _timed(label: str, call) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = call()
    elapsed = time.perf_counter() - start
    shown = f"{elapsed:.3f} s" if elapsed >= 0.01 else f"{elapsed * 1e3:.2f} ms"
    print(f"  {label:<34} {shown:>10}   -> {result}")


def main() -> int:
    with warnings.catch_warnings():
        # memojar's warnings (a remote cache without a secret) as lines of the demo's
        # output: before, "<frozen runpy>:88: MemojarWarning: ...", the demo's own frames
        # being memojar's, which warnings skip to point at the user's line.
        warnings.showwarning = _one_line_warning
        return _main()


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    print(f"memojar demo: warning: {message}", file=sys.stderr)


def _main() -> int:
    chosen = os.environ.get("MEMOJAR_DEMO_DIR", "").strip() and os.environ["MEMOJAR_DEMO_DIR"]
    where = "$MEMOJAR_DEMO_DIR" if chosen else "the default cache directory"
    if not chosen and os.environ.get("MEMOJAR_DIR", "").strip():
        where += " ($MEMOJAR_DIR)"
    location = chosen or default_directory()
    try:
        # A redis:// or s3:// URL as it is (made absolute, it was a local folder "redis:").
        if url_scheme(location) is None:
            location = os.path.abspath(os.path.expanduser(location))
        cache = Cache(location)
    except (ValueError, TypeError, ImportError, OSError) as exc:
        # One line, not a traceback: a $MEMOJAR_DIR that is a folder of the user's files,
        # a mistyped URL, a missing extra.
        print(f"memojar demo: cannot cache in {where}: {exc}; set $MEMOJAR_DEMO_DIR to a new "
              "folder to run the demo there", file=sys.stderr)
        return 1
    try:
        return _show(cache, location, where, "MEMOJAR_DEMO_DIR" if chosen else "MEMOJAR_DIR")
    except BrokenPipeError:  # ``python -m memojar.demo | head -1``: the reader left, which
        # is fine, as for ``memojar ls``. Before, the cache was said to have failed (status 1).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a server that does not answer, a folder that went read-only
        print(f"memojar demo: the cache in {where}, {cache.directory}, failed: {exc}",
              file=sys.stderr)
        return 1


def _show(cache: Cache, location: str, where: str, variable: str) -> int:
    directory = cache.directory  # a URL without its password
    # The function as the next process will import it (not as ``__main__.slow_stats``).
    from memojar.demo import slow_stats as target

    stats = cache.cached(target)
    # The demo's own entries of an earlier run, every Python's: every run computes first,
    # and lists the two entries it made (before, a run after one of another Python listed
    # that run's entries too as "its entries", and counted them in CacheInfo).
    cache.clear(f"{target.__module__}.{target.__qualname__}")
    print(f"memojar demo: caching in {where}, {directory}")
    _timed("first call (computes)", lambda: stats(100_000))
    if not stats.cache_contains(100_000):
        # A cache it cannot write (a $HOME of /nonexistent, a read-only mount): the store's
        # warning says why. Before, the calls that computed again were shown as cache hits.
        print(f"memojar demo: the first call's result was not stored in {directory} (the "
              "warning above says why), so there are no hits to show; set $MEMOJAR_DEMO_DIR "
              "to a folder this user may write to run the demo there", file=sys.stderr)
        return 1
    _timed("second call (cache hit)", lambda: stats(100_000))
    _timed("same arguments, by keyword", lambda: stats(n=100_000))
    _timed("new arguments (computes)", lambda: stats(50_000))
    code = (
        "import time; from memojar import Cache; from memojar.demo import slow_stats;"
        "import os; f = Cache(os.environ['MEMOJAR_DEMO_LOCATION']).cached(slow_stats);"
        "t = time.perf_counter(); f(100_000); print(f'{(time.perf_counter() - t) * 1e3:.2f} ms')"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MEMOJAR_DEMO_LOCATION": location})
    total = time.perf_counter() - start
    if out.returncode != 0:
        said = out.stderr.strip().splitlines()
        print(f"memojar demo: the second process failed: {said[-1] if said else out.returncode}",
              file=sys.stderr)
        return 1
    print(f"  {'a new Python process (cache hit)':<34} {out.stdout.strip():>10}"
          f"   (whole process, start-up included: {total:.2f} s)")
    info = stats.cache_info()
    print(f"  {info}")
    print("Its entries on disk:" if url_scheme(location) is None else "Its entries in the cache:")
    for entry in cache.entries(stats):
        print(f"  {entry.function}  key {entry.key[:12]}  {entry.size} bytes, "
              f"computed in {entry.compute_time:.2f} s")
    # A URL's password is not printed: the variable that holds it is (before, the command
    # shown held "***" for it, and failed as run).
    shown = f'"${variable}"' if redact(location) != location else shlex.quote(directory)
    command = f"{_memojar_command()} --dir {shown}"
    print("Look at the cache from the shell:")
    print(f"  {command} ls")
    print("Remove the demo's entries (nothing else):")
    print(f"  {command} clear {target.__module__}.{target.__qualname__}")
    return 0


def _memojar_command() -> str:
    """How to run this installation's ``memojar`` command from the current directory:
    ``memojar`` when that is on PATH, else the script beside this Python (``.venv/bin/memojar``
    before the venv is activated), else ``python -m memojar``."""
    script = os.path.join(os.path.dirname(sys.executable), "memojar")
    found = shutil.which("memojar")
    if found is not None and os.path.realpath(found) == os.path.realpath(script):
        return "memojar"
    if os.path.isfile(script):
        relative = os.path.relpath(script)
        return shlex.quote(script if relative.startswith("..") else relative)
    return f"{shlex.quote(sys.executable)} -m memojar"


if __name__ == "__main__":
    sys.exit(main())
