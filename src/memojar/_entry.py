"""The entry format: one result as a pickle stream, its header riding in front.

An entry is a valid pickle stream (the file store names it ``<key>.pkl``): it opens with
``PROTO 5``, pushes the whole header as one ``BINBYTES`` object and drops it with ``POP``,
then runs the payload's own opcodes. ``pickle.load(open(entry, "rb"))`` on an entry without
out-of-band buffers gives the value (the header is pushed and popped, the bytes after
``STOP`` are never read). An entry with out-of-band buffers (numpy arrays of any size, so
pandas frames, and ``pickle.PickleBuffer``; bytes and bytearrays are pickled in band) keeps
them after the stream, each at a 64-byte aligned offset so that a mapped entry is loaded
without copying them; ``pickle.load`` on such an entry raises ``pickle.UnpicklingError``
("pickle stream refers to out-of-band data but no *buffers* argument was given"): memojar
reads them, or pass ``buffers=`` the spans the header lists.
Writing them in band (``BYTEARRAY8``) would cost the alignment, hence the zero-copy hit.

memojar itself never runs the stream to read it: it parses the header at fixed offsets, and
everything the header promises is checked before a single pickle opcode runs: the opcodes
around the header and its length, the magic and format version, the file's exact length, an
xxh3 checksum of everything after it, the function, key, user version, code fingerprint,
Python and pickle protocol it was written for, its expiry, and (with a secret) an
HMAC-SHA256. Only then is the payload unpickled. This module knows nothing of files or
servers: it turns values into bytes and bytes back into values.

Layout (little-endian), every field at a fixed offset or one the lengths give::

    0x80 0x05 (PROTO 5) | "B" (BINBYTES) | header_len u32           LEAD, 7 bytes
    header, header_len bytes, the BINBYTES object:
    magic "MJAR" | format u16 | flags u16 | checksum u64            PREFIX, 16 bytes
    created f64 | expires f64 (0 = never) | compute_time f64
      | payload_len u64 | ident_len u32 | nbuffers u32              FIXED, 40 bytes
    ident: function \\0 version \\0 fingerprint \\0 python \\0 protocol \\0 scope
      [\\x1e manifest] [\\x1f result classes]   (see ``manifest``; ident_len covers all)
    key: 32 hex digits
    nbuffers x u64 buffer lengths
    signature: 32 bytes, when flags & SIGNED
    "0" (POP: the header is dropped)
    payload (pickle protocol 5, ending in STOP), then each buffer at a 64-byte aligned offset

The checksum covers every byte after it (from the fixed part to the end), in one pass. The
lead and prefix check themselves: the opcodes, magic and format must match, flags may hold
no unknown bit, header_len must be what the other lengths add up to (so the POP sits where
memojar reads it, and ``pickle.load`` skips exactly the header), and a flipped SIGNED bit
moves every offset after it, which the exact-length check catches. The signature covers
every byte but the checksum and itself.
"""

from __future__ import annotations

import functools
import io
import math
import pickle
import struct
import sys
import threading
import time
from collections.abc import Callable
from types import FunctionType
from typing import Any, NamedTuple

import xxhash

MAGIC = b"MJAR"
FORMAT_VERSION = 4  # 3: no pickle lead, the header bare at offset 0; 2: no scope in the
# ident; 1: the checksum also covered the prefix
PROTOCOL = 5
SIGNED = 1
# The Python an entry is written by, in its header and identity: the version, and the
# optimisation flag of a run with one (``3.11 -O``, ``3.11 -OO``). ``-O`` strips a function's
# ``assert`` (and ``if __debug__:``) from its code, so its fingerprint is another than a plain
# run's: named the same Python, the first store of either swept the other's entries as older
# code, and ``prune`` removed them as superseded. Another Python's are kept (``judge``).
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}" + (
    f" -{'O' * sys.flags.optimize}" if sys.flags.optimize else "")
KEY_LEN = 32
SIG_LEN = 32
ALIGN = 64

# Seconds an expiring entry's creation may lie ahead of this clock and still count: another
# machine's clock a little ahead, an NTP step back. An entry created later than that cannot
# tell its age (written by a clock far ahead, or before this clock was set back): it is
# stale, never served up to that much longer than its ``ttl``.
CLOCK_SKEW = 1.0

