"""``download_file``: every range written at its offset into a temporary file, committed
only when all are there and verified.

A new download plans its ranges from the first answer (:func:`.resume.start`),
a checkpointed one reuses what its record holds (:func:`.resume.resume`), and
a composite-checksum object may go part by part (:mod:`.parts`). On failure
the temporary file is removed, or kept when a checkpoint names it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from .._errors import CheckpointError, ChecksumError, ObjectChangedError
from .._objects import DownloadResult
from .checkpoint import DownloadCheckpoint, DownloadRecord
from .parts import try_parts
from .pipeline import DownloadPipeline, range_cost
from .resume import previous_record, resume, start
from .sink import FileSink


async def to_file(
    pipeline: DownloadPipeline,
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
    pipeline.log.info("download.start", path=sink.path, checkpoint=checkpoint is not None)
    record: DownloadRecord | None = None
    if checkpoint is not None:
        record = previous_record(pipeline, checkpoint, sink, restart)
    keep = False  # keep the temporary file on failure: a checkpoint names it
    try:
        async with AsyncExitStack() as stack:  # a new download's first range runs in it
            if record is not None:
                keep = True
                work, sums = await resume(pipeline, record, sink, checkpoint)
            elif checkpoint is None and await try_parts(pipeline, sink):
                return await _done_by_parts(pipeline, sink)
            else:
                work, sums, keep = await start(pipeline, sink, checkpoint, stack)
            await pipeline.fan_out(
                work.pending, work.budgets, work.handle, cost=range_cost, extras=work.extras
            )
        sums.verify(work.count, "downloaded file")
        await sink.commit()
    except BaseException as exc:
        if isinstance(exc, CheckpointError):
            sink.keep()  # the recorded files stay until restart=True
        elif keep and not isinstance(exc, ChecksumError | ObjectChangedError):
            sink.keep()
            pipeline.log.info("download.kept_for_resume", temp_path=sink.temp_path)
        else:  # nothing worth resuming: wrong bytes, another version, or not started
            sink.discard()
            if checkpoint is not None:
                checkpoint.remove()
        raise
    if checkpoint is not None:
        checkpoint.remove()
    await pipeline.progress.finish()
    size = pipeline.fetcher.size or 0
    pipeline.log.info("download.complete", size=size, ranges=pipeline.ranges)
    return pipeline.result(sink.path)


async def _done_by_parts(pipeline: DownloadPipeline, sink: FileSink) -> DownloadResult:
    await sink.commit()
    await pipeline.progress.finish()
    pipeline.log.info("download.complete", size=pipeline.fetcher.size or 0, parts=pipeline.ranges)
    return pipeline.result(sink.path)
