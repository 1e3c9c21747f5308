"""The completer: orders the ETags and part checksums and completes the upload.

With checksums on, the full-object value is derived from the part values
(combined CRCs, or S3's composite form) and compared with what S3 reports, so
a byte changed anywhere between the producer and the store is caught.
"""

from __future__ import annotations

from typing import Any

from .._checksum import PartChecksum, combine, composite, param_name, supports_full_object
from .._errors import ChecksumError, StreamxError
from .._results import UploadResult
from .._s3 import S3
from .uploader import CompletedPart


def expected_checksum(parts: list[PartChecksum], reported: str) -> str:
    """What S3 should report for these parts, in the form it reported (composite or full)."""
    if reported.endswith(f"-{len(parts)}"):
        return composite(parts)
    return combine(parts).b64


async def complete(
    s3: S3,
    bucket: str,
    key: str,
    upload_id: str,
    completed: dict[int, CompletedPart],
    *,
    expected_parts: int,
    algorithm: str | None,
) -> UploadResult:
    numbers = sorted(completed)
    if numbers != list(range(1, expected_parts + 1)):
        raise StreamxError(
            f"internal error: parts {numbers[:5]}... do not run 1..{expected_parts}",
            bucket=bucket,
            key=key,
            upload_id=upload_id,
        )
    ordered = [completed[n] for n in numbers]
    response = await s3.complete_multipart_upload(
        bucket, key, upload_id, [p.as_param() for p in ordered]
    )
    size = sum(p.size for p in ordered)
    checksum = verify_checksum(
        response,
        [p.checksum for p in ordered if p.checksum is not None],
        algorithm,
        multipart=True,
        bucket=bucket,
        key=key,
        upload_id=upload_id,
    )
    return UploadResult(
        bucket=bucket,
        key=key,
        etag=str(response.get("ETag", "")),
        size=size,
        part_count=len(ordered),
        version_id=response.get("VersionId"),
        upload_id=upload_id,
        checksum=checksum,
        checksum_algorithm=algorithm if checksum else None,
    )


def verify_checksum(
    response: dict[str, Any],
    parts: list[PartChecksum],
    algorithm: str | None,
    *,
    multipart: bool,
    **context: Any,
) -> str | None:
    """Check S3's reported full-object checksum against ours; return it (or ours)."""
    if not algorithm or not parts:
        return None
    if not multipart:
        ours = parts[0].b64
    elif supports_full_object(algorithm):
        ours = combine(parts).b64
    else:
        ours = composite(parts)
    reported = response.get(param_name(algorithm))
    if not reported:
        return ours  # the store does not echo checksums (rclone): report ours
    expected = expected_checksum(parts, reported) if multipart else ours
    if str(reported).split("-")[0] != expected.split("-")[0]:
        raise ChecksumError(
            f"the store reports {algorithm} {reported} for the object, but the bytes read "
            f"give {expected}; the data was changed on the way",
            **context,
        )
    return str(reported)
