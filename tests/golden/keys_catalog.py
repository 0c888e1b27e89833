"""Arguments of many kinds, built alike in every process: ``keys.json`` holds their keys
(``make_keys.py``), and ``test_golden.py`` checks today's keys against it. A kind whose key
changes with a library's version (pandas' objects, ``np.datetime64`` across numpy 2.2-2.4)
is left out: its key may change under a user's upgrade, a miss, never a wrong value."""

from __future__ import annotations

import array
import collections
import dataclasses
import datetime as dt
import decimal
import enum
import fractions
import pathlib
import uuid
from typing import Any


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


def catalog() -> dict[str, Any]:
    import numpy as np

    kinds: dict[str, Any] = {
        "int": 5, "bool": True, "float": 5.0, "-0.0": -0.0, "nan": float("nan"),
        "big int": 2**100, "complex": 1 + 2j, "str": "héllo", "bytes": b"ab",
        "bytearray": bytearray(b"ab"), "None": None, "tuple": (1, "a"), "list": [1, [2]],
        "dict": {"b": 1, "a": 2}, "set": {3, 1, 2}, "frozenset": frozenset({"a", "b"}),
        "range": range(3), "OrderedDict": collections.OrderedDict(a=1),
        "Counter": collections.Counter("aab"), "defaultdict": collections.defaultdict(int, a=1),
        "deque": collections.deque([1, 2]), "date": dt.date(2024, 1, 2),
        "datetime": dt.datetime(2024, 1, 2, 3, 4, 5),
        "aware datetime": dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc),
        "timedelta": dt.timedelta(1), "Decimal": decimal.Decimal("1.10"),
        "Fraction": fractions.Fraction(1, 3), "PurePosixPath": pathlib.PurePosixPath("/a/b"),
        "UUID": uuid.UUID(int=5), "Enum": Colour.RED, "dataclass": Point(1, 2.0),
        "array.array": array.array("i", [1, 2]), "slice": slice(1, 2), "Ellipsis": ...,
        "type": int,
    }
    for name in ("int8", "int16", "int32", "int64", "longlong", "uint64", "ulonglong",
                 "float16", "float32", "float64", "longdouble", "complex64", "bool_"):
        kinds[f"np.{name}"] = getattr(np, name)(5)
    kinds["np.str_"] = np.str_("ab")
    kinds["np.bytes_"] = np.bytes_(b"ab")
    kinds["array int64"] = np.arange(6, dtype="int64").reshape(2, 3)
    kinds["array float32 Fortran"] = np.asfortranarray(np.arange(6, dtype="float32").reshape(2, 3))
    kinds["array strided"] = np.arange(10)[::2]
    kinds["array 0-d"] = np.array(3.5)
    kinds["array str"] = np.array(["a", "bc"])
    kinds["array object"] = np.array([1, "a"], dtype=object)
    kinds["array structured"] = np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])
    kinds["dtype"] = np.dtype("float32")
    return kinds