_OPEN = b"\x80\x05B"  # PROTO 5, then BINBYTES (its u32 length follows)
_POP = 0x30  # the POP opcode, b"0"
_LEAD = struct.Struct("<3sI")
_LEAD_LEN = _LEAD.size
_PREFIX = struct.Struct("<4sHHQ")
_FIXED = struct.Struct("<dddQII")
_LEN = struct.Struct("<Q")
HEAD = _LEAD.size + _PREFIX.size + _FIXED.size  # bytes to read before the rest's size is known
# _LEAD, _PREFIX and _FIXED at once, for ``verify``: magic, format and flags read as one u64
# and checked in one comparison (unpacking costs by the field, more than the lead adds).
_HEAD = struct.Struct("<3sIQQdddQII")
_PLAIN = int.from_bytes(MAGIC + FORMAT_VERSION.to_bytes(2, "little") + b"\0\0", "little")
_SIGNED = _PLAIN | SIGNED << 48
_LEAD_PREFIX = struct.Struct("<3sI4sHHQ")
_IDENT_AT = HEAD
FORMAT_AT = _LEAD.size + 4  # offsets of the prefix's fields, for tools and tests
FLAGS_AT = FORMAT_AT + 2
CHECKSUM_AT = FLAGS_AT + 2
_SUMMED_AT = CHECKSUM_AT + 8  # the checksum covers every byte from here on


MANIFEST = b"\x1e"  # starts the dependency manifest, the ident's last part
CLASSES = b"\x1f"  # starts the result classes an entry adds after the ident


def manifest(rows: Any) -> bytes:
    """The ident's record of what the fingerprint covers, for ``cache_explain``: one
    ``kind name fingerprint`` line a dependency (names hold no space, NUL or separator),
    compressed when long (50 dependencies take about a kilobyte, not four).

    The fingerprint field already covers it; it rides with the ident (compared with it on
    the hit path, in the same single comparison) so that an entry can say what changed."""
    # (a module named with a lone surrogate, a file's name not UTF-8: escaped, as
    # ``_identity.encodable`` names it; before, UnicodeEncodeError at the first call)
    text = "\n".join(" ".join(row) for row in rows).encode("utf-8", "backslashreplace")
    if len(text) > _SMALL_MANIFEST:  # many dependencies: compressed, in base85 (no separator)
        import base64
        import zlib

        text = b"z" + base64.b85encode(zlib.compress(text, 9))
    return MANIFEST + text


_SMALL_MANIFEST = 200  # bytes; a function with a few dependencies keeps them readable


def parse_rows(text: str) -> dict[str, tuple[str, str]]:
    """A manifest's or result-classes section's lines as ``{name: (kind, fingerprint)}``
    (of rows sharing a name, the last)."""
    return {name: (kind, fingerprint) for kind, name, fingerprint in row_list(text)}


def row_list(text: str) -> list[tuple[str, str, str]]:
    """A manifest's or result-classes section's lines as ``(kind, name, fingerprint)``,
    every one (two may share a name: a decorator's wrapper and the function it wraps)."""
    if text.startswith("z"):
        import base64
        import zlib

        try:
            text = zlib.decompress(base64.b85decode(text[1:])).decode()
        except (ValueError, zlib.error):
            return []
    rows = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 3:
            rows.append((parts[0], parts[1], parts[2]))
    return rows


class Miss(Exception):
    """An entry that must not be used; ``reason`` says why (for the debug log and ``prune``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def version_tag(version: object) -> str:
    """The header's spelling of a user ``version``: ``1`` and ``"1"`` stay different."""
    if version is None:
        return ""
    if type(version) not in (int, str):
        raise TypeError(
            f"version= must be a str or an int, not {type(version).__name__} ({version!r})"
        )
    return f"{type(version).__name__}:{version}"


def _split_ident(ident: str) -> list[str]:
    """The six fields of an identity: function, version, fingerprint, python, protocol, scope.

    A function name may hold NUL (the separator): the last four fields never do, and a
    version tag is empty or starts with its type."""
    rest, *tail = ident.rsplit("\0", 4)
    for at in range(len(rest)):
        if rest[at] == "\0" and (at == len(rest) - 1 or rest[at + 1 : at + 5] in ("int:", "str:")):
            return [rest[:at], rest[at + 1 :], *tail]
    raise ValueError("an identity of six fields")


