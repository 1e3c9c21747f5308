"""Real, unchanged Uppy 6 (core, Dashboard, AwsS3 from npm) against streamx's Companion routes.

Headless Chromium opens tests/browser/uppy.html, served with the bundle by a FastAPI
(uvicorn) or aiohttp app that mounts ``streamx.web`` under ``/api``; Uppy's
``companionEndpoint`` is that ``/api``. Files are picked through the Dashboard's own file
input and sent with its Upload button; authorization is a session cookie, which Uppy's
same-origin requests carry (Uppy 6 has no ``headers`` option). Each case checks the
objects' SHA-256 and that no multipart upload is left, on rclone and on moto.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import streamx
from streamx.testing import MotoServer, RcloneServer, free_port
from streamx.web import AccessRequest, UploadSettings, WebError

from .harness import (
    UPPY_CSS,
    UPPY_JS,
    LoopThread,
    keys,
    object_sha256,
    s3_client,
    serve_aiohttp,
    serve_fastapi,
    until,
    uploads_left,
    wait_for,
    write_file,
)

# one worker runs every browser test (pytest-xdist, --dist loadgroup): one Chromium, one bundle
pytestmark = pytest.mark.xdist_group("browser")

MiB = 1024 * 1024
PAGE = Path(__file__).with_name("uppy.html")
USER = "ana"


@dataclass
class UppyApp:
    url: str
    bucket: str
    client: Any
    actions: list[str]
    store: str

    def page(self, **query: str) -> str:
        if self.store == "rclone":
            query.setdefault("multipart", "all")  # rclone takes no browser POST uploads
        return self.url + "/?" + "&".join(f"{k}={v}" for k, v in query.items())


def make_settings(
    bucket: str, holder: dict[str, Any], actions: list[str], origin: str, overwrite: bool
) -> Any:
    """Cookie-based authorization, as the README shows it for Uppy."""

    def prefix(request: Any) -> str:
        user = request.cookies.get("user")
        if not user:
            raise WebError(401, "sign in first")
        return f"users/{user}/"

    def authorize(access: AccessRequest) -> bool:
        actions.append(access.action)
        sent_from = access.request.headers.get("origin")
        return sent_from in (None, origin) and bool(access.request.cookies.get("user"))

    return UploadSettings(
        bucket=bucket,
        engine=lambda: holder["engine"],
        authorize=authorize,
        prefix=prefix,
        max_size=64 * MiB,
        overwrite=overwrite,
    )


def fastapi_app(settings: Any, holder: dict[str, Any], engine_args: dict[str, Any]) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, HTMLResponse

    from streamx.web.fastapi import create_router

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with streamx.Engine(**engine_args) as engine:
            holder["engine"] = engine
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(create_router(settings), prefix="/api")

    @app.get("/")
    async def page() -> HTMLResponse:
        response = HTMLResponse(PAGE.read_text())
        response.set_cookie("user", USER, httponly=True, samesite="lax")
        return response

    @app.get("/uppy.js")
    async def script() -> FileResponse:
        return FileResponse(UPPY_JS, media_type="text/javascript")

    @app.get("/uppy.css")
    async def style() -> FileResponse:
        return FileResponse(UPPY_CSS, media_type="text/css")

    return app


def aiohttp_app(settings: Any, holder: dict[str, Any], engine_args: dict[str, Any]) -> Any:
    from aiohttp import web

    from streamx.web.aiohttp import add_routes

    async def engine_context(app: web.Application) -> AsyncIterator[None]:
        async with streamx.Engine(**engine_args) as engine:
            holder["engine"] = engine
            yield

    async def page(request: web.Request) -> web.Response:
        response = web.Response(text=PAGE.read_text(), content_type="text/html")
        response.set_cookie("user", USER, httponly=True, samesite="Lax")
        return response

    async def script(request: web.Request) -> web.FileResponse:
        return web.FileResponse(UPPY_JS)

    async def style(request: web.Request) -> web.FileResponse:
        return web.FileResponse(UPPY_CSS)

    app = web.Application()
    api = web.Application()
    add_routes(api, settings)
    app.add_subapp("/api", api)
    app.cleanup_ctx.append(engine_context)
    app.router.add_get("/", page)
    app.router.add_get("/uppy.js", script)
    app.router.add_get("/uppy.css", style)
    return app


@pytest.fixture(params=["fastapi", "aiohttp"])
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def overwrite() -> bool:
    """``UploadSettings.overwrite`` of the app: allowed for the tests of the transfers
    themselves (rclone ignores If-None-Match; presigned POSTs cannot carry it)."""
    return True


@pytest.fixture(params=["rclone", "moto"])
def uppy_app(
    request: pytest.FixtureRequest,
    adapter: str,
    loop: LoopThread,
    uppy_bundle: None,
    overwrite: bool,
) -> Iterator[UppyApp]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    rclone: RcloneServer | None = None
    if request.param == "rclone":
        rclone = RcloneServer(allow_origin=origin)
        rclone.start()
        bucket, engine_args = "uppy", rclone.engine_args()
        rclone.make_bucket(bucket)
    else:
        moto: MotoServer = request.getfixturevalue("moto_server")
        bucket, engine_args = f"uppy-{port}", moto.engine_args()
    client = s3_client(engine_args)
    try:
        if rclone is None:
            client.create_bucket(Bucket=bucket)
            client.put_bucket_cors(
                Bucket=bucket,
                CORSConfiguration={
                    "CORSRules": [
                        {
                            "AllowedOrigins": [origin],
                            "AllowedMethods": ["PUT", "POST", "GET"],
                            "AllowedHeaders": ["*"],
                            "ExposeHeaders": ["ETag"],
                        }
                    ]
                },
            )
        holder: dict[str, Any] = {}
        actions: list[str] = []
        settings = make_settings(bucket, holder, actions, origin, overwrite)
        if adapter == "fastapi":
            serving = serve_fastapi(loop, fastapi_app(settings, holder, engine_args), port)
        else:
            serving = serve_aiohttp(loop, aiohttp_app(settings, holder, engine_args), port)
        with serving as url:
            yield UppyApp(url, bucket, client, actions, request.param)
        assert uploads_left(client, bucket) == []
    finally:
        client.close()
        if rclone is not None:
            rclone.stop()


def pick_and_upload(browser: Any, paths: list[Path]) -> None:
    """Add files through the Dashboard's file input, then press its Upload button."""
    from selenium.webdriver.common.by import By

    wait_for(browser, "document.querySelector('.uppy-Dashboard-input[name=\"files[]\"]')")
    picker = browser.find_element(By.CSS_SELECTOR, '.uppy-Dashboard-input[name="files[]"]')
    picker.send_keys("\n".join(str(p) for p in paths))
    wait_for(browser, "document.querySelector('.uppy-StatusBar-actionBtn--upload')")
    browser.find_element(By.CSS_SELECTOR, ".uppy-StatusBar-actionBtn--upload").click()


