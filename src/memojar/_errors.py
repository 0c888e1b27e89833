"""The warning memojar raises when the cache, not the user's function, has a problem."""

from __future__ import annotations

import logging
import warnings

logger = logging.getLogger("memojar")


class MemojarWarning(UserWarning):
    """A cache fault that cost a cache hit or a store, never the caller's result."""


def warn(message: str) -> None:
    """Warn the user and log the fault, once per call site as warnings do by default."""
    logger.warning("%s", message)
    warnings.warn(message, MemojarWarning, stacklevel=4)