def make_ident(function: str, version: object, fingerprint: str, scope: str = "") -> bytes:
    """The header's identity of a function's entries, built once at decoration time.

    ``scope`` is where a function of ``__main__`` was defined (its script or notebook, see
    ``_identity.scope_of``); empty for importable modules.
    """
    parts = (function, version_tag(version), fingerprint, PYTHON, str(PROTOCOL), scope)
    return "\0".join(parts).encode()


def key_seed(scope: str, python: str = PYTHON, fmt: int = FORMAT_VERSION) -> int:
    """The seed that salts a function's keys: the entry format, Python version and scope.

    Entries of two Python versions, or of two scripts or notebooks defining the same
    ``__main__`` function, get different keys for the same arguments, so they live at
    different places in the store and never replace or evict each other; so do entries of
    another entry format (an older or newer memojar sharing the cache). Picked once per
    decorated function: a seeded hash costs what an unseeded one does.

    An interpreter run with ``-O`` or ``-OO`` (``python``'s flag) keys apart too: ``-OO``
    strips docstrings, which the code's fingerprint leaves out, so a function returning one
    (``Model.__doc__``, a schema built from them) returned ``None`` to a plain run sharing
    the cache, or the docstring to an ``-OO`` run; ``-O`` strips assertions of library code,
    which is not fingerprinted. A plain run's keys are as before (and so are an ``-O``
    run's, salted with its flag as they were before it was in ``PYTHON``).
    """
    version, _, flag = python.partition(" ")
    text = f"{fmt}\0{version}\0{scope}"
    if flag:
        text += f"\0-O{flag.count('O')}"
    return xxhash.xxh3_64_intdigest(text.encode())


def ident_digest(ident: bytes) -> str:
    """A short digest of an ident, for notes kept beside entries."""
    return xxhash.xxh3_64_hexdigest(ident)


class Header(NamedTuple):
    """What an entry says about itself, read without touching its payload."""

    function: str
    version: str
    fingerprint: str
    python: str
    protocol: int
    key: str
    created: float
    expires: float | None
    compute_time: float
    size: int  # the whole entry's length, as the header promises it
    format: int = FORMAT_VERSION
    ident: bytes = b""  # function, version, fingerprint, python, protocol, scope, as stored
    scope: str = ""  # the script or notebook of a __main__ function; "" for modules
    manifest: str = ""  # what the fingerprint covers, ``kind name fingerprint`` lines
    classes: str = ""  # the user's classes the result holds, ``class name fingerprint`` lines

    def incompatible(self) -> str | None:
        """Why no process of this Python could use the entry (another interpreter may), or
        None."""
        if self.python != PYTHON:
            return f"written by Python {self.python}"
        if self.protocol > pickle.HIGHEST_PROTOCOL:
            return f"pickle protocol {self.protocol}"
        return None

    def stale(self, now: float) -> bool:
        return expired(now, self.created, self.expires or 0.0)


def expired(now: float, created: float, expires: float, ttl: float | None = None,
            grace: float = 0.0) -> bool:
    """Whether an entry created at ``created``, expiring at ``expires`` (and ``ttl`` seconds
    after ``created`` if given), is stale at ``now``, ``grace`` seconds of staleness allowed.

    The one reading of a header's times, for the hit path (``make_reader``), ``verify``,
    listings, ``prune`` and ``cache_explain`` alike: an ``expires`` of 0 is never; any other
    is the time the entry is stale from, so one before ``now`` (a negative one: 1969) has
    expired, and one that is no time (NaN, infinite: a header written by hand or damaged,
    which ``read_header`` refuses) is stale too. An entry that expires is stale too once
    created later than ``now`` by more than ``CLOCK_SKEW`` (its age is unknown), or at no
    time. Before, listings and ``prune`` took an expiry of 0 or less as never, and the hit
    path took a negative one as expired."""
    if not expires and ttl is None:
        return False
    late = now - grace
    return ((expires != 0.0 and not late < expires < math.inf)
            or (ttl is not None and not late < created + ttl)
            or not -math.inf < created - CLOCK_SKEW <= now)


