"""The stream route: a request body uploaded to S3 as it arrives, bounded in memory and in time.

Memory: the body feeds ``Engine.upload`` through an :class:`~streamx.upload.source.ArrivingSource`,
so a part's buffer grows with the bytes that arrived and takes its share of the memory budget
(the engine's shared one included) step by step, not a whole part up front; nothing is read
ahead of the part window: while S3 is slower than the client the body is not read, the
server's receive buffer fills and TCP stops the client.

Time: :func:`~streamx.web._guard.guard_body` ends a body that stays silent longer than
``body_read_timeout`` or averages less than ``body_min_rate`` (after ``body_rate_grace``), so
a slow client releases what it holds and never blocks a fast one for long.

Cross-site writes: only PUT, or a POST with a content type no cross-site form can send.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from .._errors import SourceError, StreamxError
from .._limits import format_size
from .._log import log
from ..upload.chunks import ArrivingSource
from ._base import ServiceBase
from ._core import WebError, check_content_type, check_size, find_cause, web_error_for
from ._guard import guard_body, stream_method_allowed
from ._overwrite import EITHER, refuse_taken_key


class _BodyTooLarge(WebError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is over this server's {format_size(limit)} limit")


async def stream_upload(
    service: ServiceBase,
    request: Any,
    key: object,
    chunks: AsyncIterable[bytes],
    *,
    content_type: str | None,
    content_length: int | None,
    disconnect: tuple[type[BaseException], ...] = (),
    method: str = "PUT",
) -> dict[str, Any]:
    """Upload a request body as it arrives; the UploadResult as a JSON-ready dict.

    Past ``max_size`` (or a Content-Length over it) the answer is 413; a client that is
    too slow gets 408, one that disconnects (one of ``disconnect``, or a failed read)
    499; each time the multipart upload is aborted. Unless ``overwrite`` is allowed, a
    taken key is 409 (see ``streamx.web._overwrite``).
    """
    if not stream_method_allowed(method, content_type):
        raise WebError(
            405,
            "send the body with PUT (a POST needs a Content-Type such as "
            "application/octet-stream: a cross-site form cannot send one)",
        )
    checked = await service.authorize(request, "upload", key)
    kind = check_content_type(content_type)
    check_size(content_length, service.max_size)
    limit = service.max_size

    async def limited() -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in guard_body(chunks, service.settings.body_limits):
            seen += len(chunk)
            if seen > limit:
                raise _BodyTooLarge(limit)
            yield chunk

    try:
        conditions = await refuse_taken_key(service, checked, EITHER)  # before the body is read
        result = await service.engine.upload(
            service.bucket,
            checked,
            ArrivingSource(limited()),
            config=service.settings.transfer_config,
            size=content_length,
            ContentType=kind,
            **conditions,
        )
    except StreamxError as exc:
        refusal = find_cause(exc, WebError)  # over the size limit, or too slow
        if isinstance(refusal, WebError):
            log.info("web.stream.refused", key=checked, status=refusal.status, code=refusal.code)
            raise WebError(refusal.status, refusal.message, refusal.code) from exc
        if isinstance(exc, SourceError):
            gone = find_cause(exc, disconnect) if disconnect else None
            log.warning("web.stream.client_failed", key=checked, error=type(exc.__cause__).__name__)
            if gone is not None:
                raise WebError(499, "the client disconnected; the upload was aborted") from exc
            raise WebError(400, "reading the request body failed; the upload was aborted") from exc
        raise web_error_for(exc) from exc
    return dataclasses.asdict(result)
