"""Slow and idle request bodies on the stream route, on both adapters (FastAPI under uvicorn,
aiohttp), with raw-socket clients that trickle or stall: the server cuts them off (408) and
aborts their uploads, they hold only the bytes that arrived (peak RSS of a server in a child
process), and under a shared memory budget they do not keep a fast client waiting."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import httpx
import pytest
import websockets
from conftest import list_uploads, peak_rss_mib, read_object
from web_harness import FRAMEWORKS, serve

import streamx

MiB = 1024 * 1024
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
# streamx's own logic, not the store's: two of the three servers suffice (tests/conftest.py)
pytestmark = [pytest.mark.anyio, pytest.mark.servers("moto", "rclone")]


def host_port(base: str) -> tuple[str, int]:
    host, port = base.split("//", 1)[1].split("/", 1)[0].split(":")
    return host, int(port)


async def open_body(
    base: str,
    key: str,
    length: int,
    *,
    route: str = "PUT /uploads/stream/",
    kind: str = "application/octet-stream",
) -> tuple[Any, Any]:
    """A raw PUT of ``length`` bytes to the stream route (or ``route``); only the head is sent."""
    host, port = host_port(base)
    reader, writer = await asyncio.open_connection(host, port)
    method, path = route.split(" ", 1)
    path = base.split(f":{port}", 1)[1] + path + key
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: user=alice\r\n"
        f"Content-Type: {kind}\r\nContent-Length: {length}\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    return reader, writer


async def answer_and_close(reader: Any, writer: Any, trickle: bool) -> tuple[int, bytes]:
    """Trickle a byte every 0.3 s (or nothing) until the server answers; its status and
    whatever it sent, which must end with the connection closed."""
    received = b""
    while b"\r\n\r\n" not in received:
        try:
            data = await asyncio.wait_for(reader.read(65536), 0.3)
        except TimeoutError:
            if trickle:
                writer.write(b"x")
                await writer.drain()
            continue
        assert data, f"the server closed without an answer: {received!r}"
        received += data
    while data := await asyncio.wait_for(reader.read(65536), 30):  # then EOF: it closed
        received += data
    writer.close()
    return int(received.split(b" ", 2)[1]), received


async def wait_no_uploads(engine: streamx.Engine, bucket: str) -> None:
    deadline = time.monotonic() + 30
    while await list_uploads(engine, bucket):
        assert time.monotonic() < deadline, "the multipart upload was not aborted"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_idle_and_trickling_bodies_are_cut_off(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    limits = {"body_read_timeout": 1.5, "body_min_rate": 4096, "body_rate_grace": 1.0}
    with serve(framework, server, bucket, **limits) as base:
        idle = await open_body(base, "users/alice/idle.bin", 60 * MiB)
        idle[1].write(b"0123456789")
        trickler = await open_body(base, "users/alice/trickle.bin", 60 * MiB)
        trickler[1].write(os.urandom(1024))
        json_body = await open_body(
            base, "", 1000, route="POST /uploads/multipart/init", kind="application/json"
        )
        json_body[1].write(b'{"key": ')
        (status, answer), (slow_status, slow_answer), (json_status, _) = await asyncio.gather(
            answer_and_close(*idle, trickle=False),
            answer_and_close(*trickler, trickle=True),
            answer_and_close(*json_body, trickle=False),
        )
        assert status == 408 and b'"body_timeout"' in answer, answer
        assert slow_status == 408 and b'"body_too_slow"' in slow_answer, slow_answer
        assert json_status == 408  # a JSON body is held to the same limits
        # a client within the limits is served
        async with httpx.AsyncClient(base_url=base, cookies={"user": "alice"}, timeout=60) as c:
            data = os.urandom(9 * MiB)
            r = await c.put("/uploads/stream/users/alice/ok.bin", content=data)
            assert r.status_code == 200, r.text
    await wait_no_uploads(engine, bucket)
    assert await read_object(engine, bucket, "users/alice/ok.bin") == data
    listing = await engine.client.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listing["Contents"]] == ["users/alice/ok.bin"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_trickling_websocket_uploads_are_cut_off(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    limits = {"body_min_rate": 4096, "body_rate_grace": 1.0}
    with serve(framework, server, bucket, **limits) as base:
        url = base.replace("http://", "ws://") + "/uploads/ws"
        async with websockets.connect(url, additional_headers={"Cookie": "user=alice"}) as ws:
            await ws.send(json.dumps({"type": "open", "key": "users/alice/ws-slow.bin"}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(os.urandom(1024))
            error: dict[str, Any] = {}
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    try:
                        message = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
                    except TimeoutError:
                        await ws.send(b"x")  # a byte every 0.3 s: far below 4 KiB/s
                        continue
                    if message["type"] == "error":
                        error = message
        assert error["status"] == 408 and error["code"] == "body_too_slow", error
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
    await wait_no_uploads(engine, bucket)


@pytest.mark.parametrize("server", ["rclone"], indirect=True)
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_stalled_bodies_do_not_starve_a_fast_one_under_a_shared_budget(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """``Engine(memory_budget=32 MiB)``, 8 MiB parts: sixteen clients announce 60 MiB, send
    10 bytes and stall (and are never cut off here); another user's 20 MiB upload goes
    through. Reserving a whole part per body, the stalled ones held the whole budget."""
    settings = {
        "engine_args": {"memory_budget": 32 * MiB},
        "body_read_timeout": 600.0,
        "body_min_rate": 0,
    }
    with serve(framework, server, bucket, **settings) as base:
        stalled = [await open_body(base, f"users/alice/stall-{i}.bin", 60 * MiB) for i in range(16)]
        for _, writer in stalled:
            writer.write(b"0123456789")
            await writer.drain()
        await asyncio.sleep(1)  # let the server start their uploads (ordering, not timing)
        data = os.urandom(20 * MiB)
        async with httpx.AsyncClient(base_url=base, cookies={"user": "bob"}, timeout=120) as c:
            r = await c.put("/uploads/stream/users/bob/fast.bin", content=data)
            assert r.status_code == 200, r.text
        for _, writer in stalled:
            writer.transport.abort()
        await wait_no_uploads(engine, bucket)
    assert await read_object(engine, bucket, "users/bob/fast.bin") == data


SERVER = """
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from web_harness import serve

