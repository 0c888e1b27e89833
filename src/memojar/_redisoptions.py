"""The redis-py options a Redis URL's query string may carry, read by memojar itself: which
it takes, each value checked when the cache is made, and what it passes on to redis-py.

Before, every option that was not memojar's went to redis-py as it was, and redis-py took
most of them as they came: a value it could not use failed later, inside every call, with
an error that was no ``RedisError`` and so no fault the store absorbs (``ssl_min_version=99``
raised ``ValueError`` from every call, ``socket_keepalive_options=1`` ``AttributeError``),
or failed every write with a warning (``encoding=utf-16`` broke memojar's Lua scripts,
``client_name=a b`` is refused by the server), or was refused when the cache was made with
an error of the wrong kind (``encoding=bogus``: ``LookupError``; ``protocol=4``:
``ConnectionError``). Now an option memojar does not take is refused by name, with the
list of those it takes, and a value that cannot work is refused by name, with what to do.
"""

from __future__ import annotations

import codecs
import difflib
import importlib.util
import math
import os
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from ._errors import UnknownOption

__all__ = ["MEMOJARS", "TAKEN", "TLS", "options"]

MEMOJARS = ("prefix", "password", "socket_timeout", "chunk_size")  # (``_redisurl.OPTIONS``)

# What redis-py treats as false in a URL (its ``to_bool``); any other value is true
_FALSE = ("0", "F", "FALSE", "N", "NO", "OFF")
# What a client name may hold: the server refuses spaces, newlines and anything outside
# '!'..'~' ("Client names cannot contain spaces, newlines or special characters"), at
# every connection's handshake: every write failed
_NAME_CHARACTERS = frozenset(map(chr, range(ord("!"), ord("~") + 1)))


def _flag(name: str, raw: str, socket_timeout: float) -> bool:
    return raw.upper() not in _FALSE


def _text(name: str, raw: str, socket_timeout: float) -> str:
    return raw


def _count(least: int) -> Callable[[str, str, float], int]:
    def parse(name: str, raw: str, socket_timeout: float) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = least - 1
        if value < least:
            raise ValueError(f"{name} must be a whole number of at least {least}, not {raw!r}")
        return value
    return parse


