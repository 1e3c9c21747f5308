"""The push API: ``async with engine.open_writer(...) as w: await w.write(data)``.

For sources that push (WebSocket frames, IPC chunks, a recorder). ``write``
hands the chunk to the producer and returns once the producer has taken it,
so it blocks while the part window is full: backpressure reaches the caller.
Leaving the block normally completes the upload and sets ``writer.result``;
leaving it with an exception (or being cancelled) aborts the multipart upload.
``await writer.suspend()`` instead keeps it and returns a
:class:`~streamx.upload.resume.ResumeToken` to continue from (see ``resume.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._concurrency import task_group
from .._errors import StreamxError, UsageError
from .._results import UploadResult
from .chunks import Buffer, as_bytes_view
from .resume import MemoryCheckpoint, ResumeToken

if TYPE_CHECKING:
    from .pipeline import UploadPipeline


class UploadWriter:
    """Write bytes to an object being uploaded; see :meth:`streamx.Engine.open_writer`."""

    def __init__(self, send: MemoryObjectSendStream[bytes | memoryview]) -> None:
        self._send = send
        self.bytes_written = 0
        self.result: UploadResult | None = None
        self.closed = False  # the async with block has been left
        self.token: ResumeToken | None = None  # set by suspend()
        self._pipeline: UploadPipeline | None = None
        self._scope: anyio.CancelScope | None = None
        self._stopped = anyio.Event()

    async def suspend(self) -> ResumeToken:
        """Stop, keep the multipart upload, and return where it stands.

        Waits for the parts already cut to be sent; the part still being filled
        is dropped: ``token.bytes_done`` counts the parts S3 acknowledged from
        part 1 without a gap; write the bytes after it again on resume. The upload is neither completed nor aborted (it costs
        storage until it is resumed or aborted). Writing after this raises.
        """
        if self.token is not None:
            return self.token
        pipeline, scope = self._pipeline, self._scope
        if pipeline is None or scope is None or self.result is not None:
            raise StreamxError("this writer is not running: nothing to suspend")
        memory = pipeline.checkpoint
        if isinstance(memory, MemoryCheckpoint):
            memory.keeps_upload = True
        # let the parts already cut reach S3 (the one being filled is dropped); the
        # uploaders signal nothing, so this polls, and only while suspending
        while (  # noqa: ASYNC110
            pipeline.upload_id is not None
            and pipeline.progress.parts_done < pipeline.producer.next_number - 1
            and not self._stopped.is_set()
        ):
            await anyio.sleep(0.01)
        scope.cancel()
        await self._stopped.wait()
        record = memory.current if memory is not None else None
        self.token = ResumeToken.of(pipeline.bucket, pipeline.key, record, pipeline.plan)
        await self._send.aclose()
        return self.token

    async def write(self, data: Buffer) -> None:
        """Queue ``data``; waits while the upload's memory window is full."""
        if self.token is not None:
            raise StreamxError("this writer was suspended; resume it with open_writer(resume=)")
        if self.closed:
            state = "completed" if self.result is not None else "ended"
            raise UsageError(
                f"write() after the 'async with engine.open_writer(...)' block: the upload has "
                f"{state}; write every chunk inside the block (open a new writer for a new object)"
            )
        view = as_bytes_view(data)
        if not isinstance(view, bytes):
            view = bytes(view)  # the caller may reuse its buffer once write() returns
        if not view:
            return
        try:
            await self._send.send(view)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # the upload failed and stopped reading; it cancels this block and its own
            # error is raised when the block ends: wait here for that cancellation
            await anyio.sleep(60)
            raise StreamxError("the upload stopped reading the writer") from None
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
    # closed on every way out, also when make_pipeline refuses its arguments (a bad resume
    # token) or the pipeline fails before it reads: else the streams are left to the GC
    with send, receive:
        pipeline = make_pipeline(_iterate(receive))
        writer = UploadWriter(send)
        writer._pipeline = pipeline
        outcome: list[UploadResult] = []
        failure: list[BaseException] = []

        async def run() -> None:
            try:
                with anyio.CancelScope() as writer._scope:
                    outcome.append(await pipeline.run())
            except Exception as exc:
                failure.append(exc)
                tg.cancel_scope.cancel()  # stops a write() that waits; the error is raised below
            finally:
                writer._stopped.set()

        async with task_group() as tg:
            tg.start_soon(run)
            try:
                async with send:
                    yield writer
            except BaseException:
                writer.closed = True
                tg.cancel_scope.cancel()
                raise
            finally:
                writer.closed = True
        if failure:
            raise failure[0]
    if writer.token is not None:
        return  # suspended: the upload is kept, not completed
    if not outcome:
        raise StreamxError("the upload did not finish", bucket=pipeline.bucket, key=pipeline.key)
    writer.result = outcome[0]


_HOW = (
    "open_writer() returns an async context manager: write inside "
    "'async with engine.open_writer(bucket, key) as writer: await writer.write(data)'"
)


class WriterContext:
    """What :meth:`streamx.Engine.open_writer` returns: ``async with`` it to get the writer.

    Used any other way (``await``, or ``.write`` on it directly) it raises
    :class:`~streamx.UsageError` saying how to use it.
    """

    def __init__(self, context: AbstractAsyncContextManager[UploadWriter]) -> None:
        self._context = context

    async def __aenter__(self) -> UploadWriter:
        return await self._context.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._context.__aexit__(exc_type, exc, tb)

    def __await__(self) -> Generator[Any, None, NoReturn]:
        raise UsageError(f"'await engine.open_writer(...)' does not open a writer; {_HOW}")

    async def write(self, data: Buffer) -> None:
        raise UsageError(f"write() on open_writer()'s result outside 'async with'; {_HOW}")
