"""A real S3-protocol server for tests: moto's server mode on a free loopback port.

``S3Server.threaded()`` runs moto in a thread of this process (the session's server);
``S3Server.process()`` runs it as a child process, which a test may stop (SIGSTOP: a server
that accepts connections and never answers), kill or restart. Both serve the same API::

    server = S3Server.process()
    try:
        url = server.location("bucket", "prefix")   # s3://bucket/prefix?endpoint_url=...
    finally:
        server.stop()

Both make moto's conditional writes atomic first (``atomic_object_writes``). moto checks a
condition and then writes, in two steps (``S3Response.put_object`` in moto/s3/responses.py:
``get_object`` for ``If-None-Match: *``, then ``backend.put_object``), with each request in
a thread of its own: two concurrent ``If-None-Match: *`` PUTs of one name can both succeed.
Measured (moto 5.2.5, 8 concurrent conditional PUTs a round, the server's GIL switch
interval at 1 µs to widen the window): 7 rounds of 200 had two winners; at the default
5 ms, none of 200. AWS S3 (and MinIO, R2) makes the check and the write one step: of
concurrent conditional writes of a name exactly one succeeds, the others get 412
PreconditionFailed or 409 ConditionalRequestConflict. Compute-once rests on exactly that,
so the test server gives it: every object write (PUT, POST, DELETE of a key, and a
multi-object delete) runs under one lock. ``test_s3.py::test_conditional_puts_are_atomic``
checks it with the narrow switch interval.

Both also make moto's multi-object delete ignore the ETag given with a key
(``ignore_multi_delete_etags``), as moto did before 5.2.6 and as S3-protocol servers without
that check do: the tests then run on one behaviour whatever moto's release, and a test of
S3's (honoured since 2025) asks for it (``honour_multi_delete_etags``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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


def atomic_object_writes() -> None:
    """Serialise moto's object writes in this process, so that a conditional write's check
    and its write are one step, as on S3 (see the module docstring). Idempotent."""
    import threading

    from moto.s3.responses import S3Response

    if getattr(S3Response, "_memojar_atomic", False):
        return
    lock = threading.Lock()
    key_response = S3Response._key_response
    delete_keys = S3Response._bucket_response_delete_keys

    def _key_response(self: Any, request: Any, full_url: str) -> Any:
        if request.method in ("GET", "HEAD"):
            return key_response(self, request, full_url)
        with lock:
            return key_response(self, request, full_url)

    def _bucket_response_delete_keys(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return delete_keys(self, *args, **kwargs)

    S3Response._key_response = _key_response
    S3Response._bucket_response_delete_keys = _bucket_response_delete_keys
    S3Response._memojar_atomic = True


def ignore_conditions() -> None:
    """Make moto's PUT ignore ``If-None-Match`` and ``If-Match``, as S3-protocol servers
    without conditional writes do (moto before 5.0.20, and others): a write always wins."""
    from moto.s3.responses import S3Response
    from werkzeug.datastructures import Headers

    put = S3Response._key_response_put

    def _key_response_put(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.headers = Headers(self.headers)
        self.headers.remove("If-None-Match")
        self.headers.remove("If-Match")
        return put(self, *args, **kwargs)

    S3Response._key_response_put = _key_response_put


def ignore_multi_delete_etags() -> None:
    """Make moto's multi-object delete (``DeleteObjects``) remove each key whatever the ETag
    given with it, as moto before 5.2.6 did (5.2.6 checks it, as S3 does since 2025): the
    check a ``DeleteObject``'s ``If-Match`` makes stays."""
    from moto.s3.responses import S3Response

    verify = getattr(S3Response, "_verify_etag_match_for_deletion", None)
    if verify is None or getattr(S3Response, "_memojar_etags_ignored", False):
        return  # (a release that never checks them), or done

    def verify_but_batches(self: Any, key_name: str, etag: str | None,
                           *args: Any, **kwargs: Any) -> None:
        if kwargs.get("failed_condition") == "ETag":  # (a key of a multi-object delete)
            return
        verify(self, key_name, etag, *args, **kwargs)

    S3Response._verify_etag_match_for_deletion = verify_but_batches
    S3Response._memojar_etags_ignored = True


