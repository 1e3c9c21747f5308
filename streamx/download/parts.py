"""Verifying a COMPOSITE-checksum object by fetching it part by part.

A multipart object whose store keeps only the *composite* checksum (a
checksum of the part checksums, ``-N``: MinIO, R2 with CRC32/CRC32C/SHA,
any multipart upload completed with ``ChecksumType=COMPOSITE``) cannot be
checked against bytes fetched in arbitrary ranges. It can be checked part by
part: ``GetObject(PartNumber=n)`` answers with exactly part ``n``
(``Content-Range`` gives its place in the object) and, asked with
``x-amz-checksum-mode: ENABLED``, with that part's own checksum; the
composite value is then the checksum of the concatenated part digests.
This is what the AWS SDK for Go v2 transfer manager
(``feature/s3/transfermanager``) does by default (``GetObjectType`` parts).
Sources: https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
(``partNumber``) and
https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
("the checksum of an individual part ... using GetObject or HeadObject with
a part number").

Only a fresh ``download_file`` without a checkpoint fetches by part (a
checkpoint records fixed-size ranges, which resume keeps using). The first
part's answer decides: no ``Content-Range`` (moto ignores ``PartNumber``)
or no checksum of the part (SeaweedFS) means the store cannot do it, and the
download falls back to ranges before a byte is written. Each part streams to
its offset in the temporary file (memory: one read buffer per part in
flight), its checksum computed as it passes; a part that fails is fetched
again whole.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import FlexibleChecksumError

from .._budget import Reservation
from .._checksum import PartChecksum, Running, composite, param_name
from .._errors import ChecksumError, NetworkError, S3Error, StreamxError
from .._log import log
from .._s3 import map_errors
from .pipeline import DownloadPipeline
from .planner import ByteRange
from .response import changed, parse_content_range, translate_get
from .sink import FileSink
from .verify import ALGORITHMS

_COMPOSITE = re.compile(r"^(.+)-(\d+)$")
_READ = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CompositeChecksum:
    """A composite checksum a HEAD reports: ``value`` is ``b64-N``, ``parts`` is N."""

    algorithm: str
    value: str
    parts: int


def composite_of(head: Mapping[str, Any]) -> CompositeChecksum | None:
    """The composite checksum in a HEAD answer, if it has one with a part count.

    A value with a ``-N`` suffix is composite; a bare value is composite only
    when ``ChecksumType`` says so, and then N comes from ``PartsCount`` or the
    ETag's ``-N`` suffix (moto drops the suffix from a HEAD's value).
    """
    kind = head.get("ChecksumType")
    for algorithm in ALGORITHMS:
        value = head.get(param_name(algorithm))
        if not value:
            continue
        m = _COMPOSITE.match(str(value))
        if m is not None:
            return CompositeChecksum(algorithm, str(value), int(m.group(2)))
        if kind == "COMPOSITE":
            count = head.get("PartsCount")
            if count is None:
                em = re.search(r'-(\d+)"?$', str(head.get("ETag") or ""))
                count = int(em.group(1)) if em else None
            if count:
                return CompositeChecksum(algorithm, f"{value}-{int(count)}", int(count))
    return None


def should_fetch_parts(head: Mapping[str, Any], *, checksum: str, checkpoint: bool) -> bool:
    """Fetch by part number only to verify a composite object, and never with a checkpoint."""
    if checksum == "off" or checkpoint:
        return False
    found = composite_of(head)
    return found is not None and found.parts >= 1


def check_part(
    algorithm: str, header: object, ours: PartChecksum, *, bucket: str, key: str, part: int
) -> None:
    """Raise :class:`~streamx.ChecksumError` unless part ``part`` matches its stored checksum."""
    if str(header) != ours.b64:
        raise ChecksumError(
            f"part {part} has {algorithm} {ours.b64} but the store reports {header} for it: "
            "bytes were changed on the way",
            bucket=bucket,
            key=key,
            part_number=part,
        )


def check_composite(
    expected: CompositeChecksum, parts: list[PartChecksum], *, bucket: str, key: str
) -> None:
    """Raise :class:`~streamx.ChecksumError` unless the parts make the stored composite value."""
    ours = composite(parts) if parts else ""
    if ours != expected.value:
        raise ChecksumError(
            f"the parts' composite {expected.algorithm} is {ours} but the store reports "
            f"{expected.value} for the object",
            bucket=bucket,
            key=key,
        )


class _NotByParts(Exception):
    """The store's answer to PartNumber=1 cannot be used: fall back to ranges."""


