"""The completer: orders the ETags and part checksums, completes the upload, checks the result.

**End-to-end check.** With checksums on, the full-object value is derived
from the part values the producer computed (combined CRCs for FULL_OBJECT,
S3's composite form for SHA256) and compared with the value the *store*
computed from the bytes it holds. AWS returns it in the completion response
(and, given the FULL_OBJECT value in the request, refuses to complete on a
mismatch); stores that do not echo it there (moto) are asked with one
``HeadObject(ChecksumMode=ENABLED)``. So a byte changed anywhere between the
producer and the store's disk is caught. When the check fails, the object
that was just stored is corrupt: it is deleted (shielded from cancellation)
and :class:`~streamx.ChecksumError` is raised. A store that reports no
checksum at all (rclone) cannot be checked; the value streamx computed is
returned and ``upload.checksum.unverified`` is logged at debug level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from .._checksum import (
    PartChecksum,
    checksum_errors,
    combine,
    composite,
    param_name,
    supports_full_object,
)
from .._errors import ChecksumError, StreamxError
from .._log import log
from .._results import UploadResult
from .._s3 import S3, map_errors
from .uploader import CompletedPart


class CompletedChecksumError(ChecksumError):
    """The upload completed, but the stored object's checksum is wrong (it was deleted)."""


def expected_checksum(parts: list[PartChecksum], reported: str, kind: str | None = None) -> str:
    """What the store should report for these parts, in the form it reported (composite or full)."""
    if kind == "COMPOSITE" or reported.endswith(f"-{len(parts)}"):
        return composite(parts)
    if kind == "FULL_OBJECT" or supports_full_object(parts[0].algorithm):
        return combine(parts).b64
    return composite(parts)


async def complete(
    s3: S3,
    bucket: str,
    key: str,
    upload_id: str,
    completed: dict[int, CompletedPart],
    *,
    expected_parts: int,
    algorithm: str | None,
    send_checksums: bool = True,
    abort_timeout: float = 30.0,
    on_completed: Callable[[], None] | None = None,
) -> UploadResult:
    """Complete the upload and check the stored object's checksum.

    The CompleteMultipartUpload request is shielded from cancellation: once
    sent, its outcome is learnt (``on_completed`` is called when it
    succeeded), so a cancellation never leaves the caller unsure whether the
    object exists. A cancellation that arrives meanwhile is delivered after.

    ``send_checksums=False`` (the store took no note of the algorithm): the
    request carries no checksums, the store is not asked for one, and the
    result reports the value computed from the bytes read.
    """
    numbers = sorted(completed)
    if numbers != list(range(1, expected_parts + 1)):
        raise StreamxError(
            f"internal error: parts {numbers[:5]}... do not run 1..{expected_parts}",
            bucket=bucket,
            key=key,
            upload_id=upload_id,
        )
    ordered = [completed[n] for n in numbers]
    sums = [p.checksum for p in ordered if p.checksum is not None]
    params: dict[str, Any] = {}
    if send_checksums and algorithm and sums and supports_full_object(algorithm):
        params = {param_name(algorithm): combine(sums).b64, "ChecksumType": "FULL_OBJECT"}
    with anyio.CancelScope(shield=True), checksum_errors(bool(params)):
        response = await s3.complete_multipart_upload(
            bucket,
            key,
            upload_id,
            [p.as_param(with_checksum=send_checksums and algorithm is not None) for p in ordered],
            **params,
        )
    if on_completed is not None:
        on_completed()
    context: dict[str, Any] = {"bucket": bucket, "key": key, "upload_id": upload_id}
    try:
        if send_checksums and algorithm and sums and not response.get(param_name(algorithm)):
            response = {**response, **await _stored_checksum(s3, response, algorithm, **context)}
        checksum = verify_checksum(response, sums, algorithm, multipart=True, **context)
    except ChecksumError as exc:
        await _delete_corrupt(s3, bucket, key, response.get("VersionId"), abort_timeout)
        raise CompletedChecksumError(
            f"{exc.message}; the corrupt object was deleted", **context
        ) from exc
    return UploadResult(
        bucket=bucket,
        key=key,
        etag=str(response.get("ETag", "")),
        size=sum(p.size for p in ordered),
        part_count=len(ordered),
        version_id=response.get("VersionId"),
        upload_id=upload_id,
        checksum=checksum,
        checksum_algorithm=algorithm if checksum else None,
    )


async def _stored_checksum(
    s3: S3, response: dict[str, Any], algorithm: str, **context: Any
) -> dict[str, Any]:
    """The checksum the store computed, from HeadObject; ``{}`` if it keeps none."""
    params: dict[str, Any] = {"ChecksumMode": "ENABLED"}
    version = response.get("VersionId")
    if version and version != "null":
        params["VersionId"] = version
    try:
        head = await s3.head_object(context["bucket"], context["key"], **params)
    except StreamxError as exc:  # e.g. no s3:GetObject permission: cannot check, not a failure
        log.warning("upload.checksum.unverified", reason=str(exc), **context)
        return {}
    found = {k: head[k] for k in (param_name(algorithm), "ChecksumType") if head.get(k)}
    if param_name(algorithm) not in found:  # rclone sends a ChecksumType and no value
        log.debug("upload.checksum.unverified", reason="the store reports no checksum", **context)
        return {}
    etag, stored_etag = response.get("ETag"), head.get("ETag")
    if etag and stored_etag and etag.strip('"') != stored_etag.strip('"'):
        # another writer replaced the object meanwhile: its checksum says nothing
        # about these bytes (and it must not be deleted as corrupt)
        log.warning("upload.checksum.unverified", reason="the object was replaced", **context)
        return {}
    return found


async def _delete_corrupt(
    s3: S3, bucket: str, key: str, version: str | None, seconds: float
) -> None:
    params: dict[str, Any] = {}
    if version and version != "null":
        params["VersionId"] = version
    with anyio.move_on_after(seconds, shield=True):
        try:
            with map_errors("DeleteObject", bucket=bucket, key=key):
                await s3.client.delete_object(Bucket=bucket, Key=key, **params)
        except StreamxError as exc:
            log.error("upload.corrupt_object.delete_failed", bucket=bucket, key=key, error=str(exc))


def verify_checksum(
    response: dict[str, Any],
    parts: list[PartChecksum],
    algorithm: str | None,
    *,
    multipart: bool,
    **context: Any,
) -> str | None:
    """Check the store's full-object checksum against ours; return it (or ours)."""
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
        return ours  # the store keeps no checksum (rclone): report ours
    kind = response.get("ChecksumType")
    expected = expected_checksum(parts, reported, kind) if multipart else ours
    if str(reported).split("-")[0] != expected.split("-")[0]:
        raise ChecksumError(
            f"the store reports {algorithm} {reported} for the object, but the bytes read "
            f"give {expected}; the data was changed on the way",
            **context,
        )
    return expected  # S3's form: "-N" on a composite value, which some stores leave off
