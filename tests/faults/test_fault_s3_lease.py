"""Attack on the S3 lease: its holder frozen (SIGSTOP) past the lease, so that another caller
takes the lease over, computes and stores. The resumed holder must neither store its value
over the other's nor stay silent, as on Redis."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

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
