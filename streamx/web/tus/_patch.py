"""One PATCH: the body, cut into S3 parts as it arrives, with bounded memory.

::

    body ──► cut at the plan's part boundaries ──► UploadPart x concurrency ──► info saved
      │                                                              (in part order)
      └─ the remainder at the end ──► a new piece (``ID.part.<offset>``) ──► info saved

The part boundaries are absolute offsets of the plan fixed at creation, so a
client that resends bytes after a drop produces the same parts. Memory: the part
being filled, one handed over and ``concurrency`` being sent (default 4, so at
most 6 x part_size per PATCH). While S3 is slower than the client
the body is not read, and TCP stops the client. The earlier pieces are fetched
only when the bytes fill a part; the part that ends the upload is sent, the
multipart upload completed (or, for an upload that never filled a part, one
PutObject sent), and every helper object deleted.

With ``Upload-Checksum`` the PATCH is all or nothing: parts are sent as they fill
but the info only lists them once the digest matches; on a mismatch (460) the
offset stays where it was. Without it, every acknowledged part is committed at
once, and a client that drops mid-body keeps what arrived (tus semantics).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ..._concurrency import task_group
from ..._config import TransferConfig
from ..._log import log
from ..._retry import RetryPolicy
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
        concurrency: int = 4,
    ) -> None:
        self.store = store
        self.info = info
        self.config = config
        self.expiration = expiration
        self.checksum = checksum
        self.hasher = hashlib.new(checksum[0]) if checksum else None
        self.disconnect = disconnect
        self.put_args = put_args
        self.retry = RetryPolicy(max_attempts=config.max_attempts)
        self.staged: list[list[Any]] = []  # parts sent by this PATCH, not yet committed
        self.pieces_consumed = False
        self.completed = False
        self.received = 0
        self.truncated = False  # the client went away mid-body
        self.concurrency = concurrency
        self.acked: dict[int, list[Any]] = {}  # sent, waiting for the parts before them
        self.next_commit = len(info.parts) + 1
        self.commit_lock = anyio.Lock()  # info writes in part order, one at a time
        self.create_lock = anyio.Lock()
        self.saved = True  # the info in the store is the one in memory

    @property
    def s3(self) -> Any:
        return self.store.s3

    def _limit(self) -> int | None:
        return None if self.info.length is None else self.info.length - self.info.offset

    async def run(self, body: AsyncIterator[bytes] | None) -> None:
        """Append ``body``; the info in the store reflects what was kept when this returns."""
        start = self.info.offset
        pending = sum(p[1] for p in self.info.pieces)  # bytes already waiting in pieces
        chunks: list[bytes] = []  # joined once per part: one copy of each byte
        have = 0
        number = len(self.info.parts) + 1
        target = self.info.plan.size_of(number) - pending
        limit = self._limit()
        send, receive = anyio.create_memory_object_stream[tuple[int, bytes | memoryview]](0)
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
                    chunks.append(chunk)
                    have += len(chunk)
                    while have >= target:
                        joined = b"".join(chunks)
                        data: bytes | memoryview = joined
                        chunks = []
                        if have > target:
                            data = memoryview(joined)[:target]
                            chunks.append(joined[target:])
                        have -= target
                        if not self.pieces_consumed and pending:
                            data = await self.store.read_pieces(self.info) + data
                        self.pieces_consumed = True
                        await send.send((number, data))
                        del data, joined
                        number += 1
                        target = self.info.plan.size_of(number)
        await self._finish(start, b"".join(chunks))

    async def _chunks(self, body: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
        if body is None:
            return
        try:
            async for chunk in body:
                if chunk:
                    yield chunk
        except self.disconnect:
            self.truncated = True  # keep what arrived; the client resumes from HEAD

    async def _send_parts(
        self, receive: MemoryObjectReceiveStream[tuple[int, bytes | memoryview]]
    ) -> None:
        async with receive:
            async for number, data in receive:
                part = await self._upload_part(number, data)
                del data
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

    async def _upload_part(self, number: int, data: bytes | memoryview) -> list[Any]:
        info = self.info
        async with self.create_lock:
            if info.upload_id is None:
                with anyio.CancelScope(shield=True):  # an UploadId must not get lost
                    info.upload_id = await self.s3.create_multipart_upload(
                        self.store.bucket, info.key, **self.put_args
                    )
                    await self.store.save(info)  # recorded before any part: DELETE finds it
        upload_id = info.upload_id
        s3 = self.s3

        async def attempt() -> dict[str, Any]:
            if s3.direct is not None:
                response: dict[str, Any] = await s3.upload_part_direct(
                    self.store.bucket,
                    info.key,
                    upload_id,
                    number,
                    data,
                    stall_timeout=self.config.stall_timeout,
                )
                return response
            return dict(await s3.upload_part(self.store.bucket, info.key, upload_id, number, data))

        response = await self.retry.call(attempt, timeout=self.config.part_timeout or None)
        return [number, str(response["ETag"]), len(data)]

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

    async def _finish(self, start: int, rest: bytes) -> None:
        info = self.info
        if self.hasher is not None and self.checksum is not None:
            if self.truncated or self.hasher.digest() != self.checksum[1]:
                raise ChecksumMismatch()
            if self.staged:
                await self._commit(self.staged, consumed=True)
                self.staged = []
        if info.length is not None and info.offset + len(rest) == info.length:
            await self._complete(rest)
            return
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

    async def _complete(self, rest: bytes) -> None:
        info = self.info
        if not self.pieces_consumed and info.pieces:
            rest = await self.store.read_pieces(info) + rest
        s3, bucket = self.s3, self.store.bucket
        if info.upload_id is None:  # never filled a part: one PutObject
            await self.retry.call(lambda: s3.put_object(bucket, info.key, rest, **self.put_args))
        else:
            if rest or not info.parts:
                info.parts.append(await self._upload_part(len(info.parts) + 1, rest))
            parts = [{"PartNumber": n, "ETag": etag} for n, etag, _ in info.parts]
            with anyio.CancelScope(shield=True):
                await s3.complete_multipart_upload(bucket, info.key, info.upload_id, parts)
        info.pieces = []
        info.completed = self.completed = True
        log.info("tus.completed", upload=info.id, key=info.key, size=info.length)
        with anyio.CancelScope(shield=True):
            await self.store.remove(info, abort=False)
