"""One parallel download's state and its one fan-out: dispatcher ──► [queue] ──► fetchers.

::

    first GET (size, ETag) ──► planner ──► dispatcher ──► [queue] ──► RangeFetcher * queue_size
                                           (budget, in order)             │
                               FileSink.write_at(offset)  ◄───────────────┤  (.to_file)
                               Reassembler ──► sink.write ◄───────────────┘  (.to_sink)

The first request asks for the first ``part_size`` bytes and learns the size
and the ETag (a HEAD first would cost a round trip for every small object);
the other ranges are pinned to that ETag. What happens to each range is the
caller's: :mod:`.to_file` writes it at its offset (new, :mod:`.resume`d, or
part by part through :mod:`.parts`), :mod:`.to_sink` reorders it for a writer;
:mod:`.ranges` serves ``get_ranges``.

**Memory bound.** Ranges are held from the moment their bytes are reserved
until they are written: at most ``part_size * queue_size`` bytes for a file
(ranges are written at their offsets as soon as they arrive) and
``part_size * queue_size * 2`` for an ordered sink (``queue_size`` in flight
plus as many waiting for an earlier range), plus the HTTP stack's buffers.
An engine's shared :class:`~streamx.MemoryBudget` bounds it further. A delivered
range's buffer is reused by a later range with its reservation (:mod:`.buffers`).
Each range's body is read by the part sender into its buffer
(:meth:`streamx._s3.S3.get_into`: a worker thread on the default transport).

Any failure (a range, the sink, the progress callback) cancels the siblings
and surfaces once; a file download then removes its temporary file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._budget import MemoryBudget, Reservation
from .._checksum import Running
from .._concurrency import FirstFailure, task_group
from .._context import TransferContext
from .._events import Progress
from .._log import log
from .._objects import DownloadResult
from .buffers import RangeBuffers
from .fetcher import RangeFetcher
from .planner import ByteRange
from .verify import (
    RangeSums,
    probe,
    stored_checksum,
)

#: a range to fetch: its index and its bytes
Indexed = tuple[int, ByteRange]
Item = TypeVar("Item")


def range_cost(item: Indexed) -> int:
    """What fetching a range holds in memory: its bytes."""
    return item[1].size


class _Work(Generic[Item]):
    """An item on its way to a worker, with the memory reserved for it."""

    __slots__ = ("item", "reservation")

    def __init__(self, item: Item, reservation: Reservation) -> None:
        self.item = item
        self.reservation = reservation


class FirstRange:
    """The first ranged GET of a download, running beside the rest of it (see
    :meth:`DownloadPipeline.first_range`): :attr:`learned` is set once its answer's headers
    told the size and ETag, :meth:`take` waits for its bytes."""

    def __init__(self, reservation: Reservation) -> None:
        self.reservation: Reservation | None = reservation
        self.learned = anyio.Event()
        self._done = anyio.Event()
        self._data = bytearray()

    async def run(self, fetcher: RangeFetcher, n: int) -> None:
        loop = asyncio.get_running_loop()

        def told() -> None:  # in the receiving thread (or on the loop): wake the loop
            loop.call_soon_threadsafe(self.learned.set)

        self._data = await fetcher.fetch_first(n, on_size=told)
        self.learned.set()  # an empty object's size comes from a HEAD
        self._done.set()

    async def take(self) -> tuple[bytearray, Reservation]:
        """The first range's bytes and their reservation (the caller's from now on)."""
        await self._done.wait()
        reservation, self.reservation = self.reservation, None
        assert reservation is not None
        data, self._data = self._data, bytearray()
        return data, reservation

    def release(self) -> None:
        if self.reservation is not None:
            self.reservation.release()
            self.reservation = None


class DownloadPipeline:
    """Downloads one object with ``queue_size`` concurrent ranged GETs of ``part_size`` bytes."""

    def __init__(
        self,
        ctx: TransferContext,
        bucket: str,
        key: str,
        *,
        progress: Progress,
    ) -> None:
        config = self.config = ctx.config
        self.s3 = ctx.s3
        self.bucket = bucket
        self.key = key
        self.progress = progress
        self.shared_budget = ctx.budget
        self.fetcher = RangeFetcher(
            ctx.s3,
            bucket,
            key,
            retry=ctx.retry,
            part_timeout=config.part_timeout or None,
            stall_timeout=config.stall_timeout,
        )
        self.log = log.bind(bucket=bucket, key=key)
        self.ranges = 0
        # delivered ranges' buffers, lent to the next ones, pooled in the engine's budget
        self.buffers = RangeBuffers(ctx.budget, config.part_size)
        self.head: dict[str, Any] | None = None  # a HEAD already asked (see .parts)

    @asynccontextmanager
    async def first_range(self, budgets: list[MemoryBudget]) -> AsyncIterator[FirstRange]:
        """The first ``part_size`` bytes, fetched beside the caller's block, which starts as
        soon as the answer's headers have told the object's size and ETag: the other ranges
        (and the checksum probe) go out while the first one's body still arrives, one round
        trip after the call instead of a whole range. The caller takes the bytes and their
        reservation with :meth:`FirstRange.take`; if the block ends before, the reservation
        is released here."""
        first = FirstRange(await self._reserve(budgets, self.config.part_size))
        try:
            async with task_group() as tg:
                tg.start_soon(first.run, self.fetcher, self.config.part_size)
                await first.learned.wait()
                self.progress.total = self.fetcher.size or 0
                yield first
        finally:
            first.release()

    def budgets(self, window: int) -> list[MemoryBudget]:
        budgets = [MemoryBudget(window)]
        if self.shared_budget is not None:
            budgets.append(self.shared_budget)
        return budgets

    async def _reserve(
        self, budgets: list[MemoryBudget], n: int, reservation: Reservation | None = None
    ) -> Reservation:
        """``n`` bytes of each budget ``reservation`` does not hold yet."""
        reservation = reservation if reservation is not None else Reservation()
        try:
            for budget in budgets:
                if not reservation.held(budget):
                    await reservation.take(budget, n)
        except BaseException:
            reservation.release()
            raise
        return reservation

    def result(self, path: str | None) -> DownloadResult:
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

    async def settle(self, sums: RangeSums, first_len: int, fallback: str | None) -> None:
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

    # -- the task group ----------------------------------------------------------------

    async def fan_out(
        self,
        items: Sequence[Item],
        budgets: list[MemoryBudget],
        handle: Callable[[Item, Reservation], Awaitable[None]],
        *,
        cost: Callable[[Item], int],
        extras: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        """Dispatch ``items`` in order to ``queue_size`` workers, reserving ``cost(item)`` first.

        ``handle`` owns the reservation it is given (it releases it when the
        item's memory is free). ``extras`` run in the same group (the
        reassembler, the checksum probe): any failure cancels everything and
        surfaces once. Ranges, whole parts (:mod:`.parts`) and the ranges of
        ``get_ranges`` all go through here.
        """
        if not items and not extras:
            return
        first = FirstFailure()
        self.buffers.dispatching = True
        async with anyio.create_task_group() as tg:
            for extra in extras:
                tg.start_soon(first.run, tg.cancel_scope, extra)
            if items:
                workers = min(self.config.queue_size, len(items))
                send, receive = anyio.create_memory_object_stream[_Work[Item]](0)
                with receive:
                    for _ in range(workers):
                        tg.start_soon(
                            first.run, tg.cancel_scope, self._worker, receive.clone(), handle
                        )
                tg.start_soon(
                    first.run, tg.cancel_scope, self._dispatch, send, items, budgets, cost
                )
        self.buffers.release_all()
        first.raise_if_failed()

    async def _dispatch(
        self,
        send: MemoryObjectSendStream[_Work[Item]],
        items: Sequence[Item],
        budgets: list[MemoryBudget],
        cost: Callable[[Item], int],
    ) -> None:
        buffers = self.buffers
        async with send:
            for item in items:
                size = cost(item)
                reservation = buffers.take(size)  # a delivered range's, with its buffer
                if reservation is None:
                    # an idle buffer of the engine's pool, holding its share of that budget
                    pooled = buffers.unpark(size) if self.shared_budget in budgets else None
                    buffers.waiting = True
                    try:
                        reservation = await self._reserve(budgets, size, pooled)
                    finally:
                        buffers.waiting = False
                    buffers.adopt(reservation, size)
                try:
                    await send.send(_Work(item, reservation))
                except BaseException:
                    reservation.release()
                    raise
                self.ranges += 1
        buffers.release_all()  # nothing more to lend to: kept buffers are let go

    async def _worker(
        self,
        receive: MemoryObjectReceiveStream[_Work[Item]],
        handle: Callable[[Item, Reservation], Awaitable[None]],
    ) -> None:
        async with receive:
            async for work in receive:
                self.progress.parts_in_flight += 1
                try:
                    await handle(work.item, work.reservation)
                finally:
                    self.progress.parts_in_flight -= 1


async def update(running: Running, data: bytes | bytearray | memoryview) -> None:
    if running.algorithm in ("CRC32", "SHA256") and len(data) >= 1024 * 1024:
        await anyio.to_thread.run_sync(running.update, data)
    else:
        running.update(data)
