"""One upload: the task group that wires producer → bounded queue → uploaders → completer.

::

    source ──► PartProducer ──► [queue: queue_size] ──► PartUploader x queue_size ──► complete
                 (budget)                                 (release on ack)

The abort is armed the moment an UploadId exists. Any failure (the source, a
part, the progress callback) cancels the siblings, the multipart upload is
aborted shielded from cancellation and time-boxed, and one error is raised: a
streamx error chained to its cause, or, when the caller's own ``on_progress``
callback raised, the caller's exception unchanged (the same below and above
``multipart_threshold``, so ``except MyLimit:`` works for every size).
Cancellation of the caller aborts the same way and then propagates unchanged.

With a checkpoint (``checkpoint.py``) the upload is recorded after each
acknowledged part and kept, not aborted, on failure, so the same call can
resume it; it is removed once the upload completes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .._abort import abort_upload
from .._budget import MemoryBudget
from .._concurrency import FirstFailure, task_group
from .._context import TransferContext
from .._errors import (
    CheckpointError,
    StreamxError,
)
from .._events import Progress
from .._limits import PartPlan
from .._log import log
from .._results import UploadResult
from .._s3 import split_conditions
from .._stores import UNKNOWN, StoreProfile
from .checkpoint import (
    Checkpoint,
    CheckpointFile,
    PartRecord,
    dropped_upload,
    fingerprint,
    note_cut,
)
from .chunks import ChunkSource
from .completer import complete
from .create import create_upload
from .parts import Part, PartProducer, plan_parts
from .readahead import ReadAhead
from .restore import discard, restore
from .single import SinglePut
from .source import Source
from .target import PutTarget
from .uploader import CompletedPart, PartUploader


class UploadPipeline:
    def __init__(
        self,
        ctx: TransferContext,
        bucket: str,
        key: str,
        source: Source,
        *,
        progress: Progress,
        put_args: dict[str, Any],
        size_hint: int | None = None,
        checkpoint: CheckpointFile | None = None,
        restart: bool = False,
        store: StoreProfile = UNKNOWN,
        resolve_store: Callable[[], Awaitable[StoreProfile]] | None = None,
    ) -> None:
        """Arguments are checked by the caller (:mod:`.call`); this only wires the stages."""
        config = self.config = ctx.config
        shared_budget = ctx.budget
        self.s3 = ctx.s3
        self.bucket = bucket
        self.key = key
        self.source = source
        self.progress = progress
        # the conditions go on PutObject / CompleteMultipartUpload only, never on Create
        self.put_args, self.conditions = split_conditions(put_args)
        self.store = store
        self.resolve_store = resolve_store  # probes an unknown store (Engine._store_for)
        self.retry = ctx.retry
        self.upload_id: str | None = None
        self.checkpoint = checkpoint
        self.restart = restart
        self.size_hint = size_hint
        self.resumed: dict[int, CompletedPart] = {}
        # on a resume, parts the store lists beyond the recorded ones (ListParts):
        # adopted when their bytes match, never sent again (see PartUploader.held)
        self.held: dict[int, tuple[str, int]] = {}
        self.uploader: PartUploader | None = None
        self.source_offset: int | None = None  # set when the source starts mid-object
        self.finished = False  # CompleteMultipartUpload succeeded
        size = source.size if source.size is not None else size_hint
        self.plan = plan_parts(config, size, store.max_object_size)
        if source.size is None and size_hint is not None:
            # size= sizes the parts of a stream; the producer holds the stream to it
            self.plan = PartPlan.for_stream(self.plan.base, equal_parts=config.equal_parts)
        progress.total = size
        budgets = [MemoryBudget(config.window)]
        self.shared_budget = shared_budget
        if shared_budget is not None:
            budgets.append(shared_budget)
        self.algorithm: str | None = config.checksum_algorithm if config.checksum != "off" else None
        self.send_checksums = config.checksum == "when_supported"
        self.store_ignores_checksums = False  # set when CreateMultipartUpload shows it
        self.producer = PartProducer(
            source,
            self.plan,
            budgets,
            checksum_algorithm=self.algorithm,
            equal_parts=config.equal_parts,
            probe=config.high_water_mark,
            size_hint=size_hint,
        )
        self.log = log.bind(bucket=bucket, key=key)
        self.readahead: ReadAhead | None = None

    async def run(self) -> UploadResult:
        readahead = self.readahead = self._readahead()
        try:
            if self.resolve_store is not None:  # before the source is read
                self.store = await self.resolve_store()
            if readahead is None:
                return await self._run()
            async with task_group() as tg:
                tg.start_soon(readahead.pump)
                result = await self._run()
                tg.cancel_scope.cancel()
            return result
        finally:
            if readahead is not None:
                readahead.release()
            self.producer.release_all()
            await self.source.aclose()

    def _readahead(self) -> ReadAhead | None:
        """Stage up to high_water_mark bytes of a chunked source ahead of the parts."""
        if not isinstance(self.source, ChunkSource):
            return None
        return self.source.read_ahead(self.config.high_water_mark, self.shared_budget)

    async def _run(self) -> UploadResult:
        self.log.info("upload.start", source=self.source.description, size=self.source.size)
        if self.checkpoint is not None and self.producer.checksum_algorithm is None:
            # a checkpoint records a checksum per part even with checksums off,
            # to verify a re-read source on resume
            self.producer.checksum_algorithm = "CRC32C"
        if self.checkpoint is not None and await self._resume(self.checkpoint):
            result = await self._multipart([])
        else:
            size = self.source.size
            threshold = self.config.multipart_threshold
            whole = None if self.checkpoint is not None else self.producer.whole_in_memory(threshold)
            if whole is not None:
                head = whole
            elif self.checkpoint is None and size is not None and size >= threshold:
                head = await self._read_head_during_create()
            else:
                head = await self._read_head()
            small = sum(p.size for p in head) < self.config.multipart_threshold
            if self.upload_id is None and self.producer.eof and small:
                result = await self._put_object(head)
            else:
                result = await self._multipart(head)
        if self.checkpoint is not None:
            self.checkpoint.remove()
        await self.progress.finish()
        self.log.info(
            "upload.complete",
            upload_id=result.upload_id,
            size=result.size,
            parts=result.part_count,
            seconds=round(self.progress.elapsed, 3),
        )
        return result

    async def _read_head(self) -> list[Part]:
        """Parts up to the multipart threshold (see :meth:`PartProducer.read_head`)."""
        readahead = self.readahead
        return await self.producer.read_head(
            self.config.multipart_threshold,
            shared=self.shared_budget is not None,
            on_part=readahead.go if readahead is not None else None,
        )

    async def _read_head_during_create(self) -> list[Part]:
        """A source known to go multipart: CreateMultipartUpload's round trip overlaps
        reading (and checksumming) the first part, so the first request leaves at once."""

        try:
            async with task_group() as tg:
                tg.start_soon(self._open_multipart)
                head = await self._read_head()
        except BaseException as exc:
            if self.upload_id is not None:  # created, then the source failed: abort it
                await self._abort(exc)
            raise
        return head

    async def _put_object(self, head: list[Part]) -> UploadResult:
        single = SinglePut(
            self._target(), config=self.config, retry=self.retry, progress=self.progress
        )
        return await single.run(head)

    def _target(self) -> PutTarget:
        """The write plan as it stands now (the store, the checksum plan and the log change
        as the upload learns them)."""
        return PutTarget(
            self.s3,
            self.bucket,
            self.key,
            self.put_args,
            self.conditions,
            self.store,
            self.algorithm,
            self.send_checksums,
            self.log,
        )

    async def _resume(self, file: CheckpointFile) -> bool:
        """Pick up the upload recorded in ``file``; false if there is none (start fresh)."""
        if self.restart:
            await discard(file, self.s3, self.config.abort_timeout, self.log)
            return False
        restored = await restore(
            file,
            self.s3,
            self.producer,
            self.source,
            bucket=self.bucket,
            key=self.key,
            held=self.held,
            source_offset=self.source_offset,
            log=self.log,
        )
        if restored is None:
            return False
        cp = restored.checkpoint
        self.upload_id = cp.upload_id
        self.log = self.log.bind(upload_id=cp.upload_id)
        self.plan = cp.plan
        self.algorithm = cp.algorithm if cp.send_checksums else None
        self.send_checksums = cp.send_checksums
        self.resumed = restored.parts
        self.progress.bytes_done = restored.offset
        self.progress.parts_done = restored.committed
        return True

    async def _open_multipart(self) -> None:
        """See :func:`.create.create_upload`; then the checkpoint records the new upload."""
        upload_id, acknowledged = await create_upload(self._target())
        if self.send_checksums and self.algorithm and not acknowledged:
            self.send_checksums = False  # the store takes no note of them (rclone)
            self.store_ignores_checksums = True
        if self.checkpoint is not None:
            self.checkpoint.current = Checkpoint(
                bucket=self.bucket,
                key=self.key,
                upload_id=upload_id,
                plan_base=self.plan.base,
                plan_interval=self.plan.interval,
                size=self.source.size if self.source.size is not None else None,
                algorithm=self.producer.checksum_algorithm,
                send_checksums=self.send_checksums,
                fingerprint=fingerprint(self.source),
            )
            with anyio.CancelScope(shield=True):
                await self.checkpoint.save()
        self.upload_id = upload_id

    async def _record(self, part: CompletedPart) -> None:
        assert self.checkpoint is not None
        checksum = part.checksum.b64 if part.checksum is not None else None
        await self.checkpoint.record(part.number, PartRecord(part.etag, part.size, checksum))

    async def _multipart(self, head: list[Part]) -> UploadResult:
        if self.upload_id is None:
            await self._open_multipart()
        assert self.upload_id is not None
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
            stall_timeout=self.config.stall_timeout,
            send_checksums=self.send_checksums,
            log=self.log,
            on_done=self._record if self.checkpoint is not None else None,
        )
        uploader.completed.update(self.resumed)
        uploader.held = self.held
        self.uploader = uploader
        try:
            await anyio.lowlevel.checkpoint()  # deliver a cancellation that arrived meanwhile
            first = FirstFailure()
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
                algorithm=(
                    self.algorithm if self.send_checksums or self.store_ignores_checksums else None
                ),
                send_checksums=self.send_checksums,
                abort_timeout=self.config.abort_timeout,
                on_completed=self._completed,
                conditions=self.conditions,
            )
        except BaseException as exc:
            if self.resumed and self.checkpoint is not None and self.checkpoint.current:
                try:
                    await dropped_upload(
                        self.s3, self.checkpoint.current, self.checkpoint.path, exc
                    )
                except CheckpointError:
                    self.checkpoint.remove()
                    raise
            await self._abort(exc)
            if isinstance(exc, StreamxError):
                exc.add_context(bucket=self.bucket, key=self.key, upload_id=self.upload_id)
            # anything else is the caller's own exception (an on_progress callback that
            # raised): it propagates unchanged, as it does below multipart_threshold (the
            # source's exceptions arrive here already wrapped in SourceError)
            raise

    async def _produce(self, send: Any, head: list[Part]) -> None:
        async with send:
            for part in head:
                await send.send(part)
            while True:
                nxt = await self.producer.next_part()
                if nxt is None:
                    return
                await send.send(nxt)

    def _completed(self) -> None:
        self.finished = True

    async def _abort(self, exc: BaseException) -> None:
        assert self.upload_id is not None
        if self.finished:  # completed; a cancellation or a failure came after
            self.log.info("upload.completed_then_failed", error=type(exc).__name__)
            if self.checkpoint is not None:
                self.checkpoint.remove()
            return
        if self.config.leave_parts_on_error or (
            self.checkpoint is not None and self.checkpoint.keeps_upload
        ):
            if self.uploader is not None and self.uploader.cut:
                note_cut(self.upload_id)
            self.log.warning(
                "upload.failed.parts_kept",
                error=type(exc).__name__,
                upload_id=self.upload_id,
                checkpoint=str(self.checkpoint.path) if self.checkpoint else None,
            )
            return
        await abort_upload(
            self.s3,
            self.bucket,
            self.key,
            self.upload_id,
            config=self.config,
            retry=self.retry,
            log=self.log,
            what="upload",
            cause=exc,
        )
