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

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._budget import MemoryBudget, Reservation
from .._config import TransferConfig
from .._events import Progress
from .._objects import DownloadResult
from .._retry import RetryPolicy
from .._s3 import S3
from .fetcher import RangeFetcher
from .planner import ByteRange, RangeSpec, coalesce, resolve, slice_from, split
from .reassembler import Reassembler
from .sink import FileSink, OrderedSink

log = structlog.get_logger("streamx")

_Work = tuple[int, ByteRange, Reservation]


class FirstFailure:
    """Runs tasks in one group; the first failure cancels the rest and is kept to raise once."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    async def run(
        self, scope: anyio.CancelScope, fn: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            if self.error is None:
                self.error = exc
            scope.cancel()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error


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
        )
        self.log = log.bind(bucket=bucket, key=key)
        self.ranges = 0

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

    # -- to a file -----------------------------------------------------------------

    async def to_file(self, sink: FileSink) -> DownloadResult:
        """Write every range at its offset into ``sink``; commit only when all are there."""
        cfg = self.config
        budgets = self._budgets(cfg.part_size * cfg.queue_size)
        self.log.info("download.start", path=sink.path)
        try:
            first = await self._reserve(budgets, cfg.part_size)
            try:
                data = await self.fetcher.fetch_first(cfg.part_size)
                size = self.fetcher.size or 0
                self.progress.total = size
                await sink.open(size)
                await sink.write_at(0, data)
            finally:
                first.release()
            self.ranges = 1
            await self.progress.advance(len(data), parts=1)
            del data
            rest = list(split(ByteRange(min(cfg.part_size, size), size), cfg.part_size))

            async def fetch_and_write(work: _Work) -> None:
                _, r, reservation = work
                try:
                    buf = await self.fetcher.fetch(r)
                    await sink.write_at(r.start, buf)
                finally:
                    reservation.release()
                await self.progress.advance(r.size, parts=1)

            await self._fan_out(rest, budgets, fetch_and_write)
            await sink.commit()
            await self.progress.finish()
        except BaseException:
            sink.discard()
            raise
        self.log.info("download.complete", size=size, ranges=self.ranges)
        return self._result(sink.path)

    # -- to an ordered sink ----------------------------------------------------------

    async def to_sink(self, sink: OrderedSink) -> DownloadResult:
        """Deliver the object to ``sink`` in order through a bounded reorder window."""
        cfg = self.config
        budgets = self._budgets(cfg.part_size * cfg.queue_size * 2)
        self.log.info("download.start", sink=sink.description)
        first = await self._reserve(budgets, cfg.part_size)
        try:
            data = await self.fetcher.fetch_first(cfg.part_size)
            size = self.fetcher.size or 0
            self.progress.total = size
            if data:
                await sink.write(data)
        finally:
            first.release()
        self.ranges = 1
        await self.progress.advance(len(data), parts=1)
        del data
        rest = list(split(ByteRange(min(cfg.part_size, size), size), cfg.part_size))

        async def write(buf: bytearray) -> None:
            await sink.write(buf)

        reassembler = Reassembler(write)

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
                rest, budgets, fetch_one, extra=lambda: reassembler.run(len(rest), delivered)
            )
        finally:
            reassembler.release_all()
        await self.progress.finish()
        self.log.info("download.complete", size=size, ranges=self.ranges)
        return self._result(None)

    # -- the task group ----------------------------------------------------------------

    async def _fan_out(
        self,
        ranges: Sequence[ByteRange],
        budgets: list[MemoryBudget],
        handle: Callable[[_Work], Awaitable[None]],
        extra: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Dispatch ``ranges`` in order (reserving memory first) to ``queue_size`` workers."""
        if not ranges:
            return
        first = FirstFailure()
        workers = min(self.config.queue_size, len(ranges))
        async with anyio.create_task_group() as tg:
            send, receive = anyio.create_memory_object_stream[_Work](0)
            with receive:
                for _ in range(workers):
                    tg.start_soon(first.run, tg.cancel_scope, self._worker, receive.clone(), handle)
            tg.start_soon(first.run, tg.cancel_scope, self._dispatch, send, ranges, budgets)
            if extra is not None:
                tg.start_soon(first.run, tg.cancel_scope, extra)
        first.raise_if_failed()

    async def _dispatch(
        self,
        send: MemoryObjectSendStream[_Work],
        ranges: Sequence[ByteRange],
        budgets: list[MemoryBudget],
    ) -> None:
        async with send:
            for index, r in enumerate(ranges):
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

    One HEAD learns the size and the ETag (every range is checked against the
    size before any GET, and every GET is pinned to the ETag); nearby ranges
    are coalesced, long ones split into ``part_size`` requests, and at most
    ``queue_size`` requests run at once.
    """
    head = await s3.head_object(bucket, key)
    size = int(head.get("ContentLength", 0))
    wanted = [resolve(spec, size) for spec in specs]
    requests = coalesce(wanted, gap=coalesce_gap, max_size=config.part_size)
    fetcher = RangeFetcher(
        s3,
        bucket,
        key,
        retry=retry or RetryPolicy(max_attempts=config.max_attempts),
        part_timeout=config.part_timeout or None,
        etag=head.get("ETag"),
    )
    fetcher.size = size
    results: list[bytearray] = [bytearray()] * len(requests)
    limiter = anyio.CapacityLimiter(config.queue_size)

    async def one(i: int) -> None:
        async with limiter:
            results[i] = await fetcher.fetch(requests[i])

    first = FirstFailure()
    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(first.run, tg.cancel_scope, one, i)
    first.raise_if_failed()
    log.debug("download.ranges", bucket=bucket, key=key, asked=len(wanted), requests=len(requests))
    return [slice_from(w, requests, results) for w in wanted]
