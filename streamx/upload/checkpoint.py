"""Crash-safe resume for uploads: ``engine.upload(..., checkpoint=PATH)``.

**What is recorded.** Once the multipart upload exists, and again after each
part S3 acknowledges, PATH holds a small JSON document: the bucket, key and
UploadId, the part-size plan (part 1's size and the doubling interval), the
source's size (when known) and, for a file path, its size and mtime, the
checksum algorithm, and every acknowledged part with its ETag, size and
checksum. Bytes committed = the sum of the recorded sizes. The file is
replaced atomically (write a temporary file in the same directory, fsync it,
rename it over PATH, fsync the directory), so a crash leaves either the old
record or the new one, never a torn one. Writes that fall due while one is
running are coalesced into the next, so parts finishing together cost one
write. With a checkpoint the multipart upload is kept on failure and on
cancellation (``leave_parts_on_error``), since keeping it is the point; it is
removed, with PATH, once the upload completes.

**Resuming.** The same call with the same PATH reads the record and asks S3
(ListParts) which parts it really holds. The committed prefix is parts
1..k that are recorded *and* listed with the same ETag and size; later parts
are sent again (at most about ``queue_size`` of them: parts finish out of
order), so everything that is skipped is both durable and known. Then the
source is brought to byte ``offset_of(k+1)`` of the recorded plan:

* a file path whose size and mtime match the record is *seeked*;
* anything else (bytes, file objects, iterables, streams, a file whose mtime
  changed) is *read* through the committed bytes, and each part's checksum is
  compared with the recorded one before anything new is sent.

**Mismatches** raise :class:`~streamx.CheckpointError` with what differs: the
record names another bucket or key, the upload no longer exists (aborted,
completed, or a server that lost it), the source's size or bytes differ, or
PATH is unreadable. Pass ``restart=True`` to abort the recorded upload and
start over.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .._checksum import PartChecksum, from_b64
from .._errors import CheckpointError, NotFoundError
from .._jsonstore import JsonFile, check_path
from .._limits import PartPlan
from .._s3 import S3

FORMAT = "streamx-upload-checkpoint/1"


@dataclass
class PartRecord:
    etag: str
    size: int
    checksum: str | None  # base64, in the checkpoint's algorithm

    def part_checksum(self, algorithm: str | None) -> PartChecksum | None:
        if algorithm is None or self.checksum is None:
            return None
        return from_b64(algorithm, self.checksum, self.size)


@dataclass
class Checkpoint:
    bucket: str
    key: str
    upload_id: str
    plan_base: int
    plan_interval: int | None
    size: int | None
    algorithm: str | None  # the checksum recorded per part (also when not sent)
    send_checksums: bool
    fingerprint: dict[str, Any] | None = None
    parts: dict[int, PartRecord] = field(default_factory=dict)

    @property
    def plan(self) -> PartPlan:
        return PartPlan(self.plan_base, self.plan_interval)

    @property
    def bytes_committed(self) -> int:
        return sum(p.size for p in self.parts.values())

    def to_json(self) -> str:
        doc = asdict(self)
        doc["parts"] = {str(n): asdict(p) for n, p in sorted(self.parts.items())}
        doc["bytes_committed"] = self.bytes_committed
        doc["format"] = FORMAT
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        doc = json.loads(text)
        if doc.pop("format", None) != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        doc.pop("bytes_committed", None)
        parts = {int(n): PartRecord(**p) for n, p in doc.pop("parts").items()}
        return cls(**doc, parts=parts)


def fingerprint(source: Any) -> dict[str, Any] | None:
    """Size and mtime of a file path source (what makes seeking past its bytes safe)."""
    path = getattr(source, "path", None)
    if not isinstance(path, str):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


async def seek(source: Any, offset: int, recorded: dict[str, Any] | None) -> bool:
    """Move a file path source to ``offset`` if it is unchanged; false: read through instead.

    Uses the path source's lazily opened file handle; any other source (or a
    path source whose internals differ) is read through and verified instead,
    which is always correct, only slower.
    """
    if recorded is None or fingerprint(source) != recorded:
        return False
    if not hasattr(source, "_file") or source._file is not None:
        return False
    import aiofiles

    handle = await aiofiles.open(source.path, "rb", buffering=0)
    await handle.seek(offset)
    source._file = handle
    return True


class CheckpointFile(JsonFile[Checkpoint]):
    """An upload's checkpoint file."""

    keeps_upload = True  # on failure the multipart upload is kept for the resume

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, Checkpoint.from_json)

    async def record(self, number: int, part: PartRecord) -> None:
        assert self.current is not None
        self.current.parts[number] = part
        await self.save()


