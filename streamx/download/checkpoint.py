"""Crash-safe resume for ``download_file(..., checkpoint=PATH)``.

**What is recorded.** Once the first range has answered (the object's size
and ETag are known), PATH holds a small JSON document in the style of the
upload checkpoint (:mod:`streamx.checkpoint`): the bucket, key, ETag and size
of the object version being read, the range size, the destination path and
the temporary file the ranges go into, the per-range checksum algorithm, and
every range written so far with its checksum (ranges are numbered: range *i*
is bytes ``[i * range_size, (i + 1) * range_size)``). The file is replaced
atomically with the upload checkpoint's writer (temporary file, fsync,
rename, fsync of the directory), and writes that fall due while one runs
are coalesced. With a checkpoint, a failed or cancelled download (or a
killed process) leaves the temporary file (``.<name>.<random>.streamx-part``
next to the destination) and PATH in place; success renames the temporary
file over the destination and removes PATH.

**Resuming.** The same call with the same PATH asks for the object once
(``HeadObject``): a different ETag or size means the object was replaced,
and :class:`ObjectChangedSinceCheckpoint` (both a
:class:`~streamx.CheckpointError` and an :class:`~streamx.ObjectChangedError`)
says so. Then every recorded range is read back from the temporary file and
its checksum compared with the recorded one (a local read; it catches a
write lost in a power cut, which a recorded-then-crashed process cannot
rule out without an fsync per range); ranges that do not match are fetched
again with the missing ones, all pinned to the recorded ETag (``If-Match``).
The checksums of the kept ranges, recomputed in that read, join those of
the new ranges, so the whole file is still verified against the stored
full-object checksum without reading it again at the end.

**Mismatches** (PATH names another bucket, key or destination, or is not a
download checkpoint) raise :class:`~streamx.CheckpointError`; ``restart=True``
removes the recorded temporary file and PATH and starts over.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from .._checksum import PartChecksum, Running, from_b64
from .._errors import CheckpointError, ObjectChangedSinceCheckpoint
from .._jsonstore import JsonFile, check_path
from .planner import ByteRange

FORMAT = "streamx-download-checkpoint/1"
_HINT = "pass restart=True to start over, or use another checkpoint path"
_READ = 1024 * 1024


@dataclass
class DownloadRecord:
    bucket: str
    key: str
    etag: str | None
    size: int
    range_size: int
    path: str
    temp_path: str
    algorithm: str | None = None  # of the recorded range checksums
    ranges: dict[int, str] = field(default_factory=dict)  # index -> base64 checksum

    def byte_range(self, index: int) -> ByteRange:
        start = index * self.range_size
        return ByteRange(start, min(self.size, start + self.range_size))

    @property
    def count(self) -> int:
        """Ranges in the object (an empty object has one, empty)."""
        return max(1, -(-self.size // self.range_size))

    @property
    def bytes_done(self) -> int:
        return sum(self.byte_range(i).size for i in self.ranges)

    def to_json(self) -> str:
        doc: dict[str, Any] = asdict(self)
        doc["ranges"] = {str(i): v for i, v in sorted(self.ranges.items())}
        doc["bytes_done"] = self.bytes_done
        doc["format"] = FORMAT
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DownloadRecord:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.pop("format", None) != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        doc.pop("bytes_done", None)
        ranges = {int(i): str(v) for i, v in doc.pop("ranges").items()}
        record = cls(**doc, ranges=ranges)
        if record.range_size < 1 or record.size < 0:
            raise ValueError("sizes out of range")
        return record


class DownloadCheckpoint(JsonFile[DownloadRecord]):
    """A download's checkpoint file: load, atomic save (coalesced), remove."""

    kind = "download"
    hint = _HINT

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, DownloadRecord.from_json)

    async def record(self, index: int, checksum: PartChecksum) -> None:
        assert self.current is not None
        self.current.ranges[index] = checksum.b64
        await self.save()


def open_download_checkpoint(path: object, restart: object) -> DownloadCheckpoint | None:
    """Validate ``checkpoint=`` and ``restart=`` of ``download_file`` (before any request)."""
    checked = check_path(path, restart)  # the same rules as for uploads
    return None if checked is None else DownloadCheckpoint(checked)


def check_record(record: DownloadRecord, checkpoint: DownloadCheckpoint, **where: str) -> None:
    """The record is for this download (bucket, key, destination), or CheckpointError."""
    bucket, key, path = where["bucket"], where["key"], where["path"]
    if (record.bucket, record.key) != (bucket, key):
        raise CheckpointError(
            f"checkpoint {checkpoint.path} records a download of s3://{record.bucket}/"
            f"{record.key}; {_HINT}",
            bucket=bucket,
            key=key,
        )
    if record.path != path:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} records a download to {record.path}; {_HINT}",
            bucket=bucket,
            key=key,
        )


def check_version(
    record: DownloadRecord, head: dict[str, Any], checkpoint: DownloadCheckpoint
) -> None:
    """The object is still the version recorded, or :class:`ObjectChangedSinceCheckpoint`."""
    etag, size = head.get("ETag"), int(head.get("ContentLength", -1))
    if etag != record.etag or size != record.size:
        raise ObjectChangedSinceCheckpoint(
            f"s3://{record.bucket}/{record.key} changed since checkpoint {checkpoint.path} was "
            f"written (ETag {record.etag}, {record.size} bytes; now {etag}, {size} bytes): the "
            f"ranges already downloaded belong to the old version; {_HINT}",
            bucket=record.bucket,
            key=record.key,
        )


def reverify(
    temp_path: str, record: DownloadRecord, also: str | None
) -> dict[int, PartChecksum | None]:
    """Re-read the recorded ranges of the temporary file; keep those that match the record.

    Returns ``{index: checksum in `also`}`` for every range whose bytes on
    disk still have the recorded checksum (``None`` values when ``also`` is
    ``None``). Runs in a worker thread; one pass over the kept bytes.
    """
    kept: dict[int, PartChecksum | None] = {}
    algorithm = record.algorithm
    if algorithm is None:
        return kept
    fd = os.open(temp_path, os.O_RDONLY)
    try:
        for index, recorded in sorted(record.ranges.items()):
            r = record.byte_range(index)
            mine, other = Running(algorithm), Running(also) if also and also != algorithm else None
            pos = r.start
            while pos < r.end:
                chunk = os.pread(fd, min(_READ, r.end - pos), pos)
                if not chunk:
                    break
                mine.update(chunk)
                if other is not None:
                    other.update(chunk)
                pos += len(chunk)
            if pos == r.end and mine.result().b64 == recorded:
                if also is None:
                    kept[index] = None
                else:
                    kept[index] = other.result() if other else from_b64(algorithm, recorded, r.size)
    finally:
        os.close(fd)
    return kept
