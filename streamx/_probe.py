"""``Engine.probe``: find out what an unknown store honours, with one scratch key.

Every condition point of :data:`streamx._stores.POINTS` is tried where it cannot
hurt: on a scratch object ``.streamx-probe-<random>`` written for the purpose, with a
condition that must fail (``IfNoneMatch="*"`` on the existing scratch key, ``IfMatch``
with an ETag no object has). A 412 means the store honours it; a success means it
ignored it (only the scratch object was replaced). The same PUT tells whether the
store accepts ``x-amz-checksum-*`` headers. Multipart uploads opened here are
aborted and the scratch key deleted whatever happens (shielded, time-boxed).

Every request goes through the engine's :class:`~streamx._retry.RetryPolicy`: a
503/SlowDown, a 5xx or a dropped connection is retried like any other request, and
only a 412 or a refusal (400/501) is read as an answer about the store. A retryable
failure that outlasts the attempts fails the probe (it is never taken to mean "ignored").

About 15 small requests; the result is cached on the engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from ._checksum import compute
from ._errors import PreconditionFailedError, S3Error, StreamxError
from ._log import log
from ._retry import RetryPolicy, is_retryable
from ._s3 import S3
from ._stores import POINTS, PROFILES, StoreProfile

_NO_SUCH_ETAG = '"00000000000000000000000000000000"'
_BODY = b"streamx store probe: safe to delete\n"
# Server header markers that name one product. "AmazonS3" is not one of them: rclone
# serve s3 and other S3-compatible servers send it too (AWS itself is known by its host).
_SERVERS = (("minio", "minio"), ("seaweedfs", "seaweedfs"))


async def _honoured(call: Callable[[], Awaitable[Any]], retry: RetryPolicy) -> bool:
    """True for a 412 (the condition was checked); False if the write went through."""
    try:
        await retry.call(call)
    except PreconditionFailedError:
        return True
    except S3Error as exc:
        if is_retryable(exc):
            raise  # still throttled or failing after every attempt: no answer
        return False  # 400/501: the condition is not understood, so not honoured
    return False


async def probe(
    s3: S3, bucket: str, base: StoreProfile, retry: RetryPolicy | None = None
) -> StoreProfile:
    """Probe ``bucket``'s store; ``retry`` (default: :class:`RetryPolicy`'s) for each request."""
    retry = retry or RetryPolicy()
    key = f".streamx-probe-{uuid.uuid4().hex}"
    found: dict[str, bool] = {}
    uploads: list[str] = []
    facts: dict[str, Any] = {}
    try:
        value = compute("CRC32C", _BODY).b64
        try:
            put = await retry.call(
                lambda: s3.put_object(
                    bucket, key, _BODY, ChecksumAlgorithm="CRC32C", ChecksumCRC32C=value
                )
            )
            facts["checksum_headers"] = True
        except S3Error as exc:
            if exc.status not in (400, 501):
                raise
            put = await retry.call(lambda: s3.put_object(bucket, key, _BODY))
            facts["checksum_headers"] = False
        server = str(put.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("server", ""))
        for marker, name in _SERVERS:
            if marker in server.lower() and base.name == "unknown":
                base = PROFILES[name]

        async def complete_with(**condition: str) -> None:
            upload_id = await retry.call(lambda: s3.create_multipart_upload(bucket, key))
            uploads.append(upload_id)
            part = await retry.call(lambda: s3.upload_part(bucket, key, upload_id, 1, _BODY))
            parts = [{"PartNumber": 1, "ETag": part["ETag"]}]
            # _honoured retries all of this (a new upload; every one is aborted below)
            await s3.complete_multipart_upload(bucket, key, upload_id, parts, **condition)

        async def copy_with(**condition: str) -> None:
            await s3.copy_object(bucket, key, bucket, key, MetadataDirective="REPLACE", **condition)

        checks: dict[str, Callable[[], Awaitable[Any]]] = {
            "PutObject:IfNoneMatch": lambda: s3.put_object(bucket, key, _BODY, IfNoneMatch="*"),
            "PutObject:IfMatch": lambda: s3.put_object(bucket, key, _BODY, IfMatch=_NO_SUCH_ETAG),
            "CompleteMultipartUpload:IfNoneMatch": lambda: complete_with(IfNoneMatch="*"),
            "CompleteMultipartUpload:IfMatch": lambda: complete_with(IfMatch=_NO_SUCH_ETAG),
            "CopyObject:IfNoneMatch": lambda: copy_with(IfNoneMatch="*"),
            "CopyObject:IfMatch": lambda: copy_with(IfMatch=_NO_SUCH_ETAG),
        }
        for point in POINTS:
            if point in checks:
                found[point] = await _honoured(checks[point], retry)
        response = await retry.call(
            lambda: s3.delete_objects(bucket, [(key, _NO_SUCH_ETAG)], quiet=False)
        )
        errors = response.get("Errors") or []
        found["DeleteObjects:ETag"] = any(e.get("Key") == key for e in errors)
    finally:
        with anyio.move_on_after(30, shield=True):
            for upload_id in uploads:
                try:
                    await retry.call(partial(s3.abort_multipart_upload, bucket, key, upload_id))
                except StreamxError:
                    pass  # completed, or already gone
            try:
                await retry.call(lambda: s3.delete_objects(bucket, [key]))
            except StreamxError as exc:
                log.warning("store.probe.cleanup_failed", bucket=bucket, key=key, error=str(exc))
    sources = {**base.sources, "conditions": f"probed on s3://{bucket}"}
    profile = base.with_facts(conditions=found, sources=sources, probed=True, **facts)
    log.info("store.probe", bucket=bucket, store=profile.name, conditions=found, **facts)
    return profile
