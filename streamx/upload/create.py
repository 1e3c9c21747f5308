"""Opening a multipart upload: the conditions, the pre-flight HEAD, then Create, shielded.

The conditions are checked against what the store is known to honour (no
request), one HEAD fails a condition that already does not hold before any
part is sent (the authoritative check is at Complete), and
CreateMultipartUpload runs shielded from cancellation: a cancellation that
lands while S3 creates the upload must not lose the UploadId (the upload
would be orphaned and cost money).
"""

from __future__ import annotations

from typing import Any

import anyio

from .._checksum import checksum_errors, checksum_type
from .._conditions import preflight
from .._s3 import S3
from .._stores import StoreProfile, check_conditions, condition_points


async def create_upload(
    s3: S3,
    bucket: str,
    key: str,
    put_args: dict[str, Any],
    conditions: dict[str, Any],
    store: StoreProfile,
    *,
    algorithm: str | None,
    send_checksums: bool,
    log: Any,
) -> tuple[str, bool]:
    """``(UploadId, whether the store acknowledged the checksum algorithm)``.

    With ``send_checksums`` the upload is created with ``algorithm``; S3, MinIO and
    moto name it back. A store that does not has taken no note of it and will
    neither check nor keep part checksums (rclone): sending them would only cost its
    CPU (about 1.2 CPU-s per GiB), so the caller stops sending them.
    """
    check_conditions(store, condition_points("upload", conditions, multipart=True))
    await preflight(s3, bucket, key, conditions)
    create_args = dict(put_args)
    if send_checksums and algorithm:
        create_args["ChecksumAlgorithm"] = algorithm
        create_args["ChecksumType"] = checksum_type(algorithm)
    with anyio.CancelScope(shield=True), checksum_errors(send_checksums):
        response = await s3.create_multipart_upload_response(bucket, key, **create_args)
    acknowledged = bool(response.get("ChecksumAlgorithm"))
    if send_checksums and algorithm and not acknowledged:
        log.info(
            "upload.checksum.unsupported",
            algorithm=algorithm,
            reason="CreateMultipartUpload did not acknowledge the checksum algorithm",
        )
    return str(response["UploadId"]), acknowledged
