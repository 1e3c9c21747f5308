"""Picking up an upload a checkpoint recorded (see :mod:`.checkpoint` for the record).

:func:`restore` asks the store which recorded parts it really holds, brings the
source to the first byte still to send (an offset the caller gives, a seek of
an unchanged file, or a read through the committed bytes checked against the
record) and sets the producer to go on from there; :func:`discard` is
``restart=True``: the recorded upload is aborted and the record forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

from .._errors import CheckpointError, StreamxError
from .._s3 import S3
from .checkpoint import (
    Checkpoint,
    CheckpointFile,
    check_matches,
    committed_prefix,
    fingerprint,
    seek,
    settle,
)
from .parts import PartProducer
from .source import Source
from .uploader import CompletedPart


@dataclass
class Restored:
    """The recorded upload, picked up: parts ``1..committed`` (``offset`` bytes) are kept."""

    checkpoint: Checkpoint
    committed: int
    offset: int
    parts: dict[int, CompletedPart]


async def restore(
    file: CheckpointFile,
    s3: S3,
    producer: PartProducer,
    source: Source,
    *,
    bucket: str,
    key: str,
    held: dict[int, tuple[str, int]],
    source_offset: int | None,
    log: Any,
) -> Restored | None:
    """The upload ``file`` records, checked and picked up; ``None`` if it records none.

    ``held`` is filled with the parts the store lists beyond the committed ones;
    ``source_offset`` is where a resumed writer's bytes start.
    """
    cp = file.load()
    if cp is None:
        return None
    check_matches(cp, file.path, bucket, key, source.size)
    log = log.bind(upload_id=cp.upload_id)
    await settle(cp.upload_id, log)
    k = await committed_prefix(s3, cp, held)
    producer.plan = cp.plan
    producer.checksum_algorithm = cp.algorithm
    file.current = cp
    offset = cp.bytes_committed
    how = "none"
    if source_offset is not None:  # a resumed writer: its bytes start there
        if offset != source_offset:
            raise CheckpointError(
                f"the store holds {offset} bytes of this upload, not the "
                f"{source_offset} of the resume token: parts were lost",
                bucket=bucket,
                key=key,
                upload_id=cp.upload_id,
            )
        producer.resume_at(k + 1, offset)
        how = "offset"
    elif k and await seek(source, offset, cp.fingerprint):
        producer.resume_at(k + 1, offset)
        how = "seek"
    elif k:
        await _verify_committed(producer, cp, k, file, bucket=bucket, key=key)
        how = "read-verify"
        if cp.fingerprint is not None:  # the bytes are as recorded: seek next time
            cp.fingerprint = fingerprint(source)
            await file.save()
    parts = {
        n: CompletedPart(n, record.etag, record.size, record.part_checksum(cp.algorithm))
        for n, record in cp.parts.items()
    }
    log.info("upload.resume", parts_committed=k, bytes_committed=offset, skip=how)
    return Restored(cp, k, offset, parts)


async def _verify_committed(
    producer: PartProducer, cp: Checkpoint, k: int, file: CheckpointFile, *, bucket: str, key: str
) -> None:
    """Read parts 1..k of a source that cannot seek and check them against the record."""
    for n in range(1, k + 1):
        part = await producer.next_part()
        try:
            record = cp.parts[n]
            got = part.checksum.b64 if part is not None and part.checksum else None
            if part is None or part.size != record.size or got != record.checksum:
                raise CheckpointError(
                    f"the source's bytes of part {n} differ from those recorded in "
                    f"checkpoint {file.path}: the source changed; pass restart=True to "
                    "start over",
                    bucket=bucket,
                    key=key,
                    upload_id=cp.upload_id,
                    part_number=n,
                )
        finally:
            if part is not None:
                producer.release(part)


async def discard(file: CheckpointFile, s3: S3, abort_timeout: float, log: Any) -> None:
    """restart=True: abort the upload a checkpoint records (if any) and forget it."""
    try:
        old = file.load()
    except CheckpointError:
        old = None
    if old is not None:
        with anyio.move_on_after(abort_timeout, shield=True):
            try:
                await s3.abort_multipart_upload(old.bucket, old.key, old.upload_id)
                log.info("upload.checkpoint.discarded", old_upload_id=old.upload_id)
            except StreamxError as exc:  # already gone: nothing to abort
                log.info("upload.checkpoint.discarded", error=str(exc))
    file.remove()
