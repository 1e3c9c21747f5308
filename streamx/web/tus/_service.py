"""TusService: the tus 1.0.0 routes over S3, independent of the web framework.

``OPTIONS``, ``POST`` (creation, creation-with-upload, deferred length), ``HEAD``,
``PATCH`` (with ``Upload-Checksum``) and ``DELETE`` (termination). Every route
asks the same prefix and authorization hooks as the other routes of
:class:`~streamx.web.UploadSettings`, with the actions ``tus.create``,
``tus.head``, ``tus.patch`` and ``tus.delete``. An upload belongs to the prefix it
was created under: another user's requests for it are answered 404, as for an
id that does not exist. Ids are 192 random bits, so they cannot be guessed.

**Overwrites** (``UploadSettings.overwrite``, default ``False``): creation answers
**409** (``object_exists``, as the other routes do) when the key is taken, before a
byte of the body is read; the PutObject or CompleteMultipartUpload that makes the
object carries ``If-None-Match: *``, so a key taken meanwhile is refused by the store,
the upload (which can never complete) is removed and the PATCH answers 409. Not 412:
tus gives 412 its own meaning (an unsupported ``Tus-Resumable`` version), and the
client sent no precondition of its own. tus-js-client retries a 409 while it has
``retryDelays`` left (after a refused PATCH, HEAD finds no upload and a new creation
gets the same 409), writing nothing. A store that ignores the condition: 500
``overwrite_unenforceable`` at creation, as on every other route.
"""

from __future__ import annotations

import secrets
from typing import Any

import anyio

from ..._budget import MemoryBudget
from ..._config import TransferConfig
from ..._errors import ConfigError, StreamxError
from ..._limits import MAX_OBJECT_SIZE, PartPlan, format_size
from ..._log import log
from .._core import UploadSettings, WebError, check_content_type, check_key, web_error_for
from .._overwrite import EITHER, refuse_taken_key
from .._service import UploadService
from ._concat import Concatenation, parse_final
from ._patch import PatchWriter
from ._protocol import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    OFFSET_OCTET_STREAM,
    TUS_VERSION,
    TusError,
    TusOptions,
    TusRequest,
    TusResponse,
    add_cors,
    check_upload_id,
    http_date,
    now,
    parse_checksum,
    parse_int,
    parse_metadata,
)
from ._state import TusStore, UploadInfo


