"""What a cached function sent by value to joblib's loky workers costs a batch of tasks.

    python benchmarks/worker_copies.py [-n 5000] [--tasks 40]

A function of ``__main__`` is sent whole (cloudpickle), a new copy with each batch; each
copy checks, at its first call, the identity its sender made against what it runs in the
worker (``_Memo.ident``, ``_agrees``), which walks the globals it reads. Here it reads a
global list of ``-n`` instances; every call is stored by the parent first, so the workers
only hit. Printed: the seconds for ``--tasks`` tasks, one task a batch, with ``-n`` and
with a global of 10 instances, and with ``-n`` for the same function undecorated (what
sending the global by value costs each batch, memojar or not): the check's share is the
difference between the first and the last. Then, less at the mercy of a loaded machine:
the CPU time of the first call of 30 copies unpickled in one fresh interpreter (median), the
part of a batch memojar adds (the check), with ``-n`` instances and with 10.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

CHILD = """
import sys, time
from joblib import Parallel, delayed
import memojar

class Item:
    def __init__(self, i):
        self.x = i
        self.name = f"i{i}"

ITEMS = [Item(i) for i in range(int(sys.argv[2]))]
cache = memojar.Cache(sys.argv[1])

def work(i):
    return sum(item.x for item in ITEMS[:10]) + i

if sys.argv[4] == "cached":
    work = cache.cached(work)

if __name__ == "__main__":
    tasks = int(sys.argv[3])
    for i in range(tasks):
        work(i)  # stored by the parent: the workers hit
    Parallel(n_jobs=2, backend="loky")(delayed(work)(i) for i in range(2))  # workers up
    start = time.perf_counter()
    Parallel(n_jobs=2, backend="loky", batch_size=1)(delayed(work)(i) for i in range(tasks))
    print(time.perf_counter() - start)
"""


def run(items: int, tasks: int, mode: str = "cached") -> float:
    with tempfile.TemporaryDirectory() as root:
        with tempfile.NamedTemporaryFile("w", suffix=".py", dir=root, delete=False) as f:
            f.write(CHILD)
        out = subprocess.run([sys.executable, f.name, root + "/cache", str(items),
                              str(tasks), mode], capture_output=True, text=True, check=True)
        return float(out.stdout.split()[-1])


COPIES = """
import pickle, sys, time
blob = open(sys.argv[1], "rb").read()
spent = []
for _ in range(30):
    copy = pickle.loads(blob)  # a new copy, as each batch brings
    start = time.process_time()
    copy(1)  # its first call: the check of its identity, then a hit
    spent.append(time.process_time() - start)
print(sorted(spent)[15])
"""


def copy_cpu(items: int) -> float:
    """Seconds of CPU the first call of a copy costs (median of 30 copies)."""
    with tempfile.TemporaryDirectory() as root:
        script = CHILD.replace("if __name__", "import cloudpickle\nif __name__").replace(
            "    tasks = int", "    work(1)\n    open(sys.argv[3], 'wb').write("
            "cloudpickle.dumps(work))\n    raise SystemExit\n    tasks = int")
        with open(f"{root}/job.py", "w") as f:
            f.write(script)
        subprocess.run([sys.executable, f"{root}/job.py", root + "/cache", str(items),
                        f"{root}/blob", "cached"], check=True)
        out = subprocess.run([sys.executable, "-c", COPIES, f"{root}/blob"],
                             capture_output=True, text=True, check=True)
        return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="instances in the global")
    parser.add_argument("--tasks", type=int, default=40)
    args = parser.parse_args()
    big, small, plain = (run(args.n, args.tasks), run(10, args.tasks),
                         run(args.n, args.tasks, "plain"))
    print(f"{args.tasks} tasks, one a batch: {big:.2f} s with a global of {args.n} "
          f"instances, {small:.2f} s with 10 ({(big - small) / args.tasks * 1000:.0f} ms "
          f"more a batch); undecorated with {args.n}: {plain:.2f} s (the check: "
          f"{(big - plain) / args.tasks * 1000:.0f} ms a batch)")
    print(f"a copy's first call: {copy_cpu(args.n) * 1000:.2f} ms CPU with {args.n} "
          f"instances, {copy_cpu(10) * 1000:.2f} ms with 10 (median of 30 copies)")


if __name__ == "__main__":
    main()
