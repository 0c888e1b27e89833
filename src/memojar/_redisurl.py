"""The Redis store's edges: its URL (memojar's options in the query string, the password
redacted for messages) and the one map from Redis errors to memojar's ``OSError``s."""

from __future__ import annotations

import errno
from urllib.parse import parse_qsl, urlencode

from redis.exceptions import AuthenticationError, OutOfMemoryError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._location import positive, redact

__all__ = ["OPTIONS", "oserror", "positive", "redact", "split_location"]

OPTIONS = ("prefix", "password", "socket_timeout", "chunk_size")


def oserror(exc: RedisError, doing: str, socket_timeout: float) -> OSError:
    """The ``OSError`` for a Redis error, the one place they are mapped: callers catch
    ``OSError`` alone."""
    if isinstance(exc, RedisTimeoutError):
        return TimeoutError(
            errno.ETIMEDOUT,
            f"no answer within socket_timeout={socket_timeout:g} s ({exc})",
        )
    if isinstance(exc, AuthenticationError):  # a ConnectionError too, but reached
        # Before, "cannot reach the server (HELLO must be called with the client already
        # authenticated, ...)" for a URL without the password a server wants.
        return ConnectionError(
            errno.ECONNREFUSED,
            f"the server refused the connection: no password or a wrong one ({exc}); give "
            "the password in the URL, redis://:PASSWORD@HOST, or as ?password=PASSWORD",
        )
    if isinstance(exc, RedisConnectionError):
        return ConnectionError(errno.ECONNREFUSED, f"cannot reach the server ({exc})")
    if isinstance(exc, OutOfMemoryError) or str(exc).startswith("OOM "):
        return OSError(
            errno.ENOSPC,
            f"the server is out of memory (maxmemory): {exc}; give it more memory, "
            "a maxmemory-policy that evicts, or set max_size",
        )
    return OSError(errno.EIO, f"{doing} failed: {type(exc).__name__}: {exc}")


def split_location(location: str) -> tuple[str, dict[str, str]]:
    """The URL for redis-py, and memojar's own options taken out of its query string."""
    base, _, query = location.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    options = {k: v for k, v in pairs if k in OPTIONS}
    rest = urlencode([(k, v) for k, v in pairs if k not in OPTIONS], safe="/:")
    return (f"{base}?{rest}" if rest else base), options