@pytest.mark.diagonal("uppy_app", "adapter")  # rclone with FastAPI, moto with aiohttp
def test_uppy_dashboard_uploads(browser: Any, uppy_app: UppyApp, tmp_path: Path) -> None:
    files = {
        "big.bin": 12 * MiB + 7,  # three parts of 5, 5 and 2 MiB
        "café.bin": 6 * MiB,  # multipart, with a non-ASCII name (metadata and key)
        "small.bin": 100 * 1024,  # a presigned POST on moto, one part on rclone
    }
    digests = {name: write_file(tmp_path / name, size, seed) for seed, (name, size) in
               enumerate(files.items())}  # fmt: skip
    browser.get(uppy_app.page())
    pick_and_upload(browser, [tmp_path / name for name in files])
    results = wait_for(browser, "(results.complete || results.error.length) && results")
    assert results["error"] == [] and results["complete"] == {"successful": 3, "failed": 0}
    assert sorted(s["name"] for s in results["success"]) == sorted(files)
    for name, digest in digests.items():
        assert object_sha256(uppy_app.client, uppy_app.bucket, f"users/{USER}/{name}") == digest
    assert "multipart.create" in uppy_app.actions and "multipart.complete" in uppy_app.actions
    # the Dashboard's metadata, stored as Companion stores it (relativePath: null left out)
    head = uppy_app.client.head_object(Bucket=uppy_app.bucket, Key=f"users/{USER}/café.bin")
    meta = {k.lower(): v for k, v in head["Metadata"].items()}  # rclone answers "Name"
    assert meta.get("name") == "=?UTF-8?B?Y2Fmw6kuYmlu?=" and "relativepath" not in meta, meta
    if uppy_app.store == "moto":
        assert "upload" in uppy_app.actions  # small.bin went as a presigned POST


