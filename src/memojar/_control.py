"""Run-time control: ``memojar.disabled()``.

A decorated function's wrapper reads one attribute, ``SWITCH.active``, per call: zero while no
``disabled()`` block is open anywhere in the process, so the hit path pays one attribute read.
Only when a block is open does the wrapper ask which functions are off.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any


class _Switch:
    """Which functions call straight through: every one, or the memos counted in ``memos``."""

    __slots__ = ("_all", "_lock", "_memos", "active")

    def __init__(self) -> None:
        self.active = 0  # open disabled() blocks, in every thread
        self._all = 0  # of which disable every function
        self._memos: Counter[int] = Counter()  # id(memo) -> open blocks naming it
        # Reentrant: a signal handler may open a block while this thread opens another.
        self._lock = threading.RLock()

    def __reduce__(self) -> str:
        return "SWITCH"  # the process's one switch, also in a copy made by cloudpickle

    def off(self, memo: object) -> bool:
        """True if ``memo``'s function calls straight through now."""
        return self._all > 0 or self._memos[id(memo)] > 0

    def enter(self, memos: tuple[Any, ...]) -> None:
        with self._lock:
            if memos:
                self._memos.update(id(m) for m in memos)
            else:
                self._all += 1
            self.active += 1

    def leave(self, memos: tuple[Any, ...]) -> None:
        with self._lock:
            if memos:
                self._memos.subtract(id(m) for m in memos)
                for m in memos:
                    if self._memos[id(m)] <= 0:
                        del self._memos[id(m)]
            else:
                self._all -= 1
            self.active -= 1


SWITCH = _Switch()


def _unlock_in_child() -> None:
    """A forked child's own lock: a thread of the parent may have held it at the fork
    (entering or leaving a ``disabled()`` block), and the child's first block waited on it
    for ever."""
    SWITCH._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_unlock_in_child)


class _CalledFirst(type):
    """``with memojar.disabled:`` (without the call) said "'type' object does not support
    the context manager protocol", naming neither memojar nor the fix."""

    def __enter__(cls) -> None:
        raise TypeError(
            "memojar.disabled is to be called: write 'with memojar.disabled():' (every "
            "cached function) or 'with memojar.disabled(f, g):' (only those)"
        )

    def __exit__(cls, *exc: object) -> None:  # never reached: __enter__ raised
        pass


class disabled(metaclass=_CalledFirst):
    """Call decorated functions straight through while the block runs: nothing is read from
    or written to the cache.

    ``with memojar.disabled():`` turns every decorated function off; ``with
    memojar.disabled(load, train):`` only those. Blocks nest and may be open in several
    threads at once; the switch is process-wide (every thread sees it), like
    ``MEMOJAR_DISABLE=1``, which turns functions off for good at decoration time.
    """

    def __init__(self, *functions: Any) -> None:
        memos = []
        for f in functions:
            memo = getattr(getattr(f, "__func__", f), "__memojar__", None)
            if memo is None:
                raise TypeError(
                    f"disabled() takes functions decorated with @cached, not {f!r}; "
                    "call disabled() with no arguments to turn off every cached function"
                )
            memos.append(memo)
        self._memos = tuple(memos)

    def __enter__(self) -> disabled:
        SWITCH.enter(self._memos)
        return self

    def __exit__(self, *exc: object) -> None:
        SWITCH.leave(self._memos)
