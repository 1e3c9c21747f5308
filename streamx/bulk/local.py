"""The local executor: one shard's pairs streamed into ``concurrency`` runners in this process.

::

    source listing ─┐
                    ├─ merge ─ filters ─ decide ─▶ bounded queue ─▶ N runners ─▶ counts, events
    dest. listing  ─┘  (listing.py)          ├─ deletes (batches of 1,000) ─┘       manifest
                                             └─ small same-size checks (batches) ─▶ 2 checkers
                                                   (MD5s in one thread hop; updates ─▶ queue)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._concurrency import FirstFailure
from .._ratelimit import RateLimit
from .execute import Counts, Runner, SyncEvent, delete_keys, describe
from .listing import entries, listed_pairs
from .manifest import Manifest, Watermark
from .plan import Action, Compare, Filters, decide
from .sides import S3Side, Side

DELETE_BATCH = 1000
#: Checks that one small local file's MD5 decides are hashed this many (or bytes) per thread hop,
#: by CHECKERS tasks beside the planner (under load each hop waits for a core: they overlap).
CHECK_BATCH = 256
CHECKERS = 2
CHECK_BYTES = 8 * 1024 * 1024
EventCallback = Callable[[SyncEvent], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Objects and bytes finished (copied or found equal); totals grow while the source is counted."""

    objects_done: int
    bytes_done: int
    objects_total: int | None
    bytes_total: int | None


ProgressCallback = Callable[[SyncProgress], Awaitable[None] | None]


def rate_limit_of(*sides: Side) -> RateLimit | None:
    for side in sides:
        if isinstance(side, S3Side) and side.engine.rate_limit is not None:
            return side.engine.rate_limit
    return None


async def call_back(callback: Callable[[Any], Awaitable[None] | None] | None, value: Any) -> None:
    if callback is not None:
        result = callback(value)
        if result is not None:
            await result


