"""In IPython (a notebook kernel, a terminal): what a cell changes is seen at the next cell.

A function's identity covers its helpers and the module constants it reads; they are
resolved at its first call. A cell can define a helper again, bind a constant to another
value, or (``%autoreload``, in its own ``pre_run_cell`` callback) reload a module and replace
its functions' ``__code__`` in place. So before each cell (the ``pre_execute`` event), every
live decorated function is marked: its next call re-checks what its identity was resolved
from (``_identity.Resolved``: objects by identity, functions' code and defaults, classes'
members) and makes it again only if something changed. The check runs at that next call,
after whatever the cell (or autoreload) did before it, in either order of the callbacks.

The mark costs the hit path nothing: it replaces the code the memo remembers with
``CELL_RAN``, so the comparison every call makes already (``__code__ is not memo.code``)
fails once and calls ``renew``. In a script nothing is marked and nothing recorded.
IPython is never imported here: only found if the process has imported it.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable
from types import FunctionType
from typing import Any

from . import _identity, _trio


class _CellRan:
    """What a memo's remembered code is set to when a cell starts: no code is it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "CELL_RAN"


CELL_RAN: Any = _CellRan()
_live: weakref.WeakSet[Any] = weakref.WeakSet()  # the memos to mark, while they live
_looked = 0  # the cell whose start ``reloaded`` looked after (all live memos)
cells_started = 0  # counted before the memos are marked: a re-check that a cell's start
# overlapped (a call in another thread) sees it changed, and leaves its memo marked
cells_marked = 0  # counted after: a call (a thread's, a task's) that read it before a cell
# started, which then changed what the call's identity was made from, sees it changed as it
# ends, and does not store its value under that identity (``_decorator``'s ``_crossed``)
_cell: tuple[int | None, Any] = (threading.main_thread().ident, None)  # where cells run:
# the thread and task of the latest cell's start (``_context``), or of the first decoration


def watch(memo: Any) -> None:
    """Mark ``memo`` before every cell, if this process runs IPython (once per shell, the
    callback is registered; from then on, identities keep a record of what they read)."""
    global _cell
    shell = _shell()
    if shell is None:
        return
    try:
        # ``pre_execute``, not ``pre_run_cell``: IPython starts a silent execution (a front
        # end's ``kernel.execute``) and ipykernel a comm message (an ipywidget's handler)
        # with it alone; before, a global they bound was not seen until a cell ran
        shell.events.register("pre_execute", _cell_starts)  # registered once: kept once
    except Exception:  # noqa: BLE001 - not IPython's shell after all: nothing to mark
        return
    _identity.RECORD = True
    if not cells_started and threading.current_thread() is threading.main_thread():
        _cell = _context()  # decorated in the cell that loaded memojar: no start seen
        # yet (by the cell's code, in the thread IPython runs cells in; a worker thread's
        # decoration is not taken for the cell's)
    _live.add(memo)


def _context() -> tuple[int | None, Any]:
    """The thread running now, and the asyncio (or trio) task, if any."""
    asyncio = sys.modules.get("asyncio")
    task = None
    if asyncio is not None:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no event loop runs in this thread
            task = None
    return threading.get_ident(), task if task is not None else _trio.current_task()


def _shell() -> Any:
    module = sys.modules.get("IPython.core.getipython")
    if module is None:
        return None
    try:
        return module.get_ipython()
    except Exception:  # noqa: BLE001 - a broken IPython is no reason to fail a decoration
        return None


def _cell_starts(*_info: Any) -> None:
    """``pre_execute`` (a cell, a silent execution, a comm message): each live memo
    re-checks its identity at its next call."""
    global cells_started, cells_marked, _cell
    _cell = _context()  # the cell's code runs here, after its start
    cells_started += 1
    _identity.generation += 1  # functions and classes given as arguments: re-checked too
    for memo in list(_live):
        memo.code = CELL_RAN
    cells_marked += 1


def ran(records: list[Any], marked: int | None = None) -> None:
    """A decorated function ran (with what its identity was made from, ``records``): the
    globals its code binds (``global calls; calls += 1``) are held as they are now by
    every live memo's record whose code binds them too, so that none of them (another
    function bumping the same counter included) makes its identity again at the next cell
    for it. A function that only reads such a global sees it changed, as it sees a cell's,
    and so does one whose record held it otherwise than the run found it as it began (a
    cell bound it again, and that function has not been called since). Nothing is held
    after a run that a cell's start overlapped (``marked``, ``cells_marked`` as it began:
    a thread's call, a task's): what the names are bound to may be that cell's (before,
    held as the functions' own, and the next cell hit the values of the old ones). Nor
    after a run that the cell's own code may have run beside: one in another thread than
    the cell's, or another task (a thread's call, a task the cell awaits later, a
    background recomputation): the cell that started it may bind the names meanwhile,
    and nothing tells its binding from the function's (before, ``K = 5`` in that cell
    was held, and the next cell hit the value of ``K = 1``). A run in the cell's own
    thread and task (a call of the cell's code, awaited or not) holds: the cell's code
    waits for it. Bindings a thread or task of the user's makes beside a run are not
    told apart from the function's."""
    if (marked is not None and cells_marked != marked) or _context() != _cell:
        return
    written: dict[tuple[int, str], Any] = {}
    for record in records:
        for key, held in record.bound().items():
            written.setdefault(key, held)
    if not written:
        return
    for memo in list(_live):
        for record in memo.resolved or ():
            record.rebind(written)


