"""Server-side copy: CopyObject for small objects, parallel UploadPartCopy for large ones.

No byte passes through this process. Up to ``TransferConfig.copy_threshold``
(by default S3's 5 GiB CopyObject limit) one CopyObject is sent; above it a multipart
upload is filled with ``queue_size`` concurrent UploadPartCopy requests of
``part_size`` ranges (the same :class:`~streamx.PartPlan` as uploads, so an
object of any size fits in 10,000 parts), and aborted on any failure or
cancellation (shielded, time-boxed): an abandoned multipart upload is billed
as storage until it is aborted.

Every request is pinned to the source's ETag (``CopySourceIfMatch``), so a
source replaced mid-copy fails with :class:`~streamx.ObjectChangedError`.

Conditions (``IfNoneMatch="*"``, ``IfMatch=etag``) apply to the destination: they go on
CopyObject, or on CompleteMultipartUpload after a pre-flight HEAD, never on the part
copies. A 412 from CopyObject is ambiguous (the source pin or the destination
condition): the source is asked again to tell which.

Metadata: CopyObject keeps the source's metadata and content headers unless
``put_args`` set any of them (then they replace them all, as S3's
``MetadataDirective=REPLACE`` does); a multipart copy reproduces the same
behaviour from the source's HEAD.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import anyio

from ._abort import abort_upload
from ._concurrency import FirstFailure
from ._conditions import failed, precondition_errors, preflight
from ._context import TransferContext
from ._errors import ConfigError, ObjectChangedError, S3Error, StreamxError
from ._events import Progress
from ._limits import MAX_PARTS, PartPlan
from ._log import log
from ._objects import CopyResult, ObjectInfo
from ._results import UploadResult
from ._s3 import check_put_args, service_model, split_conditions
from ._stores import UNKNOWN, StoreProfile, check_conditions, condition_points

#: The headers CopyObject carries over unless told otherwise.
METADATA_FIELDS = (
    "Metadata",
    "ContentType",
    "ContentEncoding",
    "ContentDisposition",
    "ContentLanguage",
    "CacheControl",
    "Expires",
)


@lru_cache(maxsize=1)
def _copy_param_names() -> frozenset[str]:
    return frozenset(service_model().operation_model("CopyObject").input_shape.members)


def check_copy_args(put_args: Mapping[str, Any]) -> dict[str, Any]:
    """``put_args`` valid for an upload and for CopyObject (raises ``ConfigError``)."""
    args = check_put_args(put_args)
    unsupported = sorted(set(args) - _copy_param_names())
    if unsupported:
        raise ConfigError(f"{', '.join(unsupported)} cannot be set on a copy")
    return args


def _pinned_error(exc: S3Error, src_bucket: str, src_key: str, etag: str | None) -> StreamxError:
    if exc.code == "PreconditionFailed" or exc.status == 412:
        return ObjectChangedError(
            f"the source s3://{src_bucket}/{src_key} was replaced during the copy "
            f"(it no longer has ETag {etag})",
            bucket=exc.bucket,
            key=exc.key,
            upload_id=exc.upload_id,
            part_number=exc.part_number,
        )
    return exc


def carried_args(info: ObjectInfo | None, put_args: Mapping[str, Any]) -> dict[str, Any]:
    """Content type and metadata of the source, unless the caller sets their own
    (:meth:`Engine.copy_to`, which streams an object from one store into another)."""
    args = dict(put_args)
    if info is not None and not any(name in args for name in METADATA_FIELDS):
        if info.content_type:
            args["ContentType"] = info.content_type
        if info.metadata:
            args["Metadata"] = dict(info.metadata)
    return args


def copy_result(result: UploadResult) -> CopyResult:
    """The :class:`CopyResult` of a copy streamed through an upload."""
    return CopyResult(
        bucket=result.bucket,
        key=result.key,
        etag=result.etag,
        size=result.size,
        part_count=result.part_count,
        version_id=result.version_id,
        upload_id=result.upload_id,
    )


class Copier:
    """Copies one object inside one store (one client, server side)."""

    def __init__(
        self,
        ctx: TransferContext,
        src_bucket: str,
        src_key: str,
        bucket: str,
        key: str,
        *,
        put_args: dict[str, Any],
        progress: Progress,
        store: StoreProfile = UNKNOWN,
    ) -> None:
        self.s3 = ctx.s3
        self.src_bucket = src_bucket
        self.src_key = src_key
        self.bucket = bucket
        self.key = key
        self.config = ctx.config
        self.put_args, self.conditions = split_conditions(put_args)
        self.store = store
        self.progress = progress
        self.retry = ctx.retry
        self.etag: str | None = None
        self.upload_id: str | None = None
        self.log = log.bind(src=f"{src_bucket}/{src_key}", bucket=bucket, key=key)

    async def run(self) -> CopyResult:
        head = await self.s3.head_object(self.src_bucket, self.src_key)
        size = int(head.get("ContentLength", 0))
        self.etag = head.get("ETag")
        self.progress.total = size
        threshold = self.config.copy_threshold
        if size <= threshold:
            result = await self._copy_object(size)
        else:
            result = await self._multipart(size, head)
        await self.progress.finish()
        self.log.info("copy.complete", size=size, parts=result.part_count)
        return result

    async def _copy_object(self, size: int) -> CopyResult:
        check_conditions(self.store, condition_points("copy", self.conditions, multipart=False))
        params = {**self.put_args, **self.conditions}
        if any(name in params for name in METADATA_FIELDS):
            params["MetadataDirective"] = "REPLACE"
        if "Tagging" in params:
            params["TaggingDirective"] = "REPLACE"
        if self.etag:
            params["CopySourceIfMatch"] = self.etag

        async def attempt() -> dict[str, Any]:
            return await self.s3.copy_object(
                self.src_bucket, self.src_key, self.bucket, self.key, **params
            )

        try:
            response = await self.retry.call(attempt, timeout=self.config.part_timeout or None)
        except S3Error as exc:
            # 412: the source pin or the destination's condition; 404: the source gone, or
            # IfMatch on a destination with no object. The source, asked again, tells which.
            if self.conditions and exc.status in (404, 412) and await self._source_unchanged():
                raise failed(
                    self.conditions, "copy refused", bucket=self.bucket, key=self.key
                ) from exc
            raise _pinned_error(exc, self.src_bucket, self.src_key, self.etag) from exc
        await self.progress.advance(size, parts=1)
        return CopyResult(
            bucket=self.bucket,
            key=self.key,
            etag=str(response.get("CopyObjectResult", {}).get("ETag", "")),
            size=size,
            part_count=1,
            version_id=response.get("VersionId"),
        )

    async def _source_unchanged(self) -> bool:
        try:
            head = await self.s3.head_object(self.src_bucket, self.src_key)
        except StreamxError:
            return False
        return bool(head.get("ETag") == self.etag)

    def _create_args(self, head: Mapping[str, Any]) -> dict[str, Any]:
        args = dict(self.put_args)
        if not any(name in args for name in METADATA_FIELDS):
            for name in METADATA_FIELDS:
                if head.get(name):
                    args[name] = head[name]
        return args

    async def _multipart(self, size: int, head: Mapping[str, Any]) -> CopyResult:
        plan = PartPlan.for_known_size(size, self.config.part_size)
        count = -(-size // plan.base)
        if count > MAX_PARTS:  # pragma: no cover - for_known_size prevents it
            raise StreamxError(f"{count} parts exceed S3's {MAX_PARTS}")
        check_conditions(self.store, condition_points("copy", self.conditions, multipart=True))
        await preflight(self.s3, self.bucket, self.key, self.conditions)
        with anyio.CancelScope(shield=True):
            self.upload_id = await self.s3.create_multipart_upload(
                self.bucket, self.key, **self._create_args(head)
            )
        self.log = self.log.bind(upload_id=self.upload_id)
        etags: dict[int, str] = {}
        try:
            await anyio.lowlevel.checkpoint()
            limiter = anyio.CapacityLimiter(self.config.queue_size)

            async def part(number: int) -> None:
                start = (number - 1) * plan.base
                end = min(start + plan.base, size)
                async with limiter:
                    etags[number] = await self._copy_part(number, start, end)
                await self.progress.advance(end - start, parts=1)

            first = FirstFailure()
            async with anyio.create_task_group() as tg:
                for number in range(1, count + 1):
                    tg.start_soon(first.run, tg.cancel_scope, part, number)
            first.raise_if_failed()
            assert self.upload_id is not None
            with precondition_errors(self.conditions):
                response = await self.s3.complete_multipart_upload(
                    self.bucket,
                    self.key,
                    self.upload_id,
                    [{"PartNumber": n, "ETag": etags[n]} for n in range(1, count + 1)],
                    **self.conditions,
                )
        except BaseException as exc:
            await self._abort(exc)
            if isinstance(exc, StreamxError):
                exc.add_context(bucket=self.bucket, key=self.key, upload_id=self.upload_id)
            raise
        return CopyResult(
            bucket=self.bucket,
            key=self.key,
            etag=str(response.get("ETag", "")),
            size=size,
            part_count=count,
            version_id=response.get("VersionId"),
            upload_id=self.upload_id,
        )

    async def _copy_part(self, number: int, start: int, end: int) -> str:
        assert self.upload_id is not None
        upload_id = self.upload_id
        params: dict[str, Any] = {"CopySourceRange": f"bytes={start}-{end - 1}"}
        if self.etag:
            params["CopySourceIfMatch"] = self.etag

        async def attempt() -> dict[str, Any]:
            return await self.s3.upload_part_copy(
                self.src_bucket, self.src_key, self.bucket, self.key, upload_id, number, **params
            )

        try:
            response = await self.retry.call(attempt, timeout=self.config.part_timeout or None)
        except S3Error as exc:
            raise _pinned_error(exc, self.src_bucket, self.src_key, self.etag) from exc
        etag = (response.get("CopyPartResult") or {}).get("ETag")
        if not etag:
            raise S3Error(
                "the store answered UploadPartCopy without an ETag: it cannot copy parts "
                "server-side (rclone serve s3 is one such store); use Engine.copy_to() to copy "
                "through this process, or a copy_threshold above the object's size",
                code="UploadPartCopyUnsupported",
                bucket=self.bucket,
                key=self.key,
                upload_id=upload_id,
                part_number=number,
            )
        return str(etag)

    async def _abort(self, exc: BaseException) -> None:
        assert self.upload_id is not None
        await abort_upload(
            self.s3,
            self.bucket,
            self.key,
            self.upload_id,
            config=self.config,
            retry=self.retry,
            log=self.log,
            what="copy",
            cause=exc,
        )
