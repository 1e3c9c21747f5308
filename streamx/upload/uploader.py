"""The part uploaders: ``queue_size`` tasks that drain the part queue.

Each part is retried on its own (identical bytes, full-jitter backoff; see
``_retry.py``) and its memory is released only once S3 has acknowledged it,
or the transfer ends.

**Stall detection.** ``part_timeout`` caps an attempt; ``stall_timeout``
cancels an attempt that has moved no byte for that long, however long the
part. Both the deadline and the byte-level signal belong to the S3 layer
(:meth:`streamx._s3.S3.upload_part` and its part sender): the clock starts with
the first byte sent, so a request queued for a connection is not taken for a
stalled one, and it runs on once the body is sent, so a server that takes the
whole body and never answers is caught too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from .._checksum import PartChecksum, checksum_errors, param_name
from .._errors import ChecksumError
from .._events import Progress
from .._gathered import hexdigest
from .._retry import RetryPolicy
from .._s3 import S3
from .parts import Part, PartProducer


@dataclass(frozen=True, slots=True)
class CompletedPart:
    number: int
    etag: str
    size: int
    checksum: PartChecksum | None

    def as_param(self, *, with_checksum: bool = True) -> dict[str, Any]:
        param: dict[str, Any] = {"PartNumber": self.number, "ETag": self.etag}
        if with_checksum and self.checksum is not None:
            param[param_name(self.checksum.algorithm)] = self.checksum.b64
        return param


#: The ETag S3 gives an empty body (the MD5 of no bytes).
EMPTY_ETAG = "d41d8cd98f00b204e9800998ecf8427e"


def check_not_emptied(response: dict[str, Any], sent: int, what: str, **context: Any) -> None:
    """Raise ChecksumError if the store answered the ETag of an empty body for ``sent`` > 0 bytes.

    A plain PutObject's or part's ETag is the MD5 of the bytes the store kept.
    moto, for one, parses a body sent with ``Content-Type:
    application/x-www-form-urlencoded`` as a form, keeps 0 bytes and still
    echoes the checksum header it was sent, so no checksum can catch it; the
    ETag does. (Encrypted objects' ETags are not MD5s, and cannot equal this
    one by chance.)
    """
    etag = str(response.get("ETag", "")).strip('"').lower()
    if sent > 0 and etag == EMPTY_ETAG:
        raise ChecksumError(
            f"the store answered {what} with the ETag of an empty body although {sent} bytes "
            "were sent: it did not keep them (a store that parses the body as a form, e.g. "
            "for Content-Type application/x-www-form-urlencoded, empties it; moto does)",
            **context,
        )


class PartUploader:
    def __init__(
        self,
        s3: S3,
        bucket: str,
        key: str,
        upload_id: str,
        *,
        producer: PartProducer | None,  # None: parts handed to upload_one (the tus server)
        progress: Progress,
        retry: RetryPolicy,
        part_timeout: float | None,
        send_checksums: bool,
        log: Any,
        stall_timeout: float | None = None,
        on_done: Callable[[CompletedPart], Awaitable[None]] | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.producer = producer
        self.progress = progress
        self.retry = retry
        self.part_timeout = part_timeout
        self.stall_timeout = stall_timeout
        self.send_checksums = send_checksums
        self.log = log
        self.on_done = on_done
        self.completed: dict[int, CompletedPart] = {}
        # parts the store already holds (a resume's ListParts): {number: (etag, size)}
        self.held: dict[int, tuple[str, int]] = {}
        self.adopted = 0
        self.cut: set[int] = set()  # parts whose request failed or was cancelled

    async def _attempt(self, part: Part, params: dict[str, Any]) -> dict[str, Any]:
        """One UploadPart request, cancelled if it moves no byte for ``stall_timeout``."""
        ctx = {"bucket": self.bucket, "key": self.key, "upload_id": self.upload_id}

        with checksum_errors(bool(params)):
            response = await self.s3.upload_part(
                self.bucket,
                self.key,
                self.upload_id,
                part.number,
                part.data,
                stall_timeout=self.stall_timeout,
                time_limit=self.part_timeout,
                **params,
            )
        check_not_emptied(response, part.size, "UploadPart", part_number=part.number, **ctx)
        if part.checksum is not None:
            echoed = response.get(param_name(part.checksum.algorithm))
            if echoed and echoed != part.checksum.b64:
                raise ChecksumError(
                    f"the store reports {part.checksum.algorithm} {echoed} for the part, "
                    f"but its bytes give {part.checksum.b64}",
                    part_number=part.number,
                    **ctx,
                )
        return response

    async def _adopt(self, part: Part) -> CompletedPart | None:
        """The part as the store already holds it, if its ETag is the MD5 of these bytes.

        Sending again a part the store holds is not always harmless: a store
        that streams parts to its disk in order (rclone) cannot take back one
        it has streamed, and one sent again while the store still processes
        the earlier, cut request can fail the whole upload. So a resume asks
        first (ListParts) and sends only what is missing or different.
        """
        etag, size = self.held.pop(part.number, ("", -1))
        if size != part.size or not etag:
            return None
        digest = await anyio.to_thread.run_sync(hexdigest, "md5", part.data)
        if digest != etag.lower():
            return None
        self.adopted += 1
        self.log.info("upload.part.adopted", part_number=part.number, size=part.size)
        return CompletedPart(part.number, f'"{digest}"', part.size, part.checksum)

    async def upload_one(self, part: Part) -> CompletedPart:
        if self.held:
            adopted = await self._adopt(part)
            if adopted is not None:
                return adopted
        params: dict[str, Any] = {}
        if self.send_checksums and part.checksum is not None:
            params[param_name(part.checksum.algorithm)] = part.checksum.b64

        async def on_retry(attempt_no: int, exc: BaseException) -> None:
            # the part's bytes go out again: progress says so (bytes_done does not move)
            self.progress.bytes_retried += part.size
            self.log.warning(
                "upload.part.retry",
                part_number=part.number,
                attempt=attempt_no,
                error=type(exc).__name__,
                reason=str(exc),
            )
            await self.progress.maybe_emit()

        start = anyio.current_time()
        response = await self.retry.call(
            lambda: self._attempt(part, params), timeout=self.part_timeout, on_retry=on_retry
        )
        done = CompletedPart(part.number, str(response["ETag"]), part.size, part.checksum)
        self.log.debug(
            "upload.part",
            part_number=part.number,
            size=part.size,
            seconds=round(anyio.current_time() - start, 4),
        )
        return done

    async def run(self, parts: MemoryObjectReceiveStream[Part]) -> None:
        async with parts:
            async for part in parts:
                self.progress.parts_in_flight += 1
                sent = False
                try:
                    done = await self.upload_one(part)
                    sent = True
                except BaseException:
                    self.cut.add(part.number)  # its request may have been cut mid-body
                    raise
                finally:
                    self.progress.parts_in_flight -= 1
                    if self.producer is not None:
                        self.producer.release(part, sent=sent)
                self.completed[part.number] = done
                if self.on_done is not None:
                    await self.on_done(done)
                await self.progress.advance(done.size, parts=1)

