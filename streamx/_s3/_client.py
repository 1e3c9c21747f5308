"""The S3 calls streamx makes, over one aiobotocore client and one part sender.

Every call goes through :func:`._translate.map_errors`; UploadPart and PutObject
bodies in memory go through the client's :class:`._sender.PartSender`, under the one
stall detector (:class:`streamx._retry.ProgressDeadline`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .._errors import NetworkError, NotFoundError
from .._gathered import Gathered
from .._retry import ProgressDeadline
from ._sender import AiobotocoreSender, PartRequest, PartSender, RangeRead, request_body
from ._translate import map_errors


class S3:
    """The S3 calls streamx makes, over one aiobotocore client."""

    def __init__(self, client: Any, sender: PartSender | None = None) -> None:
        self.client = client
        # carries UploadPart and PutObject bodies (the S3 layer picks it: _s3/_build.py)
        self.sender: PartSender = sender if sender is not None else AiobotocoreSender(client)
        # set once a store is caught reporting checksums its own bytes do not have
        # (upload/completer.py): its values are no longer compared with ours
        self.checksums_untrusted = False

    async def _send(
        self,
        operation: str,
        data: Any,
        stall_timeout: float | None,
        time_limit: float | None,
        params: dict[str, Any],
    ) -> dict[str, Any]:
        """``operation`` with ``data`` as its body through the sender, cancelled once it has
        moved no byte for ``stall_timeout`` (the clock starts with the first byte);
        ``time_limit`` is the attempt's own limit (``part_timeout``), applied by the caller
        and told to the sender."""
        view = data if isinstance(data, Gathered) else memoryview(data).cast("B")
        with ProgressDeadline(stall_timeout) as watch:
            request = PartRequest(
                operation, params, view, watch.progress, stall_timeout, time_limit
            )
            response = await self.sender.send(request)
        if watch.stalled:
            raise NetworkError(
                f"{operation} made no progress for stall_timeout={stall_timeout:g} s"
            )
        return response

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: Any,
        *,
        stall_timeout: float | None = None,
        time_limit: float | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """PutObject; a body in memory goes through the part sender."""
        with map_errors("PutObject", bucket=bucket, key=key):
            if isinstance(body, bytes | bytearray | memoryview | Gathered):
                args = {"Bucket": bucket, "Key": key, **params}
                return await self._send("PutObject", body, stall_timeout, time_limit, args)
            return dict(
                await self.client.put_object(
                    Bucket=bucket, Key=key, Body=request_body(body), **params
                )
            )

    async def create_multipart_upload(self, bucket: str, key: str, **params: Any) -> str:
        response = await self.create_multipart_upload_response(bucket, key, **params)
        return str(response["UploadId"])

    async def create_multipart_upload_response(
        self, bucket: str, key: str, **params: Any
    ) -> dict[str, Any]:
        with map_errors("CreateMultipartUpload", bucket=bucket, key=key):
            args = {"Bucket": bucket, "Key": key, **params}
            return await self.sender.call("CreateMultipartUpload", args)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: bytes | bytearray | memoryview | Gathered,
        *,
        stall_timeout: float | None = None,
        time_limit: float | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """UploadPart through the part sender."""
        ctx = {"bucket": bucket, "key": key, "upload_id": upload_id, "part_number": part_number}
        args = {"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number}
        with map_errors("UploadPart", **ctx):
            return await self._send(
                "UploadPart", body, stall_timeout, time_limit, {**args, **params}
            )

    async def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], **params: Any
    ) -> dict[str, Any]:
        with map_errors("CompleteMultipartUpload", bucket=bucket, key=key, upload_id=upload_id):
            args = {"Bucket": bucket, "Key": key, "UploadId": upload_id, **params}
            args["MultipartUpload"] = {"Parts": parts}
            return await self.sender.call("CompleteMultipartUpload", args)

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
        """HeadObject (through the part sender: worker threads where the engine has them)."""
        with map_errors("HeadObject", bucket=bucket, key=key):
            return await self.sender.call("HeadObject", {"Bucket": bucket, "Key": key, **params})

    @asynccontextmanager
    async def get_object(self, bucket: str, key: str, **params: Any) -> AsyncIterator[Any]:
        """Yields the response (through the part sender: its ``Body`` read by worker threads
        where the engine has them); the ``Body`` is released however the block ends."""
        with map_errors("GetObject", bucket=bucket, key=key):
            response = await self.sender.open_get(bucket, key, params)
        body = response["Body"]
        try:
            with map_errors("GetObject", bucket=bucket, key=key):
                yield response
        finally:
            body.close()

    async def get_object_bytes(
        self, bucket: str, key: str, *, md5: bool = False, **params: Any
    ) -> dict[str, Any]:
        """GetObject of a small object, its ``Body`` read whole into bytes (through the part
        sender: worker threads where the engine has them); with ``md5``, ``BodyMD5`` is
        its MD5 (hex), hashed where it was read."""
        with map_errors("GetObject", bucket=bucket, key=key):
            return await self.sender.fetch(bucket, key, params, md5=md5)

    async def get_into(self, bucket: str, key: str, read: RangeRead) -> dict[str, Any]:
        """GetObject with its body read into the memory ``read.accept`` gives (a download's
        range; through the part sender: worker threads where the engine has them)."""
        with map_errors("GetObject", bucket=bucket, key=key):
            return await self.sender.fetch_into(bucket, key, read)

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
