"""The executor: performs planned actions, many at once, and counts what happened.

Each direction uses the engine's own verbs, so large objects get multipart,
checksums, retries and aborts, and small ones share the engine's memory
budget: local → s3 ``Engine.upload``, s3 → local ``Engine.download_file``
(temporary file, renamed when whole), s3 → s3 on one engine ``Engine.copy``
(server-side, no byte through this process), across engines
``Engine.copy_to`` (streamed through). Deletes at an S3 destination go out as
DeleteObjects batches of up to 1,000 keys.

Writes carry the conditions of :mod:`streamx.bulk.conditions` when enabled: a
lost race (412) is a failure of that key, never an overwrite.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from .._errors import PreconditionFailedError, S3Error
from .._events import ProgressEvent
from .conditions import write_conditions
from .plan import Action
from .sides import (
    SMALL_HASH,
    LocalSide,
    S3Side,
    Side,
    file_digest,
    md5_decides,
    same_content,
)

#: Files (and, across stores, objects) up to this size are read whole and uploaded from
#: memory (``concurrency`` of them at most: 16 MiB at the default); larger ones stream.
SMALL_FILE = 1024 * 1024

Outcome = Literal["copy", "update", "skip", "delete", "fail"]


@dataclass(frozen=True, slots=True)
class SyncEvent:
    """One thing a sync did (or, with ``dry_run``, would do) to one key."""

    kind: Outcome
    key: str
    size: int = 0
    error: str | None = None
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"action": self.kind, "key": self.key, "size": self.size}
        if self.error is not None:
            record["error"] = self.error
        if self.dry_run:
            record["dry_run"] = True
        return record


@dataclass
class Counts:
    """Running totals; ``failures`` keeps the first ``MAX_FAILURES`` failed events."""

    copied: int = 0
    updated: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: int = 0
    bytes: int = 0
    failures: list[SyncEvent] = field(default_factory=list)

    MAX_FAILURES = 1000

    def add(self, event: SyncEvent) -> None:
        if event.kind in ("copy", "update"):
            self.copied += 1
            self.updated += event.kind == "update"
            if not event.dry_run:
                self.bytes += event.size
        elif event.kind == "skip":
            self.skipped += 1
        elif event.kind == "delete":
            self.deleted += 1
        else:
            self.failed += 1
            if len(self.failures) < self.MAX_FAILURES:
                self.failures.append(event)

    def merge(self, other: Counts) -> None:
        for name in ("copied", "updated", "skipped", "deleted", "failed", "bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        room = self.MAX_FAILURES - len(self.failures)
        self.failures.extend(other.failures[: max(room, 0)])


def describe(exc: BaseException) -> str:
    if isinstance(exc, PreconditionFailedError) or (
        isinstance(exc, S3Error) and exc.code == "ConditionalRequestConflict"
    ):
        return "the destination changed since it was listed; not overwritten"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, S3Error | OSError) else f"{type(exc).__name__}: {text}"


class Runner:
    """Performs one action at a time (call it concurrently); no state but the two sides."""

    def __init__(
        self,
        src: Side,
        dst: Side,
        *,
        dry_run: bool = False,
        conditional: bool = True,
        on_bytes: Callable[[int], Awaitable[None] | None] | None = None,
    ) -> None:
        self.src = src
        self.dst = dst
        self.dry_run = dry_run
        self.conditional = conditional
        self.on_bytes = on_bytes

    async def run(self, action: Action) -> SyncEvent:
        """Perform ``action``; every failure becomes a ``fail`` event (cancellation propagates)."""
        entry = action.src or action.dst
        if entry is not None and entry.error is not None:
            return SyncEvent("fail", action.key, action.size, entry.error, self.dry_run)
        try:
            return await self._run(action)
        except Exception as exc:
            return SyncEvent("fail", action.key, action.size, describe(exc), self.dry_run)

    def hashable(self, action: Action) -> bool:
        """A ``check`` that one read of a small local file decides (see :meth:`check_many`)."""
        return (
            action.kind == "check"
            and action.src is not None
            and action.dst is not None
            and action.src.error is None
            and action.dst.error is None
            and action.size <= SMALL_HASH
            and md5_decides(self.src, self.dst, action.src, action.dst) is not None
        )

    async def check_many(self, actions: list[Action]) -> tuple[list[SyncEvent], list[Action]]:
        """Settle :meth:`hashable` checks, the local files' MD5s taken in one thread hop: the
        events of those decided here (``skip``: same bytes; ``fail``: the file could not be
        read) and the ``update`` actions of those that differ."""
        jobs: list[tuple[str, str]] = []
        for action in actions:
            assert action.src is not None and action.dst is not None
            local = md5_decides(self.src, self.dst, action.src, action.dst)
            assert local is not None
            remote = action.dst if local is self.src else action.src
            jobs.append((local.path(action.key), remote.etag or ""))

        def run() -> list[bool | OSError]:
            out: list[bool | OSError] = []
            for path, etag in jobs:
                try:
                    out.append(file_digest(path, "MD5") == etag)
                except OSError as exc:
                    out.append(exc)
            return out

        events: list[SyncEvent] = []
        updates: list[Action] = []
        for action, same in zip(actions, await anyio.to_thread.run_sync(run), strict=True):
            if isinstance(same, OSError):
                events.append(SyncEvent("fail", action.key, action.size, describe(same)))
            elif same:
                events.append(SyncEvent("skip", action.key, action.size))
            else:
                updates.append(Action("update", action.key, action.src, action.dst))
        return events, updates

    async def _run(self, action: Action) -> SyncEvent:
        kind = action.kind
        if kind == "check":
            assert action.src is not None and action.dst is not None
            if await same_content(self.src, self.dst, action.src, action.dst):
                return SyncEvent("skip", action.key, action.size)
            kind = "update"
        if kind == "delete":
            if not self.dry_run and isinstance(self.dst, LocalSide):
                if await self.src.stat(action.key) is not None:
                    return SyncEvent("fail", action.key, 0, STILL_AT_SOURCE)
                os.remove(self.dst.path(action.key))
            # an S3 delete is batched by the caller (see delete_keys)
            return SyncEvent(
                "delete", action.key, action.dst.size if action.dst else 0, dry_run=self.dry_run
            )
        if not self.dry_run:
            await self._copy(action)
        return SyncEvent(kind, action.key, action.size, dry_run=self.dry_run)

    def _progress(self) -> Callable[[ProgressEvent], Awaitable[None]] | None:
        if self.on_bytes is None:
            return None
        on_bytes = self.on_bytes
        last = 0

        async def on_progress(event: ProgressEvent) -> None:
            nonlocal last
            delta, last = event.bytes_done - last, event.bytes_done
            if delta:
                result = on_bytes(delta)
                if result is not None:
                    await result

        return on_progress

    async def _copy(self, action: Action) -> None:
        src, dst, key = self.src, self.dst, action.key
        assert action.src is not None
        progress = self._progress()
        conditions: dict[str, Any] = {}
        if self.conditional and isinstance(dst, S3Side):
            server_side = isinstance(src, S3Side) and src.engine is dst.engine
            conditions = write_conditions(
                dst.engine, action.dst, copy=server_side, size=action.src.size
            )
        if isinstance(src, LocalSide) and isinstance(dst, S3Side):
            source: Any = src.path(key)
            if action.src.size <= SMALL_FILE:  # one read (in a shared thread hop), no part buffer
                source = await src.read_small(key)
            await dst.engine.upload(
                dst.bucket,
                dst.key(key),
                source,
                size=action.src.size,
                on_progress=progress,
                **conditions,
            )
        elif isinstance(src, S3Side) and isinstance(dst, LocalSide):
            path = dst.path(key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            await src.engine.download_file(src.bucket, src.key(key), path, on_progress=progress)
            # the file takes the object's time, so a size-mtime re-run sees it as not older
            mtime = action.src.mtime or time.time()
            os.utime(path, (mtime, mtime))
        elif isinstance(src, S3Side) and isinstance(dst, S3Side):
            if src.engine is dst.engine:
                await dst.engine.copy(
                    src.bucket,
                    src.key(key),
                    dst.bucket,
                    dst.key(key),
                    on_progress=progress,
                    **conditions,
                )
            elif action.src.size <= SMALL_FILE:  # one GET into memory, one PUT
                data, carried = await src.read_small(action.src)
                await dst.engine.upload(
                    dst.bucket, dst.key(key), data, on_progress=progress, **carried, **conditions
                )
            else:
                await src.engine.copy_to(
                    dst.engine,
                    src.bucket,
                    src.key(key),
                    dst.bucket,
                    dst.key(key),
                    on_progress=progress,
                    **conditions,
                )
        else:  # pragma: no cover - refused up front
            raise ValueError("a sync needs an s3:// side")


STILL_AT_SOURCE = "the source has this key after all (a listing out of order?); not deleted"


async def confirm_absent(src: Side, keys: list[str], concurrency: int = 16) -> set[str]:
    """The ``keys`` the source does have (one HEAD or stat each): never delete on a listing's
    word alone."""
    present: set[str] = set()
    limiter = anyio.Semaphore(concurrency)

    async def one(key: str) -> None:
        async with limiter:
            if await src.stat(key) is not None:
                present.add(key)

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(one, key)
    return present


async def delete_keys(src: Side, side: S3Side, keys: list[str]) -> dict[str, str]:
    """Delete relative ``keys`` the source lacks in one DeleteObjects batch;
    ``{key: error}`` of those not deleted."""
    present = await confirm_absent(src, keys)
    doomed = [k for k in keys if k not in present]
    errors = dict.fromkeys(present, STILL_AT_SOURCE)
    if doomed:
        result = await side.engine.delete_many(side.bucket, [side.key(k) for k in doomed])
        errors |= {e.key[len(side.prefix) :]: f"{e.code}: {e.message}" for e in result.errors}
    return errors
