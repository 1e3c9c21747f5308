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
``engine.download()`` (in :mod:`.stream`); :class:`RangeFetcher` fills
buffers for the parallel pipeline and ``get_ranges``. Both check each answer
with :mod:`.response`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._errors import NetworkError, S3Error, StreamxError
from .._log import log
from .._retry import ProgressDeadline, RetryPolicy
from .._s3 import S3, RangeRead
from .planner import ByteRange
from .response import changed, parse_content_range, translate_get


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
        stall_timeout: float | None = None,
        etag: str | None = None,
        on_retry_bytes: Any = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.retry = retry
        self.part_timeout = part_timeout
        self.stall_timeout = stall_timeout
        self.etag = etag
        self.size: int | None = None
        self.requests = 0
        self.retried_bytes = 0
        self.first_response: dict[str, Any] | None = None
        self.log = log.bind(bucket=bucket, key=key)

    def _check(self, response: Mapping[str, Any], asked: ByteRange) -> None:
        seen = response.get("ETag")
        if self.etag is not None and seen is not None and seen != self.etag:
            raise changed(self.bucket, self.key, self.etag, seen)
        sent, total = parse_content_range(response)
        length = int(response.get("ContentLength", -1))
        if sent is None:
            # a 200 with the whole object: fine only if that is what we asked for
            sent = ByteRange(0, length) if length >= 0 else None
            total = length
        if total is not None and self.size is not None and total != self.size:
            raise changed(self.bucket, self.key, self.etag or "?", f"size {total}")
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

    async def fetch(self, r: ByteRange, into: bytearray | None = None) -> bytearray:
        """The bytes of ``r``, resuming after a dropped connection where it stopped; in
        ``into`` if it is given and of the range's size (a delivered range's buffer)."""
        buf = into if into is not None and len(into) == r.size else bytearray(r.size)
        cursor = [0]

        async def attempt() -> None:
            got = cursor[0]
            if got >= r.size:
                return
            remaining = ByteRange(r.start + got, r.end)

            def accept(response: Mapping[str, Any]) -> memoryview:
                self._check(response, remaining)
                return memoryview(buf)[got:]

            await self._get(self._params(remaining.header()), accept, cursor, r)

        await self._with_retry(attempt, r, lambda: cursor[0])
        return buf

    async def fetch_first(
        self, n: int, on_size: Callable[[], None] | None = None
    ) -> bytearray:
        """The first ``n`` bytes (fewer if the object is shorter); learns size and ETag.

        One request instead of a HEAD and a GET. An empty object has no byte 0
        to ask for (416): a HEAD then confirms that it is empty. ``on_size`` is called
        once size and ETag are known, before the body is read (in the receiving thread
        on the worker-thread transport).
        """
        held = [bytearray()]
        cursor = [0]

        async def attempt() -> None:
            got = cursor[0]
            if self.size is not None and got >= len(held[0]):
                return
            first = self.size is None
            asked = f"bytes=0-{n - 1}" if first else f"bytes={got}-{len(held[0]) - 1}"

            def accept(response: Mapping[str, Any]) -> memoryview:
                if first:  # the answer tells the size: the buffer is allocated for it
                    self._learn(response)
                    assert self.size is not None
                    held[0] = bytearray(min(n, self.size))
                    if on_size is not None:
                        on_size()
                self._check(response, ByteRange(got, len(held[0])))
                return memoryview(held[0])[got:]

            try:
                await self._get(self._params(asked), accept, cursor, ByteRange(0, n))
            except S3Error as exc:
                if first and (exc.code == "InvalidRange" or exc.status == 416):
                    head = await self.s3.head_object(self.bucket, self.key)
                    if int(head.get("ContentLength", -1)) == 0:
                        self._learn(head)
                        return
                raise

        await self._with_retry(attempt, ByteRange(0, n), lambda: cursor[0])
        return held[0]

    def _params(self, range_header: str) -> dict[str, Any]:
        params: dict[str, Any] = {"Range": range_header}
        if self.etag is not None:
            params["IfMatch"] = self.etag
        return params

    async def _get(
        self,
        params: dict[str, Any],
        accept: Callable[[Mapping[str, Any]], memoryview],
        cursor: list[int],
        r: ByteRange,
    ) -> None:
        """One GET (for range ``r``) whose body goes where ``accept`` says; ``cursor[0]``
        advances by what arrived, also when the connection breaks, so a retry asks only for
        the rest. A GET that moves no byte for ``stall_timeout`` is a :class:`NetworkError`."""
        self.requests += 1
        stall = self.stall_timeout
        with ProgressDeadline(stall) as watch:
            read = RangeRead(params, accept, watch.progress, stall, self.part_timeout)
            try:
                await self.s3.get_into(self.bucket, self.key, read)
            except S3Error as exc:
                raise translate_get(exc, self.bucket, self.key, self.etag) from exc
            finally:
                cursor[0] += read.received
        if watch.stalled:
            raise NetworkError(
                f"the ranged GET moved no byte for stall_timeout={stall:g} s "
                f"(at byte {r.start + cursor[0]} of {r})",
                bucket=self.bucket,
                key=self.key,
            )

    def _learn(self, response: Mapping[str, Any]) -> None:
        """Pin the ETag and size of the first answer; later requests must match them."""
        self.first_response = {k: v for k, v in response.items() if k != "Body"}
        self.etag = response.get("ETag")
        _, total = parse_content_range(response)
        self.size = total if total is not None else int(response.get("ContentLength", 0))
        self.first_response["ContentLength"] = self.size

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
