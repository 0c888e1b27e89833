"""The ``memojar`` command line: see, summarise, clear and prune a cache without Python.

Every command reads entry headers only, never a payload: listing a cache unpickles nothing,
so it is safe on entries from anywhere and fast on a big cache. Commands build a ``Report``
(a table, some fields, a few notes, and the data ``--json`` prints); ``main`` prints it as
text, and the ``%memojar`` magic (``_ipython``) renders the same report as HTML.

Exit status: 0 success, 1 error, 2 bad usage. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import datetime as _dt
import difflib
import errno
import math
import operator
import os
import re
import shlex
import signal
import stat
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, NoReturn

from ._cache import (
    NEWER_FORMAT,
    PROVISIONAL,
    SUPERSEDED,
    Cache,
    Newest,
    default_directory,
    final_verdict,
    first_verdict,
    note_newest,
    url_scheme,
)
from ._census import Census, counted, take_census
from ._entry import CLOCK_SKEW
from ._errors import MemojarWarning, PartlyRemoved, UnknownOption, one_line
from ._filestore import (
    is_cache_dir,
    not_tagged_yet,
    others_cache,
    owner_of_unreadable_tag,
    user_name,
    why_not_ours,
)
from ._identity import SIBLING, encodable, family_of, place_of
from ._location import file_path, redact
from ._report import Report, Table, human_duration, human_size, human_time, iso, text_width
from ._runs import SortedRuns, Unreadable
from ._store import Removal, StoredEntry, header_of

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhdw])")  # ASCII digits
_PROGRESS_DELAY = 1.0  # seconds before a progress line appears: quick commands show none
_PROGRESS_EVERY = 0.1  # seconds between progress updates
_UTC = _dt.timezone.utc

_EXAMPLES = """\
examples:
  {prog} ls                              functions in the cache, with sizes and ages
  {prog} ls analysis.load_table          one function's entries
  {prog} info --json                     totals, for scripts
  {prog} clear analysis.load_table       remove one function's entries
  {prog} clear --older-than 7d --yes     remove every entry older than a week
  {prog} clear --dry-run                 show what clearing everything would remove
  {prog} prune                           remove stale, incompatible and broken entries
  {prog} prune --other-pythons           ... and those only another Python version reads
  {prog} --dir ./.cache ls               any command on another cache directory

FUNCTION is a function's module.qualname, as '{prog} ls' shows it. DURATION is a number
and a unit: s, m, h, d or w (90s, 15m, 2h, 7d). The cache directory defaults to
$MEMOJAR_DIR, else the user cache directory; --dir also takes a redis:// or s3:// URL.
"""


def _examples(prog: str) -> str:
    """The help's examples, as typed where ``prog`` runs (``%memojar ls`` in IPython)."""
    lines = []
    for line in _EXAMPLES.splitlines():
        if line.startswith("  {prog} "):  # keep the descriptions in one column
            command, _, what = line[2:].partition("  ")
            line = f"  {command.format(prog=prog):<39} {what.strip()}"
        else:
            line = line.format(prog=prog)
        lines.append(line)
    return "\n".join(lines) + "\n"


class CliError(Exception):
    """A failure to report as one line, with the exit status to leave with."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a removal, saying what was removed before it (before: "interrupted"
    alone, and a user could not tell whether any entry had gone)."""

    def __init__(self, removed: int, freed: int | None = None, exact: bool = False,
                 done: bool = False) -> None:
        super().__init__(_removed_before(removed, freed, exact, done))


def _removed_before(removed: int, freed: int | None = None, exact: bool = False,
                    done: bool = False) -> str:
    """What a removal ended early (``Interrupted``, a fault) had removed, in words."""
    if exact and not removed:
        return "nothing removed"
    if not removed:
        return ("it may have removed some of the entries it was removing; the others are "
                "kept (run the command again to finish)")
    # a batch being removed when it came: some of it may have gone too
    return (f"removed {'' if exact else 'at least '}{_plural(removed, 'entry')}"
            + (f" ({human_size(freed)})" if freed is not None else "")
            + ("" if done else "; the rest are kept (run the command again to remove them)"))


