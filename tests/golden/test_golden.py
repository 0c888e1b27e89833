"""Golden entries: files written by each entry format (``make_golden.py``, Python 3.11).
Today's reader reads its own format's files, and finds every older format's a clean miss,
as it does any file on another Python: never an error. And an entry an older memojar wrote
for an argument it keyed as another kind (``make_keying.py``) is not read for that kind."""

from __future__ import annotations

import os
import pickle
import pickletools
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache, _entry

HERE = Path(__file__).resolve().parent
FORMATS = (1, 2, 3, 4)  # every format whose files are committed here; never regenerate old ones
GOLDEN_PYTHON = "3.11"
FINGERPRINT = "0123456789abcdef"
SECRET = b"golden-secret"
SCOPES = {"plain": "/golden/analysis.ipynb"}  # as make_golden.py writes format 3+

# case: (function, version tag, key, expires, secret, the value as compared)
CASES: dict[str, tuple[str, Any, str, float | None, bytes | None, Any]] = {
    "plain": (
        "golden.square", None, "00112233445566778899aabbccddeeff", None, None,
        {"name": "golden", "numbers": [1, 2.5, None, True], "nested": ("a", b"bytes", 3j)},
    ),
    "versioned-signed": (
        "golden.signed", 1, "ffeeddccbbaa99887766554433221100", 4_102_444_800.0, SECRET,
        "signed value",
    ),
    "buffers": (
        "golden.buffers", "v2", "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f", None, None,
        {"oob": bytes(range(256)), "after": "tail"},
    ),
    "expired": (
        "golden.expired", None, "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0", 1_000_000_000.0, None,
        [1, 2, 3],
    ),
}
SUFFIXES = {1: ".mj", 2: ".mj", 3: ".mj"}  # format 4+: ".pkl", a pickle stream
GOLDEN = {f"format{fmt}-{case}{SUFFIXES.get(fmt, '.pkl')}": (fmt, *spec) for fmt in FORMATS
          for case, spec in CASES.items()}


def readable(name: str) -> bool:
    """Today's reader reads files of its own format; older ones must be clean misses."""
    return GOLDEN[name][0] == _entry.FORMAT_VERSION


def loadable(name: str) -> bool:
    return readable(name) and _entry.PYTHON == GOLDEN_PYTHON


def _comparable(value: Any) -> Any:
    if isinstance(value, dict) and "oob" in value:
        return {**value, "oob": bytes(value["oob"])}
    return value


def _scope(name: str) -> str:
    return SCOPES.get(name.split("-", 1)[1].rsplit(".", 1)[0], "")


def _read(name: str) -> Any:
    _fmt, function, version, key, _expires, secret, _value = GOLDEN[name]
    data = (HERE / name).read_bytes()
    ident = _entry.make_ident(function, version, FINGERPRINT, _scope(name))
    payload, buffers = _entry.verify(data, ident, key.encode(), time.time(), None, secret)
    return _entry.load(payload, buffers)


def test_the_current_format_has_golden_files() -> None:
    assert _entry.FORMAT_VERSION in FORMATS
    assert all((HERE / name).is_file() for name in GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_header_reads_or_is_a_clean_miss(name: str) -> None:
    data = (HERE / name).read_bytes()
    if not readable(name):
        with pytest.raises(_entry.Miss, match=f"entry format {GOLDEN[name][0]}, expected"):
            _entry.read_header(data)
        return
    fmt, function, version, key, expires, _secret, _value = GOLDEN[name]
    header = _entry.read_header(data)
    assert (header.function, header.version, header.fingerprint) == (
        function, _entry.version_tag(version), FINGERPRINT)
    assert (header.key, header.python, header.protocol) == (key, GOLDEN_PYTHON, 5)
    assert (header.created, header.expires, header.compute_time) == (1_700_000_000.0, expires, 1.5)
    assert (header.size, header.format, header.scope) == (len(data), fmt, _scope(name))


@pytest.mark.parametrize("name", sorted(n for n in GOLDEN if "expired" not in n))
def test_golden_entry_loads_or_is_a_clean_miss(name: str) -> None:
    if loadable(name):
        assert _comparable(_read(name)) == GOLDEN[name][-1]
    elif not readable(name):  # an older format: never read past its prefix
        with pytest.raises(_entry.Miss, match=f"entry format {GOLDEN[name][0]}, expected"):
            _read(name)
    else:  # another Python: the ident no longer matches
        with pytest.raises(_entry.Miss, match="another function, version, code or Python"):
            _read(name)


@pytest.mark.parametrize("name", sorted(n for n in GOLDEN if readable(n)))
def test_golden_entry_is_a_pickle_stream_with_the_header_popped(name: str) -> None:
    data = (HERE / name).read_bytes()
    ops = [(op.name, arg) for op, arg, _pos in pickletools.genops(data)]
    assert ops[0] == ("PROTO", 5)
    assert ops[1][0] == "BINBYTES" and ops[1][1] == data[7 : 7 + len(ops[1][1])]
    assert ops[1][1][:4] == b"MJAR" and len(ops[1][1]) == _entry.header_length(data) - 7
    assert ops[2] == ("POP", None)
    assert ops[-1] == ("STOP", None)
    if "buffers" in name:  # out-of-band buffers: after the stream, not in it
        assert ("NEXT_BUFFER", None) in ops
    elif loadable(name):
        assert _comparable(pickle.loads(data)) == GOLDEN[name][-1]


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden_expired_entry_is_a_clean_miss(fmt: int) -> None:
    name = f"format{fmt}-expired{SUFFIXES.get(fmt, '.pkl')}"
    with pytest.raises(_entry.Miss, match="stale" if loadable(name) else None):
        _read(name)


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden_signed_entry_needs_its_secret(fmt: int) -> None:
    name = f"format{fmt}-versioned-signed{SUFFIXES.get(fmt, '.pkl')}"
    _fmt, function, version, key, *_ = GOLDEN[name]
    data = (HERE / name).read_bytes()
    ident = _entry.make_ident(function, version, FINGERPRINT, _scope(name))
    for secret in (None, b"another secret"):
        with pytest.raises(_entry.Miss):
            _entry.verify(data, ident, key.encode(), time.time(), None, secret)


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden_entries_in_a_cache_are_listed_and_pruned(tmp_path: Path, fmt: int) -> None:
    """Placed in a cache directory, golden files list and prune without an error."""
    cache = Cache(tmp_path / "cache")
    names = [n for n in GOLDEN if GOLDEN[n][0] == fmt]
    for name in names:
        _fmt, function, _v, key, *_rest = GOLDEN[name]
        path = Path(cache.store.path(function, key))
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / name, path)
    listed = sorted((e.function, e.key) for e in cache.entries())
    if readable(names[0]):
        assert listed == sorted((GOLDEN[n][1], GOLDEN[n][3]) for n in names)
    else:
        assert listed == []
    removed = cache.prune()
    if readable(names[0]):  # on another Python too: that Python can read them
        assert removed == 1  # the expired one
        assert len(list(cache.entries())) == 3
        assert cache.prune(other_pythons=True) == (0 if loadable(names[0]) else 3)
    else:  # unreadable: all of them go
        assert removed == 4
        assert list(cache.entries()) == []


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f in SUFFIXES])
def test_golden_entries_left_under_their_old_name_are_pruned(tmp_path: Path, fmt: int) -> None:
    """A cache directory an older memojar filled (``<key>.mj`` files): prune frees them."""
    cache = Cache(tmp_path / "cache")
    paths = []
    for name in (n for n in GOLDEN if GOLDEN[n][0] == fmt):
        _fmt, function, _v, key, *_rest = GOLDEN[name]
        path = Path(cache.store.path(function, key)).with_suffix(SUFFIXES[fmt])
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / name, path)
        paths.append(path)
    assert list(cache.entries()) == []
    assert cache.prune() == len(paths) == 4
    assert not any(p.exists() for p in paths)


