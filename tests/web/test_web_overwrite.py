"""``UploadSettings.overwrite=False`` (the default): no web route replaces an existing object.

Every route, both adapters (FastAPI under uvicorn, aiohttp), real HTTP (httpx) and WebSocket
(websockets) clients, on moto and SeaweedFS (both honour ``If-None-Match`` on PutObject and
CompleteMultipartUpload). Each refusal leaves the existing object unchanged and no multipart
upload behind (the ``bucket`` fixture checks the latter after every test). Two cases per
write route: a key taken before the upload starts (refused up front, before any byte), and a
key taken while the upload runs (S3's own check at the write decides: 412, answered 409).
On rclone serve s3, which ignores the condition, the write routes refuse to run at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import websockets
from conftest import list_uploads, read_object
from faultproxy import Fault, FaultProxy
from web_harness import FRAMEWORKS, serve

import streamx
from streamx.web import UploadSettings

MiB = 1024 * 1024
OLD = b"the object that was there first\n"
KEY = "users/alice/taken.bin"
# streamx's own logic, not the store's: two of the three servers suffice (tests/conftest.py)
pytestmark = [pytest.mark.anyio, pytest.mark.servers("moto", "rclone")]
both = pytest.mark.parametrize("framework", FRAMEWORKS)
honouring = pytest.mark.parametrize("server", ["moto", "seaweedfs"], indirect=True)


def client(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, cookies={"user": "alice"}, timeout=60)


async def put_old(engine: streamx.Engine, bucket: str, key: str = KEY) -> None:
    await engine.client.put_object(Bucket=bucket, Key=key, Body=OLD)


async def until_uploads(engine: streamx.Engine, bucket: str, *, present: bool) -> None:
    """Poll (the web servers run on their own loops) until a multipart upload is or is not
    in the bucket; at most 30 s."""
    for _ in range(600):
        if bool(await list_uploads(engine, bucket)) == present:
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"a multipart upload present={not present} for 30 s")


def refused(r: httpx.Response, code: str = "object_exists") -> None:
    assert r.status_code == 409, r.text
    assert r.json()["code"] == code, r.text


async def presigned_parts(browser: httpx.AsyncClient, urls: list[str], data: bytes) -> list[Any]:
    """PUT each part straight to S3, as a browser does; the parts for complete."""
    parts = []
    for number, url in enumerate(urls, 1):
        piece = data[(number - 1) * 5 * MiB : number * 5 * MiB]
        put = await browser.put(url, content=piece)
        assert put.status_code == 200, put.text
        parts.append({"PartNumber": number, "ETag": put.headers["ETag"]})
    return parts


@both
@honouring
async def test_stream_route(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    await put_old(engine, bucket)
    with serve(framework, server, bucket) as base:
        async with client(base) as c:
            refused(await c.put(f"/uploads/stream/{KEY}", content=b"new"))  # taken before
            assert (await c.put("/uploads/stream/users/alice/free.bin", content=b"x")).is_success
            refused(await c.put("/uploads/stream/users/alice/free.bin", content=b"y"))

            # taken while the body arrives: the first part is sent, then another writer
            # creates the key; Complete (If-None-Match: *) fails and the upload is aborted
            gate = anyio.Event()
            data = os.urandom(9 * MiB)

            async def body() -> AsyncIterator[bytes]:
                yield data[: 8 * MiB + 1]
                await gate.wait()
                yield data[8 * MiB + 1 :]

            async with anyio.create_task_group() as tg:
                answers: list[httpx.Response] = []

                async def send() -> None:
                    answers.append(
                        await c.put("/uploads/stream/users/alice/raced.bin", content=body())
                    )

                tg.start_soon(send)
                await until_uploads(engine, bucket, present=True)
                await put_old(engine, bucket, "users/alice/raced.bin")
                gate.set()
            refused(answers[0])
    assert await read_object(engine, bucket, KEY) == OLD
    assert await read_object(engine, bucket, "users/alice/free.bin") == b"x"
    assert await read_object(engine, bucket, "users/alice/raced.bin") == OLD


@both
@honouring
async def test_websocket_route(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    await put_old(engine, bucket)
    with serve(framework, server, bucket) as base:
        url = base.replace("http://", "ws://") + "/uploads/ws"
        headers = {"X-User": "alice"}
        async with websockets.connect(url, additional_headers=headers) as ws:  # taken before
            await ws.send(json.dumps({"type": "open", "key": KEY}))
            message = json.loads(await ws.recv())  # before "ready": no frame is ever sent
            assert (message["type"], message["status"], message["code"]) == (
                "error", 409, "object_exists",
            )  # fmt: skip
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409

        data = os.urandom(9 * MiB)
        async with websockets.connect(url, additional_headers=headers) as ws:  # taken meanwhile
            await ws.send(json.dumps({"type": "open", "key": "users/alice/ws.bin"}))
            assert json.loads(await ws.recv())["type"] == "ready"
            for i in range(0, len(data), MiB):
                await ws.send(data[i : i + MiB])
                while json.loads(await ws.recv())["type"] != "ack":
                    pass
            await until_uploads(engine, bucket, present=True)
            await put_old(engine, bucket, "users/alice/ws.bin")
            await ws.send(json.dumps({"type": "close"}))
            while (message := json.loads(await ws.recv()))["type"] == "progress":
                pass
            assert (message["type"], message["status"], message["code"]) == (
                "error", 409, "object_exists",
            )  # fmt: skip
    assert await read_object(engine, bucket, KEY) == OLD
    assert await read_object(engine, bucket, "users/alice/ws.bin") == OLD


@both
@honouring
async def test_presigned_multipart_routes(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    await put_old(engine, bucket)
    data = os.urandom(5 * MiB + 7)
    with serve(framework, server, bucket) as base:
        async with client(base) as c, httpx.AsyncClient(timeout=60) as browser:
            refused(await c.post("/uploads/multipart/init", json={"key": KEY}))  # no upload made
            assert await list_uploads(engine, bucket) == []

            key = "users/alice/mp.bin"
            init = (await c.post("/uploads/multipart/init", json={"key": key})).json()
            urls = []
            for number in (1, 2):
                r = await c.post(
                    "/uploads/multipart/part-url", json={**init, "part_number": number}
                )
                urls.append(r.json()["url"])
            parts = await presigned_parts(browser, urls, data)
            await put_old(engine, bucket, key)  # another writer, between the parts and complete
            r = await c.post("/uploads/multipart/complete", json={**init, "parts": parts})
            refused(r)
            assert "the upload was aborted" in r.json()["error"]
    await until_uploads(engine, bucket, present=False)
    assert await read_object(engine, bucket, KEY) == OLD
    assert await read_object(engine, bucket, "users/alice/mp.bin") == OLD


@both
@honouring
async def test_uppy_routes(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    await put_old(engine, bucket)
    data = os.urandom(5 * MiB + 7)
    with serve(framework, server, bucket) as base:
        async with client(base) as c, httpx.AsyncClient(timeout=60) as browser:
            created = await c.post("/s3/multipart", json={"filename": "taken.bin", "type": "x/y"})
            refused(created)
            # a POST form cannot carry If-None-Match: Uppy must send the file as multipart
            r = await c.get("/s3/params", params={"filename": "small.txt", "type": "text/plain"})
            assert r.status_code == 403 and r.json()["code"] == "post_upload_refused", r.text
            assert "shouldUseMultipart" in r.json()["error"]

            r = await c.post("/s3/multipart", json={"filename": "uppy.bin", "type": "x/y"})
            key, upload_id = r.json()["key"], r.json()["uploadId"]
            batch = await c.get(
                f"/s3/multipart/{upload_id}/batch", params={"key": key, "partNumbers": "1,2"}
            )
            urls = [batch.json()["presignedUrls"][n] for n in ("1", "2")]
            parts = await presigned_parts(browser, urls, data)
            await put_old(engine, bucket, key)
            r = await c.post(
                f"/s3/multipart/{upload_id}/complete", params={"key": key}, json={"parts": parts}
            )
            refused(r)
    await until_uploads(engine, bucket, present=False)
    assert await read_object(engine, bucket, KEY) == OLD
    assert await read_object(engine, bucket, "users/alice/uppy.bin") == OLD


@both
@honouring
async def test_presigned_put_signs_the_condition(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    await put_old(engine, bucket)
    with serve(framework, server, bucket) as base:
        async with client(base) as c, httpx.AsyncClient(timeout=60) as browser:
            refused(await c.post("/uploads/url", json={"key": KEY}))  # taken: no URL handed out
            key = "users/alice/put.bin"
            answer = (await c.post("/uploads/url", json={"key": key, "size": 3})).json()
            assert answer["headers"]["If-None-Match"] == "*"
            assert "if-none-match" in answer["url"]  # among X-Amz-SignedHeaders
            if server.name == "seaweedfs":  # checks signatures: the header cannot be left out
                bare = {"Content-Type": answer["headers"]["Content-Type"]}
                r = await browser.put(answer["url"], content=b"new", headers=bare)
                assert r.status_code == 403, r.text
            r = await browser.put(answer["url"], content=b"new", headers=answer["headers"])
            assert r.status_code == 200, r.text
            # the same URL again (it stays valid for its lifetime): S3 refuses the overwrite
            r = await browser.put(answer["url"], content=b"bad", headers=answer["headers"])
            assert r.status_code == 412, r.text
    assert await read_object(engine, bucket, KEY) == OLD
    assert await read_object(engine, bucket, "users/alice/put.bin") == b"new"


@both
@pytest.mark.parametrize("server", ["moto"], indirect=True)
async def test_a_conditional_write_conflict_is_a_409_and_aborts(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """AWS answers 409 ConditionalRequestConflict when another conditional write to the key
    wins during Complete ("re-initiate the multipart upload", CompleteMultipartUpload's
    IfNoneMatch in the S3 API reference); no local server races that, so the fault proxy
    answers it."""
    data = os.urandom(5 * MiB + 7)
    async with FaultProxy(server.endpoint_url) as proxy:
        proxy.add(
            Fault(
                "status",
                op="CompleteMultipartUpload",
                status=409,
                code="ConditionalRequestConflict",
            )
        )
        args = {"endpoint_url": proxy.url, "store": "moto"}  # known: no probe through the fault
        with serve(framework, server, bucket, engine_args=args) as base:
            async with client(base) as c, httpx.AsyncClient(timeout=60) as browser:
                key = "users/alice/conflict.bin"
                init = (await c.post("/uploads/multipart/init", json={"key": key})).json()
                r = await c.post("/uploads/multipart/part-url", json={**init, "part_number": 1})
                parts = await presigned_parts(browser, [r.json()["url"]], data[: 5 * MiB])
                r = await c.post("/uploads/multipart/complete", json={**init, "parts": parts})
                refused(r, "write_conflict")
                assert "try again" in r.json()["error"]
        assert [q.headers.get("if-none-match") for q in proxy.sent("CompleteMultipartUpload")] == [
            "*"
        ]
    await until_uploads(engine, bucket, present=False)
    listing = await engine.client.list_objects_v2(Bucket=bucket, Prefix="users/")
    assert listing.get("KeyCount", 0) == 0


@both
@pytest.mark.parametrize("server", ["rclone"], indirect=True)
async def test_a_store_that_ignores_conditions_is_refused(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """rclone serve s3 would overwrite despite If-None-Match: every write route answers 500
    naming the setting, and nothing is written; ``overwrite=True`` makes it work."""
    await put_old(engine, bucket)
    with serve(framework, server, bucket, overwrite=False) as base:
        async with client(base) as c:
            answers = [
                await c.put(f"/uploads/stream/{KEY}", content=b"new"),
                await c.post("/uploads/url", json={"key": KEY, "size": 3}),
                await c.post("/uploads/multipart/init", json={"key": KEY}),
                await c.post("/s3/multipart", json={"filename": "taken.bin", "type": "x/y"}),
            ]
            for r in answers:
                assert r.status_code == 500, r.text
                assert r.json()["code"] == "overwrite_unenforceable", r.text
                assert "UploadSettings(overwrite=True)" in r.json()["error"]
            url = base.replace("http://", "ws://") + "/uploads/ws"
            async with websockets.connect(url, additional_headers={"X-User": "alice"}) as ws:
                await ws.send(json.dumps({"type": "open", "key": KEY}))
                message = json.loads(await ws.recv())
                assert (message["status"], message["code"]) == (500, "overwrite_unenforceable")
            assert (await c.get(f"/uploads/download/{KEY}")).is_success  # reads still work
    with serve(framework, server, bucket, overwrite=True) as base:
        async with client(base) as c:
            assert (await c.put(f"/uploads/stream/{KEY}", content=b"new")).is_success
    assert await read_object(engine, bucket, KEY) == b"new"


@both
@pytest.mark.parametrize("server", ["moto"], indirect=True)
async def test_overwrite_true_replaces(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    await put_old(engine, bucket)
    with serve(framework, server, bucket, overwrite=True) as base:
        async with client(base) as c:
            answer = (await c.post("/uploads/url", json={"key": KEY})).json()
            assert "If-None-Match" not in answer["headers"]
            assert (await c.put(f"/uploads/stream/{KEY}", content=b"new")).is_success
    assert await read_object(engine, bucket, KEY) == b"new"


def test_the_setting_is_a_bool() -> None:
    with pytest.raises(streamx.ConfigError, match="overwrite must be True or False"):
        UploadSettings(bucket="b", engine=lambda: None, authorize=bool, overwrite="no")  # type: ignore[arg-type]
    assert UploadSettings(bucket="b", engine=lambda: None, authorize=bool).overwrite is False  # type: ignore[arg-type]
