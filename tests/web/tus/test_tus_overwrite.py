"""``UploadSettings(overwrite=False)`` (the default) on the tus routes, with tuspy (PyPI).

On moto and SeaweedFS, which honour ``If-None-Match`` on PutObject and
CompleteMultipartUpload: a key taken before the upload is refused at creation (409,
before a byte); a key taken while the upload runs is refused by the store itself at the
write that makes the object (the PutObject of a small upload, the Complete of a
multipart one), answered 409, and the upload removed. The object that was there stays
as it was; nothing else is left in the bucket. On rclone serve s3, which ignores the
condition, creation answers 500 ``overwrite_unenforceable`` and nothing is created.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from tus_helpers import (
    MiB,
    TusServer,
    bucket_keys,
    multipart_uploads,
    new_bucket,
    random_file,
    running,
    s3_client,
)
from tusclient import client as tuspy
from tusclient.exceptions import TusCommunicationError

OLD = b"the object that was there first\n"
H = {"Tus-Resumable": "1.0.0", "X-User": "ivy"}


@pytest.fixture(
    params=[("moto", "fastapi"), ("seaweedfs", "aiohttp"), ("rclone", "fastapi")],
    ids=lambda p: "-".join(p),
)
def setup(request: pytest.FixtureRequest) -> tuple[Any, str]:
    name, framework = request.param
    return request.getfixturevalue(f"{name}_server"), framework


def read(server: Any, bucket: str, key: str) -> bytes:
    return bytes(s3_client(server).get_object(Bucket=bucket, Key=key)["Body"].read())


def test_tus_never_replaces_an_object(setup: tuple[Any, str], tmp_path: Any) -> None:
    server, framework = setup
    bucket = new_bucket(server)
    s3 = s3_client(server)
    taken = "users/ivy/taken.bin"
    s3.put_object(Bucket=bucket, Key=taken, Body=OLD)
    big = random_file(str(tmp_path / "big.bin"), 6 * MiB + 5)  # two 5 MiB-plan parts
    small = random_file(str(tmp_path / "small.bin"), 1000)  # one PutObject
    tus = TusServer(server, bucket, framework, options={"part_size": 5 * MiB}, overwrite=False)
    races = {"users/ivy/race-multipart.bin": (big, 5 * MiB), "users/ivy/race-put.bin": (small, 600)}
    with running(tus), ExitStack() as files:  # tuspy never closes a file it opened from a path

        def opened(path: str) -> Any:
            return files.enter_context(open(path, "rb"))

        client = tuspy.TusClient(tus.url, headers={"X-User": "ivy"})
        if server.name == "rclone":  # the store would overwrite: the route refuses to run
            with pytest.raises(TusCommunicationError) as refused:
                client.uploader(file_stream=opened(small), metadata={"objectKey": "users/ivy/new"}).upload()
            assert refused.value.status_code == 500
            assert b"overwrite" in (refused.value.response_content or b"")
            assert bucket_keys(server, bucket) == [taken] and read(server, bucket, taken) == OLD
            return
        # taken before: refused at creation, before the body is read
        with pytest.raises(TusCommunicationError) as before:
            client.uploader(
                file_stream=opened(big), chunk_size=5 * MiB, metadata={"objectKey": taken}
            ).upload()
        assert before.value.status_code == 409, before.value.response_content
        r = httpx.post(  # creation-with-upload: the same 409 without reading the body
            tus.url,
            content=b"x" * 1000,
            headers={
                **H,
                "Upload-Length": "1000",
                "Content-Type": "application/offset+octet-stream",
                "Upload-Metadata": "objectKey dXNlcnMvaXZ5L3Rha2VuLmJpbg==",  # taken's key
            },
        )
        assert r.status_code == 409, r.text
        # taken while the upload runs: the store refuses the PutObject / the Complete
        for key, (path, chunk) in races.items():
            uploader = client.uploader(
                file_stream=opened(path), chunk_size=chunk, metadata={"objectKey": key}
            )
            uploader.upload_chunk()  # the first chunk is in (a part sent, or a piece stored)
            assert uploader.url is not None
            s3.put_object(Bucket=bucket, Key=key, Body=OLD)  # another writer wins the key
            with pytest.raises(TusCommunicationError) as during:
                uploader.upload_chunk()  # the last chunk: the write that makes the object
            assert during.value.status_code == 409, during.value.response_content
            gone = httpx.head(uploader.url, headers=H)
            assert gone.status_code == 404  # the upload that can never complete was removed
    for key in (taken, *races):
        assert read(server, bucket, key) == OLD
    assert bucket_keys(server, bucket) == sorted([taken, *races])  # no helper object left
    assert multipart_uploads(server, bucket) == []
