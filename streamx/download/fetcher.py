"""The fetchers: one ranged GET at a time, resumed where it broke, pinned to one ETag.

A connection that drops halfway through a range is retried for the bytes
still missing, not the whole range (and never the whole object). Every
request after the first carries ``If-Match`` with the ETag seen first, and
every response's ETag is compared with it too (rclone ignores ``If-Match``),
so an object replaced mid-download raises :class:`~streamx.ObjectChangedError`
instead of mixing two versions.

Servers may answer a ranged GET with 206 (AWS, moto) or with 200 and the
right bytes (rclone): both are accepted, as long as ``Content-Range`` and the
length say the bytes are the ones asked for.

:class:`DownloadStream` is the single streamed GET behind
``engine.download()``; :class:`RangeFetcher` fills buffers for the parallel
pipeline and ``get_ranges``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import anyio
import structlog

from .._errors import NetworkError, ObjectChangedError, S3Error, StreamxError
from .._objects import ObjectInfo
from .._retry import RetryPolicy, is_retryable
from .._s3 import S3, map_errors
from .planner import ByteRange, RangeSpec, header_for, resolve

log = structlog.get_logger("streamx")

_READ = 1024 * 1024  # most bytes asked of the HTTP stack per read
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def parse_content_range(response: Mapping[str, Any]) -> tuple[ByteRange | None, int | None]:
    """``(range sent, object size)`` from a GET response; ``(None, None)`` if it has none."""
    text = response.get("ContentRange")
    if not text:
        return None, None
    m = _CONTENT_RANGE.fullmatch(str(text).strip())
    if m is None:
        return None, None
    total = None if m.group(3) == "*" else int(m.group(3))
    return ByteRange(int(m.group(1)), int(m.group(2)) + 1), total


def _changed(bucket: str, key: str, pinned: str, seen: str | None) -> ObjectChangedError:
    return ObjectChangedError(
        f"the object was replaced during the download (ETag {pinned} became {seen}); "
        "download it again to get one consistent version",
        bucket=bucket,
        key=key,
    )


def _translate_get(exc: S3Error, bucket: str, key: str, etag: str | None) -> StreamxError:
    """412 on a pinned request and 416 mean the object changed under us."""
    if etag is not None and (exc.code == "PreconditionFailed" or exc.status == 412):
        return _changed(bucket, key, etag, "something else")
    if etag is not None and (exc.code == "InvalidRange" or exc.status == 416):
        return _changed(bucket, key, etag, "a shorter object")
    return exc


class RangeFetcher:
    """Fetches byte ranges of one object version into buffers."""

    def __init__(
        self,
        s3: S3,
        bucket: str,
        key: str,
        *,
        retry: RetryPolicy,
        part_timeout: float | None,
        etag: str | None = None,
        on_retry_bytes: Any = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.retry = retry
        self.part_timeout = part_timeout
        self.etag = etag
        self.size: int | None = None
        self.requests = 0
        self.retried_bytes = 0
        self.first_response: dict[str, Any] | None = None
        self.log = log.bind(bucket=bucket, key=key)

    def _check(self, response: Mapping[str, Any], asked: ByteRange) -> None:
        seen = response.get("ETag")
        if self.etag is not None and seen is not None and seen != self.etag:
            raise _changed(self.bucket, self.key, self.etag, seen)
        sent, total = parse_content_range(response)
        length = int(response.get("ContentLength", -1))
        if sent is None:
            # a 200 with the whole object: fine only if that is what we asked for
            sent = ByteRange(0, length) if length >= 0 else None
            total = length
        if total is not None and self.size is not None and total != self.size:
            raise _changed(self.bucket, self.key, self.etag or "?", f"size {total}")
        if (
            sent is None
            or sent.start != asked.start
            or sent.end != asked.end
            or length != asked.size
        ):
            raise StreamxError(
                f"asked for bytes {asked} but the server sent {sent} ({length} bytes)",
                bucket=self.bucket,
                key=self.key,
            )

    async def fetch(self, r: ByteRange) -> bytearray:
        """The bytes of ``r``, resuming after a dropped connection where it stopped."""
        buf = bytearray(r.size)
        cursor = [0]

        async def attempt() -> None:
            if cursor[0] >= r.size:
                return
            remaining = ByteRange(r.start + cursor[0], r.end)
            params: dict[str, Any] = {"Range": remaining.header()}
            if self.etag is not None:
                params["IfMatch"] = self.etag
            self.requests += 1
            try:
                async with self.s3.get_object(self.bucket, self.key, **params) as response:
                    self._check(response, remaining)
                    await self._read_into(response["Body"], buf, cursor)
            except S3Error as exc:
                raise _translate_get(exc, self.bucket, self.key, self.etag) from exc

        await self._with_retry(attempt, r, lambda: cursor[0])
        return buf

    async def fetch_first(self, n: int) -> bytearray:
        """The first ``n`` bytes (fewer if the object is shorter); learns size and ETag.

        One request instead of a HEAD and a GET. An empty object has no byte 0
        to ask for (416): a HEAD then confirms that it is empty.
        """
        buf = bytearray()
        cursor = [0]

        async def attempt() -> None:
            nonlocal buf
            got = cursor[0]
            if self.size is not None and got >= len(buf):
                return
            params: dict[str, Any] = {
                "Range": f"bytes=0-{n - 1}" if self.size is None else f"bytes={got}-{len(buf) - 1}"
            }
            if self.etag is not None:
                params["IfMatch"] = self.etag
            self.requests += 1
            try:
                async with self.s3.get_object(self.bucket, self.key, **params) as response:
                    if self.size is None:
                        self._learn(response)
                        assert self.size is not None
                        buf = bytearray(min(n, self.size))
                    self._check(response, ByteRange(got, len(buf)))
                    await self._read_into(response["Body"], buf, cursor)
            except S3Error as exc:
                if self.size is None and (exc.code == "InvalidRange" or exc.status == 416):
                    head = await self.s3.head_object(self.bucket, self.key)
                    if int(head.get("ContentLength", -1)) == 0:
                        self._learn(head)
                        return
                raise _translate_get(exc, self.bucket, self.key, self.etag) from exc

        await self._with_retry(attempt, ByteRange(0, n), lambda: cursor[0])
        return buf

    def _learn(self, response: Mapping[str, Any]) -> None:
        """Pin the ETag and size of the first answer; later requests must match them."""
        self.first_response = {k: v for k, v in response.items() if k != "Body"}
        self.etag = response.get("ETag")
        _, total = parse_content_range(response)
        self.size = total if total is not None else int(response.get("ContentLength", 0))
        self.first_response["ContentLength"] = self.size

    async def _read_into(self, body: Any, buf: bytearray, cursor: list[int]) -> None:
        """Fill ``buf`` from ``cursor[0]`` on; ``cursor[0]`` advances as bytes arrive,
        so after a dropped connection the retry asks only for the rest."""
        view = memoryview(buf)
        got = cursor[0]
        try:
            while got < len(buf):
                with map_errors("GetObject", bucket=self.bucket, key=self.key):
                    chunk = await body.read(min(len(buf) - got, _READ))
                if not chunk:
                    raise NetworkError(
                        f"the connection ended after byte {got} of {len(buf)}",
                        bucket=self.bucket,
                        key=self.key,
                    )
                view[got : got + len(chunk)] = chunk
                got += len(chunk)
                cursor[0] = got
        finally:
            view.release()

    async def _with_retry(self, attempt: Any, r: ByteRange, progress: Any) -> None:
        async def on_retry(attempt_no: int, exc: BaseException) -> None:
            self.log.warning(
                "download.range.retry",
                range=str(r),
                resume_at=r.start + progress(),
                attempt=attempt_no,
                error=type(exc).__name__,
            )

        await self.retry.call(attempt, timeout=self.part_timeout, on_retry=on_retry)


class DownloadStream:
    """One streamed GET: an async iterator of chunks and an async context manager.

    The connection is released when the block is left, when the iteration
    ends or is broken off, or when the stream is garbage collected. A dropped
    connection is resumed from the next missing byte (pinned to the ETag).
    """

    def __init__(
        self,
        s3: S3,
        bucket: str,
        key: str,
        spec: RangeSpec | None,
        *,
        chunk_size: int | None,
        retry: RetryPolicy,
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self._spec = spec
        self._chunk_size = chunk_size
        self._retry = retry
        self._stack: AsyncExitStack | None = None
        self._body: Any = None
        self._opened = False
        self._closed = False
        self.etag: str | None = None
        self.size: int | None = None  # the whole object's size
        self.range: ByteRange | None = None  # the bytes this stream delivers
        self.info: ObjectInfo | None = None
        self.position = 0  # absolute offset of the next byte

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
        """Send the GET (after a HEAD if the range needs the size); check the range."""
        if self._opened:
            return
        self._opened = True
        try:
            await self._retry.call(self._open_first)
        except BaseException:
            await self.aclose()
            raise

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
            except ValueError:
                await self.aclose()
                raise
            if wanted != sent:
                await self.aclose()
                raise StreamxError(
                    f"asked for bytes {wanted} but the server sent {sent}",
                    bucket=self.bucket,
                    key=self.key,
                )
        self.range = sent
        self.position = sent.start
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
        except ValueError as exc:
            raise ValueError(f"{exc} of s3://{self.bucket}/{self.key}") from None
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
            raise _translate_get(exc, self.bucket, self.key, self.etag) from exc
        seen = response.get("ETag")
        if self.etag is not None and seen != self.etag:
            raise _changed(self.bucket, self.key, self.etag, seen)
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
        attempt = 1
        while True:
            try:
                if self._body is None:
                    await self._resume()
                n = min(n, self.range.end - self.position)
                with map_errors("GetObject", bucket=self.bucket, key=self.key):
                    chunk: bytes = await self._body.read(n)
                if not chunk:
                    raise NetworkError(
                        f"the connection ended at byte {self.position} of {self.range}",
                        bucket=self.bucket,
                        key=self.key,
                    )
                self.position += len(chunk)
                return chunk
            except StreamxError as exc:
                if not is_retryable(exc) or attempt >= self._retry.max_attempts:
                    raise
                log.warning(
                    "download.stream.resume",
                    bucket=self.bucket,
                    key=self.key,
                    resume_at=self.position,
                    attempt=attempt,
                    error=type(exc).__name__,
                )
                if self._stack is not None:
                    stack, self._stack, self._body = self._stack, None, None
                    await stack.aclose()
                await self._retry.sleep(self._retry.delay(attempt))
                attempt += 1
