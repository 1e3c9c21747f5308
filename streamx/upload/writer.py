"""The push API: ``async with engine.open_writer(...) as w: await w.write(data)``.

For sources that push (WebSocket frames, IPC chunks, a recorder). ``write``
hands the chunk to the producer and returns once the producer has taken it,
so it blocks while the part window is full: backpressure reaches the caller.
Leaving the block normally completes the upload and sets ``writer.result``;
leaving it with an exception (or being cancelled) aborts the multipart upload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._concurrency import task_group
from .._errors import StreamxError
from .._results import UploadResult
from .source import Buffer, _as_bytes_view

if TYPE_CHECKING:
    from .pipeline import UploadPipeline


class UploadWriter:
    """Write bytes to an object being uploaded; see :meth:`streamx.Engine.open_writer`."""

    def __init__(self, send: MemoryObjectSendStream[bytes | memoryview]) -> None:
        self._send = send
        self.bytes_written = 0
        self.result: UploadResult | None = None

    async def write(self, data: Buffer) -> None:
        """Queue ``data``; waits while the upload's memory window is full."""
        view = _as_bytes_view(data)
        if not isinstance(view, bytes):
            view = bytes(view)  # the caller may reuse its buffer once write() returns
        if not view:
            return
        await self._send.send(view)
        self.bytes_written += len(view)


async def _iterate(receive: MemoryObjectReceiveStream[bytes | memoryview]) -> AsyncIterator[bytes]:
    async with receive:
        async for chunk in receive:
            yield bytes(chunk) if not isinstance(chunk, bytes) else chunk


@asynccontextmanager
async def open_writer(
    make_pipeline: Callable[[AsyncIterator[bytes]], UploadPipeline],
) -> AsyncIterator[UploadWriter]:
    send, receive = anyio.create_memory_object_stream[bytes | memoryview](0)
    pipeline = make_pipeline(_iterate(receive))
    writer = UploadWriter(send)
    outcome: list[UploadResult] = []
    failure: list[BaseException] = []

    async def run() -> None:
        try:
            outcome.append(await pipeline.run())
        except Exception as exc:
            failure.append(exc)
            tg.cancel_scope.cancel()  # stops a write() that waits; the error is raised below

    async with task_group() as tg:
        tg.start_soon(run)
        try:
            async with send:
                yield writer
        except BaseException:
            tg.cancel_scope.cancel()
            raise
    if failure:
        raise failure[0]
    if not outcome:
        raise StreamxError("the upload did not finish", bucket=pipeline.bucket, key=pipeline.key)
    writer.result = outcome[0]
