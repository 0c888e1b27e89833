"""Reports for people: human sizes, ages and times, and tables as text or HTML.

The command line prints a ``Report`` as text; the ``%memojar`` magic returns it, and IPython
renders it as an HTML table in a notebook.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

_UTC = _dt.timezone.utc


# --- human formats ----------------------------------------------------------------------

def human_size(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; a size that rounds to 1024 of a unit in the next one (not
    ``"1024.0 KiB"``)."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if round(n, 1) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """A short duration in one unit: ``"45s"``, ``"12m"``, ``"3h"``, ``"5d"``, ``"8w"``."""
    seconds = max(seconds, 0.0)
    if round(seconds) < 60:  # 59.7 is "1m", not "60s"
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{max(seconds // 60, 1):.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h"
    if seconds < 14 * 86400:
        return f"{seconds // 86400:.0f}d"
    return f"{seconds // 604800:.0f}w"


def human_time(seconds: float) -> str:
    """A compute time: ``"120 ms"``, ``"3.2 s"``."""
    if round(seconds * 1000) < 1000:  # 0.9996 is "1.0 s", not "1000 ms"
        return f"{seconds * 1000:.0f} ms"
    if round(seconds, 1) < 100:
        return f"{seconds:.1f} s"
    return human_duration(seconds)


def utc(timestamp: float) -> _dt.datetime:
    """``timestamp`` as a UTC datetime: one past year 9999, or before year 1 (a header's
    expiry, or a time a clock far off or a crafted entry stamped), as the last or first
    there is."""
    try:
        return _dt.datetime.fromtimestamp(timestamp, _UTC)
    except (OverflowError, ValueError, OSError):
        return (_dt.datetime.max if timestamp > 0 else _dt.datetime.min).replace(tzinfo=_UTC)


def iso(timestamp: float | None) -> str | None:
    """ISO 8601 in UTC, as ``--json`` prints times."""
    return None if timestamp is None else utc(timestamp).isoformat()


def text_width(text: str) -> int:
    """The columns a terminal gives ``text``: two for an East Asian wide or full-width
    character (a function ``__main__.読み込み``, a notebook in ``~/データ``, an emoji), none for
    a combining mark. Tables pad their cells by it: before, by ``len``, and a row naming such
    a function pushed every column after the name out of line."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(0 if unicodedata.combining(char)
               else 2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


# --- reports ------------------------------------------------------------------------------

@dataclass
class Table:
    """Rows of strings under column names; ``right`` holds the right-aligned columns.

    ``rows`` may be any sized iterable that can be read more than once (a listing read
    back from a temporary file, ``memojar ls FUNCTION``): given ``widths`` (each column's,
    its name's included), the text is made as the rows are read, never held whole."""

    columns: list[str]
    rows: Collection[list[str]]
    right: frozenset[int] = frozenset()
    widths: list[int] | None = None


@dataclass
class Report:
    """What a command found: fields, a table, notes, and the data ``--json`` prints."""

    data: Any = None
    fields: list[tuple[str, str]] = field(default_factory=list)
    table: Table | None = None
    notes: list[str] = field(default_factory=list)
    as_json: bool = False
    # A report of a removal (clear, prune): its notes say what was removed, which the
    # command line says on stderr when stdout's reader left before it was written.
    removal: bool = False

    def text(self) -> str:
        return "\n".join(self.lines())

    def close(self) -> None:
        """Let go of what the rows are read back from (``ls FUNCTION``'s temporary file), at
        once: a report kept by an interrupted reading's traceback (a notebook keeps the last)
        kept its file open until the next error replaced it."""
        for rows in (self.data, self.table.rows if self.table is not None else None):
            close = getattr(rows, "close", None)
            if close is not None:
                close()

    def lines(self) -> Iterator[str]:
        """The lines of ``text``, made as they are read (the command line prints them so)."""
        if self.fields:
            width = max(len(k) for k, _ in self.fields)
            yield from (f"{k:<{width}}  {v}" for k, v in self.fields)
        if self.table is not None and self.table.rows:
            yield from _text_table(self.table)
        yield from self.notes

    def json_lines(self) -> Iterator[str]:
        """``json.dumps(self.data, indent=2)``, a list's items made and dumped one by one
        as they are read (``data`` as ``Table.rows`` can be: read back from a file)."""
        if isinstance(self.data, (dict, str, int, float, bool, type(None))):
            yield json.dumps(self.data, indent=2)
            return
        items = iter(self.data)
        first = next(items, _NONE)
        if first is _NONE:
            yield "[]"
            return
        yield "["
        for item in items:
            yield _indented(json.dumps(first, indent=2)) + ","
            first = item
        yield _indented(json.dumps(first, indent=2))
        yield "]"

    def html(self) -> str:
        parts = []
        if self.fields:
            rows = "".join(
                f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                for k, v in self.fields
            )
            parts.append(f"<table class='memojar'>{rows}</table>")
        if self.table is not None and self.table.rows:
            parts.append(_html_table(self.table))
        parts += [f"<p>{html.escape(note)}</p>" for note in self.notes]
        return "\n".join(parts)

    # IPython shows a Report returned by %memojar as HTML in a notebook, text elsewhere.
    def _repr_html_(self) -> str:
        return self.html()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())


_NONE = object()


def _indented(text: str) -> str:
    return "  " + text.replace("\n", "\n  ")


def _text_table(table: Table) -> Iterator[str]:
    widths = table.widths
    if widths is None:
        widths = [text_width(c) for c in table.columns]
        for row in table.rows:
            widths = [max(w, text_width(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            pad = " " * (w - text_width(cell))
            out.append(pad + cell if i in table.right else cell + pad)
        return "  ".join(out).rstrip()

    yield line(table.columns)
    yield from map(line, table.rows)


def _html_table(table: Table) -> str:
    def align(i: int) -> str:
        return "right" if i in table.right else "left"

    head = "".join(
        f"<th style='text-align:{align(i)}'>{html.escape(c)}</th>"
        for i, c in enumerate(table.columns)
    )
    body = "".join(
        "<tr>" + "".join(
            f"<td style='text-align:{align(i)}'>{html.escape(cell)}</td>"
            for i, cell in enumerate(row)
        ) + "</tr>"
        for row in table.rows
    )
    return f"<table class='memojar'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
