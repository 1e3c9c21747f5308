"""A tus server process for the tests: ``python tests/tus_app.py CONFIG_JSON``.

CONFIG_JSON: {"framework": "fastapi"|"aiohttp", "port": N, "bucket": ..., "engine": {...
Engine kwargs}, "options": {TusOptions kwargs}, "max_size": N, "overwrite": bool, "open":
bool}. Users come from the ``X-User`` header (401 without), their prefix is
``users/<name>/``; keys containing ``/private/`` are refused by the authorization hook
(403); the metadata ``objectKey`` picks the key (else ``prefix + upload id``). Served at
``/api/tus/``. ``"open": true`` (benchmarks/tus_bench.py): no users, every request
allowed, keys are upload ids, no access log.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import streamx
from streamx.web import AccessRequest, UploadSettings, WebError, allow_all
from streamx.web.tus import TusOptions


def user_prefix(request: Any) -> str:
    user = request.headers.get("x-user")
    if not user:
        raise WebError(401, "send an X-User header")
    return f"users/{user}/"


def authorize(access: AccessRequest) -> bool:
    return "/private/" not in access.key


def make_key(request: Any, prefix: str, upload: str, metadata: Mapping[str, str]) -> str:
    return metadata.get("objectKey") or prefix + upload


def main() -> None:
    cfg = json.loads(sys.argv[1])
    holder: dict[str, streamx.Engine] = {}
    hooks: dict[str, Any] = {"authorize": authorize, "prefix": user_prefix}
    if cfg.get("open"):
        hooks = {"authorize": allow_all}
    settings = UploadSettings(
        bucket=cfg["bucket"],
        engine=lambda: holder["engine"],
        max_size=cfg.get("max_size", 1 << 40),
        overwrite=cfg.get("overwrite", False),
        **hooks,
    )
    keys = {} if cfg.get("open") else {"make_key": make_key, "allow_origins": ("*",)}
    options = TusOptions(**keys, **cfg.get("options", {}))

    @asynccontextmanager
    async def engine() -> AsyncIterator[None]:
        async with streamx.Engine(**cfg["engine"]) as eng:
            holder["engine"] = eng
            yield

    if cfg["framework"] == "fastapi":
        import uvicorn
        from fastapi import FastAPI

        from streamx.web.tus.fastapi import tus_router

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with engine():
                yield

        app = FastAPI(lifespan=lifespan)
        app.include_router(tus_router(settings, options), prefix="/api/tus")
        uvicorn.run(app, host="127.0.0.1", port=cfg["port"], log_level="warning")
    else:
        from aiohttp import web

        from streamx.web.tus.aiohttp import add_tus_routes

        async def context(app: web.Application) -> AsyncIterator[None]:
            async with engine():
                yield

        aio = web.Application()
        aio.cleanup_ctx.append(context)
        add_tus_routes(aio, settings, options, path="/api/tus")
        web.run_app(aio, host="127.0.0.1", port=cfg["port"], print=None, access_log=None)


if __name__ == "__main__":
    main()
