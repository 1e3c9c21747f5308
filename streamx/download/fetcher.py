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
from .._s3 import S3, map_errors
from .planner import ByteRange
from .response import changed, parse_content_range, translate_get

_READ = 1024 * 1024  # most bytes asked of the HTTP stack per read


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
            with ProgressDeadline(self.stall_timeout) as watch:
                try:
                    async with self.s3.get_object(self.bucket, self.key, **params) as response:
                        watch.progress()
                        self._check(response, remaining)
                        await self._read_into(response["Body"], buf, cursor, watch.progress)
                except S3Error as exc:
                    raise translate_get(exc, self.bucket, self.key, self.etag) from exc
            if watch.stalled:
                raise NetworkError(
                    f"the ranged GET moved no byte for stall_timeout={self.stall_timeout:g} s "
                    f"(at byte {r.start + cursor[0]} of {r})",
                    bucket=self.bucket,
                    key=self.key,
                )

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
                raise translate_get(exc, self.bucket, self.key, self.etag) from exc

        await self._with_retry(attempt, ByteRange(0, n), lambda: cursor[0])
        return buf

    def _learn(self, response: Mapping[str, Any]) -> None:
        """Pin the ETag and size of the first answer; later requests must match them."""
        self.first_response = {k: v for k, v in response.items() if k != "Body"}
        self.etag = response.get("ETag")
        _, total = parse_content_range(response)
        self.size = total if total is not None else int(response.get("ContentLength", 0))
        self.first_response["ContentLength"] = self.size

    async def _read_into(
        self,
        body: Any,
        buf: bytearray,
        cursor: list[int],
        moved: Callable[[], None] | None = None,
    ) -> None:
        """Fill ``buf`` from ``cursor[0]`` on; ``cursor[0]`` advances as bytes arrive,
        so after a dropped connection the retry asks only for the rest. ``moved``
        is called for every chunk (the stall detector's signal)."""
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
                if moved is not None:
                    moved()
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
