"""``get_ranges``: the bytes of many ranges of one object version, coalesced and in parallel."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from .._budget import Reservation
from .._checksum import Running, combine
from .._context import TransferContext
from .._errors import ConfigError, ConfigTypeError
from .._log import log
from .pipeline import DownloadPipeline, Indexed, range_cost, update
from .planner import DEFAULT_COALESCE_GAP, RangeSpec, check_spec, coalesce, resolve, slice_from
from .verify import check, checksum_of, stored_checksum, unverified


def check_ranges(ranges: object, coalesce_gap: object) -> tuple[list[RangeSpec], int]:
    """``ranges`` and ``coalesce_gap`` of ``Engine.get_ranges``, before any request."""
    if isinstance(ranges, str | bytes) or not isinstance(ranges, Iterable):
        raise ConfigTypeError("ranges must be an iterable of (start, end) pairs")
    specs = [check_spec(r) for r in ranges]
    gap = DEFAULT_COALESCE_GAP if coalesce_gap is None else coalesce_gap
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ConfigError(f"coalesce_gap must be a non-negative int, not {gap!r}")
    return specs, gap


async def get_ranges(
    ctx: TransferContext,
    bucket: str,
    key: str,
    specs: Sequence[RangeSpec],
    *,
    coalesce_gap: int,
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
    s3, config = ctx.s3, ctx.config
    verify = config.checksum != "off"
    head = await s3.head_object(bucket, key, **({"ChecksumMode": "ENABLED"} if verify else {}))
    size = int(head.get("ContentLength", 0))
    wanted = [resolve(spec, size) for spec in specs]
    requests = coalesce(wanted, gap=coalesce_gap, max_size=config.part_size)
    # the pipeline's one fan-out: queue_size requests at a time, in order
    pipeline = DownloadPipeline(ctx, bucket, key, progress=ctx.progress(None))
    fetcher = pipeline.fetcher
    fetcher.etag, fetcher.size = head.get("ETag"), size
    results: list[bytearray] = [bytearray()] * len(requests)
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

    async def one(item: Indexed, reservation: Reservation) -> None:
        i, r = item  # nothing reserved: the caller gets every byte anyway
        try:
            results[i] = await fetcher.fetch(r)
            if whole and expected is not None and expected.combinable:
                sums[i] = await checksum_of(expected.algorithm, results[i])
        finally:
            reservation.release()

    await pipeline.fan_out(list(enumerate(requests)), [], one, cost=range_cost)
    if whole and expected is not None:
        if expected.combinable:
            ours = combine(sums)
        else:  # SHA256: the bytes are all in memory, in order
            running = Running(expected.algorithm)
            for data in results:
                await update(running, data)
            ours = running.result()
        check(expected, ours, bucket=bucket, key=key, what="ranges read")
    elif verify and requests:
        unverified(bucket, key, reason)
    log.debug("download.ranges", bucket=bucket, key=key, asked=len(wanted), requests=len(requests))
    return [slice_from(w, requests, results) for w in wanted]
