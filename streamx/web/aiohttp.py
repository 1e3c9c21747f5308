"""aiohttp adapter: the upload routes on an Application (or subapp), a streaming helper, WebSockets.

::

    from streamx.web import UploadSettings
    from streamx.web.aiohttp import add_routes, stream_request

    settings = UploadSettings(bucket="uploads", engine=lambda: app["engine"], authorize=hook)
    api = web.Application()
    add_routes(api, settings)
    app.add_subapp("/api", api)

    async def raw(request):                        # or the /uploads/stream/{key} route
        return await stream_request(request, settings, request.match_info["key"])

Install with ``pip install 'streamx-s3[aiohttp]'``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

try:
    from aiohttp import WSMsgType, web
    from aiohttp.http_exceptions import HttpProcessingError
except ImportError as exc:  # pragma: no cover - aiohttp is a dependency of aiobotocore
    raise ImportError(
        "streamx.web.aiohttp needs aiohttp, which is not installed: pip install 'streamx-s3[aiohttp]'"
    ) from exc

from ._core import (
    ROUTES,
    STREAM_PATH,
    WEBSOCKET_PATH,
    Call,
    UploadSettings,
    WebError,
    read_json,
)
from ._guard import (
    check_json_request,
    guard_body,
    internal_error,
    log_refused_origin,
    origin_allowed,
)
from ._service import UploadService
from ._websocket import SocketClosed, UploadSession
from .tus.aiohttp import add_tus_routes  # tus 1.0.0 resumable uploads (streamx.web.tus)

__all__ = ["add_routes", "stream_request", "websocket_upload", "add_tus_routes"]

READ_CHUNK = 256 * 1024  # bytes per read of the request body
WEBSOCKET_MAX_MESSAGE = 16 * 1024 * 1024  # aiohttp's default (4 MiB) is small for upload frames

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _service(settings: UploadSettings | UploadService) -> UploadService:
    return settings if isinstance(settings, UploadService) else UploadService(settings)


def _error(exc: WebError) -> web.Response:
    return web.json_response(exc.payload(), status=exc.status)


async def stream_request(
    request: web.Request, settings: UploadSettings | UploadService, key: str
) -> web.Response:
    """Upload the request body to ``key`` as it arrives; the UploadResult as JSON.

    ``request.content`` pauses the socket when its buffer is full, so while S3 is
    slower than the client TCP pushes back. 413 past ``max_size`` (the multipart
    upload aborted); a client that disconnects makes the read fail, which aborts too.
    """
    service = _service(settings)
    try:
        result = await service.stream_upload(
            request,
            key,
            request.content.iter_chunked(READ_CHUNK),
            content_type=request.headers.get("Content-Type"),
            content_length=request.content_length,
            disconnect=(ConnectionError, HttpProcessingError),
            method=request.method,
        )
    except WebError as exc:
        return _error(exc)
    except Exception as exc:
        return _error(internal_error("stream_upload", exc))
    return web.json_response(result)


class _AiohttpTransport:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def receive(self) -> str | bytes | None:
        if self.ws.closed:
            return None
        message = await self.ws.receive()
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            data: str | bytes = message.data
            return data
        return None  # CLOSE, CLOSING, CLOSED, ERROR

    async def send_json(self, payload: dict[str, Any]) -> None:
        if self.ws.closed:
            raise SocketClosed("the socket is closed")
        try:
            await self.ws.send_json(payload)
        except (ConnectionError, RuntimeError) as exc:
            raise SocketClosed("sending failed: the socket is closed") from exc

    async def close(self, code: int, reason: str = "") -> None:
        if not self.ws.closed:
            try:
                await self.ws.close(code=code, message=reason.encode())
            except (ConnectionError, RuntimeError):
                pass


async def websocket_upload(
    request: web.Request, settings: UploadSettings | UploadService
) -> web.StreamResponse:
    """Run one WebSocket upload session (see ``streamx.web._websocket``).

    A browser page from another origin than the server's own or ``allowed_origins``
    is refused before the upgrade (HTTP 403).
    """
    service = _service(settings)
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.host, service.settings.allowed_origins):
        log_refused_origin(origin)
        error = WebError(403, "WebSocket uploads from this origin are not allowed", "bad_origin")
        return _error(error)
    ws = web.WebSocketResponse(max_msg_size=WEBSOCKET_MAX_MESSAGE)
    await ws.prepare(request)
    await UploadSession(service, request, _AiohttpTransport(ws)).run()
    return ws


def _handler(service: UploadService, handler: str, json_body: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = None
            if json_body:
                length = request.content_length
                check_json_request(request.method, request.headers.get("Content-Type"), length)
                chunks = request.content.iter_chunked(READ_CHUNK)
                body = await read_json(guard_body(chunks, service.settings.body_limits), length)
            call = Call(request, dict(request.match_info), dict(request.query), body)
            return web.json_response(await service.handle(handler, call))
        except WebError as exc:
            return _error(exc)
        except Exception as exc:
            return _error(internal_error(handler, exc))

    return handle


def add_routes(
    app: web.Application, settings: UploadSettings, *, stream: bool = True, websocket: bool = True
) -> UploadService:
    """Add the presigned, Uppy, streaming and WebSocket upload routes to ``app``."""
    service = UploadService(settings)
    for route in ROUTES:
        path = route.path.replace("*}", ":.+}")
        app.router.add_route(route.method, path, _handler(service, route.handler, route.json_body))
    if stream:

        async def stream_upload(request: web.Request) -> web.StreamResponse:
            return await stream_request(request, service, request.match_info["key"])

        path = STREAM_PATH.replace("*}", ":.+}")
        app.router.add_route("PUT", path, stream_upload)
        app.router.add_route("POST", path, stream_upload)  # only with a non-form content type
    if websocket:

        async def websocket_endpoint(request: web.Request) -> web.StreamResponse:
            return await websocket_upload(request, service)

        app.router.add_get(WEBSOCKET_PATH, websocket_endpoint)
    return service