class NoCacheYet(Exception):
    """The cache directory does not exist: nothing was cached there yet (a fresh machine,
    or --dir / $MEMOJAR_DIR pointing at a new place). Every command reports an empty cache."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


# --- parsing --------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a ``CliError`` (one line, status 2), not a print, and
    an option is only its whole name: argparse's prefixes ran ``prune --other-python`` (a
    typo) as ``--other-pythons``, which removed every other Python's entries."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if message == "argument --older-than: expected one argument":
            message += " (a DURATION: a number and a unit s, m, h, d or w, as 90s, 15m, 2h, 7d)"
        elif message.startswith("unrecognized arguments: "):
            message += self._options_meant(message.split(": ", 1)[1].split())
        elif message.startswith("argument COMMAND: invalid choice: "):
            unknown = self._unknown_before_command()
            if unknown:  # ``--dri x ls``: not 'x' the mistake, the option that left it
                message = (f"unrecognized arguments: {' '.join(unknown)}"
                           + self._options_meant(unknown))
        raise CliError(f"{message} (see '{self.prog} --help')", EXIT_USAGE)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._argv = list(sys.argv[1:] if args is None else args)  # for ``error``
        return super().parse_known_args(args, namespace)

    def _unknown_before_command(self) -> list[str]:
        """The options this parser does not know in front of the command. argparse leaves
        one out as unknown and takes the word after it (its value: ``--dri x ls``) for the
        command, and said only "invalid choice: 'x'"."""
        unknown = []
        words = iter(getattr(self, "_argv", ()))
        for word in words:
            if word == "--" or not word.startswith("-") or word == "-":
                break  # the command's place
            action = self._option_string_actions.get(word.split("=", 1)[0])
            if action is None:
                unknown.append(word)
            elif "=" not in word and action.nargs is None:
                next(words, None)  # its value (``--dir x``)
        return unknown

    def _options_meant(self, words: list[str]) -> str:
        """"; did you mean ..." for unknown options that are near a known one (this
        parser's or a command's: argparse reports a command's from the top parser)."""
        import difflib

        parsers = [self]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += action.choices.values()
        known = sorted({o for p in parsers for a in p._actions for o in a.option_strings
                        if o.startswith("--")})
        close, misplaced = [], ""
        for word in (w.split("=")[0] for w in words if w.startswith("--")):
            owners = [name for name, p in zip(self._commands(), parsers[1:], strict=True)
                      if word in p._option_string_actions]
            if word not in self._option_string_actions and owners and not misplaced:
                # a command's option in front of it (``--json ls``): before, "did you
                # mean --json?", the very word typed
                action = parsers[1 + self._commands().index(owners[0])]._option_string_actions[
                    word]
                value = f" {action.metavar or action.dest.upper()}" if action.nargs != 0 else ""
                misplaced = f"; {word} is an option of {' and '.join(owners)}"
                typed = self._command_typed()
                if typed is not None and typed not in owners:  # ``clear --json``: before,
                    misplaced += f", not of {typed}"  # "after the command", where it was
                else:
                    misplaced += (f": after the command, as "
                                  f"'{self.prog} {owners[0]} {word}{value}'")
                continue
            longer = [o for o in known if o.startswith(word)]  # a prefix: what it stood for
            close += longer or difflib.get_close_matches(word, known, n=1, cutoff=0.6)
        meant = f"; did you mean {' or '.join(dict.fromkeys(close))}?" if close else ""
        return meant + misplaced

    def _command_typed(self) -> str | None:
        """The command typed, if any: the first word of this parser's commands that is no
        option's value (``--dir ls clear``: ``clear``)."""
        commands = self._commands()
        words: Iterator[str] = iter(getattr(self, "_argv", ()))
        for word in words:
            action = self._option_string_actions.get(word.split("=", 1)[0])
            if action is not None and "=" not in word and action.nargs is None:
                next(words, None)  # its value
            elif word in commands:
                return word
        return None

    def _commands(self) -> list[str]:
        """The names of this parser's commands, in the order ``_options_meant`` lists their
        parsers."""
        return [name for action in self._actions
                if isinstance(action, argparse._SubParsersAction) for name in action.choices]

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """argparse's, but an invalid choice typed with a byte that is not UTF-8 (the
        command: ``memojar $'caf\\351'``) is quoted as ``quoted`` quotes it."""
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            if not isinstance(value, str) or value.isprintable():
                raise
            raise argparse.ArgumentError(
                action, exc.message.replace(repr(value), quoted(value))) from None

    def _print_message(self, message: str, file: Any = None) -> None:
        """argparse's, but a ``--help`` or ``--version`` that cannot be written (a full
        disk) is an error: argparse drops the ``OSError``, and the status was 0. Its
        reader gone (a broken pipe) is not: dropped quietly, as a report's is."""
        if not message:
            return
        file = file or sys.stderr  # argparse's: stdout closed (``>&-``), said on stderr
        try:
            file.write(message)
            file.flush()
        except BrokenPipeError:  # the reader left (``--help | head -1``): quiet, as ls's
            raise
        except OSError as exc:
            stream = "stdout" if file is sys.stdout else "stderr"
            raise CliError(f"cannot write to {stream} ({exc.strerror or exc})") from exc


class Duration(float):
    """Seconds, remembering how the user wrote them (``"1.5h"``) to echo them back so."""

    text: str

    def __new__(cls, seconds: float, text: str) -> Duration:
        self = super().__new__(cls, seconds)
        self.text = text
        return self

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str) -> Duration:
    """Seconds in ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"`` or ``"1w"``, as a ``Duration``
    that prints as typed (``str(parse_duration("1.5h")) == "1.5h"``)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is not None and match[2] == "m" and text.strip().endswith("M"):
        # Not minutes: "6M" is read as months (as by pandas and ISO 8601) as often, and a
        # clear of everything older than 6 minutes cannot be undone.
        raise argparse.ArgumentTypeError(
            f"invalid duration {quoted(text)}: M is not a unit (minutes are m; for months, count "
            "days: 180d)"
        )
    if match is None and _DURATION.fullmatch(text.strip().lower().lstrip("-")):
        raise argparse.ArgumentTypeError(
            f"invalid duration {quoted(text)}: a duration counts back from now and cannot be "
            f"negative (--older-than {text.strip().lstrip('-')} removes entries created "
            "longer ago than that)"
        )
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid duration {quoted(text)}: use a number and a unit s, m, h, d or w "
            "(90s, 15m, 2h, 7d)"
        )
    return Duration(float(match[1]) * _UNITS[match[2]], text.strip())


def _negative_durations(argv: Sequence[str]) -> list[str]:
    """``--older-than -5d`` as ``--older-than=-5d``: argparse takes ``-5d`` for an option and
    said only "expected one argument"; joined, ``parse_duration`` says what is wrong."""
    argv = list(argv)
    for i, arg in enumerate(argv[:-1]):
        if arg == "--":
            break
        if (len(arg) > 2 and "--older-than".startswith(arg)
                and re.match(r"-[\d.]", argv[i + 1])):
            argv[i:i + 2] = [f"{arg}={argv[i + 1]}"]
            break
    return argv


def build_parser(prog: str = "memojar") -> argparse.ArgumentParser:
    """The parser of the command line (and of ``%memojar``, with ``prog="%memojar"``)."""
    from ._version import __version__

    parser = _Parser(
        prog=prog,
        description="List, summarise, clear and prune a memojar cache. Reads entry headers "
        "only: nothing is unpickled.",
        epilog=_examples(prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"memojar {__version__}")
    parser.add_argument(
        "--dir", metavar="DIR", default=None,
        help="cache directory, redis:// or s3:// URL (default: $MEMOJAR_DIR, else the user "
        "cache directory)",
    )
    # --dir after the command too; SUPPRESS keeps the subcommand from overwriting it.
    common = _Parser(add_help=False)
    common.add_argument("--dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="cache directory, redis:// or s3:// URL")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    ls = commands.add_parser(
        "ls", parents=[common], help="functions (or one function's entries)",
        description="List the cached functions with their entry counts, sizes and ages; "
        "given FUNCTION, list its entries.",
    )
    ls.add_argument("function", nargs="?", metavar="FUNCTION",
                    help="a function's module.qualname")
    ls.add_argument("--json", action="store_true", help="print JSON for machines")

    info = commands.add_parser(
        "info", parents=[common], help="totals for the cache",
        description="Location (directory or URL), entries, bytes, functions, stale and "
        "incompatible counts.",
    )
    info.add_argument("--json", action="store_true", help="print JSON for machines")

    clear = commands.add_parser(
        "clear", parents=[common], help="remove entries",
        description="Remove the entries of the given functions, or every entry. With no "
        "FUNCTION and no --yes it asks first (and refuses without a terminal).",
    )
    clear.add_argument("functions", nargs="*", metavar="FUNCTION",
                       help="a function's module.qualname (default: every function)")
    clear.add_argument("--older-than", type=parse_duration, metavar="DURATION",
                       help="only entries created longer ago than DURATION (30s, 15m, 2h, 7d)")
    clear.add_argument("--dry-run", action="store_true",
                       help="say what would be removed, remove nothing")
    clear.add_argument("--yes", "-y", action="store_true",
                       help="do not ask before removing every entry")

    prune = commands.add_parser(
        "prune", parents=[common], help="remove stale, incompatible and orphaned entries",
        description="Remove stale entries, entries of a function's older code or version "
        "(in the same script or notebook and Python), of an older entry format, unreadable "
        "entries and orphaned temporary files. Entries another Python version (or a newer "
        "memojar) can read are kept unless --other-pythons is given.",
    )
    prune.add_argument("--other-pythons", action="store_true",
                       help="also remove entries of other Python versions and of newer "
                       "memojar formats")
    return parser


# --- reading the cache ------------------------------------------------------------------

def open_cache(location: str | None) -> Cache:
    """The cache at ``location`` (default: the decorator's), refusing what is not one.

    A directory that does not exist raises ``NoCacheYet`` (an empty cache, not an error);
    one that exists must hold memojar's CACHEDIR.TAG: memojar lists and deletes only in
    directories it created, never in one that merely looks like a cache. One that is empty
    or holds only memojar's temporary tag files (a root being tagged, or left so by a
    process killed then) is an empty cache too: ``NoCacheYet``.
    """
    given = location is not None  # by --dir (else $MEMOJAR_DIR's or the default)
    location = location or default_directory()
    try:
        location = file_path(location)  # (a file:// URL naming another host: an error)
        scheme = url_scheme(location)  # a URL (of another scheme) is Cache's to judge
    except ValueError as exc:  # a mistyped URL (redis//host): never a folder "redis"
        raise CliError(f"cannot open the cache at {redact(location)}: {exc}") from exc
    if scheme is None:
        path = os.path.abspath(os.path.expanduser(location))
        # One look, its error said as it is: before, ``lexists`` then ``isdir`` then
        # ``access``, each taking any failure for an answer (an I/O error said "no cache
        # yet", "is a file" or "permission denied").
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise NoCacheYet(path) from None
        except OSError as exc:
            if not isinstance(exc, PermissionError):
                raise CliError(f"cannot look at the cache directory {shown(path)}: "
                               f"{exc.strerror}") from exc
            mode = stat.S_IFDIR  # a folder above it not searchable: said just below
        if not stat.S_ISDIR(mode):
            raise CliError(f"{shown(path)} is a file, not a cache directory: pass --dir a "
                           "directory")
        try:
            os.scandir(path).close()
        except PermissionError:
            raise CliError(f"permission denied: cannot read the cache directory {shown(path)}"
                           + _whose(path)) from None
        except OSError as exc:
            raise CliError(f"cannot read the cache directory {shown(path)}: "
                           f"{exc.strerror}") from exc
        if not os.access(path, os.R_OK | os.X_OK):
            raise CliError(f"permission denied: cannot read the cache directory {shown(path)}"
                           + _whose(path))
        if not is_cache_dir(path):
            if not_tagged_yet(path):  # empty, or being tagged: nothing created by looking
                raise NoCacheYet(path)
            owner = owner_of_unreadable_tag(path)
            if owner is not None:
                raise CliError(f"{shown(path)} {others_cache(owner)}")
            if not is_cache_dir(path):  # else tagged between the two looks
                raise CliError(
                    f"{shown(path)} is not a memojar cache ({why_not_ours(path)}); memojar only "
                    "lists and deletes files in its own directories"
                )
        location = path
    try:
        return Cache(location)
    except ImportError as exc:
        raise CliError(str(exc)) from exc
    except UnknownOption as exc:  # in --dir: bad usage (before, status 1)
        raise CliError(f"cannot open the cache at {redact(str(location))}: {exc}",
                       EXIT_USAGE if given else EXIT_ERROR) from exc
    except (ValueError, TypeError) as exc:
        raise CliError(f"cannot open the cache at {redact(str(location))}: {exc}") from exc


def _named(location: str | None) -> str:
    """A cache's location (default: the decorator's) as messages name it before it is
    opened: a folder by its absolute path, as ``open_cache`` and ``Cache.directory`` name
    it; a URL without its password. Before, the refusal to clear every entry said
    ``--dir c1`` as typed, "in c1", where every other message said the absolute folder."""
    location = location or default_directory()
    try:
        location = file_path(location)
        local = url_scheme(location) is None
    except ValueError:  # a mistyped URL: ``open_cache`` says why
        local = False
    return shown(os.path.abspath(os.path.expanduser(location)) if local else redact(location))


def _whose(path: str) -> str:
    """Whose an unreadable cache directory is and what to do (before: nothing said)."""
    try:
        owner = os.stat(path).st_uid
    except OSError:
        return ""
    if hasattr(os, "geteuid") and owner == os.geteuid():
        return " (yours, its permissions changed: chmod u+rwx it)"
    return (f", which is {user_name(owner)}'s (memojar keeps a cache private to the user "
            "who made it): use a folder of your own, or, to share results between users, a "
            "Redis or S3 cache with a secret")


def check_functions(cache: Cache, names: Sequence[str], again: str = "memojar") -> None:
    """Raise a ``CliError`` naming close matches for any name with no entries (``again``:
    the command that reaches this cache, for the hint, see ``_again``)."""
    missing = [n for n in names if next(cache.store.scan(n, heads=False), None) is None]
    if not missing:
        return
    known = sorted(_known_functions(cache))
    problems = []
    for name in missing:
        problem = f"no entries for function {quoted(name)} in {shown(cache.directory)}"
        close = _close_names(name, known)
        if close:
            problem += "; did you mean " + " or ".join(map(quoted, close)) + "?"
        problems.append(problem)
    hint = f" ({_said(again, 'ls')} lists the functions)" if known else " (the cache is empty)"
    raise CliError("; ".join(problems) + hint)


def _known_functions(cache: Cache) -> set[str]:
    names = set()
    for stored in cache.store.scan():
        header = header_of(stored)
        if header is not None:
            names.add(header.function)
    return names


def _close_names(name: str, known: list[str]) -> list[str]:
    """Known names that end with ``name`` (a bare qualname) or start with it and a dot (a
    factory's or a class's name: ``mod.make`` for ``mod.make.<locals>.add``, before
    suggested nothing), then difflib's close ones."""
    lowered = name.lower()
    tails = [k for k in known if k.lower().endswith("." + lowered) or k.lower() == lowered
             or k.lower().startswith(lowered.rstrip(".") + ".")]
    by_lower = {k.lower(): k for k in known}
    close = [by_lower[c] for c in difflib.get_close_matches(lowered, list(by_lower), n=3,
                                                           cutoff=0.8)]
    return list(dict.fromkeys(tails + close))[:3]


