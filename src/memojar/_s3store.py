"""Entries in an S3-compatible object store, for a cache shared between machines.

Layout under ``s3://BUCKET/PREFIX`` (``<fdir>`` is the function's name made safe, as the
file store makes it)::

    PREFIX/<fdir>/<key>.pkl      one entry: the entry's bytes, written in one PUT (or one
                                 multipart upload above ``multipart_threshold``), so a
                                 reader sees the old object or the new one, never a part
    PREFIX/<fdir>/<key>.lease    the compute lease of a key: created only if absent
                                 (``If-None-Match: *``), renewed by rewriting it
                                 (``If-Match: <etag>``) while the value is computed
    PREFIX/<fdir>/.swept         the identity of the code that last swept old entries

``_Bucket`` holds the S3 calls and nothing else: get an object (streamed), a byte range of
it, put atomically (multipart above a threshold), put only if absent, put only if unchanged,
delete (sent again if a dropped connection lost its answer: ``_idempotent``), delete only if
unchanged (``delete_unchanged``: an object rewritten since it was read stays; of up to a
thousand at once, ``delete_unchanged_many``, where the server honours it), a paginated
listing with size and modification time, and ``_errors``, the one place that turns client
errors into ``OSError`` (and fails fast after a fault). ``S3Store`` maps
the ``Store`` primitives onto it; the policy (the unsigned-cache warning, whole headers for
``scan``, least-recently-written eviction for ``max_size``) is ``Store``'s. What is S3's own:
the entry and lease layout, the header-first read of a large entry, aborting orphaned
multipart uploads, the lease (``_Lease``, renewed by ``Renewer``), and removing only what
begins as an entry (``_unlink`` reads each object's first bytes: a name is no proof, as a
prefix may be shared, and removes it only if still the object read), which eviction's total
leaves out.

The lease is judged without trusting anyone's clock: a waiter that sees the same lease
(same ETag) for ``LEASE_TTL`` seconds of its own monotonic clock takes it over with a write
conditional on that ETag, so of several waiters exactly one wins; a holder renews every
``LEASE_RENEW`` seconds, each renewal a new ETag. A lease the server itself dates older than
``LEASE_STALE`` (a minute: its ``Last-Modified`` against its ``Date``, which may come from
another clock) is taken over at once. A holder
renews its lease once more just before it writes the entry: a lease lost while it stalled
(taken over) refuses the write (``ENOLCK``), so the late value is returned, not stored. The
write itself is conditional on the entry the holder saw under its lease (``If-None-Match``,
``If-Match``): one frozen after that renewal, within its upload, finds the newer holder's
entry when it resumes, and is refused the same way.
Waiters read the entry before each look at the lease (``_due``: at the lease's backoff), so
once it is stored they have it without taking the lease in turn.

S3 keeps no access times: ``max_size`` evicts the least recently *written* entries.
``ttl`` is checked from the header on every read; a bucket lifecycle rule that expires
objects after some days is a fine complement (it only removes, and a removed entry is a miss).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import email.utils
import errno
import functools
import os
import queue
import re
import secrets
import ssl
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import boto3  # noqa: F401 - the s3 extra (its botocore makes the clients)
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.handlers
import botocore.loaders
import botocore.session
import urllib3.exceptions
import urllib3.util
import xxhash
from urllib3._collections import RecentlyUsedContainer

from . import _ledger
from ._entry import written_as_an_entry
from ._errors import (
    UnknownOption,
    in_a_signal_handler,
    logger,
    raise_the_callers_within,
    the_callers,
    unlink_map_frame,
    warn,
)
from ._filestore import function_dir
from ._location import positive, redact
from ._store import (
    CONFIRM_SHARE,
    HEAD_BYTES,
    LEFTOVER_RETRY,
    WAIT_ID_BITS,
    Breaker,
    KeyLock,
    Removal,
    Renewer,
    Store,
    StoredEntry,
    lease_lost,
    pieces,
    worth_reading,
)

SUFFIX = ".pkl"  # of an entry's object name
LEASE_SUFFIX = ".lease"
NOTE = ".swept"
NOTE_MAX = 64 << 10  # bytes of a note read (one is 64 lines of about 50 bytes at most)
LEASE_MAX = 1 << 10  # bytes of a lease read (its holding's token, a nonce and a pid)
DEFAULT_TIMEOUT = 5.0  # seconds: no request waits longer than this for the server
# seconds: the least ``timeout`` taken (no server answers a request sooner; ``1e-300`` was
# taken, and every request timed out, each call warning that the server had failed)
MIN_TIMEOUT = 0.001
DEFAULT_MULTIPART_THRESHOLD = 16 << 20  # entries above this go up as a multipart upload
PART_SIZE = 8 << 20  # bytes a part (S3's minimum is 5 MiB, except the last part)
MAX_PARTS = 10_000  # parts an upload takes at most: a larger entry has larger parts
HEADER_FIRST = 1 << 20  # a hit on a larger entry checks its header before reading on
READ_CHUNK = 1 << 20  # bytes read from a streamed body at a time
BODY_PIECE = 64 << 10  # each this many bytes of a body must arrive within ``timeout``
LEASE_TTL = 5.0  # seconds a lease outlives its holder's last renewal
LEASE_RENEW = 1.0  # seconds between renewals of held leases
# seconds: a lease the server dates older than this (its answer's Date against the lease's
# Last-Modified) is taken over at once. Far above LEASE_TTL: a Date from another clock than
# the objects' (a proxy, another node of the server) must not make a live lease look dead.
LEASE_STALE = 60.0
# Looks by its holding's token a lease request refused each time makes at most (``_Lease.
# _rewrites``): renewals made at once by the holder and the renewer, or begun before a
# release, write the lease at most twice each (and renewals accept a write since their
# first look); a server whose ETags change at every look is left to the lease's expiry.
LEASE_LOOKS = 4
LEASE_POLL_MIN = 0.02  # seconds, the first wait between tries of a held lease
LEASE_POLL_MAX = 0.5  # seconds, the longest wait between tries (backoff doubles up to it)
LEFT_MAX = 1024  # leases released and left behind (no s3:DeleteObject) a store remembers
_NO_ETAG = '"' + "0" * 32 + '"'  # an ETag no object has (conditions that never hold)
ORPHAN_AGE = 3600.0  # ``cleanup`` aborts multipart uploads older than this
# bytes read of an object at an entry's name to tell whether memojar wrote it (the magic)
ENTRY_SNIFF = 16
UNLINK_THREADS = 8  # objects checked at a time by a removal (below the client's 10 connections)
DELETE_MANY = 1000  # objects a multi-object delete (DeleteObjects) removes at most (S3's limit)
BATCH_RECHECK = 600.0  # seconds a store's answer to whether those deletes honour ETags holds
# a key's error in a DeleteObjects answer that says to try again (S3 answers some keys so)
_RETRIED = frozenset({"InternalError", "SlowDown", "ServiceUnavailable", "500", "503"})
FAULT_BACKOFF = 1.0  # seconds of failing fast after a connection fault
_ENTRY = re.compile(r"([^/]+)/([0-9a-f]{32})" + re.escape(SUFFIX))
_LEASE = re.compile(r"[^/]+/[0-9a-f]{32}" + re.escape(LEASE_SUFFIX))  # after the prefix
NOTE_INFIX = ".w."  # ``<lease>.w.<token>``: a wait for the lease (``_Lease.note_waiting``)
_NOTE = re.compile(r"[^/]+/[0-9a-f]{32}" + re.escape(LEASE_SUFFIX + NOTE_INFIX) + "[0-9a-f]{16}")
# What memojar writes in a lease (``_Lease._put``: its holding's token, a nonce, the pid; an
# older memojar's, the token and the pid) and in a wait for one (``_WaitNote._write``: the
# ids behind the wait): an object named as one that holds anything else is someone else's.
_LEASE_BODY = re.compile(rb"(?:[0-9a-f]{32})?(?: [0-9a-f]{16})? pid [0-9]+\n")
# What memojar writes in a sweep note (``_Memo.sweep``: lines of a group and a digest)
_SWEPT_BODY = re.compile(rb"[0-9a-f]{16} [0-9a-f]{16}(?:\n[0-9a-f]{16} [0-9a-f]{16})*")
_NOTE_BODY = re.compile(rb"(?:[0-9a-f]{8}(?: [0-9a-f]{8})*)?\n")
_OPTIONS = ("endpoint_url", "region", "timeout", "multipart_threshold")
_BUCKET = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")  # botocore's rule (AWS's is stricter)
KEY_MAX = 1024  # bytes of an object's name (UTF-8) S3 takes at most
# bytes of the longest name memojar gives an object under the prefix: a wait for a lease,
# ``<fdir>/<32 hex>.lease.w.<16 hex>``, in the longest function folder ``function_dir`` makes
_LONGEST_NAME = (len(function_dir("x" * 1000)) + len("/") + 32
                 + len(LEASE_SUFFIX + NOTE_INFIX) + 16)
# characters no request can carry in a key, secret or token: C0 controls and DEL (a newline
# read with the key from a file). http.client refused a newline in the headers at every
# request ("Invalid header value"), blamed on the server; the others were sent, refused
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# What to do about credentials the server refused, by its error code: the refusal alone
# ("InvalidAccessKeyId ...") does not say where the credentials came from.
_WHERE = ("they come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else AWS_PROFILE and "
          "~/.aws, else the instance's or container's role")
_CREDENTIAL_ADVICE = {
    "InvalidAccessKeyId": f"the server knows no such access key: check the credentials; {_WHERE}",
    "SignatureDoesNotMatch": "the secret key does not match the access key (or a proxy "
                             f"changes the request): check the credentials; {_WHERE}",
    "ExpiredToken": "the session's credentials have expired: renew them (aws sso login, or "
                    "new temporary keys), or unset an old AWS_SESSION_TOKEN",
    "InvalidToken": "the session token is not valid: renew the credentials, or unset an "
                    "old AWS_SESSION_TOKEN",
    "TokenRefreshRequired": "the session's credentials must be renewed (aws sso login, or "
                            "new temporary keys)",
}
_ACCESS_ADVICE = ("these credentials may not do this: the cache needs s3:GetObject, "
                  "s3:PutObject, s3:DeleteObject and s3:ListBucket under its prefix, "
                  "s3:AbortMultipartUpload and s3:ListBucketMultipartUploads for prune")


class _Listed(NamedTuple):
    name: str  # the object's full name in the bucket
    size: int
    modified: float  # seconds since the epoch
    age: float  # seconds since it was modified, by the server's clock (its listing's Date)
    etag: str = ""


class _Got(NamedTuple):
    """A streamed object: its body (read it, then close it) and what the server said."""

    body: Any
    size: int  # -1: not said (an answer without Content-Length)
    etag: str
    age: float  # seconds between its Last-Modified and the response's Date, by the server


# --- the primitives ----------------------------------------------------------------------

_live: weakref.WeakSet[_Bucket] = weakref.WeakSet()  # buckets whose clients a fork resets

def _prober(ref: weakref.ref[_Bucket]) -> Callable[[], None]:
    """The look that tells whether the bucket's server is up again: a HEAD of the bucket,
    which it answers, if only with a refusal (403 without ``s3:ListBucket``; 404). The
    bucket held weakly: a store dropped while its server is down goes, with its prober."""

    def probe() -> None:
        bucket = ref()
        if bucket is None:
            return
        try:
            bucket.client.head_bucket(Bucket=bucket.bucket)
        except botocore.exceptions.ClientError:  # an answer
            pass

    return probe


class _Bucket:
    """The backend primitives over one bucket; every method raises only ``OSError``.

    A missing object is ``FileNotFoundError`` (``get`` and ``head`` return None instead),
    a failed condition ``FileExistsError``.
    """

    def __init__(self, bucket: str, make_client: Callable[[], Any], timeout: float,
                 threshold: int, make_checker: Callable[[], Any] | None = None,
                 owned: bool = True) -> None:
        self.bucket = bucket
        self._make_client = make_client
        self._owned = owned  # the clients are made here (``close`` closes them)
        self._client: Any = None
        # the client of the look at an entry whose write timed out (``starts_with``), whose
        # requests wait ``CONFIRM_SHARE`` of ``timeout``; made at first use (none: ``client``)
        self._make_checker = make_checker
        self._checker: Any = None
        # this thread's last write sent and not answered, for the look that follows
        # (``starts_with``): its object name and the multipart upload id ("": one PUT)
        self._unanswered = threading.local()
        _live.add(self)
        self.timeout = timeout
        self.threshold = threshold
        # Fail fast after a fault, until the server answers a look at the bucket (tried
        # every FAULT_BACKOFF s by a thread). Before, for FAULT_BACKOFF only: a server frozen
        # before a call that computed longer than that cost the call a timeout at its read
        # and another at its write.
        self._breaker = Breaker(f"s3://{bucket}", FAULT_BACKOFF, _prober(weakref.ref(self)),
                                "memojar-s3-probe")
        # runs a job now and, while it returns False, again soon in another thread (the
        # store's ``Renewer.attempt``); a bucket without a store runs it once
        self.attempt: Callable[[Callable[[], bool], float], object] = lambda job, _: job()

    @property
    def client(self) -> Any:
        """The client, made at first use and again in a forked child (whose parent's
        connections it must not share)."""
        client = self._client
        if client is None:
            client = self._client = self._made(self._make_client)
        return client

    @property
    def checker(self) -> Any:
        """The client of ``starts_with`` after a timeout (made at first use, and again in
        a forked child)."""
        if self._make_checker is None:
            return self.client
        checker = self._checker
        if checker is None:
            checker = self._checker = self._made(self._make_checker)
        return checker

    def _made(self, make: Callable[[], Any]) -> Any:
        """A client from ``make``, or the ``OSError`` that says why not: one made during a
        call (the checker, or the client of a forked child) runs the AWS configuration's
        credential sources again, and what they raise (botocore's error, a credential
        process's odd output, a program gone) is a fault of the store, not the call's."""
        try:
            return make()
        except (botocore.exceptions.BotoCoreError, *_SOURCE_FAULTS) as exc:
            if the_callers(exc):  # a signal handler's (its TimeoutError, a Timeout of its own)
                raise
            raise OSError(errno.EIO, f"making the S3 client of bucket {self.bucket!r}: "
                          f"{type(exc).__name__}: {exc}") from exc

    def _forked(self) -> None:
        self._client = self._checker = None

    def close(self) -> None:
        """Close the connections the clients pool (``S3Store.close``), if this bucket made
        them (a client given by the user is theirs). Requests under way finish, their
        connections closed after; a later request connects again."""
        self._breaker.close()
        if not self._owned:
            return
        for client in (self._client, self._checker):
            if client is not None:
                _close_connections(client)

    @property
    def failing(self) -> bool:
        """Whether requests fail fast now (after a fault, until the server answers)."""
        return self._breaker.down

    @contextlib.contextmanager
    def _errors(self, doing: str, name: str = "", again: bool = False) -> Iterator[None]:
        """The one error map: every client error becomes the ``OSError`` that says it.

        A connection dropped once the request was sent (``ConnectionClosedError``: the
        server may have carried it out, its answer lost) is ``ConnectionResetError``.
        ``again``: the one request that follows such a drop, to learn what the server did
        (``Store.write``'s look at the entry) or to send it again (``_idempotent``), is
        made although the store fails fast after the fault; answered, the server is up."""
        if not again:
            self._breaker.check()
        where = f"s3://{self.bucket}/{name}" if name else f"bucket {self.bucket!r}"
        # A fault of the whole bucket (none, no credentials) or of a function's folder (a
        # policy) names that, not the entry: the warning a call gives then reads the same at
        # every call of a line, and Python shows it once (before, a loop of calls on a
        # bucket not made yet gave one warning a call, each naming its own key).
        bucket = f"bucket {self.bucket!r}"
        folder = f"s3://{self.bucket}/{name.rpartition('/')[0]}/" if "/" in name else where
        handled = sys.exc_info()[1]  # the caller's, if any (``callers_within``)
        try:
            try:
                yield
            except Exception as exc:
                # Out of the traceback of the client's error at once, for every branch below
                # (a bare ``raise`` keeps the traceback as it is, since 3.11; the cycle is
                # 3.12's and later's): ``unlink_map_frame``
                unlink_map_frame(exc)
                # a signal handler's, in a socket call (urllib3 made its TimeoutError a
                # ReadTimeoutError): the caller's own, not the server's fault (before, a
                # miss and a warning)
                raise_the_callers_within(exc, handled)
                raise
        except botocore.exceptions.ClientError as exc:
            if again:
                self._breaker.answered()
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            said = f"{code or status} {error.get('Message', '')}".strip()
            message = f"{doing} {where}: {said}"
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(errno.ENOENT, message) from exc
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise FileExistsError(errno.EEXIST, message) from exc
            if code == "NoSuchBucket":
                raise FileNotFoundError(
                    errno.ENOENT, f"{doing} {bucket}: {said} (memojar never creates buckets: "
                    "create it)"
                ) from exc
            advice = _CREDENTIAL_ADVICE.get(code)
            if advice is not None:
                raise PermissionError(errno.EACCES, f"{doing} {bucket}: {said} ({advice})") from exc
            if code in ("AccessDenied", "403"):
                raise PermissionError(
                    errno.EACCES, f"{doing} {folder}: {said} ({_ACCESS_ADVICE})") from exc
            if status in (301, 302, 307, 308):  # (a proxy's; S3's names the region)
                raise OSError(errno.EIO, f"{doing} {where}: the server answered with a "
                              f"redirect ({status}), not with S3's answer: is the "
                              "endpoint_url right (https://?), and the region?") from exc
            if code in ("SlowDown", "503", "ServiceUnavailable", "RequestTimeout"):
                raise OSError(errno.EAGAIN, f"{message} (the server asks to slow down)") from exc
            raise OSError(errno.EIO, message) from exc
        except (botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError,
                urllib3.exceptions.ReadTimeoutError) as exc:
            self._fault(exc)
            raise TimeoutError(
                errno.ETIMEDOUT, f"{doing} {where}: no answer within timeout="
                f"{self.timeout:g} s ({exc})"
            ) from exc
        except botocore.exceptions.ConnectionClosedError as exc:
            self._fault(exc)
            raise ConnectionResetError(  # (exc, in the chain, repeats the URL)
                errno.ECONNRESET, f"{doing} {where}: the connection dropped before the "
                "server answered (it may have done it)"
            ) from exc
        except (botocore.exceptions.EndpointConnectionError,
                urllib3.exceptions.ProtocolError) as exc:  # urllib3's: a body read by _fill
            self._fault(exc)
            raise ConnectionError(
                errno.ECONNREFUSED, f"{doing} {where}: cannot reach the server ({exc})"
            ) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise PermissionError(
                errno.EACCES, f"{doing} {bucket}: no AWS credentials (set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            ) from exc
        except botocore.exceptions.CredentialRetrievalError as exc:
            raise PermissionError(
                errno.EACCES, f"{doing} {bucket}: cannot get AWS credentials ({exc})") from exc
        except KeyError as exc:  # an answer without a field S3's always has (a proxy's)
            raise OSError(errno.EIO, f"{doing} {where}: the server's answer has no {exc} "
                          "(is a proxy changing it?)") from exc
        except (botocore.exceptions.BotoCoreError, urllib3.exceptions.HTTPError,
                ValueError) as exc:
            # other client faults (a broken stream, a bad response); ValueError: urllib3's
            # read of a connection that broke mid-body
            self._fault(exc)
            raise OSError(errno.EIO, f"{doing} {where}: {type(exc).__name__}: {exc}") from exc
        if again:
            self._breaker.answered()

    def _fault(self, exc: BaseException) -> None:
        """After a lost or silent server, fail fast for a moment instead of waiting again."""
        self._breaker.trip(ConnectionError(
            errno.ECONNREFUSED, f"the server failed a moment ago ({type(exc).__name__}: "
            f"{exc}); calls skip the server until it answers again",
        ))

    def get(self, name: str, start: int = 0, end: int | None = None) -> _Got | None:
        """The object streamed (or its bytes ``start`` to ``end``: a ranged GET), or None."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": name}
        if end is not None:
            kwargs["Range"] = f"bytes={start}-{end - 1}"
        try:
            with self._errors("reading", name):
                response = self.client.get_object(**kwargs)
        except FileNotFoundError:
            return None
        got = _Got(response["Body"], _length(response), response.get("ETag", ""),
                   _age(response))
        if end is not None and got.size > end - start:
            # The whole object (a server ignoring Range), perhaps saying it is 2**62 bytes
            # long: read as far as asked (from its start), never all of it into memory
            if start == 0:
                return got._replace(size=end)
            got.body.close()
            raise OSError(errno.EIO, f"reading s3://{self.bucket}/{name}: bytes {start} to "
                          f"{end} asked, {got.size:,} said (the server ignores Range)")
        return got

    def read_body(self, name: str, got: _Got, into: bytearray | None = None,
                  at: int = 0) -> bytearray:
        """The rest of a streamed body: into ``into`` from ``at`` (chunk by chunk, so that
        a large entry is never held twice), or the whole body into a new buffer."""
        with self._errors("reading", name):
            try:
                if into is None:
                    if got.size < 0:  # no Content-Length (a proxy's chunked answer)
                        return self._drain(name, got)
                    into = bytearray(got.size)
                self._fill(name, got, into, at)
                return into
            finally:
                got.body.close()

    def read_some(self, name: str, got: _Got, size: int) -> bytes:
        """The next ``size`` bytes of a streamed body (it has at least that many); the
        stream stays open."""
        with self._errors("reading", name):
            try:
                head = bytearray(size)
                self._fill(name, got, head, 0)
                return bytes(head)  # a header's few KiB
            except BaseException:
                got.body.close()
                raise

    def _fill(self, name: str, got: _Got, into: bytearray, at: int) -> None:
        """Read the body into ``into[at:]``, each ``BODY_PIECE`` of it within ``timeout``.

        The client's read timeout bounds each wait for a packet, not a body: a server (or a
        proxy, or a link) that sends a few bytes at a time, each within the timeout, would
        hold the call for as long as it likes. The time is checked as the body comes
        (``_read1``)."""
        read = _read1(got)
        end = len(into)
        piece_end, deadline = at, 0.0
        with memoryview(into) as view:
            while at < end:
                if at >= piece_end:  # a new piece: its own deadline
                    piece_end, deadline = at + BODY_PIECE, time.monotonic() + self.timeout
                piece = read(min(READ_CHUNK, end - at))
                if not piece:
                    raise OSError(errno.EIO, f"short read: {at} of {end} bytes")
                view[at : at + len(piece)] = piece
                at += len(piece)
                if at < min(piece_end, end) and time.monotonic() > deadline:
                    raise self._too_slow(name, f"{at:,} of {end:,} bytes")

    def _drain(self, name: str, got: _Got) -> bytearray:
        """A body of unknown length, read to its end (each ``BODY_PIECE`` within
        ``timeout``, as ``_fill``)."""
        read = _read1(got)
        data = bytearray()
        mark, deadline = 0, time.monotonic() + self.timeout
        while piece := read(READ_CHUNK):
            data += piece
            if len(data) - mark >= BODY_PIECE:
                mark, deadline = len(data), time.monotonic() + self.timeout
            elif time.monotonic() > deadline:
                raise self._too_slow(name, f"{len(data):,} bytes")
        return data

    def _too_slow(self, name: str, got: str) -> TimeoutError:
        exc = TimeoutError(
            errno.ETIMEDOUT, f"reading s3://{self.bucket}/{name}: the server sent less than "
            f"{BODY_PIECE >> 10} KiB within timeout={self.timeout:g} s ({got}); given up"
        )
        self._fault(exc)
        return exc

    def head(self, name: str) -> _Got | None:
        """The object's size, ETag and age without its body, or None."""
        try:
            with self._errors("reading", name):
                response = self.client.head_object(Bucket=self.bucket, Key=name)
        except FileNotFoundError:
            return None
        return _Got(None, _length(response), response.get("ETag", ""), _age(response))

    def put(self, name: str, views: Sequence[memoryview], size: int,
            if_none_match: bool = False, if_match: str | None = None) -> str:
        """Store the object made of ``views`` atomically; return its ETag.

        ``if_none_match``: only if there is no such object (else ``FileExistsError``);
        ``if_match``: only if the object still has that ETag. Above ``threshold`` bytes the
        object goes up as a multipart upload, visible only when completed.
        """
        conditions: dict[str, str] = {}
        if if_none_match:
            conditions["IfNoneMatch"] = "*"
        if if_match is not None:
            conditions["IfMatch"] = if_match
        if size > self.threshold:
            return self._put_multipart(name, views, size, conditions)
        body = b"".join(views)  # one copy: the client needs bytes it can sign and resend
        self._unanswered.upload = None
        try:
            with self._errors("writing", name):
                response = self.client.put_object(Bucket=self.bucket, Key=name, Body=body,
                                                  **conditions)
        except (ConnectionResetError, TimeoutError) as exc:
            if exc.errno is not None:  # sent, unanswered: the server may still store it
                self._unanswered.upload = (name, "")
            raise
        return str(response.get("ETag", ""))

    def _put_multipart(self, name: str, views: Sequence[memoryview], size: int,
                       conditions: dict[str, str]) -> str:
        # Known to the ``except`` as soon as the reply is read: an interrupt (KeyboardInterrupt,
        # a signal handler's exception) anywhere later aborts the upload. One instant is
        # left, between the server's reply and its id stored here: that upload stays, without
        # any object, until ``cleanup`` aborts it (ORPHAN_AGE) or a bucket lifecycle rule.
        upload_id = ""
        self._unanswered.upload = None
        try:
            with self._errors("writing", name):
                upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)[
                    "UploadId"]
            parts = []
            # Parts of PART_SIZE, or as many larger ones as S3 takes: before, an entry over
            # 10,000 parts of 8 MiB (78 GiB) was uploaded up to its 10,001st part and
            # refused, at every call (returned, not cached).
            part = max(PART_SIZE, -(-size // MAX_PARTS))
            for number, piece in enumerate(pieces(views, part), 1):
                with self._errors("writing", name):
                    etag = self.client.upload_part(
                        Bucket=self.bucket, Key=name, UploadId=upload_id,
                        PartNumber=number, Body=bytes(piece),
                    )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
            try:
                with self._errors("writing", name):
                    response = self.client.complete_multipart_upload(
                        Bucket=self.bucket, Key=name, UploadId=upload_id,
                        MultipartUpload={"Parts": parts}, **conditions,
                    )
            except (ConnectionResetError, TimeoutError) as exc:
                if exc.errno is not None:  # sent, unanswered: the look fences it first
                    self._unanswered.upload = (name, upload_id)
                raise
            return str(response.get("ETag", ""))
        except BaseException:
            if upload_id:
                self.attempt(functools.partial(self.abort, name, upload_id), LEFTOVER_RETRY)
            raise

    def abort(self, name: str, upload_id: str) -> bool:
        """Drop an unfinished multipart upload; quietly (``cleanup`` reaps what remains).

        False after a connection fault or a timeout (a part whose reply was lost: the
        bucket then fails fast for a moment): it is to be tried again (``attempt``, for
        ``LEFTOVER_RETRY``)."""
        try:
            with self._errors("aborting an upload of", name):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name,
                                                   UploadId=upload_id)
        except (ConnectionError, TimeoutError) as exc:
            logger.debug("cannot abort upload %s now: %s", upload_id, exc)
            return False
        except OSError as exc:
            logger.debug("cannot abort upload %s: %s", upload_id, exc)
        return True

    def delete(self, name: str, if_match: str | None = None) -> None:
        """Remove an object (S3 says nothing of whether there was one)."""
        if if_match is None:  # the same again does the same: sent again if its answer is lost
            self._idempotent("removing", name, "delete_object", Key=name)
            return
        with self._errors("removing", name):
            self.client.delete_object(Bucket=self.bucket, Key=name, IfMatch=if_match)

    def delete_unchanged(self, name: str, etag: str) -> bool:
        """Remove the object only if it still has ``etag`` (``If-Match``): True if removed,
        False if it is gone or another object now (written since). Sent again at once if
        the connection dropped before the answer: gone then, the first removed it. A server
        that refuses conditional deletes (on AWS since 2025; missing from some compatibles)
        gets a look at the ETag and a plain delete; one that ignores them, a plain delete."""
        if not etag:  # (a server that gives no ETags)
            self.delete(name)
            return True
        again = False
        while True:
            try:
                with self._errors("removing", name, again=again):
                    self.client.delete_object(Bucket=self.bucket, Key=name, IfMatch=etag)
                return True
            except ConnectionResetError as exc:
                if again:
                    raise
                logger.debug("%s: sending it again", exc)
                again = True
            except FileNotFoundError:
                return again
            except FileExistsError:
                return False
            except (ConnectionError, TimeoutError, PermissionError):
                raise
            except OSError as exc:
                logger.debug("conditional delete of %s refused (%s)", name, exc)
                got = self.head(name)
                if got is None or got.etag != etag:
                    return False
                self.delete(name)
                return True

    def delete_unchanged_many(self, objects: Sequence[tuple[str, str]],
                              denied: list[tuple[str, OSError]] | None = None) -> set[str]:
        """Remove each object ``(name, etag)`` only if it still has that ETag, up to
        ``DELETE_MANY`` in one request (``DeleteObjects``, each key with its ETag): the
        names removed. Only for a server that honours those ETags (``S3Store._batches``
        asks it once); one that ignores them removes the objects whatever they are now.

        Sent again at once if the connection dropped before the answer: an object gone
        then was removed by the first. An object refused is not removed: written since
        (its ETag), gone, or this object's own refusal (a legal hold, no s3:DeleteObject:
        ``AccessDenied``, added to ``denied``); any other refusal of one key is raised as
        ``_errors`` maps it."""
        request = {"Objects": [{"Key": name, "ETag": etag} for name, etag in objects],
                   "Quiet": False}
        where = f"{objects[0][0].rpartition('/')[0]}/"  # (a function's folder)
        response, again = self._sent("removing objects in", where, "delete_objects",
                                     Delete=request)
        removed = {str(done["Key"]) for done in response.get("Deleted", [])}
        etags = dict(objects)
        for refused in response.get("Errors", []):
            name = str(refused.get("Key", ""))
            if name not in etags:
                continue  # (no key of this request's)
            if str(refused.get("Code", "")) not in _RETRIED:
                try:
                    with self._errors("removing", name, again=True):  # (answered)
                        raise botocore.exceptions.ClientError({"Error": refused},
                                                              "DeleteObjects")
                except FileNotFoundError:
                    if again:
                        removed.add(name)
                    continue
                except FileExistsError:
                    continue
                except PermissionError as exc:  # this object's (a legal hold): the others
                    logger.debug("cannot remove %s: %s", name, exc)  # go on
                    if denied is not None:
                        denied.append((name, exc))
                    continue
                except (ConnectionError, TimeoutError):
                    raise
                except OSError as exc:  # a code not known here: as a passing fault
                    logger.debug("removing %s in a batch: %s; alone now", name, exc)
            # A key's own passing fault inside an answered batch (InternalError, SlowDown),
            # which the client's retries never see, or an error not known here: that key
            # alone, as one removal (retried; a refused condition looked at), its own
            # refusal then (a legal hold) as above. Before, it failed the whole removal,
            # the other keys removed but not counted, and the batches after not sent.
            try:
                if self.delete_unchanged(name, etags[name]):
                    removed.add(name)
            except PermissionError as exc:
                logger.debug("cannot remove %s: %s", name, exc)
                if denied is not None:
                    denied.append((name, exc))
        return removed

    def _idempotent(self, doing: str, name: str, operation: str, **params: Any) -> Any:
        """The answer to the client's ``operation``, a request that does the same when sent
        twice (a removal), sent once more, at once, if the connection dropped before its
        answer (the client makes one attempt): whether the server did it or not, the
        second answer says what the first would have."""
        return self._sent(doing, name, operation, **params)[0]

    def _sent(self, doing: str, name: str, operation: str, **params: Any) -> tuple[Any, bool]:
        """``_idempotent``'s answer, and whether it is the second sending's (an object found
        gone then may have been removed by the first)."""
        try:
            with self._errors(doing, name):
                return getattr(self.client, operation)(Bucket=self.bucket, **params), False
        except ConnectionResetError as exc:
            logger.debug("%s: sending it again", exc)
        with self._errors(doing, name, again=True):
            return getattr(self.client, operation)(Bucket=self.bucket, **params), True

    def starts_with(self, name: str, head: bytes, timed_out: bool = False) -> bool:
        """Whether the object ``name`` begins with ``head``, asked at once after a fault
        (``again``): what a write whose answer was lost left (see ``Store._confirm``).
        ``timed_out``: the write timed out, and this look waits only ``CONFIRM_SHARE`` of
        ``timeout`` (``checker``).

        A write sent and unanswered may still be under way when the look finds no object
        (a server that resumes after a stall answers the look first, then stores: "not
        cached" was said of a stored entry). Not found, a multipart upload is aborted, so
        that it never completes: aborted, the object is not this write's, for good;
        already gone (completed meanwhile), the object is looked at again. A single PUT
        cannot be stopped: not found, whether it will be stored is unknown (``OSError``).
        """
        unanswered, self._unanswered.upload = getattr(self._unanswered, "upload", None), None
        client = self.checker if timed_out else self.client
        found = self._starts_with(client, name, head, timed_out)
        if found or unanswered is None or unanswered[0] != name:
            return found
        if not unanswered[1]:
            raise OSError(errno.EINPROGRESS, f"s3://{self.bucket}/{name} is not there yet, "
                          "and its PUT, sent, may still be stored (S3 cannot stop it)")
        if self._fence(client, name, unanswered[1], timed_out):
            return False
        return self._starts_with(client, name, head, timed_out)

    def _fence(self, client: Any, name: str, upload_id: str, timed_out: bool) -> bool:
        """Abort the upload ``upload_id`` of ``name``: True if aborted (never completed),
        False if it is gone (completed, or aborted before); raises ``OSError`` otherwise."""
        try:
            with self._errors("aborting an upload of", name, again=True):
                client.abort_multipart_upload(Bucket=self.bucket, Key=name,
                                              UploadId=upload_id)
        except OSError as exc:
            cause = exc.__cause__
            if isinstance(cause, botocore.exceptions.ClientError) and (
                    cause.response.get("Error", {}).get("Code") == "NoSuchUpload"):
                return False
            if isinstance(exc, TimeoutError) and timed_out and exc.errno is not None:
                raise TimeoutError(exc.errno, f"aborting an upload of s3://{self.bucket}/"
                                   f"{name}: no answer within "
                                   f"{self.timeout * CONFIRM_SHARE:g} s either") from exc
            raise
        return True

    def _starts_with(self, client: Any, name: str, head: bytes, timed_out: bool) -> bool:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": name}
        if head:
            kwargs["Range"] = f"bytes=0-{len(head) - 1}"
        try:
            with self._errors("reading", name, again=True):
                response = client.get_object(**kwargs)
        except FileNotFoundError:
            return False
        except TimeoutError as exc:
            if not timed_out or exc.errno is None:  # (None: the caller's signal handler's)
                raise
            raise TimeoutError(exc.errno, f"reading s3://{self.bucket}/{name}: no answer "
                               f"within {self.timeout * CONFIRM_SHARE:g} s either") from exc
        got = _Got(response["Body"], _length(response), "", 0.0)
        return bytes(self.read_body(name, got)) == head

    def list(self, prefix: str) -> Iterator[_Listed]:
        """Every object under ``prefix``, page by page."""
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("listing", prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                now = _server_now(page)
                for obj in page.get("Contents", []):
                    modified = obj["LastModified"].timestamp()
                    yield _Listed(obj["Key"], int(obj["Size"]), modified, now - modified,
                                  str(obj.get("ETag", "")))

    def uploads(self, prefix: str) -> Iterator[tuple[str, str, float]]:
        """Unfinished multipart uploads under ``prefix``: (name, upload id, age by the
        server's clock)."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        with self._errors("listing uploads in", prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                now = _server_now(page)
                for up in page.get("Uploads", []):
                    yield up["Key"], up["UploadId"], now - up["Initiated"].timestamp()


# --- the policy ---------------------------------------------------------------------------

class S3Store(Store):
    """Entries in an S3 bucket. See the module docstring for the layout and guarantees.

    ``location``: ``s3://BUCKET[/PREFIX]`` with optional query options ``endpoint_url``,
    ``region``, ``timeout`` (seconds) and ``multipart_threshold`` (bytes). Credentials,
    region and endpoint otherwise come from the standard AWS environment and configuration
    (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ``~/.aws/config``, ...).
    """

    remote = True  # every call is a network request: async callers run it in a thread
    reads_back = True  # a write whose answer was lost or late is read back (``_holds``)
    kind, shared_with = "S3", "the bucket"  # no total to keep under a lock: evicts by listing
    leftover = "partial upload"  # a multipart upload of a writer that died
    names_shared = True  # a prefix may be shared: ``scan`` with heads tells entries apart

    def __init__(self, location: str, max_size: int | None = None, signed: bool = False,
                 *, secret: bytes | None = None, client: Any = None) -> None:
        # ``secret``: entries are signed above the store (S3 keeps nothing else to sign)
        bucket, prefix, options = _parse(location)
        timeout = positive("timeout", None, options.get("timeout"), DEFAULT_TIMEOUT, float,
                           MIN_TIMEOUT, "no server answers a request sooner: every request "
                                        "would time out")
        threshold = int(positive("multipart_threshold", None,
                                 options.get("multipart_threshold"),
                                 DEFAULT_MULTIPART_THRESHOLD, int))
        self.location = redact(location)
        self.max_size = max_size
        self.prefix = prefix
        self.signed = signed or secret is not None

        def make_client() -> Any:
            return client if client is not None else _client(options, timeout)

        def make_checker() -> Any:
            return client if client is not None else _client(options,
                                                             timeout * CONFIRM_SHARE)

        self._bucket = _Bucket(bucket, make_client, timeout, threshold, make_checker,
                               owned=client is None)
        try:  # made now, so that a bad configuration says so here
            self._bucket.client  # noqa: B018
        except OSError as made:  # (``_made``: what making the client raised, as its cause)
            exc = made.__cause__ or made
            raise ValueError(
                f"cache location {self.location!r}: cannot make its S3 client from the AWS "
                f"configuration ({type(exc).__name__}: {exc}); see AWS_PROFILE, "
                "AWS_DEFAULT_REGION, AWS_ENDPOINT_URL and ~/.aws/config, or the URL's "
                "options"
            ) from exc
        if client is None and options.get("endpoint_url") is None:
            # the AWS configuration's, which botocore takes as it is and then fails every
            # request with ("Custom endpoint ... was not a valid URI": a port out of range,
            # ftp://), or shows in every message (a password)
            _check_endpoint(self.location, str(self._bucket.client.meta.endpoint_url),
                            "the AWS configuration's endpoint (AWS_ENDPOINT_URL, "
                            "AWS_ENDPOINT_URL_S3 or endpoint_url in ~/.aws/config)")
        _check_client(self.location, self._bucket.client, bucket, given=client is not None)
        self._renewer = Renewer(LEASE_RENEW, "memojar-s3-leases")
        self._bucket.attempt = self._renewer.attempt  # an abort the server could not take now
        self._releases = 0  # leases this process released: its waiters look again then
        self._conditions_checked = False  # the server honours conditional writes? (once)
        self._delete_refused = False  # a lease's removal refused (no s3:DeleteObject): said
        # Leases this process released but could not remove (no s3:DeleteObject), by name:
        # the ETag each was left with, so that its next caller here takes it over at once
        # (``_Lease._try``), not after LEASE_TTL; at most LEFT_MAX, the oldest forgotten
        self._left: dict[str, str] = {}
        self._removal_refused = False  # an eviction's removal refused: said (``_refused``)
        # whether these credentials may remove entries (None) or not (the refusal), and when
        # it was asked (monotonic; ``_denied``: again after REFUSED_RECHECK)
        self._delete_checked: tuple[OSError | None, float] | None = None
        # the refusals of the removal (``remove_listed``) this thread is making, if any:
        # [how many, the first one's error]
        self._removing = threading.local()
        self._conditions_refused = False  # conditional writes not implemented: said
        # the server honours the ETags of a multi-object delete? and when it was asked
        # (monotonic; ``_batches``: again after BATCH_RECHECK)
        self._batch_checked: tuple[bool, float] | None = None
        self._leases: dict[str, _Lease] = {}  # entry object -> this process's lease on it
        self._dirs: dict[str, str] = {}  # function -> "PREFIX/<fdir>/"
        # objects at entries' names found not to be entries (``_unlink``), as listed (name,
        # size, date): eviction leaves them out of the total and does not read them again
        self._foreign: set[tuple[str, int, float]] = set()

    def __repr__(self) -> str:
        return f"S3Store({self.location!r})"

    def _dir(self, function: str) -> str:
        base = self._dirs.get(function)
        if base is None:
            base = self._dirs[function] = f"{self.prefix}{function_dir(function)}/"
        return base

    def _object(self, entry: StoredEntry) -> str:
        return f"{self.prefix}{entry.function_dir}/{entry.key}{SUFFIX}"

    def _read(self, function: str, key: str) -> Any | None:
        name = self._dir(function) + key + SUFFIX
        got = self._bucket.get(name)
        lease = self._leases.get(name)
        if lease is not None and not lease.entry_known:  # under this process's lease
            lease.saw_entry(None if got is None else got.etag)
        if got is None:
            return None
        if got.size <= HEADER_FIRST:  # small: the whole body in one read
            return self._bucket.read_body(name, got)
        # large: the header first, from the same stream; a stale or unusable entry is
        # handed back as just its head (the caller's check rejects it and removes it),
        # and the rest of it is never transferred
        head = self._bucket.read_some(name, got, HEAD_BYTES)
        if not worth_reading(head):
            got.body.close()  # the connection goes, with the rest of the transfer
            return head
        try:
            data = bytearray(got.size)
        except MemoryError:
            # more than this process can hold (a larger machine's result, or an object
            # planted with a forged header: the signature is checked only once it is
            # read): unreadable here, so a miss, as a file entry whose value will not fit
            got.body.close()
            raise OSError(errno.ENOMEM, f"reading s3://{self._bucket.bucket}/{name}: its "
                          f"{got.size:,} bytes do not fit in memory") from None
        data[: len(head)] = head
        self._bucket.read_body(name, got, data, len(head))
        return data

    def _write(self, function: str, key: str, views: list[memoryview], size: int,
               expires: float | None) -> None:
        # ``expires`` is in the header, which decides; S3 has no per-object expiry
        name = self._dir(function) + key + SUFFIX
        lease = self._leases.get(name)
        if lease is None:  # no lease held here (``lock_timeout`` passed): as it comes
            self._bucket.put(name, views, size)
            return
        # Written under this process's lease: only if it is still ours, renewed just now, so
        # that no waiter takes it over for LEASE_TTL (S3 has no write conditional on another
        # object; the renewer keeps renewing during a long upload), and only over the entry
        # this holder saw: a holder frozen after that renewal (within a multipart upload's
        # parts, or just before its PUT) past LEASE_TTL, whose lease a waiter took over and
        # stored under, is refused when it resumes. Before, it completed its write over the
        # newer holder's value, silently.
        if not lease.entry_known:  # not read under the lease (refresh, cache_set): now
            got = self._bucket.head(name)
            lease.saw_entry(None if got is None else got.etag)
        if not lease.renew():
            raise lease_lost(LEASE_TTL)
        seen, lease.entry_known = lease.entry_etag, False  # until this write is answered
        try:
            etag = self._bucket.put(name, views, size, if_none_match=seen is None,
                                    if_match=seen)
        except (FileExistsError, FileNotFoundError) as exc:
            if isinstance(exc, FileNotFoundError) and seen is None:
                raise  # not the condition's (no such bucket)
            # Written or removed since by another caller: one that took the lease over
            # (lost: not stored over its value), or one without it (a removal, a caller
            # past ``lock_timeout``: the lease still ours, replaced as before)
            if not lease.renew():
                raise lease_lost(LEASE_TTL) from None
            etag = self._bucket.put(name, views, size)
        lease.saw_entry(etag)

    def _holds(self, function: str, key: str, head: bytes, timed_out: bool) -> bool:
        return self._bucket.starts_with(self._dir(function) + key + SUFFIX, head, timed_out)

    def delete(self, function: str, key: str) -> bool:
        """``Store.delete``; an entry the server refuses to remove (credentials without
        s3:DeleteObject, a legal hold) is not removed: False, with a warning naming it, as
        ``clear`` and ``prune`` say theirs. Before, ``cache_delete`` raised the refusal's
        ``PermissionError``, which named the function's folder, not the entry."""
        name = self._dir(function) + key + SUFFIX
        if self._bucket.head(name) is None:
            return False
        try:
            self._bucket.delete(name)
        except PermissionError as exc:
            warn(f"S3 cache {self.location}: the server refused to remove the entry "
                 f"s3://{self._bucket.bucket}/{name} ({exc.strerror}): it is still there; "
                 "remove it with credentials that have s3:DeleteObject under the prefix (or "
                 "once its legal hold or retention ends)")
            return False
        return True

    def discard(self, function: str, key: str, judged: Any) -> bool:
        """Delete the entry if it is still the one read as ``judged``: its first bytes
        (the header: written with its creation time and checksum, so no later write's is
        the same) are read again with the object's ETag, and the delete is conditional on
        that ETag, so a fresh entry written since, even just now, stays."""
        name = self._dir(function) + key + SUFFIX
        with memoryview(judged) as view:
            read = view.nbytes
            head = bytes(view.cast("B")[:HEAD_BYTES])
        # The object's size: a body answered short (a proxy's wrong Content-Length, an
        # empty 200) was judged, not the object, which stays. Before, it was removed
        # (compared by its first bytes alone, an empty read by nothing) and recomputed.
        # Judged whole, or just its header (a large entry's: ``_read``), it goes: a
        # header's length judged of an object ``_read`` reads whole is a body cut there
        # (before: taken for a header, and a good entry removed).
        whole = self._bucket.head(name)
        lease = self._leases.get(name)
        if whole is not None and whole.size >= 0 and read != whole.size and (
                read != HEAD_BYTES or whole.size <= HEADER_FIRST):
            return False
        if not head:
            return whole is not None and self._bucket.delete_unchanged(name, whole.etag)
        got = self._bucket.get(name, 0, len(head))
        if got is None or self._bucket.read_body(name, got) != head:
            if got is None and lease is not None:
                lease.saw_entry(None)  # gone: this holder's write finds no entry
            return False  # gone, or another entry now
        if whole is not None and whole.etag and got.etag != whole.etag:
            return False  # written again between the two looks
        removed = self._bucket.delete_unchanged(name, got.etag)
        if removed and lease is not None:
            lease.saw_entry(None)
        return removed

    def read_note(self, function: str) -> bytes | None:
        # At most NOTE_MAX bytes: an object there saying it is 2**62 bytes long (anyone who
        # can write to the bucket can put one) raised MemoryError into the call
        name = self._dir(function) + NOTE
        got = self._bucket.get(name, 0, NOTE_MAX)
        return None if got is None else bytes(self._bucket.read_body(name, got))

    def write_note(self, function: str, note: bytes) -> None:
        # Only over no note or one memojar wrote (its lines; an older memojar's: the
        # function's identity): an object of someone else's there (a prefix may be shared)
        # stays, and the next process lists the entries again. Before, it was replaced.
        name = self._dir(function) + NOTE
        got = self._bucket.get(name, 0, NOTE_MAX)
        if got is not None:
            there = bytes(self._bucket.read_body(name, got))
            if not (_SWEPT_BODY.fullmatch(there) or there.startswith(function.encode() + b"\0")):
                logger.debug("not writing the sweep note %s: memojar did not write it", name)
                return
        self._bucket.put(name, [memoryview(note)], len(note))

    def lock(self, function: str, key: str) -> KeyLock:
        return _Lease(self, self._dir(function) + key + LEASE_SUFFIX)

    def scan(self, function: str | None = None, heads: bool = True) -> Iterator[StoredEntry]:
        """``Store.scan``, without the objects at entries' names that memojar did not write
        (a prefix may be shared): told by their first bytes when ``heads`` (before, ``ls``
        and ``info`` counted them as unreadable entries that ``prune`` would remove, and
        it leaves them), else those this process found so: eviction (``Store.evict``, whose
        listing this is) neither removes nor counts an object once ``_unlink`` found it not
        an entry (before: chosen first, as the oldest, and removed; once left alone, the
        total stayed over ``max_size``)."""
        for entry in super().scan(function, heads):
            if heads:
                if written_as_an_entry(entry.head):
                    yield entry
                else:
                    self._foreign.add(self._as_listed(entry))
            elif self._as_listed(entry) not in self._foreign:
                yield entry

    def _list(self, function: str | None, heads: bool) -> Iterator[StoredEntry]:
        prefix = self.prefix if function is None else self._dir(function)
        for listed in self._bucket.list(prefix):
            match = _ENTRY.fullmatch(listed.name, len(self.prefix))
            if match is not None:
                yield StoredEntry(match[1], match[2], listed.size, listed.modified, b"",
                                  f"s3://{self._bucket.bucket}/{listed.name}",
                                  etag=listed.etag)

    def _read_range(self, entry: StoredEntry, start: int, end: int) -> bytes | None:
        name = self._object(entry)
        got = self._bucket.get(name, start, end)
        return None if got is None else bytes(self._bucket.read_body(name, got))

    def _as_listed(self, entry: StoredEntry) -> tuple[str, int, float]:
        return self._object(entry), entry.size, entry.accessed

    def _unlink(self, entries: Sequence[StoredEntry]) -> list[StoredEntry]:
        # Only what memojar wrote: an object at an entry's name is someone else's (a pickle
        # of another tool keyed by an MD5, a user's file in a prefix a bucket shares) unless
        # its first bytes are an entry's. Before, ``clear`` and ``max_size`` went by names
        # alone and removed such objects. Each object's first bytes are read just before
        # its removal (a ranged GET, several at a time), which also says it is there (S3
        # does not say whether a deleted object existed), and the removal is conditional
        # on the ETag that read gave (``If-Match``): only the object looked at goes. One
        # written since it was listed (another ETag), or since its head was judged
        # (``prune``'s scan: another header), stays, a fresh value of a stale key too.
        # Before, every object was looked at, then all were removed in one batch: an
        # entry written between its look and the batch (seconds, on a large removal) went.
        # Removed one request a time (as many at once as ``UNLINK_THREADS``) unless the
        # server honours the ETags of a multi-object delete (``_batches``): then the looks
        # are made first, and the objects still as looked at go in one request a thousand
        # (each key with its ETag: one written since stays). 2,000 entries against moto
        # on a loaded machine: 14.5 s and 4,002 requests before, 10.2 s and 2,010 after
        # (the permission question one more; benchmarks/results/s3_clear.txt): what is
        # left is the looks.
        return self._unlink_tried(entries)[0]

    def _unlink_refused(
        self, entries: Sequence[StoredEntry]
    ) -> tuple[list[StoredEntry], list[StoredEntry], list[StoredEntry]]:
        """``_unlink``: the entries removed, and those the server refused to remove (which
        eviction then keeps as room taken, and does not try again at every write:
        ``_ledger.Refusals``). Before, none were said refused: eviction by credentials
        without s3:DeleteObject took them for gone, and the next write tried them all again.

        Eviction's: credentials that may not remove at all (``_denied``: one request in
        ``REFUSED_RECHECK``) have every entry refused without a try. Before, each process
        tried each entry over the limit once (its refusals are its store's), a GET and a
        refused DELETE each: a fresh process's first miss on a bucket of 2,000 entries of
        1 kB under ``max_size=5000`` made about 4,000 requests (10,000 entries: 20,000, a
        stall of minutes). A refusal of some objects alone (a legal hold) is told as before,
        by trying each."""
        if entries:
            denied = self._denied(entries[0])
            if denied is not None:
                self._refused([denied] * len(entries))
                return [], list(entries), []
        return self._unlink_tried(entries)

    def _denied(self, entry: StoredEntry) -> OSError | None:
        """The refusal (AccessDenied) of any removal of an entry in ``entry``'s folder by
        these credentials (no s3:DeleteObject), or None if they may remove: asked once in
        ``REFUSED_RECHECK`` (when removals refused are tried again) by a removal of an
        entry's name never written, conditional on an ETag no object has (S3 checks the
        permission first: refused, 403; else 404, and nothing is removed, no delete marker
        made; ``_batches`` asks so too). Not told (no server): None, asked again next time."""
        checked = self._delete_checked
        if checked is not None and time.monotonic() - checked[1] < _ledger.REFUSED_RECHECK:
            return checked[0]
        name = f"{self.prefix}{entry.function_dir}/{secrets.token_hex(16)}{SUFFIX}"
        try:
            denied = self._delete_denied(name)
        except (ConnectionError, TimeoutError) as exc:
            if the_callers(exc):  # a signal handler's (its TimeoutError): the caller's
                raise
            logger.debug("cannot tell whether entries may be removed: %s", exc)
            return None
        if denied is not None:
            logger.debug("these credentials may not remove entries: %s", denied)
        self._delete_checked = denied, time.monotonic()
        return denied

    def _delete_denied(self, name: str) -> PermissionError | None:
        """Whether these credentials may remove ``name`` (an object never written), asked
        by a removal conditional on an ETag no object has: S3 checks the permission first,
        refused, the 403 (``PermissionError``); else None (404: nothing is removed, no
        delete marker made; or a server refusing conditional deletes). Raises
        ``ConnectionError`` or ``TimeoutError`` when not told."""
        try:
            self._bucket.delete(name, if_match=_NO_ETAG)
        except PermissionError as exc:
            return exc
        except (ConnectionError, TimeoutError):
            raise
        except OSError:
            pass  # (no such object; or a server refusing conditional deletes)
        return None

    def _unlink_tried(
        self, entries: Sequence[StoredEntry]
    ) -> tuple[list[StoredEntry], list[StoredEntry], list[StoredEntry]]:
        """``_unlink_refused``, each entry tried."""
        refused: list[tuple[str, OSError]] = []  # removals the server refused (AccessDenied)
        removed = self._unlink_said(entries, refused)
        if not refused:
            return removed, [], []
        self._refused([exc for _, exc in refused])
        names = {name for name, _ in refused}
        return removed, [e for e in entries if self._object(e) in names], []

    def _unlink_said(self, entries: Sequence[StoredEntry], refused: list[tuple[str, OSError]],
                     ) -> list[StoredEntry]:
        """``_unlink``, adding the removals the server refused to ``refused``."""
        remove = functools.partial(self._remove, refused=refused)
        if len(entries) <= 1:
            return [e for e in entries if remove(e)]
        if not self._batches(entries[0]):
            return [e for e, r in zip(entries, self._each(remove, entries),
                                      strict=True) if r]
        names = [self._object(e) for e in entries]
        etags = self._each(lambda e: self._still_an_entry(self._object(e), e), entries)
        doomed = [(n, etag) for n, etag in zip(names, etags, strict=True) if etag]
        # (an object looked at without an ETag, "": a plain delete, as ``_remove``'s, its
        # refusal too. Before, a refused one raised PermissionError out of ``clear``: the
        # batches not sent, and what was removed not counted)
        removed = {n for n, etag in zip(names, etags, strict=True)
                   if etag == "" and self._delete(n, etag, refused)}
        for start in range(0, len(doomed), DELETE_MANY):
            removed |= self._bucket.delete_unchanged_many(doomed[start : start + DELETE_MANY],
                                                          refused)
        return [e for e, n in zip(entries, names, strict=True) if n in removed]

    def remove_listed(self, entries: Iterable[StoredEntry],
                      progress: Callable[[Removal], None] | None = None,
                      removal: Removal | None = None) -> int:
        """``Store.remove_listed``, then one warning for the removals the server refused
        (``_refused``), with their number in the whole removal."""
        outer = getattr(self._removing, "said", None)  # (a signal handler's, inside one)
        said = self._removing.said = [0, None]
        try:
            removed = super().remove_listed(entries, progress, removal)
        finally:
            self._removing.said = outer
        if said[0]:
            self._say_refused(said[0], said[1])
        return removed

    def _refused(self, refused: list[OSError]) -> None:
        """Removals the server refused (AccessDenied: credentials without s3:DeleteObject,
        a legal hold): said once for a whole ``remove_listed`` (``clear``, ``prune``), and
        once a store for eviction's. Before, only logged at debug level: ``clear()`` said 0
        and ``memojar clear`` "removed 0 entries", every entry still there, and not a word
        of why. A warning, not an error: what was removed is still counted, the rest goes on."""
        said = getattr(self._removing, "said", None)
        if said is not None:
            said[0] += len(refused)
            said[1] = said[1] or refused[0]
        elif not self._removal_refused:
            self._removal_refused = True
            self._say_refused(len(refused), refused[0], evicting=True)

    def _say_refused(self, count: int, first: OSError | None, evicting: bool = False) -> None:
        what = "1 entry" if count == 1 else f"{count:,} entries"
        # (eviction's: what max_size is then, ``_ledger.Refusals``)
        room = ("; max_size counts them as room taken, and they are not tried again for "
                f"{_ledger.REFUSED_RECHECK / 60:g} minutes" if evicting else "")
        warn(f"S3 cache {self.location}: the server refused to remove {what} "
             f"({first.strerror if first is not None else 'AccessDenied'}): they are still "
             f"there and not counted as removed{room}; remove them with credentials that have "
             "s3:DeleteObject under the prefix (or once their legal hold or retention ends)")

    def _each(self, do: Callable[[StoredEntry], Any], entries: Sequence[StoredEntry],
              ) -> list[Any]:
        """``do`` of each entry, ``UNLINK_THREADS`` at a time; made again, one by one,
        where it failed with ``ConnectionError`` (see below).

        One by one in this thread in a signal handler's call: its thread may be inside
        ``ThreadPoolExecutor.submit``, which holds a lock of the module's that the next
        ``submit`` takes, or refreshing the credentials every other thread's request waits
        for. Before, the handler's ``cache_clear`` (or a write with ``max_size`` that
        evicts) waited there for ever."""
        if in_a_signal_handler():
            done = [_caught(do, entry) for entry in entries]
        else:
            pool = concurrent.futures.ThreadPoolExecutor(min(UNLINK_THREADS, len(entries)),
                                                         "memojar-s3-unlink")
            try:
                done = list(pool.map(functools.partial(_caught, do), entries))
            finally:  # an error or an interrupt: the ones not begun are not made
                pool.shutdown(cancel_futures=True)
        # A removal whose answer a dropped connection lost is sent again at once, and the
        # store fails fast until it is answered: removals made meanwhile by the other
        # threads failed (before, clear raised ConnectionError). Made again now, one by
        # one, unless the server is still failing (then the removal fails, as it did).
        faults = [r for r in done if isinstance(r, ConnectionError)]
        if faults and self._bucket.failing:
            raise faults[0]
        return [do(e) if isinstance(r, ConnectionError) else r
                for e, r in zip(entries, done, strict=True)]

    def _batches(self, entry: StoredEntry) -> bool:
        """Whether the server honours the ETags of a multi-object delete, asked once in
        ``BATCH_RECHECK`` (and again after an answer that did not tell): a lease object of
        no key is written in ``entry``'s folder, deleted in a ``DeleteObjects`` with another
        ETag, and looked at. Still there: honoured (AWS S3 since 2025, moto 5.2.6); gone:
        ignored (moto before; a batch would remove an entry written after its look). The
        lease is removed after; one an interrupt leaves, ``cleanup`` removes as any stale
        lease (after ``ORPHAN_AGE``). Asked again in time: before, a long-lived process
        kept its first answer, and a server put back to one that ignores them (the same
        endpoint) had its batches remove entries written after their looks."""
        checked = self._batch_checked
        if checked is not None and time.monotonic() - checked[1] < BATCH_RECHECK:
            return checked[0]
        bucket = self._bucket
        name = f"{self.prefix}{entry.function_dir}/{secrets.token_hex(16)}{LEASE_SUFFIX}"
        body = f"{secrets.token_hex(16)} pid {os.getpid()}\n".encode()
        try:
            # Whether these credentials may remove at all, asked before the lease is
            # written (``_delete_denied``). Before, credentials without s3:DeleteObject
            # wrote the lease and could not remove it: each clear or prune of a process
            # left one.
            refused = self._delete_denied(name)
            if refused is not None:
                raise refused
            etag = bucket.put(name, [memoryview(body)], len(body), if_none_match=True)
            honoured = True  # (until told: the lease is there to remove)
            try:
                bucket.delete_unchanged_many([(name, _NO_ETAG)])  # not its ETag
                honoured = bucket.head(name) is not None
            finally:
                if honoured:
                    bucket.delete_unchanged(name, etag)
        except (ConnectionError, TimeoutError) as exc:  # not told: asked again next time
            if the_callers(exc):  # a signal handler's (its TimeoutError): the caller's
                raise
            logger.debug("cannot tell whether multi-object deletes honour ETags: %s", exc)
            return False
        except OSError as exc:  # refused (no DeleteObjects, no PutObject): one by one
            logger.debug("not removing in batches: %s", exc)
            honoured = False
        self._batch_checked = honoured, time.monotonic()
        return honoured

    def _remove(self, entry: StoredEntry, refused: list[tuple[str, OSError]]) -> bool:
        """Remove the object if it is still the entry listed; True if it did (one the
        server refused to remove is added to ``refused``)."""
        name = self._object(entry)
        etag = self._still_an_entry(name, entry)
        return etag is not None and self._delete(name, etag, refused)

    def _delete(self, name: str, etag: str, refused: list[tuple[str, OSError]]) -> bool:
        """``delete_unchanged``, a refusal added to ``refused`` (with the object's name)."""
        try:
            return self._bucket.delete_unchanged(name, etag)
        except PermissionError as exc:  # this object's (a legal hold): the others go on
            logger.debug("cannot remove %s: %s", name, exc)
            refused.append((name, exc))
            return False

    def _still_an_entry(self, name: str, entry: StoredEntry) -> str | None:
        """The ETag of the object ``name`` if it is still the entry listed (as
        ``entry.head``, if that was read), else None: gone, someone else's, rewritten."""
        head = entry.head[:HEAD_BYTES]
        try:
            got = self._bucket.get(name, 0, len(head) if head else ENTRY_SNIFF)
            if got is None:
                return None
            etag, first = got.etag, bytes(self._bucket.read_body(name, got))
        except (ConnectionError, TimeoutError):
            raise  # no server: the removal fails as it did
        except OSError as exc:
            # unreadable here (archived by a lifecycle rule: InvalidObjectState; a GET
            # refused): whose it is cannot be told, so it stays, and is not counted
            logger.debug("not removing %s: its first bytes cannot be read (%s)", name, exc)
            etag, first = "", b""
        if not written_as_an_entry(first):
            self._foreign.add(self._as_listed(entry))
            return None
        if head and first != head:
            return None  # another entry now
        if entry.etag and etag and entry.etag.strip('"') != etag.strip('"'):
            return None  # written again since it was listed
        return etag

    def cleanup(self) -> int:
        """Abort multipart uploads of writers that died (older than ORPHAN_AGE) and remove
        leases nobody renewed for a long time; return the number of uploads aborted.

        Ages are the server's (its answers' Date against its own dates), never this
        machine's clock, which may be ahead or set forward. An upload whose entry's lease
        is live (renewed within LEASE_STALE: its writer is alive, however long the upload
        has run) is never aborted, nor a live lease removed.

        Only uploads and leases named as memojar names them, and written by it: other
        objects and uploads under the prefix are someone else's. An upload is memojar's if
        the lease its writer held is there, as memojar writes one (a writer that died left
        it; it goes in this same pass). Before, any upload at an entry's name went (a
        user's upload of ``models/<uuid hex>.pkl`` beside a cache at the bucket's root,
        paused for an hour). An upload a writer made without its lease (``cache_set`` of a
        coroutine function, a write past ``lock_timeout``), or whose lease another writer
        took over and released since, is left to a bucket lifecycle rule."""
        aborted = 0
        start = len(self.prefix)
        leases, notes = [], []
        for o in self._bucket.list(self.prefix):
            if _LEASE.fullmatch(o.name, start):
                leases.append(o)
            elif _NOTE.fullmatch(o.name, start) and o.age > max(ORPHAN_AGE, LEASE_STALE):
                notes.append(o)  # a wait noted by a process that died
        # the leases nobody renewed, by their entry's name (a live one's writer is alive)
        stale = {o.name[: -len(LEASE_SUFFIX)] + SUFFIX: o for o in leases
                 if o.age > LEASE_STALE}
        for name, upload_id, age in list(self._bucket.uploads(self.prefix)):
            if (age > ORPHAN_AGE and name in stale and _ENTRY.fullmatch(name, start)
                    and self._memojars(stale[name], _LEASE_BODY)):
                self._renewer.attempt(functools.partial(self._bucket.abort, name, upload_id),
                                      LEFTOVER_RETRY)
                aborted += 1
        for lease in leases:
            if lease.age > max(ORPHAN_AGE, LEASE_STALE):
                self._drop_stale(lease, _LEASE_BODY)
        for note in notes:
            self._drop_stale(note, _NOTE_BODY)
        return aborted

    def _drop_stale(self, listed: _Listed, written: re.Pattern[bytes]) -> None:
        """Remove a lease (or a wait for one) nobody renewed for long, if its body is as
        memojar writes one (``written``) and it is unchanged since it was listed.

        Its body is read first: a name is no proof (before, a user's ``<32 hex>.lease`` an
        hour old went). The removal is conditional on the ETag listed: a waiter takes a
        stale lease over at once (``LEASE_STALE``), and removing the new holder's (before:
        unconditionally, in a batch) let a third caller compute the key too, and the
        holder's write be refused as if its lease were lost."""
        got = self._memojars(listed, written)
        if got is None:
            return
        if listed.etag and got.etag and listed.etag.strip('"') != got.etag.strip('"'):
            return  # written since it was listed: taken over, or renewed
        self._bucket.delete_unchanged(listed.name, listed.etag or got.etag)

    def _memojars(self, listed: _Listed, written: re.Pattern[bytes]) -> Any:
        """What reading ``listed`` got, if its body is as memojar writes one (``written``),
        else None."""
        bucket = self._bucket
        got = bucket.get(listed.name, 0, LEASE_MAX)  # (at most: see ``read_note``)
        if got is None:
            return None
        body = bytes(bucket.read_body(listed.name, got))
        if not written.fullmatch(body):
            logger.debug("not removing %s: memojar did not write it", listed.name)
            return None
        return got

    def close(self) -> None:
        self._renewer.stop()
        # Before, the client's pooled connections stayed open until the cycle collector
        # freed it: a process making and closing a Cache per job kept a socket for each
        self._bucket.close()


class _Lease(KeyLock):
    """A lease object created only if absent and renewed while held; see the module
    docstring for how a dead holder's lease is taken over."""

    _note: _WaitNote | None = None  # while this lease is waited for (``note_waiting``)

    def __init__(self, store: S3Store, name: str) -> None:
        self.store = store
        self.name = name
        self.entry = name[: -len(LEASE_SUFFIX)] + SUFFIX  # the object the lease is for
        self.etag = ""
        # This holding's token, in the body of each of its writes (with a fresh nonce, so
        # that each write has a new ETag), set before the first is sent; empty when nothing
        # of this lease's may be on the server. A write whose reply was lost (an interrupt, a
        # timeout: its ETag unknown) is still told ours by it, whichever write of the holding
        # it was and whatever was refused since (see ``_ours``).
        self._token = ""
        self._ending = False  # released (perhaps cut short): no more renewals
        # The ETag, the token and ``_ending`` read and set together, between the holder's
        # thread and the renewer's; never held over a request (``renew``). Reentrant: a
        # signal handler's call may take it inside its thread's. A renewal inside another
        # (a handler calling the function with that key just before its holder's write)
        # finds the lease still this holding's by its token (``_ours``).
        self._lock = threading.RLock()
        self._seen, self._since = "", 0.0  # the lease's ETag as first seen, and when
        # The entry as this holding last saw it (its ETag; None: none), once ``entry_known``:
        # its write is conditional on it (``S3Store._write``)
        self.entry_etag: str | None = None
        self.entry_known = False
        self._delay, self._next_try = LEASE_POLL_MIN, 0.0  # backoff (monotonic)
        self._released = 0  # the store's count of releases when this lease last looked

    def _put(self, token: str, **condition: Any) -> str:
        """Write the lease: the holding's token and a fresh nonce (a new ETag each time)."""
        body = f"{token} {secrets.token_hex(8)} pid {os.getpid()}\n".encode()
        return self.store._bucket.put(self.name, [memoryview(body)], len(body), **condition)

    def _ours(self, token: str) -> str:
        """The lease's ETag if the object now there was written by the holding of ``token``
        (a write whose reply was lost), else ""."""
        bucket = self.store._bucket
        got = bucket.get(self.name, 0, LEASE_MAX)  # (at most: see ``read_note``)
        if got is None:
            return ""
        body = bytes(bucket.read_body(self.name, got))
        return got.etag if token and body.startswith(f"{token} ".encode()) else ""

    def saw_entry(self, etag: str | None) -> None:
        """The entry as this holding sees it now: its ETag, or None (there is none)."""
        self.entry_etag, self.entry_known = etag, True

    def _pause(self, pause: float) -> float:
        return max(self._next_try - time.monotonic(), 0.0)  # the lease's own backoff

    def _taken(self) -> bool:
        self._seen, self._delay, self._next_try = "", LEASE_POLL_MIN, 0.0
        self._ending, self.entry_known = False, False
        self.store._leases[self.entry] = self
        self.store._renewer.add(self)
        return True

    def _due(self) -> bool:
        """Not too soon after the last look, or released in this process since."""
        return (time.monotonic() >= self._next_try
                or self.store._releases != self._released)

    def _try(self) -> bool:
        """One try to take the lease. The backoff and what was seen of the lease carry over
        between calls, so a caller that polls with ``blocking=False`` (an async waiter)
        neither floods the server nor waits forever for a dead holder's lease."""
        if not self._due():
            return False  # too soon after the last look (and not released here since)
        self._released = self.store._releases
        token = self._token = secrets.token_hex(16)  # a new holding's, before any write
        try:
            self.etag = self._put(token, if_none_match=True)
        except FileExistsError:
            self._token = ""  # not written: nothing of ours to release
        except OSError as exc:
            self._refused_conditions(exc)
            raise
        else:
            if not self.store._conditions_checked:
                self._check_conditions()
            return self._taken()
        got = self.store._bucket.head(self.name)
        if got is None:
            self._next_try = 0.0  # released meanwhile: try again at once
            return False
        now = time.monotonic()
        if got.etag != self._seen:
            self._seen, self._since = got.etag, now
        # (one this process released and could not remove, unchanged since: before, every
        # refresh, cache_set or stale miss of a key missed before waited LEASE_TTL for it)
        left = bool(got.etag) and self.store._left.get(self.name) == got.etag
        if now - self._since >= LEASE_TTL or got.age > LEASE_STALE or left:
            try:  # its holder is gone: take it over, unless someone renewed it meanwhile
                self._token = token
                self.etag = self._put(token, if_match=got.etag)
                logger.debug("took over lease %s (its holder stopped renewing it)", self.name)
                return self._taken()
            except (FileExistsError, FileNotFoundError):
                self._token = ""
                self._next_try = 0.0  # renewed, taken or released meanwhile: look again
                return False
        self._next_try = now + self._delay
        self._delay = min(self._delay * 2, LEASE_POLL_MAX)
        return False

    def _refused_conditions(self, exc: OSError) -> None:
        """Say once a store that the server does not implement conditional writes (501
        ``NotImplemented`` to ``If-None-Match``, as AWS S3 answered before 2024): no lease
        is ever taken, and every caller computes without one. Before, a log record at each
        miss only."""
        cause = exc.__cause__
        if not isinstance(cause, botocore.exceptions.ClientError):
            return
        answer = cause.response
        if (answer.get("Error", {}).get("Code") != "NotImplemented"
                and answer.get("ResponseMetadata", {}).get("HTTPStatusCode") != 501):
            return
        store = self.store
        if not store._conditions_refused:
            store._conditions_refused = True
            warn(f"the server of S3 cache {store.location} does not implement conditional "
                 f"writes ({exc.strerror}): no lease can be taken, and callers in other "
                 "threads, processes or machines may compute the same key at once. Use a "
                 "server that honours them (AWS S3, MinIO, Cloudflare R2; moto 5.0.20+)")

    def _check_conditions(self) -> None:
        """Once a process: create the lease just created again (``If-None-Match: *``).
        A server that honours conditional writes refuses; one that accepts ignores them,
        and every caller takes every lease: say so (values stay right, computing once
        does not hold)."""
        store = self.store
        store._conditions_checked = True
        if not self.etag:
            # A lease is renewed, taken over and released by its ETag: without one (a
            # proxy dropping the header) none is renewed or removed, and a waiter takes it
            # over at once (before, silently: nine threads on three keys computed nine times)
            warn(f"the server of S3 cache {store.location} answered the write of "
                 f"{self.name} with no ETag (is a proxy dropping it?): leases can be neither "
                 "renewed nor removed, and callers may compute the same key at once")
        try:
            self.etag = self._put(self._token, if_none_match=True)
        except FileExistsError:
            return  # refused, as it must be
        except OSError as exc:  # no answer now: check at a later lease
            store._conditions_checked = False
            logger.debug("cannot check conditional writes of %s: %s", store.location, exc)
            return
        warn(
            f"the server of S3 cache {store.location} ignores conditional writes (it "
            f"accepted an If-None-Match: * PUT of {self.name}, which exists): callers in "
            "other processes or on other machines may compute the same key at once. Use a "
            "server that honours them (AWS S3, MinIO, Cloudflare R2; moto 5.0.20+)"
        )

    def release(self) -> None:
        """Give the lease back; never raises (a lease that cannot be removed expires).

        What is released is forgotten only once it is removed, so that a release cut short
        by an interrupt (KeyboardInterrupt, a signal handler's exception) is finished by
        calling it again, as the decorator does, and by the store's renewer thread in case
        that call is cut short too. A write of the lease whose reply was lost (its ETag
        unknown) is found by the holding's token in its body."""
        with self._lock:  # no renewal from now on: the ETag stays the one removed
            self._ending = True
            etag, token = self.etag, self._token
        if not etag and not token:
            return
        store = self.store
        store._renewer.discard(self)
        if store._leases.get(self.entry) is self:
            del store._leases[self.entry]
        let_go = functools.partial(self._let_go, etag, token)
        # tried again at the renewer's rounds for as long as the lease would keep waiters,
        # this process's next caller of the key too (LEASE_TTL)
        try:
            store._renewer.attempt(let_go, LEASE_TTL)
        except BaseException:  # cut short: finished by the renewer's thread, uninterrupted
            store._renewer.finish(let_go, LEASE_TTL)
            raise
        self.etag, self._token = "", ""

    def _let_go(self, etag: str, token: str) -> bool:
        """Remove the lease (``_remove``); False if it is to be tried again."""
        try:
            if self._remove(etag, token):
                # waiters of this process (threads, tasks) skip their backoff: it is free now
                self.store._releases += 1
            elif not etag and token:
                # A write of this holding whose reply was never read (an interrupt as it
                # went; its ETag unknown) may still land after this look found no lease of
                # ours: the server may store it later (each request in a thread of its own:
                # seen on moto under load, the lease written just after the release looked,
                # then left for LEASE_TTL, every caller of the key waiting for it). Looked
                # for again at the renewer's rounds, for as long as a lease keeps waiters.
                return False
        except (ConnectionError, TimeoutError) as exc:
            # The server failed a moment ago, and the store fails fast for FAULT_BACKOFF:
            # perhaps a write of this lease whose reply was lost (the lease is ours all the
            # same).
            logger.debug("cannot release %s now: %s", self.name, exc)
            if etag:  # (if the server answers again only after these tries end)
                self._left_behind(etag)
            return False
        except PermissionError as exc:
            # Credentials that may write but not delete (a policy without s3:DeleteObject):
            # every miss leaves its lease, and neither prune nor clear can remove one.
            # Said once a store (before: logged at debug level only, the calls silent).
            # Not for expired or wrong credentials (their own advice: the next call says it)
            if etag:  # released all the same: this process's callers take it at once
                self._left_behind(etag)
                self.store._releases += 1
            if not self.store._delete_refused and _ACCESS_ADVICE in str(exc):
                self.store._delete_refused = True
                warn(f"S3 cache {self.store.location}: cannot remove a key's lease "
                     f"({exc.strerror}): each miss leaves its lease object "
                     "behind (a waiter takes a stale one over), and prune cannot remove "
                     "them; give these credentials s3:DeleteObject under the prefix")
        except OSError as exc:
            logger.debug("cannot release %s (it expires by itself): %s", self.name, exc)
        return True

    def _left_behind(self, etag: str) -> None:
        """This lease, released, may stay as written with ``etag`` (its removal refused or
        not answered): this process's next caller of the key takes it over at once, not
        after LEASE_TTL (``_try``). Before, every refresh of a key missed before waited
        LEASE_TTL under credentials without s3:DeleteObject, and the first call of a key
        after an outage that outlasted the release's tries."""
        left = self.store._left
        left.pop(self.name, None)
        left[self.name] = etag
        while len(left) > LEFT_MAX:
            left.pop(next(iter(left)), None)

    def _remove(self, etag: str, token: str) -> bool:
        """Remove the lease if it is still the one written with ``etag``, or any write of
        the holding of ``token``; True if removed. Refused, it looks again while each look
        finds a newer write of the holding (``_rewrites``): a renewal begun before the
        release (the renewer's round, outside ``_lock``) writes between the look and the
        delete. Before, that delete refused ended the release: the lease, just renewed,
        kept every caller of the key waiting ``LEASE_TTL``."""
        return any(self._delete_if(etag) for etag in self._rewrites(token, etag))

    def _delete_if(self, etag: str) -> bool:
        """Delete the lease if it still has ``etag``; True if it is gone (now or before),
        False if renewed (by a renewal whose reply was lost) or not ours any more. A
        server without conditional deletes would have left every waiter ``LEASE_TTL``
        seconds: ``delete_unchanged`` deletes unconditionally there, unless it changed."""
        bucket = self.store._bucket
        return bucket.delete_unchanged(self.name, etag) or bucket.head(self.name) is None

    # --- lock-order cycles between processes (see ``KeyLock.note_waiting``) ------------
    # ``<lease>.w.<token>``, one object per wait, says callers with the locks of the ids in
    # its body behind them wait for the lease: rewritten every ``LEASE_RENEW`` seconds while
    # the wait lasts, removed when it ends. A holder lists its lease's notes and reads those
    # the server dates younger than ``LEASE_TTL`` (one of a process that died is stale: the
    # first holder that lists it past ``LEASE_STALE`` removes it).

    def wait_id(self) -> int | None:
        """From the bucket and the lease's name."""
        return int(xxhash.xxh3_64_intdigest(f"{self.store._bucket.bucket}\0{self.name}".encode())
                   >> (64 - WAIT_ID_BITS))

    def note_waiting(self, behind: Collection[int], ends: list[Callable[[], None]]) -> None:
        note = self._note
        if note is None or note.ended:
            note = self._note = _WaitNote(self.store, self.name + NOTE_INFIX
                                          + secrets.token_hex(8))
            ends.append(note.end)  # before anything is sent: an interrupt leaves no note
            self.store._renewer.add(note)
        note.note(behind)

    def waiters(self) -> Collection[int]:
        if not self.etag:
            return ()
        # Only objects named and written as memojar notes waits: before, every object under
        # ``<lease>.w.`` dated older than LEASE_STALE was removed, whatever it was, and the
        # hex words of any other read as the ids of waiters
        store, found = self.store, set[int]()
        bucket, start = store._bucket, len(store.prefix)
        try:
            for listed in bucket.list(self.name + NOTE_INFIX):
                if not _NOTE.fullmatch(listed.name, start) or listed.size > LEASE_MAX:
                    continue  # not a wait memojar noted
                if listed.age > LEASE_STALE:
                    store._drop_stale(listed, _NOTE_BODY)  # a note of a waiter that died
                    continue
                if listed.age > LEASE_TTL:
                    continue  # not renewed: its waiter died, or is stuck
                got = bucket.get(listed.name, 0, LEASE_MAX)
                if got is None:
                    continue
                body = bytes(bucket.read_body(listed.name, got))
                if _NOTE_BODY.fullmatch(body):
                    found.update(int(word, 16) for word in body.split())
        except OSError as exc:
            logger.debug("cannot read the waits for %s: %s", self.name, exc)
        return found

    def disown(self) -> None:
        """In a forked child (``Renewer``): the parent's lease is not this process's, so
        the child's release leaves it alone; ``_lock`` is new (the parent's renewer may
        have held it at the fork)."""
        self._lock, self.etag, self._token = threading.RLock(), "", ""

    def renew(self) -> bool:
        """Extend the lease; False if it is no longer ours (it expired and was taken).

        A refused renewal is looked at before the lease is given up: a write of this
        holding whose reply was lost (an interrupt in the holder's renewal, a timeout)
        changed the ETag, and the lease is still ours: renewed from its new ETag.

        The requests are made outside ``_lock``. A request may wait for more than the
        server: botocore signs it under the credentials' refresh lock, which a signal
        handler's call in the refreshing thread keeps held while it runs; that call's
        release and its write's renewal took ``_lock``, held by the renewer's thread
        waiting for the refresh (a hang). Renewals, writes and a release at once are told
        apart by the holding's token: each is conditional on the ETag it read, and one
        refused finds the lease by the token (``_rewrites``, here and in ``_remove``).

        A second refusal whose look finds a newer write of the holding (the holder's renewal
        before its write and the renewer's round at once, the renewer's write landing
        before each of the holder's) is a write made since this renewal's first look: the
        lease is as fresh as this renewal would have made it. Before, it was taken for a
        lost lease (the value not stored; the renewer stopped renewing a held lease)."""
        with self._lock:
            etag, token = self.etag, self._token
            if not etag or self._ending:
                return True  # released meanwhile
        renewed = ""
        try:
            for look, found in enumerate(self._rewrites(token, etag)):
                if look == 2:  # written by the holding since the first look
                    renewed = found
                    break
                try:
                    renewed = self._put(token, if_match=found)
                    break
                except FileExistsError:
                    continue  # written since: whose is it now?
        except FileNotFoundError:
            return self._moved_on(token)
        except OSError as exc:  # keep trying until the lease expires
            logger.debug("cannot renew %s: %s", self.name, exc)
            return True
        if not renewed:  # expired and taken over, or released
            return self._moved_on(token)
        with self._lock:
            if self._token == token and not self._ending:
                self.etag = renewed
        return True

    def _rewrites(self, token: str, etag: str) -> Iterator[str]:
        """The ETags a request of the holding of ``token``, conditional on the lease's ETag,
        is made with: ``etag`` (when known), then, each time the caller asks for the next
        (its request was refused: the lease was written since), the lease's ETag at a new
        look while the lease is a write of that holding newer than the last refused one (a
        write whose reply was lost; a renewal at once, each made outside ``_lock``). Ends
        when the lease is not that holding's any more, or unchanged since the refusal, or
        after ``LEASE_LOOKS`` looks. Every request is made outside ``_lock``."""
        if etag:
            yield etag
        for _ in range(LEASE_LOOKS):
            found = self._ours(token)  # whose is it? (a write whose reply was lost is ours)
            if not found or found == etag:
                return
            yield (etag := found)

    def _moved_on(self, token: str) -> bool:
        """A renewal of the holding of ``token`` refused: True if that holding ended while
        it was made (released, or the lease taken again since: not this renewal's to give
        up), False if the lease was lost."""
        with self._lock:
            return self._ending or self._token != token


class _WaitNote:
    """A wait for a lease by a caller holding others (``_Lease.note_waiting``): the object
    ``name``, its body the ids behind the wait, written again at each renewal.

    No lock is held over a request. Before, the renewer's writes and the caller's notes and
    end took a mutex held over the write: a request may wait for the credentials' refresh
    lock, which a signal handler's call in the refreshing thread keeps held while it runs
    (as ``_Lease.renew`` says), and that call, noting or ending its wait, waited for the
    renewer's thread, which waited for the refresh: a hang. Writes made at once carry the
    ids each read (the renewer's next round writes the latest); a write that lands after
    the end removes the note again (``_write``)."""

    def __init__(self, store: S3Store, name: str) -> None:
        self.store, self.name = store, name
        self.ids: frozenset[int] = frozenset()
        self.ended = False
        self.written = False

    def note(self, behind: Collection[int]) -> None:
        ids = frozenset(behind)
        if self.ended or (ids == self.ids and self.written):
            return
        self.ids = ids
        self._write()

    def _write(self) -> None:
        body = " ".join(f"{i:08x}" for i in sorted(self.ids)).encode() + b"\n"
        try:
            self.store._bucket.put(self.name, [memoryview(body)], len(body))
        except OSError as exc:
            logger.debug("cannot note a wait (%s): %s", self.name, exc)
            return
        self.written = True
        if self.ended:  # ended while this write was under way: perhaps after its removal
            self.store._renewer.attempt(self._remove, LEASE_TTL)

    def renew(self) -> bool:
        if not self.ended:
            self._write()
        return True  # ended: dropped (a note is never "lost")

    def disown(self) -> None:
        """In a forked child: the parent's wait (left to end there, or to go stale)."""
        self.ended = True

    def end(self) -> None:
        """The wait is over: removed now (a coroutine calls this in a worker thread), else
        by the renewer's thread (a note left unrenewed is stale after ``LEASE_TTL``)."""
        self.ended = True  # no write from now on (one under way removes it: ``_write``)
        store = self.store
        store._renewer.discard(self)
        if not self.written:
            return
        remove = functools.partial(self._remove)
        try:
            store._renewer.attempt(remove, LEASE_TTL)
        except BaseException:
            store._renewer.finish(remove, LEASE_TTL)
            raise

    def _remove(self) -> bool:
        try:
            self.store._bucket.delete(self.name)
        except (ConnectionError, TimeoutError):
            return False
        except OSError as exc:
            logger.debug("cannot remove %s (it goes stale): %s", self.name, exc)
        return True


# --- helpers ---------------------------------------------------------------------------

def _after_fork() -> None:
    for bucket in list(_live):
        bucket._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


@functools.lru_cache(maxsize=4)
def _loader(data_path: str | None) -> Any:
    """botocore's loader of its service models, one per process: each session would load
    and keep its own copy of S3's (a client made by a new session costs about 12 MB and
    36,000 objects, in reference cycles that only the cycle collector frees, and 0.1 s).
    Each client still gets a session of its own, so credentials and configuration are read
    afresh for every Cache."""
    return botocore.loaders.create_loader(data_path)


class _PoolQueue(queue.LifoQueue[Any]):
    """The queue of a urllib3 pool's connections, its ``get`` and ``put`` without blocking
    (the only ones botocore's pools make) safe from interrupts. ``queue.LifoQueue`` takes
    its mutex through a ``Condition``, whose ``__enter__`` is Python: CPython runs signal
    handlers as the C acquire returns, before the ``with`` is entered, so a
    KeyboardInterrupt there left the mutex held for good, and every later request of the
    client (this process's next call, the renewer's renewals) blocked on it: a hang (a
    SIGINT loop on ``get`` and ``put`` alone leaves it held at about one interrupt in
    four, on 3.10 and 3.11). Nor may they take the mutex at all: a signal handler calling
    a cached S3 function while its thread was inside it (between the C acquire and the
    release) took it again for its own request, and waited on its own thread for ever
    (``setitimer`` every 3 ms calling one: hung within 15 s in 2 runs of 3). They take no
    lock: the deque's ``pop`` and ``append`` are single C calls, whole for threads and
    signal handlers alike; two threads putting back at once may keep one connection more
    than ``maxsize``, closed with the pool."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block:
            return super().get(block, timeout)
        try:
            return self.queue.pop()
        except IndexError:
            raise queue.Empty from None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if block:
            return super().put(item, block, timeout)
        if 0 < self.maxsize <= len(self.queue):
            raise queue.Full
        self.queue.append(item)


class _Pools(RecentlyUsedContainer[Any, Any]):
    """A urllib3 pool manager's pools by host, its ``get`` raising nothing while it holds
    the lock. urllib3's (``MutableMapping.get`` over ``__getitem__``) raised ``KeyError``
    inside its ``with self.lock:`` for a host without a pool yet (a client's first request,
    one after ``close``, or again and again while interrupts cut the pool's making short),
    and Python 3.10 runs a pending signal handler at the start of a ``with``'s exception
    handler, before ``__exit__``: a handler raising there (Ctrl-C) left the lock held for
    good, and every other thread's request, and the interpreter's exit, waited for ever (a
    signal storm on the main thread of thirteen: a hang in 1 run of about 10)."""

    def get(self, key: Any, default: Any = None) -> Any:
        with self.lock:
            pool = self._container.pop(key, _ABSENT)
            if pool is _ABSENT:
                return default
            self._container[key] = pool  # (the most recently used, as ``__getitem__``)
            return pool


_ABSENT = object()


def _safe_pools(manager: Any) -> Any:
    """``manager`` (a urllib3 pool manager), its pools kept in ``_Pools``."""
    pools = getattr(manager, "pools", None)
    if type(pools) is RecentlyUsedContainer:  # (a manager of another make: as it is)
        safe = _Pools(pools._maxsize, pools.dispose_func)
        with pools.lock:
            safe._container.update(pools._container)
        manager.pools = safe
    return manager


def _close_connections(client: Any) -> None:
    """Close the connections ``client`` holds idle. Its pools are dropped from its pool
    managers first (botocore's ``close``: a request starting now makes a new pool), then
    each one's idle connections are closed, their places left for new ones: urllib3 closes
    a dropped pool's connections only when it is freed, which a reference cycle (seen on
    3.13: every pool) puts off until the cycle collector runs. The pools are not closed: a
    request of another thread that took one just before connects anew. Before, they were,
    first: such a request failed ("Pool is closed", ``ClosedPoolError``), taken for a fault
    of the server, and every call of the cache stored nothing for ``FAULT_BACKOFF``. A
    connection a request holds now is closed when its pool is freed."""
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    managers = [getattr(session, "_manager", None),
                *getattr(session, "_proxy_managers", {}).values()]
    dropped = []
    for manager in managers:
        pools: Any = getattr(manager, "pools", None)
        if pools is None:
            continue
        for key in list(pools.keys()):
            pool = pools.get(key)  # (one another thread's request dropped meanwhile: None)
            if pool is not None:
                dropped.append(pool)
    close = getattr(client, "close", None)  # (botocore 1.20 and later)
    if callable(close):
        close()
    for pool in dropped:
        _close_idle(getattr(pool, "pool", None))


def _close_idle(idle: Any) -> None:
    """Close the connections the queue ``idle`` of a pool holds, a place (None: a new
    connection) put back for each (``_PoolQueue``: no lock, no wait)."""
    if idle is None:
        return
    taken = []
    with contextlib.suppress(queue.Empty):
        while True:
            taken.append(idle.get(block=False))
    for connection in taken:
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()
    with contextlib.suppress(queue.Full):
        for _ in taken:
            idle.put(None, block=False)


@functools.lru_cache(maxsize=8)
def _safe_pool(pool: type) -> type:
    """``pool`` (a urllib3 connection pool class) with a ``_PoolQueue``."""
    return type(pool.__name__, (pool,), {"QueueCls": _PoolQueue})


def _client(options: dict[str, str], timeout: float) -> Any:
    """An S3 client from the standard AWS configuration, URL options overriding."""
    config = botocore.config.Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        # one attempt: no call waits longer than ``timeout`` for the server (a fault costs
        # a hit or a store, never the caller's result). Standard mode, whatever the AWS
        # configuration says: adaptive mode (AWS_RETRY_MODE) adds a client-side rate
        # limiter, which notes every answer under a plain lock, and a signal handler's
        # request made while its thread was inside it waited for it for ever
        retries={"total_max_attempts": 1, "mode": "standard"},
        # entries carry their own checksum, checked before anything is unpickled
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if options.get("endpoint_url") or
        os.environ.get("AWS_ENDPOINT_URL") else None,
    )
    session = botocore.session.get_session()
    session.register_component("data_loader",
                               _loader(session.get_config_variable("data_path")))
    # botocore's session makes the client: boto3's would add its data folder to the shared
    # loader's search path once per Cache (a list growing for good)
    client = session.create_client(
        "s3",
        endpoint_url=options.get("endpoint_url"),
        region_name=options.get("region"),
        config=config,
    )
    # A single PUT carries an entry of at most multipart_threshold bytes (or a lease):
    # "Expect: 100-continue" would cost it a round trip more. Parts keep it.
    expect = getattr(botocore.handlers, "add_expect_header", None)
    if expect is not None:

        def expect_for_parts(model: Any, params: Any, **kwargs: Any) -> None:
            if getattr(model, "name", "") != "PutObject":
                expect(model, params, **kwargs)

        client.meta.events.unregister("before-call.s3", expect)
        client.meta.events.register("before-call.s3", expect_for_parts)
    # botocore's region redirector follows an answer that redirects (a bucket in another
    # region) to the region the answer names, or else a HeadBucket names; memojar sends no
    # HeadBucket, so one is that look, whose own redirect is not followed: behind a proxy
    # redirecting every request (``http://`` to ``https://``), it asked again and again
    # until a RecursionError (81 requests) ended the call. The redirect is then an error
    # that says so (``_errors``).
    client.meta.events.register("before-call.s3.HeadBucket", _no_redirect)
    credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    _refresh_reentered(credentials)
    current = _fetched(credentials)
    if current is not None:  # (none: each request is refused, a warning)
        _check_credentials(current, str(getattr(credentials, "method", "")))
    # Its pools' queues safe from interrupts (``_PoolQueue``): botocore's session keeps the
    # classes its pool managers make pools of (proxies' too) in a dict of its own.
    http: Any = getattr(client._endpoint, "http_session", None)
    classes = getattr(http, "_pool_classes_by_scheme", None)
    if isinstance(classes, dict):
        for scheme, pool in list(classes.items()):
            if isinstance(pool, type):
                classes[scheme] = _safe_pool(pool)
    # and its pool managers' tables of pools (``_Pools``): the one made now, and each
    # proxy's as botocore makes it, at its first request through that proxy
    _safe_pools(getattr(http, "_manager", None))
    proxy_manager = getattr(http, "_get_proxy_manager", None)
    if callable(proxy_manager):
        http._get_proxy_manager = lambda url: _safe_pools(proxy_manager(url))
    return client


_LOCK = type(threading.Lock())


class _Refreshing:
    """Refreshable credentials (botocore's: temporary ones, from a credential process, a
    role, SSO, an instance's metadata) whose refresh a signal handler's request, run inside
    it on the same thread, leaves alone. botocore refreshes them under a plain lock, which
    such a request, its credentials within ten minutes of their expiry, waited for: its
    own thread's, for ever (a hang). The lock is reentrant here, and a request made while
    its thread holds it signs with the credentials as they are (valid, or expired: then
    the server refuses that one request, and the call computes); before, made inside the
    refresh, it would have refreshed them again in the middle of the first refresh, which
    sets the key, the secret and the token one at a time (a mix of the two)."""

    _refresh_lock: Any
    method: str

    def _refresh(self) -> None:
        if self._refresh_lock._is_owned():  # this thread's refresh, a handler run inside
            return
        try:
            super()._refresh()  # type: ignore[misc]
        except _SOURCE_FAULTS as exc:
            # what a credential process's odd output raises in botocore (a list:
            # AttributeError; a numeric Expiration: TypeError; one already past:
            # RuntimeError; a program gone: FileNotFoundError, taken for a missing
            # object), said as botocore's own error. (An OSError without an errno is a
            # signal handler's, the caller's: left as it is.)
            if (isinstance(exc, OSError) and exc.errno is None) or the_callers(exc):
                raise
            raise _retrieval_error(self.method, f"{type(exc).__name__}: {exc}") from exc

    def get_frozen_credentials(self) -> Any:
        # refreshed to unusable ones (a credential process printing "AccessKeyId": null):
        # the signer's TypeError went out of every call, the function never run
        frozen = super().get_frozen_credentials()  # type: ignore[misc]
        _check_credentials(frozen, self.method)
        return frozen


@functools.lru_cache(maxsize=8)
def _refreshing(kind: type) -> type:
    """``kind`` (a class of botocore's refreshable credentials) with ``_Refreshing``."""
    return type(kind.__name__, (_Refreshing, kind), {})


def _refresh_reentered(credentials: Any) -> None:
    """Make ``credentials`` a ``_Refreshing`` (refreshable ones of a botocore that
    refreshes them under a plain ``_refresh_lock``; others are left as they are)."""
    if (type(getattr(credentials, "_refresh_lock", None)) is _LOCK
            and callable(getattr(credentials, "_refresh", None))
            and not isinstance(credentials, _Refreshing)):
        credentials._refresh_lock = threading.RLock()
        credentials.__class__ = _refreshing(credentials.__class__)


# What a credential source's broken output or a client's making raises besides botocore's
# own errors (``_Refreshing``, ``_Bucket._made``)
_SOURCE_FAULTS = (ValueError, TypeError, AttributeError, LookupError, OSError, RuntimeError)


def _retrieval_error(method: str, why: str) -> Exception:
    """botocore's ``CredentialRetrievalError`` for the source ``method``, saying ``why``."""
    error: Exception = botocore.exceptions.CredentialRetrievalError(
        provider=method or "the AWS configuration", error_msg=why)
    return error


def _fetched(credentials: Any) -> Any:
    """The credentials as they were fetched, with no refresh and no request (a role's,
    web identity's or SSO's, fetched at their first use, asked nothing here: a service
    out of reach now costs the calls a warning, not ``Cache()`` an error); None if none
    were fetched yet."""
    if credentials is None or isinstance(
            credentials, botocore.credentials.DeferredRefreshableCredentials):
        return None
    if isinstance(credentials, botocore.credentials.RefreshableCredentials):
        return types.SimpleNamespace(access_key=getattr(credentials, "_access_key", None),
                                     secret_key=getattr(credentials, "_secret_key", None),
                                     token=getattr(credentials, "_token", None))
    return credentials.get_frozen_credentials()


def _check_credentials(frozen: Any, method: str) -> None:
    """Raise botocore's ``CredentialRetrievalError`` for credentials no request can be
    signed with (a key that is not text, or empty): a credential process's JSON with
    null fields gave them, and the signer's ``TypeError`` went out of every call. So
    too for a control character in a key or the token (never shown: it is a secret)."""
    for field in ("access_key", "secret_key"):
        value = getattr(frozen, field, None)
        if not isinstance(value, str) or not value:
            raise _retrieval_error(method, f"its {field} is {value!r}, not a key")
    token = getattr(frozen, "token", None)
    if token is not None and not isinstance(token, str):
        raise _retrieval_error(method, f"its session token is {type(token).__name__}, not text")
    for field, (variable, output, setting) in _KEY_NAMES.items():
        value = getattr(frozen, field, None)
        bad = _CONTROL.search(value) if isinstance(value, str) else None
        if bad is not None:
            named = (variable if method == "env" else f"{output} of its output"
                     if method == "custom-process" else setting)
            raise _retrieval_error(
                method, f"its {field} ({named}) has a control character in it "
                f"({bad.group()!r}, character {bad.start() + 1} of {len(bad.string)}), which "
                "no request can carry: remove it (a newline read with it from a file?)")


# where each part of the credentials is set: its environment variable (botocore's source
# "env"), its field in a credential process's output ("custom-process"), its setting in
# ~/.aws/credentials and ~/.aws/config (the others' are not the user's to edit)
_KEY_NAMES = {"access_key": ("AWS_ACCESS_KEY_ID", "AccessKeyId", "aws_access_key_id"),
              "secret_key": ("AWS_SECRET_ACCESS_KEY", "SecretAccessKey",
                             "aws_secret_access_key"),
              "token": ("AWS_SESSION_TOKEN", "SessionToken", "aws_session_token")}


def _no_redirect(context: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """A request botocore's region redirector does not redirect (``_client``)."""
    redirect = (context or {}).get("s3_redirect")
    if isinstance(redirect, dict):
        redirect["redirected"] = True


def _parse(location: str) -> tuple[str, str, dict[str, str]]:
    """Bucket, prefix (empty or ending in "/") and memojar's options of an s3:// URL.

    A mistyped URL is an error here, at ``Cache()``, never a cache that warns at every
    call or one on another server than the URL names: the server's host where the bucket
    goes (``s3://minio:9000/bucket``), credentials in it, a ``#`` (which would drop what
    follows it, the query's ``endpoint_url`` too), an empty option, an
    ``endpoint_url`` that is not an http(s) URL, a prefix that is not text or too long for
    S3's object names."""
    shown = redact(location)
    parts = urlsplit(location)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"cache location {shown!r} is not an s3://BUCKET/PREFIX URL")
    if "#" in location:
        raise ValueError(
            f"cache location {shown!r} has a '#': an s3:// URL has none (what follows it, "
            "the query's options too, would be dropped); a prefix cannot hold one"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise UnknownOption(f"cache location {shown!r}: unknown option(s) "
                            f"{', '.join(unknown)} (known: {', '.join(_OPTIONS)})", unknown[0])
    for name in options:  # given twice: the last one counts, as in a dict
        if not options[name]:
            raise ValueError(f"cache location {shown!r}: option {name} is empty")
    if not _BUCKET.fullmatch(parts.netloc):
        bucket = urlsplit(shown).netloc  # without a password
        raise ValueError(
            f"cache location {shown!r}: bucket {bucket!r} is not a valid S3 bucket name "
            "(letters, digits, '.', '-', '_'); the server goes in "
            "?endpoint_url=http://HOST:PORT, credentials in the AWS environment "
            "(AWS_ACCESS_KEY_ID, AWS_PROFILE, ...)"
        )
    endpoint = options.get("endpoint_url")
    if endpoint is not None:
        _check_endpoint(shown, endpoint)
    prefix = parts.path.strip("/")
    try:  # object names are UTF-8: a lone surrogate (a byte not UTF-8 on the command line)
        prefix.encode()  # failed every request ("the server failed")
    except UnicodeEncodeError:
        raise ValueError(f"cache location {shown!r}: the prefix {prefix!r} is not valid "
                         "text (S3 names objects in UTF-8)") from None
    room = KEY_MAX - _LONGEST_NAME - 1  # bytes of a prefix (its "/" after it)
    if len(prefix.encode()) > room:  # before: taken, and S3 refused every name under it
        raise ValueError(
            f"cache location {shown[:60]!r}...: the prefix is {len(prefix.encode()):,} "
            f"bytes long (in UTF-8); S3 names an object in at most {KEY_MAX:,} bytes, and "
            f"the cache's names under the prefix take up to {_LONGEST_NAME + 1} of them: "
            f"use a prefix of at most {room} bytes")
    return parts.netloc, (prefix + "/" if prefix else ""), options


def _check_endpoint(shown: str, endpoint: str, name: str = "endpoint_url") -> None:
    """Refuse an ``endpoint_url`` botocore would take and then fail every request with
    (or one it refuses without saying whose): not http(s), a port out of range or not a
    number ("Custom endpoint ... was not a valid URI" at each call), port 0, a user and
    password (shown in every message: they are redacted here), a broken IPv6 address
    (``urlsplit``'s bare "Invalid IPv6 URL"), a query string or a fragment (botocore's "not
    a valid URI" at each call)."""
    shown_endpoint = redact(endpoint)
    try:
        where = urlsplit(endpoint)
        port = where.port
    except ValueError as exc:  # "Port out of range 0-65535", "Invalid IPv6 URL", ...
        raise ValueError(f"cache location {shown!r}: {name} {shown_endpoint!r} is not "
                         f"a valid URL ({exc})") from None
    if where.scheme not in ("http", "https") or not where.netloc:
        raise ValueError(f"cache location {shown!r}: {name} {shown_endpoint!r} is not "
                         "an http:// or https:// URL (e.g. http://127.0.0.1:9000)")
    if where.username is not None or where.password is not None:
        raise ValueError(f"cache location {shown!r}: {name} {shown_endpoint!r} has "
                         "credentials in it: they come from the AWS environment "
                         "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...)")
    if not where.hostname or port == 0:
        raise ValueError(f"cache location {shown!r}: {name} {shown_endpoint!r} names "
                         "no server (e.g. http://127.0.0.1:9000)")
    if where.query or where.fragment:
        # botocore took it, then refused every request ("Custom endpoint ... was not a
        # valid URI"), each call warning that the server had failed
        raise ValueError(f"cache location {shown!r}: {name} {shown_endpoint!r} has a "
                         f"{'query string' if where.query else 'fragment (#)'} in it: an "
                         "endpoint is a server's URL alone, http(s)://HOST[:PORT][/PATH]; "
                         "remove what follows the path")


def _check_client(shown: str, client: Any, bucket: str, given: bool) -> None:
    """Refuse a client (made from the AWS configuration, or ``given`` by the user) whose
    every request would fail before it is sent, blamed on the server at each call: an
    endpoint botocore's rules refuse (S3 Transfer Acceleration with a custom endpoint), a
    CA bundle that is not a file of certificates, a proxy URL that is not one. No request
    is made: each is what botocore itself would find at the first request."""
    endpoint = _resolved_endpoint(shown, client, bucket)
    http = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if http is None:  # not botocore's client (a wrapper of tests): its requests tell
        return
    if endpoint.lower().startswith("https:"):  # (an http:// endpoint's bundle is unused)
        _check_ca_bundle(shown, getattr(http, "_verify", None), given)
    _check_proxy(shown, client, endpoint, getattr(http, "_proxy_config", None), given)


def _resolved_endpoint(shown: str, client: Any, bucket: str) -> str:
    """The URL botocore's endpoint rules give a request of ``bucket`` (resolved here, as
    each request does, without sending one), or the ``ValueError`` that says why none."""
    meta = getattr(client, "meta", None)
    endpoint = str(getattr(meta, "endpoint_url", "") or "")
    resolve = getattr(client, "_resolve_endpoint_ruleset", None)
    if meta is None or not callable(resolve):
        return endpoint
    try:
        operation = meta.service_model.operation_model("HeadObject")
        url, _, _ = resolve(operation, {"Bucket": bucket, "Key": "k"}, {})
    except botocore.exceptions.BotoCoreError as exc:
        s3 = getattr(meta.config, "s3", None) or {}
        if s3.get("use_accelerate_endpoint"):
            raise ValueError(
                f"cache location {shown!r}: use_accelerate_endpoint is on (the s3 settings "
                f"of the AWS configuration), and botocore cannot use it here ({exc}): S3 "
                "Transfer Acceleration is AWS's own endpoint, for a bucket whose name has "
                "no dots; set use_accelerate_endpoint = false in the profile's s3 "
                "settings, or leave the endpoint out (endpoint_url, AWS_ENDPOINT_URL)"
            ) from None
        raise ValueError(
            f"cache location {shown!r}: botocore cannot make a request of bucket "
            f"{bucket!r} from these settings ({type(exc).__name__}: {exc}); see the "
            "endpoint_url and region options, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION and the "
            "s3 settings of ~/.aws/config") from None
    except Exception as exc:  # another botocore's internals: its requests will say
        if the_callers(exc):
            raise
        return endpoint
    return str(url or endpoint)


_BUNDLES_CHECKED: set[tuple[str, int, int, int, int]] = set()  # (``_check_ca_bundle``)


def _check_ca_bundle(shown: str, verify: Any, given: bool) -> None:
    """Refuse a CA bundle (``AWS_CA_BUNDLE``, ``ca_bundle``) that is not a file of
    certificates: botocore took it, and every request to an https:// endpoint failed
    loading it (a missing file: "the server failed")."""
    if not isinstance(verify, str):  # True: botocore's own bundle; False: not verified
        return
    try:
        # A bundle checked once per process as the file is (a Cache() made again, a
        # second location, a worker's unpickled cache): loading one of the size of
        # certifi's or the system's took 20-45 ms each time, on top of botocore's own
        # load at the first request
        seen = os.stat(verify)
        version = (verify, seen.st_dev, seen.st_ino, seen.st_size, seen.st_mtime_ns)
        if version in _BUNDLES_CHECKED:
            return
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=verify)
        _BUNDLES_CHECKED.add(version)
    except (OSError, ValueError) as exc:  # (ssl.SSLError is an OSError)
        if the_callers(exc):  # a signal handler's (its TimeoutError)
            raise
        why = ("there is no such file" if isinstance(exc, FileNotFoundError)
               else getattr(exc, "strerror", None) or str(exc))
        where = ("the client's verify" if given else "AWS_CA_BUNDLE"
                 if os.environ.get("AWS_CA_BUNDLE") else "ca_bundle in the AWS configuration "
                 "(~/.aws/config)")
        raise ValueError(
            f"cache location {shown!r}: {where} {verify!r} is not a file of CA certificates "
            f"({why}), which every https:// request is verified with: name a PEM file of "
            "them, or unset it (botocore's own bundle is used then)") from None


def _check_proxy(shown: str, client: Any, endpoint: str, config: Any, given: bool) -> None:
    """Refuse a proxy URL (``HTTPS_PROXY`` or ``HTTP_PROXY`` for the endpoint's scheme, or
    a given client's ``proxies``) that urllib3 cannot connect through: botocore took it,
    and every request failed parsing it ("Failed to parse: ..."), blamed on the server."""
    proxy_url_for = getattr(config, "proxy_url_for", None)
    if not callable(proxy_url_for):
        return
    proxy = proxy_url_for(endpoint)  # botocore's: the environment's (NO_PROXY honoured)
    if not proxy:
        return
    scheme = urlsplit(endpoint).scheme.lower()
    proxies = getattr(getattr(getattr(client, "meta", None), "config", None), "proxies", None)
    if given and proxies:
        where, value = f"the client's proxies[{scheme!r}]", str(proxies.get(scheme) or proxy)
    else:
        where = next((name for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
                      if os.environ.get(name)), f"{scheme.upper()}_PROXY")
        value = os.environ.get(where) or proxy
    problem = ""
    given_scheme = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", value)
    try:
        parts = urlsplit(proxy)
        parts.port  # noqa: B018 - a port out of range or not a number raises
        urllib3.util.parse_url(proxy)
    except ValueError as exc:  # (urllib3's LocationParseError is one)
        if the_callers(exc):
            raise
        problem = str(exc)
        # (the parser's words quote a piece of what it could not read: with a user and
        # password, a piece of the password, "Port could not be cast to integer value as
        # 'S3cret'" for http://alice:S3cret#1@proxy:8080; never shown)
        userinfo = value.partition("://")[2].rpartition("@")[0] if "://" in value else (
            value.rpartition("@")[0])
        if userinfo:
            probe = proxy.replace(userinfo, "user:password", 1)
            try:  # the same URL with a plain user and password: what else is wrong
                urlsplit(probe).port  # noqa: B018
                urllib3.util.parse_url(probe)
            except ValueError as again:
                problem = str(again)
            else:
                odd = sorted({c for c in userinfo if c in "#?/@ "})
                problem = ("its user name or password cannot be read; " + (
                    f"{', '.join(map(repr, odd))} in them must be written "
                    f"{', '.join(f'%{ord(c):02X}' for c in odd)}" if odd else
                    "percent-encode what a URL cannot hold as it is"))
    else:
        if given_scheme is not None and given_scheme.group(1).lower() not in ("http",
                                                                              "https"):
            # botocore puts http:// before it: socks5://h:1080 is the host "socks5"
            problem = ("botocore speaks to http:// and https:// proxies only, not "
                       f"{given_scheme.group(1)}://")
        elif parts.scheme not in ("http", "https") or not parts.hostname:
            problem = "not an http:// or https:// URL of a server"
    if not problem:
        return
    raise ValueError(
        f"cache location {shown!r}: the proxy {where} {redact(value)!r} is not a proxy's "
        f"URL ({problem}): set it to http://HOST:PORT, unset it, or add the endpoint's host "
        "to NO_PROXY")


def _caught(do: Callable[[StoredEntry], Any], entry: StoredEntry) -> Any:
    """``do(entry)``, or the ``ConnectionError`` it raised (``S3Store._each``)."""
    try:
        return do(entry)
    except ConnectionError as exc:
        return exc


def _length(response: dict[str, Any]) -> int:
    """The object's length, or -1 if the answer had no Content-Length (a chunked one)."""
    length = response.get("ContentLength")
    return -1 if length is None else int(length)


def _read1(got: _Got) -> Callable[[int], bytes]:
    """What reads a streamed body a piece at a time: urllib3's ``read1``, which returns
    whatever has arrived (botocore's ``read`` returns only once it has every byte asked
    for, so the time could not be checked as the body comes); botocore's without it."""
    raw = getattr(got.body, "_raw_stream", None)  # botocore StreamingBody's urllib3 response
    read: Callable[[int], bytes] = getattr(raw, "read1", None) or got.body.read
    return read


def _server_now(response: dict[str, Any]) -> float:
    """The server's time of an answer (its Date), or this machine's where it says none."""
    try:
        date = email.utils.parsedate_to_datetime(
            response["ResponseMetadata"]["HTTPHeaders"]["date"])
    except (KeyError, TypeError, ValueError):
        return time.time()
    if date.tzinfo is None:  # "-0000": UTC, by RFC 5322
        date = date.replace(tzinfo=datetime.timezone.utc)
    return date.timestamp()


def _age(response: dict[str, Any]) -> float:
    """Seconds between an object's Last-Modified and the response's Date (server time)."""
    try:
        date = response["ResponseMetadata"]["HTTPHeaders"]["date"]
        now = email.utils.parsedate_to_datetime(date)
        modified: datetime.datetime = response["LastModified"]
        return (now - modified).total_seconds()
    except (KeyError, TypeError, ValueError):
        return 0.0