def encode(
    value: Any,
    *,
    ident: bytes,
    key: str,
    created: float,
    expires: float | None,
    compute_time: float,
    secret: bytes | None = None,
    result_classes: Callable[[set[Any]], bytes] | None = None,
) -> list[Any]:
    """Serialise ``value`` into the chunks of one entry (write them in order).

    ``result_classes``, if given, is called with the classes the value holds (every class,
    every function pickled by reference, such as one a ``__reduce__`` names to rebuild an
    object, and every type of an object the pickler did not handle natively) and returns the
    result-classes section to add after the ident (``CLASSES`` + lines), or ``b""``.
    Raises what pickle raises for a value that cannot be pickled.
    """
    buffers: list[pickle.PickleBuffer] = []
    if result_classes is None:
        payload = pickle.dumps(value, PROTOCOL, buffer_callback=buffers.append)
    else:
        payload, classes = _dumps_seeing_classes(value, buffers)
        if classes:  # a plain result (dicts, lists, numbers, str) meets no class
            ident += result_classes(classes)
    if buffers:
        raws = [_raw(b) for b in buffers]
        buffers.clear()  # (see ``release_views``) the raw views hold the arrays' buffers
        variable = ident + key.encode() + b"".join(_LEN.pack(r.nbytes) for r in raws)
    else:
        raws = []
        variable = ident + key.encode()
    fixed = _FIXED.pack(
        created, expires or 0.0, compute_time, len(payload), len(ident), len(raws)
    )
    header_len = _PREFIX.size + _FIXED.size + len(variable) + (SIG_LEN if secret else 0)
    body: list[Any] = [payload]
    offset = _LEAD.size + header_len + 1 + len(payload)
    for raw in raws:
        pad = -offset % ALIGN
        body += [b"\0" * pad, raw]
        offset += pad + raw.nbytes
    if secret:
        head = _LEAD_MAGIC.pack(_OPEN, header_len, MAGIC, FORMAT_VERSION, SIGNED)
        sig = _sign(secret, head, [fixed, variable, _POP_BYTE], body)
        chunks: list[Any] = [fixed, variable, sig + _POP_BYTE, *body]
    else:
        chunks = [fixed, variable + _POP_BYTE, *body]
    if offset <= _JOIN_UNDER:  # a small entry: one checksum call over one joined copy
        checksum = xxhash.xxh3_64_intdigest(b"".join(chunks))
    else:
        summed = xxhash.xxh3_64()
        for chunk in chunks:
            summed.update(chunk)
        checksum = summed.intdigest()
    return [_LEAD_PREFIX.pack(_OPEN, header_len, MAGIC, FORMAT_VERSION,
                              SIGNED if secret else 0, checksum), *chunks]


_POP_BYTE = bytes((_POP,))
_LEAD_MAGIC = struct.Struct("<3sI4sHH")  # the lead and the prefix without its checksum
_JOIN_UNDER = 1 << 16  # bytes: entries this small are checksummed as one joined copy


# ``functools.cache``'s and ``lru_cache``'s wrapper type (``_SeeingPickler``, and
# ``_depends.changed_result_class``, which finds the wrapper under the function's name)
CACHE_WRAPPER = type(functools.lru_cache(lambda: None))


class _SeeingPickler(pickle.Pickler):
    """A pickler that notes the classes (and functions) it meets; dicts, lists, tuples, str,
    numbers and the like never reach ``reducer_override``, so a plain result costs nothing
    more.

    Making one (its output, its memo, the lookups of its hooks) costs more than pickling a
    small result, so each thread keeps one, writing into its own buffer, for the next
    result (``_dumps_seeing_classes``)."""

    classes: set[Any]  # classes, and functions pickled by reference
    out: io.BytesIO
    buffers: list[pickle.PickleBuffer]
    busy: bool

    def reducer_override(self, obj: Any) -> Any:
        # A function is noted itself, not by its type: one a class's ``__reduce__`` names to
        # rebuild it runs its code when the entry loads (``_depends.result_classes``). So is
        # the one a ``functools.cache`` or ``lru_cache`` wrapper holds: the wrapper, a
        # library's object, pickles by its name and runs that function as it loads (before,
        # it was no row, and an edit of it returned what the new code made of the entry).
        if isinstance(obj, (type, FunctionType)):
            self.classes.add(obj)
        elif type(obj) is CACHE_WRAPPER and isinstance(obj.__wrapped__, (type, FunctionType)):
            self.classes.add(obj.__wrapped__)
        else:
            self.classes.add(type(obj))
        return NotImplemented