class PartDownload:
    """Fetches every part of one object version into a :class:`FileSink`, verified."""

    def __init__(self, pipeline: DownloadPipeline, sink: FileSink, head: Mapping[str, Any]):
        found = composite_of(head)
        assert found is not None
        self.p = pipeline
        self.sink = sink
        self.expected = found
        self.etag = head.get("ETag")
        self.size = int(head.get("ContentLength", 0))
        self.sums: dict[int, PartChecksum] = {}
        self.ends: dict[int, ByteRange] = {}

    async def run(self) -> bool:
        """True when the object was fetched and verified; False: fall back (nothing written)."""
        p = self.p
        try:
            await self._part(1, first=True)
        except _NotByParts as exc:
            log.debug("download.parts.fallback", bucket=p.bucket, key=p.key, reason=str(exc))
            return False

        async def one(n: int, reservation: Reservation) -> None:
            try:
                await self._part(n)
            finally:
                reservation.release()

        # the pipeline's one fan-out: queue_size parts at a time, each holding one read buffer
        budgets = p.budgets(_READ * p.config.queue_size)
        await p.fan_out(range(2, self.expected.parts + 1), budgets, one, cost=lambda n: _READ)
        ordered = [self.ends[n] for n in range(1, self.expected.parts + 1)]
        if ordered[-1].end != self.size or any(
            a.end != b.start for a, b in itertools.pairwise(ordered)
        ):
            raise StreamxError(
                "the parts the store sent do not tile the object", bucket=p.bucket, key=p.key
            )
        parts = [self.sums[n] for n in range(1, self.expected.parts + 1)]
        check_composite(self.expected, parts, bucket=p.bucket, key=p.key)
        log.debug(
            "download.checksum.verified",
            bucket=p.bucket,
            key=p.key,
            algorithm=self.expected.algorithm,
            parts=len(parts),
        )
        p.fetcher.etag, p.fetcher.size = self.etag, self.size
        p.ranges = len(parts)
        return True

    async def _part(self, n: int, *, first: bool = False) -> None:
        p = self.p
        params: dict[str, Any] = {"PartNumber": n, "ChecksumMode": "ENABLED"}
        if self.etag is not None:
            params["IfMatch"] = self.etag

        async def attempt() -> None:
            p.fetcher.requests += 1
            try:
                async with p.s3.get_object(p.bucket, p.key, **params) as response:
                    await self._read(n, response, first)
            except S3Error as exc:
                raise translate_get(exc, p.bucket, p.key, self.etag) from exc

        await p.fetcher.retry.call(attempt, timeout=p.config.part_timeout or None)

    async def _read(self, n: int, response: Mapping[str, Any], first: bool) -> None:
        p = self.p
        sent, total = parse_content_range(response)
        header = response.get(param_name(self.expected.algorithm))
        if first and (sent is None or total != self.size or not header):
            raise _NotByParts("the store sent no Content-Range or no checksum for part 1")
        if first:
            p.progress.total = self.size
            await self.sink.open(self.size)
        seen = response.get("ETag")
        if self.etag is not None and seen is not None and seen != self.etag:
            raise changed(p.bucket, p.key, self.etag, seen)
        length = int(response.get("ContentLength", -1))
        if sent is None or total != self.size or length != sent.size or not header:
            raise StreamxError(
                f"part {n}: the store sent {sent} of {total} bytes without its checksum",
                bucket=p.bucket,
                key=p.key,
                part_number=n,
            )
        running = Running(self.expected.algorithm)
        pos = sent.start
        body = response["Body"]
        while pos < sent.end:
            with map_errors("GetObject", bucket=p.bucket, key=p.key):
                try:
                    chunk = await body.read(min(sent.end - pos, _READ))
                except FlexibleChecksumError as exc:  # botocore's check (ChecksumMode=ENABLED)
                    raise ChecksumError(
                        f"part {n} does not match its stored checksum: {exc}",
                        bucket=p.bucket,
                        key=p.key,
                        part_number=n,
                    ) from exc
            if not chunk:
                raise NetworkError(f"part {n} ended at byte {pos}", bucket=p.bucket, key=p.key)
            running.update(chunk)
            await self.sink.write_at(pos, chunk)
            pos += len(chunk)
        ours = running.result()
        check_part(self.expected.algorithm, header, ours, bucket=p.bucket, key=p.key, part=n)
        self.sums[n], self.ends[n] = ours, sent
        await p.progress.advance(sent.size, parts=1)


async def try_parts(pipeline: DownloadPipeline, sink: FileSink) -> bool:
    """Download a composite-checksum object by part, verified; False: use ranges instead.

    The HEAD it asks is kept (``pipeline.head``) so the range path asks none again.
    """
    if pipeline.config.checksum == "off":
        return False

    async def head() -> dict[str, Any]:
        return await pipeline.s3.head_object(pipeline.bucket, pipeline.key, ChecksumMode="ENABLED")

    try:
        answer = await pipeline.fetcher.retry.call(head)
    except StreamxError:
        return False  # no permission to HEAD, ...: the range path decides what to do
    pipeline.head = answer
    if not should_fetch_parts(answer, checksum=pipeline.config.checksum, checkpoint=False):
        return False
    return await PartDownload(pipeline, sink, answer).run()