# --- progress -------------------------------------------------------------------------------

class Progress:
    """A one-line counter on a terminal for long operations; silent anywhere else."""

    def __init__(self, stream: IO[str] | None, what: str) -> None:
        # A dumb terminal (Emacs' shell) would show the line's escape sequences as text.
        drawn = (stream is not None and _isatty(stream)
                 and os.environ.get("TERM") != "dumb")
        self.stream = stream if drawn else None
        self.what = what
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False
        self.suffix = ""  # after the count: ``(1,000 removed)``

    def update(self, done: int, total: int | None = None) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self.start < _PROGRESS_DELAY or now - self.last < _PROGRESS_EVERY:
            return
        self.last = now
        self.shown = True
        text = f"{self.what} {done:,}"
        if total:
            text += f"/{total:,} ({100 * done // total}%)"
        text += self.suffix
        self.stream.write(f"\r\033[K{text}")
        self.stream.flush()

    def callback(self) -> Callable[[int], None] | None:
        """``update``, to hand to the work as its progress callback; None off a terminal,
        so the work does not even count."""
        return self.update if self.stream is not None else None

    def close(self) -> None:
        """Wipe the line, if one was drawn."""
        if self.shown and self.stream is not None:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self.shown = False


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _remove(cache: Cache, entries: Iterable[StoredEntry], progress: Progress,
            total: int | None) -> tuple[int, int]:
    """``Store.remove_listed``, counted on the terminal: entries of other users' it may not
    remove (a cache shared by hand) are left, the rest removed, and then one
    ``PartlyRemoved`` for all. Returns the entries removed and their bytes; interrupted,
    says how many it had removed (``Interrupted``)."""
    removal = Removal()
    try:
        removed = cache.store.remove_listed(
            entries, lambda done: progress.update(done.taken, total), removal)
    except KeyboardInterrupt:
        raise Interrupted(removal.removed, removal.freed, exact=not removal.busy) from None
    except PartlyRemoved:
        raise  # (it says what it removed)
    except OSError as exc:
        # A server that stopped answering, a disk failing: said with what had gone before.
        # Before, the fault alone ("removing s3://...: no answer within timeout=2 s"), and
        # a user could not tell that 116 entries of 600 had gone.
        said = _removed_before(removal.removed, removal.freed, exact=not removal.busy)
        raise CliError(f"{_os_error(exc)}; {said}") from exc
    return removed, removal.freed


