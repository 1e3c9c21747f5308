"""The completer: orders the ETags and part checksums, completes the upload, checks the result.

**End-to-end check.** With checksums on, the full-object value is derived
from the part values the producer computed (combined CRCs for FULL_OBJECT,
S3's composite form for SHA256) and compared with the value the *store*
computed from the bytes it holds. AWS returns it in the completion response
(and, given the FULL_OBJECT value in the request, refuses to complete on a
mismatch); stores that do not echo it there (moto) are asked with one
``HeadObject(ChecksumMode=ENABLED)``. So a byte changed anywhere between the
producer and the store's disk is caught.

**Delete only on proof.** A mismatch means either the bytes are corrupt or the
store computes its checksum wrong (moto without the optional ``crc32c`` package
computes CRC32 where CRC32C was asked, and echoes the CRC32C algorithm with that
value). So before anything is deleted the object is read back (one streamed GET
pinned to its ETag) and its bytes checked against the part checksums the
producer computed. Bytes that differ are proof: the object is deleted (shielded
from cancellation) and :class:`CompletedChecksumError` is raised. Bytes that
match mean the store's checksum is wrong: the object is kept, its right value
returned, ``upload.checksum.store_wrong`` logged once per store, and that
store's checksums are not compared again (``S3.checksums_untrusted``). A
read-back that fails decides nothing: the object is kept and a
:class:`~streamx.ChecksumError` says so. A store that reports no
checksum at all (rclone) cannot be checked; the value streamx computed is
returned and ``upload.checksum.unverified`` is logged at debug level.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio

from .._checksum import (
    PartChecksum,
    Running,
    checksum_errors,
    combine,
    composite,
    param_name,
    supports_full_object,
)
from .._conditions import precondition_errors
from .._errors import ChecksumError, CompletedChecksumError, StreamxError
from .._log import log
from .._results import UploadResult
from .._s3 import S3, map_errors
from .uploader import CompletedPart


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
    conditions: Mapping[str, Any] | None = None,
) -> UploadResult:
    """Complete the upload and check the stored object's checksum.

    The CompleteMultipartUpload request is shielded from cancellation: once
    sent, its outcome is learnt (``on_completed`` is called when it
    succeeded), so a cancellation never leaves the caller unsure whether the
    object exists. A cancellation that arrives meanwhile is delivered after.

    ``send_checksums=False`` (the store took no note of the algorithm): the
    request carries no checksums, the store is not asked for one, and the
    result reports the value computed from the bytes read.

    ``conditions`` (``IfNoneMatch``/``IfMatch``) go on the request: S3 evaluates them
    here, and a failed one raises :class:`~streamx.PreconditionFailedError` (the caller
    aborts the upload; nothing was written).
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
    params.update(conditions or {})
    with (
        anyio.CancelScope(shield=True),
        checksum_errors(bool(params)),
        precondition_errors(conditions or {}),
    ):
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
    untrusted = s3.checksums_untrusted
    try:
        if untrusted:  # this store was caught computing wrong checksums: ours stand
            response = {k: v for k, v in response.items() if k != param_name(algorithm or "")}
        elif send_checksums and algorithm and sums and not response.get(param_name(algorithm)):
            response = {**response, **await _stored_checksum(s3, response, algorithm, **context)}
        checksum = verify_checksum(response, sums, algorithm, multipart=True, **context)
    except ChecksumError as exc:
        assert algorithm is not None
        checksum = await settle_mismatch(
            s3, response, ordered, algorithm, exc, abort_timeout, context
        )
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


async def settle_mismatch(
    s3: S3,
    response: dict[str, Any],
    parts: list[CompletedPart],
    algorithm: str,
    exc: ChecksumError,
    seconds: float,
    context: dict[str, Any],
) -> str:
    """The store's checksum differs from ours: read the object back and decide (see above).

    Returns our value when the bytes are intact; raises otherwise. Used after a
    CompleteMultipartUpload and after a single PutObject alike.
    """
    if any(p.checksum is None for p in parts):  # nothing to compare a read-back with
        raise ChecksumError(f"{exc.message}; the object was kept: check it", **context) from exc
    try:
        intact = await _read_back_matches(s3, response, parts, algorithm, **context)
    except StreamxError as read_exc:
        raise ChecksumError(
            f"{exc.message}. Reading the object back to tell corrupt bytes from a wrong "
            f"store checksum failed ({type(read_exc).__name__}); the object was kept: "
            "check it before relying on it",
            **context,
        ) from read_exc
    if not intact:
        await _delete_corrupt(
            s3, context["bucket"], context["key"], response.get("VersionId"), seconds
        )
        raise CompletedChecksumError(
            f"{exc.message}; reading it back confirmed it: the corrupt object was deleted",
            **context,
        ) from exc
    if not s3.checksums_untrusted:
        log.warning(
            "upload.checksum.store_wrong",
            algorithm=algorithm,
            reason="the store reports a checksum its own bytes do not have; the object was "
            "read back, is intact and was kept; this store's checksums are not compared again",
            **context,
        )
    s3.checksums_untrusted = True
    sums = [p.checksum for p in parts if p.checksum is not None]
    return combine(sums).b64 if supports_full_object(algorithm) else composite(sums)


async def _read_back_matches(
    s3: S3, response: dict[str, Any], parts: list[CompletedPart], algorithm: str, **context: Any
) -> bool:
    """Stream the object (pinned to its ETag) and check each part's bytes against ours."""
    params: dict[str, Any] = {}
    if response.get("ETag"):
        params["IfMatch"] = response["ETag"]
    version = response.get("VersionId")
    if version and version != "null":
        params["VersionId"] = version
    index, running, intact = 0, Running(algorithm), True

    def part_done() -> None:
        nonlocal index, running, intact
        ours = parts[index].checksum
        intact = intact and ours is not None and running.result().raw == ours.raw
        index, running = index + 1, Running(algorithm)

    async with s3.get_object(context["bucket"], context["key"], **params) as got:
        body = got["Body"]
        while intact and (chunk := await body.read(1024 * 1024)):
            view = memoryview(chunk)
            while view and intact:
                if index >= len(parts):
                    return False  # longer than what was sent
                take = min(len(view), parts[index].size - running.length)
                running.update(view[:take])
                view = view[take:]
                if running.length == parts[index].size:
                    part_done()
    while intact and index < len(parts) and running.length == parts[index].size:
        part_done()  # an empty object's one part
    return intact and index == len(parts)


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
