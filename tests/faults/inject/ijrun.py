"""The traced process: imports everything, stops itself (the driver attaches strace, so that
every thread's system calls are counted from here), runs one operation, and writes what
happened into a shared mapping (no system call: the faults cannot reach the report).

usage: ijrun.py OP CACHE_DIR RESULT_FILE
"""

from __future__ import annotations

import io
import json
import mmap
import os
import signal
import sys
import traceback
import warnings

import ijfuncs
import ijops

import memojar
import memojar._cli

op = ijops.OPS[sys.argv[1]]
directory, result_path = sys.argv[2], sys.argv[3]
os.environ["IJ_GEN"] = str(op.gen)
fd = os.open(result_path, os.O_RDWR)
report = mmap.mmap(fd, 1 << 20)
os.close(fd)
out = io.StringIO()
result: dict[str, object] = {}
warnings.simplefilter("always")
traceback.format_exc  # noqa: B018 (imported)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fs = None
    if op.cli is None and os.environ.get("IJ_PRECONSTRUCT"):
        # the cache made untraced: the operation's own calls only
        fs = ijops.open_cache(directory, op.max_size,
                              memory=4 if op.name == "hit_memory" else None)
    os.kill(os.getpid(), signal.SIGSTOP)
    try:
        if op.cli is not None:
            saved = sys.stdout, sys.stderr
            sys.stdout = sys.stderr = out
            try:
                status = memojar._cli.main(["--dir", directory, *op.cli])
            finally:
                sys.stdout, sys.stderr = saved
            result["status"] = status
            result["output"] = out.getvalue()[-4000:]
        else:
            if fs is None:
                fs = ijops.open_cache(directory, op.max_size,
                                      memory=4 if op.name == "hit_memory" else None)
            value = op.run(fs)
            if op.want is not None:
                result["right"] = value == op.want
            else:
                result["value"] = repr(value)[:200]
            if op.max_size is not None or op.name.startswith(("miss", "delete")):
                info = fs["f"].cache_info()
                result["info_f"] = [info.entries, info.bytes]
    except BaseException as exc:  # noqa: BLE001 - reported to the driver
        result["raised"] = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
        result["traceback"] = traceback.format_exc()[-3000:]
result["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
result["computed"] = ijfuncs.COMPUTED
data = json.dumps(result).encode()[: (1 << 20) - 8]
report[:8] = len(data).to_bytes(8, "little")
report[8:8 + len(data)] = data