def cmd_ls(
    cache: Cache, function: str | None, as_json: bool, progress_stream: IO[str] | None = None,
    again: str = "memojar",
) -> Report:
    """One row per function, or (given ``function``) one row per entry."""
    reading = Progress(progress_stream, "memojar: reading entries")
    try:
        if function is not None:
            return _ls_function(cache, function, as_json, reading.callback(), again)
        return _ls_census(take_census(cache, reading.callback()), as_json,
                          _saved_stats(cache), again, _keeps_stats(cache))
    finally:
        reading.close()


def _saved_stats(cache: Cache) -> dict[str, tuple[int, int, float]]:
    """Hits, misses and seconds saved per function, of every process (never fails ls)."""
    try:
        return cache.saved_stats()
    except OSError:
        return {}


def _ls_census(census: Census, as_json: bool,
               saved: dict[str, tuple[int, int, float]] | None = None,
               again: str = "memojar", kept: bool = True) -> Report:
    stats = sorted(census.functions.values(), key=lambda s: s.function)
    saved = saved or {}
    now = time.time()
    rows = [
        [shown(s.function), f"{s.entries:,}", human_size(s.bytes), _ago(s.oldest, now, " ago"),
         _ago(s.newest, now, " ago"), f"{s.stale:,}", f"{s.incompatible:,}",
         f"{s.other_python:,}"]
        + ([f"{saved.get(s.function, (0, 0, 0.0))[0]:,}",
            human_time(saved.get(s.function, (0, 0, 0.0))[2])] if kept else ["-", "-"])
        for s in stats
    ]
    notes = [_summary(census)]
    if not kept and stats:
        notes.append(_NOT_KEPT)
    if census.unreadable:
        notes.append(f"{_plural(census.unreadable, 'unreadable entry')} "
                     f"({_said(again, 'prune')} removes them)")
    if census.newer_format:
        notes.append(_newer_note(census.newer_format, again))
    return Report(
        data=[_with_saved(s.json(), saved.get(s.function, (0, 0, 0.0)) if kept else None)
              for s in stats],
        table=Table(["FUNCTION", "ENTRIES", "SIZE", "OLDEST", "NEWEST", "STALE",
                     "INCOMPATIBLE", "OTHER PYTHON", "HITS", "SAVED"], rows,
                    frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9})),
        notes=notes,
        as_json=as_json,
    )


def _with_saved(row: dict[str, Any], saved: tuple[int, int, float] | None) -> dict[str, Any]:
    if saved is None:  # a store that keeps no statistics: not known, not 0
        row.update(hits=None, misses=None, saved=None)
    else:
        row.update(hits=saved[0], misses=saved[1], saved=round(saved[2], 6))
    return row


# Before, a store that keeps no statistics (S3) showed 0 hits and 0 ms saved after hits.
_NOT_KEPT = "hits and time saved are not known: this store keeps no statistics"


def _keeps_stats(cache: Cache) -> bool:
    """Whether the store keeps hits, misses and time saved (the file store and Redis do;
    a store that keeps none inherits ``Store.merge_stats``, which drops them)."""
    from ._store import Store

    return type(cache.store).merge_stats is not Store.merge_stats


def _ls_function(
    cache: Cache, function: str, as_json: bool, progress: Callable[[int], None] | None,
    again: str = "memojar",
) -> Report:
    """One row per entry of ``function``, newest first, printed as they are read back.

    The listing is read once: each entry's row goes to ``SortedRuns`` (sorted by age in
    runs on a temporary file past ``_runs.RUN`` rows), and what a row's status, WHY and
    SCRIPT columns depend on is kept by kinds of entry (scope, Python, code, version), as
    ``take_census`` keeps its counts: memory by kinds, not by entries. Before, every entry
    was held with its whole header until the last was read, then sorted and formatted
    whole (2.3 GB of RSS for ``ls FUNCTION`` of 1,000,000 entries)."""
    check_functions(cache, [function], again)
    now = time.time()
    entries: Iterable[StoredEntry] = cache.store.scan(function)
    if progress is not None:
        entries = counted(entries, progress)
    kinds: dict[tuple[Any, ...], int] = {}  # (scope, Python, code, version) -> its number
    headers: list[Any] = []  # a header of each kind, by number
    verdicts: set[tuple[int, str]] = set()  # (kind, first verdict) met
    newest: Newest = {}  # for the verdicts (``judge``)
    latest: dict[tuple[str, str], Any] = {}  # for the WHY column (``_reasons``)
    rows = SortedRuns(key=operator.itemgetter(0))
    widths = [0] * 5
    count = total = 0
    unread = [0, 0]  # unreadable entries, of a newer memojar's format: said in notes
    for stored in entries:
        header = header_of(stored)
        if header is None:  # in its folder, of no function that can be told
            unread[first_verdict(stored, None, now) == NEWER_FORMAT] += 1
            continue
        if header.function != function:
            continue
        verdict = first_verdict(stored, header, now)
        if verdict in PROVISIONAL:
            note_newest(newest, header)
        for group in _latest_groups(header):
            seen = latest.get(group)
            if seen is None or header.created > seen.created:
                latest[group] = header
        kind = kinds.setdefault(
            (header.scope, header.python, header.fingerprint, header.version, header.ident),
            len(kinds))
        if kind == len(headers):
            headers.append(header)
        verdicts.add((kind, verdict))
        count += 1
        total += stored.size
        # A compute time that is no time (NaN, infinite or negative: a header written by
        # hand or damaged, which the header's checks let through) is unknown: before, the
        # text listing ended in "unexpected error: OverflowError", and --json printed
        # Infinity or NaN, which no strict JSON reader takes.
        compute = header.compute_time if 0 <= header.compute_time < math.inf else None
        if as_json:
            row: tuple[Any, ...] = (-header.created, kind, verdict, header.key, stored.size,
                                    header.created, header.expires, compute)
        else:
            cells = (header.key[:12], human_size(stored.size), _ago(header.created, now),
                     _expires(header.expires, now),
                     "-" if compute is None else human_time(compute))
            widths = [max(w, text_width(c)) for w, c in zip(widths, cells, strict=True)]
            row = (-header.created, kind, verdict, *cells)
        rows.add(row)
    status = {(kind, verdict): _status(final_verdict(headers[kind], verdict, newest))
              for kind, verdict in verdicts}
    reasons = _reasons(headers, latest, {kind for (kind, _), s in status.items()
                                         if s == "incompatible"})
    homes = [_home(place_of(header.scope)) for header in headers]
    scoped = any(place_of(header.scope) for header in headers)  # __main__'s scripts
    why = bool(reasons)  # of kinds with an incompatible entry
    if as_json:
        data: Any = _Rows(rows, lambda r: {
            "key": r[3], "size": r[4], "created": iso(r[5]), "expires": iso(r[6]),
            "compute_time": r[7], "status": status[r[1], r[2]],
            "python": headers[r[1]].python, "scope": place_of(headers[r[1]].scope),
            "reason": reasons.get(r[1], "") if status[r[1], r[2]] == "incompatible" else "",
        }, count)
        table_rows: Any = []
    else:
        data = None
        table_rows = _Rows(rows, lambda r: [
            *r[3:], status[r[1], r[2]],
            *([reasons.get(r[1], "") if status[r[1], r[2]] == "incompatible" else ""]
              if why else []),
            *([homes[r[1]]] if scoped else [])], count)
        widths += [max((len(s) for s in status.values()), default=0)]
        if why:
            widths += [max((text_width(r) for r in reasons.values()), default=0)]
        if scoped:
            widths += [max(text_width(h) for h in homes)]
    columns = (["KEY", "SIZE", "AGE", "EXPIRES", "COMPUTE", "STATUS"]
               + (["WHY"] if why else []) + (["SCRIPT OR NOTEBOOK"] if scoped else []))
    return Report(
        data=data,
        table=Table(columns, table_rows, frozenset({1, 2, 3, 4}),
                    [max(w, len(c)) for w, c in zip(widths, columns, strict=True)]
                    if count and not as_json else None),
        notes=[f"{shown(function)}: {_plural(count, 'entry')}, {human_size(total)}",
               *([f"{_plural(unread[0], 'unreadable entry')} in its folder "
                  f"({_said(again, 'prune')} removes them)"] if unread[0] else []),
               *([_newer_note(unread[1], again)] if unread[1] else [])],
        as_json=as_json,
    )


