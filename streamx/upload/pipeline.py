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
from .._checksum import checksum_errors, checksum_type, compute, param_name
from .._concurrency import FirstFailure, task_group
from .._conditions import is_our_object, precondition_errors, preflight
from .._config import TransferConfig
from .._errors import (
    CheckpointError,
    ChecksumError,
    ConfigError,
    PreconditionFailedError,
    StreamxError,
)
from .._events import Progress
from .._limits import MAX_OBJECT_SIZE, PartPlan, format_size
from .._log import log
from .._results import UploadResult
from .._retry import RetryPolicy
from .._s3 import S3, split_conditions
from .._stores import UNKNOWN, StoreProfile, check_conditions, condition_points
from ..checkpoint import (
    Checkpoint,
    CheckpointFile,
    PartRecord,
    check_matches,
    committed_prefix,
    dropped_upload,
    fingerprint,
    note_cut,
    seek,
    settle,
)
from .completer import complete, settle_mismatch, verify_checksum
from .parts import Part, PartProducer, WouldWait
from .readahead import ReadAhead
from .source import ChunkSource, Source
from .uploader import CompletedPart, PartUploader, check_not_emptied


def plan_parts(
    config: TransferConfig, size: int | None, max_object_size: int = MAX_OBJECT_SIZE
) -> PartPlan:
    if size is None:
        return PartPlan.for_stream(config.part_size, equal_parts=config.equal_parts)
    return PartPlan.for_known_size(size, config.part_size, max_object_size=max_object_size)


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
        checkpoint: CheckpointFile | None = None,
        restart: bool = False,
        store: StoreProfile = UNKNOWN,
        resolve_store: Callable[[], Awaitable[StoreProfile]] | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.source = source
        self.config = config
        self.progress = progress
        # the conditions go on PutObject / CompleteMultipartUpload only, never on Create
        self.put_args, self.conditions = split_conditions(put_args)
        self.store = store
        self.resolve_store = resolve_store  # probes an unknown store (Engine._store_for)
        self.retry = retry or RetryPolicy(max_attempts=config.max_attempts)
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
        if size is not None and size > store.max_object_size:
            raise ConfigError(
                f"{format_size(size)} is over {store.title}'s "
                f"{format_size(store.max_object_size)} object limit",
                bucket=bucket,
                key=key,
            )
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
        if (
            not isinstance(self.source, ChunkSource)
            or not self.source.readahead
            or self.config.high_water_mark <= 0
        ):
            return None
        readahead = ReadAhead(
            self.source._next_chunk, self.config.high_water_mark, budget=self.shared_budget
        )
        self.source._next_chunk = readahead.next_chunk  # type: ignore[method-assign]
        return readahead

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
            if self.checkpoint is None and size is not None and size >= self.config.multipart_threshold:
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
        """Parts up to the multipart threshold, or the whole source if it is smaller.

        With a budget shared between transfers only the first part may wait
        for budget: a transfer that held part 1 while waiting for room for part 2
        could wait forever, every other transfer holding its own part 1 (hold and
        wait). Further head parts are taken only if the budget has room now;
        otherwise a source between ``part_size`` and ``multipart_threshold``
        goes multipart with what it has.
        """
        head: list[Part] = []
        total = 0
        while not self.producer.eof:
            try:
                part = await self.producer.next_part(
                    wait=not head or self.shared_budget is None
                )
            except WouldWait:
                break
            if self.readahead is not None:
                self.readahead.go()
            if part is None:
                break
            head.append(part)
            total += part.size
            if total >= self.config.multipart_threshold:
                break
        return head

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
        check_conditions(self.store, condition_points("upload", self.conditions, multipart=False))
        body: Any = head[0].data if len(head) == 1 else b"".join(p.data for p in head)
        params = {**self.put_args, **self.conditions}
        checksums = [p.checksum for p in head if p.checksum is not None]
        if self.algorithm and len(head) > 1:
            checksums = [compute(self.algorithm, body)]
        if self.send_checksums and checksums and self.algorithm:
            # naming the algorithm makes stores keep the value (moto stores it only then)
            params["ChecksumAlgorithm"] = self.algorithm
            params[param_name(self.algorithm)] = checksums[0].b64

        async def attempt() -> dict[str, Any]:
            with checksum_errors(self.send_checksums):
                return await self.s3.put_object(
                    self.bucket,
                    self.key,
                    body,
                    stall_timeout=self.config.stall_timeout,
                    **params,
                )

        async def on_retry(attempt_no: int, exc: BaseException) -> None:
            self.progress.bytes_retried += len(body)
            self.log.warning("upload.put.retry", attempt=attempt_no, error=type(exc).__name__)

        try:
            with precondition_errors(self.conditions):
                response = await self.retry.call(
                    attempt, timeout=self.config.part_timeout or None, on_retry=on_retry
                )
        except PreconditionFailedError:
            # after a retry, a 412 may answer our own first attempt (it landed, its
            # answer was lost): the stored object is then ours, byte for byte
            if not self.progress.bytes_retried or not await is_our_object(
                self.s3, self.bucket, self.key, body, checksums
            ):
                raise
            response = await self.s3.head_object(self.bucket, self.key, ChecksumMode="ENABLED")
        # not retried: the same request would be emptied the same way; the object the
        # store now holds is empty, and the error says so
        check_not_emptied(response, len(body), "PutObject", bucket=self.bucket, key=self.key)
        sent = self.algorithm if self.send_checksums else None  # else the store has none
        if self.s3.checksums_untrusted:  # caught reporting wrong values: ours stand
            response = {k: v for k, v in response.items() if not k.startswith("Checksum")}
        try:
            checksum = verify_checksum(
                response, checksums, sent, multipart=False, bucket=self.bucket, key=self.key
            )
        except ChecksumError as exc:  # corrupt bytes, or a store computing wrong: read back
            assert sent is not None
            part = CompletedPart(1, str(response.get("ETag", "")), len(body), checksums[0])
            context = {"bucket": self.bucket, "key": self.key, "upload_id": None}
            checksum = await settle_mismatch(
                self.s3, response, [part], sent, exc, self.config.abort_timeout, context
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

    async def _resume(self, file: CheckpointFile) -> bool:
        """Pick up the upload recorded in ``file``; false if there is none (start fresh)."""
        if self.restart:
            await self._discard(file)
            return False
        cp = file.load()
        if cp is None:
            return False
        check_matches(cp, file.path, self.bucket, self.key, self.source.size)
        self.upload_id = cp.upload_id
        self.log = self.log.bind(upload_id=cp.upload_id)
        await settle(cp.upload_id, self.log)
        k = await committed_prefix(self.s3, cp, self.held)
        self.plan = self.producer.plan = cp.plan
        self.algorithm = cp.algorithm if cp.send_checksums else None
        self.send_checksums = cp.send_checksums
        self.producer.checksum_algorithm = cp.algorithm
        file.current = cp
        offset = cp.bytes_committed
        how = "none"
        if self.source_offset is not None:  # a resumed writer: its bytes start there
            if offset != self.source_offset:
                raise CheckpointError(
                    f"the store holds {offset} bytes of this upload, not the "
                    f"{self.source_offset} of the resume token: parts were lost",
                    bucket=self.bucket,
                    key=self.key,
                    upload_id=cp.upload_id,
                )
            self.producer.resume_at(k + 1, offset)
            how = "offset"
        elif k and await seek(self.source, offset, cp.fingerprint):
            self.producer.resume_at(k + 1, offset)
            how = "seek"
        elif k:
            await self._verify_committed(cp, k)
            how = "read-verify"
            if cp.fingerprint is not None:  # the bytes are as recorded: seek next time
                cp.fingerprint = fingerprint(self.source)
                await file.save()
        for n, record in cp.parts.items():
            self.resumed[n] = CompletedPart(
                n, record.etag, record.size, record.part_checksum(cp.algorithm)
            )
        self.progress.bytes_done = offset
        self.progress.parts_done = k
        self.log.info("upload.resume", parts_committed=k, bytes_committed=offset, skip=how)
        return True

    async def _verify_committed(self, cp: Checkpoint, k: int) -> None:
        """Read parts 1..k of a source that cannot seek and check them against the record."""
        for n in range(1, k + 1):
            part = await self.producer.next_part()
            try:
                record = cp.parts[n]
                got = part.checksum.b64 if part is not None and part.checksum else None
                if part is None or part.size != record.size or got != record.checksum:
                    raise CheckpointError(
                        f"the source's bytes of part {n} differ from those recorded in "
                        f"checkpoint {self.checkpoint.path if self.checkpoint else ''}: the "
                        "source changed; pass restart=True to start over",
                        bucket=self.bucket,
                        key=self.key,
                        upload_id=cp.upload_id,
                        part_number=n,
                    )
            finally:
                if part is not None:
                    self.producer.release(part)

    async def _discard(self, file: CheckpointFile) -> None:
        """restart=True: abort the upload a checkpoint records (if any) and forget it."""
        try:
            old = file.load()
        except CheckpointError:
            old = None
        if old is not None:
            with anyio.move_on_after(self.config.abort_timeout, shield=True):
                try:
                    await self.s3.abort_multipart_upload(old.bucket, old.key, old.upload_id)
                    self.log.info("upload.checkpoint.discarded", old_upload_id=old.upload_id)
                except StreamxError as exc:  # already gone: nothing to abort
                    self.log.info("upload.checkpoint.discarded", error=str(exc))
        file.remove()

    async def _open_multipart(self) -> None:
        """Conditions checked against the store (no request), the pre-flight HEAD (fail
        before sending gigabytes; the authoritative check is at Complete), then Create."""
        check_conditions(self.store, condition_points("upload", self.conditions, multipart=True))
        await preflight(self.s3, self.bucket, self.key, self.conditions)
        self.upload_id = await self._create()

    async def _create(self) -> str:
        create_args = dict(self.put_args)
        if self.send_checksums and self.algorithm:
            create_args["ChecksumAlgorithm"] = self.algorithm
            create_args["ChecksumType"] = checksum_type(self.algorithm)
        # Shielded: a cancellation that lands while S3 creates the upload must not
        # lose the UploadId (the upload would be orphaned and cost money).
        with anyio.CancelScope(shield=True), checksum_errors(self.send_checksums):
            response = await self.s3.create_multipart_upload_response(
                self.bucket, self.key, **create_args
            )
        upload_id = str(response["UploadId"])
        if self.send_checksums and self.algorithm and not response.get("ChecksumAlgorithm"):
            # S3, MinIO and moto name the algorithm back; a store that does not has
            # taken no note of it and will neither check nor keep part checksums
            # (rclone): sending them would only cost its CPU (about 1.2 CPU-s per GiB).
            self.send_checksums = False
            self.store_ignores_checksums = True
            self.log.info(
                "upload.checksum.unsupported",
                algorithm=self.algorithm,
                reason="CreateMultipartUpload did not acknowledge the checksum algorithm",
            )
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
        return upload_id

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
