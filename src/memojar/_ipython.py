"""``%load_ext memojar``: the ``%memojar`` line magic, the command line inside IPython.

``%memojar ls|info|clear|prune`` takes the same options as the ``memojar`` command and acts
on the default cache directory (or ``--dir``). Reports are shown where the magic is typed (a
cell of several shows each), as HTML tables in a notebook and as text in a terminal; with
``--json`` the magic shows nothing and returns the data, so
``rows = %memojar ls --json`` gives a list of dicts. Clearing every entry needs ``--yes``:
a notebook cell is no place for an interactive prompt.
"""

from __future__ import annotations

import shlex
from typing import Any

from ._cli import CliError, execute


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%memojar`` (IPython calls this on ``%load_ext memojar``)."""
    ipython.register_magic_function(memojar_magic, magic_kind="line", magic_name="memojar")


def memojar_magic(line: str) -> Any:
    """%memojar ls|info|clear|prune [options]: see ``%memojar --help``."""
    from IPython.core.error import UsageError

    try:
        argv = shlex.split(_without_comment(line))
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"%memojar: {exc}") from None
    # This kernel's own counts, merged every few seconds otherwise: ``ls`` and ``info`` then
    # count the calls of the cells above too.
    from ._cache import flush_statistics

    flush_statistics()
    try:
        report = execute(argv, prog="%memojar", refusal="a notebook cannot confirm")
    except CliError as exc:
        raise UsageError(f"%memojar: {exc}") from None
    except SystemExit:  # --help or --version: argparse printed them
        return None
    try:
        if not report.as_json:
            # Shown where it is typed, as the command line prints it: before, the report was
            # the magic's value, shown only as a cell's last line (the README's block of
            # magics, as one cell, showed nothing).
            from IPython.display import display

            display(report)  # type: ignore[no-untyped-call]
            return None
        # ``ls FUNCTION``'s rows are read back from a temporary file: a list, for the notebook
        return report.data if isinstance(report.data, (dict, list)) else list(report.data)
    finally:
        # Its file closed now, not when the report goes: a reading interrupted (Ctrl-C in a
        # long listing) left the report to the notebook's last traceback, the file open.
        report.close()


def _without_comment(line: str) -> str:
    """``line`` before its comment, as the shell reads one: a ``#`` that starts a word,
    outside quotes (IPython hands a line magic its whole line, comment included; a
    ``#`` inside a word, quoted or escaped, is the word's: ``--dir a#b``)."""
    quote = ""
    escaped = in_word = False
    for at, char in enumerate(line):
        if escaped:
            escaped = False
        elif quote == "'":  # no escapes inside single quotes
            quote = "" if char == "'" else quote
        elif char == "\\":
            escaped = True
        elif quote:
            quote = "" if char == '"' else quote
        elif char in "'\"":
            quote = char
        elif char.isspace():
            in_word = False
            continue
        elif char == "#" and not in_word:
            return line[:at]
        in_word = True
    return line