def _new_pickler() -> _SeeingPickler:
    out = io.BytesIO()
    buffers: list[pickle.PickleBuffer] = []
    pickler = _SeeingPickler(out, PROTOCOL, buffer_callback=buffers.append)
    pickler.out, pickler.buffers, pickler.classes, pickler.busy = out, buffers, set(), False
    return pickler


_picklers = threading.local()  # each thread's pickler, kept between results
_KEEP_UNDER = 1 << 20  # bytes: a pickler whose output grew past this is not kept


def _dumps_seeing_classes(value: Any, buffers: list[pickle.PickleBuffer]
                          ) -> tuple[bytes, set[Any]]:
    pickler: _SeeingPickler | None = getattr(_picklers, "pickler", None)
    if pickler is None or pickler.busy:  # a result whose pickling stores another result
        pickler = _new_pickler()
        _picklers.pickler = pickler
    pickler.busy = True
    try:
        pickler.dump(value)
    except BaseException:
        _picklers.pickler = None  # a fresh one next time
        pickler.buffers.clear()  # (see ``release_views``)
        raise
    data = pickler.out.getvalue()
    classes = pickler.classes
    if classes:  # else the pickler's empty set: the caller only asks whether it is empty
        pickler.classes = set()
    if pickler.buffers:
        buffers += pickler.buffers
        pickler.buffers.clear()
    pickler.clear_memo()  # it holds the pickled objects until cleared
    if len(data) < _KEEP_UNDER:
        pickler.out.seek(0)
        pickler.out.truncate()
        pickler.busy = False
    else:  # a large result: its buffer is not kept alive for the thread's next one
        _picklers.pickler = None
    return data, classes


def release_views(chunks: list[Any]) -> None:
    """Let go of the views of an entry's chunks (``encode``'s: the arrays' buffers) once
    written, or not: a cycle the value's own reduction left holds the frames that made
    them, with them exported from the value's own views (which the collector, clearing
    them first, crashed on: SIGSEGV). One a reader still holds stays. The pickling's
    ``PickleBuffer``s are only let go of (``buffers.clear()``), never released: they may be
    the value's own (a result holding one), which the caller gets back."""
    for chunk in chunks:
        if type(chunk) is memoryview:
            try:
                chunk.release()
            except BufferError:  # exported still: not released, not crashed on either
                pass


def _raw(buf: pickle.PickleBuffer) -> memoryview:
    try:
        return buf.raw()
    except BufferError:  # a non-contiguous buffer: store a contiguous copy
        return memoryview(bytes(buf))


def _sign(secret: bytes, head: bytes, header: list[Any], body: list[Any]) -> bytes:
    import hashlib
    import hmac

    mac = hmac.new(secret, head, hashlib.sha256)
    for chunk in (*header, *body):
        mac.update(chunk)
    return mac.digest()


# Where a ``verify``-ed entry records its compute time (for the time its hits saved): the
# hit path reads it with one unpack, ``unpack_compute_time(data, COMPUTE_TIME_AT)[0]``.
unpack_compute_time = struct.Struct("<d").unpack_from
COMPUTE_TIME_AT = _LEAD.size + _PREFIX.size + 16  # after created and expires


