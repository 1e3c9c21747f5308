"""streamx.web.fastapi against real servers: uvicorn on a loopback port, httpx and websockets
clients, moto and rclone behind. Browser flows use plain HTTP only on the client side."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from conftest import list_uploads, peak_rss_mib, read_object
from fastapi import FastAPI
from web_harness import overwrite_for

import streamx
from streamx.testing import free_port
from streamx.web import AccessRequest, UploadSettings, WebError
from streamx.web.fastapi import create_router

MiB = 1024 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# streamx's own logic, not the store's: two of the three servers suffice (tests/conftest.py)
pytestmark = [pytest.mark.anyio, pytest.mark.servers("moto", "rclone")]


def user_prefix(request: Any) -> str:
    user = request.headers.get("x-user")
    if not user:
        raise WebError(401, "send an X-User header")
    return f"users/{user}/"


def authorize(access: AccessRequest) -> bool:
    return "/private/" not in access.key


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """uvicorn in a thread on a free loopback port."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def make_app(server: Any, bucket: str, **overrides: Any) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with streamx.Engine(**server.engine_args()) as engine:
            app.state.engine = engine
            yield

    app = FastAPI(lifespan=lifespan)
    options: dict[str, Any] = {
        "bucket": bucket,
        "engine": lambda: app.state.engine,
        "authorize": authorize,
        "prefix": user_prefix,
        "overwrite": overwrite_for(server),  # rclone ignores If-None-Match
        **overrides,
    }
    app.include_router(create_router(UploadSettings(**options)), prefix="/api")
    return app


@pytest.fixture
def web(server: Any, bucket: str) -> Iterator[Callable[..., str]]:
    """Start an app with the given UploadSettings overrides; returns its host:port."""
    stack: list[Any] = []

    def start(**overrides: Any) -> str:
        cm = serve(make_app(server, bucket, **overrides))
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def api(host: str, user: str = "alice") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{host}/api", headers={"X-User": user}, timeout=30)


