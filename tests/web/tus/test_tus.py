"""streamx.web.tus on the wire: every route and refusal, through httpx, against both adapters
(tests/tus_app.py in its own process) on moto and rclone. The real tus clients are in
tests/web/tus/test_tus_clients.py."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from tus_helpers import (
    ROOT,
    MiB,
    TusServer,
    bucket_keys,
    multipart_uploads,
    new_bucket,
    s3_client,
)

import streamx
from streamx.web.tus import TusOptions, sweep_expired

# tus is streamx's protocol, not the store's: moto with FastAPI, rclone with aiohttp (conftest.py)
pytestmark = pytest.mark.diagonal("s3server", "framework")

H = {"Tus-Resumable": "1.0.0"}
OCTETS = {**H, "Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module", params=["fastapi", "aiohttp"])
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=["moto", "rclone"])
def s3server(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(scope="module")
def app(s3server: Any, framework: str) -> Iterator[tuple[TusServer, str]]:
    bucket = new_bucket(s3server)
    tus = TusServer(s3server, bucket, framework, max_size=64 * MiB, options={"part_size": 5 * MiB})
    tus.start()
    try:
        yield tus, bucket
    finally:
        tus.stop()


@pytest.fixture
def user() -> str:
    return uuid.uuid4().hex[:10]


def client(user: str | None) -> httpx.Client:
    headers = {"X-User": user} if user else {}
    return httpx.Client(headers=headers, timeout=60)


def create(c: httpx.Client, url: str, length: int | None, **headers: str) -> str:
    h = {**H, **headers}
    if length is not None:
        h["Upload-Length"] = str(length)
    r = c.post(url, headers=h)
    assert r.status_code == 201, r.text
    return str(httpx.URL(url).join(r.headers["location"]))


def patch(c: httpx.Client, url: str, offset: int, data: bytes, **headers: str) -> httpx.Response:
    return c.patch(url, content=data, headers={**OCTETS, "Upload-Offset": str(offset), **headers})


def user_keys(s3server: Any, bucket: str, user: str) -> list[str]:
    return [k for k in bucket_keys(s3server, bucket) if k.startswith(f"users/{user}/")]


def helpers_of(s3server: Any, bucket: str, upload_url: str) -> list[str]:
    upload = upload_url.rstrip("/").rsplit("/", 1)[1]
    return [k for k in bucket_keys(s3server, bucket) if k.startswith(f".tus/{upload}.")]


def read(s3server: Any, bucket: str, key: str) -> bytes:
    return bytes(s3_client(s3server).get_object(Bucket=bucket, Key=key)["Body"].read())


def test_options_and_cors(app: tuple[TusServer, str]) -> None:
    tus, _ = app
    with client(None) as c:
        r = c.options(tus.url, headers={"Origin": "https://app.example"})
        assert r.status_code == 204
        assert r.headers["tus-version"] == "1.0.0"
        assert r.headers["tus-max-size"] == str(64 * MiB)
        ext = r.headers["tus-extension"].split(",")
        for name in ("creation", "creation-with-upload", "creation-defer-length"):
            assert name in ext
        for name in ("termination", "expiration", "checksum"):
            assert name in ext
        assert "sha1" in r.headers["tus-checksum-algorithm"]
        exposed = r.headers["access-control-expose-headers"]
        for name in ("Location", "Upload-Offset", "Upload-Length", "Tus-Resumable"):
            assert name in exposed
        assert "PATCH" in r.headers["access-control-allow-methods"]
        assert "Upload-Offset" in r.headers["access-control-allow-headers"]


def test_upload_in_patches_head_and_completion(
    app: tuple[TusServer, str], s3server: Any, user: str
) -> None:
    tus, bucket = app
    data = os.urandom(12 * MiB + 77)
    meta = (
        "filename " + base64.b64encode("ünï.bin".encode()).decode() + ",filetype dGV4dC9wbGFpbg=="
    )
    with client(user) as c:
        url = create(c, tus.url, len(data), **{"Upload-Metadata": meta})
        h = c.head(url, headers=H)
        assert h.status_code == 200
        assert h.headers["upload-offset"] == "0" and h.headers["upload-length"] == str(len(data))
        assert h.headers["cache-control"] == "no-store"
        assert h.headers["upload-metadata"] == meta
        assert "upload-expires" in h.headers
        offset = 0
        for size in (1000, 3 * MiB, 5 * MiB, 1, 3 * MiB):  # across the 5 MiB part boundaries
            r = patch(c, url, offset, data[offset : offset + size])
            assert r.status_code == 204, r.text
            offset += size
            assert r.headers["upload-offset"] == str(offset)
            assert c.head(url, headers=H).headers["upload-offset"] == str(offset)
        r = patch(c, url, offset, data[offset:])
        assert r.status_code == 204 and r.headers["upload-offset"] == str(len(data))
    key = f"users/{user}/{url.rsplit('/', 1)[1]}"
    assert read(s3server, bucket, key) == data
    head = s3_client(s3server).head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "text/plain"
    assert helpers_of(s3server, bucket, url) == []
    assert multipart_uploads(s3server, bucket) == []


def test_small_upload_is_one_put_and_zero_length(
    app: tuple[TusServer, str], s3server: Any, user: str
) -> None:
    tus, bucket = app
    with client(user) as c:
        url = create(c, tus.url, 3)
        assert patch(c, url, 0, b"ab").status_code == 204
        r = patch(c, url, 2, b"c")
        assert r.status_code == 204 and r.headers["upload-offset"] == "3"
        empty = create(c, tus.url, 0)
    assert read(s3server, bucket, f"users/{user}/{url.rsplit('/', 1)[1]}") == b"abc"
    assert read(s3server, bucket, f"users/{user}/{empty.rsplit('/', 1)[1]}") == b""
    assert len(user_keys(s3server, bucket, user)) == 2
    assert helpers_of(s3server, bucket, url) == helpers_of(s3server, bucket, empty) == []


def test_creation_with_upload_and_deferred_length(
    app: tuple[TusServer, str], s3server: Any, user: str
) -> None:
    tus, bucket = app
    data = os.urandom(7 * MiB)
    with client(user) as c:
        r = c.post(tus.url, content=data[:MiB], headers={**OCTETS, "Upload-Length": str(len(data))})
        assert r.status_code == 201 and r.headers["upload-offset"] == str(MiB)
        url = str(httpx.URL(tus.url).join(r.headers["location"]))
        assert patch(c, url, MiB, data[MiB:]).status_code == 204
        deferred = create(c, tus.url, None, **{"Upload-Defer-Length": "1"})
        h = c.head(deferred, headers=H)
        assert h.headers["upload-defer-length"] == "1" and "upload-length" not in h.headers
        assert patch(c, deferred, 0, data[: 6 * MiB]).status_code == 204
        r = patch(c, deferred, 6 * MiB, data[6 * MiB :], **{"Upload-Length": str(len(data))})
        assert r.status_code == 204 and r.headers["upload-offset"] == str(len(data))
    for u in (url, deferred):
        assert read(s3server, bucket, f"users/{user}/{u.rsplit('/', 1)[1]}") == data
        assert helpers_of(s3server, bucket, u) == []
    assert multipart_uploads(s3server, bucket) == []


def test_termination_leaves_nothing(app: tuple[TusServer, str], s3server: Any, user: str) -> None:
    tus, bucket = app
    with client(user) as c:
        url = create(c, tus.url, 20 * MiB)
        assert patch(c, url, 0, os.urandom(6 * MiB)).status_code == 204  # one part + a piece
        assert helpers_of(s3server, bucket, url) != []
        assert c.delete(url, headers=H).status_code == 204
        assert c.head(url, headers=H).status_code == 404
        assert patch(c, url, 6 * MiB, b"x").status_code == 404
    assert helpers_of(s3server, bucket, url) == []
    assert user_keys(s3server, bucket, user) == []
    assert multipart_uploads(s3server, bucket) == []


def test_checksum(app: tuple[TusServer, str], s3server: Any, user: str) -> None:
    tus, bucket = app
    data = os.urandom(6 * MiB)

    def sha1(b: bytes) -> str:
        return "sha1 " + base64.b64encode(hashlib.sha1(b).digest()).decode()

    with client(user) as c:
        url = create(c, tus.url, len(data))
        r = patch(c, url, 0, data[:MiB], **{"Upload-Checksum": sha1(data[:MiB])})
        assert r.status_code == 204
        bad = bytearray(data[MiB:])
        bad[-1] ^= 1
        r = patch(c, url, MiB, bytes(bad), **{"Upload-Checksum": sha1(data[MiB:])})
        assert r.status_code == 460
        assert c.head(url, headers=H).headers["upload-offset"] == str(MiB)  # nothing kept
        r = patch(c, url, MiB, b"x", **{"Upload-Checksum": "crc99 AAAA"})
        assert r.status_code == 400
        r = patch(c, url, MiB, data[MiB:], **{"Upload-Checksum": sha1(data[MiB:])})
        assert r.status_code == 204, r.text
    assert read(s3server, bucket, f"users/{user}/{url.rsplit('/', 1)[1]}") == data
    assert helpers_of(s3server, bucket, url) == []


def test_refusals(app: tuple[TusServer, str], s3server: Any, user: str) -> None:
    tus, bucket = app
    with client(user) as c:
        url = create(c, tus.url, 10)
        assert c.post(tus.url, headers={"Upload-Length": "1"}).status_code == 412
        r = c.head(url)
        assert r.status_code == 412 and r.headers["tus-version"] == "1.0.0"
        assert patch(c, url, 0, b"x", **{"Tus-Resumable": "0.2.2"}).status_code == 412
        r = c.patch(url, content=b"x", headers={**H, "Upload-Offset": "0"})
        assert r.status_code == 415
        r = c.patch(
            url, content=b"x", headers={**H, "Upload-Offset": "0", "Content-Type": "text/plain"}
        )
        assert r.status_code == 415
        assert patch(c, url, 3, b"x").status_code == 409
        assert patch(c, url, 0, b"x" * 11).status_code == 413
        r = c.post(tus.url, headers={**H, "Upload-Length": str(64 * MiB + 1)})
        assert r.status_code == 413
        assert c.post(tus.url, headers=H).status_code == 400  # no length
        assert c.post(tus.url, headers={**H, "Upload-Length": "-1"}).status_code == 400
        r = c.post(tus.url, headers={**H, "Upload-Length": "1", "Upload-Metadata": "a !!"})
        assert r.status_code == 400
        assert patch(c, url, 0, b"abc").status_code == 204  # nothing above changed it
        assert c.head(url, headers=H).headers["upload-offset"] == "3"

        def meta_key(key: str) -> dict[str, str]:
            return {**H, "Upload-Length": "1", "Upload-Metadata": "objectKey " + b64(key)}

        # the key is the application's (objectKey here), but only under the prefix
        assert c.post(tus.url, headers=meta_key("users/someone-else/x")).status_code == 403
        assert c.post(tus.url, headers=meta_key(f"users/{user}/../x")).status_code == 400
        assert c.post(tus.url, headers=meta_key(f"users/{user}/private/x")).status_code == 403
        mine = c.post(tus.url, headers=meta_key(f"users/{user}/mine.txt"))
        assert mine.status_code == 201
        mine_url = str(httpx.URL(tus.url).join(mine.headers["location"]))
        assert patch(c, mine_url, 0, b"!").status_code == 204
        assert c.head(tus.url + "A" * 32, headers=H).status_code == 404
        assert c.head(tus.url + "..%2F..%2Fetc", headers=H).status_code == 404
    with client(None) as anonymous:
        assert anonymous.head(url, headers=H).status_code == 401
        assert anonymous.post(tus.url, headers={**H, "Upload-Length": "1"}).status_code == 401
    with client("mallory") as other:  # another user's upload id: as if it did not exist
        assert other.head(url, headers=H).status_code == 404
        assert patch(other, url, 3, b"x").status_code == 404
        assert other.delete(url, headers=H).status_code == 404
    with client(user) as c:
        assert c.head(url, headers=H).headers["upload-offset"] == "3"
        assert c.delete(url, headers=H).status_code == 204
    assert user_keys(s3server, bucket, user) == [f"users/{user}/mine.txt"]
    assert helpers_of(s3server, bucket, url) == helpers_of(s3server, bucket, mine_url) == []


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_concurrent_patch_is_refused(app: tuple[TusServer, str], s3server: Any, user: str) -> None:
    """A PATCH while another one writes the same upload: 423, and the first one is intact."""
    tus, bucket = app
    data = os.urandom(4 * MiB)
    started = threading.Event()
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield data[:MiB]
        started.set()
        release.wait(30)
        yield data[MiB:]

    with client(user) as c:
        url = create(c, tus.url, len(data))
        result: list[httpx.Response] = []
        t = threading.Thread(target=lambda: result.append(patch_stream(c, url, slow_body())))
        t.start()
        assert started.wait(30)
        time.sleep(0.3)  # let the server take the lock (ordering, not a timed assertion)
        with client(user) as c2:
            second = patch(c2, url, 0, data)
        release.set()
        t.join(30)
        assert second.status_code in (409, 423), second.text
        assert result and result[0].status_code == 204, result
    assert read(s3server, bucket, f"users/{user}/{url.rsplit('/', 1)[1]}") == data


def patch_stream(c: httpx.Client, url: str, body: Iterator[bytes]) -> httpx.Response:
    return c.patch(url, content=body, headers={**OCTETS, "Upload-Offset": "0"})


def test_expiry_and_sweep(s3server: Any, framework: str) -> None:
    """An expired upload answers 410 and is removed; sweep_expired removes the forgotten ones."""
    bucket = new_bucket(s3server)
    tus = TusServer(s3server, bucket, framework, options={"expiration": 1.0})
    tus.start()
    try:
        with client("eve") as c:
            # creation-with-upload: one request each, so no gap between requests (however
            # loaded the machine) lets an upload expire before the sleep below
            urls = []
            for _ in range(2):
                headers = {**OCTETS, "Upload-Length": str(20 * MiB)}
                r = c.post(tus.url, content=os.urandom(6 * MiB), headers=headers)
                assert r.status_code == 201 and r.headers["upload-offset"] == str(6 * MiB)
                assert r.headers["upload-expires"].endswith("GMT")
                urls.append(str(httpx.URL(tus.url).join(r.headers["location"])))
            touched, forgotten = urls
            time.sleep(1.5)  # past Upload-Expires
            assert c.head(touched, headers=H).status_code == 410
            assert helpers_of(s3server, bucket, touched) == []
    finally:
        tus.stop()
    assert helpers_of(s3server, bucket, forgotten) != []

    async def dry_run() -> list[Any]:
        async with streamx.Engine(**s3server.engine_args()) as engine:
            return await sweep_expired(engine, bucket, dry_run=True)

    assert [e.upload for e in anyio.run(dry_run)] == [forgotten.rsplit("/", 1)[1]]
    assert helpers_of(s3server, bucket, forgotten) != []
    env = {**os.environ, **s3server.env(), "PYTHONPATH": ROOT}
    swept = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamx",
            "sweep",
            f"s3://{bucket}/",
            "--older-than",
            "1h",
            "--tus",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert swept.returncode == 0, swept.stderr
    assert f"removed: tus upload {forgotten.rsplit('/', 1)[1]}" in swept.stdout
    assert bucket_keys(s3server, bucket) == []
    assert multipart_uploads(s3server, bucket) == []


def test_options_are_validated() -> None:
    for bad in (
        {"part_size": 1024},
        {"state_prefix": "no-slash"},
        {"expiration": 0},
        {"lock_timeout": -1},
        {"memory_limit": 1024},
        {"concurrency": 0},
        {"allow_origins": ["*"]},
        {"make_key": "k"},
    ):
        with pytest.raises(streamx.ConfigError):
            TusOptions(**bad)


def test_sweep_and_routes_validate_their_arguments() -> None:
    from aiohttp import web

    from streamx.web import UploadSettings, allow_all
    from streamx.web.tus.aiohttp import add_tus_routes

    async def bad_sweeps() -> None:
        engine = streamx.Engine(endpoint_url="http://127.0.0.1:9")  # never entered: no request
        for kwargs in ({"state_prefix": "x"}, {"orphan_age": -1}, {"dry_run": "yes"}):
            with pytest.raises(streamx.ConfigError):
                await sweep_expired(engine, "bucket", **kwargs)
        with pytest.raises(streamx.ConfigError):
            await sweep_expired(engine, "a/b")
        with pytest.raises(streamx.ConfigError):
            await sweep_expired("engine", "bucket")  # type: ignore[arg-type]

    anyio.run(bad_sweeps)
    settings = UploadSettings(
        bucket="b", engine=streamx.Engine(endpoint_url="http://127.0.0.1:9"), authorize=allow_all
    )
    with pytest.raises(streamx.ConfigError):
        add_tus_routes(web.Application(), settings, path="tus")
    with pytest.raises(streamx.ConfigError):
        add_tus_routes(web.Application(), settings, TusOptions(), path=None)  # type: ignore[arg-type]


def test_many_patches_share_the_memory_limit(s3server: Any) -> None:
    """12 PATCHes of 7 MiB at once through one endpoint whose memory_limit is two 5 MiB parts:
    the bodies wait for budget (the service never holds more) and every upload is intact."""
    from streamx.web import UploadSettings, allow_all
    from streamx.web.tus import TusRequest, TusService

    bucket = new_bucket(s3server)
    blobs = [os.urandom(7 * MiB + i) for i in range(12)]

    async def body(data: bytes) -> Any:
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]
            await anyio.lowlevel.checkpoint()

    async def main() -> None:
        async with streamx.Engine(**s3server.engine_args()) as engine:
            limit = 10 * MiB
            service = TusService(
                # overwrite=True: rclone cannot refuse overwrites (test_tus_overwrite.py)
                UploadSettings(bucket=bucket, engine=engine, authorize=allow_all, overwrite=True),
                TusOptions(part_size=5 * MiB, memory_limit=limit),
            )
            ids = []
            for data in blobs:
                created = await service.handle(
                    TusRequest(
                        "POST", {**lower(H), "upload-length": str(len(data))}, None, "/t", None
                    )
                )
                ids.append(created.headers["Location"].rsplit("/", 1)[1])
            statuses: list[int] = []

            async def patch_one(upload: str, data: bytes) -> None:
                headers = {**lower(OCTETS), "upload-offset": "0"}
                request = TusRequest("PATCH", headers, upload, "/t", None, body(data))
                statuses.append((await service.handle(request)).status)

            async with anyio.create_task_group() as tg:
                for upload, data in zip(ids, blobs, strict=True):
                    tg.start_soon(patch_one, upload, data)
            assert statuses == [204] * len(blobs)
            assert 0 < service.budget.peak <= limit
            assert service.budget.in_use == 0
            for upload, data in zip(ids, blobs, strict=True):
                assert await read_async(engine, bucket, upload) == data

    anyio.run(main)
    assert len(bucket_keys(s3server, bucket)) == len(blobs)  # the objects, no helper
    assert multipart_uploads(s3server, bucket) == []


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


async def read_async(engine: streamx.Engine, bucket: str, key: str) -> bytes:
    response = await engine.client.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as stream:
        return bytes(await stream.read())
