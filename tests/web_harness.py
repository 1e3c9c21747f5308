"""Both web adapters served the same way for the security tests: FastAPI under uvicorn, or
aiohttp's own server, each in its own thread and event loop on a loopback port, with its own
Engine (entered in the app's lifespan / cleanup context) and a cookie-authenticated user.

``serve(framework, server, bucket, **settings)`` yields the routes' base URL
(``http://127.0.0.1:PORT/api``). Overwrites are allowed on a store that ignores
``If-None-Match`` (rclone: the routes refuse the default there, see :func:`overwrite_for`). The user is the ``user`` cookie (or an ``X-User`` header); the
prefix hook refuses an anonymous request with a 401, the authorize hook allows ``users/<user>/``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import streamx
from streamx._stores import PROFILES
from streamx.testing import free_port
from streamx.web import AccessRequest, UploadSettings, WebError

FRAMEWORKS = ("fastapi", "aiohttp")


def current_user(request: Any) -> str | None:
    user = request.cookies.get("user") or request.headers.get("x-user")
    return str(user) if user else None


def user_prefix(request: Any) -> str:
    user = current_user(request)
    if not user:
        raise WebError(401, "log in first")
    return f"users/{user}/"


def authorize(access: AccessRequest) -> bool:
    user = current_user(access.request)
    return user is not None and access.key.startswith(f"users/{user}/")


def overwrite_for(server: Any) -> bool:
    """``UploadSettings.overwrite`` for tests of other behaviour on ``server``: with the
    default (``False``) the write routes refuse to run on a store known to ignore
    ``If-None-Match`` (rclone serve s3), so there overwrites must be allowed explicitly."""
    store = getattr(server, "store", None)
    return store in PROFILES and PROFILES[store].honours("PutObject:IfNoneMatch") is False


def settings_for(engine: Any, bucket: str, **overrides: Any) -> UploadSettings:
    options: dict[str, Any] = {
        "bucket": bucket,
        "engine": engine,
        "authorize": authorize,
        "prefix": user_prefix,
        **overrides,
    }
    return UploadSettings(**options)


def _fastapi_app(engine_args: dict[str, Any], bucket: str, overrides: dict[str, Any]) -> Any:
    from fastapi import FastAPI

    from streamx.web.fastapi import create_router

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with streamx.Engine(**engine_args) as engine:
            app.state.engine = engine
            yield

    app = FastAPI(lifespan=lifespan)
    settings = settings_for(lambda: app.state.engine, bucket, **overrides)
    app.include_router(create_router(settings), prefix="/api")
    return app


@contextmanager
def _serve_fastapi(app: Any) -> Iterator[int]:
    import uvicorn

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
        yield port
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def _serve_aiohttp(
    engine_args: dict[str, Any], bucket: str, overrides: dict[str, Any]
) -> Iterator[int]:
    from aiohttp import web

    from streamx.web.aiohttp import add_routes

    engine_key = web.AppKey("engine", streamx.Engine)
    port = free_port()
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    loop_box: list[asyncio.AbstractEventLoop] = []
    failure: list[BaseException] = []

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        async with streamx.Engine(**engine_args) as engine:
            app[engine_key] = engine
            yield

    async def main() -> None:
        app = web.Application()
        app.cleanup_ctx.append(engine_ctx)
        api = web.Application()
        add_routes(api, settings_for(lambda: app[engine_key], bucket, **overrides))
        app.add_subapp("/api", api)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop.append(asyncio.Event())
        loop_box.append(asyncio.get_running_loop())
        ready.set()
        try:
            await stop[0].wait()
        finally:
            await runner.cleanup()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the waiting test
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(20), "aiohttp did not start"
    assert not failure, failure
    try:
        yield port
    finally:
        loop_box[0].call_soon_threadsafe(stop[0].set)
        thread.join(15)


@contextmanager
def serve(framework: str, server: Any, bucket: str, **overrides: Any) -> Iterator[str]:
    """One adapter with ``UploadSettings(**overrides)``; yields ``http://127.0.0.1:PORT/api``."""
    engine_args = dict(server.engine_args())
    engine_args.update(overrides.pop("engine_args", {}))
    overrides.setdefault("overwrite", overwrite_for(server))
    if framework == "fastapi":
        with _serve_fastapi(_fastapi_app(engine_args, bucket, overrides)) as port:
            yield f"http://127.0.0.1:{port}/api"
    elif framework == "aiohttp":
        with _serve_aiohttp(engine_args, bucket, overrides) as port:
            yield f"http://127.0.0.1:{port}/api"
    else:  # pragma: no cover
        raise ValueError(framework)
