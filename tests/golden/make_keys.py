"""Write this Python's keys of ``keys_catalog.catalog()`` into ``keys.json``, under
today's ``_keys.KEYING``. Run it on each Python 3.10-3.13 after bumping ``KEYING``, never
otherwise (``test_golden.py`` says when)::

    PYTHONPATH=src:tests/golden python tests/golden/make_keys.py"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keys_catalog

from memojar import _keys

HERE = Path(__file__).resolve().parent


def main() -> None:
    path = HERE / "keys.json"
    pinned = json.loads(path.read_text()) if path.exists() else {}
    if pinned.get("keying") != _keys.KEYING:
        pinned = {"keying": _keys.KEYING}
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    pinned[python] = {name: _keys.make_key((value,))
                      for name, value in keys_catalog.catalog().items()}
    path.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n")
    print(f"{path.name}: keying {_keys.KEYING}, Python {python}, {len(pinned[python])} keys")


if __name__ == "__main__":
    main()
