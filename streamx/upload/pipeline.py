"""One upload: the task group that wires producer → bounded queue → uploaders → completer.

::

    source ──► PartProducer ──► [queue: queue_size] ──► PartUploader × queue_size ──► complete
                 (budget)                                 (release on ack)

The abort is armed the moment an UploadId exists. Any failure (the source, a
part, the progress callback) cancels the siblings, the multipart upload is
aborted shielded from cancellation and time-boxed, and one streamx error is
raised, chained to its cause. Cancellation of the caller aborts the same way
and then propagates unchanged.
"""

from __future__ import annotations

from typing import Any

import anyio
import structlog

from .._budget import MemoryBudget
from .._checksum import param_name
from .._config import TransferConfig
from .._errors import SourceError, StreamxError
from .._events import Progress
from .._limits import MAX_OBJECT_SIZE, PartPlan, format_size
from .._results import UploadResult
from .._retry import RetryPolicy
from .._s3 import S3
from .completer import complete, verify_checksum
from .parts import Part, PartProducer
from .source import Source
from .uploader import PartUploader

log = structlog.get_logger("streamx")


def plan_parts(config: TransferConfig, size: int | None) -> PartPlan:
    if size is None:
        return PartPlan.for_stream(config.part_size, equal_parts=config.equal_parts)
    return PartPlan.for_known_size(size, config.part_size)


