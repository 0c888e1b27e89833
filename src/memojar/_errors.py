"""The warning memojar raises when the cache, not the user's function, has a problem."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from types import FrameType

logger = logging.getLogger("memojar")

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class MemojarWarning(UserWarning):
    """A cache fault that cost a cache hit or a store, never the caller's result."""


def warn(message: str) -> None:
    """Warn the user and log the fault, once per call site as warnings do by default.

    The warning points at the user's line: the first frame outside memojar's own files,
    however deep the call that noticed the fault (a fixed ``stacklevel`` points into
    memojar whenever the path to ``warn`` changes).
    """
    logger.warning("%s", message)
    warnings.warn(message, MemojarWarning, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """The ``stacklevel`` (as ``warn``'s caller passes it) of the nearest frame not in
    memojar's package."""
    frame: FrameType | None = sys._getframe(2)  # warn's caller: stacklevel 2 counted from warn
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level
