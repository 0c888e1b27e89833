"""The warning memojar raises when the cache, not the user's function, has a problem, and
the "memojar" logger."""

from __future__ import annotations

import errno
import functools
import itertools
import operator
import os
import sys
import threading
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

DEBUG = 10  # logging.DEBUG
WARNING = 30  # logging.WARNING: what a logger nobody configured lets through
_MODULES = sys.modules
# Reentrant: a signal handler whose cached call logs (a miss asks isEnabledFor) may run
# while this thread is inside ``load``; a plain lock then waited for itself for ever.
_LOADING = threading.RLock()


# What ``str.splitlines`` breaks a line at, each as its escape (``\\n``).
_LINE_BREAKS = {ord(brk): repr(brk)[1:-1] for brk in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped (``\\n``), for what is promised as one line (an
    error of the command line, ``cache_explain``) and quotes a path or an exception's
    message, which may hold them. Before, a folder named with a line break made the command
    line's error two lines, and an entry whose ``__setstate__`` raised a two-line error made
    ``cache_explain``'s answer two."""
    return text.translate(_LINE_BREAKS)


def the_callers(exc: BaseException) -> bool:
    """Whether ``exc``, met while memojar pickled, unpickled or looked at the user's objects,
    is the caller's, not a failure of the value or the entry: raised through a Python signal
    handler (the ``TimeoutError`` of a ``SIGALRM`` handler, stopit's ``SignalTimeout``, a
    user's ``class Timeout(Exception)``; an exception another thread sends, as stopit's
    ``ThreadingTimeout`` does, cannot be told from the value's). Before, an ``OSError`` no
    system call raised (``errno`` None) was taken for a handler's, and any other exception
    for the value's or the entry's: a ``ConnectionError`` a ``__setstate__`` raised failed
    every call (the entry kept), and a handler's ``Timeout`` removed a good entry.

    The frames still running (the one catching ``exc``) are passed over: a handler's is
    one the exception left. Reading a running frame's arguments (``f_locals``, 3.12 and
    before) keeps a copy of its locals in it, ``exc`` among them: a cycle of the frame,
    ``exc`` and its traceback, holding the value being pickled and the frames that called
    it until the collector ran (on 3.12.1 it crashed there, clearing a ``BytesIO``'s
    exported buffer a frame held)."""
    tb = exc.__traceback__
    running: set[int] | None = None
    while tb is not None:  # from the frame that caught it to the one that raised it
        frame = tb.tb_frame
        if _takes_two(frame.f_code):
            if running is None:
                running = _running_frames()
            if id(frame) not in running and _a_signal_handlers(frame):
                return True
        tb = tb.tb_next
    return False


def _running_frames() -> set[int]:
    """The ids of this thread's running frames, walked by ``traceback``'s code: memojar's
    own lines run the same at any depth of the stack (the interrupt tests count them)."""
    import traceback

    return set(map(id, map(operator.itemgetter(0), traceback.walk_stack(sys._getframe(1)))))


def callers_within(exc: BaseException, handled: BaseException | None) -> BaseException | None:
    """The caller's own exception (``the_callers``) that a library made one of its own, found
    in ``exc``'s cause or context, or None. redis-py makes a ``SIGALRM`` handler's
    ``TimeoutError``, raised in a socket read, its ``TimeoutError`` ("Timeout reading from
    ..."), and urllib3 its ``ReadTimeoutError``: taken for the server's, the caller's
    deadline was lost (the call went on to compute), and the server was called down.

    ``handled``: the exception the caller was handling when the request began
    (``sys.exc_info()``), where the chain stops: it and its own context are the caller's
    past, not raised in the request (a call made in an ``except KeyboardInterrupt:``
    block, whose request failed, raised that interrupt again)."""
    seen: set[int] = set()
    while exc is not None and exc is not handled and id(exc) not in seen and len(seen) < 20:
        if the_callers(exc):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def raise_the_callers_within(exc: BaseException, handled: BaseException | None) -> None:
    """Raise the caller's own exception if the library that raised ``exc`` made it one of
    its own (``callers_within``), as the caller raised it: the library's ``exc`` let go, not
    made its context. Called in a store's error map (a ``@contextmanager`` generator).

    The library's errors hold the caller's (urllib3's ``ReadTimeoutError`` is caused by
    it, and its traceback's frames keep it as ``err``), and the caller's holds theirs: the
    context the raise gives it, contextlib's ``__exit__`` frame (``value``: botocore's,
    keeping urllib3's in ``kwargs``) and the library's frames (``f_back`` of the one that
    caught it: urllib3's ``urlopen``, keeping urllib3's as ``new_e``) in its traceback, and
    the map's own frame. Before, such a cycle held the call's frames and its argument until
    the collector ran (a ``SIGALRM`` deadline met while S3 was read, every Python). So each
    error of the chain from ``exc`` to the caller's lets go of its cause, context and
    traceback (nobody sees them again), the caller's gets back the context it had, and no
    frame of this function keeps a name of either."""
    caller = callers_within(exc, handled)
    if caller is None:
        return
    context, suppressed = caller.__context__, caller.__suppress_context__
    _let_go(exc, caller)
    try:
        raise caller  # (the server did not fail: no ``Breaker.trip``)
    finally:
        caller.__context__, caller.__suppress_context__ = context, suppressed
        del caller, context, exc, handled


def _let_go(exc: BaseException | None, caller: BaseException) -> None:
    """Cut each error of the chain from ``exc`` to ``caller`` (as ``callers_within`` walked
    it) from its cause, context and traceback."""
    while exc is not None and exc is not caller:
        following = exc.__cause__ or exc.__context__
        exc.__traceback__ = exc.__cause__ = exc.__context__ = None
        exc = following


def unlink_map_frame(exc: BaseException) -> None:
    """Take a store's error map's own frame (the caller's: a ``@contextmanager`` generator's)
    out of ``exc``'s traceback before the map raises it again as an ``OSError``. On 3.12 and
    later contextlib's ``__exit__`` keeps ``exc`` in its frame, and the finished generator's
    frame links back to that one (``f_back``): a cycle holding the request's frames and the
    call's (its arguments) until the collector ran, at every S3 miss (NoSuchKey) and every
    Redis fault."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame is sys._getframe(1):
        exc.__traceback__ = tb.tb_next


def in_a_signal_handler() -> bool:
    """Whether this thread runs a Python signal handler now (a frame of its stack is one's:
    ``_a_signal_handlers``). Its thread may hold any lock where the signal landed, also one
    of the standard library's that another thread would need."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if _a_signal_handlers(frame):
            return True
        frame = frame.f_back
    return False


def _a_signal_handlers(frame: FrameType) -> bool:
    """Whether ``frame`` is a signal handler's: a call given a signal's number and then the
    frame the signal interrupted, as Python calls a handler (a function, a bound method, a
    partial, a class's ``__init__``, ``lambda *args``, a wrapper). By its arguments, not by
    the handlers installed now: a one-shot handler puts the previous one back before it
    raises, and a decorator's wrapper shares its code with the same wrapper elsewhere (in a
    ``__reduce__``, whose own failure is the value's)."""
    code = frame.f_code
    if not _takes_two(code):
        return False
    named = code.co_argcount + code.co_kwonlyargcount
    rest = code.co_flags & 0x04  # CO_VARARGS: ``*args`` is the name after those
    local = frame.f_locals
    values = [local.get(name) for name in code.co_varnames[:code.co_argcount]]
    if rest:
        more = local.get(code.co_varnames[named])
        if type(more) is tuple:
            values.extend(more)
    return any(type(at) is FrameType and isinstance(number, int) and number in _signal_numbers()
               for number, at in itertools.pairwise(values))


def _takes_two(code: CodeType) -> bool:
    """Whether a call of ``code`` may be a signal handler's: two positional arguments or
    ``*args``."""
    return code.co_argcount >= 2 or bool(code.co_flags & 0x04)  # CO_VARARGS


@functools.cache
def _signal_numbers() -> frozenset[int]:
    try:
        import signal
    except ImportError:  # (WASI, Emscripten: no signals)
        return frozenset()
    return frozenset(map(int, signal.valid_signals()))


def _forward(name: str) -> Callable[..., None]:
    """A logging call of the stand-in: nothing before ``logging`` is imported, else the real
    logger's (the record names the caller's line: ``stacklevel`` counts this frame)."""

    def call(self: _Logger, msg: object, *args: Any, **kwargs: Any) -> None:
        if "logging" in _MODULES:
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            getattr(self.load(), name)(msg, *args, **kwargs)

    call.__name__ = name
    return call


class _Logger:
    """``logging.getLogger("memojar")`` (with a ``NullHandler``), until ``logging`` is
    imported: that import was a fifth of ``import memojar``.

    Until some code imports ``logging``, nothing can have given the logger a handler, a level
    or a filter: a record would go nowhere, so the logging calls do nothing and
    ``isEnabledFor`` answers logging's default (WARNING and above). Once ``logging`` is
    imported (before ``memojar``: at once), the first call makes the real logger, adds the
    ``NullHandler`` and makes it ``logger`` in every memojar module, which each imported it
    by name: from then on calls go straight to it, as they did when memojar imported
    ``logging`` itself. Configure ``logging.getLogger("memojar")``, never this object.

    One difference from a logger made at import: a program that imports ``logging`` after
    ``memojar`` and then runs ``logging.config.dictConfig`` (or ``fileConfig``) with
    ``disable_existing_loggers`` before memojar logs anything finds no "memojar" logger to
    disable, so memojar's records follow the configuration like any other new logger's.
    """

    def isEnabledFor(self, level: int) -> bool:
        if "logging" in _MODULES:
            return self.load().isEnabledFor(level)
        return level >= WARNING

    debug = _forward("debug")
    info = _forward("info")
    warning = _forward("warning")
    error = _forward("error")
    exception = _forward("exception")
    critical = _forward("critical")

    real: logging.Logger | None = None

    def load(self) -> logging.Logger:
        with _LOADING:
            if self.real is None:
                import logging

                self.real = logging.getLogger("memojar")
                self.real.addHandler(logging.NullHandler())
                # By the names in sys.modules: an attribute of another module can run its
                # code (a lazy module loads at its first access, __name__ too) or raise.
                for name, module in list(_MODULES.items()):
                    if name.partition(".")[0] == "memojar" and \
                            getattr(module, "logger", None) is self:
                        setattr(module, "logger", self.real)  # noqa: B010 - a module's global
            return self.real


def _unlock_in_child() -> None:
    """A forked child's own lock: the parent's may be held by a thread that the child lacks
    (one inside ``load`` at the fork), and waiting on it would hang the child's first log."""
    global _LOADING
    _LOADING = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_unlock_in_child)