class _Rows:
    """The rows of a listing read back from ``SortedRuns``, each made by ``make`` as it is
    read: iterable as often as asked, of a known length."""

    def __init__(self, rows: SortedRuns, make: Callable[[Any], Any], count: int) -> None:
        self._rows, self._make, self._count = rows, make, count

    def __iter__(self) -> Iterator[Any]:
        return map(self._make, self._rows)

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._rows.close()


def _status(verdict: str) -> str:
    return "incompatible" if verdict == SUPERSEDED else verdict


def _latest_groups(header: Any) -> list[tuple[str, str]]:
    """The groups whose newest entry an incompatible one is compared with (``_reasons``):
    its scope's in its Python, and its family's (a closure's, a lambda's)."""
    return [(header.scope, header.python),
            (SIBLING + family_of(header.function, header.scope)[0], header.python)]


def _reasons(headers: list[Any], latest: dict[tuple[str, str], Any],
             incompatible: set[int]) -> dict[int, str]:
    """Why the entries of each incompatible kind (by number, ``headers``) are: what changed
    between their code and that of the newest entry of their script or notebook and Python
    (``cache_explain`` says it against the code itself; the command line does not import
    your code)."""
    from ._depends import changes

    reasons = {}
    for kind in incompatible:
        header = headers[kind]
        scope, family = _latest_groups(header)
        newest = latest[scope]
        if newest.ident == header.ident:  # superseded, if so, by another capture's code
            newest = latest[family]
        if newest.ident == header.ident:
            continue
        if newest.version != header.version:
            reasons[kind] = "another version"
        elif header.manifest and newest.manifest:
            reasons[kind] = changes(header.manifest, newest.manifest, header.function)
    return reasons


def cmd_info(cache: Cache, as_json: bool, progress_stream: IO[str] | None = None,
             again: str = "memojar") -> Report:
    """Totals for the cache."""
    reading = Progress(progress_stream, "memojar: reading entries")
    try:
        return _info_census(take_census(cache, reading.callback()), as_json,
                            _saved_stats(cache), again, _keeps_stats(cache))
    finally:
        reading.close()


def _info_census(census: Census, as_json: bool,
                 saved: dict[str, tuple[int, int, float]] | None = None,
                 again: str = "memojar", kept: bool = True) -> Report:
    now = time.time()
    hits = sum(h for h, _, _ in (saved or {}).values())
    misses = sum(m for _, m, _ in (saved or {}).values())
    seconds = sum(t for _, _, t in (saved or {}).values())
    oldest = min((s.oldest for s in census.functions.values() if s.oldest), default=None)
    newest = max((s.newest for s in census.functions.values() if s.newest), default=None)
    data = {
        # A path that is not UTF-8 as the text shows it, $'...\351': before, as Python
        # decoded it, a lone surrogate (a name that is nowhere, refused by strict readers)
        "directory": census.directory if _is_text(census.directory) else shown(
            census.directory),
        "entries": census.entries, "bytes": census.bytes,
        "functions": len(census.functions), "stale": census.stale,
        "incompatible": census.incompatible, "other_python": census.other_python,
        "unreadable": census.unreadable, "newer_format": census.newer_format,
        "oldest": iso(oldest), "newest": iso(newest),
        "hits": hits, "misses": misses, "saved": round(seconds, 6),
    }
    if not kept:
        data.update(hits=None, misses=None, saved=None)
    fields = [
        ("location", shown(census.directory)),
        ("entries", f"{census.entries:,}"),
        ("size", f"{human_size(census.bytes)} ({census.bytes:,} bytes)"),
        ("functions", f"{len(census.functions):,}"),
        ("stale", f"{census.stale:,}"),
        ("incompatible", f"{census.incompatible:,}"),
        ("other Python", f"{census.other_python:,}"),
        ("unreadable", f"{census.unreadable:,}"),
        ("hits", f"{hits:,} (misses {misses:,}, all processes)" if kept else "-"),
        ("time saved", human_time(seconds) if kept else "-"),
    ]
    if oldest is not None:
        fields += [("oldest", _ago(oldest, now, " ago")), ("newest", _ago(newest, now, " ago"))]
    notes = [] if kept else [_NOT_KEPT]
    if census.stale or census.incompatible or census.unreadable:
        notes.append(f"{_said(again, 'prune')} removes stale, incompatible and unreadable "
                     "entries")
    if census.other_python:
        notes.append("entries of other Python versions are kept for them; "
                     f"{_said(again, 'prune --other-pythons')} removes them")
    if census.newer_format:
        notes.append(_newer_note(census.newer_format, again))
    return Report(data=data, fields=fields, notes=notes, as_json=as_json)


