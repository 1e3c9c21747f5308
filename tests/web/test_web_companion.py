"""The Companion-compatible routes take what Uppy 6 really sends: real HTTP requests (httpx)
against both adapters (FastAPI under uvicorn, aiohttp), moto and rclone behind."""

from __future__ import annotations

import base64
import os
from typing import Any

import httpx
import pytest
from conftest import list_uploads, read_object
from web_harness import FRAMEWORKS, serve

import streamx
from streamx.web._metadata import check_metadata, metadata_text

MiB = 1024 * 1024
# streamx's own logic, not the store's: two of the three servers suffice (tests/conftest.py)
pytestmark = [pytest.mark.anyio, pytest.mark.servers("moto", "rclone")]


def test_metadata_values_become_strings_like_companion() -> None:
    assert metadata_text(None) is None
    assert metadata_text("photo.jpg") == "photo.jpg"
    assert metadata_text(42) == "42" and metadata_text(2.0) == "2" and metadata_text(1.5) == "1.5"
    assert metadata_text(True) == "true"
    assert metadata_text({"userId": 42}) == '{"userId":42}'
    assert metadata_text([1, "a"]) == '[1,"a"]'
    word = base64.b64encode("café.bin".encode()).decode()
    assert metadata_text("café.bin") == f"=?UTF-8?B?{word}?="
    # a control character never reaches a header raw
    assert metadata_text("a\r\nX-Evil: 1").startswith("=?UTF-8?B?")
    meta = check_metadata({"relativePath": None, "name": "x", "user.id": 7})
    assert meta == {"name": "x", "user.id": "7"}


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_uppy_dashboard_metadata(
    framework: str, server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """What Uppy 6's Dashboard sends for ``café.bin``: ``relativePath: null``, the non-ASCII
    name, and an application's ``{userId: 42}``; the object then carries them as Companion
    would store them (RFC 2047 for non-ASCII)."""
    data = os.urandom(5 * MiB + 99)
    meta = {
        "name": "café.bin",
        "type": "application/octet-stream",
        "relativePath": None,
        "userId": 42,
        "profile": {"team": "blue"},
    }
    # overwrites allowed: /s3/params hands out POST forms, which take no If-None-Match
    with serve(framework, server, bucket, overwrite=True) as base:
        async with (
            httpx.AsyncClient(base_url=base, cookies={"user": "alice"}, timeout=30) as client,
            httpx.AsyncClient(timeout=30) as browser,
        ):
            r = await client.post(
                "/s3/multipart",
                json={"filename": "café.bin", "type": "application/octet-stream", "metadata": meta},
            )
            assert r.status_code == 200, r.text
            key, upload_id = r.json()["key"], r.json()["uploadId"]
            assert key == "users/alice/café.bin"
            q = {"key": key}
            r = await client.get(
                f"/s3/multipart/{upload_id}/batch", params={**q, "partNumbers": "1,2"}
            )
            assert r.status_code == 200, r.text
            urls = r.json()["presignedUrls"]
            etags = []
            for number, piece in ((1, data[: 5 * MiB]), (2, data[5 * MiB :])):
                put = await browser.put(urls[str(number)], content=piece)
                assert put.status_code == 200, put.text
                etags.append({"PartNumber": number, "ETag": put.headers["ETag"]})
            r = await client.post(
                f"/s3/multipart/{upload_id}/complete", params=q, json={"parts": etags}
            )
            assert r.status_code == 200, r.text
            if server.name == "moto":  # a small file: Uppy's simple upload through /s3/params
                r = await client.get(
                    "/s3/params",
                    params={
                        "filename": "é.txt",
                        "type": "text/plain",
                        "metadata[name]": "é.txt",
                        "metadata[relativePath]": "null",
                    },
                )
                assert r.status_code == 200, r.text
                form = r.json()
                post = await browser.post(
                    form["url"],
                    data=form["fields"],
                    files={"file": ("é.txt", b"tiny", "text/plain")},
                )
                assert post.status_code == 201, post.text
                head = await engine.client.head_object(Bucket=bucket, Key="users/alice/é.txt")
                assert head["Metadata"]["name"] == metadata_text("é.txt")
    assert await read_object(engine, bucket, key) == data
    head = await engine.client.head_object(Bucket=bucket, Key=key)
    stored = {k.lower(): v for k, v in head["Metadata"].items()}
    assert stored["name"] == metadata_text("café.bin")
    assert stored["userid"] == "42"
    assert stored["profile"] == '{"team":"blue"}'
    assert "relativepath" not in stored
    assert not await list_uploads(engine, bucket)