def verify(
    data: Any,
    ident: bytes,
    key: bytes,
    now: float,
    ttl: float | None,
    secret: bytes | None,
    classes_ok: Callable[[bytes], str | None] | None = None,
    grace: float = 0.0,
) -> tuple[memoryview, list[memoryview]]:
    """Check an entry against what the caller expects; return its payload and buffers.

    ``data`` is the whole entry (bytes, bytearray or mmap). Raises ``Miss`` on any mismatch;
    nothing in ``data`` is unpickled here. An entry whose result holds classes of the
    user's code has them after the ident: ``classes_ok`` judges them (None if unchanged,
    else why not), without it such an entry is a miss. ``grace``: seconds an expired entry
    still passes (``stale_while_revalidate``); one created ahead of ``now`` never does.
    """
    view = memoryview(data)
    size = len(view)
    if size < HEAD:
        raise Miss("not a memojar entry")
    opening, header_len, head, checksum, created, expires, _, payload_len, ident_len, nbuf = (
        _HEAD.unpack_from(view)
    )
    if opening != _OPEN or (head != _PLAIN and head != _SIGNED):
        raise Miss(_refused(view))
    at = _IDENT_AT + ident_len
    if view[_IDENT_AT : at + KEY_LEN] != ident + key:  # one comparison on the hit path
        _check_other_ident(view, ident, key, at, classes_ok)
    if expired(now, created, expires, ttl, grace):
        raise Miss("stale")
    at += KEY_LEN
    if head == _PLAIN and not (nbuf or secret):  # the common entry: unsigned, no buffers
        # The POP at ``at`` is checksummed; the header length before the checksum is not.
        if at + 1 + payload_len != size or header_len + _LEAD_LEN != at:
            raise Miss(_bad_length(view, at, header_len, at + 1 + payload_len))
        if xxhash.xxh3_64_intdigest(view[_SUMMED_AT:]) != checksum:
            raise Miss("checksum mismatch")
        return view[at + 1 :], []
    flags = head >> 48
    if at + 8 * nbuf > size:
        raise Miss("truncated header")
    lengths = [_LEN.unpack_from(view, at + 8 * i)[0] for i in range(nbuf)] if nbuf else ()
    at += 8 * nbuf
    sig_at = at
    if flags & SIGNED:
        at += SIG_LEN
    end = at + 1 + payload_len
    spans = []
    for n in lengths:
        start = end + (-end % ALIGN)
        spans.append((start, start + n))
        end = start + n
    if end != size or header_len + _LEAD_LEN != at or view[at] != _POP:
        raise Miss(_bad_length(view, at, header_len, end))
    if checksum_of(view) != checksum:
        raise Miss("checksum mismatch")
    if secret is not None:
        if not flags & SIGNED:
            raise Miss("not signed, and this cache has a secret")
        _check_signature(secret, view, sig_at)
    elif flags & SIGNED:
        raise Miss("signed, and this cache has no secret to check it")
    payload = view[at + 1 : at + 1 + payload_len]
    return payload, [view[a:b] for a, b in spans] if spans else []


_FAST = struct.Struct("<15sQdddQ8s")  # lead and prefix to the flags, checksum, FIXED
_IDENT_LENGTHS = struct.Struct("<II")  # ident_len, nbuf
_INLINE = 1 << 16  # entries up to this size are checksummed from a copy, not a view


def make_reader(
    ident: bytes,
    ttl: float | None,
    secret: bytes | None,
    classes_ok: Callable[[bytes], str | None] | None = None,
    clock: Callable[[], float] | None = None,
) -> Callable[[Any, str], tuple[Any, float]]:
    """The hit path's ``verify`` and ``load`` in one: ``read(data, key) -> (value,
    compute_time)``, raising ``Miss`` as they do.

    Made once per decorated function (at its first call, when its ident is known): the
    bytes a plain entry of this ident must start with are computed here, so the usual
    entry (bytes, unsigned, no buffers, no result classes) is checked with one unpack and
    two comparisons, its checksum, and loaded by unpickling the whole entry (a pickle
    stream: the header is pushed and popped). The same checks as ``verify``, none skipped:
    the lead, magic, format, flags and header length are one 15-byte comparison, the ident
    and key another; then the length, expiry (by ``expired``, as everywhere) and checksum.
    Anything else (a mapped or signed entry, buffers, result classes, a mismatch) goes
    through ``verify``, which says why it is refused. ``clock``: the time now (default
    ``time.time``).
    """
    pop_at = _IDENT_AT + len(ident) + KEY_LEN
    lead = _LEAD.pack(_OPEN, pop_at - _LEAD_LEN) + _PLAIN.to_bytes(8, "little")
    lengths = _IDENT_LENGTHS.pack(len(ident), 0)
    fast = secret is None
    now_of = clock or time.time
    loads, digest = pickle.loads, xxhash.xxh3_64_intdigest

    def read(data: Any, key: str) -> tuple[Any, float]:
        size = len(data)
        if fast and type(data) is bytes and size > pop_at:
            head, checksum, created, expires, compute_time, payload_len, lens = (
                _FAST.unpack_from(data)
            )
            if (head == lead and lens == lengths and pop_at + 1 + payload_len == size
                    and data[_IDENT_AT:pop_at] == ident + key.encode()):
                if (expires or ttl is not None) and expired(now_of(), created, expires, ttl):
                    raise Miss("stale")
                summed = data[_SUMMED_AT:] if size <= _INLINE else memoryview(data)[_SUMMED_AT:]
                if digest(summed) != checksum:
                    raise Miss("checksum mismatch")
                try:
                    return loads(data), compute_time
                except Exception as exc:  # as in ``load``
                    raise Miss(f"payload does not load: {type(exc).__name__}: {exc}") from exc
        payload, buffers = verify(data, ident, key.encode(), now_of(), ttl, secret, classes_ok)
        return load(payload, buffers), unpack_compute_time(data, COMPUTE_TIME_AT)[0]

    return read


