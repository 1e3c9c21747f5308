"""The web routes under attack, on both adapters (FastAPI under uvicorn, aiohttp), with real
HTTP and WebSocket clients and a cookie-authenticated user (see web_harness.py): upload ids
bound to their key and user, cross-site writes, and inputs that used to answer a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets
from conftest import list_uploads, read_object
from web_harness import FRAMEWORKS, serve

import streamx

MiB = 1024 * 1024
EVIL = "https://evil.example"
# streamx's own logic, not the store's: two of the three servers suffice (tests/conftest.py)
pytestmark = [pytest.mark.anyio, pytest.mark.servers("moto", "rclone")]


def as_user(base: str, user: str | None, **headers: str) -> httpx.AsyncClient:
    cookies = {"user": user} if user else None
    return httpx.AsyncClient(base_url=base, cookies=cookies, headers=headers, timeout=30)


async def bob_starts_uploads(base: str) -> dict[str, Any]:
    """Bob creates one upload per contract and uploads part 1 of each."""
    async with as_user(base, "bob") as bob, httpx.AsyncClient(timeout=30) as browser:
        key = "users/bob/report.bin"
        r = await bob.post("/uploads/multipart/init", json={"key": key})
        assert r.status_code == 200, r.text
        presigned = r.json()["upload_id"]
        r = await bob.post(
            "/uploads/multipart/part-url",
            json={"key": key, "upload_id": presigned, "part_number": 1},
        )
        assert (await browser.put(r.json()["url"], content=b"bob" * 1000)).status_code == 200
        r = await bob.post("/s3/multipart", json={"filename": "photo.bin", "type": "x/y"})
        assert r.status_code == 200, r.text
        uppy_key, uppy_id = r.json()["key"], r.json()["uploadId"]
        r = await bob.get(f"/s3/multipart/{uppy_id}/1", params={"key": uppy_key})
        assert (await browser.put(r.json()["url"], content=b"BOB" * 1000)).status_code == 200
    return {"key": key, "id": presigned, "uppy_key": uppy_key, "uppy_id": uppy_id}


@pytest.mark.parametrize("server", ["moto"], indirect=True)  # moto ignores the key of an id
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_a_user_cannot_act_on_another_users_upload(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    with serve(framework, server, bucket) as base:
        bob = await bob_starts_uploads(base)
        mine = "users/alice/x.bin"
        parts = [{"PartNumber": 1, "ETag": "whatever"}]
        async with as_user(base, "alice") as alice:
            for upload_id in (bob["id"], bob["uppy_id"], bob["id"].rpartition(".")[0]):
                body = {"key": mine, "upload_id": upload_id}
                answers = [
                    await alice.post(
                        "/uploads/multipart/part-url", json={**body, "part_number": 1}
                    ),
                    await alice.get("/uploads/multipart/parts", params=body),
                    await alice.post("/uploads/multipart/complete", json={**body, "parts": parts}),
                    await alice.request("DELETE", "/uploads/multipart/abort", params=body),
                    await alice.get(f"/s3/multipart/{upload_id}/1", params={"key": mine}),
                    await alice.get(
                        f"/s3/multipart/{upload_id}/batch", params={"key": mine, "partNumbers": "1"}
                    ),
                    await alice.get(f"/s3/multipart/{upload_id}", params={"key": mine}),
                    await alice.post(
                        f"/s3/multipart/{upload_id}/complete",
                        params={"key": mine},
                        json={"parts": parts},
                    ),
                    await alice.delete(f"/s3/multipart/{upload_id}", params={"key": mine}),
                ]
                for r in answers:
                    assert r.status_code == 403, (r.request.url, r.text)
                    assert r.json()["code"] == "upload_mismatch"
            # her own key with his token, and his key: refused too
            r = await alice.get(
                "/uploads/multipart/parts", params={"key": bob["key"], "upload_id": bob["id"]}
            )
            assert r.status_code == 403
        # Bob's uploads are untouched: his parts are there, and he completes them
        async with as_user(base, "bob") as client:
            r = await client.get(
                "/uploads/multipart/parts", params={"key": bob["key"], "upload_id": bob["id"]}
            )
            assert r.status_code == 200 and len(r.json()["parts"]) == 1
            r = await client.post(
                "/uploads/multipart/complete",
                json={"key": bob["key"], "upload_id": bob["id"], "parts": r.json()["parts"]},
            )
            assert r.status_code == 200, r.text
            q = {"key": bob["uppy_key"]}
            r = await client.get(f"/s3/multipart/{bob['uppy_id']}", params=q)
            assert r.status_code == 200 and len(r.json()) == 1
            r = await client.delete(f"/s3/multipart/{bob['uppy_id']}", params=q)
            assert r.status_code == 200
    assert await read_object(engine, bucket, bob["key"]) == b"bob" * 1000
    listing = await engine.client.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listing["Contents"]] == [bob["key"]]


@pytest.mark.parametrize("server", ["moto"], indirect=True)
async def test_upload_tokens_across_processes_need_the_shared_secret(
    server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """Two replicas with the same ``upload_secret`` accept each other's upload ids; with the
    default per-process secret a replica refuses an id another one issued."""
    secret = "0123456789abcdef-shared-secret"
    with (
        serve("fastapi", server, bucket, upload_secret=secret) as one,
        serve("aiohttp", server, bucket, upload_secret=secret) as two,
        serve("aiohttp", server, bucket) as other,
    ):
        async with as_user(one, "ann") as a, as_user(two, "ann") as b, as_user(other, "ann") as c:
            r = await a.post("/s3/multipart", json={"filename": "f.bin", "type": "x/y"})
            key, upload_id = r.json()["key"], r.json()["uploadId"]
            assert (
                await c.get(f"/s3/multipart/{upload_id}", params={"key": key})
            ).status_code == 403
            assert (await b.get(f"/s3/multipart/{upload_id}", params={"key": key})).json() == []
            assert (
                await b.delete(f"/s3/multipart/{upload_id}", params={"key": key})
            ).status_code == 200
    assert await list_uploads(engine, bucket) == []


# -- cross-site writes with a cookie -----------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_cross_site_writes_are_refused(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """What a page on evil.example can make a logged-in victim's browser send without a CORS
    preflight: form posts (text/plain, urlencoded, multipart) and no-cors fetches."""
    key = "users/victim/planted.bin"
    with serve(framework, server, bucket) as base:
        async with as_user(base, "victim", Origin=EVIL) as browser:
            text = {"Content-Type": "text/plain"}
            for path, body in (
                ("/uploads/multipart/init", {"key": key}),
                ("/uploads/url", {"key": key}),
                ("/s3/multipart", {"filename": "planted.bin", "type": "x/y"}),
                ("/uploads/multipart/complete", {"key": key, "upload_id": "x.y", "parts": []}),
            ):
                r = await browser.post(path, content=json.dumps(body), headers=text)
                assert r.status_code == 415, (path, r.text)
                r = await browser.post(path, params=body, data={"a": "b"})  # urlencoded
                assert r.status_code == 415, (path, r.text)
                r = await browser.post(path, params=body)  # no body, no type
                assert r.status_code == 415, (path, r.text)
            stream = f"/uploads/stream/{key}"
            for headers in (
                {"Content-Type": "application/x-www-form-urlencoded"},
                {"Content-Type": "text/plain"},
                {"Content-Type": "multipart/form-data; boundary=x"},
                {},
            ):
                r = await browser.post(stream, content=b"evil bytes", headers=headers)
                assert r.status_code == 405, (headers, r.text)
            # the application's own page: JSON, and PUT (or a non-form POST) for the stream
            r = await browser.post("/uploads/multipart/init", json={"key": "users/victim/ok.bin"})
            assert r.status_code == 200
            r = await browser.request(
                "DELETE",
                "/uploads/multipart/abort",
                params={"key": "users/victim/ok.bin", "upload_id": r.json()["upload_id"]},
            )
            assert r.status_code == 200, r.text
            r = await browser.post(
                "/uploads/stream/users/victim/post.bin",
                content=b"mine",
                headers={"Content-Type": "application/octet-stream"},
            )
            assert r.status_code == 200, r.text
    listing = await engine.client.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listing.get("Contents", [])] == ["users/victim/post.bin"]
    assert await list_uploads(engine, bucket) == []


async def ws_open(url: str, origin: str | None) -> dict[str, Any]:
    headers = {"Cookie": "user=victim"}
    async with websockets.connect(url, additional_headers=headers, origin=origin) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "open", "key": "users/victim/ws.bin"}))
        ready = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "abort"}))
        return dict(ready)


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_websocket_origin_allow_list(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    with serve(framework, server, bucket, allowed_origins=("https://app.example",)) as base:
        url = base.replace("http://", "ws://") + "/uploads/ws"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await ws_open(url, EVIL)
        assert refused.value.response.status_code == 403
        own = base.rsplit("/", 1)[0]  # http://127.0.0.1:PORT: the server's own pages
        for origin in (own, "https://app.example", None):
            assert (await ws_open(url, origin))["type"] == "ready", origin
    with serve(framework, server, bucket) as base:  # no allow-list: only the server's own origin
        url = base.replace("http://", "ws://") + "/uploads/ws"
        with pytest.raises(websockets.InvalidStatus):
            await ws_open(url, "https://app.example")
    assert await list_uploads(engine, bucket) == []


# -- inputs that used to answer 500 text/plain ---------------------------------------------------


@pytest.mark.parametrize("server", ["moto"], indirect=True)
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_bad_inputs_get_json_4xx(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    readme_prefix = {"prefix": lambda r: f"users/{r.headers['x-user']}/"}
    with serve(framework, server, bucket, **readme_prefix) as base:
        async with as_user(base, None, **{"X-User": "alice"}) as client:
            deep = b"[" * 100_000 + b"]" * 100_000
            r = await client.post(
                "/uploads/multipart/init",
                content=deep,
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 400 and "JSON" in r.json()["error"]
            huge = "9" * 4000
            r = await client.post(
                "/uploads/url",
                content=f'{{"key": "users/alice/a", "size": {huge}}}',
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 413 and "limit" in r.json()["error"]
            r = await client.post(
                "/uploads/url",
                params={"size": "9" * 5000},
                json={"key": "users/alice/a"},
            )
            assert r.status_code == 413, r.text
            r = await client.post("/s3/multipart", json={"filename": "b.bin", "type": "x/y"})
            key, upload_id = r.json()["key"], r.json()["uploadId"]
            numbers = ",".join(str(n) for n in range(1, 1001))
            r = await client.get(
                f"/s3/multipart/{upload_id}/batch", params={"key": key, "partNumbers": numbers}
            )
            assert r.status_code == 400 and r.json()["code"] == "batch_too_large"
            numbers = ",".join(str(n) for n in range(1, 101))
            r = await client.get(
                f"/s3/multipart/{upload_id}/batch", params={"key": key, "partNumbers": numbers}
            )
            assert r.status_code == 200 and len(r.json()["presignedUrls"]) == 100
            assert (
                await client.delete(f"/s3/multipart/{upload_id}", params={"key": key})
            ).is_success
        async with as_user(base, None) as anonymous:  # the README's prefix hook: KeyError
            r = await anonymous.post("/uploads/multipart/init", json={"key": "users/x/a"})
            assert r.status_code == 401 and r.headers["content-type"].startswith("application/json")
            r = await anonymous.put("/uploads/stream/users/x/a", content=b"x")
            assert r.status_code == 401 and "error" in r.json()

    def broken(access: Any) -> bool:
        raise RuntimeError("a bug in the application's hook")

    with serve(framework, server, bucket, authorize=broken) as base:
        async with as_user(base, "alice") as client:
            r = await client.post("/uploads/multipart/init", json={"key": "users/alice/a"})
            assert r.status_code == 500 and r.json()["code"] == "hook_failed"
    assert await list_uploads(engine, bucket) == []
