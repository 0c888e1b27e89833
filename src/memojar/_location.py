"""What every store does with its location: a ``file://`` URL read as the folder it names;
a remote store's options given in its query string checked as positive numbers, and the
URL redacted for messages."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://[^:@/]*):[^@/]*@", re.IGNORECASE)  # REDIS:// too


def redact(location: str) -> str:
    """The location without its password, for messages and ``Cache.directory``."""
    base, _, query = location.partition("?")
    base = _USERINFO.sub(r"\1:***@", base)  # s3:// too
    # and a URL's in an option (an s3:// cache's endpoint_url=http://user:password@host)
    # (ssl_password: a Redis URL's passphrase of the client's key, taken since 1e45ac4)
    pairs = [(k, "***" if k in ("password", "ssl_password") else _USERINFO.sub(r"\1:***@", v))
             for k, v in parse_qsl(query, keep_blank_values=True)]
    return f"{base}?{urlencode(pairs, safe='/:*')}" if pairs else base


def positive(
    name: str, given: float | None, in_url: str | None, default: float,
    kind: Callable[[Any], float], least: float = 0.0, why_least: str = "",
) -> float:
    """``given``, else ``in_url`` (the URL's option), as a positive number of ``kind``, or
    ``default`` if neither is; at least ``least`` (``why_least`` says why, in the error)."""
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
    if kind is float and not (math.isfinite(value) and value <= threading.TIMEOUT_MAX):
        # a duration a socket can wait: ``inf`` or 1e10 was taken, and every request then
        # failed at its socket's settimeout ("timestamp out of range for platform time_t"),
        # each call warning that the server had failed
        raise ValueError(
            f"{name} must be a finite number of seconds, at most {threading.TIMEOUT_MAX:.0f}"
            f" (about 292 years), got {given if given is not None else in_url!r}"
        )
    if value < least:
        # positive, but too small for anything to happen within it (``timeout=1e-300``:
        # taken, and every request timed out, each call warning that the server had failed)
        raise ValueError(
            f"{name} must be at least {least:g} seconds ({why_least}), got "
            f"{given if given is not None else in_url!r}"
        )
    return value


def file_path(location: str) -> str:
    """The directory a ``file://`` URL names (its scheme in any case, as every scheme's;
    ``file://localhost/path`` is ``/path``; ``%20`` a space, as ``Path.as_uri()`` writes it);
    any other location as it is. Before, ``FILE:///c`` and ``file://localhost/c`` were the
    local folders ``FILE:`` and ``localhost``, ``file:///tmp/my%20cache`` the folder
    ``my%20cache``, and ``file://server/c`` the folder ``server/c`` of the current directory.

    Raises ``ValueError`` for a URL naming another host, or no folder (``file://``)."""
    if location[:7].lower() != "file://":
        return location
    host, slash, path = location[7:].partition("/")
    if host.lower() not in ("", "localhost"):
        raise ValueError(
            f"cache location {location!r} names the host {host!r}: a file:// URL is a folder "
            f"of this machine, file:///path (three slashes) or file://localhost/path; for a "
            "share, mount it and pass its path")
    path = unquote(slash + path)
    # before: ``file://`` was the current directory (where ``Cache("")`` is refused), and
    # ``%00`` os.stat's "embedded null byte"
    if not path or "\0" in path:
        raise ValueError(
            f"cache location {location!r} names no folder: a file:// URL is file:///path "
            "(three slashes) or file://localhost/path")
    return path
