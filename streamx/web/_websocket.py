"""WebSocket uploads: JSON control messages around binary frames, fed into ``Engine.upload``.

The protocol (every JSON message has a ``type``)::

    client                                         server
    {"type": "open", "key": ..., "content_type": ..., "size": N?}
                                                   {"type": "ready", "key": ..., "max_size": ...}
    <binary frame>                                 {"type": "ack", "seq": 1, "bytes_received": ...}
    <binary frame> ...                             {"type": "progress", "bytes_done": ..., ...}
    {"type": "close"}                              {"type": "complete", "result": {UploadResult}}
                                                   close 1000
    {"type": "abort"}                              {"type": "aborted"}, close 1000

Backpressure: a frame is acknowledged once the part being filled has taken it, and
the server reads no further frame before that, so a client that keeps a bounded
window of unacknowledged frames (say 4 MiB) is slowed down to S3's pace; one that
does not is slowed by TCP. A refusal sends ``{"type": "error", "status": ...,
"error": ..., "code": ...}`` and closes with code 4000 + status (4413, 4403 ...).
A socket that drops, stays silent longer than ``websocket_idle_timeout``, or sends
slower than ``body_min_rate`` (after ``body_rate_grace``) aborts the multipart upload:
nothing is left behind. Unless ``overwrite`` is allowed, a key that is taken is refused
before ``ready`` (4409), and the store's own check at the write decides in the end
(``streamx.web._overwrite``). Parts grow with the frames that arrived, as on the stream
route (``streamx.web._stream``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Protocol

import anyio

from .._errors import StreamxError
from .._events import ProgressEvent
from .._log import log
from ..upload.chunks import ArrivingSource
from ._core import (
    WebError,
    check_content_type,
    check_size,
    find_cause,
    parse_json,
    web_error_for,
)
from ._guard import guard_body
from ._overwrite import EITHER, refuse_taken_key
from ._service import UploadService


class SocketClosed(Exception):
    """The peer is gone: a send failed or the socket closed."""


class Transport(Protocol):
    """What a framework's WebSocket must offer the session."""

    async def receive(self) -> str | bytes | None:
        """The next text or binary message; ``None`` once the socket is closed."""

    async def send_json(self, payload: dict[str, Any]) -> None:
        """Send one JSON text message; raise :class:`SocketClosed` if the peer is gone."""

    async def close(self, code: int, reason: str = "") -> None:
        """Close the socket (never raises)."""


class _ClientAborted(Exception):
    pass


