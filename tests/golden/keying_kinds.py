"""A cached function whose value says which numpy type it was given: memojar of 40376ef
(2026-12-02) keyed ``np.longlong(5)`` as ``np.int64(5)``, and wrote the entries
``keying0-3.1X.pkl`` for it (``make_keying.py``). Its cache is ``$MEMOJAR_KINDS``. Never
edit ``kind``: those entries hold its code's fingerprint, and would be misses whatever the
keying (the test could no longer fail)."""

import os

from memojar import Cache


@Cache(os.environ["MEMOJAR_KINDS"]).cached
def kind(x):  # type: ignore[no-untyped-def]
    return type(x).__name__
