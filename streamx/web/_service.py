"""UploadService: every route's logic, over the checks of ``_core`` and :mod:`._base`.

Each public coroutine takes a :class:`~streamx.web._core.Call` and returns a JSON-ready
payload, or raises :class:`~streamx.web._core.WebError`; :meth:`ServiceBase.handle`
turns the streamx errors of S3 calls into WebErrors (no URL, no credential in them).
Presigned URLs are returned, never logged: the log lines name the key, upload id and
part number only.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any, cast

import anyio

from .._limits import MAX_PART_SIZE, format_size
from .._log import log
from ._base import ServiceBase, run_hook
from ._core import (
    MAX_BATCH,
    Call,
    WebError,
    bare_etag,
    check_content_type,
    check_metadata,
    check_part_number,
    check_parts,
    check_size,
)
from ._overwrite import COMPLETE, PUT, complete_unless_taken, refuse_post, refuse_taken_key
from ._stream import stream_upload


class UploadService(ServiceBase):
    """Every route's logic, independent of the web framework."""

    # -- presigning ----------------------------------------------------------------------

    async def _url(self, operation: str, key: str, **params: Any) -> str:
        lifetime = self.settings.url_lifetime
        url = await self.engine.presign_url(
            operation, self.bucket, key, expires_in=lifetime, **params
        )
        # never the URL itself: it is a credential until it expires
        log.info(
            "web.presigned",
            operation=operation,
            key=key,
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
        params: dict[str, Any] = {"ContentType": content_type}
        headers = {"Content-Type": content_type}
        if size is not None:
            params["ContentLength"] = size
        if await refuse_taken_key(self, key, (PUT,)):  # signed in: the client must send it
            params["IfNoneMatch"] = headers["If-None-Match"] = "*"
        url = await self._url("put_object", key, **params)
        return {
            "url": url,
            "key": key,
            "method": "PUT",
            "headers": headers,
            "expires_in": self.settings.url_lifetime,
        }

    async def presign_get(self, call: Call) -> dict[str, Any]:
        key = await self.authorize(call.request, "download", call.params.get("key"))
        url = await self._url("get_object", key)
        return {"url": url, "key": key, "expires_in": self.settings.url_lifetime}

    # -- the multipart contract ------------------------------------------------------------

    async def _create(self, key: str, content_type: str, meta: dict[str, str]) -> str:
        await refuse_taken_key(self, key, (COMPLETE,))  # before the client sends any part
        params: dict[str, Any] = {"ContentType": content_type}
        if meta:
            params["Metadata"] = meta
        upload_id = await self.engine.multipart.create(self.bucket, key, **params)
        log.info("web.multipart.created", key=key, upload_id=upload_id)
        return upload_id

    async def _part_url(self, key: str, upload_id: str, number: int) -> str:
        return await self._url("upload_part", key, UploadId=upload_id, PartNumber=number)

    async def _complete(self, key: str, upload_id: str, raw_parts: object) -> dict[str, Any]:
        parts = check_parts(raw_parts)
        multipart = self.engine.multipart
        stored = {
            p["PartNumber"]: p for p in await multipart.list_parts(self.bucket, key, upload_id)
        }
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
            await multipart.abort(self.bucket, key, upload_id)
            raise WebError(
                413,
                f"the parts add up to {format_size(total)}, over this server's "
                f"{format_size(self.max_size)} limit; the upload was aborted",
            )
        checked = [
            {"PartNumber": p["PartNumber"], "ETag": stored[p["PartNumber"]]["ETag"]} for p in parts
        ]
        response = await complete_unless_taken(self, key, upload_id, checked)
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
        await self.engine.multipart.abort(self.bucket, key, upload_id)
        log.info("web.multipart.aborted", key=key, upload_id=upload_id)

    async def _list(self, key: str, upload_id: str) -> list[dict[str, Any]]:
        stored = await self.engine.multipart.list_parts(self.bucket, key, upload_id)
        return [
            {"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p.get("Size")}
            for p in stored
        ]

    async def multipart_init(self, call: Call) -> dict[str, Any]:
        key = await self.authorize(call.request, "multipart.create", call.field("key"))
        content_type = check_content_type(call.field("content_type"))
        check_size(call.field("size"), self.max_size)
        upload_id = await self._create(key, content_type, {})
        return {"upload_id": await self.issue(call.request, key, upload_id), "key": key}

    async def multipart_part_url(self, call: Call) -> dict[str, Any]:
        key, upload_id, token = await self.open_upload(
            call.request, "multipart.sign", call.field("key"), call.field("upload_id")
        )
        number = check_part_number(call.field("part_number"), self.max_size)
        url = await self._part_url(key, upload_id, number)
        return {
            "url": url,
            "key": key,
            "upload_id": token,
            "part_number": number,
            "expires_in": self.settings.url_lifetime,
        }

    async def multipart_complete(self, call: Call) -> dict[str, Any]:
        key, upload_id, _ = await self.open_upload(
            call.request, "multipart.complete", call.field("key"), call.field("upload_id")
        )
        return await self._complete(key, upload_id, call.field("parts"))

    async def multipart_abort(self, call: Call) -> dict[str, Any]:
        key, upload_id, token = await self.open_upload(
            call.request, "multipart.abort", call.field("key"), call.field("upload_id")
        )
        await self._abort(key, upload_id)
        return {"key": key, "upload_id": token, "aborted": True}

    async def multipart_parts(self, call: Call) -> dict[str, Any]:
        key, upload_id, token = await self.open_upload(
            call.request, "multipart.list", call.field("key"), call.field("upload_id")
        )
        return {"key": key, "upload_id": token, "parts": await self._list(key, upload_id)}

    # -- Uppy / Companion ------------------------------------------------------------------

    async def _uppy_key(self, call: Call, filename: object) -> str:
        if not isinstance(filename, str) or not filename:
            raise WebError(400, "'filename' must be a non-empty string")
        prefix = await self.prefix_for(call.request)
        make_key = self.settings.make_key
        if make_key is None:
            return prefix + filename
        return cast(str, await run_hook("make_key", make_key, call.request, prefix, filename))

    async def _uppy_upload(self, call: Call, action: str) -> tuple[str, str]:
        """``(key, S3 upload id)`` from the ``{uploadId}`` path and ``?key=`` Uppy echoes."""
        key = call.query.get("key")
        if not isinstance(key, str):
            raise WebError(400, 'the object key must be passed as a query parameter: "?key=..."')
        checked, upload_id, _ = await self.open_upload(
            call.request, action, key, call.params.get("uploadId")
        )
        return checked, upload_id

    async def uppy_params(self, call: Call) -> dict[str, Any]:
        """A presigned POST form, as Companion answers: the policy bounds the size."""
        filename = call.query.get("filename")
        key = await self.authorize(call.request, "upload", await self._uppy_key(call, filename))
        if not self.settings.overwrite:
            raise refuse_post()
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
        form = await self.engine.presign_post(
            self.bucket, key, fields=fields, conditions=conditions, expires_in=lifetime
        )
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
        token = await self.issue(call.request, key, upload_id)
        return {"key": key, "uploadId": token, "bucket": self.bucket}

    async def uppy_sign_part(self, call: Call) -> dict[str, Any]:
        key, upload_id = await self._uppy_upload(call, "multipart.sign")
        number = check_part_number(call.params.get("partNumber"), self.max_size)
        url = await self._part_url(key, upload_id, number)
        return {"url": url, "expires": self.settings.url_lifetime}

    async def uppy_sign_batch(self, call: Call) -> dict[str, Any]:
        """Up to :data:`MAX_BATCH` part URLs; the loop is yielded between two signatures, so
        a batch never holds up the server's other requests."""
        raw = call.query.get("partNumbers")
        if not isinstance(raw, str) or not raw:
            raise WebError(
                400,
                'the part numbers must be a comma separated query parameter: "?partNumbers=4,6,7"',
            )
        if raw.count(",") >= MAX_BATCH:
            raise WebError(400, f"at most {MAX_BATCH} part numbers per batch", "batch_too_large")
        numbers = [check_part_number(n, self.max_size) for n in raw.split(",")]
        key, upload_id = await self._uppy_upload(call, "multipart.sign")
        urls: dict[str, str] = {}
        for number in numbers:
            urls[str(number)] = await self._part_url(key, upload_id, number)
            await anyio.lowlevel.checkpoint()
        return {"presignedUrls": urls}

    async def uppy_list_parts(self, call: Call) -> list[dict[str, Any]]:
        key, upload_id = await self._uppy_upload(call, "multipart.list")
        return await self._list(key, upload_id)

    async def uppy_complete(self, call: Call) -> dict[str, Any]:
        key, upload_id = await self._uppy_upload(call, "multipart.complete")
        done = await self._complete(key, upload_id, call.field("parts"))
        return {"location": done["location"], "key": key, "bucket": self.bucket}

    async def uppy_abort(self, call: Call) -> dict[str, Any]:
        key, upload_id = await self._uppy_upload(call, "multipart.abort")
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
        method: str = "PUT",
    ) -> dict[str, Any]:
        """Upload a request body as it arrives (see :func:`streamx.web._stream.stream_upload`)."""
        return await stream_upload(
            self,
            request,
            key,
            chunks,
            content_type=content_type,
            content_length=content_length,
            disconnect=disconnect,
            method=method,
        )
