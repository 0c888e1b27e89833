"""Systematic strace fault injection against memojar's directory store.

For each operation (``ijops.OPS``): a template cache is made once (untraced); a counting run
(strace attached to the stopped process, so every thread counts from the operation) lists
each system call touching the cache, by name and occurrence; then each occurrence is failed
with each errno (``inject=SC:error=E:when=N``) or killed (``signal=SIGKILL``) in a copy of
the template, and a fresh process judges the copy (``ijverify.py``).

usage: python driver.py [--ops a,b] [--faults EIO,...,KILL] [--jobs 2] [--only openat,...]
                        [--lean] [--sample K] [--count-only] OUT.jsonl
       python judge.py OUT.jsonl        # the runs that broke a promise, grouped
       python show.py OUT.jsonl openat#12:EIO   # one run's whole record

``IJ_PRECONSTRUCT=1``: the ``Cache`` is made before strace attaches (the operation's own
calls only; ``hit`` without it covers opening a cache). ``IJ_BASE`` (default /dev/shm/ij):
where templates, copies and logs go. Linux, strace 5+; a run has 60 s before it is called a
hang. A fault lands on the N-th call of that name in each thread at once (strace counts per
thread): a thread's N-th call may be another file's (``injected`` in a record says which).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2] / "src"
PY = os.environ.get("IJ_PYTHON", "/work/venv/bin/python")
BASE = Path(os.environ.get("IJ_BASE", "/dev/shm/ij"))
FAULTS = ["EIO", "ENOSPC", "EACCES", "EROFS", "EINTR", "EMFILE", "ENOENT", "KILL"]
ENV = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{HERE}", "PYTHONHASHSEED": "0",
       "PYTHONDONTWRITEBYTECODE": "1"}
ENV.pop("MEMOJAR_DIR", None)
LINE = re.compile(r"^(\d+)\s+([a-z0-9_]+)\(")
TIMEOUT = 60
NOISE = re.compile(r"F_DUPFD_CLOEXEC|F_GETFL|F_SETFD| lseek[(]")
LEAN = False
SAMPLE = 0  # 0: every occurrence; else about this many more of each shape

sys.path[:0] = [str(SRC), str(HERE)]
import ijops  # noqa: E402


def template(op: ijops.Op) -> Path:
    root = BASE / "tpl" / op.name
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (root / "outside").mkdir(parents=True)
    (root / "outside" / "keep.txt").write_text("not memojar's\n")
    subprocess.run([PY, "-c", "import sys, ijops; ijops.fill(sys.argv[1], sys.argv[2], "
                    "None if sys.argv[3] == 'None' else int(sys.argv[3]))",
                    str(root / "c"), op.template, str(op.max_size)],
                   env=ENV, check=True, timeout=120)
    (root / "done").write_text("")
    return root


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _traced(pid: int) -> bool:
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/status") as file:
                if "TracerPid:\t0\n" in file.read():
                    return False
    except OSError:
        return True  # gone: nothing more to wait for
    return True


def run(op: ijops.Op, tag: str, inject: tuple[str, str, int] | None) -> dict[str, object]:
    """One traced run of ``op`` in a fresh copy of its template."""
    tpl = template(op)
    rundir = BASE / "run" / op.name / tag
    shutil.rmtree(rundir, ignore_errors=True)
    rundir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tpl, rundir, symlinks=True)
    (rundir / "done").unlink()
    res = BASE / "res" / f"{op.name}-{tag}"
    res.parent.mkdir(parents=True, exist_ok=True)
    res.write_bytes(bytes(1 << 20))
    log = BASE / "log" / f"{op.name}-{tag}.strace"
    log.parent.mkdir(parents=True, exist_ok=True)
    err = open(BASE / "log" / f"{op.name}-{tag}.stderr", "wb")  # noqa: SIM115
    proc = subprocess.Popen([PY, str(HERE / "ijrun.py"), op.name, str(rundir / "c"), str(res)],
                            env=ENV, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    out: dict[str, object] = {"op": op.name, "tag": tag, "inject": inject, "dir": str(rundir)}
    deadline = time.monotonic() + 60
    while _state(proc.pid) != "T":
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            out["status"] = "nostart"
            out["stderr"] = (BASE / "log" / f"{op.name}-{tag}.stderr").read_text()[-2000:]
            return out
        time.sleep(0.005)
    cmd = ["strace", "-f", "-y", "-qq", "-o", str(log), "-p", str(proc.pid)]
    if inject is not None:
        sc, fault, n = inject
        action = "signal=SIGKILL" if fault == "KILL" else f"error={fault}"
        cmd += ["-e", f"trace={sc}", "-e", f"inject={sc}:{action}:when={n}"]
    tracer = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    while not _traced(proc.pid):
        if tracer.poll() is not None:
            break
        time.sleep(0.002)
    time.sleep(0.01)
    os.kill(proc.pid, signal.SIGCONT)
    try:
        rc = proc.wait(timeout=TIMEOUT)
        out["status"] = "exit" if rc >= 0 else f"signal{-rc}"
        out["rc"] = rc
    except subprocess.TimeoutExpired:
        out["status"] = "HANG"
        proc.kill()
        proc.wait()
    try:
        tracer.wait(timeout=30)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait()
    err.close()
    data = res.read_bytes()
    n = int.from_bytes(data[:8], "little")
    if n:
        out["result"] = json.loads(data[8:8 + n])
    res.unlink()
    stderr = (BASE / "log" / f"{op.name}-{tag}.stderr").read_text(errors="replace")
    if stderr.strip():
        out["stderr"] = stderr[-2000:]
    if inject is not None:
        injected = [line for line in log.read_text(errors="replace").splitlines()
                    if "INJECTED" in line or "+++ killed by SIGKILL" in line
                    or "--- SIGKILL" in line]
        out["injected"] = injected[:3]
        log.unlink()
    (BASE / "log" / f"{op.name}-{tag}.stderr").unlink()
    return out


def targets(op: ijops.Op) -> list[tuple[str, int, str]]:
    """(syscall, occurrence, line) of each system call touching the cache, counted per
    thread; an occurrence number is kept once whatever the thread."""
    counted = run(op, "count", None)
    if counted.get("status") != "exit":
        raise SystemExit(f"counting run of {op.name} failed: {counted}")
    log = BASE / "log" / f"{op.name}-count.strace"
    cache = str(BASE / "run" / op.name / "count" / "c")
    seen: dict[tuple[str, str], int] = {}
    found: dict[tuple[str, int], str] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = LINE.match(line)
        if match is None:
            continue
        tid, name = match.groups()
        seen[tid, name] = n = seen.get((tid, name), 0) + 1
        if LEAN and (NOISE.search(line) or (name == "close" and "(deleted)" not in line
                                            and ".tmp>" not in line)):
            continue  # libc's fdopendir; closes of descriptors nothing was written to
        if cache in line and (name, n) not in found:
            found[name, n] = line[:300]
    if not SAMPLE:
        return [(name, n, line) for (name, n), line in sorted(found.items())]
    # Loops over shards and files repeat one shape of call: a few of each are tried.
    shapes: dict[str, list[tuple[str, int, str]]] = {}
    for (name, n), line in sorted(found.items()):
        body = line.split(" ", 1)[1].rsplit(" = ", 1)[0]
        body = re.sub(r"[0-9a-f]{2,}|[0-9]+", "N", body)
        shapes.setdefault(body, []).append((name, n, line))
    kept = set()
    for group in shapes.values():
        if SAMPLE < 0:
            kept.update(group[:1] + group[-1:])
        else:
            kept.update(group[:2] + group[-1:] + group[2:-1][:: max(1, len(group) // SAMPLE)])
    return sorted(kept)


def verify(op: ijops.Op, runs: list[dict[str, object]]) -> None:
    args = [f"{r['dir']}/c:{1 if r.get('status') == 'signal9' else 0}" for r in runs
            if r.get("status") not in ("nostart",)]
    if not args:
        return
    try:
        done = subprocess.run([PY, str(HERE / "ijverify.py"), op.name, *args], env=ENV,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        for r in runs:
            r["verify"] = "HANG"
        return
    by_dir = {}
    for line in done.stdout.splitlines():
        item = json.loads(line)
        by_dir[item.pop("dir")] = item
    for r in runs:
        r["verify"] = by_dir.get(f"{r['dir']}/c", {"missing": done.stderr[-2000:]})
        outside = Path(str(r["dir"]))
        names = sorted(p.name for p in outside.iterdir())
        if names != ["c", "outside"] or [p.name for p in (outside / "outside").iterdir()] != [
                "keep.txt"] or (outside / "outside" / "keep.txt").read_text() != "not memojar's\n":
            r["outside_touched"] = names
        shutil.rmtree(outside, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--ops", default=",".join(ijops.OPS))
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default="", help="syscall names, comma separated")
    parser.add_argument("--count-only", action="store_true")
    parser.add_argument("--sample", type=int, default=0)
    parser.add_argument("--lean", action="store_true", help="skip libc's fdopendir calls "
                        "and closes of descriptors nothing was written to")
    args = parser.parse_args()
    global SAMPLE, LEAN
    SAMPLE, LEAN = args.sample, args.lean
    faults = args.faults.split(",")
    only = set(filter(None, args.only.split(",")))
    with open(args.out, "a") as sink:
        for name in args.ops.split(","):
            op = ijops.OPS[name]
            found = [t for t in targets(op) if not only or t[0] in only]
            summary: dict[str, int] = {}
            for sc, _, _ in found:
                summary[sc] = summary.get(sc, 0) + 1
            print(f"{name}: {len(found)} occurrences {summary}", flush=True)
            sink.write(json.dumps({"op": name, "targets": found}) + "\n")
            if args.count_only:
                continue
            jobs = [(sc, fault, n) for sc, n, _ in found for fault in faults]
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
                for i in range(0, len(jobs), 16):
                    chunk = jobs[i:i + 16]
                    runs = list(pool.map(
                        lambda jt, op=op: run(op, f"{jt[0]:05d}", jt[1]),
                        enumerate(chunk, start=i)))
                    verify(op, runs)
                    for r in runs:
                        sink.write(json.dumps(r) + "\n")
                    sink.flush()
            print(f"  {len(jobs)} runs in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
