"""Opening a multipart upload: the conditions, the pre-flight HEAD, then Create, shielded.

The conditions are checked against what the store is known to honour (no
request), one HEAD fails a condition that already does not hold before any
part is sent (the authoritative check is at Complete), and
CreateMultipartUpload runs shielded from cancellation: a cancellation that
lands while S3 creates the upload must not lose the UploadId (the upload
would be orphaned and cost money).
"""

from __future__ import annotations

import anyio

from .._checksum import checksum_errors, checksum_type
from .._conditions import preflight
from .._stores import check_conditions, condition_points
from .target import PutTarget


async def create_upload(t: PutTarget) -> tuple[str, bool]:
    """``(UploadId, whether the store acknowledged the checksum algorithm)``.

    With ``t.send_checksums`` the upload is created with ``t.algorithm``; S3, MinIO and
    moto name it back. A store that does not has taken no note of it and will
    neither check nor keep part checksums (rclone): sending them would only cost its
    CPU (about 1.2 CPU-s per GiB), so the caller stops sending them.
    """
    check_conditions(t.store, condition_points("upload", t.conditions, multipart=True))
    await preflight(t.s3, t.bucket, t.key, t.conditions)
    create_args = dict(t.put_args)
    if t.send_checksums and t.algorithm:
        create_args["ChecksumAlgorithm"] = t.algorithm
        create_args["ChecksumType"] = checksum_type(t.algorithm)
    with anyio.CancelScope(shield=True), checksum_errors(t.send_checksums):
        response = await t.s3.create_multipart_upload_response(t.bucket, t.key, **create_args)
    acknowledged = bool(response.get("ChecksumAlgorithm"))
    if t.send_checksums and t.algorithm and not acknowledged:
        t.log.info(
            "upload.checksum.unsupported",
            algorithm=t.algorithm,
            reason="CreateMultipartUpload did not acknowledge the checksum algorithm",
        )
    return str(response["UploadId"]), acknowledged
