"""The part uploaders: ``queue_size`` tasks that drain the part queue.

Each part is retried on its own (identical bytes, full-jitter backoff) and its
memory is released only once S3 has acknowledged it, or the transfer ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from .._checksum import PartChecksum, param_name
from .._events import Progress
from .._retry import RetryPolicy
from .._s3 import S3
from .parts import Part, PartProducer


@dataclass(frozen=True, slots=True)
class CompletedPart:
    number: int
    etag: str
    size: int
    checksum: PartChecksum | None

    def as_param(self) -> dict[str, Any]:
        param: dict[str, Any] = {"PartNumber": self.number, "ETag": self.etag}
        if self.checksum is not None:
            param[param_name(self.checksum.algorithm)] = self.checksum.b64
        return param


class PartUploader:
    def __init__(
        self,
        s3: S3,
        bucket: str,
        key: str,
        upload_id: str,
        *,
        producer: PartProducer,
        progress: Progress,
        retry: RetryPolicy,
        part_timeout: float | None,
        send_checksums: bool,
        log: Any,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.producer = producer
        self.progress = progress
        self.retry = retry
        self.part_timeout = part_timeout
        self.send_checksums = send_checksums
        self.log = log
        self.completed: dict[int, CompletedPart] = {}

    async def upload_one(self, part: Part) -> CompletedPart:
        params: dict[str, Any] = {}
        if self.send_checksums and part.checksum is not None:
            params[param_name(part.checksum.algorithm)] = part.checksum.b64

        async def attempt() -> dict[str, Any]:
            return await self.s3.upload_part(
                self.bucket, self.key, self.upload_id, part.number, part.data, **params
            )

        async def on_retry(attempt_no: int, exc: BaseException) -> None:
            self.progress.bytes_retried += part.size
            self.log.warning(
                "upload.part.retry",
                part_number=part.number,
                attempt=attempt_no,
                error=type(exc).__name__,
            )

        start = anyio.current_time()
        response = await self.retry.call(attempt, timeout=self.part_timeout, on_retry=on_retry)
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
                try:
                    done = await self.upload_one(part)
                finally:
                    self.progress.parts_in_flight -= 1
                    self.producer.release(part)
                self.completed[part.number] = done
                await self.progress.advance(done.size, parts=1)
