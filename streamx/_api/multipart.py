"""The narrow public API for code that drives S3 uploads itself: multipart uploads and
the small objects kept beside them (the web core, its tus server, the sync's clean-up
and its objects split across Ray actors), and presigned requests (:mod:`.presign`).

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

import anyio

from .._abort import abort_upload
from .._checksum import checksum_errors, checksum_type, param_name, supports_full_object
from .._conditions import is_our_object, precondition_errors, preflight
from .._config import CHECKSUM_ALGORITHMS, TransferConfig
from .._context import TransferContext
from .._errors import ConfigError, NotFoundError, PreconditionFailedError
from .._limits import MAX_PART_SIZE
from .._log import log
from .._s3 import check_conditions, check_put_args, split_conditions
from .._validate import check_bucket, check_bucket_key, check_prefix
from ..upload.uploader import check_not_emptied
from .presign import PresignAPI


def _check_upload_id(upload_id: object) -> str:
    if not isinstance(upload_id, str) or not upload_id:
        raise ConfigError(f"upload_id must be a non-empty str, not {upload_id!r}")
    return upload_id


def _check_part_number(number: object) -> int:
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 10_000:
        raise ConfigError(f"part_number must be an int from 1 to 10,000, not {number!r}")
    return number


def _check_data(data: object) -> int:
    """The length of a bytes-like body held in memory (at most 5 GiB, S3's limit)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ConfigError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")
    size = memoryview(data).nbytes
    if size > MAX_PART_SIZE:
        raise ConfigError(f"data must be at most 5 GiB (S3's limit for one request), not {size:,}")
    return size


def _check_copy_range(start: object, end: object) -> int:
    if (
        isinstance(start, bool)
        or isinstance(end, bool)
        or not isinstance(start, int)
        or not isinstance(end, int)
        or not 0 <= start < end
        or end - start > MAX_PART_SIZE
    ):
        raise ConfigError(
            f"start and end must be ints with 0 <= start < end and at most 5 GiB apart "
            f"(the bytes [start, end) of the source), not {start!r}, {end!r}"
        )
    return end - start


def _check_algorithm(algorithm: object, *, full_object: bool = False) -> str:
    names = [a for a in CHECKSUM_ALGORITHMS if supports_full_object(a) or not full_object]
    if algorithm not in names:
        what = "a whole object's (FULL_OBJECT) checksum" if full_object else "a checksum"
        raise ConfigError(f"{what} algorithm must be one of {', '.join(names)}, not {algorithm!r}")
    return str(algorithm)


def _check_checksum(checksum: object, *, full_object: bool = False) -> dict[str, str]:
    """``(algorithm, base64 value)`` as S3's parameter (``{"ChecksumCRC32C": value}``)."""
    if not isinstance(checksum, tuple) or len(checksum) != 2:
        raise ConfigError(f"checksum must be (algorithm, base64 value), not {checksum!r}")
    algorithm = _check_algorithm(checksum[0], full_object=full_object)
    if not isinstance(checksum[1], str) or not checksum[1]:
        raise ConfigError(f"checksum's value must be a non-empty base64 str, not {checksum[1]!r}")
    return {param_name(algorithm): checksum[1]}


def _check_write_conditions(conditions: dict[str, Any]) -> dict[str, Any]:
    args, found = split_conditions(conditions)
    if args:
        raise ConfigError(f"only IfNoneMatch and IfMatch can be passed here, not {sorted(args)}")
    check_conditions(found)
    return found


class MultipartUploads:
    """Multipart uploads driven by the caller, over the engine's S3 layer (``engine.multipart``)."""

    def __init__(self, context: Callable[[TransferConfig | None], TransferContext]) -> None:
        self._context = context  # the open engine's, or UsageError

    async def create(
        self, bucket: str, key: str, *, checksum_algorithm: str | None = None, **put_args: Any
    ) -> str:
        """CreateMultipartUpload; returns the UploadId (``put_args`` as for ``upload``).

        ``checksum_algorithm`` (``"CRC32C"``, ``"CRC32"``, ``"CRC64NVME"``, ``"SHA256"``):
        every part is then sent with its checksum of that algorithm (``upload_part``'s
        ``checksum``) and listed with it at ``complete``; the object's checksum type is
        FULL_OBJECT for a CRC (as ``engine.upload`` asks), COMPOSITE for SHA256.
        """
        check_bucket_key(bucket, key)
        args = check_put_args(put_args)
        if checksum_algorithm is not None:
            algorithm = _check_algorithm(checksum_algorithm)
            args |= {"ChecksumAlgorithm": algorithm, "ChecksumType": checksum_type(algorithm)}
        return await self._context(None).s3.create_multipart_upload(bucket, key, **args)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: bytes | bytearray | memoryview,
        *,
        checksum: tuple[str, str] | None = None,
        config: TransferConfig | None = None,
    ) -> str:
        """UploadPart of ``data``; returns its ETag.

        Sent as the engine sends its own parts (worker threads or aiobotocore),
        retried on retryable failures with ``config``'s attempts (the engine's by
        default), cancelled after ``stall_timeout`` without progress and
        ``part_timeout`` in all. A store that answers with the ETag of an empty
        body for bytes sent (it did not keep them) is a :class:`~streamx.ChecksumError`.

        ``checksum=(algorithm, base64 value)``: the checksum of ``data`` (the algorithm
        ``create`` was given), sent with it; a store that finds the bytes it received
        damaged refuses the part, a :class:`~streamx.ChecksumError` that is retried.
        """
        check_bucket_key(bucket, key)
        _check_upload_id(upload_id)
        _check_part_number(part_number)
        size = _check_data(data)
        params = {} if checksum is None else _check_checksum(checksum)
        ctx = self._context(config)
        s3, cfg = ctx.s3, ctx.config
        where = {"bucket": bucket, "key": key, "upload_id": upload_id}

        async def attempt() -> dict[str, Any]:
            with checksum_errors(bool(params)):
                response = await s3.upload_part(
                    bucket,
                    key,
                    upload_id,
                    part_number,
                    data,
                    stall_timeout=cfg.stall_timeout,
                    time_limit=cfg.part_timeout or None,
                    **params,
                )
            check_not_emptied(response, size, "UploadPart", part_number=part_number, **where)
            return response

        async def on_retry(attempt_no: int, exc: BaseException) -> None:
            log.warning(  # the upload pipeline's event (README: "What streamx logs")
                "upload.part.retry",
                part_number=part_number,
                attempt=attempt_no,
                error=type(exc).__name__,
                reason=str(exc),
                **where,
            )

        response = await ctx.retry.call(
            attempt, timeout=cfg.part_timeout or None, on_retry=on_retry
        )
        return str(response["ETag"])

    async def copy_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        source_key: str,
        start: int,
        end: int,
        *,
        source_bucket: str | None = None,
        config: TransferConfig | None = None,
    ) -> str:
        """UploadPartCopy: the bytes ``[start, end)`` of ``source_bucket/source_key``
        (default: the same bucket) become part ``part_number``; returns its ETag.
        Retried on retryable failures with ``config``'s attempts."""
        check_bucket_key(bucket, key)
        _check_upload_id(upload_id)
        _check_part_number(part_number)
        src_bucket = bucket if source_bucket is None else source_bucket
        check_bucket_key(src_bucket, source_key)
        _check_copy_range(start, end)
        ctx = self._context(config)
        s3 = ctx.s3

        async def attempt() -> dict[str, Any]:
            response: dict[str, Any] = await s3.upload_part_copy(
                src_bucket,
                source_key,
                bucket,
                key,
                upload_id,
                part_number,
                CopySourceRange=f"bytes={start}-{end - 1}",
            )
            return response

        response = await ctx.retry.call(attempt)
        return str(response["CopyPartResult"]["ETag"])

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
        *,
        checksum: tuple[str, str] | None = None,
        **conditions: Any,
    ) -> dict[str, Any]:
        """CompleteMultipartUpload of ``parts`` (``[{"PartNumber": n, "ETag": e}, ...]``,
        with each part's ``ChecksumCRC32C`` … if it was sent with one); ``checksum=(CRC
        algorithm, base64 value)``: the whole object's FULL_OBJECT checksum, which the store
        compares with the parts it holds (a mismatch refuses the upload); ``conditions`` (``IfNoneMatch="*"``, ``IfMatch=etag``) go on the request, and a
        failed one raises :class:`~streamx.PreconditionFailedError` (nothing written; the
        upload is the caller's to abort). The request is shielded from cancellation:
        once sent, its outcome is learnt (a cancellation is delivered after it)."""
        check_bucket_key(bucket, key)
        _check_upload_id(upload_id)
        found = _check_write_conditions(conditions)
        if checksum is not None:
            found |= {**_check_checksum(checksum, full_object=True), "ChecksumType": "FULL_OBJECT"}
        s3 = self._context(None).s3
        sent = checksum is not None
        with anyio.CancelScope(shield=True), precondition_errors(found), checksum_errors(sent):
            response = await s3.complete_multipart_upload(bucket, key, upload_id, parts, **found)
        return response

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

    async def get_bytes(
        self, bucket: str, key: str, *, config: TransferConfig | None = None
    ) -> bytes | None:
        """A small object whole, in one GET (retried), or ``None`` if there is none.

        For the state objects kept beside an upload: no HEAD and no checksum
        read-back (``engine.download`` checks the objects that matter)."""
        check_bucket_key(bucket, key)
        ctx = self._context(config)
        s3 = ctx.s3

        async def attempt() -> bytes | None:
            try:
                async with s3.get_object(bucket, key) as response:
                    return bytes(await response["Body"].read())
            except NotFoundError:
                return None

        return await ctx.retry.call(attempt)

    async def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        config: TransferConfig | None = None,
        **put_args: Any,
    ) -> dict[str, Any]:
        """One PutObject of ``data`` in memory (at most 5 GiB), retried; S3's answer
        (``{}`` when a retried write found its own first attempt stored).

        ``put_args`` as for ``engine.upload``. ``IfNoneMatch="*"`` / ``IfMatch=etag``
        are sent as given: a failed one raises :class:`~streamx.PreconditionFailedError`,
        except after a retry when the stored object holds exactly ``data`` (the
        first attempt landed and its answer was lost). Whether the store honours
        them is ``engine.store``'s to say (see ``engine.probe``); ``engine.upload``
        refuses them where they are ignored, this does not. For a condition whose
        retry must not count as success (a lock), pass ``config`` with
        ``max_attempts=1``.
        """
        check_bucket_key(bucket, key)
        _check_data(data)
        args = check_put_args(put_args)
        conditions = split_conditions(args)[1]
        ctx = self._context(config)
        s3, cfg = ctx.s3, ctx.config
        retried: list[int] = []

        async def attempt() -> dict[str, Any]:
            with precondition_errors(conditions):
                return await s3.put_object(
                    bucket,
                    key,
                    data,
                    stall_timeout=cfg.stall_timeout,
                    time_limit=cfg.part_timeout or None,
                    **args,
                )

        async def on_retry(attempt_no: int, exc: BaseException) -> None:
            retried.append(attempt_no)

        try:
            return await ctx.retry.call(
                attempt, timeout=cfg.part_timeout or None, on_retry=on_retry
            )
        except PreconditionFailedError:
            if not retried or not await is_our_object(s3, bucket, key, data, []):
                raise
            return {}

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


class DriveAPI(PresignAPI):
    """``engine.multipart``, and ``engine.presign_url`` and ``engine.presign_post``
    (:mod:`.presign`)."""

    @property
    def multipart(self) -> MultipartUploads:
        """Multipart uploads driven by the caller (see :class:`MultipartUploads`)."""
        return MultipartUploads(self._context)
