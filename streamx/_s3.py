"""The only module that speaks aiobotocore: the S3 calls streamx makes.

Every call goes through :func:`map_errors`, which turns botocore and aiohttp
exceptions into the streamx tree at this one boundary (as httpcore's
``map_exceptions`` does), with the transfer's context attached.
"""

from __future__ import annotations

import asyncio
import datetime
import io
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from typing import Any

import aiohttp
import botocore.exceptions as bexc

from ._direct import DirectParts
from ._errors import (
    AccessDeniedError,
    ConditionalConflictError,
    ConfigError,
    NetworkError,
    NotFoundError,
    PreconditionFailedError,
    S3Error,
    ServiceUnavailableError,
    StreamxError,
)
from ._validate import check_put_values

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound", "404", "NoSuchVersion"}
_DENIED = {
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
    "403",
}
_UNAVAILABLE = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "OperationAborted",
}

_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    bexc.EndpointConnectionError,
    bexc.ConnectionClosedError,
    bexc.ConnectTimeoutError,
    bexc.ReadTimeoutError,
    bexc.HTTPClientError,
    bexc.ResponseStreamingError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    ConnectionError,
)


def translate(exc: BaseException, operation: str, **context: Any) -> StreamxError:
    """A streamx error for ``exc`` (a botocore/aiohttp/OS error), cause not yet chained."""
    if isinstance(exc, StreamxError):
        return exc.add_context(**context)
    if isinstance(exc, bexc.ClientError):
        err = exc.response.get("Error", {}) or {}
        code = str(err.get("Code", "") or "")
        message = str(err.get("Message", "") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{operation} failed: {code or status}" + (f": {message}" if message else "")
        cls: type[S3Error]
        if code == "PreconditionFailed" or status == 412:
            cls = PreconditionFailedError
        elif code == "ConditionalRequestConflict":
            cls = ConditionalConflictError
        elif code in _NOT_FOUND or status == 404:
            cls = NotFoundError
        elif code in _DENIED or status == 403:
            cls = AccessDeniedError
        elif code in _UNAVAILABLE or (isinstance(status, int) and status >= 500):
            cls = ServiceUnavailableError
        else:
            cls = S3Error
        return cls(text, code=code, status=status, **context)
    if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
        return AccessDeniedError(
            f"{operation} failed: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or pass them to Engine()",
            code="NoCredentials",
            **context,
        )
    if isinstance(exc, _NETWORK_ERRORS):
        # botocore's messages name the endpoint, never the credentials; aiohttp's
        # may carry a URL, so only the exception's type is used for those.
        detail = str(exc) if isinstance(exc, bexc.BotoCoreError) else type(exc).__name__
        return NetworkError(f"{operation} failed: {detail}", **context)
    if isinstance(exc, bexc.ProfileNotFound | bexc.InvalidRegionError | bexc.InvalidConfigError):
        # the settings (AWS_PROFILE, AWS_REGION, a config file) are wrong, not the store
        return ConfigError(f"{operation}: {exc}", **context)
    if isinstance(exc, bexc.ParamValidationError):
        return ConfigError(f"{operation}: {exc}", **context)
    if isinstance(exc, bexc.BotoCoreError):
        return S3Error(f"{operation} failed: {exc}", **context)
    raise exc


@contextmanager
def map_errors(operation: str, **context: Any) -> Iterator[None]:
    try:
        yield
    except StreamxError as exc:
        exc.add_context(**context)
        raise
    except (bexc.BotoCoreError, bexc.ClientError, *_NETWORK_ERRORS) as exc:
        raise translate(exc, operation, **context) from exc


_SESSIONS: dict[str | None, Any] = {}


def session_for(profile: str | None) -> Any:
    """One aiobotocore session per profile: its loader keeps botocore's S3 model
    (about 50 ms to parse) for every engine and every check that needs it."""
    from aiobotocore.session import AioSession

    if profile not in _SESSIONS:
        session = AioSession(profile=profile) if profile else AioSession()
        factory = session.get_component("response_parser_factory")
        factory.set_parser_defaults(timestamp_parser=_timestamp)
        _SESSIONS[profile] = session
    return _SESSIONS[profile]


def _timestamp(value: Any) -> Any:
    """ISO 8601 timestamps (one per listing entry) without dateutil: 1,000-key pages parse
    about 3x faster (``sync``'s no-change re-run is mostly listing); anything else as botocore."""
    if isinstance(value, str) and value.endswith("Z") and "T" in value:
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
    from botocore.utils import parse_timestamp

    return parse_timestamp(value)


@lru_cache(maxsize=1)
def _service_model() -> Any:
    from botocore.model import ServiceModel

    loader = session_for(None).get_component("data_loader")  # sync, and cached per session
    return ServiceModel(loader.load_service_model("s3", "service-2"), service_name="s3")


# Parameters streamx manages itself and a caller may not pass through.
_MANAGED = {
    "Bucket",
    "Key",
    "Body",
    "ContentLength",
    "ContentMD5",
    "UploadId",
    "ChecksumAlgorithm",
    "ChecksumType",
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
}


#: S3's write conditions. They go on PutObject, CompleteMultipartUpload and CopyObject,
#: never on CreateMultipartUpload or UploadPart (S3 takes them only where the object appears).
CONDITIONS = ("IfMatch", "IfNoneMatch")


@lru_cache(maxsize=1)
def upload_param_names() -> frozenset[str]:
    """Parameters valid for both PutObject and CreateMultipartUpload, plus the conditions."""
    model = _service_model()
    put = set(model.operation_model("PutObject").input_shape.members)
    create = set(model.operation_model("CreateMultipartUpload").input_shape.members)
    return frozenset((put & create) - _MANAGED) | frozenset(CONDITIONS)


def check_conditions(args: Mapping[str, Any]) -> None:
    """``IfNoneMatch`` takes only ``"*"``; ``IfMatch`` an ETag; not both at once."""
    if_none, if_match = args.get("IfNoneMatch"), args.get("IfMatch")
    if "IfNoneMatch" in args and if_none != "*":
        raise ConfigError(
            f"IfNoneMatch must be '*' (write only if the key does not exist), not {if_none!r}; "
            "S3 takes no other value on a write"
        )
    if "IfMatch" in args and (not isinstance(if_match, str) or not if_match.strip('" ')):
        raise ConfigError(
            f"IfMatch must be the ETag of the object to replace (a non-empty str), not {if_match!r}"
        )
    if "IfNoneMatch" in args and "IfMatch" in args:
        raise ConfigError(
            "IfNoneMatch='*' (key must not exist) and IfMatch (key must exist) exclude each "
            "other; pass one"
        )


def split_conditions(args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(args without the conditions, the conditions)``."""
    rest = {k: v for k, v in args.items() if k not in CONDITIONS}
    return rest, {k: args[k] for k in CONDITIONS if k in args}


@lru_cache(maxsize=1)
def _put_shapes() -> dict[str, Any]:
    """The botocore shape of every argument an upload may send (for value checks)."""
    model = _service_model()
    shapes: dict[str, Any] = {}
    for op in ("CompleteMultipartUpload", "CreateMultipartUpload", "PutObject"):
        shapes.update(model.operation_model(op).input_shape.members)
    return shapes


def check_put_args(put_args: Mapping[str, Any]) -> dict[str, Any]:
    """Names known and values safe as headers (see :mod:`streamx._validate`); returns the
    arguments as they are to be sent (non-ASCII ``Metadata`` values RFC 2047-encoded)."""
    allowed = upload_param_names()
    unknown = sorted(set(put_args) - allowed)
    if unknown:
        managed = [u for u in unknown if u in _MANAGED]
        if managed:
            raise ConfigError(f"{', '.join(managed)} is set by streamx and cannot be passed")
        raise ConfigError(
            f"unknown S3 upload argument(s) {', '.join(unknown)}; "
            f"valid ones include ContentType, Metadata, StorageClass, Tagging, ServerSideEncryption, "
            "IfNoneMatch, IfMatch"
        )
    check_conditions(put_args)
    return check_put_values(put_args, _put_shapes())


_MIN_READ = 1024 * 1024


class BufferBody(io.BytesIO):
    """A bytes-like request body as a read-only, zero-copy file object.

    Why: handed a ``bytearray`` (or ``bytes``, which botocore turns into a
    ``BytesIO`` copy), aiohttp writes the whole part to the transport at once,
    and the transport then keeps the unsent rest in its own buffer, copying it
    again and again as the socket drains: about 2 CPU-s per GiB more than
    writing it piece by piece (measured against benchmarks/sink.py). A
    ``BytesIO`` subclass is sent by aiohttp in chunks, with backpressure; this
    one never fills the ``BytesIO`` buffer: each read is a slice of the
    caller's memory. It also passes botocore's parameter validation, which
    rejects ``memoryview``, so a view is no longer copied with ``tobytes()``.
    """

    def __init__(
        self, data: bytes | bytearray | memoryview, on_read: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        self._pos = 0
        self._on_read = on_read  # the stall detector's "bytes moved" signal

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int | None = -1) -> Any:
        if self._on_read is not None:
            self._on_read()
        # at least 1 MiB a read: aiohttp asks for 256 KiB, and every read costs a loop turn
        if size is not None and 0 <= size < _MIN_READ:
            size = _MIN_READ
        end = (
            len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        )
        chunk = self._view[self._pos : end]
        self._pos = end
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, min(len(self._view), base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def getbuffer(self) -> memoryview:
        return self._view[:]

    def getvalue(self) -> bytes:
        return self._view.tobytes()


_SMALL_BODY = 64 * 1024  # below this one write is cheapest: pass the bytes themselves


def _body(data: Any) -> Any:
    """The request body for ``data``; bytes-like bodies go out zero-copy (see BufferBody)."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) >= _SMALL_BODY:
            return BufferBody(data)
        return data.tobytes() if isinstance(data, memoryview) else data
    return data


class S3:
    """The S3 calls streamx makes, over one aiobotocore client."""

    def __init__(self, client: Any, direct: DirectParts | None = None) -> None:
        self.client = client
        # UploadPart over streamx's own connections (streamx/_direct.py), when enabled
        self.direct = direct
        # set once a store is caught reporting checksums its own bytes do not have
        # (upload/completer.py): its values are no longer compared with ours
        self.checksums_untrusted = False

    async def put_object(self, bucket: str, key: str, body: Any, **params: Any) -> dict[str, Any]:
        with map_errors("PutObject", bucket=bucket, key=key):
            return dict(
                await self.client.put_object(Bucket=bucket, Key=key, Body=_body(body), **params)
            )

    async def put_object_direct(
        self,
        bucket: str,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        stall_timeout: float | None,
        **params: Any,
    ) -> dict[str, Any]:
        """PutObject through :class:`DirectParts` (``self.direct.can_put(params)`` must hold)."""
        assert self.direct is not None
        with map_errors("PutObject", bucket=bucket, key=key):
            return await self.direct.put_object(
                bucket, key, data, stall_timeout=stall_timeout, **params
            )

    async def create_multipart_upload(self, bucket: str, key: str, **params: Any) -> str:
        response = await self.create_multipart_upload_response(bucket, key, **params)
        return str(response["UploadId"])

    async def create_multipart_upload_response(
        self, bucket: str, key: str, **params: Any
    ) -> dict[str, Any]:
        with map_errors("CreateMultipartUpload", bucket=bucket, key=key):
            return dict(await self.client.create_multipart_upload(Bucket=bucket, Key=key, **params))

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: Any, **params: Any
    ) -> dict[str, Any]:
        ctx = {"bucket": bucket, "key": key, "upload_id": upload_id, "part_number": part_number}
        with map_errors("UploadPart", **ctx):
            return dict(
                await self.client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=part_number,
                    Body=_body(body),
                    ContentLength=len(body),
                    **params,
                )
            )

    async def upload_part_direct(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: bytes | bytearray | memoryview,
        *,
        stall_timeout: float | None,
        **params: Any,
    ) -> dict[str, Any]:
        """UploadPart through :class:`DirectParts` (``self.direct`` must be set)."""
        assert self.direct is not None
        ctx = {"bucket": bucket, "key": key, "upload_id": upload_id, "part_number": part_number}
        with map_errors("UploadPart", **ctx):
            return await self.direct.upload_part(
                bucket, key, upload_id, part_number, data, stall_timeout=stall_timeout, **params
            )

    async def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], **params: Any
    ) -> dict[str, Any]:
        with map_errors("CompleteMultipartUpload", bucket=bucket, key=key, upload_id=upload_id):
            return dict(
                await self.client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **params,
                )
            )

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        with map_errors("AbortMultipartUpload", bucket=bucket, key=key, upload_id=upload_id):
            await self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        marker = 0
        with map_errors("ListParts", bucket=bucket, key=key, upload_id=upload_id):
            while True:
                response = await self.client.list_parts(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
                parts.extend(response.get("Parts", []))
                if not response.get("IsTruncated"):
                    return parts
                marker = int(response["NextPartNumberMarker"])

    async def list_multipart_uploads(
        self, bucket: str, prefix: str = ""
    ) -> AsyncIterator[dict[str, Any]]:
        key_marker: str | None = None
        id_marker: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if key_marker is not None:
                params["KeyMarker"] = key_marker
                if id_marker:
                    params["UploadIdMarker"] = id_marker
            try:
                with map_errors("ListMultipartUploads", bucket=bucket):
                    response = await self.client.list_multipart_uploads(**params)
            except NotFoundError as exc:
                if exc.code == "NoSuchUpload":  # rclone's answer for a bucket with none
                    return
                raise
            for upload in response.get("Uploads", []):
                yield upload
            if not response.get("IsTruncated"):
                return
            key_marker = response.get("NextKeyMarker")
            id_marker = response.get("NextUploadIdMarker")

    async def head_object(self, bucket: str, key: str, **params: Any) -> dict[str, Any]:
        with map_errors("HeadObject", bucket=bucket, key=key):
            return dict(await self.client.head_object(Bucket=bucket, Key=key, **params))

    @asynccontextmanager
    async def get_object(self, bucket: str, key: str, **params: Any) -> AsyncIterator[Any]:
        """Yields the response; its ``Body`` is released however the block ends."""
        with map_errors("GetObject", bucket=bucket, key=key):
            response = await self.client.get_object(Bucket=bucket, Key=key, **params)
        body = response["Body"]
        try:
            with map_errors("GetObject", bucket=bucket, key=key):
                yield response
        finally:
            body.close()

    # -- presigning (streamx.web) ------------------------------------------------------------
    # A presigned URL is a bearer credential until it expires: it must never reach a log
    # line or an error message. These calls are local (no request is sent).

    def _presign_with_sigv4(self) -> None:
        """Make presigned URLs and POSTs SigV4 on this client.

        botocore presigns S3 requests with SigV2 unless the client's config names a
        signature version; SigV2 is refused by AWS in most regions and by rclone.
        The handler only answers for presign signing types whose version is already
        v4, so a client configured for something else keeps it.
        """

        def keep_sigv4(signature_version: str, **_: Any) -> str | None:
            if signature_version.startswith(("v4-", "s3v4-")):
                for suffix in ("-query", "-presign-post"):
                    if signature_version.endswith(suffix):
                        return "s3v4" + suffix
            return None

        self.client.meta.events.register_first(
            "choose-signer.s3", keep_sigv4, unique_id="streamx-presign-sigv4"
        )

    async def presign_url(self, operation: str, params: dict[str, Any], expires_in: int) -> str:
        """A presigned URL for ``operation`` (``put_object``, ``get_object``, ``upload_part``).

        Parameters that map to headers (``ContentType``, ``ContentLength``) are signed:
        the client must send exactly those values.
        """
        self._presign_with_sigv4()
        with map_errors(
            f"presigning {operation}", bucket=params.get("Bucket"), key=params.get("Key")
        ):
            url = self.client.generate_presigned_url(operation, Params=params, ExpiresIn=expires_in)
            if asyncio.iscoroutine(url):  # aiobotocore's is a coroutine, botocore's is not
                url = await url
        return str(url)

    async def presign_post(
        self,
        bucket: str,
        key: str,
        fields: dict[str, Any],
        conditions: list[Any],
        expires_in: int,
    ) -> dict[str, Any]:
        """A browser POST upload form: ``{"url": ..., "fields": {...}}`` (policy and signature)."""
        self._presign_with_sigv4()
        with map_errors("presigning a POST upload", bucket=bucket, key=key):
            form = self.client.generate_presigned_post(
                bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
            )
            if asyncio.iscoroutine(form):
                form = await form
        return dict(form)

    async def list_objects_v2(self, bucket: str, **params: Any) -> dict[str, Any]:
        with map_errors("ListObjectsV2", bucket=bucket):
            return dict(await self.client.list_objects_v2(Bucket=bucket, **params))

    async def delete_objects(
        self, bucket: str, keys: list[str | tuple[str, str]], *, quiet: bool = True
    ) -> dict[str, Any]:
        """Delete ``keys``; a ``(key, etag)`` pair is deleted only if it still has that ETag."""
        objects = [{"Key": k} if isinstance(k, str) else {"Key": k[0], "ETag": k[1]} for k in keys]
        with map_errors("DeleteObjects", bucket=bucket):
            return dict(
                await self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": objects, "Quiet": quiet}
                )
            )

    async def copy_object(
        self, src_bucket: str, src_key: str, bucket: str, key: str, **params: Any
    ) -> dict[str, Any]:
        with map_errors("CopyObject", bucket=bucket, key=key):
            return dict(
                await self.client.copy_object(
                    Bucket=bucket,
                    Key=key,
                    CopySource={"Bucket": src_bucket, "Key": src_key},
                    **params,
                )
            )

    async def upload_part_copy(
        self,
        src_bucket: str,
        src_key: str,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        **params: Any,
    ) -> dict[str, Any]:
        ctx = {"bucket": bucket, "key": key, "upload_id": upload_id, "part_number": part_number}
        with map_errors("UploadPartCopy", **ctx):
            return dict(
                await self.client.upload_part_copy(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=part_number,
                    CopySource={"Bucket": src_bucket, "Key": src_key},
                    **params,
                )
            )
