"""``python -m memojar``: the command line, as the ``memojar`` console script runs it."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
