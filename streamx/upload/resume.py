"""Pausing a push upload and resuming it, here or in another process.

::

    async with engine.open_writer(bucket, key) as writer:
        await writer.write(first_bytes)
        token = await writer.suspend()        # parts kept, nothing completed
    saved = token.to_json()                   # a few hundred bytes plus ~100 per part

    token = ResumeToken.from_json(saved)      # later, anywhere with the same credentials
    async with engine.open_writer(bucket, key, resume=token) as writer:
        await writer.write(everything_from(token.bytes_done))
    await engine.upload(bucket, key, "file.bin", resume=token)   # or: a file, read from there

A token names the bucket, key and UploadId, the part plan, and every part S3
acknowledged in order from part 1 (number, ETag, size, checksum); ``bytes_done``
is their total. Bytes written after ``bytes_done`` (a part that was still
being filled or sent when the writer was suspended) were not kept: write them
again. On resume the parts are checked against S3 (ListParts); a token whose
upload was aborted, completed or lost raises :class:`~streamx.CheckpointError`.
The multipart upload costs storage until it is resumed or aborted (see
``Engine.abort_stale_uploads``).

It is the checkpoint machinery (:mod:`streamx.upload.checkpoint`) with the record held
by the caller instead of a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import CheckpointError
from .checkpoint import Checkpoint, CheckpointFile, PartRecord

FORMAT = "streamx-resume-token/1"


@dataclass(frozen=True)
class ResumeToken:
    """Where a suspended upload stands; :meth:`to_json` / :meth:`from_json` to keep it."""

    bucket: str
    key: str
    upload_id: str | None  # None: suspended before S3 was asked for an upload
    plan_base: int
    plan_interval: int | None
    algorithm: str | None
    send_checksums: bool
    parts: tuple[tuple[int, str, int, str | None], ...]  # (number, ETag, size, checksum)
    bytes_done: int

    def to_json(self) -> str:
        return json.dumps(
            {"format": FORMAT, **self.__dict__, "parts": [list(p) for p in self.parts]},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ResumeToken:
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.pop("format", None) != FORMAT:
                raise ValueError(f"not a {FORMAT} document")
            parts = tuple((int(n), str(e), int(s), c) for n, e, s, c in doc.pop("parts"))
            token = cls(**doc, parts=parts)
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"not a streamx resume token: {exc}") from exc
        if token.bytes_done != sum(p[2] for p in parts):
            raise CheckpointError("the resume token's bytes_done does not match its parts")
        return token

    @classmethod
    def of(cls, bucket: str, key: str, cp: Checkpoint | None, plan: Any) -> ResumeToken:
        """The token for a pipeline's record: the parts 1..k acknowledged without a gap."""
        if cp is None:
            return cls(bucket, key, None, plan.base, plan.interval, None, False, (), 0)
        parts: list[tuple[int, str, int, str | None]] = []
        while (len(parts) + 1) in cp.parts:
            record = cp.parts[len(parts) + 1]
            parts.append((len(parts) + 1, record.etag, record.size, record.checksum))
        return cls(
            bucket=bucket,
            key=key,
            upload_id=cp.upload_id,
            plan_base=cp.plan_base,
            plan_interval=cp.plan_interval,
            algorithm=cp.algorithm,
            send_checksums=cp.send_checksums,
            parts=tuple(parts),
            bytes_done=sum(p[2] for p in parts),
        )

    def checkpoint(self) -> Checkpoint | None:
        if self.upload_id is None:
            return None
        return Checkpoint(
            bucket=self.bucket,
            key=self.key,
            upload_id=self.upload_id,
            plan_base=self.plan_base,
            plan_interval=self.plan_interval,
            size=None,
            algorithm=self.algorithm,
            send_checksums=self.send_checksums,
            parts={n: PartRecord(etag, size, c) for n, etag, size, c in self.parts},
        )


class MemoryCheckpoint(CheckpointFile):
    """A checkpoint held in memory: records parts, writes no file.

    The upload is aborted on failure as usual, unless :attr:`keeps_upload` is set
    (by ``UploadWriter.suspend``).
    """

    keeps_upload = False

    def __init__(self, token: ResumeToken | None = None) -> None:
        super().__init__(Path("<resume token>"))
        self.token = token
        # set for a file source: it is seeked to bytes_done instead of read through
        self.fingerprint: dict[str, Any] | None = None

    def load(self) -> Checkpoint | None:
        cp = self.token.checkpoint() if self.token is not None else None
        if cp is not None:
            cp.fingerprint = self.fingerprint
        return cp

    async def save(self) -> None:
        return None

    def remove(self) -> None:
        return None
