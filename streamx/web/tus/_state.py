"""An upload's state, kept in the bucket so any server process can continue it.

For an upload ``ID`` under ``state_prefix`` (default ``.tus/``):

* ``ID.info`` — JSON :class:`UploadInfo`: the object key and its owner's prefix,
  the length (or none yet), the metadata, the S3 UploadId once the first part is
  sent, every part S3 acknowledged (number, ETag, size) and the pieces below;
* ``ID.part.<offset>`` — bytes received that do not fill an S3 part yet (S3 wants
  5 MiB for every part but the last). A PATCH adds its remainder as a new piece
  (the earlier pieces are not rewritten); when the pieces and new bytes fill a
  part, they become that part and the pieces are deleted;
* ``ID.lock`` — held while a PATCH or DELETE runs (see :meth:`TusStore.lock`), on a
  store that honours ``If-None-Match`` (or may: an unknown one).

The info object is the commit point. Pieces and parts are written *before* the
info that lists them, so whatever the info lists exists; a crash between leaves
at most an unlisted piece or part, which the next write at that offset replaces
and completion, termination and :func:`sweep_expired` delete. The offset is the
parts' sizes plus the pieces' sizes. This is the layout of tusd's s3store and
``@tus/s3-store`` (``ID.info`` and one ``ID.part``), which rewrite the whole tail
on every PATCH and keep the lock in the process; here the lock is in the bucket.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ..._concurrency import task_group
from ..._config import TransferConfig
from ..._errors import (
    ConditionalConflictError,
    NotFoundError,
    PreconditionFailedError,
    StreamxError,
)
from ..._limits import PartPlan
from ..._log import log
from ._protocol import TusError, now

if TYPE_CHECKING:
    from ..._engine import Engine

# small requests, retried on 5xx and dropped connections (rclone answers a GET racing
# a PUT of the same key with a 5xx now and then)
SMALL = TransferConfig(max_attempts=5)
# taking the lock: a retry could meet its own first attempt's If-None-Match and lose
ONCE = TransferConfig(max_attempts=1)

FORMAT = "streamx-tus/1"


@dataclass
class UploadInfo:
    id: str
    key: str
    owner: str  # the prefix of the user who created it
    length: int | None
    metadata: dict[str, str]
    raw_metadata: str
    content_type: str
    created: float
    expires: float | None
    plan_base: int
    plan_interval: int | None
    upload_id: str | None = None  # S3's, once the first part is sent
    parts: list[list[Any]] = field(default_factory=list)  # [number, etag, size]
    pieces: list[list[int]] = field(default_factory=list)  # [offset, size]
    completed: bool = False  # the object exists (the info is about to be deleted)
    # created under UploadSettings(overwrite=False): the PutObject or Complete that makes
    # the object carries If-None-Match: * (see _service.py)
    if_none_match: bool = False
    # the concatenation extension (_concat.py): "partial" (the bytes go to ID.data), or
    # the final upload's Upload-Concat header, answered by HEAD
    concat: str | None = None

    @property
    def plan(self) -> PartPlan:
        return PartPlan(self.plan_base, self.plan_interval)

    @property
    def parts_size(self) -> int:
        return sum(int(p[2]) for p in self.parts)

    @property
    def offset(self) -> int:
        if self.completed and self.length is not None:
            return self.length
        return self.parts_size + sum(p[1] for p in self.pieces)

    def expired(self, at: float | None = None) -> bool:
        return self.expires is not None and (now() if at is None else at) >= self.expires

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, **asdict(self)}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UploadInfo:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.pop("format", None) != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        return cls(**doc)


class TusStore:
    """The helper objects of tus uploads in one bucket, through the engine's public
    ``engine.multipart`` (``get_bytes``/``put_bytes``, abort), ``list`` and ``delete_many``."""

    def __init__(
        self, engine: Callable[[], Engine], bucket: str, state_prefix: str, lock_timeout: float
    ) -> None:
        self._engine = engine
        self.bucket = bucket
        self.state_prefix = state_prefix
        self.lock_timeout = lock_timeout
        self._held: set[str] = set()  # ids locked by this process

    @property
    def engine(self) -> Engine:
        return self._engine()

    def info_key(self, upload: str) -> str:
        return f"{self.state_prefix}{upload}.info"

    def piece_key(self, upload: str, offset: int) -> str:
        return f"{self.state_prefix}{upload}.part.{offset}"

    def data_key(self, upload: str) -> str:
        """Where a partial upload's bytes go (the concatenation extension)."""
        return f"{self.state_prefix}{upload}.data"

    def lock_key(self, upload: str) -> str:
        return f"{self.state_prefix}{upload}.lock"

    async def _get(self, key: str) -> bytes | None:
        return await self.engine.multipart.get_bytes(self.bucket, key, config=SMALL)

    async def _put_once(self, key: str, data: bytes, **params: Any) -> None:
        await self.engine.multipart.put_bytes(self.bucket, key, data, config=ONCE, **params)

    async def _put(self, key: str, data: bytes, **params: Any) -> None:
        with anyio.CancelScope(shield=True):  # a half-done commit must still land
            await self.engine.multipart.put_bytes(self.bucket, key, data, config=SMALL, **params)

    async def load(self, upload: str) -> UploadInfo | None:
        data = await self._get(self.info_key(upload))
        if data is None:
            return None
        try:
            return UploadInfo.from_json(data)
        except (ValueError, TypeError) as exc:
            raise TusError(500, f"the state of upload {upload} is unreadable") from exc

    async def save(self, info: UploadInfo) -> None:
        await self._put(self.info_key(info.id), info.to_json(), ContentType="application/json")

    async def put_piece(self, info: UploadInfo, offset: int, data: bytes) -> None:
        await self._put(self.piece_key(info.id, offset), data)

    async def read_pieces(self, info: UploadInfo) -> bytes:
        out = bytearray()
        for offset, size in info.pieces:
            data = await self._get(self.piece_key(info.id, offset))
            if data is None or len(data) != size:
                raise TusError(500, f"upload {info.id}: a stored piece is missing or torn")
            out += data
        return bytes(out)

    async def delete(self, keys: list[str]) -> None:
        """Best effort: a leftover helper object is removed later by the sweep."""
        if not keys:
            return
        with anyio.move_on_after(30, shield=True):
            try:
                result = await self.engine.delete_many(self.bucket, keys, concurrency=1)
            except StreamxError as exc:
                log.warning("tus.cleanup_failed", error=type(exc).__name__, count=len(keys))
                return
            if result.errors:
                log.warning("tus.cleanup_failed", error=result.errors[0].code, count=len(keys))

    async def helper_keys(self, upload: str) -> list[str]:
        """Every helper object of ``upload`` in the bucket (info, pieces, lock)."""
        listing = self.engine.list(self.bucket, f"{self.state_prefix}{upload}.")
        return [item.key async for item in listing]

    async def remove(self, info: UploadInfo, *, abort: bool) -> None:
        """Abort the multipart upload (if asked and any) and delete every helper object."""
        with anyio.move_on_after(60, shield=True):
            if abort and info.upload_id is not None:
                try:
                    await self.engine.multipart.abort(self.bucket, info.key, info.upload_id)
                except NotFoundError:
                    pass  # already gone
            keys = await self.helper_keys(info.id)
            lock = self.lock_key(info.id)
            # the lock last: while the info exists, nobody else may take the upload
            await self.delete([k for k in keys if k != lock])
            await self.delete([lock])

    async def remove_pieces(self, info: UploadInfo) -> None:
        """A completed partial upload: every helper object but its info, data and lock."""
        keep = {self.info_key(info.id), self.data_key(info.id), self.lock_key(info.id)}
        with anyio.move_on_after(60, shield=True):
            await self.delete([k for k in await self.helper_keys(info.id) if k not in keep])

    # -- the lock -------------------------------------------------------------------------

    async def _lock_state(self, upload: str) -> dict[str, Any] | None:
        data = await self._get(self.lock_key(upload))
        if data is None:
            return None
        try:
            doc = json.loads(data)
            return doc if isinstance(doc, dict) else {}
        except ValueError:
            return {}

    async def _try_lock(self, upload: str, token: str) -> bool:
        body = json.dumps({"token": token, "at": now()}).encode()
        try:
            await self._put_once(self.lock_key(upload), body, IfNoneMatch="*")
            return True
        except (PreconditionFailedError, ConditionalConflictError):
            return False  # another request holds it (or is taking it right now)

    @asynccontextmanager
    async def lock(self, upload: str) -> AsyncIterator[None]:
        """Hold ``upload``'s lock for the block, or refuse with 423 Locked.

        The lock object is created with ``If-None-Match: *``, which S3, MinIO,
        moto and SeaweedFS honour, so two replicas cannot both hold it. The holder
        rewrites it every ``lock_timeout / 3`` seconds; a lock older than
        ``lock_timeout`` was left by a crashed process and is taken over.

        On a store whose profile says it ignores the condition (``Engine(store=
        "rclone")``), a lock object would lock nothing, so none is written (two
        requests fewer per PATCH): the in-process lock and the offset check are what
        such a store allows, and one server process at a time should serve an upload.
        """
        if upload in self._held:
            raise TusError(423, "another request is writing to this upload; retry later")
        self._held.add(upload)
        try:
            if self.engine.store.honours("PutObject:IfNoneMatch") is False:
                yield
            else:
                async with self._store_lock(upload):
                    yield
        finally:
            self._held.discard(upload)

    @asynccontextmanager
    async def _store_lock(self, upload: str) -> AsyncIterator[None]:
        """The lock object, taken, refreshed while the block runs, and deleted after."""
        token = secrets.token_hex(8)
        await self._acquire(upload, token)
        try:
            async with task_group() as tg:
                tg.start_soon(self._refresh, upload, token)
                yield
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.delete([self.lock_key(upload)])

    async def _acquire(self, upload: str, token: str) -> None:
        if await self._try_lock(upload, token):
            return
        state = await self._lock_state(upload)
        at = state.get("at") if state else None
        if state is not None and isinstance(at, int | float) and now() - at < self.lock_timeout:
            raise TusError(423, "another request is writing to this upload; retry later")
        await self.delete([self.lock_key(upload)])  # stale: its holder is gone
        if not await self._try_lock(upload, token):
            raise TusError(423, "another request is writing to this upload; retry later")

    async def _refresh(self, upload: str, token: str) -> None:
        while True:
            await anyio.sleep(self.lock_timeout / 3)
            body = json.dumps({"token": token, "at": now()}).encode()
            try:
                # shielded: a refresh cut by the lock's release could still land after
                # the release's DELETE (the store had its body) and leave a stale lock
                with anyio.move_on_after(self.lock_timeout / 3, shield=True):
                    await self._put_once(self.lock_key(upload), body)
            except StreamxError as exc:
                log.warning("tus.lock_refresh_failed", upload=upload, error=type(exc).__name__)
