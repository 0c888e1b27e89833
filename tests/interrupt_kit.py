"""Interrupts at every point of a memojar call: a ``KeyboardInterrupt`` raised where a
signal handler could run (``Injector``), and the checks that nothing was left behind.

CPython runs a signal handler (and so raises ``KeyboardInterrupt``) at its eval-breaker
checks: at the start of a function (``RESUME``), at a backward jump, and at the end of a
call, after it returned and before its result is stored. ``Injector(n)`` traces memojar's
frames opcode by opcode and raises at the n-th such point; ``Injector(None)`` counts them.
An exception of the end of a call belongs to the call's ``try`` block: it is raised before
the next instruction only where that instruction is in the same block (the other points are
covered by the callee's last points).

Point ``n`` of an injected run is point ``n`` of the count only if both runs take the same
path. The cycle collector would break that at random: run inside the traced call, it runs
the finalizers of whatever garbage earlier code left (a memojar ``_Folder.__del__`` of a
dropped cache, in the full suite), whose points are counted in one run and not in another,
and an interrupt raised inside a finalizer is printed ("Exception ignored") and lost, as
CPython does with any exception there. So every traced run has the collector off.
``Injector.run`` tells apart an interrupt raised that did not reach the caller (swallowed:
an ``AssertionError``, always) from a run that passed fewer points than ``at`` (False). A
run can still go another way than the count, from state an earlier interrupt left (a
pickler dropped, made again by the next run): ``Points.interrupts`` compares each run's
points with the count's and runs a point again until it is interrupted the count's way.
"""

from __future__ import annotations

import contextlib
import dis
import gc
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
        self.path: list[tuple[CodeType, int]] = []  # the points passed, in order

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode" and frame.f_lasti in points_of(frame.f_code):
            self.path.append((frame.f_code, frame.f_lasti))
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
        """Run ``call`` traced, with the cycle collector off; True if the interrupt was
        raised and reached the caller, False if the run passed fewer points than ``at``
        (``count`` says how many). An interrupt raised that did not reach the caller is
        an ``AssertionError``: swallowed, by memojar or by a finalizer it ran."""
        _announce_opcode_tracing()
        collecting = gc.isenabled()
        gc.disable()
        sys.settrace(self._global)
        try:
            call()
        except KeyboardInterrupt as exc:
            if "injected" not in str(exc):
                raise
            return True
        finally:
            sys.settrace(None)
            if collecting:
                gc.enable()
        if self.where:
            raise AssertionError(f"the interrupt at point {self.at} ({self.where}) was "
                                 "swallowed: raised, it did not reach the caller")
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


class Points:
    """The interrupt points of ``call`` (``before()`` run first, to set the state the call
    starts from): ``count`` of them, and ``interrupts``, which runs the call interrupted
    at each in turn."""

    RETRIES = 2  # runs again per point, for a run that went another way than the count

    def __init__(self, call: Callable[[], Any], before: Callable[[], Any] = lambda: None
                 ) -> None:
        if not SUPPORTED:  # a test without the mark fails clearly, not in ``dis``
            raise RuntimeError("Points needs opcode tracing: mark the test with "
                               "skipif(not SUPPORTED) (see _traces_opcodes)")
        self.call, self.before = call, before
        self.path = self._uninterrupted()
        self.recounts = 0  # points run again after a run that went another way

    @property
    def count(self) -> int:
        return len(self.path)

    def _uninterrupted(self) -> list[tuple[CodeType, int]]:
        self.before()
        injector = Injector(None)
        injector.run(self.call)
        return injector.path

    def _interrupted(self, at: int) -> tuple[Injector, bool]:
        """``before()`` and the call interrupted at point ``at``, run as deep in the stack
        as ``_uninterrupted``'s (both called from ``__init__`` or ``interrupts``): memojar
        code that walks up its callers' frames (``_decorator._let_go``) passes as many
        points in both. Before, it passed one more in the count, and every point after it
        went another way ("not reached 4 times")."""
        self.before()
        injector = Injector(at)
        return injector, injector.run(self.call)

    def interrupts(self, start: int = 0, step: int = 1) -> Iterator[Injector]:
        """Run ``before()`` then the call interrupted at points ``start``, ``start + step``,
        ... of the count, and yield each run's ``Injector`` (its ``where``) for the
        caller's checks.

        A run that went another way than the count before the point (state an earlier
        interrupt left: a pickler or a lock file's description dropped, made again in
        this run) interrupts another point, or none if it passed fewer: it is yielded if
        interrupted (the caller's checks hold at any point), and the point is run again
        after one run uninterrupted, which makes that state again, ``RETRIES`` times; then
        the points are counted again (the call's usual way changed) and the point run
        again once more. Still another way: an ``AssertionError``."""
        at, retries, recounted = start, 0, False
        while at < self.count:
            injector, interrupted = self._interrupted(at)
            if interrupted and injector.path == self.path[: at + 1]:
                yield injector
                at, retries, recounted = at + step, 0, False
                continue
            if injector.where:
                yield injector
            self.recounts += 1
            if retries < self.RETRIES:
                retries += 1
                self._uninterrupted()
            elif not recounted:
                recounted = True
                self.path = self._uninterrupted()
            else:
                raise AssertionError(
                    f"point {at} ({_name(self.path[at])}) not reached {retries + 2} times: "
                    f"the last run passed {injector.count} points, "
                    + (f"interrupted at {injector.where}" if injector.where else
                       "not interrupted") + f", counted {self.count} just before")


def _name(point: tuple[CodeType, int]) -> str:
    code, offset = point
    line = next((i.positions.lineno for i in dis.get_instructions(code)
                 if i.offset == offset and i.positions is not None), None)
    return f"{code.co_name} line {line}"


SUPPORTED = (sys.version_info >= (3, 11) and hasattr(dis, "_parse_exception_table")
             and _traces_opcodes())


def lines_of(code: CodeType) -> list[int]:
    """The lines of ``code``'s body, for ``interrupted_at``."""
    return sorted({line for _, _, line in code.co_lines()
                   if line and line > code.co_firstlineno})


@contextlib.contextmanager
def interrupted_at(code: CodeType, line: int) -> Iterator[list[int]]:
    """A ``KeyboardInterrupt`` raised, once, as the first run of ``code`` in the block
    reaches ``line`` (line events: on every Python, unlike ``Injector``'s opcodes); the
    list yielded says whether it was. The block's ``KeyboardInterrupt`` is swallowed."""
    fired: list[int] = []

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == line and not fired:
            fired.append(line)
            raise KeyboardInterrupt  # Ctrl-C there
        return local

    def first(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code is code and not fired else None

    sys.settrace(first)
    try:
        yield fired
    except KeyboardInterrupt:
        pass
    finally:
        sys.settrace(None)
