"""FastAPI (Starlette) adapter: a router for the upload routes, a streaming helper, WebSockets.

::

    from streamx.web import UploadSettings
    from streamx.web.fastapi import create_router, stream_request

    settings = UploadSettings(bucket="uploads", engine=lambda: app.state.engine,
                              authorize=my_hook, prefix=user_prefix, max_size=1 << 30)
    app.include_router(create_router(settings), prefix="/api")

    @app.put("/raw/{key:path}")                  # or use the router's /uploads/stream/{key}
    async def raw(request: Request, key: str):
        return await stream_request(request, settings, key)

Install with ``pip install 'streamx-s3[fastapi]'``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

try:
    from fastapi import APIRouter, Request, WebSocket
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, Response
    from starlette.websockets import WebSocketDisconnect
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "streamx.web.fastapi needs FastAPI, which is not installed: pip install 'streamx-s3[fastapi]'"
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
from .tus.fastapi import tus_router  # tus 1.0.0 resumable uploads (streamx.web.tus)

__all__ = ["create_router", "stream_request", "websocket_upload", "tus_router"]


def _service(settings: UploadSettings | UploadService) -> UploadService:
    return settings if isinstance(settings, UploadService) else UploadService(settings)


def _error(exc: WebError) -> JSONResponse:
    return JSONResponse(exc.payload(), status_code=exc.status)


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        raise WebError(400, "the Content-Length header is not a number of bytes")
    return int(raw)


async def stream_request(
    request: Request, settings: UploadSettings | UploadService, key: str
) -> Response:
    """Upload the request body to ``key`` as it arrives; the UploadResult as JSON.

    Bounded memory, TCP backpressure, 413 past ``max_size`` (the multipart upload
    aborted), an abort when the client disconnects; ``Content-Type`` is stored.
    """
    service = _service(settings)
    try:
        result = await service.stream_upload(
            request,
            key,
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=_content_length(request),
            disconnect=(ClientDisconnect,),
            method=request.method,
        )
    except WebError as exc:
        return _error(exc)
    except Exception as exc:
        return _error(internal_error("stream_upload", exc))
    return JSONResponse(result)


class _StarletteTransport:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.closed = False

    async def receive(self) -> str | bytes | None:
        if self.closed:
            return None
        try:
            message = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            message = {"type": "websocket.disconnect"}
        if message["type"] == "websocket.disconnect":
            self.closed = True
            return None
        data = message.get("bytes")
        return data if data is not None else message.get("text")

    async def send_json(self, payload: dict[str, Any]) -> None:
        if self.closed:
            raise SocketClosed("the socket is closed")
        try:
            await self.websocket.send_text(json.dumps(payload))
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self.closed = True
            raise SocketClosed("sending failed: the socket is closed") from exc

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.websocket.close(code, reason)
        except (RuntimeError, OSError):
            pass


async def websocket_upload(websocket: WebSocket, settings: UploadSettings | UploadService) -> None:
    """Accept ``websocket`` and run one upload session on it (see ``streamx.web._websocket``).

    A browser page from another origin than the server's own or ``allowed_origins``
    is refused before the upgrade (HTTP 403).
    """
    service = _service(settings)
    origin = websocket.headers.get("origin")
    if not origin_allowed(origin, websocket.headers.get("host"), service.settings.allowed_origins):
        log_refused_origin(origin)
        await websocket.close(code=1008, reason="origin not allowed")
        return
    await websocket.accept()
    await UploadSession(service, websocket, _StarletteTransport(websocket)).run()


def _endpoint(
    service: UploadService, handler: str, json_body: bool
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = None
            if json_body:
                length = _content_length(request)
                check_json_request(request.method, request.headers.get("content-type"), length)
                chunks = guard_body(request.stream(), service.settings.body_limits)
                body = await read_json(chunks, length)
            call = Call(request, dict(request.path_params), dict(request.query_params), body)
            return JSONResponse(await service.handle(handler, call))
        except WebError as exc:
            return _error(exc)
        except Exception as exc:
            return _error(internal_error(handler, exc))

    endpoint.__name__ = handler
    return endpoint


def create_router(
    settings: UploadSettings, *, stream: bool = True, websocket: bool = True
) -> APIRouter:
    """An ``APIRouter`` with the presigned, Uppy, streaming and WebSocket upload routes."""
    service = UploadService(settings)
    router = APIRouter()
    for route in ROUTES:
        router.add_api_route(
            route.path.replace("*}", ":path}"),
            _endpoint(service, route.handler, route.json_body),
            methods=[route.method],
            name=f"streamx.{route.handler}",
        )
    if stream:

        async def stream_upload(request: Request, key: str) -> Response:
            return await stream_request(request, service, key)

        router.add_api_route(
            STREAM_PATH.replace("*}", ":path}"),
            stream_upload,
            methods=["PUT", "POST"],  # POST only with a non-form content type (CSRF)
            name="streamx.stream_upload",
        )
    if websocket:

        async def websocket_endpoint(websocket: WebSocket) -> None:
            await websocket_upload(websocket, service)

        router.add_api_websocket_route(WEBSOCKET_PATH, websocket_endpoint, name="streamx.websocket")
    return router
