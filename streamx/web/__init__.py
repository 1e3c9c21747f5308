"""Embedding streamx in web apps: FastAPI and aiohttp adapters over one framework-neutral core.

* ``streamx.web.fastapi`` (``pip install 'streamx-s3[fastapi]'``): ``create_router``,
  ``stream_request``, ``websocket_upload``.
* ``streamx.web.aiohttp`` (``pip install 'streamx-s3[aiohttp]'``): ``add_routes``,
  ``stream_request``, ``websocket_upload``.

Both serve the same routes, configured by one :class:`UploadSettings`: the presigned
single and multipart contract for browsers (``/uploads/...``), the Companion-compatible
routes of Uppy's ``@uppy/aws-s3`` plugin (``/s3/...``), a streaming PUT
(``/uploads/stream/{key}``) and WebSocket uploads (``/uploads/ws``).
"""

from ._core import (
    ROUTES,
    AccessRequest,
    Authorizer,
    UploadSettings,
    WebError,
    allow_all,
    check_key,
)
from ._guard import UploadTokens
from ._service import UploadService
from ._websocket import UploadSession

__all__ = [
    "ROUTES",
    "AccessRequest",
    "Authorizer",
    "UploadService",
    "UploadSession",
    "UploadSettings",
    "UploadTokens",
    "WebError",
    "allow_all",
    "check_key",
]
