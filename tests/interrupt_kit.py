"""Interrupts at every point of a memojar call: a ``KeyboardInterrupt`` raised where a
signal handler could run (``Injector``), and the checks that nothing was left behind.

CPython runs a signal handler (and so raises ``KeyboardInterrupt``) at its eval-breaker
checks: at the start of a function (``RESUME``), at a backward jump, and at the end of a
call, after it returned and before its result is stored. ``Injector(n)`` traces memojar's
frames opcode by opcode and raises at the n-th such point; ``Injector(None)`` counts them.
An exception of the end of a call belongs to the call's ``try`` block: it is raised before
the next instruction only where that instruction is in the same block (the other points are
covered by the callee's last points).
"""

from __future__ import annotations

import dis
import os
import sys
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any

import memojar

PACKAGE = os.path.dirname(os.path.abspath(memojar.__file__)) + os.sep
CALLS = ("CALL", "CALL_FUNCTION_EX", "CALL_KW")
_points: dict[CodeType, set[int]] = {}


def points_of(code: CodeType) -> set[int]:
    """Offsets of ``code`` before which an interrupt can be raised (see the module doc)."""
    found = _points.get(code)
    if found is None:
        table = dis._parse_exception_table(code)  # type: ignore[attr-defined]

        def handler(offset: int) -> int | None:
            return next((e.target for e in table if e.start <= offset < e.end), None)

        found, call = set(), None
        for ins in dis.get_instructions(code):
            if ins.opname in ("RESUME", "JUMP_BACKWARD") or (
                    call is not None and handler(call) == handler(ins.offset)):
                found.add(ins.offset)
            call = ins.offset if ins.opname in CALLS else None
        _points[code] = found
    return found


class Injector:
    """Raise ``KeyboardInterrupt`` at the ``at``-th interrupt point of memojar's frames
    during ``run``; ``at=None`` counts the points (``count``)."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.count = 0
        self.where = ""

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode" and frame.f_lasti in points_of(frame.f_code):
            if self.count == self.at:
                self.where = f"{frame.f_code.co_name} line {frame.f_lineno}"
                self.count += 1
                raise KeyboardInterrupt(f"injected in {self.where}")
            self.count += 1
        return self._local

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename.startswith(PACKAGE):
            frame.f_trace_opcodes = True
            return self._local
        return None

    def run(self, call: Callable[[], Any]) -> bool:
        """Run ``call``; True if the interrupt was raised (and reached the caller)."""
        _announce_opcode_tracing()
        sys.settrace(self._global)
        try:
            call()
        except KeyboardInterrupt as exc:
            if "injected" not in str(exc):
                raise
            return True
        finally:
            sys.settrace(None)
        return False


def _announce_opcode_tracing() -> None:
    """Tell CPython that some frame asks for opcode events before ``sys.settrace`` is called:
    3.12 turns opcode events on only if one has (without it a first run's are skipped).

    The frame that asks is an unstarted generator's, which never runs. A running frame that
    asks while its thread has no tracer crashes 3.12.1 (a call through a NULL trace
    function) once opcode events are on for the interpreter, as they stay after a thread
    ends while tracing (``threading.settrace``, as test_cache_object does)."""

    def never_started() -> Iterator[None]:
        yield

    frame = never_started().gi_frame
    assert frame is not None
    frame.f_trace_opcodes = True


def _traces_opcodes() -> bool:
    """Whether this Python reports the opcodes of a frame the trace function turns them on
    for in its call event (3.11; 3.12 once the caller's frame asks for them too, as
    ``Injector.run`` does; not CPython 3.13.0, which reports a code object's opcodes only
    from its next run on, so that the points counted would not be the points passed)."""

    def probe() -> int:
        x = 1
        return x

    seen: list[int] = []

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            seen.append(frame.f_lasti)
        return local

    def first(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code is probe.__code__:
            frame.f_trace_opcodes = True
            return local
        return None

    _announce_opcode_tracing()
    sys.settrace(first)
    try:
        probe()
    finally:
        sys.settrace(None)
    return bool(seen)


def every_point(call: Callable[[], Any]) -> int:
    """How many interrupt points ``call`` passes in memojar's code."""
    injector = Injector(None)
    injector.run(call)
    return injector.count


SUPPORTED = (sys.version_info >= (3, 11) and hasattr(dis, "_parse_exception_table")
             and _traces_opcodes())
