"""Attack on the S3 lease: its holder frozen (SIGSTOP) past the lease, so that another caller
takes the lease over, computes and stores. The resumed holder must neither store its value
over the other's nor stay silent, as on Redis."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from faultkit import LEASE_HOLDER as HOLDER
from faultkit import finish, read_line, spawn

from memojar._s3store import LEASE_TTL

SECRET = "fault-secret"
HANG = 60

LEASE_JOB = """
import os, time
from memojar import Cache

cache = Cache(os.environ["URL"], secret=os.environ["SECRET"])

@cache.cached
def work(x):
    if os.environ.get("HOLDER"):
        print("computing", flush=True)
        time.sleep(1.0)  # the SIGSTOP lands here, with the lease held
    return os.getpid()  # who computed the stored value
"""


def test_a_holder_frozen_past_its_lease_does_not_store_over_the_next(
    s3_location: str, tmp_path: Path
) -> None:
    """Old: the resumed holder's write was unconditional: it replaced the value the caller
    that took the lease over had stored, and nobody was told."""
    (tmp_path / "leasejob.py").write_text(LEASE_JOB)
    env = {"URL": s3_location, "SECRET": SECRET, "PYTHONPATH": str(tmp_path)}
    holder = spawn(HOLDER, HOLDER="1", **env)
    try:
        assert read_line(holder) == "computing"
        os.kill(holder.pid, signal.SIGSTOP)
        time.sleep(LEASE_TTL + 2.0)  # the caller takes over after LEASE_TTL of its own
        caller = spawn("from leasejob import work; print(work(1))", **env)
        second = finish(caller, HANG).strip()
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    out = finish(holder, HANG).splitlines()
    assert out[0] == str(holder.pid)  # the holder's own value is returned
    assert any("lock on the key expired" in line for line in out[1:]), out
    again = spawn("from leasejob import work; print(work(1))", **env)
    assert finish(again, HANG).strip() == second  # the taker's value was kept


STALLED_WRITE_JOB = """
import os, time
from memojar import Cache, _s3store

if os.environ.get("HOLDER"):  # the entry's upload stalls once begun, its lease renewed
    if os.environ["SIZE"] == "large":  # a multipart upload: after its first part
        whole = _s3store.pieces

        def pieces(views, size):
            for number, piece in enumerate(whole(views, size)):
                if number == 1:
                    print("writing", flush=True)
                    time.sleep(1.0)  # the SIGSTOP lands here
                yield piece

        _s3store.pieces = pieces
    else:  # one PUT: just before it
        put = _s3store._Bucket.put

        def slow_put(self, name, *args, **kwargs):
            if name.endswith(".pkl"):
                print("writing", flush=True)
                time.sleep(1.0)  # the SIGSTOP lands here
            return put(self, name, *args, **kwargs)

        _s3store._Bucket.put = slow_put

cache = Cache(os.environ["URL"], secret=os.environ["SECRET"])

@cache.cached
def work(x):
    padding = b"." * (10 << 20 if os.environ["SIZE"] == "large" else 0)
    return os.getpid(), padding  # who computed the stored value
"""


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_holder_frozen_while_it_writes_does_not_store_over_the_next(
    s3_location: str, tmp_path: Path, size: str
) -> None:
    """Old: the holder renewed its lease just before the entry's upload, which was then
    unconditional: frozen within the upload (a multipart one's parts, or just before a
    PUT) past the lease, it completed it once resumed, over the value of the caller that
    had taken the lease over meanwhile, and nobody was told."""
    (tmp_path / "stalledjob.py").write_text(STALLED_WRITE_JOB)
    env = {"URL": s3_location + "&multipart_threshold=1048576", "SECRET": SECRET,
           "PYTHONPATH": str(tmp_path), "SIZE": size}
    ask = "from stalledjob import work; print(work(1)[0])"
    holder = spawn(HOLDER.replace("leasejob", "stalledjob").replace("work(1)", "work(1)[0]"),
                   HOLDER="1", **env)
    try:
        assert read_line(holder) == "writing"
        os.kill(holder.pid, signal.SIGSTOP)
        time.sleep(LEASE_TTL + 2.0)  # the caller takes over after LEASE_TTL of its own
        second = finish(spawn(ask, **env), HANG).strip()
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    out = finish(holder, HANG).splitlines()
    assert out[0] == str(holder.pid)  # the holder's own value is returned
    assert any("lock on the key expired" in line for line in out[1:]), out
    assert finish(spawn(ask, **env), HANG).strip() == second  # the taker's value was kept
