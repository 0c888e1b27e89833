"""An atheris (libFuzzer) target for the entry reader, beside the hypothesis tests.

Run by hand, not by pytest: ``python tests/faults/fuzz_entry_atheris.py -runs=200000``
(``pip install atheris``). Inputs: the fuzzer's bytes as an entry, read with and without a
secret. Anything but a value or a ``Miss`` is a crash; so is any unpickling (every payload
here is built to record its load) of an input that is not one of the real seed entries.
"""

from __future__ import annotations

import sys
import time

import atheris

with atheris.instrument_imports():
    from memojar import _entry

# The same seed entries as the hypothesis fuzz: each payload records its own unpickling.
from test_fault_fuzz_entry import IDENT, KEY, LOADS, SECRET
from test_fault_fuzz_entry import _entry_bytes as _seed

SEEDS = {(s, o): _seed(s, o) for s in (None, SECRET) for o in (False, True)}


def test_one_input(data: bytes) -> None:
    for secret in (None, SECRET):
        before = len(LOADS)
        try:
            payload, buffers = _entry.verify(data, IDENT, KEY.encode(), time.time(), None,
                                             secret)
            value = _entry.load(payload, buffers)
        except _entry.Miss:
            if len(LOADS) != before:
                raise AssertionError("an entry that was a miss got unpickled") from None
            continue
        if data not in (SEEDS[(secret, False)], SEEDS[(secret, True)]):
            raise AssertionError(f"a value from a non-entry: {value!r}")


def main() -> None:
    import os
    import tempfile

    corpus = tempfile.mkdtemp(prefix="memojar-atheris-")
    for i, seed in enumerate(SEEDS.values()):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
            f.write(seed)
    atheris.Setup([*sys.argv, corpus], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