class Store:
    name = "child"
    store = {store!r}
    def engine_args(self):
        return {engine_args!r}

with serve({framework!r}, Store(), {bucket!r}, body_read_timeout=120.0, body_min_rate=0) as base:
    print(base, flush=True)
    while True:
        time.sleep(1)
"""


async def start_child(
    framework: str, server: Any, bucket: str, engine_args: dict[str, Any] | None = None
) -> Any:
    script = SERVER.format(
        root=ROOT,
        tests=TESTS,
        engine_args=engine_args or server.engine_args(),
        framework=framework,
        bucket=bucket,
        store=server.store,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    base = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
    assert base.startswith("http://"), "the server did not start"
    return proc, base


@pytest.mark.slow
@pytest.mark.parametrize("server", ["rclone"], indirect=True)
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_concurrent_streams_stay_near_the_shared_budget(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """32 concurrent 24 MiB streams through a server (a child process) whose engine has a
    64 MiB budget: the server grows by about the budget, not by a window per stream."""
    budget = 64 * MiB
    proc, base = await start_child(
        framework, server, bucket, {**server.engine_args(), "memory_budget": budget}
    )
    try:
        chunk = os.urandom(256 * 1024)

        async def body() -> Any:
            for _ in range(24 * 4):
                yield chunk

        async with httpx.AsyncClient(base_url=base, cookies={"user": "alice"}, timeout=300) as c:
            r = await c.put("/uploads/stream/users/alice/warm.bin", content=os.urandom(MiB))
            assert r.status_code == 200
            baseline = peak_rss_mib(proc.pid)
            answers = await asyncio.gather(
                *(c.put(f"/uploads/stream/users/alice/s{i}.bin", content=body()) for i in range(32))
            )
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers][:3]
        peak = peak_rss_mib(proc.pid)
        grew = peak - baseline
        print(
            f"\n{framework}: 32 x 24 MiB streams, 64 MiB budget: {baseline:.0f} -> {peak:.0f} MiB"
        )
        assert grew < budget / MiB + 40, f"the server grew by {grew:.0f} MiB"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)


@pytest.mark.slow
@pytest.mark.parametrize("server", ["rclone"], indirect=True)
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_trickling_bodies_hold_only_what_arrived(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """32 bodies that sent 1 KiB and then a byte now and then: the server (a child process)
    grows by far less than the 32 x 8 MiB parts they used to hold (measured 89 -> 347 MiB)."""
    proc, base = await start_child(framework, server, bucket)
    try:
        async with httpx.AsyncClient(base_url=base, cookies={"user": "alice"}, timeout=60) as c:
            r = await c.put("/uploads/stream/users/alice/warm.bin", content=os.urandom(MiB))
            assert r.status_code == 200  # warmed up: the engine and its pools exist
        baseline = peak_rss_mib(proc.pid)
        bodies = [await open_body(base, f"users/alice/t{i}.bin", 60 * MiB) for i in range(32)]
        for _, writer in bodies:
            writer.write(os.urandom(1024))
        for _ in range(3):
            await asyncio.sleep(1)
            for _, writer in bodies:
                writer.write(b"x")
                await writer.drain()
        peak = peak_rss_mib(proc.pid)
        print(f"\n{framework}: peak RSS {baseline:.0f} -> {peak:.0f} MiB with 32 trickling bodies")
        assert peak - baseline < 48, (
            f"32 trickling bodies grew the server by {peak - baseline:.0f} MiB"
        )
        for _, writer in bodies:
            writer.transport.abort()
        await wait_no_uploads(engine, bucket)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
