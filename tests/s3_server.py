"""A real S3-protocol server for tests: moto's server mode on a free loopback port.

``S3Server.threaded()`` runs moto in a thread of this process (the session's server);
``S3Server.process()`` runs it as a child process, which a test may stop (SIGSTOP: a server
that accepts connections and never answers), kill or restart. Both serve the same API::

    server = S3Server.process()
    try:
        url = server.location("bucket", "prefix")   # s3://bucket/prefix?endpoint_url=...
    finally:
        server.stop()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

START_TIMEOUT = 20.0  # seconds for a server to answer
STOP_TIMEOUT = 5.0

# The environment every client of the test server needs: dummy credentials, a region, and
# no configuration file of the user's (nothing here may reach a real account).
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """One moto server on 127.0.0.1 (in a thread or a child process)."""

    def __init__(self, port: int, thread: Any = None, proc: Any = None) -> None:
        self.port = port
        self.thread = thread
        self.proc = proc
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def threaded(cls) -> S3Server:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return cls(port, thread=server)

    @classmethod
    def process(cls, port: int | None = None) -> S3Server:
        port = port or free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", "from moto.server import main; main()",
             "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        server = cls(port, proc=proc)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with status {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return server
            except OSError:
                time.sleep(0.05)
        server.stop()
        raise RuntimeError("moto server did not start")

    def client(self) -> Any:
        """A boto3 client of this server, made once: making one loads botocore's models
        (about 1 s of CPU on a busy 2-core machine), and every S3 test asks for one. boto3
        clients are thread-safe."""
        if self._client is None:
            import boto3

            self._client = boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing",
                region_name="us-east-1",
            ).client("s3", endpoint_url=self.endpoint)
        return self._client

    def bucket(self, name: str) -> str:
        """Create a bucket (if missing) and return its name."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    def location(self, bucket: str, prefix: str = "", **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"endpoint_url": self.endpoint,
                                                  **options}.items())
        return f"s3://{bucket}/{prefix}?{query}"

    def pause(self) -> None:
        """Stop the server process without closing its socket: it accepts, never answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
