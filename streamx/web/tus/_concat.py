"""The tus concatenation extension: partial uploads, then one final upload made of them.

A *partial* upload (``Upload-Concat: partial``) is an ordinary tus upload whose bytes
become a helper object, ``<state_prefix><id>.data``, instead of the user's object; its
info stays (completed) until a final upload uses it or it expires. A *final* upload
(``Upload-Concat: final;/tus/a /tus/b``) names completed partials of the same user; the
server builds the object at once, as one multipart upload:

* a partial of at least 5 MiB (S3's minimum for every part but the last) becomes a part
  by **UploadPartCopy**, inside the store, no byte through this server (split into
  ranges of at most 5 GiB, S3's maximum part);
* partials smaller than 5 MiB cannot be parts of their own: their bytes (and, if needed,
  the first bytes of the partial after them) are read back with ranged GETs and sent as
  one 5 MiB part, so at most one such part (5 MiB) is held at a time. tus-js-client's
  ``parallelUploads`` on a small file makes such partials;
* on a store without a working UploadPartCopy (``rclone serve s3`` sends empty parts;
  the store profile says so) every part is read back and sent, ``part_size`` at a time.

The Complete carries ``If-None-Match: *`` under ``overwrite=False``, like any tus upload;
afterwards the partials' helper objects are deleted, and the bucket holds the object and
nothing else. :func:`plan_parts` is the pure part plan (unit-tested).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import anyio

from ..._limits import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE
from ..._log import log
from ._patch import PatchWriter
from ._protocol import TusError, check_upload_id

Range = tuple[int, int, int]  # (partial index, start, end): bytes [start, end) of a partial


def plan_parts(sizes: Sequence[int], *, copy: bool, part_size: int) -> list[list[Range]]:
    """The parts of the concatenation of partials of ``sizes``, each a list of ranges.

    With ``copy`` a part that is one whole range of at least :data:`MIN_PART_SIZE` is
    meant for UploadPartCopy; every other part is read and sent, and is exactly
    ``MIN_PART_SIZE`` long (``part_size`` without ``copy``), except the last.
    """
    target = MIN_PART_SIZE if copy else part_size
    parts: list[list[Range]] = []
    pending: list[Range] = []
    held = 0
    for index, size in enumerate(sizes):
        pos = 0
        while pos < size:
            left = size - pos
            if copy and not pending and left >= MIN_PART_SIZE:
                count = math.ceil(left / MAX_PART_SIZE)
                step = math.ceil(left / count)
                while pos < size:
                    end = min(size, pos + step)
                    parts.append([(index, pos, end)])
                    pos = end
                break
            take = min(left, target - held)
            pending.append((index, pos, pos + take))
            held += take
            pos += take
            if held == target:
                parts.append(pending)
                pending, held = [], 0
    if pending or not parts:
        parts.append(pending)
    return parts


def is_copy(part: list[Range], copy: bool) -> bool:
    return copy and len(part) == 1 and part[0][2] - part[0][1] >= MIN_PART_SIZE


def parse_final(value: str) -> list[str]:
    """``final;/files/a /files/b`` (URLs or paths) -> the upload ids, in order."""
    head, _, rest = value.partition(";")
    if head.strip() != "final" or not rest.strip():
        raise TusError(400, "Upload-Concat must be 'partial' or 'final;<url> <url> ...'")
    urls = rest.split()
    if len(urls) > MAX_PARTS:
        raise TusError(400, f"a final upload takes at most {MAX_PARTS} partial uploads")
    ids = []
    for url in urls:
        upload = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        try:
            ids.append(check_upload_id(upload))
        except TusError:
            raise TusError(400, f"Upload-Concat names no upload of this server: {url[:80]!r}")
    return ids


class Concatenation:
    """Builds one final object from completed partial uploads (see the module docstring)."""

    def __init__(
        self, writer: PatchWriter, sources: list[str], sizes: list[int], *, copy: bool
    ) -> None:
        self.writer = writer  # the final upload's: its part sender and its Complete
        self.sources = sources  # the partials' data keys
        self.sizes = sizes
        self.copy = copy

    async def _read(self, ranges: list[Range]) -> bytes:
        store = self.writer.store
        out = bytearray()
        for index, start, end in ranges:
            if start == end:
                continue

            data = await store.engine.get_range(store.bucket, self.sources[index], start, end)
            if len(data) != end - start:
                raise TusError(500, "a partial upload's data is shorter than its info says")
            out += data
        return bytes(out)

    async def _copy(self, number: int, rng: Range) -> list[Any]:
        writer = self.writer
        store, info = writer.store, writer.info
        index, start, end = rng
        upload_id = await writer.multipart_id()
        etag = await writer.multipart.copy_part(
            store.bucket,
            info.key,
            upload_id,
            number,
            self.sources[index],
            start,
            end,
            config=writer.config,
        )
        return [number, etag, end - start]

    async def run(self) -> None:
        """Send every part and complete (the caller holds the final upload's lock)."""
        writer, info = self.writer, self.writer.info
        plan = plan_parts(self.sizes, copy=self.copy, part_size=info.plan.size_of(1))
        if len(plan) > MAX_PARTS:
            raise TusError(413, f"the partial uploads would need more than {MAX_PARTS} parts")
        last: bytes = b""
        for number, part in enumerate(plan, 1):
            if number == len(plan) and not is_copy(part, self.copy):
                last = await self._read(part)  # sent by the Complete below, as for a PATCH
                break
            if is_copy(part, self.copy):
                info.parts.append(await self._copy(number, part[0]))
            else:
                info.parts.append(await writer.upload_part(number, await self._read(part)))
        log.info("tus.concatenated", upload=info.id, key=info.key, parts=len(plan))
        with anyio.CancelScope(shield=True):
            await writer.complete_with(memoryview(last))
