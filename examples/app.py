"""A small FastAPI service that uses all three ways of getting bytes into S3 with streamx.

Run it (one command; it starts a local ``rclone serve s3`` when no endpoint is configured)::

    python examples/app.py            # then open http://127.0.0.1:8000

or against any S3 endpoint: set ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` and pass ``--bucket NAME``.

* ``GET /`` — a page that uploads a chosen file through the presigned multipart
  routes (init, part URLs, PUT each part straight to S3, complete) with a progress bar;
* ``/api/uploads/...`` and ``/api/s3/...`` — the presigned and Uppy (Companion) routes;
* ``PUT /api/uploads/stream/{key}`` — streams the request body to S3, e.g.
  ``curl -T big.iso http://127.0.0.1:8000/api/uploads/stream/uploads/big.iso``;
* ``ws://127.0.0.1:8000/api/uploads/ws`` — WebSocket uploads;
* ``/api/tus/`` — tus 1.0.0 resumable uploads (the page's second form uses the bundled
  tus-js-client); they survive a dropped connection or a restart of this server.

Every route goes through :func:`authorize`: keys must live under ``uploads/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse

import streamx
from streamx.testing import ACCESS_KEY, SECRET_KEY, find_rclone, free_port
from streamx.web import AccessRequest, UploadSettings
from streamx.web.fastapi import create_router, tus_router
from streamx.web.tus import TusOptions

STATIC = Path(streamx.__file__).parent / "web" / "static"
PREFIX = "uploads/"


def authorize(access: AccessRequest) -> bool:
    """The application decides who may do what; this demo lets anyone use ``uploads/``."""
    return access.key.startswith(PREFIX)


def build_app(*, bucket: str, engine_args: dict[str, Any], max_size: int) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with streamx.Engine(**engine_args) as engine:
            try:
                await engine.client.head_bucket(Bucket=bucket)
            except Exception:
                await engine.client.create_bucket(Bucket=bucket)
            app.state.engine = engine
            yield

    app = FastAPI(title="streamx upload example", lifespan=lifespan)
    settings = UploadSettings(
        bucket=bucket,
        engine=lambda: app.state.engine,
        authorize=authorize,
        prefix=PREFIX,
        max_size=max_size,
        url_lifetime=3600,
    )
    app.include_router(create_router(settings), prefix="/api")
    app.include_router(tus_router(settings, TusOptions()), prefix="/api/tus")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/static/tus.min.js", include_in_schema=False)
    async def tus_client() -> FileResponse:  # tus-js-client, bundled (MIT)
        return FileResponse(STATIC / "tus.min.js", media_type="text/javascript")

    return app


def start_rclone(allow_origin: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """A local ``rclone serve s3`` for the demo, answering the page's CORS preflights."""
    data = tempfile.mkdtemp(prefix="streamx-example-")
    port = free_port()
    cmd = [
        find_rclone(),
        "serve",
        "s3",
        data,
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{ACCESS_KEY},{SECRET_KEY}",
        "--config",
        os.devnull,
        "--log-level",
        "ERROR",
        "--allow-origin",
        allow_origin,
    ]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("rclone serve s3 did not start") from None
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--bucket", default=os.environ.get("STREAMX_BUCKET", "streamx-demo"))
    parser.add_argument("--max-size", type=int, default=5 * 1024**3, help="bytes per object")
    args = parser.parse_args()
    rclone = None
    if os.environ.get("AWS_ENDPOINT_URL"):
        engine_args: dict[str, Any] = {}  # the Engine reads the AWS_* environment
    else:
        rclone, endpoint, data = start_rclone(f"http://{args.host}:{args.port}")
        engine_args = {
            "endpoint_url": endpoint,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "region_name": "us-east-1",
        }
        print(f"local S3 (rclone) at {endpoint}, data in {data}")
    try:
        app = build_app(bucket=args.bucket, engine_args=engine_args, max_size=args.max_size)
        uvicorn.run(app, host=args.host, port=args.port, ws="websockets-sansio")
    finally:
        if rclone is not None:
            rclone.terminate()
            rclone.wait(10)
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
