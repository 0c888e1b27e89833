"""What every remote store does with its location URL: options given in its query string
checked as positive numbers, and the URL redacted for messages."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode


def redact(location: str) -> str:
    """The location without its password, for messages and ``Cache.directory``."""
    base, _, query = location.partition("?")
    base = re.sub(r"^([a-z][a-z0-9+.-]*://[^:@/]*):[^@/]*@", r"\1:***@", base)  # s3:// too
    pairs = [(k, "***" if k == "password" else v)
             for k, v in parse_qsl(query, keep_blank_values=True)]
    return f"{base}?{urlencode(pairs, safe='/:*')}" if pairs else base


def positive(
    name: str, given: float | None, in_url: str | None, default: float,
    kind: Callable[[Any], float],
) -> float:
    if given is None and in_url is None:
        return default
    try:
        value = kind(given if given is not None else in_url)
    except (TypeError, ValueError):
        value = -1
    if not value > 0:
        raise ValueError(
            f"{name} must be a positive {'whole ' if kind is int else ''}number, "
            f"got {given if given is not None else in_url!r}"
        )
    return value
