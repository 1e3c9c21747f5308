"""``download_to``: the object delivered in order to any writer through a bounded reorder window.

Ranges are fetched ``queue_size`` at a time by the pipeline's fan-out and put
back in order by the :class:`.reassembler.Reassembler` (memory:
``part_size * queue_size * 2``).
"""

from __future__ import annotations

from .._budget import Reservation
from .._checksum import Running
from .._objects import DownloadResult
from .pipeline import DownloadPipeline, Indexed, range_cost, update
from .planner import ByteRange, split
from .reassembler import Reassembler
from .sink import OrderedSink
from .verify import FALLBACK_ALGORITHM, RangeSums, check, unverified


async def to_sink(pipeline: DownloadPipeline, sink: OrderedSink) -> DownloadResult:
    """Deliver the object to ``sink`` in order through a bounded reorder window.

    The object's checksum is computed from the bytes as they are handed
    to the sink, in order, and checked after the last one: a sink sees
    every byte before the check can fail (use ``download_file`` to get
    nothing at all on a mismatch).
    """
    cfg = pipeline.config
    budgets = pipeline.budgets(cfg.part_size * cfg.queue_size * 2)
    pipeline.log.info("download.start", sink=sink.description)
    async with pipeline.first_range(budgets) as first:
        size = pipeline.fetcher.size or 0
        rest = list(split(ByteRange(min(cfg.part_size, size), size), cfg.part_size))
        sums = RangeSums(pipeline.bucket, pipeline.key)
        running: list[Running] = []

        async def write(buf: bytearray) -> None:
            if not running:
                await sums.wait()
                if sums.expected is not None:
                    running.append(Running(sums.expected.algorithm))
                else:
                    running.append(Running(FALLBACK_ALGORITHM))  # nothing to check: unused
            if sums.expected is not None:
                await update(running[0], buf)
            if buf:
                await sink.write(buf)

        reassembler = Reassembler(write, buffers=pipeline.buffers)
        pipeline.ranges = 1

        async def put_first() -> None:
            data, reservation = await first.take()
            reassembler.put(0, data, reservation)

        async def fetch_one(item: Indexed, reservation: Reservation) -> None:
            index, r = item
            try:
                buf = await pipeline.fetcher.fetch(r, pipeline.buffers.lent(reservation))
            except BaseException:
                reservation.release()
                raise
            reassembler.put(index, buf, reservation)

        async def delivered(n: int) -> None:
            await pipeline.progress.advance(n, parts=1)

        try:
            await pipeline.fan_out(
                [(i + 1, r) for i, r in enumerate(rest)],
                budgets,
                fetch_one,
                cost=range_cost,
                extras=[
                    put_first,
                    lambda: reassembler.run(len(rest) + 1, delivered),
                    lambda: pipeline.settle(sums, min(cfg.part_size, size), None),
                ],
            )
        finally:
            reassembler.release_all()
    if sums.expected is not None and running:
        check(
            sums.expected,
            running[0].result(),
            bucket=pipeline.bucket,
            key=pipeline.key,
            what="object delivered",
        )
    else:
        unverified(pipeline.bucket, pipeline.key, sums.reason)
    await pipeline.progress.finish()
    pipeline.log.info("download.complete", size=size, ranges=pipeline.ranges)
    return pipeline.result(None)
