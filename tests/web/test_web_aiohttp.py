"""streamx.web.aiohttp against real servers: aiohttp's own server on a loopback port, aiohttp
client and WebSocket client, moto and rclone behind."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import list_uploads, peak_rss_mib, read_object
from web_harness import overwrite_for

import streamx
from streamx.testing import free_port
from streamx.web import AccessRequest, UploadSettings, WebError
from streamx.web.aiohttp import add_routes

MiB = 1024 * 1024
# streamx's own logic, not the store's: two of the three servers suffice (tests/conftest.py)
pytestmark = [pytest.mark.anyio, pytest.mark.servers("moto", "rclone")]


def user_prefix(request: Any) -> str:
    user = request.headers.get("X-User")
    if not user:
        raise WebError(401, "send an X-User header")
    return f"users/{user}/"


def authorize(access: AccessRequest) -> bool:
    return "/private/" not in access.key


Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def web_app(server: Any, engine: streamx.Engine, bucket: str) -> AsyncIterator[Start]:
    """Start an aiohttp server (routes on a subapp under /api); returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> str:
        overrides.setdefault("overwrite", overwrite_for(server))  # rclone ignores If-None-Match
        settings = UploadSettings(
            bucket=bucket, engine=engine, authorize=authorize, prefix=user_prefix, **overrides
        )
        api = web.Application()
        add_routes(api, settings)
        app = web.Application()
        app.add_subapp("/api", api)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}/api"

    yield start
    for runner in runners:
        await runner.cleanup()


async def wait_uploads(engine: streamx.Engine, bucket: str, *, present: bool) -> None:
    deadline = time.monotonic() + 15
    while bool(await list_uploads(engine, bucket)) != present:
        assert time.monotonic() < deadline, f"multipart upload present={not present} for 15 s"
        await asyncio.sleep(0.05)


async def test_presigned_multipart_flow(
    web_app: Start, engine: streamx.Engine, bucket: str
) -> None:
    base = await web_app()
    data = os.urandom(5 * MiB + 999)
    key = "users/carol/f.bin"
    headers = {"X-User": "carol"}
    async with aiohttp.ClientSession(headers=headers) as client, aiohttp.ClientSession() as browser:
        async with client.post(f"{base}/uploads/multipart/init", json={"key": key}) as r:
            assert r.status == 200, await r.text()
            upload_id = (await r.json())["upload_id"]
        parts = []
        for number, chunk in ((1, data[: 5 * MiB]), (2, data[5 * MiB :])):
            body = {"key": key, "upload_id": upload_id, "part_number": number}
            async with client.post(f"{base}/uploads/multipart/part-url", json=body) as r:
                url = (await r.json())["url"]
            # a file-like body: aiohttp warns (ResourceWarning) on large raw bytes
            async with browser.put(url, data=io.BytesIO(chunk)) as put:
                assert put.status == 200
                parts.append({"PartNumber": number, "ETag": put.headers["ETag"]})
        bad = {"key": key, "upload_id": upload_id, "part_number": 10_001}
        async with client.post(f"{base}/uploads/multipart/part-url", json=bad) as r:
            assert r.status == 400
        async with client.post(f"{base}/uploads/multipart/init", json={"key": "users/dan/x"}) as r:
            assert r.status == 403
        done = {"key": key, "upload_id": upload_id, "parts": parts}
        async with client.post(f"{base}/uploads/multipart/complete", json=done) as r:
            assert r.status == 200, await r.text()
        async with client.get(f"{base}/uploads/download/{key}") as r:
            url = (await r.json())["url"]
        async with browser.get(url) as got:
            assert await got.read() == data
        # Uppy's create + batch sign + list + abort on the same server
        async with client.post(
            f"{base}/s3/multipart", json={"filename": "u.bin", "type": "a/b"}
        ) as r:
            created = await r.json()
        q = {"key": created["key"], "partNumbers": "1,2,3"}
        async with client.get(f"{base}/s3/multipart/{created['uploadId']}/batch", params=q) as r:
            assert sorted((await r.json())["presignedUrls"]) == ["1", "2", "3"]
        q = {"key": created["key"]}
        async with client.get(f"{base}/s3/multipart/{created['uploadId']}", params=q) as r:
            assert await r.json() == []
        async with client.delete(f"{base}/s3/multipart/{created['uploadId']}", params=q) as r:
            assert r.status == 200


async def test_stream_request(web_app: Start, engine: streamx.Engine, bucket: str) -> None:
    base = await web_app(max_size=12 * MiB)
    data = os.urandom(9 * MiB + 5)

    async def body(blob: bytes, step: int = 256 * 1024) -> AsyncIterator[bytes]:
        for i in range(0, len(blob), step):
            yield blob[i : i + step]

    async with aiohttp.ClientSession(headers={"X-User": "carol"}) as client:
        url = f"{base}/uploads/stream/users/carol/s.bin"
        async with client.put(url, data=body(data), headers={"Content-Type": "image/png"}) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["size"] == len(data)
        too_big = f"{base}/uploads/stream/users/carol/big.bin"
        async with client.put(too_big, data=body(os.urandom(30 * MiB), MiB)) as r:
            assert r.status == 413
            assert "12 MiB" in (await r.json())["error"]
    head = await engine.client.head_object(Bucket=bucket, Key="users/carol/s.bin")
    assert head["ContentType"] == "image/png"
    assert await read_object(engine, bucket, "users/carol/s.bin") == data
    await wait_uploads(engine, bucket, present=False)