def _check_other_ident(view: memoryview, ident: bytes, key: bytes, at: int,
                       classes_ok: Callable[[bytes], str | None] | None) -> None:
    """Raise ``Miss`` unless the entry's ident is ``ident`` plus unchanged result classes."""
    n = _IDENT_AT + len(ident)
    if n < at <= len(view) and view[n] == CLASSES[0] and view[_IDENT_AT:n] == ident:
        why = classes_ok(bytes(view[n + 1 : at])) if classes_ok else "result classes"
        if why:
            raise Miss(why)
        if view[at : at + KEY_LEN] != key:
            raise Miss("holds another key")
        return
    if view[_IDENT_AT:at] != ident:
        raise Miss("written for another function, version, code or Python, or another scope")
    raise Miss("holds another key")


def _refused(view: memoryview) -> str:
    """Why an entry's lead or prefix is refused."""
    opening, _, magic, fmt, flags, _ = _LEAD_PREFIX.unpack_from(view)
    if opening != _OPEN or magic != MAGIC:
        return _not_an_entry(view)
    if fmt != FORMAT_VERSION:
        return f"entry format {fmt}, expected {FORMAT_VERSION}"
    return f"unknown flags {flags:#x}"


def _not_an_entry(view: memoryview) -> str:
    if view[:4] == MAGIC:  # formats 1 to 3: the header bare at offset 0
        if len(view) < _PREFIX.size:  # (before: struct.error, out of prune, ls, entries)
            return "a truncated entry of an older format"
        return f"entry format {_PREFIX.unpack_from(view)[1]}, expected {FORMAT_VERSION}"
    return "not a memojar entry"


def _bad_length(view: memoryview, pop_at: int, header_len: int, end: int) -> str:
    if header_len != pop_at - _LEAD.size:
        return f"header length {header_len}, the header's fields say {pop_at - _LEAD.size}"
    if end != len(view):
        return f"{len(view)} bytes long, header says {end}"
    return "no POP after the header"


def checksum_of(entry: Any) -> int:
    """The checksum an entry's prefix must hold: xxh3-64 of every byte after it."""
    return xxhash.xxh3_64_intdigest(memoryview(entry)[_SUMMED_AT:])


def damaged(entry: Any) -> bool:
    """Whether ``entry``, of this format, fails its checksum: a byte changed anywhere
    after it (the expiry, ident, key or payload). For ``cache_explain``, which said what
    the changed field said ("holds another key", "the code changed", "written by Python
    2.11", "stale: expired 1970") of an entry ``verify`` checks those fields of first."""
    with memoryview(entry) as view:
        if len(view) < HEAD:
            return False
        opening, _, head, checksum, *_ = _HEAD.unpack_from(view)
        return (opening == _OPEN and head in (_PLAIN, _SIGNED)
                and checksum_of(view) != checksum)


def _check_signature(secret: bytes, view: memoryview, sig_at: int) -> None:
    import hashlib
    import hmac

    mac = hmac.new(secret, view[:CHECKSUM_AT], hashlib.sha256)
    mac.update(view[_SUMMED_AT:sig_at])
    mac.update(view[sig_at + SIG_LEN :])
    if not hmac.compare_digest(mac.digest(), view[sig_at : sig_at + SIG_LEN]):
        raise Miss("signature does not verify")