def reloaded(memo: Any, make_wrapper: Callable[[Any, bool], Any]) -> None:
    """A decorated function of a module that ``%autoreload`` reloaded runs the new code.

    Autoreload patches the old decorated function (the one a notebook imported by name,
    ``from model import predict``, or a class's method) with the new one made by the
    reload: its ``__dict__`` (``__wrapped__``, ``__memojar__``: the new memo) and, where
    it can, its closure. The closure is memojar's, and is patched whole or not at all:
    the classic ``superreload`` (``%autoreload 2 --full``, IPython before 9) cannot write
    it, so the old function ran its old code (a value of the code the module no longer
    has); IPython 9's ``deduperreload`` keeps the cells that hold a callable (the old
    memo's ``key_of`` and ``get``) and takes the others (the new memo), so a method's
    call was keyed for the old code and hit its old value. Here (at a memo's ``renew``,
    the first call after a cell started, whatever the callbacks' order) each live memo
    whose function's ``__memojar__`` is now another memo takes that memo's code and
    defaults into its own function, as autoreload does for a function it can reach:
    the code check every call makes then renews its identity, and both memos key, read
    and compute the new code. Where the code cannot be moved (its closure's variables
    differ: a method that starts using ``super()``), the memo runs the new function
    itself.

    ``memo`` (the one renewing) is looked at each time; every live memo once a cell, at
    the first renew in it (a memo whose wrapper runs another memo's ``renew``: a memory
    tier's, patched by deduperreload), so that a cell calling many functions costs one
    walk, not one per function (measured, 300 functions called after a cell: 111 ms a walk
    per renew, 12 to 32 ms once a cell as without any, on a loaded 2-core machine)."""
    global _looked
    _patched(memo, make_wrapper)
    if _looked == cells_started:
        return
    _looked = cells_started
    for each in list(_live):
        _patched(each, make_wrapper)


def _patched(memo: Any, make_wrapper: Callable[[Any, bool], Any]) -> None:
    """If autoreload patched the wrapper of ``memo`` with another memo's: take its code."""
    ref = getattr(memo, "wrapper", None)
    wrapper = ref() if ref is not None else None
    if wrapper is None:
        return
    other = wrapper.__dict__.get("__memojar__")
    if (other is not None and other is not memo and type(other) is type(memo)
            and _adopt(memo, other)):
        _rewrap(memo, wrapper, make_wrapper)


def _rewrap(memo: Any, wrapper: Any, make_wrapper: Callable[[Any, bool], Any]) -> None:
    """``wrapper`` (patched by a reload) made whole again as the wrapper of ``memo``: its
    closure (deduperreload mixed both memos' cells: a method's entries were stored under
    the name of its reload's scratch class, ``mod.__autoreload_class__.m``) and its
    ``__dict__`` (``cache_clear``, ``cache_info``: the other memo's). Left as it is where
    the reload changed its kind (``memory=`` added or dropped): the new code runs anyway.
    ``make_wrapper`` is ``_decorator``'s (handed down: this module is below it)."""
    fresh = make_wrapper(memo, False)
    memo.wrapper = weakref.ref(wrapper)
    if fresh.__code__ is not wrapper.__code__ or not wrapper.__closure__:
        return
    for cell, made in zip(wrapper.__closure__, fresh.__closure__ or (), strict=True):
        cell.cell_contents = made.cell_contents
    wrapper.__dict__ = fresh.__dict__


def _adopt(memo: Any, other: Any) -> bool:
    """``memo`` runs what ``other`` (made by a reload for the same wrapper) runs; False if
    ``other`` is no reload of its function, or it cannot."""
    old, new = memo.target, other.target
    if type(old) is not FunctionType or type(new) is not FunctionType or old is new:
        return False
    if old.__name__ != new.__name__ or old.__module__ != new.__module__:
        return False  # not a reload: ``functools.wraps(f)`` over another cached function
    try:
        old.__code__ = new.__code__
    except ValueError:  # other free variables: run the new function (its own closure)
        if memo.func is not old:  # a bound method or partial: its binding stays
            return False
        memo.func = memo.target = new
        memo.watched = other.watched
        memo.code = CELL_RAN  # the identity is made again for it
        memo.take_options(other)
        return True
    old.__defaults__ = new.__defaults__
    old.__kwdefaults__ = new.__kwdefaults__
    memo.take_options(other)  # (after the code: the binder is made for the new defaults)
    return True