def cmd_clear(
    cache: Cache,
    functions: Sequence[str],
    older_than: float | None,
    dry_run: bool,
    confirm: Callable[[str], bool] | None,
    progress_stream: IO[str] | None = None,
    again: str = "memojar",
) -> Report:
    """Remove the entries of ``functions`` (all when empty), optionally only old ones.

    ``confirm`` is asked before removing from every function; None means nobody can be
    asked, and the caller has already refused or been told ``--yes``.
    """
    if not _removable(cache):
        raise CliError(
            f"refusing to clear {shown(cache.directory)}: it is not a memojar cache (no "
            "CACHEDIR.TAG written by memojar), and memojar never deletes files it did not write"
        )
    # A name typed twice (``clear mod.f mod.f``, a shell glob and a name) is one function:
    # listed once. Before, the dry run, the question and the counter counted its entries
    # once a time it was typed ("would remove 2 entries" of one entry).
    functions = list(dict.fromkeys(functions))
    check_functions(cache, functions, again)
    cutoff = time.time() - older_than if older_than is not None else None
    heads = cutoff is not None or dry_run  # headers: to test ages, or to name functions
    scopes: list[str | None] = list(functions) or [None]
    scope = _older_than(older_than)
    total: int | None = None
    removing = Progress(progress_stream, "memojar: removing")
    asked = not functions and confirm is not None
    if dry_run or asked or removing.stream is not None:
        # Counted first, for the dry run, the question or the counter (``n/total``), and
        # removed as a second listing finds them. Before, every entry listed was held until
        # the last was removed: memory that grew with the cache.
        scanning = Progress(progress_stream, "memojar: listing entries")
        total = size = 0
        by_function: Counter[str] = Counter()
        # A figure the user reads (the dry run's, the question's) counts only what begins
        # as an entry where a listing by names holds others' objects too (an S3 prefix).
        # Before, the question counted them ("remove 3 entries?" of one entry and two of
        # another tool's objects, which the removal leaves). The counter's total needs
        # none: the removal's listing takes them as this one does.
        told = heads or (cache.store.names_shared and (dry_run or asked))
        try:
            for stored, function in _clearing(cache, scopes, told, cutoff):
                scanning.update(total)
                total += 1
                size += stored.size
                by_function[function] += 1
        except KeyboardInterrupt:
            raise Interrupted(0, exact=True) from None
        finally:
            scanning.close()
        what = f"{_plural(total, 'entry')}{scope} ({human_size(size)})"
        if not total:
            return Report(data={"removed": 0, "bytes": 0},
                          notes=[f"nothing to clear{scope}"])
        if dry_run:
            # Names as ``ls`` shows them (``shown``): before, raw, so a line break in a
            # name split its row in two, and a tab shifted the columns.
            rows = [[shown(name), f"{n:,}"] for name, n in sorted(by_function.items())]
            return Report(
                data={"would_remove": total, "bytes": size},
                table=Table(["FUNCTION", "ENTRIES"], rows, frozenset({1})),
                notes=[f"would remove {what} from {shown(cache.directory)} (dry run: nothing "
                       "removed)"],
            )
        question = f"remove {what} from {shown(cache.directory)}?"
        try:
            confirmed = not asked or confirm is None or confirm(question)
        except KeyboardInterrupt:  # Ctrl-C as the answer: said as a "no" is
            raise Interrupted(0, exact=True) from None
        if not confirmed:
            raise CliError("not confirmed: nothing removed")
    try:
        removed, freed = _remove(
            cache, (stored for stored, _ in _clearing(cache, scopes, heads, cutoff)),
            removing, total)
    finally:
        removing.close()
    if not removed and total is None:
        return Report(data={"removed": 0, "bytes": 0}, notes=[f"nothing to clear{scope}"])
    try:
        cache.store.cleanup()  # empty directories, and what crashed writers left
    except KeyboardInterrupt:  # every entry went: said so (before, "interrupted" alone)
        raise Interrupted(removed, freed, exact=True, done=True) from None
    return Report(data={"removed": removed, "bytes": freed},
                  notes=[f"removed {_plural(removed, 'entry')}{scope} ({human_size(freed)})"])


def _clearing(cache: Cache, scopes: Sequence[str | None], heads: bool,
              cutoff: float | None) -> Iterator[tuple[StoredEntry, str]]:
    """The entries ``clear`` removes, each with its function (its folder's name without
    ``heads``), as the listing finds them."""
    for name in scopes:
        for stored in cache.store.scan(name, heads=heads):
            function = stored.function_dir
            if heads:
                header = header_of(stored)
                if cutoff is not None and (header is None or header.created >= cutoff):
                    continue
                if header is not None:
                    function = header.function
            yield stored, function


def _older_than(older_than: float | None) -> str:
    """`` older than 1.5h``, as the user typed it (a ``Duration``), for the notes of clear."""
    if older_than is None:
        return ""
    typed = older_than if isinstance(older_than, Duration) else human_duration(older_than)
    return f" older than {typed}"


def _removable(cache: Cache) -> bool:
    """A store other than a directory (Redis) has only memojar's keys; a directory must be
    memojar's own."""
    root = getattr(cache.store, "root", None)
    return root is None or is_cache_dir(root)


def cmd_prune(cache: Cache, progress_stream: IO[str] | None = None,
              other_pythons: bool = False) -> Report:
    """``Cache.prune``, watched: on a terminal, a counter of entries checked and removed."""
    if not _removable(cache):
        raise CliError(
            f"refusing to prune {shown(cache.directory)}: it is not a memojar cache (no "
            "CACHEDIR.TAG written by memojar), and memojar never deletes files it did not write"
        )
    checking = Progress(progress_stream, "memojar: checking entries")
    removing = Progress(progress_stream, "memojar: removing")
    so_far = 0  # entries this process removed (not another first): for an interrupt

    def progress(stage: str, done: int, total: int | None) -> None:
        nonlocal so_far
        if stage != "checking":
            so_far = done
        if checking.stream is None:
            return
        if stage == "checking":
            checking.update(done)
        elif total is None:  # removed while entries are read: said on the checking line
            checking.suffix = f" ({done:,} removed)"
        else:
            checking.close()
            removing.update(done, total)

    try:
        # Cache.prune owns the rules; the command line only draws the counter it reports.
        removed, leftovers = cache._prune(other_pythons, progress)
    except KeyboardInterrupt:
        raise Interrupted(so_far) from None
    finally:
        checking.close()
        removing.close()
    left = cache.stats()
    what = _plural(removed, "entry")
    if leftovers:  # never entries: a user asks what else went, and why
        what += (f" and {_plural(leftovers, cache.store.leftover)} left by "
                 f"{'an interrupted write' if leftovers == 1 else 'interrupted writes'}")
    return Report(
        data={"removed": removed, "leftovers": leftovers, "entries": left.entries,
              "bytes": left.bytes},
        notes=[f"removed {what}; {_plural(left.entries, 'entry')} "
               f"({human_size(left.bytes)}) left in {shown(cache.directory)}"],
    )