class _FirstError:
    """Records the first failure of a task group and cancels the rest."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    async def run(self, scope: anyio.CancelScope, fn: Any, *args: Any) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            if self.error is None:
                self.error = exc
            scope.cancel()


class UploadPipeline:
    def __init__(
        self,
        s3: S3,
        bucket: str,
        key: str,
        source: Source,
        config: TransferConfig,
        *,
        progress: Progress,
        put_args: dict[str, Any],
        shared_budget: MemoryBudget | None = None,
        size_hint: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.source = source
        self.config = config
        self.progress = progress
        self.put_args = put_args
        self.retry = retry or RetryPolicy(max_attempts=config.max_attempts)
        self.upload_id: str | None = None
        size = source.size if source.size is not None else size_hint
        if size is not None and size > MAX_OBJECT_SIZE:
            raise StreamxError(
                f"{format_size(size)} is over S3's {format_size(MAX_OBJECT_SIZE)} object limit",
                bucket=bucket,
                key=key,
            )
        self.plan = plan_parts(config, size)
        if source.size is None and size_hint is not None:
            # a hint sizes the first parts; the stream may still grow past it
            self.plan = PartPlan.for_stream(self.plan.base, equal_parts=config.equal_parts)
        progress.total = source.size
        budgets = [MemoryBudget(config.window)]
        if shared_budget is not None:
            budgets.append(shared_budget)
        self.algorithm = config.checksum_algorithm if config.checksum != "off" else None
        self.send_checksums = config.checksum == "when_supported"
        self.producer = PartProducer(
            source,
            self.plan,
            budgets,
            checksum_algorithm=self.algorithm,
            equal_parts=config.equal_parts,
        )
        self.log = log.bind(bucket=bucket, key=key)

    async def run(self) -> UploadResult:
        try:
            self.log.info("upload.start", source=self.source.description, size=self.source.size)
            head = await self._read_head()
            if self.producer.eof and sum(p.size for p in head) < self.config.multipart_threshold:
                result = await self._put_object(head)
            else:
                result = await self._multipart(head)
            await self.progress.finish()
            self.log.info(
                "upload.complete",
                upload_id=result.upload_id,
                size=result.size,
                parts=result.part_count,
                seconds=round(self.progress.elapsed, 3),
            )
            return result
        finally:
            self.producer.release_all()
            await self.source.aclose()

    async def _read_head(self) -> list[Part]:
        """Parts up to the multipart threshold, or the whole source if it is smaller."""
        head: list[Part] = []
        total = 0
        while not self.producer.eof:
            part = await self.producer.next_part()
            if part is None:
                break
            head.append(part)
            total += part.size
            if total >= self.config.multipart_threshold:
                break
        return head

    async def _put_object(self, head: list[Part]) -> UploadResult:
        body: Any = head[0].data if len(head) == 1 else b"".join(p.data for p in head)
        if not head:
            body = b""
        params = dict(self.put_args)
        checksums = [p.checksum for p in head if p.checksum is not None]
        if self.algorithm and len(head) > 1:
            from .._checksum import compute

            checksums = [compute(self.algorithm, body)]
        elif self.algorithm and not head:
            from .._checksum import compute

            checksums = [compute(self.algorithm, b"")]
        if self.send_checksums and checksums:
            params[param_name(self.algorithm or "")] = checksums[0].b64
        response = await self.s3.put_object(self.bucket, self.key, body, **params)
        checksum = verify_checksum(
            response, checksums, self.algorithm, multipart=False, bucket=self.bucket, key=self.key
        )
        await self.progress.advance(len(body), parts=1)
        return UploadResult(
            bucket=self.bucket,
            key=self.key,
            etag=str(response.get("ETag", "")),
            size=len(body),
            part_count=1,
            version_id=response.get("VersionId"),
            checksum=checksum,
            checksum_algorithm=self.algorithm if checksum else None,
        )

    async def _multipart(self, head: list[Part]) -> UploadResult:
        create_args = dict(self.put_args)
        if self.send_checksums and self.algorithm:
            create_args["ChecksumAlgorithm"] = self.algorithm
        # Shielded: a cancellation that lands while S3 creates the upload must not
        # lose the UploadId (the upload would be orphaned and cost money).
        with anyio.CancelScope(shield=True):
            self.upload_id = await self.s3.create_multipart_upload(
                self.bucket, self.key, **create_args
            )
        self.log = self.log.bind(upload_id=self.upload_id)
        uploader = PartUploader(
            self.s3,
            self.bucket,
            self.key,
            self.upload_id,
            producer=self.producer,
            progress=self.progress,
            retry=self.retry,
            part_timeout=self.config.part_timeout or None,
            send_checksums=self.send_checksums,
            log=self.log,
        )
        try:
            await anyio.lowlevel.checkpoint()  # deliver a cancellation that arrived meanwhile
            first = _FirstError()
            async with anyio.create_task_group() as tg:
                send, receive = anyio.create_memory_object_stream[Part](self.config.queue_size)
                with receive:
                    for _ in range(self.config.queue_size):
                        tg.start_soon(first.run, tg.cancel_scope, uploader.run, receive.clone())
                tg.start_soon(first.run, tg.cancel_scope, self._produce, send, head)
            if first.error is not None:
                raise first.error
            return await complete(
                self.s3,
                self.bucket,
                self.key,
                self.upload_id,
                uploader.completed,
                expected_parts=self.producer.next_number - 1,
                algorithm=self.algorithm if self.send_checksums else None,
            )
        except BaseException as exc:
            await self._abort(exc)
            if isinstance(exc, StreamxError):
                exc.add_context(bucket=self.bucket, key=self.key, upload_id=self.upload_id)
            elif isinstance(exc, Exception):
                raise SourceError(
                    f"upload failed: {type(exc).__name__}: {exc}",
                    bucket=self.bucket,
                    key=self.key,
                    upload_id=self.upload_id,
                ) from exc
            raise

    async def _produce(self, send: Any, head: list[Part]) -> None:
        async with send:
            for part in head:
                await send.send(part)
            while True:
                part = await self.producer.next_part()
                if part is None:
                    return
                await send.send(part)

    async def _abort(self, exc: BaseException) -> None:
        assert self.upload_id is not None
        if self.config.leave_parts_on_error:
            self.log.warning(
                "upload.failed.parts_kept", error=type(exc).__name__, upload_id=self.upload_id
            )
            return
        with anyio.move_on_after(self.config.abort_timeout, shield=True) as scope:
            try:
                await self.s3.abort_multipart_upload(self.bucket, self.key, self.upload_id)
            except StreamxError as abort_exc:
                self.log.error(
                    "upload.abort.failed", error=str(abort_exc), cause=type(exc).__name__
                )
                return
        if scope.cancelled_caught:
            self.log.error("upload.abort.timeout", seconds=self.config.abort_timeout)
        else:
            self.log.warning("upload.aborted", cause=type(exc).__name__)