@pytest.mark.diagonal("uppy_app", "adapter")  # rclone with FastAPI, moto with aiohttp
def test_uppy_dashboard_cancel(browser: Any, uppy_app: UppyApp, tmp_path: Path) -> None:
    path = tmp_path / "cancelled.bin"
    write_file(path, 15 * MiB, seed=9)  # three parts: the Cancel comes after the first
    browser.get(uppy_app.page(cancel="first-part"))
    pick_and_upload(browser, [path])
    results = wait_for(browser, "(results.cancel || results.error.length) && results")
    assert results["error"] == [] and results["cancel"] == "clicked", results
    until(lambda: "multipart.abort" in uppy_app.actions, what="Uppy's abort request")
    until(lambda: uploads_left(uppy_app.client, uppy_app.bucket) == [], what="no upload left")
    assert f"users/{USER}/cancelled.bin" not in keys(uppy_app.client, uppy_app.bucket)
    assert "multipart.complete" not in uppy_app.actions


@pytest.mark.diagonal("uppy_app", "adapter")  # rclone with FastAPI, moto with aiohttp
def test_uppy_dashboard_pause_resume(browser: Any, uppy_app: UppyApp, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    path = tmp_path / "paused.bin"
    digest = write_file(path, 15 * MiB + 3, seed=10)
    browser.get(uppy_app.page(pause="first-part"))
    pick_and_upload(browser, [path])
    results = wait_for(browser, "(results.pause || results.error.length) && results")
    assert results["error"] == [] and results["pause"] == "clicked", results
    assert "multipart.complete" not in uppy_app.actions
    # Resume: Uppy asks the server which parts S3 holds (list-parts), then sends the rest
    browser.find_element(
        By.CSS_SELECTOR, '.uppy-StatusBar-actionCircleBtn[data-cy="togglePauseResume"]'
    ).click()
    results = wait_for(browser, "(results.complete || results.error.length) && results")
    assert results["error"] == [] and results["complete"] == {"successful": 1, "failed": 0}
    assert "multipart.list" in uppy_app.actions
    assert object_sha256(uppy_app.client, uppy_app.bucket, f"users/{USER}/paused.bin") == digest


@pytest.mark.parametrize("overwrite", [False])
@pytest.mark.parametrize("uppy_app", ["moto"], indirect=True)
def test_uppy_cannot_overwrite_by_default(browser: Any, uppy_app: UppyApp, tmp_path: Path) -> None:
    """The default ``overwrite=False``: a file whose key is taken fails in Uppy (409 before
    any part is sent), the object stays; a new one goes through; and a small file, which
    Uppy would send as a presigned POST (no condition possible), is refused (403)."""
    taken = f"users/{USER}/taken.bin"
    uppy_app.client.put_object(Bucket=uppy_app.bucket, Key=taken, Body=b"first")
    (tmp_path / "taken.bin").write_bytes(b"second")
    digest = write_file(tmp_path / "fresh.bin", 6 * MiB, seed=11)
    browser.get(uppy_app.page(multipart="all"))
    pick_and_upload(browser, [tmp_path / "taken.bin", tmp_path / "fresh.bin"])
    results = wait_for(browser, "results.complete && results")
    assert results["complete"] == {"successful": 1, "failed": 1}, results
    assert [e["name"] for e in results["error"]] == ["taken.bin"], results
    assert uppy_app.client.get_object(Bucket=uppy_app.bucket, Key=taken)["Body"].read() == b"first"
    assert object_sha256(uppy_app.client, uppy_app.bucket, f"users/{USER}/fresh.bin") == digest

    write_file(tmp_path / "small.bin", 1000, seed=12)
    browser.get(uppy_app.page())  # Uppy's default: small files as a presigned POST
    pick_and_upload(browser, [tmp_path / "small.bin"])
    results = wait_for(browser, "results.complete && results")
    assert results["complete"] == {"successful": 0, "failed": 1}, results
    assert f"users/{USER}/small.bin" not in keys(uppy_app.client, uppy_app.bucket)
    assert "upload" in uppy_app.actions  # asked for, and refused