def _home(path: str) -> str:
    """A path with the home directory as ``~``, for a narrow column."""
    home = os.path.expanduser("~")
    return "~" + path[len(home):] if path.startswith(home + os.sep) else path


def _newer_note(newer: int, again: str = "memojar") -> str:
    return (f"{_plural(newer, 'entry')} of a newer memojar's format, kept for "
            f"it ({_said(again, 'prune --other-pythons')} removes them)")


def _summary(census: Census) -> str:
    if not census.entries:
        return f"no entries in {shown(census.directory)}"
    return (f"{_plural(len(census.functions), 'function')}, {_plural(census.entries, 'entry')}, "
            f"{human_size(census.bytes)} in {shown(census.directory)}")


def _ago(timestamp: float | None, now: float, suffix: str = "") -> str:
    if timestamp is None:
        return "-"
    if timestamp > now + CLOCK_SKEW:  # written by a clock ahead of this one
        return f"{human_duration(timestamp - now)} ahead"
    return human_duration(now - timestamp) + suffix


def _expires(expires: float | None, now: float) -> str:
    if expires is None:
        return "never"
    if expires <= now:
        return "expired"
    return f"in {human_duration(expires - now)}"


def _plural(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    return f"{n:,} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


# --- running a command line -------------------------------------------------------------

def execute(
    argv: Sequence[str],
    *,
    prog: str = "memojar",
    confirm: Callable[[str], bool] | None = None,
    refusal: str = "stdin is not a terminal",
    progress_stream: IO[str] | None = None,
) -> Report:
    """Parse ``argv`` and run the command; raise ``CliError`` for anything to report.

    ``confirm`` asks before clearing every entry; without it such a clear is refused
    (status 2) with ``refusal`` as the reason. ``--help`` and ``--version`` print and raise
    ``SystemExit(0)``, as argparse does.
    """
    args = build_parser(prog).parse_args(_negative_durations(argv))
    if args.command is None:
        raise CliError(f"missing command: ls, info, clear or prune (see '{prog} --help')",
                       EXIT_USAGE)
    if args.dir is not None and not args.dir.strip():
        # Not the default cache: `memojar --dir "$CACHE" clear --yes` with $CACHE unset
        # would clear the wrong one.
        raise CliError(f"--dir is empty: pass a cache directory or URL, or leave --dir out "
                       f"for the default (see '{prog} --help')", EXIT_USAGE)
    if args.command == "clear":
        args.functions = [_as_typed(name) for name in args.functions]
    elif getattr(args, "function", None) is not None:
        args.function = _as_typed(args.function)
    named = args.functions if args.command == "clear" else [getattr(args, "function", None)]
    for name in named:
        if name is not None and not _is_text(name):  # an undecodable byte in argv
            raise CliError(f"FUNCTION {quoted(name)} is not a function's name (it holds a byte "
                           f"that is not valid text; a function so named is listed by its "
                           f"escaped name, '{encodable(name)}': see '{prog} ls')",
                           EXIT_USAGE)
    clears_all = (args.command == "clear" and not args.functions and not args.yes
                  and not args.dry_run)
    if not clears_all:
        confirm = None
    elif confirm is None:
        where = _named(args.dir)
        # Every function's entries older than a duration, when one is given (before,
        # "every entry" also for `clear --older-than 30d`, which keeps the newer ones).
        what = ("every entry" if args.older_than is None
                else f"every function's entries{_older_than(args.older_than)}")
        raise CliError(
            f"refusing to clear {what} in {where} without confirmation ({refusal}): "
            "pass --yes to clear them, or name the functions to clear", EXIT_USAGE,
        )
    report = _run(args, prog, confirm, progress_stream)
    report.removal = args.command == "prune" or (args.command == "clear" and not args.dry_run)
    return report


def _run(args: argparse.Namespace, prog: str, confirm: Callable[[str], bool] | None,
         progress_stream: IO[str] | None) -> Report:
    """``execute``'s command, run on the cache it names."""
    try:
        try:
            cache = open_cache(args.dir)
        except NoCacheYet as missing:
            return _nothing_cached(args, missing.path)
        again = _again(prog, args.dir, cache)
        try:
            if args.command == "ls":
                return cmd_ls(cache, args.function, args.json, progress_stream, again)
            if args.command == "info":
                return cmd_info(cache, args.json, progress_stream, again)
            if args.command == "clear":
                return cmd_clear(cache, args.functions, args.older_than, args.dry_run,
                                 confirm, progress_stream, again)
            return cmd_prune(cache, progress_stream, args.other_pythons)
        finally:
            cache.close()
    except OSError as exc:
        raise CliError(_os_error(exc)) from exc


def _again(prog: str, given: str | None, cache: Cache) -> str:
    """The command a hint suggests (``'memojar prune' removes them``), as it reaches this
    cache: where it runs (``%memojar`` in IPython) and, when ``--dir`` was given, with it
    (before, a hint after ``--dir /data/cache`` named the default cache's command, which
    a user copying it ran on the wrong cache). A URL's password stays out (``***``)."""
    if given is None:
        return prog
    quoted = shown(cache.directory)
    return f"{prog} --dir {shlex.quote(quoted) if quoted == cache.directory else quoted}"


def shown(path: str) -> str:
    """``path`` as every message shows it: as it is, unless it holds bytes that are not
    UTF-8 (a folder named in another encoding, which Python reads as lone surrogates) or
    characters a terminal does not print (a newline): then quoted as GNU ``ls`` shows such a
    name and a shell reads it back, ``$'/data/caf\\351'``. Before, stderr said
    ``/data/caf\\udce9``, a name that is nowhere (in the hints' commands too), and stdout
    wrote the raw byte, which a terminal shows as a replacement character that a copy does
    not give back."""
    if path.isprintable():  # (a lone surrogate is not)
        return path
    quoted = []
    try:
        text = os.fsencode(path).decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte decodes to (a caller's str, not argv)
        text = path
    for char in text:
        if char in "\\'":
            quoted.append("\\" + char)
        elif "\udc80" <= char <= "\udcff":  # a byte that is not UTF-8
            quoted.append(f"\\{ord(char) - 0xDC00:03o}")
        elif not char.isprintable():  # (before: UnicodeEncodeError for "\ud800")
            quoted.extend(f"\\{byte:03o}" for byte in char.encode("utf-8", "surrogatepass"))
        else:
            quoted.append(char)
    return "$'" + "".join(quoted) + "'"


def quoted(word: str) -> str:
    """A word typed on the command line (a function's name, a duration, a command), quoted
    in a message: as ``repr`` quotes it, unless ``shown`` would quote it (a byte that is not
    UTF-8, a line break): then as a shell reads it back, ``$'caf\\351'``. Before, as Python
    decoded it, ``'caf\\udce9'``, a word that is nowhere."""
    return repr(word) if word.isprintable() else shown(word)


def _said(again: str, words: str) -> str:
    """A command in a sentence: quoted, in double quotes if it holds a quoted ``--dir``."""
    command = f"{again} {words}"
    return f'"{command}"' if "'" in command else f"'{command}'"


def _as_typed(name: str) -> str:
    """A function's name as typed in a shell: its UTF-8 bytes, where argv was decoded by a
    locale without UTF-8 (``LC_ALL=C`` with ``PYTHONUTF8=0``, which made ``données`` a
    name with two undecodable bytes); as Python decoded it otherwise."""
    if _is_text(name):
        return name
    try:
        return os.fsencode(name).decode("utf-8")
    except UnicodeError:  # bytes that are no text at all, or a surrogate no byte decodes
        return name  # to (a caller's str, "\ud800"; before, "unexpected error"): said by it


def _is_text(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _nothing_cached(args: argparse.Namespace, path: str) -> Report:
    """What each command reports for a cache directory that does not exist yet: an empty
    cache (a cron job's clear must not fail on a fresh machine). Nothing is created."""
    fresh = f"no cache at {shown(path)} yet (nothing was cached there)"
    if args.command == "ls" and args.function:  # a lookup: a typo must not pass silently
        raise CliError(f"no entries for function {quoted(args.function)} in {shown(path)} "
                       f"({fresh})")
    census = Census(path)
    if args.command == "ls":
        report = _ls_census(census, args.json)
        report.notes = [fresh]
        return report
    if args.command == "info":
        report = _info_census(census, args.json)
        report.notes = [fresh]
        return report
    if args.command == "clear":  # named functions too: a cron job's clear on a fresh machine
        of = f" of {', '.join(map(quoted, args.functions))}" if args.functions else ""
        return Report(data={"removed": 0, "bytes": 0},
                      notes=[f"nothing to clear{of}{_older_than(args.older_than)}: {fresh}"])
    return Report(data={"removed": 0, "entries": 0, "bytes": 0},
                  notes=[f"nothing to prune: {fresh}"])


def _os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.filename is not None:
        name = shown(exc.filename) if isinstance(exc.filename, str) else exc.filename
        return f"{reason.lower() if reason[:1].isupper() else reason}: {name}"
    return reason


def _ask_on_terminal(question: str) -> bool:
    sys.stderr.write(f"memojar: {question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):  # Ctrl-D: the terminal did not end the prompt's line
        sys.stderr.write("\n")
        sys.stderr.flush()
    return answer.strip().lower() in ("y", "yes")


def main(argv: list[str] | None = None) -> int:
    """The ``memojar`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    confirm = _ask_on_terminal if _isatty(sys.stdin) else None
    terminated: list[int] = []
    try:
        with (warnings.catch_warnings(), _writing_what_it_cannot_encode(sys.stdout),
              _writing_what_it_cannot_encode(sys.stderr),
              _terminated_as_interrupted(terminated)):
            warnings.showwarning = _one_line_warning
            # memojar's warnings are lines of the report (what a listing could not read),
            # whatever the interpreter's filters (``-W error``): never a traceback.
            warnings.simplefilter("default", MemojarWarning)
            report = execute(argv, confirm=confirm, progress_stream=sys.stderr)
            try:
                _print_report(report)
            except BrokenPipeError:
                # The reader left (`memojar clear --yes | head -0`), which is fine; but what
                # a removal did is said, not lost with the pipe (before: not a word, the
                # entries gone). A report of what was only read is the reader's to leave.
                if report.removal:
                    print(f"memojar: {'; '.join(report.notes)} (not written to stdout: its "
                          "reader had left)", file=sys.stderr)
                raise
            except OSError as exc:  # a full disk, stdout closed: said with what was done
                done = "; ".join(report.notes)  # none for info: no colon announcing it
                # Or the rows of ``ls FUNCTION`` read back from its temporary file, which
                # failed (EIO): said as that, not as stdout's fault.
                said = (exc.strerror or str(exc) if isinstance(exc, Unreadable)
                        else f"cannot write to stdout ({exc.strerror or exc})")
                raise CliError(said + (f": {done}" if done else "")) from exc
    except CliError as exc:
        print(f"memojar: {one_line(str(exc))}", file=sys.stderr)
        return exc.status
    except SystemExit as exc:  # --help, --version: argparse printed them
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except KeyboardInterrupt as exc:
        said = f": {exc}" if isinstance(exc, Interrupted) else ""
        if terminated:  # by SIGTERM: said so, with the status a shell gives a TERM's end
            print(f"memojar: terminated{said}", file=sys.stderr)
            return 128 + terminated[0]
        print(f"\nmemojar: interrupted{said}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `memojar ls | head`: the reader left, which is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the contract: one line, never a traceback
        print(f"memojar: unexpected error: {type(exc).__name__}: {one_line(str(exc))} "
              "(please report it)", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _print_report(report: Report) -> None:
    out = sys.stdout
    if out is None:  # started with stdout closed (``>&-``)
        raise OSError(errno.EBADF, "it is closed")
    # Line by line as made: a listing of a million entries is never one string.
    for line in report.json_lines() if report.as_json else report.lines():
        out.write(line + "\n")
    out.flush()


def _unencodable(exc: UnicodeError) -> tuple[str | bytes, int]:
    """An encoding error handler for the report: a file name's undecodable bytes (lone
    surrogates) written as they are, as ``ls`` and ``find`` write them; any other character
    the output's encoding lacks (``données`` on ASCII) as a backslash escape."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    try:
        return codecs.lookup_error("surrogateescape")(exc)
    except UnicodeEncodeError:
        return codecs.backslashreplace_errors(exc)


codecs.register_error("memojar.report", _unencodable)


@contextlib.contextmanager
def _terminated_as_interrupted(terminated: list[int]) -> Iterator[None]:
    """SIGTERM (``kill``, ``timeout``, a container or a CI job stopped) ends a command as
    Ctrl-C does, saying what it had removed; ``terminated`` gets the signal's number. Before,
    the process died silently with status 143 in the middle of a clear or prune, and nobody
    could tell how many entries had gone. Only where TERM would have ended the process at
    once (its default action, in the main thread): a handler of the caller's stays."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _writing_what_it_cannot_encode(stream: Any) -> Iterator[None]:
    """``stream`` writing names and paths its encoding cannot hold (a function
    ``données.charger`` on ASCII, a folder named by bytes that are not UTF-8) by
    ``_unencodable``, not failing. Before: "unexpected error: UnicodeEncodeError",
    status 1, after ``clear`` and ``prune`` had removed their entries."""
    errors = getattr(stream, "errors", None)  # None: no stdout (closed), or not a text file
    if errors is None or not hasattr(stream, "reconfigure"):
        yield
        return
    stream.reconfigure(errors="memojar.report")
    try:
        yield
    finally:
        stream.reconfigure(errors=errors)


def _one_line_warning(message: Any, category: Any, filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
    print(f"memojar: warning: {one_line(str(message))}", file=sys.stderr)