class TusService:
    """Answers tus requests; one per endpoint (it holds the in-process locks)."""

    def __init__(
        self, settings: UploadSettings | UploadService, options: TusOptions | None = None
    ) -> None:
        self.uploads = settings if isinstance(settings, UploadService) else UploadService(settings)
        self.options = options if options is not None else TusOptions()
        if not isinstance(self.options, TusOptions):
            raise ConfigError("options must be a streamx.web.tus.TusOptions")
        self.settings = self.uploads.settings
        self.max_size = min(self.settings.max_size, MAX_OBJECT_SIZE)
        self.store = TusStore(
            lambda: self.uploads.engine,
            self.settings.bucket,
            self.options.state_prefix,
            self.options.lock_timeout,
        )
        self.budget = MemoryBudget(self.options.memory_bound)  # every PATCH together

    def _budgets(self) -> list[MemoryBudget]:
        shared = self.uploads.engine.memory_budget
        return [self.budget] if shared is None else [self.budget, shared]

    @property
    def config(self) -> TransferConfig:
        return self.settings.transfer_config or self.uploads.engine.config

    # -- dispatch -------------------------------------------------------------------------

    async def handle(self, request: TusRequest) -> TusResponse:
        """Answer one request; never raises for a refusal or a storage failure."""
        method = request.method.upper()
        override = request.header("x-http-method-override")
        if method == "POST" and override and override.upper() in ("PATCH", "DELETE"):
            method = override.upper()
        try:
            if method == "OPTIONS":
                response = self.options_response(request)
            else:
                resumable = request.header("tus-resumable")
                if resumable != TUS_VERSION:
                    raise TusError(
                        412, f"Tus-Resumable must be {TUS_VERSION}", {"Tus-Version": TUS_VERSION}
                    )
                route = {
                    "POST": self.create,
                    "HEAD": self.head,
                    "PATCH": self.patch,
                    "DELETE": self.terminate,
                }.get(method)
                if route is None or (method == "POST") != (request.upload_id is None):
                    raise TusError(405, f"{method} is not allowed here")
                response = await route(request)
        except TusError as exc:
            response = TusResponse(exc.status, exc.headers, exc.message.encode())
        except WebError as exc:
            response = TusResponse(exc.status, {}, exc.message.encode())
        except StreamxError as exc:
            error = web_error_for(exc)
            log.warning("tus.storage_error", status=error.status, error=type(exc).__name__)
            response = TusResponse(error.status, {}, error.message.encode())
        if response.body:
            response.headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        response.headers["Tus-Resumable"] = TUS_VERSION
        add_cors(request, response, self.options.allow_origins)
        return response

    def options_response(self, request: TusRequest) -> TusResponse:
        return TusResponse(
            204,
            {
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": ",".join(EXTENSIONS),
                "Tus-Max-Size": str(self.max_size),
                "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
            },
        )

    # -- shared checks ----------------------------------------------------------------------

    async def _owned(self, request: TusRequest, action: str) -> UploadInfo:
        """The upload's info, once it exists, is the caller's, is allowed and has not expired."""
        upload = check_upload_id(request.upload_id)
        prefix = await self.uploads.prefix_for(request.native)
        info = await self.store.load(upload)
        mine = info is not None and info.owner == prefix
        if info is None or not mine or not (info.key.startswith(prefix) or info.concat):
            raise TusError(404, "no such upload")
        key = info.owner + info.id if info.concat == "partial" else info.key  # as created
        await self.uploads.authorize(request.native, action, key, upload)
        if info.expired():
            await self.store.remove(info, abort=True)
            log.info("tus.expired", upload=upload, key=info.key)
            raise TusError(410, "this upload expired and was removed")
        return info

    def _state_headers(self, info: UploadInfo) -> dict[str, str]:
        headers = {"Upload-Offset": str(info.offset)}
        if info.expires is not None:
            headers["Upload-Expires"] = http_date(info.expires)
        return headers

    def _plan(self, length: int | None) -> PartPlan:
        if length is None:
            return PartPlan.for_stream(self.options.part_size)
        return PartPlan.for_known_size(length, self.options.part_size)

    def _length(self, value: str | None) -> int:
        length = parse_int("Upload-Length", value)
        if length > self.max_size:
            raise TusError(
                413, f"{format_size(length)} is over this server's {format_size(self.max_size)}"
            )
        return length

    # -- the routes ---------------------------------------------------------------------------

    async def create(self, request: TusRequest) -> TusResponse:
        concat = request.header("upload-concat")
        if concat is not None and concat.strip() != "partial":
            return await self.create_final(request, concat)
        defer = request.header("upload-defer-length")
        raw_length = request.header("upload-length")
        if defer is not None and (defer != "1" or raw_length is not None):
            raise TusError(400, "send Upload-Length, or Upload-Defer-Length: 1, not both")
        if defer is None and raw_length is None:
            raise TusError(400, "Upload-Length (or Upload-Defer-Length: 1) is required")
        length = None if defer is not None else self._length(raw_length)
        raw_meta = request.header("upload-metadata") or ""
        metadata = parse_metadata(raw_meta)
        body = self._body(request, creation=True)
        prefix = await self.uploads.prefix_for(request.native)
        upload = secrets.token_urlsafe(24)
        make_key = self.options.make_key
        partial = concat is not None  # its bytes go to a helper object (_concat.py)
        if make_key and not partial:
            key = make_key(request.native, prefix, upload, metadata)
        else:  # a partial is authorized as prefix + id, whatever its final key will be
            key = prefix + upload
        key = await self.uploads.authorize(request.native, "tus.create", check_key(key, prefix))
        # overwrite=False: 409 for a taken key before any byte is read (the body of a
        # creation-with-upload included); the write that makes the object carries the
        # condition, so a key taken meanwhile is refused by the store, never replaced
        conditions = {} if partial else await refuse_taken_key(self.uploads, key, EITHER)
        content_type = self._content_type(metadata)
        plan = self._plan(length)
        created = now()
        expiration = self.options.expiration
        info = UploadInfo(
            id=upload,
            key=self.store.data_key(upload) if partial else key,
            owner=prefix,
            length=length,
            metadata=metadata,
            raw_metadata=raw_meta,
            content_type=content_type,
            created=created,
            expires=None if expiration is None else created + expiration,
            plan_base=plan.base,
            plan_interval=plan.interval,
            if_none_match=bool(conditions),
            concat="partial" if partial else None,
        )
        await self.store.save(info)
        log.info("tus.created", upload=upload, key=key, length=length, partial=partial)
        headers = {"Location": f"{request.collection.rstrip('/')}/{upload}"}
        if body is not None or length == 0:
            async with self.store.lock(upload):  # nobody else knows the id yet: no reload
                headers.update(await self._write(request, info, body))
        else:  # tus-js-client reads the offset of every creation it sent data with
            headers.update(self._state_headers(info))
        return TusResponse(201, headers)

    def _content_type(self, metadata: dict[str, str]) -> str:
        for name in ("filetype", "contentType", "content_type", "type"):
            if name in metadata:
                try:
                    return check_content_type(metadata[name])
                except WebError:
                    break
        return "application/octet-stream"

    def _body(self, request: TusRequest, *, creation: bool = False) -> Any:
        kind = (request.header("content-type") or "").split(";")[0].strip().lower()
        if kind != OFFSET_OCTET_STREAM:
            length = request.header("content-length")
            chunked = "chunked" in (request.header("transfer-encoding") or "").lower()
            if creation and (length == "0" or (length is None and not chunked)):
                return None  # creation without a body (whatever Content-Type a client sets)
            raise TusError(415, f"the body's Content-Type must be {OFFSET_OCTET_STREAM}")
        return request.body

    async def head(self, request: TusRequest) -> TusResponse:
        info = await self._owned(request, "tus.head")
        headers = self._state_headers(info)
        headers["Cache-Control"] = "no-store"
        if info.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(info.length)
        if info.raw_metadata:
            headers["Upload-Metadata"] = info.raw_metadata
        if info.concat:
            headers["Upload-Concat"] = info.concat
        return TusResponse(200, headers)

    async def patch(self, request: TusRequest) -> TusResponse:
        body = self._body(request)
        offset = parse_int("Upload-Offset", request.header("upload-offset"))
        parse_checksum(request.header("upload-checksum"))  # 400 before any read
        upload = check_upload_id(request.upload_id)
        await self.uploads.prefix_for(request.native)  # 401 before anything is stored
        # lock, then read the info once: another replica may have just moved it
        async with self.store.lock(upload):
            info = await self._owned(request, "tus.patch")
            headers = await self._write(request, info, body, offset)
        return TusResponse(204, headers)

    async def _write(
        self, request: TusRequest, info: UploadInfo, body: Any, offset: int = 0
    ) -> dict[str, str]:
        """Append ``body`` at ``offset`` (the caller holds the upload's lock)."""
        changed = False
        raw_length = request.header("upload-length")
        if raw_length is not None:
            length = self._length(raw_length)
            if info.length is None:
                if length < info.offset:
                    raise TusError(400, "Upload-Length is below the bytes already received")
                info.length, changed = length, True
            elif length != info.length:
                raise TusError(400, "Upload-Length cannot change once set")
        if offset != info.offset:
            raise TusError(409, f"Upload-Offset {offset} does not match the upload's {info.offset}")
        declared = request.header("content-length")
        if info.length is not None and declared and declared.isdigit():
            if info.offset + int(declared) > info.length:
                raise TusError(413, "the body goes past Upload-Length")
        writer = self._writer(request, info)
        writer.saved = not changed
        await writer.run(body)
        return self._state_headers(info)

    def _writer(self, request: TusRequest, info: UploadInfo) -> PatchWriter:
        return PatchWriter(
            self.store,
            info,
            self.config,
            expiration=self.options.expiration,
            checksum=parse_checksum(request.header("upload-checksum")),
            disconnect=request.disconnect,
            put_args={"ContentType": info.content_type},
            concurrency=self.options.concurrency,
            budgets=self._budgets(),
        )

    async def create_final(self, request: TusRequest, header: str) -> TusResponse:
        """``Upload-Concat: final;...``: the object, made of completed partial uploads."""
        if request.header("upload-length") or request.header("upload-defer-length"):
            raise TusError(400, "a final upload takes no Upload-Length: it is its partials'")
        ids = parse_final(header)
        if self._body(request, creation=True) is not None:
            raise TusError(400, "a final upload takes no body")
        raw_meta = request.header("upload-metadata") or ""
        metadata = parse_metadata(raw_meta)
        prefix = await self.uploads.prefix_for(request.native)
        partials = []
        for part_id in ids:
            part = await self.store.load(part_id)
            if part is None or part.owner != prefix or part.concat != "partial":
                raise TusError(400, f"{part_id} is not a partial upload of yours")
            if not part.completed or part.expired() or part.length is None:
                raise TusError(400, f"partial upload {part_id} is not complete (or expired)")
            partials.append(part)
        length = sum(p.length or 0 for p in partials)
        if length > self.max_size:
            raise TusError(413, f"{format_size(length)} is over {format_size(self.max_size)}")
        upload = secrets.token_urlsafe(24)
        make_key = self.options.make_key
        key = make_key(request.native, prefix, upload, metadata) if make_key else prefix + upload
        key = await self.uploads.authorize(request.native, "tus.create", check_key(key, prefix))
        conditions = await refuse_taken_key(self.uploads, key, EITHER)
        plan = self._plan(length)
        info = UploadInfo(
            id=upload,
            key=key,
            owner=prefix,
            length=length,
            metadata=metadata,
            raw_metadata=raw_meta,
            content_type=self._content_type(metadata),
            created=now(),
            expires=None if self.options.expiration is None else now() + self.options.expiration,
            plan_base=plan.base,
            plan_interval=plan.interval,
            if_none_match=bool(conditions),
            concat=header.strip(),
        )
        store = self.uploads.engine.store
        copy = store.upload_part_copy is True  # else every byte is read back and sent
        async with self.store.lock(upload):
            await self.store.save(info)  # a crash leaves it to the sweep, never an orphan
            try:
                sources = [self.store.data_key(p.id) for p in partials]
                sizes = [p.length or 0 for p in partials]
                await Concatenation(self._writer(request, info), sources, sizes, copy=copy).run()
            except BaseException:
                if not info.completed:
                    with anyio.CancelScope(shield=True):
                        await self.store.remove(info, abort=True)
                raise
        for part in partials:  # their bytes are in the object now
            await self.store.remove(part, abort=False)
        log.info("tus.created", upload=upload, key=key, length=length, partials=len(ids))
        return TusResponse(201, {"Location": f"{request.collection.rstrip('/')}/{upload}"})

    async def terminate(self, request: TusRequest) -> TusResponse:
        info = await self._owned(request, "tus.delete")
        async with self.store.lock(info.id):
            await self.store.remove(info, abort=True)
        log.info("tus.terminated", upload=info.id, key=info.key)
        return TusResponse(204)
