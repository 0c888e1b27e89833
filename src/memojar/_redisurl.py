"""The Redis store's edges: its URL (memojar's options in the query string, the password
redacted for messages) and the one map from Redis errors to memojar's ``OSError``s."""

from __future__ import annotations

import errno
import re
from urllib.parse import parse_qsl, urlencode

import redis.exceptions
from redis.exceptions import (
    AskError,
    AuthenticationError,
    ClusterCrossSlotError,
    ClusterError,
    NoPermissionError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._location import positive, redact
from ._redisconn import exhausted
from ._redisoptions import MEMOJARS

__all__ = ["OPTIONS", "oserror", "positive", "redact", "split_location"]

OPTIONS = MEMOJARS  # memojar's own; redis-py's it takes: ``_redisoptions``
# redis-py's OutOfMemoryError, from 4.6 on (before, the server's "OOM ..." reply is a
# plain ResponseError, told by its words in ``oserror``). Imported by name, a redis-py 4.5
# failed every import of the Redis store (the extra now asks for 5.0; one installed
# before still imports, and its other gaps show as faults, never as a failed import).
_OUT_OF_MEMORY: type[RedisError] | tuple[()] = getattr(
    redis.exceptions, "OutOfMemoryError", ())


# What redis-py puts before a pipeline's error ("Command # 2 (HSET <key> 2 <memory at
# 0x7f..>) of pipeline caused error: ") and what the server appends to an unknown command's
# ("with args beginning with: '<sha>' '5' '<key>' ..."): the keys and addresses of one call
_PIPELINE = re.compile(r"^Command # \d+ \(.*?\) of pipeline caused error: ", re.DOTALL)
_ARGS = re.compile(r",? with args beginning with:.*$", re.DOTALL)
_UNKNOWN = re.compile(r"unknown command [`']([^`']*)[`']", re.IGNORECASE)


def _said(exc: RedisError) -> str:
    """The server's error without what changes from call to call (keys, addresses), so that
    a fault repeated on every key reads the same each time: warned once (the warnings
    filter's default shows a message once per line), not once per key."""
    return _ARGS.sub("", _PIPELINE.sub("", str(exc))).strip()


def oserror(exc: RedisError, doing: str, socket_timeout: float, prefix: str = "",
            max_connections: int | None = None) -> OSError:
    """The ``OSError`` for a Redis error, the one place they are mapped: callers catch
    ``OSError`` alone. Its message names no key: the same fault on every key is the same
    message (before, a server out of memory, a disabled command or a user's missing
    permission warned once per key written, the key's name and redis-py's pipeline
    position in each message)."""
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
    if isinstance(exc, RedisConnectionError) and exhausted(exc):
        # not a ConnectionError: the server is not down, nor skipped by later calls
        return OSError(
            errno.EBUSY,
            f"{doing} failed: all {max_connections} connections this process may open to "
            f"the server (max_connections={max_connections} in the URL) stayed in use by "
            f"other calls for socket_timeout={socket_timeout:g} s; raise max_connections "
            "to the number of threads that call at once, or leave it out (memojar opens "
            "as many as there are calls under way)",
        )
    if isinstance(exc, RedisConnectionError):
        return ConnectionError(errno.ECONNREFUSED, f"cannot reach the server ({exc})")
    said = _said(exc)
    if isinstance(exc, _OUT_OF_MEMORY) or said.startswith("OOM "):
        return OSError(
            errno.ENOSPC,
            f"the server is out of memory (maxmemory): {said}; give it more memory, "
            "a maxmemory-policy that evicts, or set max_size",
        )
    if isinstance(exc, NoPermissionError):
        return PermissionError(
            errno.EACCES,
            f"{doing} failed: the server's ACL refuses this user: {said}; memojar's Redis "
            f"store needs the @read, @write and @scripting commands (EVALSHA, SCRIPT LOAD) "
            f"on every key beginning with {prefix!r}",
        )
    if isinstance(exc, (AskError, ClusterCrossSlotError, ClusterError, TryAgainError)) or (
        said.startswith(("MOVED ", "ASK ", "CROSSSLOT ", "CLUSTERDOWN ", "TRYAGAIN "))
    ):  # (MovedError is an AskError; its message, the slot and node, differs for each key)
        return OSError(
            errno.EIO,
            f"{doing} failed: the server is a node of a Redis Cluster "
            f"({type(exc).__name__}); memojar's Redis store needs a single server (or a "
            "primary with replicas): its scripts change an entry and its index together, "
            "keys of different slots",
        )
    unknown = _UNKNOWN.search(said) if isinstance(exc, ResponseError) else None
    if unknown is not None or "Unknown Redis command called from script" in said:
        what = (f"no command {unknown[1]!r}" if unknown is not None else
                "no command that one of memojar's Lua scripts calls")
        return OSError(
            errno.EIO,
            f"{doing} failed: the server has {what} (renamed or disabled by "
            "rename-command in its configuration?); memojar's Redis store needs the plain "
            "commands on strings, hashes, sets and sorted sets, SCAN, and EVAL, EVALSHA "
            "and SCRIPT for its Lua scripts",
        )
    return OSError(errno.EIO, f"{doing} failed: {type(exc).__name__}: {said}")


def split_location(location: str) -> tuple[str, dict[str, str]]:
    """The URL for redis-py, and memojar's own options taken out of its query string."""
    base, _, query = location.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    options = {k: v for k, v in pairs if k in OPTIONS}
    rest = urlencode([(k, v) for k, v in pairs if k not in OPTIONS], safe="/:")
    return (f"{base}?{rest}" if rest else base), options