def _connect_timeout(name: str, raw: str, socket_timeout: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value > 0:  # (nan too)
        # 0 made every connection fail ('cannot reach the server')
        raise ValueError(
            f"{name} must be seconds above 0, not {raw!r}; leave it out: memojar's "
            "socket_timeout bounds the connection too")
    # One longer than socket_timeout would let a call wait longer than socket_timeout for
    # a server that does not answer, which memojar promises it never does: cut to it (a
    # URL that worked before memojar read its options keeps working)
    return min(value, socket_timeout)


def _client_name(name: str, raw: str, socket_timeout: float) -> str:
    if not set(raw) <= _NAME_CHARACTERS:
        raise ValueError(
            f"{name} {raw!r} is refused by the server (no spaces, newlines or characters "
            "outside ASCII's '!' to '~'): every write would fail")
    return raw


def _protocol(name: str, raw: str, socket_timeout: float) -> int:
    if raw not in ("2", "3"):
        raise ValueError(f"{name} must be 2 (RESP2, the default) or 3 (RESP3), not {raw!r}")
    return int(raw)


def _encoding(name: str, raw: str, socket_timeout: float) -> None:
    try:
        known = codecs.lookup(raw).name
    except LookupError:
        known = None
    if known != "utf-8":
        # Another encoding made the keys and arguments memojar sends text the server's
        # side of its Lua scripts cannot read as its own ('utf-16': every write failed),
        # or keys that are not the ones its index names ('latin-1' and a prefix outside
        # ASCII); an unknown one raised LookupError when the cache was made
        raise ValueError(
            f"{name}={raw!r} is not taken: memojar's keys and Lua scripts are UTF-8 (the "
            "default; entries are bytes, never encoded); leave encoding out")


def _dropped(name: str, raw: str, socket_timeout: float) -> None:
    """An option taken but not passed on: memojar's client sets it itself."""


def _file(kind: str) -> Callable[[str, str, float], str]:
    def parse(name: str, raw: str, socket_timeout: float) -> str:
        path = os.path.expanduser(raw)
        if not (os.path.isdir(path) if kind == "folder" else os.path.isfile(path)):
            raise ValueError(f"{name}: no {kind} {raw!r}")
        return path
    return parse


def _cert_reqs(name: str, raw: str, socket_timeout: float) -> str:
    if raw not in ("none", "optional", "required"):
        raise ValueError(f"{name} must be none, optional or required, not {raw!r}")
    return raw


_VERSIONS = {v.name: v for v in ssl.TLSVersion if v.value > 0}


def _tls_version(name: str, raw: str, socket_timeout: float) -> ssl.TLSVersion:
    version = _VERSIONS.get(raw)
    if version is None and raw.isdigit() and int(raw) in set(_VERSIONS.values()):
        version = ssl.TLSVersion(int(raw))  # redis-py's own spelling: 771
    if version is None:
        raise ValueError(f"{name} must be one of {', '.join(_VERSIONS)} (or its number, "
                         f"e.g. 771 for TLSv1_2), not {raw!r}")
    return version


def _verify_flags(name: str, raw: str, socket_timeout: float) -> list[ssl.VerifyFlags]:
    flags = []
    for flag in raw.replace("[", "").replace("]", "").split(","):
        found = ssl.VerifyFlags.__members__.get(flag.strip())
        if found is None:
            raise ValueError(f"{name}: {flag.strip()!r} is not one of "
                             f"{', '.join(ssl.VerifyFlags.__members__)}")
        flags.append(found)
    return flags


def _ciphers(name: str, raw: str, socket_timeout: float) -> str:
    try:
        _context().set_ciphers(raw)
    except ssl.SSLError as exc:
        raise ValueError(f"{name} {raw!r} selects no cipher ({exc.args[-1]}); see "
                         "OpenSSL's cipher list format") from None
    return raw


def _context() -> ssl.SSLContext:
    """A TLS context to try the URL's settings on, without the system's CA certificates:
    ``ssl.create_default_context`` loads them all (40 ms, every Cache() of a rediss:// URL
    paid it once or twice, where 0.3 ms before), and nothing checked here needs them."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


Parse = Callable[[str, str, float], Any]

# redis-py's options memojar takes, by what their value must be
TAKEN: dict[str, Parse] = {
    "db": _count(0),  # (for unix://; redis:// and rediss:// have it after the host)
    "username": _text,
    "client_name": _client_name,
    "socket_connect_timeout": _connect_timeout,
    "socket_keepalive": _flag,
    "socket_read_size": _count(1),  # 0 or less: every connection failed
    "health_check_interval": _count(0),  # below 0: every write failed (a reply misread)
    "max_connections": _count(0),  # (0: no limit, as leaving it out)
    "protocol": _protocol,
    "encoding": _encoding,
    # taken and not passed on: memojar's client keeps redis-py's defaults whatever the
    # URL says (replies as bytes, no second try after a timeout, strict encoding)
    "encoding_errors": _dropped,
    "decode_responses": _dropped,
    "retry_on_timeout": _dropped,
    # (which errors a command is tried again after: memojar's client tries a dropped
    # connection's command once more and never a timed-out one, whatever the URL says)
    "retry_on_error": _dropped,
    # (redis-py 8: the shapes of its replies, which memojar's client reads as redis-py's
    # default gives them; taken before, as any string, and passed on)
    "legacy_responses": _dropped,
    # what CLIENT SETINFO tells the server of the library (redis-py deprecates them for
    # driver_info, which a URL cannot give); any text: a value the server refuses is let
    # go by redis-py. Taken before, and passed on
    "lib_name": _text,
    "lib_version": _text,
}
# ... and those of a TLS connection (rediss://)
TLS: dict[str, Parse] = {
    "ssl_cert_reqs": _cert_reqs,
    "ssl_check_hostname": _flag,
    "ssl_ca_certs": _file("file"),
    "ssl_ca_path": _file("folder"),
    "ssl_ca_data": _text,
    "ssl_certfile": _file("file"),
    "ssl_keyfile": _file("file"),
    "ssl_password": _text,
    "ssl_min_version": _tls_version,
    "ssl_ciphers": _ciphers,
    "ssl_include_verify_flags": _verify_flags,
    "ssl_exclude_verify_flags": _verify_flags,
    # redis-py's own flags (its URL parser read them as such): off by default, so that
    # ``=false`` says what a URL without them does; on, checked in ``_check_tls``
    "ssl_validate_ocsp": _flag,
    "ssl_validate_ocsp_stapled": _flag,
}

# redis-py's, known and refused, with why
_WHY_NOT = {
    "socket_keepalive_options": "it is a mapping of socket options, which a URL "
                                "cannot give (every call raised AttributeError)",
    "socket_type": "redis-py takes no number from a URL for it (every call raised "
                   "TypeError)",
    "retry": "memojar's client retries a dropped connection once, never a timeout",
    "connection_class": "the scheme chooses it: redis://, rediss:// or unix://",
    "host": "the host goes after redis://", "port": "the port goes after the host",
    "path": "the socket's path goes after unix://",
    "unix_socket_path": "the socket's path goes after unix://",
}


def _taken(tls: bool) -> str:
    return (f"memojar's {', '.join(MEMOJARS)}; redis-py's {', '.join(TAKEN)}"
            + (f", {', '.join(TLS)}" if tls else " (and, with rediss://, its ssl_ options)"))


def options(scheme: str, query: str, socket_timeout: float) -> dict[str, Any]:
    """redis-py's keyword arguments from a Redis URL's ``query`` (memojar's own options
    taken out): each option memojar takes, its value checked and parsed; ``ValueError``
    naming the option for one it does not take or a value that cannot work. A name given
    twice: the first value that is not empty counts, as redis-py read the query (its
    ``parse_qs``, blanks left out, then the first of each), so that a URL names the same
    database and settings as before memojar read it (``?db=1&db=2``: database 1; memojar's
    own options, ``_redisurl``, take the last, as they always did)."""
    tls = scheme == "rediss"
    kwargs: dict[str, Any] = {}
    pairs = parse_qsl(query, keep_blank_values=True)
    for name, _ in pairs:  # every name first: a wrong name says so before a wrong value
        if name in TLS and not tls:
            raise UnknownOption(f"option {name!r} is for a TLS connection: the URL must "
                                "begin with rediss://", name)
        if name == "socket_keepalive" and scheme == "unix":
            raise UnknownOption(f"option {name!r} is for a TCP connection (redis://, "
                                "rediss://), not unix://", name)
        if name not in TAKEN and name not in TLS:
            why = _WHY_NOT.get(name)
            near = difflib.get_close_matches(name, [*MEMOJARS, *TAKEN, *TLS], n=1)
            raise UnknownOption(
                (f"option {name!r} in its query string is not taken: {why}" if why else
                 f"unknown option {name!r} in its query string")
                + (f" (did you mean {near[0]!r}?)" if near and not why else "")
                + f"; the options taken are {_taken(tls)}", name)
    firsts: dict[str, str] = {}
    for name, raw in pairs:
        if raw != "":  # (as redis-py: an option left empty is left out)
            firsts.setdefault(name, raw)
    for name, raw in firsts.items():
        value = {**TAKEN, **TLS}[name](name, raw, socket_timeout)
        if value is not None:
            kwargs[name] = value
    if tls:
        _check_tls(kwargs)
    return kwargs


def _check_tls(kwargs: dict[str, Any]) -> None:
    """The TLS context redis-py will make, made once now: a certificate or key file it
    cannot load (a wrong password, a key of another certificate, a file that holds no
    certificate) fails here, not at every connection."""
    if "ssl_keyfile" in kwargs and "ssl_certfile" not in kwargs:
        # every call raised TypeError ('certfile should be a valid filesystem path')
        raise ValueError("ssl_keyfile is given without ssl_certfile: give the client's "
                         "certificate as ssl_certfile too")
    _check_ocsp(kwargs)
    if not {"ssl_certfile", "ssl_ca_certs", "ssl_ca_path", "ssl_ca_data"} & kwargs.keys():
        return  # (nothing to load)
    context = _context()
    try:
        if "ssl_certfile" in kwargs:
            what = "ssl_certfile and ssl_keyfile"
            password = kwargs.get("ssl_password")
            # (without ssl_password, an encrypted key made OpenSSL ask for its passphrase:
            # on the terminal, Cache() waiting for it; without one, "Enter PEM pass
            # phrase:" printed and "[Errno 22] Invalid argument")
            context.load_cert_chain(kwargs["ssl_certfile"], kwargs.get("ssl_keyfile"),
                                    password if password is not None else _no_passphrase)
        if {"ssl_ca_certs", "ssl_ca_path", "ssl_ca_data"} & kwargs.keys():
            what = "ssl_ca_certs, ssl_ca_path or ssl_ca_data"
            context.load_verify_locations(kwargs.get("ssl_ca_certs"), kwargs.get("ssl_ca_path"),
                                          kwargs.get("ssl_ca_data"))
    except _Encrypted:
        raise ValueError("the client's key (ssl_keyfile, or in ssl_certfile) is encrypted: "
                         "give its passphrase as ssl_password") from None
    except (OSError, ValueError, TypeError) as exc:  # (ssl.SSLError is an OSError)
        hint = ("; is ssl_password the key's passphrase?" if what.startswith("ssl_certfile")
                and "ssl_password" in kwargs and "PEM lib" in str(exc) else "")
        raise ValueError(f"{what}: the TLS context cannot load them ({exc}{hint})") from None


class _Encrypted(Exception):
    """An encrypted key, and no ssl_password (``_check_tls``)."""


def _no_passphrase() -> str:
    raise _Encrypted


def _check_ocsp(kwargs: dict[str, Any]) -> None:
    """An OCSP check asked for that redis-py cannot make: every connection failed (a
    RedisError: each call warned 'cannot reach the server'), or raised ImportError."""
    full, stapled = kwargs.get("ssl_validate_ocsp"), kwargs.get("ssl_validate_ocsp_stapled")
    if full and stapled:
        raise ValueError("ssl_validate_ocsp and ssl_validate_ocsp_stapled are both on: "
                         "redis-py validates one kind of OCSP answer, not both; turn one off")
    needs = ("cryptography", "cryptography") if full else ("OpenSSL", "pyOpenSSL")
    if (full or stapled) and importlib.util.find_spec(needs[0]) is None:
        name = "ssl_validate_ocsp" if full else "ssl_validate_ocsp_stapled"
        raise ValueError(f"{name} is on, and redis-py checks OCSP with {needs[1]}, which "
                         f"is not installed: pip install {needs[1]}, or leave {name} out")
    if stapled and not ("ssl_certfile" in kwargs and "ssl_keyfile" in kwargs):
        raise ValueError("ssl_validate_ocsp_stapled is on: redis-py's check of a stapled "
                         "OCSP answer needs the client's certificate and key (ssl_certfile "
                         "and ssl_keyfile)")