if TYPE_CHECKING:
    logger: logging.Logger
else:
    logger = _Logger()
    if "logging" in _MODULES:  # a program that uses logging: the logger exists from now
        logger.load()

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class PartlyRemoved(PermissionError):
    """A removal (``clear``, ``prune``, ``cache_delete``) that left entries this user may not
    remove (another user's, in a folder of a cache shared by hand that it may not write),
    after removing the others: ``removed`` is how many it removed, ``left`` the entries left
    (path, and whose), ``filename`` the first of them."""

    def __init__(self, removed: int, left: list[tuple[str, str]], user: str,
                 marked: bool = False) -> None:
        # ``left``: (path, owner's name), the owner "" for the user's own (its folders made
        # read-only by hand, or another user's folder it may not write); ``marked``: the
        # user's own were refused in folders whose mode lets them write (``chattr +i``/``+a``
        # on the entries or their folders)
        names = sorted({owner for _, owner in left if owner})
        gone = "1 entry" if removed == 1 else f"{removed:,} entries"
        kept = "1 entry was" if len(left) == 1 else f"{len(left):,} entries were"
        if not names and marked:  # before: "chmod u+w", which changes nothing for these
            why = ("marked immutable or append-only (chattr +i or +a, on them or their "
                   "folders: lsattr shows it); remove the mark as root, chattr -i -a, to "
                   "remove them")
        elif not names:
            why = (f"in folders {user} may not write (read-only: give them back their "
                   "permissions, chmod u+w, to remove them)")
        else:
            theirs = " and ".join(f"{name}'s" for name in names)
            mine = " (and this user's)" if any(not owner for _, owner in left) else ""
            why = (f"of {theirs}{mine}, in folders {user} may not write (a cache shared by "
                   f"hand): remove them as {' or '.join(names)}")
        super().__init__(errno.EACCES, f"permission denied: removed {gone}; {kept} left, "
                         f"{why}", left[0][0])
        self.removed, self.left, self.user, self.marked = removed, left, user, marked

    @classmethod
    def joined(cls, removed: int, parts: list[PartlyRemoved]) -> PartlyRemoved:
        """One error for a removal done in batches, each of which left some: said once, at
        its end (``removed``: by the whole removal)."""
        return cls(removed, [e for part in parts for e in part.left], parts[0].user,
                   marked=all(part.marked for part in parts))

    def __reduce__(self) -> tuple[Any, tuple[int, list[tuple[str, str]], str, bool]]:
        return type(self), (self.removed, self.left, self.user, self.marked)


