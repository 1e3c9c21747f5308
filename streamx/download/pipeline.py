"""One parallel download: the task group that wires planner → fetchers → file or reassembler.

::

    first GET (size, ETag) ──► planner ──► dispatcher ──► [queue] ──► RangeFetcher * queue_size
                                           (budget, in order)             │
                               FileSink.write_at(offset)  ◄───────────────┤  (download_file)
                               Reassembler ──► sink.write ◄───────────────┘  (download_to)

The first request asks for the first ``part_size`` bytes and learns the size
and the ETag (a HEAD first would cost a round trip for every small object);
the other ranges are pinned to that ETag.

**Memory bound.** Ranges are held from the moment their bytes are reserved
until they are written: at most ``part_size * queue_size`` bytes for a file
(ranges are written at their offsets as soon as they arrive) and
``part_size * queue_size * 2`` for an ordered sink (``queue_size`` in flight
plus as many waiting for an earlier range), plus the HTTP stack's buffers.
An engine's shared :class:`~streamx.MemoryBudget` bounds it further.

Any failure (a range, the sink, the progress callback) cancels the siblings
and surfaces once; a file download then removes its temporary file.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._budget import MemoryBudget, Reservation
from .._checksum import Running, combine
from .._concurrency import FirstFailure
from .._config import TransferConfig
from .._errors import CheckpointError, ChecksumError, ObjectChangedError
from .._events import Progress
from .._log import log
from .._objects import DownloadResult
from .._retry import RetryPolicy
from .._s3 import S3
from .checkpoint import DownloadCheckpoint, DownloadRecord
from .fetcher import RangeFetcher
from .parts import try_parts
from .planner import ByteRange, RangeSpec, coalesce, resolve, slice_from, split
from .reassembler import Reassembler
from .resume import previous_record, resume, start
from .sink import FileSink, OrderedSink
from .verify import (
    FALLBACK_ALGORITHM,
    RangeSums,
    check,
    checksum_of,
    probe,
    stored_checksum,
    unverified,
)

_Work = tuple[int, ByteRange, Reservation]


class DownloadPipeline:
    """Downloads one object with ``queue_size`` concurrent ranged GETs of ``part_size`` bytes."""

    def __init__(
        self,
        s3: S3,
        bucket: str,
        key: str,
        config: TransferConfig,
        *,
        progress: Progress,
        shared_budget: MemoryBudget | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.config = config
        self.progress = progress
        self.shared_budget = shared_budget
        self.fetcher = RangeFetcher(
            s3,
            bucket,
            key,
            retry=retry or RetryPolicy(max_attempts=config.max_attempts),
            part_timeout=config.part_timeout or None,
            stall_timeout=config.stall_timeout,
        )
        self.log = log.bind(bucket=bucket, key=key)
        self.ranges = 0
        self.head: dict[str, Any] | None = None  # a HEAD already asked (see .parts)

    async def first_range(self, budgets: list[MemoryBudget]) -> tuple[Reservation, Any, int]:
        """The first ``part_size`` bytes, which also tell the object's size and ETag."""
        first = await self._reserve(budgets, self.config.part_size)
        try:
            data = await self.fetcher.fetch_first(self.config.part_size)
        except BaseException:
            first.release()
            raise
        size = self.fetcher.size or 0
        self.progress.total = size
        return first, data, size

    def _budgets(self, window: int) -> list[MemoryBudget]:
        budgets = [MemoryBudget(window)]
        if self.shared_budget is not None:
            budgets.append(self.shared_budget)
        return budgets

    async def _reserve(self, budgets: list[MemoryBudget], n: int) -> Reservation:
        reservation = Reservation()
        try:
            for budget in budgets:
                await reservation.take(budget, n)
        except BaseException:
            reservation.release()
            raise
        return reservation

    def _result(self, path: str | None) -> DownloadResult:
        return DownloadResult(
            bucket=self.bucket,
            key=self.key,
            size=self.fetcher.size or 0,
            etag=self.fetcher.etag,
            ranges=self.ranges,
            requests=self.fetcher.requests,
            path=path,
        )

    # -- the stored checksum ---------------------------------------------------------

    async def _settle(self, sums: RangeSums, first_len: int, fallback: str | None) -> None:
        """Learn the stored full-object checksum (see :mod:`.verify`) and fix ``sums``' algorithm.

        A first answer that held the whole object says it itself (rclone);
        otherwise one ``HeadObject(ChecksumMode=ENABLED)`` runs alongside the
        ranged GETs.
        """
        if self.config.checksum == "off":
            sums.settle(None, sums.reason, fallback=fallback)
            return
        expected, reason = None, "the store reports no checksum for the object"
        size = self.fetcher.size or 0
        if first_len == size and self.fetcher.first_response is not None:
            expected, reason = stored_checksum(self.fetcher.first_response)
        if (
            expected is None
            and self.head is not None
            and self.head.get("ETag") == self.fetcher.etag
        ):
            expected, reason = stored_checksum(self.head)
        elif expected is None:
            expected, reason = await probe(
                self.s3, self.bucket, self.key, self.fetcher.etag, self.fetcher.retry
            )
        sums.settle(expected, reason, fallback=fallback)

    # -- to a file -----------------------------------------------------------------

    async def to_file(
        self,
        sink: FileSink,
        checkpoint: DownloadCheckpoint | None = None,
        *,
        restart: bool = False,
    ) -> DownloadResult:
        """Write every range at its offset into ``sink``; verify; commit only when all are there.

        With a ``checkpoint`` each written range is recorded, the temporary
        file is kept on failure, and a recorded download is resumed (see
        :mod:`.checkpoint`).
        """
        self.log.info("download.start", path=sink.path, checkpoint=checkpoint is not None)
        record: DownloadRecord | None = None
        if checkpoint is not None:
            record = previous_record(self, checkpoint, sink, restart)
        keep = False  # keep the temporary file on failure: a checkpoint names it
        try:
            if record is not None:
                keep = True
                work, sums = await resume(self, record, sink, checkpoint)
            elif checkpoint is None and await try_parts(self, sink):
                return await self._done_by_parts(sink)
            else:
                work, sums, keep = await start(self, sink, checkpoint)
            try:
                await self._fan_out(work.pending, work.budgets, work.handle, extras=work.extras)
            finally:
                work.release()  # range 0's memory, even if its task never got to run
            sums.verify(work.count, "downloaded file")
            await sink.commit()
        except BaseException as exc:
            if isinstance(exc, CheckpointError):
                sink.keep()  # the recorded files stay until restart=True
            elif keep and not isinstance(exc, ChecksumError | ObjectChangedError):
                sink.keep()
                self.log.info("download.kept_for_resume", temp_path=sink.temp_path)
            else:  # nothing worth resuming: wrong bytes, another version, or not started
                sink.discard()
                if checkpoint is not None:
                    checkpoint.remove()
            raise
        if checkpoint is not None:
            checkpoint.remove()
        await self.progress.finish()
        size = self.fetcher.size or 0
        self.log.info("download.complete", size=size, ranges=self.ranges)
        return self._result(sink.path)

    async def _done_by_parts(self, sink: FileSink) -> DownloadResult:
        await sink.commit()
        await self.progress.finish()
        self.log.info("download.complete", size=self.fetcher.size or 0, parts=self.ranges)
        return self._result(sink.path)

    # -- to an ordered sink ----------------------------------------------------------

    async def to_sink(self, sink: OrderedSink) -> DownloadResult:
        """Deliver the object to ``sink`` in order through a bounded reorder window.

        The object's checksum is computed from the bytes as they are handed
        to the sink, in order, and checked after the last one: a sink sees
        every byte before the check can fail (use ``download_file`` to get
        nothing at all on a mismatch).
        """
        cfg = self.config
        budgets = self._budgets(cfg.part_size * cfg.queue_size * 2)
        self.log.info("download.start", sink=sink.description)
        first, data, size = await self.first_range(budgets)
        rest = list(split(ByteRange(min(cfg.part_size, size), size), cfg.part_size))
        sums = RangeSums(self.bucket, self.key)
        running: list[Running] = []

        async def write(buf: bytearray) -> None:
            if not running:
                await sums.wait()
                if sums.expected is not None:
                    running.append(Running(sums.expected.algorithm))
                else:
                    running.append(Running(FALLBACK_ALGORITHM))  # nothing to check: unused
            if sums.expected is not None:
                await _update(running[0], buf)
            if buf:
                await sink.write(buf)

        reassembler = Reassembler(write)
        reassembler.put(0, data, first)
        del data
        self.ranges = 1

        async def fetch_one(work: _Work) -> None:
            index, r, reservation = work
            try:
                buf = await self.fetcher.fetch(r)
            except BaseException:
                reservation.release()
                raise
            reassembler.put(index, buf, reservation)

        async def delivered(n: int) -> None:
            await self.progress.advance(n, parts=1)

        try:
            await self._fan_out(
                [(i + 1, r) for i, r in enumerate(rest)],
                budgets,
                fetch_one,
                extras=[
                    lambda: reassembler.run(len(rest) + 1, delivered),
                    lambda: self._settle(sums, min(cfg.part_size, size), None),
                ],
            )
        finally:
            reassembler.release_all()
        if sums.expected is not None and running:
            check(
                sums.expected,
                running[0].result(),
                bucket=self.bucket,
                key=self.key,
                what="object delivered",
            )
        else:
            unverified(self.bucket, self.key, sums.reason)
        await self.progress.finish()
        self.log.info("download.complete", size=size, ranges=self.ranges)
        return self._result(None)

    # -- the task group ----------------------------------------------------------------

    async def _fan_out(
        self,
        ranges: Sequence[tuple[int, ByteRange]],
        budgets: list[MemoryBudget],
        handle: Callable[[_Work], Awaitable[None]],
        extras: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        """Dispatch ``ranges`` in order (reserving memory first) to ``queue_size`` workers.

        ``extras`` run in the same group (the reassembler, the checksum probe):
        any failure cancels everything and surfaces once.
        """
        if not ranges and not extras:
            return
        first = FirstFailure()
        async with anyio.create_task_group() as tg:
            for extra in extras:
                tg.start_soon(first.run, tg.cancel_scope, extra)
            if ranges:
                workers = min(self.config.queue_size, len(ranges))
                send, receive = anyio.create_memory_object_stream[_Work](0)
                with receive:
                    for _ in range(workers):
                        tg.start_soon(
                            first.run, tg.cancel_scope, self._worker, receive.clone(), handle
                        )
                tg.start_soon(first.run, tg.cancel_scope, self._dispatch, send, ranges, budgets)
        first.raise_if_failed()

    async def _dispatch(
        self,
        send: MemoryObjectSendStream[_Work],
        ranges: Sequence[tuple[int, ByteRange]],
        budgets: list[MemoryBudget],
    ) -> None:
        async with send:
            for index, r in ranges:
                reservation = await self._reserve(budgets, r.size)
                try:
                    await send.send((index, r, reservation))
                except BaseException:
                    reservation.release()
                    raise
                self.ranges += 1

    async def _worker(
        self,
        receive: MemoryObjectReceiveStream[_Work],
        handle: Callable[[_Work], Awaitable[None]],
    ) -> None:
        async with receive:
            async for work in receive:
                self.progress.parts_in_flight += 1
                try:
                    await handle(work)
                finally:
                    self.progress.parts_in_flight -= 1


async def _update(running: Running, data: bytes | bytearray | memoryview) -> None:
    if running.algorithm in ("CRC32", "SHA256") and len(data) >= 1024 * 1024:
        await anyio.to_thread.run_sync(running.update, data)
    else:
        running.update(data)


async def get_ranges(
    s3: S3,
    bucket: str,
    key: str,
    specs: Sequence[RangeSpec],
    config: TransferConfig,
    *,
    coalesce_gap: int,
    retry: RetryPolicy | None = None,
) -> list[bytes]:
    """The bytes of each range in ``specs``, in the order asked.

    One HEAD learns the size, the ETag and the stored checksum (every range
    is checked against the size before any GET, and every GET is pinned to
    the ETag); nearby ranges are coalesced, long ones split into
    ``part_size`` requests, and at most ``queue_size`` requests run at once.
    When the requests cover the whole object, their checksums (combined in
    order) are checked against the stored full-object value; a partial read
    has nothing to be checked against.
    """
    verify = config.checksum != "off"
    head = await s3.head_object(bucket, key, **({"ChecksumMode": "ENABLED"} if verify else {}))
    size = int(head.get("ContentLength", 0))
    wanted = [resolve(spec, size) for spec in specs]
    requests = coalesce(wanted, gap=coalesce_gap, max_size=config.part_size)
    fetcher = RangeFetcher(
        s3,
        bucket,
        key,
        retry=retry or RetryPolicy(max_attempts=config.max_attempts),
        part_timeout=config.part_timeout or None,
        stall_timeout=config.stall_timeout,
        etag=head.get("ETag"),
    )
    fetcher.size = size
    results: list[bytearray] = [bytearray()] * len(requests)
    limiter = anyio.CapacityLimiter(config.queue_size)
    whole = (
        bool(requests)
        and requests[0].start == 0
        and requests[-1].end == size
        and all(a.end == b.start for a, b in itertools.pairwise(requests))
    )
    expected, reason = stored_checksum(head) if verify else (None, "checksum='off'")
    if not whole:
        reason = "only part of the object was read"
    sums: list[Any] = [None] * len(requests)

    async def one(i: int) -> None:
        async with limiter:
            results[i] = await fetcher.fetch(requests[i])
            if whole and expected is not None and expected.combinable:
                sums[i] = await checksum_of(expected.algorithm, results[i])

    first = FirstFailure()
    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(first.run, tg.cancel_scope, one, i)
    first.raise_if_failed()
    if whole and expected is not None:
        if expected.combinable:
            ours = combine(sums)
        else:  # SHA256: the bytes are all in memory, in order
            running = Running(expected.algorithm)
            for data in results:
                await _update(running, data)
            ours = running.result()
        check(expected, ours, bucket=bucket, key=key, what="ranges read")
    elif verify and requests:
        unverified(bucket, key, reason)
    log.debug("download.ranges", bucket=bucket, key=key, asked=len(wanted), requests=len(requests))
    return [slice_from(w, requests, results) for w in wanted]