def load(payload: memoryview, buffers: list[memoryview]) -> Any:
    """Unpickle a verified payload; a value that no longer loads is a ``Miss``.

    Out-of-band buffers of a read-only entry (bytes read from a file or a server) are
    copied, so a numpy array comes back writable as it went in; a copy-on-write mapping's
    are used in place.
    """
    try:
        if not buffers:  # an empty buffers= costs as much again as a small unpickle
            return pickle.loads(payload)
        if buffers[0].readonly:
            return pickle.loads(payload, buffers=[bytearray(b) for b in buffers])
        return pickle.loads(payload, buffers=buffers)
    except Exception as exc:  # any failure to rebuild the value is a miss
        raise Miss(f"payload does not load: {type(exc).__name__}: {exc}") from exc


_OLD_FORMATS = tuple(MAGIC + fmt.to_bytes(2, "little") for fmt in (1, 2, 3))


def written_as_an_entry(head: bytes) -> bool:
    """Whether ``head`` (an object's first 6 bytes or more) begins as memojar begins its
    entries, in any format (this one's and later: the lead, then the magic; formats 1 to 3:
    the magic, then the format): what does not was written by someone else, whatever its
    name (before, the magic alone was an old format's: a user's note "MJAR ..." went)."""
    return head[:6] in _OLD_FORMATS or (head[:3] == _OPEN
                                        and head[_LEAD.size : FORMAT_AT] == MAGIC)


def newer_format(head: bytes) -> int | None:
    """The format of an entry a newer memojar wrote (that one can read it), else None."""
    if len(head) < _SUMMED_AT or head[:3] != _OPEN or head[_LEAD.size : FORMAT_AT] != MAGIC:
        return None
    fmt: int = _PREFIX.unpack_from(head, _LEAD.size)[1]
    return fmt if fmt > FORMAT_VERSION else None


def header_length(head: bytes) -> int:
    """How many leading bytes ``read_header`` needs, from the first ``HEAD`` bytes."""
    if len(head) < HEAD or head[:3] != _OPEN or head[_LEAD.size : FORMAT_AT] != MAGIC:
        raise Miss(_not_an_entry(memoryview(head)))
    _, _, _, fmt, flags, _ = _LEAD_PREFIX.unpack_from(head)
    if fmt != FORMAT_VERSION:
        raise Miss(f"entry format {fmt}, expected {FORMAT_VERSION}")
    *_, ident_len, nbuf = _FIXED.unpack_from(head, _SUMMED_AT)
    need: int = HEAD + ident_len + KEY_LEN + 8 * nbuf + (SIG_LEN if flags & SIGNED else 0)
    return need


def read_header(head: bytes) -> Header:
    """Parse an entry's header (its payload need not be present); raises ``Miss``."""
    need = header_length(head)
    if len(head) < need:
        raise Miss("truncated header")
    _, header_len, _, fmt, _, _ = _LEAD_PREFIX.unpack_from(head)
    if header_len != need - _LEAD.size:
        raise Miss(f"unreadable header: header length {header_len}, its fields say "
                   f"{need - _LEAD.size}")
    created, expires, compute_time, payload_len, ident_len, nbuf = _FIXED.unpack_from(
        head, _SUMMED_AT
    )
    try:
        field = bytes(head[_IDENT_AT : _IDENT_AT + ident_len])
        stored, _, classes = field.partition(CLASSES)
        ident, _, listed = stored.decode().partition(MANIFEST.decode())
        function, version, fingerprint, python, protocol, scope = _split_ident(ident)
        at = _IDENT_AT + ident_len
        key = bytes(head[at : at + KEY_LEN]).decode("ascii")
        protocol_n = int(protocol)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise Miss(f"unreadable header: {exc}") from exc
    at += KEY_LEN
    end = need + 1 + payload_len  # the POP, then the payload
    for i in range(nbuf):
        n = _LEN.unpack_from(head, at + 8 * i)[0]
        end += -end % ALIGN + n
    if not (math.isfinite(created) and math.isfinite(expires)):
        raise Miss("unreadable header: timestamps")
    return Header(
        function=function,
        version=version,
        fingerprint=fingerprint,
        python=python,
        protocol=protocol_n,
        key=key,
        created=created,
        expires=expires or None,
        compute_time=compute_time,
        size=end,
        format=fmt,
        ident=stored,
        scope=scope,
        manifest=listed,
        classes=classes.decode(errors="replace"),
    )
