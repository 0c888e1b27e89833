"""Attacks on the remote stores with objects memojar did not write under their prefix: a
user's own objects beside the cache (an old ``.lease``-suffixed file, an upload in
progress, files named like nothing of memojar's, a key of a Redis hash type under the
prefix). ``clear``, ``prune``, listings and the command line never crash on them and never
remove them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from memojar import Cache, _s3store

SECRET = "fault-secret"


def bucket_and_prefix(location: str) -> tuple[str, str]:
    parts = urlsplit(location)
    return parts.netloc, parts.path.strip("/")


def s3_objects(client: Any, bucket: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


FOREIGN = [  # under the cache's prefix, none named like an entry, a lease or a note
    "notes/build.lease",
    "notes/0123456789abcdef0123456789abcdef.lease.bak",
    "readme.txt",
    "f/0123456789abcdef0123456789abcdef.pickle",
    "deep/er/0123456789abcdef0123456789abcdef.pkl",
]


def test_s3_clear_and_prune_an_hour_later_leave_foreign_objects(
    s3_server: Any, s3_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old: ``prune``'s cleanup removed any object under the prefix whose name ended in
    ``.lease`` once it was an hour old, whoever wrote it."""
    client = s3_server.client()
    bucket, prefix = bucket_and_prefix(s3_location)
    for name in FOREIGN:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=b"user data")
    cache = Cache(s3_location, secret=SECRET)

    @cache.cached
    def double(x: int) -> int:
        return x * 2

    assert double(2) == 4
    monkeypatch.setattr(_s3store, "ORPHAN_AGE", 0.0)  # an hour later, as cleanup sees it
    cache.prune()
    cache.clear()
    left = {n for n in s3_objects(client, bucket) if not n.endswith("/.swept")}  # memojar's
    assert left == {f"{prefix}/{name}" for name in FOREIGN}


def test_s3_prune_an_hour_later_leaves_a_foreign_upload_in_progress(
    s3_server: Any, s3_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old: ``prune`` aborted every multipart upload under the prefix older than an hour,
    a user's own upload of a large file beside the cache included."""
    client = s3_server.client()
    bucket, prefix = bucket_and_prefix(s3_location)
    name = f"{prefix}/backups/big.tar"
    upload = client.create_multipart_upload(Bucket=bucket, Key=name)["UploadId"]
    cache = Cache(s3_location, secret=SECRET)
    monkeypatch.setattr(_s3store, "ORPHAN_AGE", 0.0)
    cache.prune()
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [(name, upload)]
    client.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload)


def test_s3_prune_aborts_only_the_uploads_of_memojars_writers_that_died(
    s3_server: Any, s3_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload at an entry's name (``<folder>/<32 hex>.pkl``: a user's upload of
    ``models/<uuid hex>.pkl``) is memojar's only if the lease its writer held is there, as
    memojar writes one. Old: every such upload an hour old was aborted by ``prune`` (and
    ``clear``), the user's next part refused."""
    client = s3_server.client()
    bucket, prefix = bucket_and_prefix(s3_location)
    theirs = f"{prefix}/models/{'ab' * 16}.pkl"
    mine = f"{prefix}/mod.f/{'cd' * 16}.pkl"  # a writer killed mid-upload: its lease left
    client.put_object(Bucket=bucket, Key=mine[: -len(".pkl")] + ".lease",
                      Body=f"{'ef' * 16} {'0' * 16} pid 4242\n".encode())
    uploads = {name: client.create_multipart_upload(Bucket=bucket, Key=name)["UploadId"]
               for name in (theirs, mine)}
    cache = Cache(s3_location, secret=SECRET)
    monkeypatch.setattr(_s3store, "ORPHAN_AGE", -1.0)  # an hour later, as cleanup sees it
    monkeypatch.setattr(_s3store, "LEASE_STALE", -1.0)
    cache.prune()
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in left] == [(theirs, uploads[theirs])]
    assert f"{prefix}/mod.f/{'cd' * 16}.lease" not in s3_objects(client, bucket)
    client.abort_multipart_upload(Bucket=bucket, Key=theirs, UploadId=uploads[theirs])
    cache.close()