async def committed_prefix(
    s3: S3, cp: Checkpoint, held: dict[int, tuple[str, int]] | None = None
) -> int:
    """k such that parts 1..k are recorded and held by S3 as recorded; drops later records.

    ``held`` (if given) is filled with the parts after k that the store lists,
    ``{number: (etag, size)}``: parts sent before the failure whose answer
    was not recorded. The upload adopts those whose bytes match (see
    :class:`streamx.upload.uploader.PartUploader`) instead of sending them again.
    """
    try:
        listed = await s3.list_parts(cp.bucket, cp.key, cp.upload_id)
    except NotFoundError as exc:
        raise CheckpointError(
            f"the multipart upload {cp.upload_id} recorded in the checkpoint no longer exists "
            "(aborted, completed or expired); pass restart=True to start over",
            bucket=cp.bucket,
            key=cp.key,
            upload_id=cp.upload_id,
        ) from exc
    listed_parts = {int(p["PartNumber"]): p for p in listed}
    k = 0
    while (k + 1) in cp.parts:
        record, server = cp.parts[k + 1], listed_parts.get(k + 1)
        if server is None or server.get("ETag", "").strip('"') != record.etag.strip('"'):
            break
        if int(server.get("Size", record.size)) != record.size:
            break
        k += 1
    cp.parts = {n: p for n, p in cp.parts.items() if n <= k}
    if held is not None:
        held.update(
            {
                n: (str(p.get("ETag", "")).strip('"'), int(p.get("Size", -1)))
                for n, p in listed_parts.items()
                if n > k
            }
        )
    return k


def check_matches(cp: Checkpoint, path: Path, bucket: str, key: str, size: int | None) -> None:
    """The record is for this transfer (bucket, key, source size), or CheckpointError."""
    hint = "pass restart=True to start over, or use another checkpoint path"
    if (cp.bucket, cp.key) != (bucket, key):
        raise CheckpointError(
            f"checkpoint {path} records an upload to s3://{cp.bucket}/{cp.key}; {hint}",
            bucket=bucket,
            key=key,
        )
    if size is not None and cp.size is not None and size != cp.size:
        raise CheckpointError(
            f"the source is {size} bytes but was {cp.size} when checkpoint {path} was "
            f"written: it changed; {hint}",
            bucket=bucket,
            key=key,
            upload_id=cp.upload_id,
        )


def open_checkpoint(path: object, restart: object) -> CheckpointFile | None:
    """Validate ``checkpoint=`` and ``restart=`` of ``Engine.upload`` (before any request)."""
    checked = check_path(path, restart)
    return None if checked is None else CheckpointFile(checked)


#: Seconds a store may still be busy with part requests cut mid-body (measured on rclone
#: serve s3 1.75, which streams parts to disk in order: resending a part 0.5-1 s after
#: its request was cut failed the whole upload at Complete in 1-5 of 10 runs, after
#: 2 s in none).
SETTLE_SECONDS = 3.0
_cut_at: dict[str, float] = {}  # upload id -> time.monotonic() its parts were cut


def note_cut(upload_id: str) -> None:
    """Parts of ``upload_id`` were cut mid-request in this process, just now."""
    if len(_cut_at) > 1024:
        _cut_at.clear()
    _cut_at[upload_id] = time.monotonic()


async def settle(upload_id: str, log: Any) -> None:
    """Before resending parts of an upload this process cut moments ago, let the store
    finish with the cut requests (an immediate in-process resume; see SETTLE_SECONDS)."""
    cut = _cut_at.pop(upload_id, None)
    if cut is None:
        return
    wait = SETTLE_SECONDS - (time.monotonic() - cut)
    if wait > 0:
        log.info(
            "upload.resume.settle",
            seconds=round(wait, 2),
            reason="parts of this upload were cut mid-request moments ago; the store may "
            "still be processing them",
        )
        await anyio.sleep(wait)


async def dropped_upload(s3: S3, cp: Checkpoint, path: Path, exc: BaseException) -> None:
    """After a resumed upload failed to complete: if the store no longer has the upload,
    raise a :class:`CheckpointError` that says so (the caller removes the checkpoint)."""
    code = getattr(exc, "code", "")
    if code not in ("InvalidPart", "NoSuchUpload"):
        return
    try:
        await s3.list_parts(cp.bucket, cp.key, cp.upload_id)
    except NotFoundError as gone:
        raise CheckpointError(
            f"the store refused to complete the resumed upload ({code}) and no longer has "
            f"it: a part cut mid-request by the earlier failure can leave an upload that "
            f"can never complete (rclone serve s3, which writes parts to disk in order, "
            f"drops such an upload). Nothing was stored and checkpoint {path} was removed: "
            "upload again",
            bucket=cp.bucket,
            key=cp.key,
            upload_id=cp.upload_id,
        ) from gone
    except Exception:  # the upload's own error is the one to raise
        return
