"""Conditional writes: the cheap pre-flight check, and S3's answers turned into one error.

S3 evaluates ``IfNoneMatch="*"`` and ``IfMatch=etag`` where the object appears: on
PutObject, CopyObject and CompleteMultipartUpload. That answer is authoritative. A
multipart upload would only learn it after sending every part, so it first asks
:func:`preflight` (one HeadObject): a key that already exists (``IfNoneMatch``) or no
longer has the ETag (``IfMatch``) fails before any part is sent. The check at Complete
still decides, since another writer may act in between.

A failed condition is :class:`~streamx.PreconditionFailedError`: 412, or 404 NoSuchKey,
which AWS answers to ``IfMatch`` on a key that has no object (minio/minio#21526).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ._checksum import PartChecksum, param_name
from ._errors import NotFoundError, PreconditionFailedError, S3Error, StreamxError
from ._s3 import S3


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip('" ') == b.strip('" ')


def failed(conditions: Mapping[str, Any], message: str, **context: Any) -> PreconditionFailedError:
    what = (
        "IfNoneMatch='*'" if "IfNoneMatch" in conditions else f"IfMatch={conditions['IfMatch']!r}"
    )
    return PreconditionFailedError(
        f"{message}: the condition {what} does not hold; nothing was written",
        code="PreconditionFailed",
        status=412,
        **context,
    )


async def preflight(s3: S3, bucket: str, key: str, conditions: Mapping[str, Any]) -> None:
    """Fail fast (one HEAD) when ``conditions`` already do not hold; silent if unsure."""
    if not conditions:
        return
    try:
        head = await s3.head_object(bucket, key)
    except NotFoundError:
        if "IfMatch" in conditions:
            raise failed(conditions, "the object does not exist", bucket=bucket, key=key) from None
        return
    except StreamxError:  # no s3:GetObject, a 503, a reset: the write itself will tell
        return
    if "IfNoneMatch" in conditions:
        raise failed(conditions, "the object already exists", bucket=bucket, key=key)
    if not _same(head.get("ETag"), conditions.get("IfMatch")):
        raise failed(
            conditions, f"the object's ETag is now {head.get('ETag')}", bucket=bucket, key=key
        )


async def is_our_object(
    s3: S3, bucket: str, key: str, body: Any, checksums: list[PartChecksum]
) -> bool:
    """Whether the object at ``key`` holds exactly ``body`` (its checksum, else its MD5 ETag)."""
    try:
        head = await s3.head_object(bucket, key, ChecksumMode="ENABLED")
    except S3Error:
        return False
    if head.get("ContentLength") != len(body):
        return False
    if checksums:
        stored = head.get(param_name(checksums[0].algorithm))
        if stored:
            return bool(stored == checksums[0].b64)
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    return _same(head.get("ETag"), md5)


@contextmanager
def precondition_errors(conditions: Mapping[str, Any]) -> Iterator[None]:
    """404 NoSuchKey on a write with ``IfMatch`` is a failed precondition, not a missing key."""
    try:
        yield
    except NotFoundError as exc:
        if "IfMatch" in conditions and exc.code in ("NoSuchKey", "404", "NotFound"):
            raise PreconditionFailedError(
                f"{exc.message}; the condition IfMatch={conditions['IfMatch']!r} does not "
                "hold (no object at the key); nothing was written",
                code=exc.code,
                status=exc.status,
                bucket=exc.bucket,
                key=exc.key,
                upload_id=exc.upload_id,
            ) from exc
        raise