class UnknownOption(ValueError):
    """A cache URL's query names an option its store does not take (``option``): a
    mistake in what the user wrote, which the command line calls bad usage (status 2)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return type(self), (str(self), self.option)


class MemojarWarning(UserWarning):
    """A cache fault that cost a cache hit or a store, never the caller's result."""


def warn(message: str) -> None:
    """Warn the user and log the fault, once per call site as warnings do by default.

    The warning points at the user's line: the first frame outside memojar's own files,
    however deep the call that noticed the fault (a fixed ``stacklevel`` points into
    memojar whenever the path to ``warn`` changes). In a worker thread running a store call
    for a coroutine (``at_site``), where none of the caller's frames are, it points at the
    line that awaited the call, found before the call left the event loop's thread.
    """
    logger.warning("%s", message)
    level = _user_stacklevel()
    if isinstance(level, int):
        warnings.warn(message, MemojarWarning, stacklevel=level)
        return
    filename, lineno, module_globals = level
    module = module_globals.get("__name__", "<string>")
    registry = module_globals.setdefault("__warningregistry__", {})
    try:
        warnings.warn_explicit(message, MemojarWarning, filename, lineno, module=module,
                               registry=registry, module_globals=module_globals)
    except ImportError:
        # The module's loader has no source for the line shown (``python -c``'s
        # ``__main__``, loaded by the built-in importer, raises): asked before anything
        # else is done, so the warning is given again without it. Before, the ImportError
        # came out of the user's call.
        warnings.warn_explicit(message, MemojarWarning, filename, lineno, module=module,
                               registry=registry)


