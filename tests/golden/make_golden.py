"""Write the golden entry files beside this script with today's entry format.

Run once per format version (``python tests/golden/make_golden.py``) and commit the files;
never regenerate the files of an older format. ``test_golden.py`` reads them: a future
format must either read them or bump ``FORMAT_VERSION`` so that they become clean misses.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from memojar import _entry
from memojar._filestore import SUFFIX

HERE = Path(__file__).resolve().parent
CREATED = 1_700_000_000.0  # 2023-11-14T22:13:20Z
FAR = 4_102_444_800.0  # 2100-01-01T00:00:00Z
PAST = 1_000_000_000.0  # 2001-09-09T01:46:40Z
FINGERPRINT = "0123456789abcdef"
SECRET = b"golden-secret"
SCOPES = {"plain": "/golden/analysis.ipynb"}  # format 3+: the scope of a __main__ function

# name: (function, version, key, value, expires, secret)
CASES: dict[str, tuple[str, Any, str, Any, float | None, bytes | None]] = {
    "plain": (
        "golden.square", None, "00112233445566778899aabbccddeeff",
        {"name": "golden", "numbers": [1, 2.5, None, True], "nested": ("a", b"bytes", 3j)},
        None, None,
    ),
    "versioned-signed": (
        "golden.signed", 1, "ffeeddccbbaa99887766554433221100",
        "signed value", FAR, SECRET,
    ),
    "buffers": (
        "golden.buffers", "v2", "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f",
        {"oob": pickle.PickleBuffer(bytearray(range(256))), "after": "tail"},
        None, None,
    ),
    "expired": (
        "golden.expired", None, "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
        [1, 2, 3], PAST, None,
    ),
}


def main() -> None:
    fmt = _entry.FORMAT_VERSION
    for name, (function, version, key, value, expires, secret) in CASES.items():
        chunks = _entry.encode(
            value, ident=_entry.make_ident(function, version, FINGERPRINT, SCOPES.get(name, "")),
            key=key,
            created=CREATED, expires=expires, compute_time=1.5, secret=secret,
        )
        data = b"".join(bytes(memoryview(c).cast("B")) for c in chunks)
        file = f"format{fmt}-{name}{SUFFIX}"  # named as the file store names entries
        (HERE / file).write_bytes(data)
        print(file, len(data), "bytes")


if __name__ == "__main__":
    main()
