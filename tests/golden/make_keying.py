"""Write ``keying0-<python>.pkl`` beside this script: the entry an older memojar wrote for
``keying_kinds.kind(np.longlong(5))``, keyed as ``np.int64(5)`` is (``test_golden.py``'s
keying test). Made once, with memojar 40376ef, on each Python 3.10-3.13::

    git archive 40376ef | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src:tests/golden python tests/golden/make_keying.py

Never made again: it stands for the entries users' caches hold from before ``KEYING``."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEMOJAR_KINDS"] = tmp
        import keying_kinds
        import numpy as np

        assert keying_kinds.kind(np.longlong(5)) == "longlong"
        (entry,) = Path(tmp).rglob("*.pkl")
        python = f"{sys.version_info[0]}.{sys.version_info[1]}"
        shutil.copyfile(entry, HERE / f"keying0-{python}.pkl")
        print(entry.relative_to(tmp), "->", f"keying0-{python}.pkl")


if __name__ == "__main__":
    main()
