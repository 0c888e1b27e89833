"""The functions the strace fault-injection driver caches (a module, so that every process
gives them the same identity). Each value says which call made it; ``COMPUTED`` what ran."""

from __future__ import annotations

import os

COMPUTED: list[tuple[str, int]] = []


def gen() -> int:
    return int(os.environ.get("IJ_GEN", "0"))


def f(x: int) -> dict[str, object]:
    COMPUTED.append(("f", x))
    return {"x": x, "gen": gen(), "pad": "p" * 300}


def big(x: int) -> bytes:  # over 1 MiB: read through mmap
    COMPUTED.append(("big", x))
    return bytes([x % 251]) * 1_500_000 + gen().to_bytes(4, "little")


def s(x: int) -> dict[str, object]:  # ttl=1, stale_while_revalidate
    COMPUTED.append(("s", x))
    return {"s": x, "gen": gen()}


def t(x: int) -> dict[str, object]:  # ttl=1: stale
    COMPUTED.append(("t", x))
    return {"t": x, "gen": gen()}


def expected(name: str, x: int, generation: int = 0) -> object:
    saved = os.environ.get("IJ_GEN")
    os.environ["IJ_GEN"] = str(generation)
    try:
        value = globals()[name](x)
    finally:
        COMPUTED.pop()
        if saved is None:
            del os.environ["IJ_GEN"]
        else:
            os.environ["IJ_GEN"] = saved
    return value