def honour_multi_delete_etags(patch: Callable[[Any, str, Any], None] = setattr) -> None:
    """Make moto's multi-object delete (``DeleteObjects``) honour the ETag given with a key,
    as S3 does since 2025: moto 5.2 removes the object whatever its ETag. One whose object
    has another ETag is left, and answered with a ``PreconditionFailed`` error (none there:
    ``NoSuchKey``). ``patch``: ``setattr``, or a test's ``monkeypatch.setattr`` (the
    session's server is a thread of the test process)."""
    import threading

    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    refused = threading.local()
    delete_objects = S3Backend.delete_objects
    delete_keys = S3Response._bucket_response_delete_keys

    def delete_objects_if(self: Any, bucket: str, objects: list[dict[str, Any]],
                          *args: Any, **kwargs: Any) -> Any:
        kept = []
        for obj in objects:
            etag = obj.get("ETag")
            if etag is None:
                kept.append(obj)
                continue
            now = self.get_object(bucket, obj["Key"])
            if now is None:
                refused.errors.append((obj["Key"], "NoSuchKey"))
            elif now.etag.strip('"') != etag.strip('"'):
                refused.errors.append((obj["Key"], "PreconditionFailed"))
            else:
                kept.append(obj)
        return delete_objects(self, bucket, kept, *args, **kwargs)

    def delete_keys_if(self: Any, *args: Any, **kwargs: Any) -> Any:
        refused.errors = []
        status, headers, body = delete_keys(self, *args, **kwargs)
        errors = "".join(f"<Error><Key>{key}</Key><Code>{code}</Code><Message>refused"
                         "</Message></Error>" for key, code in refused.errors)
        headers.pop("content-length", None)
        return status, headers, body.replace("</DeleteResult>", errors + "</DeleteResult>")

    patch(S3Backend, "delete_objects", delete_objects_if)
    patch(S3Response, "_bucket_response_delete_keys", delete_keys_if)


def client_of(endpoint: str) -> Any:
    """A new boto3 client of the server at ``endpoint``, with the test credentials."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1",
    ).client("s3", endpoint_url=endpoint)


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
        atomic_object_writes()
        ignore_multi_delete_etags()
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return cls(port, thread=server)

    @classmethod
    def process(cls, port: int | None = None, atomic: bool = True,
                switch_interval: float | None = None, conditional: bool = True,
                multi_delete_etags: bool = False) -> S3Server:
        """``atomic=False``: moto as it is (conditional writes not atomic);
        ``switch_interval``: the server's ``sys.setswitchinterval`` (a small one makes races
        between its request threads likely); ``conditional=False``: a server that ignores
        conditional writes (``ignore_conditions``); ``multi_delete_etags``: one whose
        multi-object delete honours ETags, as S3's (``honour_multi_delete_etags``), else
        one whose ignores them (``ignore_multi_delete_etags``)."""
        port = port or free_port()
        code = "import sys\n"
        if switch_interval is not None:
            code += f"sys.setswitchinterval({switch_interval!r})\n"
        code += (f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
                 "import s3_server\n")
        if atomic:
            code += "s3_server.atomic_object_writes()\n"
        if not conditional:
            code += "s3_server.ignore_conditions()\n"
        code += ("s3_server.honour_multi_delete_etags()\n" if multi_delete_etags
                 else "s3_server.ignore_multi_delete_etags()\n")
        code += "from moto.server import main\nmain()\n"
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "-H", "127.0.0.1", "-p", str(port)],
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
            self._client = client_of(self.endpoint)
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


class KeepAliveFront:
    """An HTTP/1.1 front on loopback for a moto server, that keeps each client connection
    open between requests, as S3 (and MinIO, R2) do: moto's werkzeug server closes every
    connection after its answer ("Connection: close"), so a client of it pools nothing,
    and what a client leaves open cannot be seen there. Each request is passed to moto as
    it came (its Host too: the signature covers it) and its answer sent back whole.

    ``open``: the client connections it holds now; ``accepted``: all it took."""

    def __init__(self, server: S3Server) -> None:
        import http.client
        import http.server
        import threading

        self.open = self.accepted = 0
        mutex = threading.Lock()
        front = self
        port = server.port
        skipped = {"connection", "keep-alive", "transfer-encoding", "content-length"}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with mutex:
                    front.open += 1
                    front.accepted += 1

            def finish(self) -> None:
                with mutex:
                    front.open -= 1
                super().finish()

            def answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                try:
                    upstream.request(self.command, self.path, body,
                                     {k: v for k, v in self.headers.items()
                                      if k.lower() not in skipped})
                    reply = upstream.getresponse()
                    data = reply.read()
                finally:
                    upstream.close()
                self.send_response(reply.status, reply.reason)
                for name, value in reply.getheaders():
                    if name.lower() not in skipped:
                        self.send_header(name, value)
                length = reply.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def location(self, bucket: str, prefix: str = "", **options: str) -> str:
        return S3Server.location(self, bucket, prefix, **options)  # type: ignore[arg-type]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
