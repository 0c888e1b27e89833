"""A real ``redis-server`` for tests: on a free loopback port, persistence off, stopped after.

Importable by tests and by the subprocesses they start::

    server = RedisServer.start()
    try:
        url = server.url(db=1)
    finally:
        server.stop()
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

START_TIMEOUT = 10.0  # seconds for a server to answer PING
STOP_TIMEOUT = 5.0


def redis_server_path() -> str | None:
    """The redis-server executable, or None when it is not installed."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def free_port(below: int | None = None) -> int:
    """A port free on 127.0.0.1 now; ``below``: under that number (the kernel's choice,
    from its ephemeral range, runs up to 60999, and successive choices are near each other,
    so a port under a limit is looked for at random, not asked again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if below is None:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(1000):
        chosen = random.randrange(20_000, below)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", chosen))
            except OSError:
                continue
            return chosen
    raise OSError(f"no free port under {below}")


# A cluster node also listens 10,000 ports above its own (its bus): redis-server refuses a
# port over 55535 with cluster-enabled ("Redis port number too high"), which the kernel's
# choice of a free port gave one start in five.
_CLUSTER_PORT_MAX = 55_535


class RedisServer:
    """One redis-server process on 127.0.0.1; ``stop`` or ``kill`` it when done."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, workdir: str) -> None:
        self.proc = proc
        self.port = port
        self.workdir = workdir

    @classmethod
    def start(cls, *args: str, port: int | None = None) -> RedisServer:
        """Start a server (extra ``args`` are redis-server options) and wait for PING.

        A port taken between choosing and binding is retried with another free port."""
        exe = redis_server_path()
        if exe is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        last = ""
        for _ in range(5):
            chosen = port or free_port(
                _CLUSTER_PORT_MAX + 1 if "--cluster-enabled" in args else None)
            workdir = tempfile.mkdtemp(prefix="memojar-redis-")
            proc = subprocess.Popen(
                [exe, "--port", str(chosen), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", workdir, "--daemonize", "no",
                 "--databases", "256", "--loglevel", "warning", *args],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
            server = cls(proc, chosen, workdir)
            if server._wait_ready():
                return server
            last = server._output()
            server.stop()
            if port is not None:
                break
        raise RuntimeError(f"redis-server did not start: {last}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.ping():
                return True
            time.sleep(0.02)
        return False

    def _output(self) -> str:
        if self.proc.stdout is None or self.proc.poll() is None:
            return ""
        return self.proc.stdout.read().decode(errors="replace").strip()

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # up, with a password
        except OSError:
            return False

    def url(self, db: int = 0, **options: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"redis://127.0.0.1:{self.port}/{db}" + (f"?{query}" if query else "")

    def client(self, db: int = 0) -> Any:
        """A redis-py client on one database of this server."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        self._cleanup()

    def stop(self) -> None:
        """Stop the server; always safe to call, also twice or after ``kill``."""
        if self.proc.poll() is None:
            try:
                self.resume()
                self.proc.terminate()
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._cleanup()

    def _cleanup(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
