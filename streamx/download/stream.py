"""The single streamed GET behind ``engine.download()``: an async iterator of chunks.

Constant memory whatever the size, time to first byte one request. A
dropped connection is resumed from the next missing byte, pinned to the
ETag first seen. A stream that reads the whole object is checked against the
stored full-object checksum as its bytes pass (see :mod:`.verify`): the
check runs after the last chunk, so a mismatch raises
:class:`~streamx.ChecksumError` in place of the end of the iteration.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import anyio

from .._checksum import Running
from .._context import TransferContext
from .._errors import ConfigError, InvalidRangeError, NetworkError, S3Error, StreamxError
from .._log import log
from .._objects import ObjectInfo
from .._s3 import map_errors
from .planner import ByteRange, RangeSpec, header_for, resolve
from .response import changed, parse_content_range, translate_get
from .verify import StoredChecksum, check, stored_checksum, unverified

_READ = 1024 * 1024  # most bytes asked of the HTTP stack per read


def check_chunk_size(chunk_size: object) -> None:
    """``chunk_size=`` of ``Engine.download``: a positive int or ``None``."""
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ConfigError(f"chunk_size must be a positive int or None, not {chunk_size!r}")


class DownloadStream:
    """One streamed GET: an async iterator of chunks and an async context manager.

    The connection is released when the block is left, when the iteration
    ends or is broken off, or when the stream is garbage collected. A dropped
    connection is resumed from the next missing byte (pinned to the ETag).

    Unless the engine's ``TransferConfig.checksum`` is ``"off"``, a stream that reads the whole object is checked against the
    stored full-object checksum: a ``HeadObject(ChecksumMode=ENABLED)`` runs
    alongside the GET (unless the GET itself carries a trusted value, as
    rclone's do), the checksum is updated as chunks pass, and after the last
    chunk a mismatch raises :class:`~streamx.ChecksumError` instead of ending
    the iteration. ``checksum`` then holds the verified value (base64), or
    stays ``None`` when there was nothing to check against. A partial range
    has nothing to be checked against and is not verified.
    """

    def __init__(
        self,
        ctx: TransferContext,
        bucket: str,
        key: str,
        spec: RangeSpec | None,
        *,
        chunk_size: int | None,
    ) -> None:
        self._s3 = ctx.s3
        self.bucket = bucket
        self.key = key
        self._spec = spec
        self._chunk_size = chunk_size
        self._retry = ctx.retry
        self._stack: AsyncExitStack | None = None
        self._body: Any = None
        self._opened = False
        self._closed = False
        self.etag: str | None = None
        self.size: int | None = None  # the whole object's size
        self.range: ByteRange | None = None  # the bytes this stream delivers
        self.info: ObjectInfo | None = None
        self.position = 0  # absolute offset of the next byte
        # verification (see download/verify.py): whole-object reads only
        self._verify = ctx.config.checksum != "off"
        self._first: dict[str, Any] | None = None  # the first GET's headers
        self._head: dict[str, Any] | None = None  # HeadObject(ChecksumMode=ENABLED), if sent
        self._head_error: str | None = None
        self._running: Running | None = None
        self._expected: StoredChecksum | None = None
        #: the object's verified full-object checksum (base64) once the last chunk is read
        self.checksum: str | None = None

    # -- context manager and iteration -------------------------------------------------

    async def __aenter__(self) -> DownloadStream:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> DownloadStream:
        return self

    async def __anext__(self) -> bytes:
        if not self._opened:
            await self.open()
        if self._closed:
            raise StopAsyncIteration
        assert self.range is not None
        if self.position >= self.range.end:
            await self.aclose()
            self._check_whole()
            raise StopAsyncIteration
        try:
            if self._chunk_size is None:
                return await self._read(_READ)
            out = bytearray()
            while len(out) < self._chunk_size and self.position < self.range.end:
                out += await self._read(self._chunk_size - len(out))
            return bytes(out)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        self._closed = True
        stack, self._stack, self._body = self._stack, None, None
        if stack is not None:
            with anyio.CancelScope(shield=True):
                await stack.aclose()

    def __del__(self) -> None:
        body = self._body
        if body is not None:  # broken off without aclose(): drop the connection now
            try:
                body.close()
            except Exception:  # pragma: no cover - best effort at collection time
                pass

    async def read_all(self) -> bytes:
        """Everything the stream has left, in memory (for small objects and ranges)."""
        out = bytearray()
        async for chunk in self:
            out += chunk
        return bytes(out)

    # -- requests ----------------------------------------------------------------------

    async def open(self) -> None:
        """Send the GET (after a HEAD if the range needs the size); check the range.

        For the whole object (with verification on) a
        ``HeadObject(ChecksumMode=ENABLED)`` runs alongside the GET, so the
        stored checksum is known before the first byte without delaying it.
        """
        if self._opened:
            return
        self._opened = True
        try:
            if self._verify and self._spec is None:
                failed: list[BaseException] = []

                async def get() -> None:
                    try:
                        await self._retry.call(self._open_first)
                    except Exception as exc:  # raised below, not as an ExceptionGroup
                        failed.append(exc)
                        tg.cancel_scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._probe)
                    tg.start_soon(get)
                if failed:
                    raise failed[0]
            else:
                await self._retry.call(self._open_first)
            await self._prepare_check()
        except BaseException:
            await self.aclose()
            raise

    async def _probe(self) -> None:
        async def head() -> dict[str, Any]:
            return await self._s3.head_object(self.bucket, self.key, ChecksumMode="ENABLED")

        try:
            self._head = await self._retry.call(head)
        except StreamxError as exc:  # the GET reports real failures; this only loses the check
            self._head_error = f"HeadObject failed: {exc.message}"

    async def _prepare_check(self) -> None:
        """Find the stored checksum if this stream reads the whole object."""
        if not self._verify or self.range is None or self.size is None:
            return
        if self.range != ByteRange(0, self.size):
            return  # part of the object: nothing to check it against
        expected, reason = (None, "")
        if self._first is not None:
            expected, reason = stored_checksum(self._first)
        if expected is None and self._head is None and self._head_error is None:
            await self._probe()  # a range that turned out to be the whole object
        if expected is None and self._head is not None:
            if self._head.get("ETag") != self.etag:
                reason = "the object was replaced while its checksum was asked for"
            else:
                expected, reason = stored_checksum(self._head)
        if expected is None:
            unverified(self.bucket, self.key, self._head_error or reason)
            return
        self._expected = expected
        self._running = Running(expected.algorithm)

    def _check_whole(self) -> None:
        """After the last byte: the running checksum against the stored one (once)."""
        running, self._running = self._running, None
        if running is None or self._expected is None:
            return
        check(
            self._expected, running.result(), bucket=self.bucket, key=self.key, what="object read"
        )
        self.checksum = self._expected.value

    async def _open_first(self) -> None:
        params: dict[str, Any] = {}
        spec = self._spec
        if spec is not None:
            header = header_for(spec)
            if header is None:  # needs the size: (10, -10), (5, 5) and the like
                head = await self._s3.head_object(self.bucket, self.key)
                r = self._from_head(head, spec)
                if r.size == 0:
                    return
                if self.etag is not None:
                    params["IfMatch"] = self.etag
                header = r.header()
            params["Range"] = header
        try:
            response = await self._get(params)
        except S3Error as exc:
            if spec is None or not (exc.code == "InvalidRange" or exc.status == 416):
                raise
            # nothing to send: (10, None) of a 10-byte object is empty, (20, 30) is an error
            head = await self._s3.head_object(self.bucket, self.key)
            if self._from_head(head, spec).size:
                raise  # a satisfiable range refused: let the server's error speak
            return
        self.etag = response.get("ETag")
        sent, total = parse_content_range(response)
        length = int(response.get("ContentLength", 0))
        if sent is None:
            sent, total = ByteRange(0, length), length
        self.size = total
        if spec is not None and total is not None:
            try:
                wanted = resolve(spec, total)
            except InvalidRangeError as exc:
                await self.aclose()
                raise exc.add_context(bucket=self.bucket, key=self.key) from None
            if wanted != sent:
                await self.aclose()
                raise StreamxError(
                    f"asked for bytes {wanted} but the server sent {sent}",
                    bucket=self.bucket,
                    key=self.key,
                )
        self.range = sent
        self.position = sent.start
        self._first = {k: v for k, v in response.items() if k != "Body"}
        info = dict(response)
        info["ContentLength"] = total
        self.info = ObjectInfo.from_head(self.key, info)

    def _from_head(self, head: Mapping[str, Any], spec: RangeSpec) -> ByteRange:
        """Resolve ``spec`` against a HEAD's size (``ValueError`` if it is outside)."""
        self.size = int(head.get("ContentLength", 0))
        self.etag = head.get("ETag")
        self.info = ObjectInfo.from_head(self.key, head)
        try:
            r = resolve(spec, self.size)
        except InvalidRangeError as exc:
            raise exc.add_context(bucket=self.bucket, key=self.key) from None
        self.range = r
        self.position = r.start
        return r

    async def _get(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = AsyncExitStack()
        response: dict[str, Any] = await self._stack.enter_async_context(
            self._s3.get_object(self.bucket, self.key, **params)
        )
        self._body = response["Body"]
        return response

    async def _resume(self) -> None:
        assert self.range is not None
        remaining = ByteRange(self.position, self.range.end)
        params: dict[str, Any] = {"Range": remaining.header()}
        if self.etag is not None:
            params["IfMatch"] = self.etag
        try:
            response = await self._get(params)
        except S3Error as exc:
            raise translate_get(exc, self.bucket, self.key, self.etag) from exc
        seen = response.get("ETag")
        if self.etag is not None and seen != self.etag:
            raise changed(self.bucket, self.key, self.etag, seen)
        sent, _ = parse_content_range(response)
        if sent is None and remaining.start == 0:
            sent = ByteRange(0, int(response.get("ContentLength", 0)))
        if sent != remaining:
            raise StreamxError(
                f"asked for bytes {remaining} but the server sent {sent}",
                bucket=self.bucket,
                key=self.key,
            )

    async def _read(self, n: int) -> bytes:
        """Up to ``n`` bytes, resuming the GET after a retryable failure."""
        assert self.range is not None
        wanted = self.range

        async def attempt() -> bytes:
            if self._body is None:
                await self._resume()
            with map_errors("GetObject", bucket=self.bucket, key=self.key):
                chunk: bytes = await self._body.read(min(n, wanted.end - self.position))
            if not chunk:
                raise NetworkError(
                    f"the connection ended at byte {self.position} of {wanted}",
                    bucket=self.bucket,
                    key=self.key,
                )
            self.position += len(chunk)
            if self._running is not None:
                self._running.update(chunk)
            return chunk

        async def on_retry(attempt_no: int, exc: BaseException) -> None:
            log.warning(
                "download.stream.resume",
                bucket=self.bucket,
                key=self.key,
                resume_at=self.position,
                attempt=attempt_no,
                error=type(exc).__name__,
            )
            if self._stack is not None:  # the next attempt resumes with a new GET
                stack, self._stack, self._body = self._stack, None, None
                await stack.aclose()

        return await self._retry.call(attempt, on_retry=on_retry)
