"""The streamx tus server of benchmarks/tus_bench.py: ``python tus_streamx_server.py CONFIG_JSON``.

CONFIG_JSON: {"framework": "aiohttp"|"fastapi", "port": N, "bucket": ..., "engine": {Engine
kwargs}, "part_size": N, optional "memory_limit"/"concurrency": TusOptions}. No authorization (a benchmark), tus at /api/tus/.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import streamx
from streamx.web import UploadSettings, allow_all
from streamx.web.tus import TusOptions


def main() -> None:
    cfg = json.loads(sys.argv[1])
    holder: dict[str, Any] = {}
    settings = UploadSettings(
        bucket=cfg["bucket"],
        engine=lambda: holder["engine"],
        authorize=allow_all,
        overwrite=True,  # rclone ignores If-None-Match (and @tus/server does not check either)
    )
    extra = {k: cfg[k] for k in ("memory_limit", "concurrency") if k in cfg}
    options = TusOptions(part_size=cfg["part_size"], **extra)

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
