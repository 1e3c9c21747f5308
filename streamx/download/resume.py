"""Where a file download starts, and what happens to each of its ranges.

:func:`start` begins a new download: the first ranged GET learns the size
and the ETag, then the temporary file is created (after the checkpoint, if
any, names it, so a crash never orphans it). :func:`resume` picks up a
recorded one (see :mod:`.checkpoint`): the object must be the recorded
version, the recorded ranges still in the temporary file are kept, and the
rest are planned. :class:`FileWork` is the per-range bookkeeping shared by
both: write at the offset, checksum (for the full-object check and the
record), record, progress.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio

from .._budget import MemoryBudget, Reservation
from .._errors import CheckpointError, NotFoundError, ObjectChangedSinceCheckpoint
from .checkpoint import (
    DownloadCheckpoint,
    DownloadRecord,
    check_record,
    check_version,
    reverify,
)
from .pipeline import DownloadPipeline, FirstRange, Indexed
from .planner import ByteRange
from .sink import FileSink
from .verify import FALLBACK_ALGORITHM, RangeSums, stored_checksum


def previous_record(
    pipeline: DownloadPipeline, checkpoint: DownloadCheckpoint, sink: FileSink, restart: bool
) -> DownloadRecord | None:
    """The record to resume, checked against this download; with ``restart`` none."""
    try:
        record = checkpoint.load()
    except CheckpointError:
        if not restart:
            raise
        record = None
    if restart:
        if record is not None and sink.is_temp_name(record.temp_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(record.temp_path)
        checkpoint.remove()
        return None
    if record is not None:
        check_record(record, checkpoint, bucket=pipeline.bucket, key=pipeline.key, path=sink.path)
        if not sink.is_temp_name(record.temp_path):
            raise CheckpointError(
                f"checkpoint {checkpoint.path} names {record.temp_path}, which is not a "
                f"temporary file of {sink.path}; pass restart=True to start over",
                bucket=pipeline.bucket,
                key=pipeline.key,
            )
    return record


async def start(
    pipeline: DownloadPipeline,
    sink: FileSink,
    checkpoint: DownloadCheckpoint | None,
    stack: AsyncExitStack,
) -> tuple[FileWork, RangeSums, bool]:
    """A new download: the first range's answer tells size and ETag; the rest are planned
    while its body arrives (it runs in ``stack``, which the caller keeps open around the
    fan-out)."""
    cfg = pipeline.config
    budgets = pipeline.budgets(cfg.part_size * cfg.queue_size)
    first = await stack.enter_async_context(pipeline.first_range(budgets))
    size = pipeline.fetcher.size or 0
    if checkpoint is not None:
        checkpoint.current = DownloadRecord(
            bucket=pipeline.bucket,
            key=pipeline.key,
            etag=pipeline.fetcher.etag,
            size=size,
            range_size=cfg.part_size,
            path=sink.path,
            temp_path=sink.temp_path,
        )
        await checkpoint.save()  # before the file exists: a crash never orphans it
    await sink.open(size)
    sums = RangeSums(pipeline.bucket, pipeline.key)
    work = FileWork(pipeline, sink, sums, checkpoint, budgets, cfg.part_size, size)
    fallback = FALLBACK_ALGORITHM if checkpoint is not None else None
    work.extras.append(lambda: pipeline.settle(sums, min(cfg.part_size, size), fallback))
    work.extras.append(lambda: work.finish_first(first))
    pipeline.ranges = 1
    work.pending = [(i, work.byte_range(i)) for i in range(1, work.count)]
    return work, sums, checkpoint is not None


async def resume(
    pipeline: DownloadPipeline,
    record: DownloadRecord,
    sink: FileSink,
    checkpoint: DownloadCheckpoint | None,
) -> tuple[FileWork, RangeSums]:
    """A recorded download: same version, reuse the kept ranges, fetch the rest."""
    cfg = pipeline.config
    assert checkpoint is not None
    try:
        head = await pipeline.fetcher.retry.call(
            lambda: pipeline.s3.head_object(pipeline.bucket, pipeline.key, ChecksumMode="ENABLED")
        )
    except NotFoundError as exc:
        raise ObjectChangedSinceCheckpoint(
            f"s3://{pipeline.bucket}/{pipeline.key} no longer exists, so checkpoint "
            f"{checkpoint.path} cannot be resumed; pass restart=True to start over",
            bucket=pipeline.bucket,
            key=pipeline.key,
        ) from exc
    check_version(record, head, checkpoint)
    pipeline.fetcher.etag, pipeline.fetcher.size = record.etag, record.size
    sums = RangeSums(pipeline.bucket, pipeline.key)
    if cfg.checksum == "off":
        sums.settle(None, sums.reason, fallback=record.algorithm or FALLBACK_ALGORITHM)
    else:
        expected, reason = stored_checksum(head)
        sums.settle(expected, reason, fallback=record.algorithm or FALLBACK_ALGORITHM)
    sink.temp_path = record.temp_path
    reused = await sink.open(record.size, reuse=True)
    kept: dict[int, Any] = {}
    if reused:
        kept = await anyio.to_thread.run_sync(reverify, sink.temp_path, record, sums.algorithm)
    dropped = sorted(set(record.ranges) - set(kept))
    record.ranges = {i: c.b64 for i, c in kept.items() if c is not None}
    record.algorithm = sums.algorithm
    for i, c in kept.items():
        if c is not None:
            sums.sums[i] = c
    checkpoint.current = record
    await checkpoint.save()
    pipeline.progress.total = record.size
    budgets = pipeline.budgets(record.range_size * cfg.queue_size)
    work = FileWork(pipeline, sink, sums, checkpoint, budgets, record.range_size, record.size)
    work.pending = [(i, work.byte_range(i)) for i in range(work.count) if i not in kept]
    pipeline.log.info(
        "download.resume",
        temp_path=sink.temp_path,
        ranges_kept=len(kept),
        ranges_refetched=len(dropped),
        ranges_missing=len(work.pending),
    )
    await pipeline.progress.advance(record.bytes_done, parts=len(kept))
    return work, sums


class FileWork:
    """The ranges of one file download still to fetch, and what to do with each."""

    def __init__(
        self,
        pipeline: DownloadPipeline,
        sink: FileSink,
        sums: RangeSums,
        checkpoint: DownloadCheckpoint | None,
        budgets: list[MemoryBudget],
        range_size: int,
        size: int,
    ) -> None:
        self.pipeline = pipeline
        self.sink = sink
        self.sums = sums
        self.checkpoint = checkpoint
        self.budgets = budgets
        self.range_size = range_size
        self.size = size
        self.count = max(1, -(-size // range_size))
        self.pending: list[tuple[int, ByteRange]] = []
        self.extras: list[Callable[[], Awaitable[None]]] = []

    def byte_range(self, index: int) -> ByteRange:
        start = index * self.range_size
        return ByteRange(start, min(self.size, start + self.range_size))

    async def finish_first(self, first: FirstRange) -> None:
        """Range 0, whose answer planned the others: write, hash, record once it is in."""
        data, reservation = await first.take()
        try:
            await self.done(0, data)
        finally:
            reservation.release()

    async def done(self, index: int, data: bytearray) -> None:
        if data:
            await self.sink.write_at(index * self.range_size, data)
        checksum = await self.sums.add(index, data)
        if self.checkpoint is not None and checksum is not None:
            assert self.checkpoint.current is not None
            self.checkpoint.current.algorithm = checksum.algorithm
            await self.checkpoint.record(index, checksum)
        await self.pipeline.progress.advance(len(data), parts=1)

    async def handle(self, item: Indexed, reservation: Reservation) -> None:
        index, r = item
        buffers = self.pipeline.buffers
        try:
            buf = await self.pipeline.fetcher.fetch(r, buffers.lent(reservation))
            await self.done(index, buf)
        except BaseException:
            reservation.release()
            raise
        buffers.keep(buf, reservation)  # written: the buffer is reused by a later range