class UploadSession:
    """One WebSocket upload; :meth:`run` returns when the socket may be released."""

    def __init__(self, service: UploadService, request: Any, transport: Transport) -> None:
        self.service = service
        self.request = request
        self.transport = transport
        self.idle = service.settings.websocket_idle_timeout
        self.received = 0
        self.seq = 0
        self._send_lock = anyio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.transport.send_json(payload)

    async def receive(self) -> str | bytes | None:
        with anyio.move_on_after(self.idle):
            return await self.transport.receive()
        raise WebError(408, f"no message for {self.idle:g} s; the upload was aborted", "idle")

    async def run(self) -> None:
        key: str | None = None
        try:
            key, content_type, size = await self._open()
            conditions = await refuse_taken_key(self.service, key, EITHER)  # before "ready"
            await self._upload(key, content_type, size, conditions)
        except WebError as exc:
            log.info("web.ws.refused", key=key, status=exc.status, code=exc.code)
            await self._refuse(exc)
        except (SocketClosed, _ClientAborted) as exc:
            log.warning(
                "web.ws.aborted", key=key, reason=type(exc).__name__, received=self.received
            )
            if isinstance(exc, _ClientAborted):
                await self._try_send({"type": "aborted"})
            await self.transport.close(1000)
        except StreamxError as exc:
            refusal = find_cause(exc, WebError)  # a refusal raised while reading frames
            if isinstance(refusal, WebError):
                log.info("web.ws.refused", key=key, status=refusal.status, code=refusal.code)
                await self._refuse(refusal)
                return
            if find_cause(exc, _ClientAborted) is not None:
                log.warning(
                    "web.ws.aborted", key=key, reason="_ClientAborted", received=self.received
                )
                await self._try_send({"type": "aborted"})
                await self.transport.close(1000)
                return
            closed = find_cause(exc, SocketClosed)
            if closed is not None:
                log.warning(
                    "web.ws.aborted", key=key, reason="SocketClosed", received=self.received
                )
                await self.transport.close(1000)
                return
            error = web_error_for(exc)
            log.warning("web.ws.failed", key=key, error=type(exc).__name__, status=error.status)
            await self._refuse(error)

    async def _try_send(self, payload: dict[str, Any]) -> None:
        try:
            await self.send(payload)
        except SocketClosed:
            pass

    async def _refuse(self, error: WebError) -> None:
        await self._try_send({"type": "error", "status": error.status, **error.payload()})
        await self.transport.close(4000 + error.status, error.code)

    async def _open(self) -> tuple[str, str, int | None]:
        message = await self.receive()
        if message is None:
            raise SocketClosed("closed before the open message")
        if not isinstance(message, str):
            raise WebError(400, 'the first message must be JSON: {"type": "open", "key": ...}')
        opening = _parse(message)
        if opening.get("type") != "open":
            raise WebError(400, 'the first message must be {"type": "open", "key": ...}')
        key = await self.service.authorize(self.request, "upload", opening.get("key"))
        content_type = check_content_type(opening.get("content_type"))
        size = check_size(opening.get("size"), self.service.max_size)
        return key, content_type, size

    async def _upload(
        self, key: str, content_type: str, size: int | None, conditions: dict[str, Any]
    ) -> None:
        service = self.service

        async def progress(event: ProgressEvent) -> None:
            if not event.final:  # the final word is the "complete" message
                await self.send(
                    {
                        "type": "progress",
                        "bytes_done": event.bytes_done,
                        "total": size,
                        "parts_done": event.parts_done,
                    }
                )

        limits = dataclasses.replace(
            service.settings.body_limits, read_timeout=service.settings.websocket_idle_timeout
        )
        frames = guard_body(self._frames(key, size), limits)
        result = await service.engine.upload(
            service.bucket,
            key,
            ArrivingSource(frames),
            config=service.settings.transfer_config,
            on_progress=progress,
            size=size,
            ContentType=content_type,
            **conditions,
        )
        log.info("web.ws.complete", key=key, size=result.size)
        await self._try_send({"type": "complete", "result": dataclasses.asdict(result)})
        await self.transport.close(1000)

    async def _frames(self, key: str, size: int | None) -> AsyncIterator[bytes]:
        """The binary frames, as the upload takes them: a frame is acknowledged once the
        part being filled has taken it (the code after ``yield`` runs on the next read)."""
        await self.send({"type": "ready", "key": key, "max_size": self.service.max_size})
        while True:
            message = await self.receive()
            if message is None:
                raise SocketClosed("the socket closed before the closing message")
            if isinstance(message, bytes | bytearray):
                self.received += len(message)
                if self.received > self.service.max_size:
                    raise WebError(
                        413,
                        f"the upload is over this server's limit of {self.service.max_size} bytes",
                    )
                yield bytes(message)
                self.seq += 1
                await self.send({"type": "ack", "seq": self.seq, "bytes_received": self.received})
                continue
            kind = _parse(message).get("type")
            if kind == "abort":
                raise _ClientAborted()
            if kind != "close":
                raise WebError(400, f'unknown message type {kind!r}; send "close" or "abort"')
            if size is not None and self.received != size:
                raise WebError(400, f"the upload announced {size} bytes but sent {self.received}")
            return


def _parse(text: str) -> dict[str, Any]:
    message = parse_json(text)
    if not isinstance(message, dict):
        raise WebError(400, "a text message must be a JSON object with a 'type'")
    return message
