"""UploadService: every route's logic, over the checks of ``_core`` and one Engine.

Each public coroutine takes a :class:`~streamx.web._core.Call` and returns a JSON-ready
payload, or raises :class:`~streamx.web._core.WebError`; :meth:`UploadService.handle`
turns the streamx errors of S3 calls into WebErrors (no URL, no credential in them).
Presigned URLs are returned, never logged: the log lines name the key, upload id and
part number only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from .._engine import Engine
from .._errors import ConfigError, SourceError, StreamxError
from .._limits import MAX_PART_SIZE, format_size
from .._log import log
from ._core import (
    AccessRequest,
    Call,
    UploadSettings,
    WebError,
    bare_etag,
    check_content_type,
    check_key,
    check_metadata,
    check_part_number,
    check_parts,
    check_prefix,
    check_size,
    check_upload_id,
    find_cause,
    maybe_await,
    web_error_for,
)


class _BodyTooLarge(WebError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is over this server's {format_size(limit)} limit")


class UploadService:
    """Every route's logic, independent of the web framework."""

    def __init__(self, settings: UploadSettings) -> None:
        if not isinstance(settings, UploadSettings):
            raise ConfigError("settings must be a streamx.web.UploadSettings")
        self.settings = settings
        self.bucket = settings.bucket
        self.max_size = settings.max_size

    @property
    def engine(self) -> Engine:
        engine = self.settings.engine
        return engine if isinstance(engine, Engine) else engine()

    async def prefix_for(self, request: Any) -> str:
        prefix = self.settings.prefix
        if isinstance(prefix, str):
            return prefix
        try:
            return check_prefix(await maybe_await(prefix(request)))
        except ConfigError as exc:
            raise WebError(500, f"the server's prefix hook is misconfigured: {exc}") from None

    async def authorize(
        self, request: Any, action: str, key: object, upload_id: str | None = None
    ) -> str:
        """The checked key, once the prefix and the application's hook allow ``action``."""
        checked = check_key(key, await self.prefix_for(request))
        access = AccessRequest(request, action, checked, upload_id)
        if not await maybe_await(self.settings.authorize(access)):
            raise WebError(403, f"you may not {action.split('.')[-1]} {checked!r}")
        return checked

    async def handle(self, handler: str, call: Call) -> Any:
        """Run one route; every failure comes back as a :class:`WebError`."""
        try:
            return await getattr(self, handler)(call)
        except WebError:
            raise
        except StreamxError as exc:
            error = web_error_for(exc)
            log.warning(
                "web.storage_error",
                route=handler,
                status=error.status,
                error=type(exc).__name__,
                code=getattr(exc, "code", None),
                key=exc.key,
                upload_id=exc.upload_id,
            )
            raise error from exc

    # -- presigning ----------------------------------------------------------------------

    async def _url(self, operation: str, **params: Any) -> str:
        lifetime = self.settings.url_lifetime
        url = await self.engine.s3.presign_url(
            operation, {"Bucket": self.bucket, **params}, lifetime
        )
        # never the URL itself: it is a credential until it expires
        log.info(
            "web.presigned",
            operation=operation,
            key=params.get("Key"),
            upload_id=params.get("UploadId"),
            part_number=params.get("PartNumber"),
            expires_in=lifetime,
        )
        return url

    async def presign_put(self, call: Call) -> dict[str, Any]:
        key = await self.authorize(call.request, "upload", call.field("key"))
        content_type = check_content_type(call.field("content_type"))
        # a presigned PUT can only enforce a size through a signed Content-Length
        size = check_size(call.field("size"), self.max_size, required=self.max_size < MAX_PART_SIZE)
        params: dict[str, Any] = {"Key": key, "ContentType": content_type}
        headers = {"Content-Type": content_type}
        if size is not None:
            params["ContentLength"] = size
        url = await self._url("put_object", **params)
        return {
            "url": url,
            "key": key,
            "method": "PUT",
            "headers": headers,
            "expires_in": self.settings.url_lifetime,
        }

    async def presign_get(self, call: Call) -> dict[str, Any]:
        key = await self.authorize(call.request, "download", call.params.get("key"))
        url = await self._url("get_object", Key=key)
        return {"url": url, "key": key, "expires_in": self.settings.url_lifetime}

    # -- the multipart contract ------------------------------------------------------------

    async def _create(self, key: str, content_type: str, meta: dict[str, str]) -> str:
        params: dict[str, Any] = {"ContentType": content_type}
        if meta:
            params["Metadata"] = meta
        upload_id = await self.engine.s3.create_multipart_upload(self.bucket, key, **params)
        log.info("web.multipart.created", key=key, upload_id=upload_id)
        return upload_id

    async def _part_url(self, key: str, upload_id: str, number: int) -> str:
        return await self._url("upload_part", Key=key, UploadId=upload_id, PartNumber=number)

    async def _complete(self, key: str, upload_id: str, raw_parts: object) -> dict[str, Any]:
        parts = check_parts(raw_parts)
        s3 = self.engine.s3
        stored = {p["PartNumber"]: p for p in await s3.list_parts(self.bucket, key, upload_id)}
        total = 0
        for part in parts:
            number = part["PartNumber"]
            if number not in stored:
                raise WebError(400, f"part {number} was never uploaded", "invalid_part")
            if bare_etag(stored[number]["ETag"]) != bare_etag(part["ETag"]):
                raise WebError(
                    400,
                    f"part {number}: the ETag sent does not match the part S3 stored; "
                    "send the ETag header of that part's PUT response",
                    "invalid_part",
                )
            total += int(stored[number].get("Size", 0))
        if total > self.max_size:
            await s3.abort_multipart_upload(self.bucket, key, upload_id)
            raise WebError(
                413,
                f"the parts add up to {format_size(total)}, over this server's "
                f"{format_size(self.max_size)} limit; the upload was aborted",
            )
        checked = [
            {"PartNumber": p["PartNumber"], "ETag": stored[p["PartNumber"]]["ETag"]} for p in parts
        ]
        response = await s3.complete_multipart_upload(self.bucket, key, upload_id, checked)
        log.info("web.multipart.completed", key=key, upload_id=upload_id, size=total)
        return {
            "key": key,
            "bucket": self.bucket,
            "etag": response.get("ETag"),
            "size": total,
            "version_id": response.get("VersionId"),
            "location": response.get("Location"),
        }

    async def _abort(self, key: str, upload_id: str) -> None:
        await self.engine.s3.abort_multipart_upload(self.bucket, key, upload_id)
        log.info("web.multipart.aborted", key=key, upload_id=upload_id)

    async def _list(self, key: str, upload_id: str) -> list[dict[str, Any]]:
        stored = await self.engine.s3.list_parts(self.bucket, key, upload_id)
        return [
            {"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p.get("Size")}
            for p in stored
        ]

    async def multipart_init(self, call: Call) -> dict[str, Any]:
        key = await self.authorize(call.request, "multipart.create", call.field("key"))
        content_type = check_content_type(call.field("content_type"))
        check_size(call.field("size"), self.max_size)
        upload_id = await self._create(key, content_type, {})
        return {"upload_id": upload_id, "key": key}

    async def multipart_part_url(self, call: Call) -> dict[str, Any]:
        upload_id = check_upload_id(call.field("upload_id"))
        key = await self.authorize(call.request, "multipart.sign", call.field("key"), upload_id)
        number = check_part_number(call.field("part_number"), self.max_size)
        url = await self._part_url(key, upload_id, number)
        return {
            "url": url,
            "key": key,
            "upload_id": upload_id,
            "part_number": number,
            "expires_in": self.settings.url_lifetime,
        }

    async def multipart_complete(self, call: Call) -> dict[str, Any]:
        upload_id = check_upload_id(call.field("upload_id"))
        key = await self.authorize(call.request, "multipart.complete", call.field("key"), upload_id)
        return await self._complete(key, upload_id, call.field("parts"))

    async def multipart_abort(self, call: Call) -> dict[str, Any]:
        upload_id = check_upload_id(call.field("upload_id"))
        key = await self.authorize(call.request, "multipart.abort", call.field("key"), upload_id)
        await self._abort(key, upload_id)
        return {"key": key, "upload_id": upload_id, "aborted": True}

    async def multipart_parts(self, call: Call) -> dict[str, Any]:
        upload_id = check_upload_id(call.field("upload_id"))
        key = await self.authorize(call.request, "multipart.list", call.field("key"), upload_id)
        return {"key": key, "upload_id": upload_id, "parts": await self._list(key, upload_id)}

    # -- Uppy / Companion ------------------------------------------------------------------

    async def _uppy_key(self, call: Call, filename: object) -> str:
        if not isinstance(filename, str) or not filename:
            raise WebError(400, "'filename' must be a non-empty string")
        prefix = await self.prefix_for(call.request)
        make_key = self.settings.make_key
        return make_key(call.request, prefix, filename) if make_key else prefix + filename

    def _uppy_upload(self, call: Call) -> tuple[str, object]:
        upload_id = check_upload_id(call.params.get("uploadId"))
        key = call.query.get("key")
        if not isinstance(key, str):
            raise WebError(400, 'the object key must be passed as a query parameter: "?key=..."')
        return upload_id, key

    async def uppy_params(self, call: Call) -> dict[str, Any]:
        """A presigned POST form, as Companion answers: the policy bounds the size."""
        filename = call.query.get("filename")
        key = await self.authorize(call.request, "upload", await self._uppy_key(call, filename))
        content_type = check_content_type(call.query.get("type"))
        meta = check_metadata(
            {
                k[9:-1]: v
                for k, v in call.query.items()
                if k.startswith("metadata[") and k[-1] == "]"
            }
        )
        fields: dict[str, Any] = {"success_action_status": "201", "Content-Type": content_type}
        conditions: list[Any] = [
            {"success_action_status": "201"},
            {"Content-Type": content_type},
            ["content-length-range", 0, min(self.max_size, MAX_PART_SIZE)],
        ]
        for name, text in meta.items():
            fields[f"x-amz-meta-{name}"] = text
            conditions.append({f"x-amz-meta-{name}": text})
        lifetime = self.settings.url_lifetime
        form = await self.engine.s3.presign_post(self.bucket, key, fields, conditions, lifetime)
        log.info("web.presigned", operation="post_object", key=key, expires_in=lifetime)
        return {"method": "POST", "url": form["url"], "fields": form["fields"], "expires": lifetime}

    async def uppy_create(self, call: Call) -> dict[str, Any]:
        key = await self.authorize(
            call.request, "multipart.create", await self._uppy_key(call, call.field("filename"))
        )
        content_type = call.field("type")
        if not isinstance(content_type, str):
            raise WebError(400, "s3: content type must be a string")
        upload_id = await self._create(
            key, check_content_type(content_type), check_metadata(call.field("metadata"))
        )
        return {"key": key, "uploadId": upload_id, "bucket": self.bucket}

    async def uppy_sign_part(self, call: Call) -> dict[str, Any]:
        upload_id, raw_key = self._uppy_upload(call)
        key = await self.authorize(call.request, "multipart.sign", raw_key, upload_id)
        number = check_part_number(call.params.get("partNumber"), self.max_size)
        url = await self._part_url(key, upload_id, number)
        return {"url": url, "expires": self.settings.url_lifetime}

    async def uppy_sign_batch(self, call: Call) -> dict[str, Any]:
        upload_id, raw_key = self._uppy_upload(call)
        key = await self.authorize(call.request, "multipart.sign", raw_key, upload_id)
        raw = call.query.get("partNumbers")
        if not isinstance(raw, str) or not raw:
            raise WebError(
                400,
                'the part numbers must be a comma separated query parameter: "?partNumbers=4,6,7"',
            )
        numbers = [check_part_number(n, self.max_size) for n in raw.split(",")]
        if len(numbers) > 1000:
            raise WebError(400, "at most 1000 part numbers per batch")
        urls = {str(n): await self._part_url(key, upload_id, n) for n in numbers}
        return {"presignedUrls": urls}

    async def uppy_list_parts(self, call: Call) -> list[dict[str, Any]]:
        upload_id, raw_key = self._uppy_upload(call)
        key = await self.authorize(call.request, "multipart.list", raw_key, upload_id)
        return await self._list(key, upload_id)

    async def uppy_complete(self, call: Call) -> dict[str, Any]:
        upload_id, raw_key = self._uppy_upload(call)
        key = await self.authorize(call.request, "multipart.complete", raw_key, upload_id)
        done = await self._complete(key, upload_id, call.field("parts"))
        return {"location": done["location"], "key": key, "bucket": self.bucket}

    async def uppy_abort(self, call: Call) -> dict[str, Any]:
        upload_id, raw_key = self._uppy_upload(call)
        key = await self.authorize(call.request, "multipart.abort", raw_key, upload_id)
        await self._abort(key, upload_id)
        return {}

    # -- streamed request bodies ---------------------------------------------------------

    async def stream_upload(
        self,
        request: Any,
        key: object,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str | None,
        content_length: int | None,
        disconnect: tuple[type[BaseException], ...] = (),
    ) -> dict[str, Any]:
        """Upload a request body as it arrives; the UploadResult as a JSON-ready dict.

        Memory stays within the transfer config's bound: while S3 is slower than the
        client, the body is not read, the server's receive buffer fills and TCP stops
        the client. Past ``max_size`` (or a Content-Length over it) the answer is 413
        and the multipart upload is aborted; a client that disconnects (one of
        ``disconnect``, or a failed read) aborts it too.
        """
        checked = await self.authorize(request, "upload", key)
        kind = check_content_type(content_type)
        check_size(content_length, self.max_size)
        limit = self.max_size

        async def limited() -> AsyncIterator[bytes]:
            seen = 0
            async for chunk in chunks:
                seen += len(chunk)
                if seen > limit:
                    raise _BodyTooLarge(limit)
                yield chunk

        try:
            result = await self.engine.upload(
                self.bucket,
                checked,
                limited(),
                config=self.settings.transfer_config,
                size=content_length,
                ContentType=kind,
            )
        except StreamxError as exc:
            too_large = find_cause(exc, _BodyTooLarge)
            if isinstance(too_large, WebError):
                log.info("web.stream.too_large", key=checked, limit=limit)
                raise WebError(too_large.status, too_large.message) from exc
            if isinstance(exc, SourceError):
                gone = find_cause(exc, disconnect) if disconnect else None
                log.warning(
                    "web.stream.client_failed", key=checked, error=type(exc.__cause__).__name__
                )
                if gone is not None:
                    raise WebError(499, "the client disconnected; the upload was aborted") from exc
                raise WebError(
                    400, "reading the request body failed; the upload was aborted"
                ) from exc
            raise web_error_for(exc) from exc
        return dataclasses.asdict(result)