async def wait_no_uploads(engine: streamx.Engine, bucket: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while await list_uploads(engine, bucket):
        assert time.monotonic() < deadline, "the multipart upload was not aborted"
        await asyncio.sleep(0.1)


async def wait_some_upload(engine: streamx.Engine, bucket: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not await list_uploads(engine, bucket):
        assert time.monotonic() < deadline, "no multipart upload was created"
        await asyncio.sleep(0.05)


# -- presigned routes, the browser way -----------------------------------------------------


async def test_presigned_multipart_flow_like_a_browser(
    web: Callable[..., str], engine: streamx.Engine, bucket: str
) -> None:
    host = web()
    data = os.urandom(5 * MiB) + os.urandom(MiB // 3)
    key = "users/alice/docs/report.bin"
    async with api(host) as client, httpx.AsyncClient(timeout=30) as browser:
        r = await client.post(
            "/uploads/multipart/init", json={"key": key, "content_type": "application/zip"}
        )
        assert r.status_code == 200, r.text
        upload_id = r.json()["upload_id"]
        assert r.json()["key"] == key
        parts = []
        for number, chunk in ((1, data[: 5 * MiB]), (2, data[5 * MiB :])):
            r = await client.post(
                "/uploads/multipart/part-url",
                json={"key": key, "upload_id": upload_id, "part_number": number},
            )
            assert r.status_code == 200, r.text
            put = await browser.put(r.json()["url"], content=chunk)
            assert put.status_code == 200, put.text
            parts.append({"PartNumber": number, "ETag": put.headers["ETag"]})
        r = await client.get(
            "/uploads/multipart/parts", params={"key": key, "upload_id": upload_id}
        )
        assert [p["PartNumber"] for p in r.json()["parts"]] == [1, 2]
        r = await client.post(
            "/uploads/multipart/complete", json={"key": key, "upload_id": upload_id, "parts": parts}
        )
        assert r.status_code == 200, r.text
        assert r.json()["size"] == len(data)
        r = await client.get(f"/uploads/download/{key}")
        assert r.status_code == 200, r.text
        got = await browser.get(r.json()["url"])
        assert got.status_code == 200 and got.content == data
    head = await engine.client.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "application/zip"


async def test_presigned_single_put_signs_type_and_size(
    web: Callable[..., str], engine: streamx.Engine, bucket: str, server: Any
) -> None:
    host = web(max_size=MiB)
    key = "users/alice/a.txt"
    async with api(host) as client, httpx.AsyncClient(timeout=30) as browser:
        r = await client.post("/uploads/url", json={"key": key, "content_type": "text/plain"})
        assert r.status_code == 400 and "size" in r.json()["error"]  # max_size needs a size
        r = await client.post(
            "/uploads/url", json={"key": key, "content_type": "text/plain", "size": 2 * MiB}
        )
        assert r.status_code == 413
        r = await client.post(
            "/uploads/url", json={"key": key, "content_type": "text/plain", "size": 5}
        )
        assert r.status_code == 200, r.text
        signed = r.json()
        assert signed["method"] == "PUT"
        if server.name == "rclone":  # checks signatures: a different length is refused
            bad = await browser.put(
                signed["url"], content=b"hello world", headers=signed["headers"]
            )
            assert bad.status_code == 403
        put = await browser.put(signed["url"], content=b"hello", headers=signed["headers"])
        assert put.status_code == 200, put.text
    assert await read_object(engine, bucket, key) == b"hello"


async def test_refusals(web: Callable[..., str], engine: streamx.Engine, bucket: str) -> None:
    host = web(max_size=64 * MiB)
    key = "users/alice/x.bin"
    async with api(host) as client:
        init = "/uploads/multipart/init"
        r = await client.post(init, json={"key": "users/bob/x.bin"})
        assert r.status_code == 403 and "prefix" in r.json()["error"]
        r = await client.post(init, json={"key": "users/alice/private/x.bin"})
        assert r.status_code == 403  # the application's hook said no
        for bad in (
            "users/alice/../bob/x",
            "users/alice//x",
            "users/alice/x/",
            "users/alice/a\x00",
        ):
            r = await client.post(init, json={"key": bad})
            assert r.status_code == 400, bad
        r = await client.post(init, json={"key": key, "size": 65 * MiB})
        assert r.status_code == 413
        async with httpx.AsyncClient(base_url=f"http://{host}/api") as anonymous:
            r = await anonymous.post(init, json={"key": key})
            assert r.status_code == 401 and r.json()["error"] == "send an X-User header"
        r = await client.post(init, content=b"{not json")
        assert r.status_code == 415  # not declared as JSON: a cross-site form could send it
        r = await client.post(
            init, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400

        r = await client.post(init, json={"key": key})
        upload_id = r.json()["upload_id"]
        for number in (0, 10_001, "1; DROP", -1):
            r = await client.post(
                "/uploads/multipart/part-url",
                json={"key": key, "upload_id": upload_id, "part_number": number},
            )
            assert r.status_code == 400, number
            assert "1 to 10000" in r.json()["error"]
        r = await client.post(  # part 14 would put the object over 64 MiB
            "/uploads/multipart/part-url",
            json={"key": key, "upload_id": upload_id, "part_number": 14},
        )
        assert r.status_code == 413
        r = await client.post(
            "/uploads/multipart/part-url",
            json={"key": key, "upload_id": upload_id, "part_number": 1},
        )
        async with httpx.AsyncClient() as browser:
            put = await browser.put(r.json()["url"], content=b"x" * 1000)
            assert put.status_code == 200
        wrong = [{"PartNumber": 1, "ETag": '"0123456789abcdef0123456789abcdef"'}]
        r = await client.post(
            "/uploads/multipart/complete", json={"key": key, "upload_id": upload_id, "parts": wrong}
        )
        assert r.status_code == 400 and r.json()["code"] == "invalid_part"
        r = await client.request(
            "DELETE", "/uploads/multipart/abort", params={"key": key, "upload_id": upload_id}
        )
        assert r.status_code == 200 and r.json()["aborted"] is True
        r = await client.get(
            "/uploads/multipart/parts", params={"key": key, "upload_id": upload_id}
        )
        assert r.status_code == 404
    assert await list_uploads(engine, bucket) == []


@pytest.mark.parametrize("server", ["rclone"], indirect=True)
async def test_expired_url_is_refused(web: Callable[..., str], bucket: str) -> None:
    # X-Amz-Date has whole seconds, so a 1 s URL can be dead a moment after it is signed
    # (signed at 10.9 s, dated 10 s, expired at 11 s): 3 s leaves a loaded machine time to use it
    host = web(url_lifetime=3)
    key = "users/alice/late.bin"
    async with api(host) as client, httpx.AsyncClient() as browser:
        r = await client.post("/uploads/multipart/init", json={"key": key})
        upload_id = r.json()["upload_id"]
        r = await client.post(
            "/uploads/multipart/part-url",
            json={"key": key, "upload_id": upload_id, "part_number": 1},
        )
        url = r.json()["url"]
        fresh = await browser.put(url, content=b"in time")  # the same URL works while fresh
        await asyncio.sleep(4.2)
        late = await browser.put(url, content=b"late")
        await client.request(
            "DELETE", "/uploads/multipart/abort", json={"key": key, "upload_id": upload_id}
        )
        assert fresh.status_code == 200
        # rclone answers 400 AccessDenied ("the request time ... exceeds the maximum allowed")
        assert late.status_code in (400, 403) and "<Code>AccessDenied</Code>" in late.text


async def test_uppy_companion_routes(
    web: Callable[..., str], engine: streamx.Engine, bucket: str, server: Any
) -> None:
    host = web(overwrite=True)  # /s3/params hands out POST forms, which take no condition
    data = os.urandom(5 * MiB + 123)
    async with api(host) as client, httpx.AsyncClient(timeout=30) as browser:
        r = await client.post(
            "/s3/multipart",
            json={"filename": "photo.jpg", "type": "image/jpeg", "metadata": {"name": "photo"}},
        )
        assert r.status_code == 200, r.text
        key, upload_id = r.json()["key"], r.json()["uploadId"]
        assert key == "users/alice/photo.jpg" and r.json()["bucket"] == bucket
        q = {"key": key}
        r = await client.get(f"/s3/multipart/{upload_id}/batch", params={**q, "partNumbers": "1,2"})
        assert r.status_code == 200, r.text
        urls = r.json()["presignedUrls"]
        put = await browser.put(urls["1"], content=data[: 5 * MiB])
        etag1 = put.headers["ETag"]
        r = await client.get(f"/s3/multipart/{upload_id}/2", params=q)
        put = await browser.put(r.json()["url"], content=data[5 * MiB :])
        etag2 = put.headers["ETag"]
        r = await client.get(f"/s3/multipart/{upload_id}", params=q)
        assert [(p["PartNumber"], p["Size"]) for p in r.json()] == [(1, 5 * MiB), (2, 123)]
        r = await client.get(f"/s3/multipart/{upload_id}/0", params=q)
        assert r.status_code == 400
        r = await client.get(f"/s3/multipart/{upload_id}/2")
        assert r.status_code == 400 and "?key=" in r.json()["error"]
        parts = [{"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}]
        r = await client.post(
            f"/s3/multipart/{upload_id}/complete", params=q, json={"parts": parts}
        )
        assert r.status_code == 200, r.text
        assert r.json()["key"] == key
        # abort of a fresh upload
        r = await client.post("/s3/multipart", json={"filename": "b.bin", "type": "x/y"})
        r2 = await client.delete(
            f"/s3/multipart/{r.json()['uploadId']}", params={"key": r.json()["key"]}
        )
        assert r2.status_code == 200 and r2.json() == {}
        if server.name == "moto":  # rclone serve s3 does not take browser POST uploads
            r = await client.get("/s3/params", params={"filename": "s.txt", "type": "text/plain"})
            form = r.json()
            assert form["method"] == "POST"
            post = await browser.post(
                form["url"], data=form["fields"], files={"file": ("s.txt", b"simple", "text/plain")}
            )
            assert post.status_code == 201, post.text
            assert await read_object(engine, bucket, "users/alice/s.txt") == b"simple"
    assert await read_object(engine, bucket, key) == data


# -- streamed request bodies ---------------------------------------------------------------


async def test_stream_put_honours_content_type(
    web: Callable[..., str], engine: streamx.Engine, bucket: str
) -> None:
    host = web()
    data = os.urandom(3 * MiB)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    async with api(host) as client:
        r = await client.put(
            "/uploads/stream/users/alice/s.bin",
            content=body(),
            headers={"Content-Type": "video/mp4"},
        )
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["size"] == len(data) and result["key"] == "users/alice/s.bin"
        r = await client.put("/uploads/stream/users/bob/s.bin", content=b"x")
        assert r.status_code == 403
    head = await engine.client.head_object(Bucket=bucket, Key="users/alice/s.bin")
    assert head["ContentType"] == "video/mp4"
    assert await read_object(engine, bucket, "users/alice/s.bin") == data


async def test_stream_over_max_size_is_413_and_aborted(
    web: Callable[..., str], engine: streamx.Engine, bucket: str
) -> None:
    host = web(max_size=12 * MiB)
    chunk = os.urandom(MiB)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield chunk

    async with api(host) as client:
        r = await client.put(
            "/uploads/stream/users/alice/big.bin",
            content=chunk * 13,
            headers={"Content-Type": "a/b"},
        )
        assert r.status_code == 413  # Content-Length over the limit: refused before reading
        r = await client.put("/uploads/stream/users/alice/big.bin", content=body())
        assert r.status_code == 413, r.text
        assert "12 MiB" in r.json()["error"]
    await wait_no_uploads(engine, bucket)
    listing = await engine.client.list_objects_v2(Bucket=bucket)
    assert listing.get("KeyCount", 0) == 0


async def test_stream_client_disconnect_aborts(
    web: Callable[..., str], engine: streamx.Engine, bucket: str
) -> None:
    host = web()
    chunk = os.urandom(MiB)

    class Gone(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield chunk
        await wait_some_upload(engine, bucket)  # the server is mid-way through a multipart upload
        raise Gone()

    async with api(host) as client:
        with pytest.raises(Gone):
            await client.put("/uploads/stream/users/alice/half.bin", content=body())
    await wait_no_uploads(engine, bucket)


SERVER_SCRIPT = """
import sys, uvicorn
sys.path.insert(0, {root!r})
from examples.app import build_app
app = build_app(bucket={bucket!r}, engine_args={engine_args!r}, max_size=1 << 40, origins=[],
                overwrite=True)  # rclone ignores If-None-Match
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


@pytest.mark.slow
@pytest.mark.parametrize("server", ["rclone"], indirect=True)
async def test_stream_200mib_memory_stays_bounded(
    server: Any, engine: streamx.Engine, bucket: str, spawn: Any
) -> None:
    """The example app (a child process) streams 200 MiB to rclone; its peak RSS stays far
    below the body's size (the default config holds at most 65 MiB of parts)."""
    port = free_port()
    script = SERVER_SCRIPT.format(
        root=ROOT, bucket=bucket, engine_args=server.engine_args(), port=port
    )
    proc = spawn(script)
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            while True:
                try:
                    if (await client.get("/openapi.json")).status_code == 200:
                        break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            page = await client.get("/")  # the example's page is served too
            assert page.status_code == 200 and "/static/app.js" in page.text
            assert (await client.get("/static/app.js")).status_code == 200
            r = await client.post("/api/session", json={"user": "alice"})  # a session cookie
            assert r.status_code == 200, r.text
            baseline = peak_rss_mib(proc.pid)
            chunk = os.urandom(MiB)
            total = 200 * MiB

            async def body() -> AsyncIterator[bytes]:
                for _ in range(total // MiB):
                    yield chunk

            r = await client.put(
                "/api/uploads/stream/uploads/alice/big.bin",
                content=body(),
                headers={"Content-Type": "application/octet-stream"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["size"] == total
        peak = peak_rss_mib(proc.pid)
        print(f"\nuvicorn peak RSS: {peak:.0f} MiB (before the upload {baseline:.0f} MiB)")
        assert peak - baseline < 120, f"the server held {peak - baseline:.0f} MiB for 200 MiB"
    finally:
        proc.terminate()
    head = await engine.client.head_object(Bucket=bucket, Key="uploads/alice/big.bin")
    assert head["ContentLength"] == total


# -- WebSocket uploads ---------------------------------------------------------------------


async def test_websocket_upload(
    web: Callable[..., str], engine: streamx.Engine, bucket: str
) -> None:
    host = web()
    data = os.urandom(10 * MiB + 17)
    key = "users/alice/ws.bin"
    url = f"ws://{host}/api/uploads/ws"
    async with websockets.connect(url, additional_headers={"X-User": "alice"}) as ws:
        await ws.send(
            json.dumps({"type": "open", "key": key, "content_type": "text/csv", "size": len(data)})
        )
        assert json.loads(await ws.recv())["type"] == "ready"
        acks, progress = [], []
        frames = [data[i : i + 512 * 1024] for i in range(0, len(data), 512 * 1024)]
        for frame in frames:
            await ws.send(frame)
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "ack":
                    acks.append(message)
                    break
                progress.append(message)
        await ws.send(json.dumps({"type": "close"}))
        while (message := json.loads(await ws.recv()))["type"] != "complete":
            progress.append(message)
        assert message["result"]["size"] == len(data)
        assert [a["seq"] for a in acks] == list(range(1, len(frames) + 1))
        assert acks[-1]["bytes_received"] == len(data)
        assert all(p["type"] == "progress" for p in progress)
    head = await engine.client.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "text/csv"
    assert await read_object(engine, bucket, key) == data


async def test_websocket_refusals(
    web: Callable[..., str], engine: streamx.Engine, bucket: str
) -> None:
    host = web(max_size=6 * MiB)
    url = f"ws://{host}/api/uploads/ws"
    async with websockets.connect(url, additional_headers={"X-User": "alice"}) as ws:
        await ws.send(json.dumps({"type": "open", "key": "users/bob/x"}))
        message = json.loads(await ws.recv())
        assert message["type"] == "error" and message["status"] == 403
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    async with websockets.connect(url, additional_headers={"X-User": "alice"}) as ws:
        await ws.send(json.dumps({"type": "open", "key": "users/alice/big"}))
        assert json.loads(await ws.recv())["type"] == "ready"
        for _ in range(7):
            await ws.send(b"x" * MiB)
            message = json.loads(await ws.recv())
            while message["type"] == "progress":
                message = json.loads(await ws.recv())
            if message["type"] == "error":
                break
        assert message["status"] == 413
    await wait_no_uploads(engine, bucket)


async def test_websocket_dropped_socket_aborts(
    web: Callable[..., str], engine: streamx.Engine, bucket: str
) -> None:
    host = web()
    url = f"ws://{host}/api/uploads/ws"
    ws = await websockets.connect(url, additional_headers={"X-User": "alice"})
    await ws.send(json.dumps({"type": "open", "key": "users/alice/dropped.bin"}))
    assert json.loads(await ws.recv())["type"] == "ready"
    for _ in range(12):
        await ws.send(os.urandom(MiB))
    await wait_some_upload(engine, bucket)
    ws.transport.abort()  # no closing handshake: the TCP connection just drops
    await wait_no_uploads(engine, bucket)
    listing = await engine.client.list_objects_v2(Bucket=bucket)
    assert listing.get("KeyCount", 0) == 0


def test_import_without_fastapi_gives_an_install_hint() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "try:\n    import streamx.web.fastapi\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'streamx-s3[fastapi]'" in out.stdout
