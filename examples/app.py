"""A small FastAPI service that uses all three ways of getting bytes into S3 with streamx.

Run it (one command; it starts a local ``rclone serve s3`` when no endpoint is configured)::

    python examples/app.py            # then open http://127.0.0.1:8000 (or http://localhost:8000)

or against any S3 endpoint: set ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, pass ``--bucket NAME``, and give the bucket a
CORS rule once (``--set-cors`` does it, see the README).

* ``GET /`` — a page that uploads a chosen file through the presigned multipart
  routes (init, part URLs, PUT each part straight to S3, complete) with a progress bar;
* ``/api/uploads/...`` and ``/api/s3/...`` — the presigned and Uppy (Companion) routes;
* ``PUT /api/uploads/stream/{key}`` — streams the request body to S3;
* ``ws://127.0.0.1:8000/api/uploads/ws`` — WebSocket uploads;
* ``/api/tus/`` — tus 1.0.0 resumable uploads (the page's "tus" method, with the bundled
  tus-js-client); they survive a dropped connection or a restart of this server.

Authorization is by session cookie, as a browser app (and Uppy 6, which has no ``headers``
option) does it: ``GET /api/session`` gives the browser a guest session, ``POST
/api/session`` with ``{"user": "alice"}`` signs in under a name (a demo: no password).
The cookie is ``HttpOnly`` and ``SameSite=Lax``; every route goes through
:meth:`Sessions.authorize`, and each user writes under ``uploads/{user}/``. Against
cross-site request forgery, ``streamx.web`` refuses what another site's page can make a
browser send with the cookie (forms, non-JSON bodies, foreign WebSocket origins: the
README's "Web security notes")::

    curl -c jar -H 'Content-Type: application/json' -d '{"user": "alice"}' \\
         http://127.0.0.1:8000/api/session
    curl -b jar -T big.iso http://127.0.0.1:8000/api/uploads/stream/uploads/alice/big.iso
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

import streamx
from streamx._limits import format_size, parse_size
from streamx.testing import RcloneServer
from streamx.web import AccessRequest, UploadSettings, WebError
from streamx.web.fastapi import create_router, tus_router
from streamx.web.tus import TusOptions

STATIC = Path(streamx.__file__).parent / "web" / "static"
COOKIE = "streamx_session"
_USER = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def page_origins(host: str, port: int) -> list[str]:
    """The origins the page may be opened from: the address served, and localhost for it."""
    origins = [f"http://{host}:{port}"]
    if host in ("127.0.0.1", "localhost", "0.0.0.0", "::", "::1"):
        origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    return origins


class Sessions:
    """Session cookie → user name, in memory (a real app uses its own login and store)."""

    def __init__(self) -> None:
        self._users: dict[str, str] = {}

    def user(self, request: Any) -> str | None:
        """The signed-in user of a request (or WebSocket), from its cookie."""
        return self._users.get(request.cookies.get(COOKIE, ""))

    def sign_in(self, response: JSONResponse, user: str) -> None:
        token = secrets.token_urlsafe(32)
        self._users[token] = user
        # HttpOnly: no script reads it; SameSite=Lax: other sites' forms and fetches
        # go without it (add secure=True when served over https)
        response.set_cookie(COOKIE, token, httponly=True, samesite="lax", path="/")

    def prefix(self, request: Any) -> str:
        """``UploadSettings.prefix``: each user writes under ``uploads/{user}/``."""
        user = self.user(request)
        if user is None:
            raise WebError(401, "no session: open the page, or GET /api/session, first")
        return f"uploads/{user}/"

    def authorize(self, access: AccessRequest) -> bool:
        """``UploadSettings.authorize``: a signed-in user may do anything under their prefix
        (the routes have checked that ``access.key`` is under it)."""
        return self.user(access.request) is not None


async def ensure_bucket(engine: streamx.Engine, bucket: str) -> None:
    try:
        await engine.client.head_bucket(Bucket=bucket)
    except Exception:
        await engine.client.create_bucket(Bucket=bucket)


def build_app(
    *,
    bucket: str,
    engine_args: dict[str, Any],
    max_size: int,
    origins: list[str],
    overwrite: bool = False,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with streamx.Engine(**engine_args) as engine:
            await ensure_bucket(engine, bucket)
            app.state.engine = engine
            yield

    app = FastAPI(title="streamx upload example", lifespan=lifespan)
    sessions = Sessions()
    settings = UploadSettings(
        bucket=bucket,
        engine=lambda: app.state.engine,
        authorize=sessions.authorize,
        prefix=sessions.prefix,
        max_size=max_size,
        url_lifetime=3600,
        # the page may be opened as 127.0.0.1 or localhost; the WebSocket route checks the
        # Origin of an upgrade against these (the JSON routes refuse what forms can send)
        allowed_origins=tuple(origins),
        # False (the default): an upload to a key that is taken answers 409, S3 itself
        # refuses it (If-None-Match: *); True only for stores that ignore that (rclone)
        overwrite=overwrite,
    )

    @app.get("/api/session")
    async def session(request: Request) -> JSONResponse:
        """The browser's session; a new guest one when it has none."""
        user = sessions.user(request)
        new = user is None
        if user is None:
            user = f"guest-{secrets.token_hex(4)}"
        response = JSONResponse({"user": user, "prefix": f"uploads/{user}/"})
        if new:
            sessions.sign_in(response, user)
        return response

    @app.post("/api/session")
    async def sign_in(request: Request) -> JSONResponse:
        """Sign in as ``{"user": name}`` (a demo: no password)."""
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return JSONResponse({"error": "send JSON"}, status_code=415)
        try:
            body = await request.json()
        except ValueError:
            body = None
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or not _USER.fullmatch(user):
            return JSONResponse({"error": "user must be 1-32 of a-z 0-9 _ -"}, status_code=400)
        response = JSONResponse({"user": user, "prefix": f"uploads/{user}/"})
        sessions.sign_in(response, user)
        return response

    app.include_router(create_router(settings), prefix="/api")
    # tus: the page names the key in the metadata (checked against the prefix, then authorize)
    tus = TusOptions(
        make_key=lambda request, prefix, upload, meta: meta.get("key") or prefix + upload
    )
    app.include_router(tus_router(settings, tus), prefix="/api/tus")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def cors_rule(origins: list[str]) -> dict[str, Any]:
    """The bucket CORS rule the page needs: PUT parts, GET downloads, read ``ETag``."""
    return {
        "CORSRules": [
            {
                "AllowedOrigins": origins,
                "AllowedMethods": ["PUT", "GET"],
                "AllowedHeaders": ["*"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3600,
            }
        ]
    }


async def set_cors(bucket: str, engine_args: dict[str, Any], origins: list[str]) -> None:
    async with streamx.Engine(**engine_args) as engine:
        await ensure_bucket(engine, bucket)
        await engine.client.put_bucket_cors(Bucket=bucket, CORSConfiguration=cors_rule(origins))


def size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0]
        + " With no AWS_ENDPOINT_URL it starts a local rclone serve s3 and prints its"
        " credentials; otherwise it uses the AWS_* variables.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve the page on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port to serve the page on (default 8000)"
    )
    parser.add_argument(
        "--bucket",
        default=os.environ.get("STREAMX_BUCKET", "streamx-demo"),
        help="bucket to upload into, created when missing (default $STREAMX_BUCKET or "
        "streamx-demo)",
    )
    parser.add_argument(
        "--max-size",
        type=size_arg,
        default="5GiB",
        metavar="SIZE",
        help="largest object a user may upload, e.g. 10MiB, 1GiB or 4096 bytes (default 5GiB)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="one more origin the page is opened from, e.g. https://uploads.example.com "
        "behind a proxy (repeatable); http://127.0.0.1:PORT and http://localhost:PORT always",
    )
    parser.add_argument(
        "--allow-overwrite",
        action="store_true",
        help="let an upload replace an existing object (by default S3 refuses it: 409); "
        "needed for a store that ignores If-None-Match, such as rclone serve s3 (the local "
        "one this app starts gets it)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="what streamx's log shows: info names each presigned URL's key and each "
        "upload created, completed or aborted (never a URL or a credential); debug adds "
        "one line per part (default info)",
    )
    parser.add_argument(
        "--set-cors",
        action="store_true",
        help="put the CORS rule the page needs on the bucket (PUT and GET from this page's "
        "origins, ETag exposed), then exit",
    )
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # streamx is silent unless the application asks: this app shows its events on stderr
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("streamx").setLevel(args.log_level.upper())
    origins = page_origins(args.host, args.port) + args.allow_origin
    if args.set_cors:
        anyio.run(set_cors, args.bucket, {}, origins)
        print(f"CORS rule set on {args.bucket}: {', '.join(origins)} may PUT and GET")
        return
    rclone = None
    overwrite = args.allow_overwrite
    if os.environ.get("AWS_ENDPOINT_URL"):
        engine_args: dict[str, Any] = {}  # the Engine reads the AWS_* environment
    else:
        # a throwaway server on loopback whose every request must carry a SigV4 signature:
        # "*" lets the page in from 127.0.0.1 and localhost alike (rclone takes one origin)
        rclone = RcloneServer(allow_origin="*")
        rclone.start()
        engine_args = rclone.engine_args()
        overwrite = True  # rclone serve s3 ignores If-None-Match: it cannot refuse overwrites
        print(
            f"local S3 (rclone serve s3) at {rclone.endpoint_url}, data in {rclone.data_dir}\n"
            f"  access key {rclone.access_key}  secret key {rclone.secret_key}"
            f"  region {rclone.region}  bucket {args.bucket}\n"
            "  e.g. AWS_ENDPOINT_URL={0} AWS_ACCESS_KEY_ID={1} AWS_SECRET_ACCESS_KEY={2}"
            " streamx ls s3://{3}/".format(
                rclone.endpoint_url, rclone.access_key, rclone.secret_key, args.bucket
            )
        )
    print(
        f"objects up to {format_size(args.max_size)}, "
        f"{'overwrites allowed' if overwrite else 'no overwrites (409)'}; "
        f"open {' or '.join(origins)}"
    )
    # uvicorn re-raises SIGTERM once it has shut down: make it an exception, as Ctrl-C
    # is, so that the local server is stopped and its data removed below
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app = build_app(
            bucket=args.bucket,
            engine_args=engine_args,
            max_size=args.max_size,
            origins=origins,
            overwrite=overwrite,
        )
        uvicorn.run(app, host=args.host, port=args.port, ws="websockets-sansio")
    except KeyboardInterrupt:
        pass
    finally:
        if rclone is not None:
            rclone.stop()


if __name__ == "__main__":
    main()