async def test_stream_client_disconnect_aborts(
    web_app: Start, engine: streamx.Engine, bucket: str
) -> None:
    base = await web_app()
    chunk = os.urandom(MiB)

    class Gone(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield chunk
        await wait_uploads(engine, bucket, present=True)
        raise Gone()

    async with aiohttp.ClientSession(headers={"X-User": "carol"}) as client:
        with pytest.raises((Gone, aiohttp.ClientError)):
            async with client.put(f"{base}/uploads/stream/users/carol/half.bin", data=body()):
                pass
    await wait_uploads(engine, bucket, present=False)


async def test_websocket_upload_and_drop(
    web_app: Start, engine: streamx.Engine, bucket: str
) -> None:
    base = await web_app()
    data = os.urandom(9 * MiB)
    async with aiohttp.ClientSession(headers={"X-User": "carol"}) as client:
        async with client.ws_connect(f"{base}/uploads/ws") as ws:
            await ws.send_json({"type": "open", "key": "users/carol/w.bin", "size": len(data)})
            assert (await ws.receive_json())["type"] == "ready"
            seqs = []
            for i in range(0, len(data), MiB):
                await ws.send_bytes(data[i : i + MiB])
                while (message := await ws.receive_json())["type"] != "ack":
                    assert message["type"] == "progress"
                seqs.append(message["seq"])
            await ws.send_json({"type": "close"})
            while (message := await ws.receive_json())["type"] != "complete":
                assert message["type"] == "progress"
            assert message["result"]["size"] == len(data) and seqs == list(range(1, 10))
        assert await read_object(engine, bucket, "users/carol/w.bin") == data

        ws = await client.ws_connect(f"{base}/uploads/ws")
        await ws.send_json({"type": "open", "key": "users/carol/dropped.bin"})
        assert (await ws.receive_json())["type"] == "ready"
        for _ in range(12):
            await ws.send_bytes(os.urandom(MiB))
        await wait_uploads(engine, bucket, present=True)
        transport = ws._response.connection.transport  # drop TCP without a closing handshake
        assert transport is not None
        transport.abort()
    await wait_uploads(engine, bucket, present=False)
    listing = await engine.client.list_objects_v2(Bucket=bucket, Prefix="users/carol/dropped")
    assert listing.get("KeyCount", 0) == 0


SERVER_SCRIPT = """
import sys, streamx
from aiohttp import web
from streamx.web import UploadSettings, allow_all
from streamx.web.aiohttp import add_routes

async def engine_ctx(app):
    async with streamx.Engine(**{engine_args!r}) as engine:
        app["engine"] = engine
        yield

app = web.Application()
app.cleanup_ctx.append(engine_ctx)
add_routes(app, UploadSettings(bucket={bucket!r}, engine=lambda: app["engine"], authorize=allow_all,
                               overwrite=True))  # rclone ignores If-None-Match
web.run_app(app, host="127.0.0.1", port={port}, print=None)
"""


@pytest.mark.slow
@pytest.mark.parametrize("server", ["rclone"], indirect=True)
async def test_stream_200mib_memory_stays_bounded(
    server: Any, engine: streamx.Engine, bucket: str, spawn: Any
) -> None:
    """An aiohttp server (a child process) streams 200 MiB to rclone with a flat peak RSS."""
    port = free_port()
    script = SERVER_SCRIPT.format(engine_args=server.engine_args(), bucket=bucket, port=port)
    proc = spawn(script)
    total = 200 * MiB
    try:
        async with aiohttp.ClientSession() as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with client.get(f"http://127.0.0.1:{port}/uploads/multipart/parts"):
                        break
                except aiohttp.ClientConnectionError:
                    assert proc.poll() is None and time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            baseline = peak_rss_mib(proc.pid)
            chunk = os.urandom(MiB)

            async def body() -> AsyncIterator[bytes]:
                for _ in range(total // MiB):
                    yield chunk

            url = f"http://127.0.0.1:{port}/uploads/stream/big.bin"
            async with client.put(url, data=body()) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["size"] == total
        peak = peak_rss_mib(proc.pid)
        print(f"\naiohttp server peak RSS: {peak:.0f} MiB (before the upload {baseline:.0f} MiB)")
        assert peak - baseline < 120, f"the server held {peak - baseline:.0f} MiB for 200 MiB"
    finally:
        proc.terminate()
    head = await engine.client.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == total


def test_routes_match_the_fastapi_adapter() -> None:
    """Every route of the shared table is on the aiohttp router, method and path."""
    from streamx.web import ROUTES

    app = web.Application()
    add_routes(
        app,
        UploadSettings(bucket="b", engine=lambda: None, authorize=lambda a: True),  # type: ignore[arg-type,return-value]
    )
    paths = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    for route in ROUTES:
        assert (route.method, route.path.replace("*}", "}")) in paths
