"""The narrow public API for code that drives S3 uploads itself: presigned requests and
multipart uploads (the web core, its tus server, the sync's clean-up).

``engine.multipart`` is a :class:`MultipartUploads`; ``engine.presign_url`` and
``engine.presign_post`` sign requests a browser sends. Each call checks its
arguments first (a :class:`~streamx.ConfigError` before any request), and
translates the store's errors into streamx's tree like every other verb. An
upload created here is the caller's to complete or abort: an abandoned one is
billed as storage until aborted (``engine.abort_stale_uploads``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from .._abort import abort_upload
from .._conditions import preflight
from .._config import TransferConfig
from .._context import TransferContext
from .._errors import ConfigError
from .._log import log
from .._s3 import check_put_args
from .._validate import check_bucket, check_bucket_key, check_prefix
from .base import EngineBase

#: The operations :meth:`DriveAPI.presign_url` signs.
PRESIGNABLE = ("put_object", "get_object", "upload_part", "head_object")

#: Presigned URLs last at most 7 days (SigV4's limit).
MAX_EXPIRES_IN = 7 * 24 * 3600


def check_expires_in(expires_in: object) -> int:
    """A presigned request's lifetime in seconds: 1 to 7 days' worth."""
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 1 <= expires_in <= MAX_EXPIRES_IN
    ):
        raise ConfigError(
            f"expires_in must be an int of seconds from 1 to {MAX_EXPIRES_IN:,} (7 days, "
            f"SigV4's limit), not {expires_in!r}"
        )
    return expires_in


def _check_upload_id(upload_id: object) -> str:
    if not isinstance(upload_id, str) or not upload_id:
        raise ConfigError(f"upload_id must be a non-empty str, not {upload_id!r}")
    return upload_id


def _check_part_number(number: object) -> int:
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 10_000:
        raise ConfigError(f"part_number must be an int from 1 to 10,000, not {number!r}")
    return number


class MultipartUploads:
    """Multipart uploads driven by the caller, over the engine's S3 layer (``engine.multipart``)."""

    def __init__(self, context: Callable[[TransferConfig | None], TransferContext]) -> None:
        self._context = context  # the open engine's, or UsageError

    async def create(self, bucket: str, key: str, **put_args: Any) -> str:
        """CreateMultipartUpload; returns the UploadId (``put_args`` as for ``upload``)."""
        check_bucket_key(bucket, key)
        args = check_put_args(put_args)
        return await self._context(None).s3.create_multipart_upload(bucket, key, **args)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: bytes | bytearray | memoryview,
    ) -> str:
        """UploadPart of ``data`` (retried on retryable failures); returns its ETag."""
        check_bucket_key(bucket, key)
        _check_upload_id(upload_id)
        _check_part_number(part_number)
        ctx = self._context(None)
        s3, config = ctx.s3, ctx.config

        async def attempt() -> dict[str, Any]:
            return await s3.upload_part(
                bucket, key, upload_id, part_number, data, stall_timeout=config.stall_timeout
            )

        response = await ctx.retry.call(attempt, timeout=config.part_timeout or None)
        return str(response["ETag"])

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[dict[str, Any]]:
        """Every part the store holds for the upload (``PartNumber``, ``ETag``, ``Size`` ...)."""
        check_bucket_key(bucket, key)
        _check_upload_id(upload_id)
        return await self._context(None).s3.list_parts(bucket, key, upload_id)

    async def complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[dict[str, Any]],
        **conditions: Any,
    ) -> dict[str, Any]:
        """CompleteMultipartUpload of ``parts`` (``[{"PartNumber": n, "ETag": e}, ...]``);
        ``conditions`` (``IfNoneMatch="*"``, ``IfMatch=etag``) go on the request."""
        check_bucket_key(bucket, key)
        _check_upload_id(upload_id)
        return await self._context(None).s3.complete_multipart_upload(
            bucket, key, upload_id, parts, **conditions
        )

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        """AbortMultipartUpload; its errors are raised (``NoSuchUpload``: a
        :class:`~streamx.NotFoundError`)."""
        check_bucket_key(bucket, key)
        _check_upload_id(upload_id)
        await self._context(None).s3.abort_multipart_upload(bucket, key, upload_id)

    async def discard(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        *,
        cause: BaseException,
        what: str,
        config: TransferConfig | None = None,
    ) -> None:
        """Abort the upload after ``cause`` made it useless, as a failed transfer does:
        shielded from cancellation, retried, limited to ``abort_timeout``, never raising;
        logs ``{what}.aborted`` (or ``.abort.failed`` / ``.abort.timeout``). ``config``
        gives ``abort_timeout`` and the attempts (the engine's by default)."""
        check_bucket_key(bucket, key)
        _check_upload_id(upload_id)
        ctx = self._context(config)
        await abort_upload(
            ctx.s3,
            bucket,
            key,
            upload_id,
            what=what,
            config=ctx.config,
            retry=ctx.retry,
            log=log.bind(key=key, upload_id=upload_id),
            cause=cause,
        )

    async def uploads(self, bucket: str, prefix: str = "") -> AsyncIterator[dict[str, Any]]:
        """The unfinished multipart uploads under ``prefix`` (``Key``, ``UploadId``, ...)."""
        check_bucket(bucket)
        check_prefix(prefix)
        async for upload in self._context(None).s3.list_multipart_uploads(bucket, prefix):
            yield upload

    async def preflight(self, bucket: str, key: str, conditions: dict[str, Any]) -> None:
        """One HEAD: raise :class:`~streamx.PreconditionFailedError` now if ``conditions``
        already fail (a taken key under ``IfNoneMatch="*"``); silent if it cannot tell."""
        check_bucket_key(bucket, key)
        await preflight(self._context(None).s3, bucket, key, conditions)


class DriveAPI(EngineBase):
    """``engine.multipart``, ``engine.presign_url`` and ``engine.presign_post``."""

    @property
    def multipart(self) -> MultipartUploads:
        """Multipart uploads driven by the caller (see :class:`MultipartUploads`)."""
        return MultipartUploads(self._context)

    async def presign_url(
        self, operation: str, bucket: str, key: str, *, expires_in: int, **params: Any
    ) -> str:
        """A presigned URL for ``operation`` (``"put_object"``, ``"get_object"``,
        ``"upload_part"``) of ``bucket/key``, valid ``expires_in`` seconds.

        ``params`` that map to headers (``ContentType``, ``ContentLength``,
        ``IfNoneMatch``) are signed: the client must send exactly those values. The
        URL is a credential until it expires: streamx never logs it.
        """
        check_bucket_key(bucket, key)
        if operation not in PRESIGNABLE:
            raise ConfigError(f"operation must be one of {PRESIGNABLE}, not {operation!r}")
        lifetime = check_expires_in(expires_in)
        return await self._s3_layer.presign_url(
            operation, {"Bucket": bucket, "Key": key, **params}, lifetime
        )

    async def presign_post(
        self,
        bucket: str,
        key: str,
        *,
        fields: dict[str, Any],
        conditions: list[Any],
        expires_in: int,
    ) -> dict[str, Any]:
        """A browser POST upload form for ``bucket/key``: ``{"url": ..., "fields": {...}}``
        whose policy holds ``fields`` and ``conditions`` (``content-length-range`` ...)."""
        check_bucket_key(bucket, key)
        lifetime = check_expires_in(expires_in)
        return await self._s3_layer.presign_post(bucket, key, fields, conditions, lifetime)
