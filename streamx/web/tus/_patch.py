"""One PATCH: the body, cut into S3 parts as it arrives, with bounded memory.

::

    body ──► cut at the plan's part boundaries ──► UploadPart x concurrency ──► info saved
      │                                                              (in part order)
      └─ the remainder at the end ──► a new piece (``ID.part.<offset>``) ──► info saved

The part boundaries are absolute offsets of the plan fixed at creation, so a
client that resends bytes after a drop produces the same parts. Memory: the part
being filled and up to ``concurrency`` (1) being sent, every byte counted against
the endpoint's ``memory_limit`` for all PATCHes together (``_buffer.py``) and
against the PATCH's own window: the parts in flight and half a part more. While
S3 is slower than the client the body is not read, and TCP stops the client. The earlier pieces are fetched
only when the bytes fill a part; the part that ends the upload is sent, the
multipart upload completed (or, for an upload that never filled a part, one
PutObject sent), and every helper object deleted.

With ``Upload-Checksum`` the PATCH is all or nothing: parts are sent as they fill
but the info only lists them once the digest matches; on a mismatch (460) the
offset stays where it was. Without it, every acknowledged part is committed at
once, and a client that drops mid-body keeps what arrived (tus semantics).

**The machinery shared with the upload pipeline**: every part goes through the
engine's public ``engine.multipart.upload_part`` (the engine's part transport,
retries, stall detection, the emptied-body check), the end through
``engine.multipart.complete`` (shielded, conditions: 412 → the upload removed), and
the parts grow in the pipeline's :class:`~streamx.upload.growing.GrowingBuffer`
under the growing-budget rule of ``_budget.py``. What does *not* fit is the
writer's suspend/resume (:class:`~streamx.upload.resume.ResumeToken`) as the unit
of a PATCH: ``suspend()`` drops the part being filled, where tus must keep every
byte it acknowledged (the tail below 5 MiB is stored as a piece, and the next PATCH
puts it in front of its first part, which a resumed writer cannot take); each
``open_writer(resume=)`` checks the parts with ListParts (and waits out a cut), one
more request per PATCH and a listing of up to 10,000 parts, where the info object
already is the record; a failed pipeline aborts the upload, a failed PATCH must
keep it for the client's retry; and ``Upload-Checksum`` needs parts sent but not
committed until the digest matches. The info's parts are a ResumeToken's parts
(number, ETag, size) under another name.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ..._budget import MemoryBudget
from ..._concurrency import task_group
from ..._config import TransferConfig
from ..._errors import ConditionalConflictError, PreconditionFailedError
from ..._log import log
from .._errors import web_error_for
from .._overwrite import NO_OVERWRITE
from ._buffer import PartBuffer
from ._protocol import TusError, now
from ._state import TusStore, UploadInfo

MAX_PIECES = 32  # more pieces than this are merged into one


class ChecksumMismatch(TusError):
    def __init__(self) -> None:
        super().__init__(460, "the body does not match Upload-Checksum; nothing was kept")


class PatchWriter:
    """Appends one request body to an upload (the caller holds its lock)."""

    def __init__(
        self,
        store: TusStore,
        info: UploadInfo,
        config: TransferConfig,
        *,
        expiration: float | None,
        checksum: tuple[str, bytes] | None,
        disconnect: tuple[type[BaseException], ...],
        put_args: dict[str, Any],
        concurrency: int = 1,
        budgets: list[MemoryBudget] | None = None,
    ) -> None:
        self.store = store
        self.info = info
        self.config = config
        self.expiration = expiration
        self.checksum = checksum
        self.hasher = hashlib.new(checksum[0]) if checksum else None
        self.disconnect = disconnect
        self.put_args = put_args
        self.staged: list[list[Any]] = []  # parts sent by this PATCH, not yet committed
        self.pieces_consumed = False
        self.completed = False
        self.received = 0
        self.truncated = False  # the client went away mid-body
        self.concurrency = concurrency
        # the endpoint's (and the engine's), see _buffer.py; and this PATCH's own window:
        # the parts in flight and half a part filling behind them. A whole next part
        # filling beside the one in flight held 4 MiB more peak RSS in one 1 GiB PATCH
        # (benchmarks/tus_bench.py); S3 usually takes a part faster than a client sends one.
        size = info.plan.size_of(len(info.parts) + 1)
        own = MemoryBudget(concurrency * size + size // 2)
        self.budgets = [*(budgets or []), own]
        self.acked: dict[int, list[Any]] = {}  # sent, waiting for the parts before them
        self.next_commit = len(info.parts) + 1
        self.commit_lock = anyio.Lock()  # info writes in part order, one at a time
        self.create_lock = anyio.Lock()
        self.saved = True  # the info in the store is the one in memory

    @property
    def multipart(self) -> Any:
        """The engine's ``engine.multipart`` (a :class:`streamx.MultipartUploads`)."""
        return self.store.engine.multipart

    def _limit(self) -> int | None:
        return None if self.info.length is None else self.info.length - self.info.offset

    async def run(self, body: AsyncIterator[bytes] | None) -> None:
        """Append ``body``; the info in the store reflects what was kept when this returns."""
        start = self.info.offset
        pending = sum(p[1] for p in self.info.pieces)  # bytes already waiting in pieces
        number = len(self.info.parts) + 1
        limit = self._limit()
        plan = self.info.plan
        for budget in self.budgets:
            budget.join_growers(self, plan.size_of(number))
        part = PartBuffer(plan.size_of(number), pending, self.budgets, self)
        send, receive = anyio.create_memory_object_stream[tuple[int, PartBuffer]](0)
        try:
            async with task_group() as tg:
                with receive:
                    for _ in range(self.concurrency):
                        tg.start_soon(self._send_parts, receive.clone())
                async with send:
                    async for chunk in self._chunks(body):
                        if limit is not None and self.received + len(chunk) > limit:
                            raise TusError(413, "the body goes past Upload-Length")
                        if self.hasher is not None:
                            self.hasher.update(chunk)
                        self.received += len(chunk)
                        view = memoryview(chunk)
                        while view:
                            take = min(len(view), part.room)
                            await part.add(view[:take])
                            view = view[take:]
                            if part.room:  # the chunk is used up; the part is not full yet
                                continue
                            if part.skip:  # the first part: the stored pieces go in front
                                await part.put_front(await self.store.read_pieces(self.info))
                            self.pieces_consumed = True
                            full, number = part, number + 1
                            part = PartBuffer(plan.size_of(number), 0, self.budgets, self)
                            await send.send((number - 1, full))
            await self._finish(start, part)
        finally:
            part.free()
            for budget in self.budgets:
                budget.leave_growers(self)

    async def _chunks(self, body: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
        if body is None:
            return
        try:
            async for chunk in body:
                if chunk:
                    yield chunk
        except self.disconnect:
            self.truncated = True  # keep what arrived; the client resumes from HEAD

    async def _send_parts(self, receive: MemoryObjectReceiveStream[tuple[int, PartBuffer]]) -> None:
        async with receive:
            async for number, full in receive:
                try:
                    with full.view() as data:
                        part = await self.upload_part(number, data)
                finally:
                    full.free()
                async with self.commit_lock:
                    self.acked[number] = part
                    ready: list[list[Any]] = []
                    while self.next_commit in self.acked:
                        ready.append(self.acked.pop(self.next_commit))
                        self.next_commit += 1
                    if not ready:
                        continue
                    if self.checksum is not None:
                        self.staged.extend(ready)  # committed once the digest matches
                    else:
                        await self._commit(ready, consumed=True)

    async def multipart_id(self) -> str:
        """The upload's S3 UploadId, created (and recorded in the info) on first use."""
        info = self.info
        async with self.create_lock:
            upload_id = info.upload_id
            if upload_id is None:
                with anyio.CancelScope(shield=True):  # an UploadId must not get lost
                    upload_id = info.upload_id = await self.multipart.create(
                        self.store.bucket, info.key, **self.put_args
                    )
                    await self.store.save(info)  # recorded before any part: DELETE finds it
            if upload_id is None:  # only if the shielded scope above swallowed a failure
                raise TusError(503, "the multipart upload could not be created; retry")
            return upload_id

    async def upload_part(self, number: int, data: bytes | memoryview) -> list[Any]:
        """Send part ``number``; ``[number, etag, size]`` for the info."""
        upload_id = await self.multipart_id()
        etag = await self.multipart.upload_part(
            self.store.bucket, self.info.key, upload_id, number, data, config=self.config
        )
        return [number, etag, memoryview(data).nbytes]

    async def _commit(self, parts: list[list[Any]], *, consumed: bool) -> None:
        """List ``parts`` in the info (dropping consumed pieces) and save it."""
        info = self.info
        old = [self.store.piece_key(info.id, p[0]) for p in info.pieces] if consumed else []
        info.parts.extend(parts)
        if consumed:
            info.pieces = []
        self._touch()
        await self.store.save(info)
        self.saved = True
        await self.store.delete(old)

    def _touch(self) -> None:
        if self.expiration is not None:
            self.info.expires = now() + self.expiration

    async def _finish(self, start: int, part: PartBuffer) -> None:
        """Save what is left of the body as a piece, or complete the upload with it."""
        info = self.info
        if self.hasher is not None and self.checksum is not None:
            if self.truncated or self.hasher.digest() != self.checksum[1]:
                raise ChecksumMismatch()
            if self.staged:
                await self._commit(self.staged, consumed=True)
                self.staged = []
        new = part.got - part.skip  # the bytes of this PATCH not in a part yet
        if info.length is not None and info.offset + new == info.length:
            if part.skip:
                await part.put_front(await self.store.read_pieces(info))
            with part.view() as last:
                await self.complete_with(last)
            return
        rest = bytes(part.view(part.skip)) if new else b""
        if rest:
            offset = info.offset
            await self.store.put_piece(info, offset, rest)
            info.pieces.append([offset, len(rest)])
            if len(info.pieces) > MAX_PIECES:
                await self._merge_pieces()
        if rest or not self.saved:
            self._touch()
            await self.store.save(info)
        log.info("tus.patched", upload=info.id, start=start, offset=info.offset)

    async def _merge_pieces(self) -> None:
        info = self.info
        data = await self.store.read_pieces(info)
        old = [self.store.piece_key(info.id, p[0]) for p in info.pieces[1:]]
        first = info.pieces[0][0]
        await self.store.put_piece(info, first, data)
        info.pieces = [[first, len(data)]]
        self._touch()
        await self.store.save(info)
        await self.store.delete(old)

    async def complete_with(self, rest: memoryview) -> None:
        """``rest``: the last part's bytes (the stored pieces included).

        An upload created under ``overwrite=False`` makes its object with
        ``If-None-Match: *`` (on the PutObject or the CompleteMultipartUpload): when
        the key was taken meanwhile the store refuses, the upload can never complete,
        so it is removed (multipart upload aborted, helper objects deleted) and the
        PATCH answers 409 -- the object that won stays as it is.
        """
        info = self.info
        bucket = self.store.bucket
        conditions: dict[str, Any] = dict(NO_OVERWRITE) if info.if_none_match else {}
        try:
            if info.upload_id is None:  # never filled a part: one PutObject
                # retried; a 412 answering its own landed first attempt is a success
                await self.multipart.put_bytes(
                    bucket, info.key, rest, config=self.config, **self.put_args, **conditions
                )
            else:
                if rest or not info.parts:
                    info.parts.append(await self.upload_part(len(info.parts) + 1, rest))
                parts = [{"PartNumber": n, "ETag": etag} for n, etag, _ in info.parts]
                await self.multipart.complete(  # shielded: its outcome is always learnt
                    bucket, info.key, info.upload_id, parts, **conditions
                )
        except (PreconditionFailedError, ConditionalConflictError) as exc:
            log.info("tus.refused", upload=info.id, key=info.key, error=type(exc).__name__)
            with anyio.CancelScope(shield=True):
                await self.store.remove(info, abort=True)
            error = web_error_for(exc.add_context(key=info.key))
            raise TusError(409, f"{error.message}; the upload was removed") from exc
        info.pieces = []
        info.completed = self.completed = True
        log.info("tus.completed", upload=info.id, key=info.key, size=info.length)
        with anyio.CancelScope(shield=True):
            if info.concat == "partial":  # its data waits for a final upload (_concat.py)
                info.upload_id = None
                await self.store.save(info)
                await self.store.remove_pieces(info)
            else:
                await self.store.remove(info, abort=False)
