"""tus on FastAPI (Starlette): ``app.include_router(tus_router(settings), prefix="/api/tus")``.

Install with ``pip install 'streamx[fastapi]'``.
"""

from __future__ import annotations

try:
    from fastapi import APIRouter, Request
    from starlette.requests import ClientDisconnect
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "streamx.web.tus.fastapi needs FastAPI, which is not installed: "
        "pip install 'streamx[fastapi]'"
    ) from exc

from .._core import UploadSettings
from .._service import UploadService
from ._protocol import TusOptions, TusRequest
from ._service import TusService

__all__ = ["tus_router"]


def tus_router(
    settings: UploadSettings | UploadService | TusService, options: TusOptions | None = None
) -> APIRouter:
    """An ``APIRouter`` serving tus at its root (``POST /``) and ``/{upload_id}``."""
    service = settings if isinstance(settings, TusService) else TusService(settings, options)

    async def endpoint(request: Request) -> Response:
        upload = request.path_params.get("upload_id")
        path = request.url.path
        collection = path if upload is None else path.rsplit("/", 1)[0]
        tus = TusRequest(
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items()},
            upload_id=upload,
            collection=collection,
            native=request,
            body=request.stream() if request.method in ("POST", "PATCH") else None,
            disconnect=(ClientDisconnect,),
        )
        answer = await service.handle(tus)
        return Response(answer.body, status_code=answer.status, headers=answer.headers)

    router = APIRouter()
    router.add_api_route("/", endpoint, methods=["POST", "OPTIONS"], name="streamx.tus")
    router.add_api_route(
        "/{upload_id}",
        endpoint,
        methods=["HEAD", "PATCH", "DELETE", "OPTIONS", "POST"],
        name="streamx.tus_upload",
    )
    return router
