"""tus on aiohttp: ``add_tus_routes(app, settings, path="/tus")``.

Install with ``pip install 'streamx[aiohttp]'``.
"""

from __future__ import annotations

try:
    from aiohttp import web
    from aiohttp.http_exceptions import HttpProcessingError
except ImportError as exc:  # pragma: no cover - aiohttp is a dependency of aiobotocore
    raise ImportError(
        "streamx.web.tus.aiohttp needs aiohttp, which is not installed: "
        "pip install 'streamx[aiohttp]'"
    ) from exc

from ..._errors import ConfigError
from .._core import UploadSettings
from .._service import UploadService
from ._protocol import TusOptions, TusRequest
from ._service import TusService

__all__ = ["add_tus_routes"]

READ_CHUNK = 64 * 1024  # bytes per read of a PATCH body (256 KiB: +8 MiB RSS at 32 PATCHes)


def add_tus_routes(
    app: web.Application,
    settings: UploadSettings | UploadService | TusService,
    options: TusOptions | None = None,
    *,
    path: str = "/tus",
) -> TusService:
    """Serve tus at ``path/`` (creation) and ``path/{upload_id}`` on ``app``."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"path must be a URL path such as '/tus', not {path!r}")
    service = settings if isinstance(settings, TusService) else TusService(settings, options)
    base = path.rstrip("/")

    async def endpoint(request: web.Request) -> web.StreamResponse:
        upload = request.match_info.get("upload_id")
        collection = request.path if upload is None else request.path.rsplit("/", 1)[0]
        has_body = request.method in ("POST", "PATCH")
        tus = TusRequest(
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items()},
            upload_id=upload,
            collection=collection,
            native=request,
            body=request.content.iter_chunked(READ_CHUNK) if has_body else None,
            disconnect=(ConnectionError, HttpProcessingError),
        )
        answer = await service.handle(tus)
        return web.Response(body=answer.body, status=answer.status, headers=answer.headers)

    for method in ("POST", "OPTIONS"):
        app.router.add_route(method, base + "/", endpoint)
    for method in ("HEAD", "PATCH", "DELETE", "OPTIONS", "POST"):
        app.router.add_route(method, base + "/{upload_id}", endpoint)
    return service