Site = tuple[str, int, dict[str, Any]]  # a line of the caller's: file, number, its globals
_SITE: ContextVar[Site | None] = ContextVar("memojar_site", default=None)


def user_site() -> Site | None:
    """The caller's line (as ``warn`` would point at it from here), for ``at_site``."""
    level = _user_stacklevel()
    if not isinstance(level, int):
        return level
    frame: FrameType | None = sys._getframe(1)  # user_site's caller: stacklevel 2 from here
    for _ in range(level - 2):
        frame = frame.f_back if frame is not None else None
    if frame is None:
        return None
    return frame.f_code.co_filename, frame.f_lineno, frame.f_globals


def at_site(site: Site | None, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, where ``warn`` points at ``site`` (the line that awaited a store call
    now run in a worker thread, whose stack holds none of the caller's frames)."""
    token = _SITE.set(site)
    try:
        return call(*args)
    finally:
        _SITE.reset(token)


_AT_SITE = at_site.__code__


def _user_stacklevel() -> int | Site:
    """The ``stacklevel`` (as ``warn``'s caller passes it) of the nearest frame not in
    memojar's package; or, below ``at_site`` in a worker thread, the site it was given."""
    frame: FrameType | None = sys._getframe(2)  # warn's caller: stacklevel 2 counted from warn
    level = 2
    while frame is not None and _ours(frame):
        if frame.f_code is _AT_SITE:  # the worker's frames are beyond: not the caller's
            site = _SITE.get()
            if site is not None:
                return site
        frame = frame.f_back
        level += 1
    # A coroutine the event loop runs itself (``asyncio.run(f(x))``, ``trio.run(f, x)``):
    # past the loop's frames, the line that ran it; the loop's first frame if no caller's
    # is above them. Before, only asyncio's were passed: under trio (anyio's trio backend
    # too) the warning pointed inside trio's run loop.
    loops = _loop_dirs()
    found = level
    while frame is not None and frame.f_code.co_filename.startswith(loops):
        frame = frame.f_back
        level += 1
    return level if frame is not None else found


_LOOPS = ("asyncio", "trio", "anyio")  # event loops' packages: their frames are passed over


def _loop_dirs() -> tuple[str, ...]:
    """The folders of the event loops' packages imported (none: nothing to pass over)."""
    dirs = []
    for name in _LOOPS:
        module = getattr(_MODULES.get(name), "__file__", None)
        if isinstance(module, str):
            dirs.append(os.path.dirname(module) + os.sep)
    return tuple(dirs)


def _ours(frame: FrameType) -> bool:
    """A frame of memojar's code: by its file, or, in a copy sent by value (cloudpickle
    copies the wrapper of a function of ``__main__``, naming the code's file
    ``<dynamic-code>``), by the ``__file__`` of the module globals the copy keeps."""
    if frame.f_code.co_filename.startswith(_PACKAGE):
        return True
    module = frame.f_globals.get("__file__")
    return isinstance(module, str) and module.startswith(_PACKAGE)