class LocalExecutor:
    """Runs one shard's actions ``concurrency`` at a time in this process."""

    def __init__(
        self,
        src: Side,
        dst: Side,
        *,
        compare: Compare,
        delete: bool,
        dry_run: bool,
        filters: Filters,
        concurrency: int,
        conditional: bool,
        on_event: EventCallback | None,
        on_progress: ProgressCallback | None,
        manifest: Manifest | None,
    ) -> None:
        self.src, self.dst = src, dst
        self.compare, self.delete, self.dry_run = compare, delete, dry_run
        self.filters = filters
        self.concurrency = concurrency
        self.on_event, self.on_progress = on_event, on_progress
        self.manifest = manifest
        self.counts = Counts()
        self.objects_done = 0
        self.bytes_done = 0
        self.objects_total: int | None = None
        self.bytes_total: int | None = None
        self.runner = Runner(
            src,
            dst,
            dry_run=dry_run,
            conditional=conditional,
            on_bytes=self._bytes if on_progress is not None else None,
        )

    async def _report(self) -> None:
        await call_back(
            self.on_progress,
            SyncProgress(self.objects_done, self.bytes_done, self.objects_total, self.bytes_total),
        )

    async def _bytes(self, n: int) -> None:
        self.bytes_done += n
        await self._report()

    async def record(self, event: SyncEvent, mark: Watermark, *, copied_bytes: bool) -> None:
        self.counts.add(event)
        mark.finish(event.key, ok=event.kind != "fail")
        if event.kind != "delete":
            self.objects_done += 1
            if event.kind == "skip" or (event.kind != "fail" and not copied_bytes):
                self.bytes_done += event.size
        if event.kind != "skip":
            await call_back(self.on_event, event)
        await self._report()
        if self.manifest is not None:
            await self.manifest.maybe_save()

    async def count_source(self, after: str | None, until: str | None) -> None:
        """Totals for the progress bar: one extra pass over the source listing (O(1) memory)."""
        objects = size = 0
        async for entry in entries(self.src, self.dst, after, until):
            if self.filters(entry.key):
                objects += 1
                size += entry.size
            if objects % 1000 == 0:
                self.objects_total, self.bytes_total = objects, size
        self.objects_total, self.bytes_total = objects, size
        await self._report()

    async def run_shard(self, mark: Watermark, until: str | None) -> None:
        after = mark.value
        send, receive = anyio.create_memory_object_stream[Action](self.concurrency)
        checks, to_check = anyio.create_memory_object_stream[list[Action]](CHECKERS)
        first = FirstFailure()
        async with anyio.create_task_group() as tg:
            with receive, to_check:
                for _ in range(self.concurrency):
                    tg.start_soon(first.run, tg.cancel_scope, self._worker, receive.clone(), mark)
                for _ in range(CHECKERS):
                    tg.start_soon(
                        first.run,
                        tg.cancel_scope,
                        self._checker,
                        to_check.clone(),
                        send.clone(),
                        mark,
                    )
            tg.start_soon(
                first.run, tg.cancel_scope, self._produce, send, checks, mark, after, until
            )
        first.raise_if_failed()

    async def _produce(
        self,
        send: MemoryObjectSendStream[Action],
        checks_send: MemoryObjectSendStream[list[Action]],
        mark: Watermark,
        after: str | None,
        until: str | None,
    ) -> None:
        deletes: list[str] = []
        checks: list[Action] = []
        check_bytes = 0
        batch_deletes = isinstance(self.dst, S3Side) and not self.dry_run
        async with send, checks_send:
            async with listed_pairs(self.src, self.dst, after, until) as pairs:
                async for s, d in pairs:
                    key = (s or d).key  # type: ignore[union-attr]
                    if not self.filters(key):
                        continue
                    action = decide(s, d, compare=self.compare, delete=self.delete)
                    if action is None:
                        if s is not None:
                            mark.start(key)
                            event = SyncEvent("skip", key, s.size)
                            await self.record(event, mark, copied_bytes=False)
                        continue
                    mark.start(key)
                    if action.kind == "delete" and batch_deletes:
                        deletes.append(key)
                        if len(deletes) >= DELETE_BATCH or mark.pending > 10 * DELETE_BATCH:
                            await self._delete(deletes, mark)
                            deletes = []
                        continue
                    if self.runner.hashable(action):
                        checks.append(action)
                        check_bytes += action.size
                        if len(checks) >= CHECK_BATCH or check_bytes >= CHECK_BYTES:
                            await checks_send.send(checks)
                            checks, check_bytes = [], 0
                        continue
                    await send.send(action)
            if checks:
                await checks_send.send(checks)
            if deletes:
                await self._delete(deletes, mark)

    async def _checker(
        self,
        batches: MemoryObjectReceiveStream[list[Action]],
        send: MemoryObjectSendStream[Action],
        mark: Watermark,
    ) -> None:
        """Hash batches of small local files, one thread hop each, while the planner goes on;
        what differs goes to the runners."""
        async with batches, send:
            async for actions in batches:
                await self._check(actions, mark, send)

    async def _check(
        self, actions: list[Action], mark: Watermark, send: MemoryObjectSendStream[Action]
    ) -> None:
        events, updates = await self.runner.check_many(actions)
        for event in events:
            await self.record(event, mark, copied_bytes=False)
        for update in updates:
            await send.send(update)

    async def _delete(self, keys: list[str], mark: Watermark) -> None:
        assert isinstance(self.dst, S3Side)
        try:
            errors = await delete_keys(self.src, self.dst, keys)
        except Exception as exc:
            errors = dict.fromkeys(keys, describe(exc))
        for key in keys:
            event = (
                SyncEvent("fail", key, 0, errors[key])
                if key in errors
                else SyncEvent("delete", key)
            )
            await self.record(event, mark, copied_bytes=True)

    async def _worker(self, receive: MemoryObjectReceiveStream[Action], mark: Watermark) -> None:
        limit = rate_limit_of(self.src, self.dst)
        async with receive:
            async for action in receive:
                if limit is None:
                    event = await self.runner.run(action)
                else:
                    async with limit.slot():  # the adaptive window (SlowDown halves it)
                        event = await self.runner.run(action)
                await self.record(event, mark, copied_bytes=self.on_progress is not None)