KINDS = r"""
import sys
import numpy as np
import keying_kinds
print(getattr(keying_kinds.kind, sys.argv[1])(np.int64(5)))
"""


def _in_a_cache_an_older_memojar_filled(tmp_path: Path) -> Callable[[str], str]:
    """``kind``'s entry of ``np.int64(5)`` replaced by the one memojar of 40376ef wrote for
    ``kind(np.longlong(5))``, keyed as ``np.int64(5)`` then (``keying0-*.pkl``); and how to
    ask ``kind`` (or its ``cache_explain``) of ``np.int64(5)`` in a new process."""
    pytest.importorskip("numpy")
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    env = {**os.environ, "MEMOJAR_KINDS": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}

    def ask(what: str) -> str:
        run = subprocess.run([sys.executable, "-c", KINDS, what], env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        return run.stdout.strip()

    assert ask("__call__") == "int64"  # stored where the old entry lies in a cache upgraded
    (entry,) = tmp_path.rglob("*.pkl")
    shutil.copyfile(HERE / f"keying0-{python}.pkl", entry)
    return ask


def test_an_entry_an_older_memojar_keyed_as_another_kinds_is_not_read(tmp_path: Path) -> None:
    """Today ``np.longlong`` has a key of its own, and ``np.int64`` kept its key: before
    ``KEYING`` was in every identity, the old entry was read for ``kind(np.int64(5))``,
    which returned ``'longlong'`` after the upgrade."""
    ask = _in_a_cache_an_older_memojar_filled(tmp_path)
    assert ask("__call__") == "int64"


def test_cache_explain_says_an_older_memojars_entry_is_not_read(tmp_path: Path) -> None:
    ask = _in_a_cache_an_older_memojar_filled(tmp_path)
    assert ask("cache_explain") == (
        "incompatible: memojar's keying changed (an upgrade: computed once again)")


def test_keys_of_every_kind_are_as_pinned_for_this_keying() -> None:
    """A keys change that gives a kind a key of its own where it shared another's must bump
    ``_keys.KEYING`` (see ``test_an_entry_an_older_memojar_keyed_as_another_kinds_is_not_read``):
    this test fails at any change of a catalogued kind's key, until ``KEYING`` is bumped and
    ``keys.json`` written again."""
    pytest.importorskip("numpy")
    import json

    import keys_catalog

    from memojar import _keys

    pinned = json.loads((HERE / "keys.json").read_text())
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    regenerate = ("on each Python 3.10-3.13: PYTHONPATH=src:tests/golden python "
                  "tests/golden/make_keys.py")
    assert pinned["keying"] == _keys.KEYING, (
        f"KEYING was bumped: write keys.json again, {regenerate}")
    if python not in pinned:
        pytest.skip(f"keys.json has no keys of Python {python} ({regenerate})")
    keys = {name: _keys.make_key((value,)) for name, value in keys_catalog.catalog().items()}
    changed = sorted(name for name in keys if pinned[python].get(name) != keys[name])
    assert not changed, (
        f"the keys of {', '.join(changed)} changed: entries stored under the old keys are "
        "read for whatever now has them. If memojar's keying changed, bump _keys.KEYING "
        f"(every entry computes once again), then write keys.json again, {regenerate}. If "
        "a library's release changed them (its pickling: numpy's, pandas'), leave the kind "
        "out of keys_catalog.py, as its docstring says")
