"""A decorator class holding a lock beside its state, shared by ``test_callables.py`` and
the script it runs in fresh interpreters (which imports it from this folder)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


class LockedScaler:
    """A decorator class of ``functools.update_wrapper`` holding a lock beside its state."""

    def __init__(self, fn: Callable[[Any], Any], k: int) -> None:
        self.fn, self.k, self.lock = fn, k, threading.Lock()
        functools.update_wrapper(self, fn)

    def __call__(self, x: Any) -> Any:
        with self.lock:
            return self.fn(x) * self.k


def identity_function(x: Any) -> Any:
    return x
