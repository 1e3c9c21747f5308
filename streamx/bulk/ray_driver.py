"""The driver's side of the Ray executor: batches out to free actors, events and watermarks back.

Each actor takes up to :data:`IN_FLIGHT` batches at once (one runs while the
next waits in the actor, so it never idles on a round trip); a shard's planner
waits for a free slot, which bounds the planned but unsent work. The actors
join the pool as they are started (:meth:`_Driver.add`), so the shards can be
listed and planned while Ray and the actors start.
"""

from __future__ import annotations

import math
from typing import Any

import anyio

from .actor import pack_action
from .execute import Counts, SyncEvent
from .listing import entries
from .local import EventCallback, call_back
from .manifest import Manifest, Watermark
from .plan import Filters, decide, merge
from .sides import Side

#: A shard's first batch; each next one doubles up to ``batch_size``. The shards are merged
#: concurrently and advance together, so with full-size first batches the actors idled until
#: every shard had planned ``batch_size`` keys (measured: 40% of a 10,000-key re-run on one
#: node planned before the first batch left).
FIRST_BATCH = 16

#: How long a batch waits, in all, for an actor that Ray is restarting.
UNAVAILABLE_PATIENCE = 60.0

#: Batches in flight per actor.
IN_FLIGHT = 2


class Driver:
    def __init__(
        self,
        ray: Any,
        *,
        batch_size: int,
        max_attempts: int,
        on_event: EventCallback | None,
        manifest: Manifest | None,
    ) -> None:
        self.ray = ray
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.on_event = on_event
        self.manifest = manifest
        self.counts = Counts()
        self.retries = 0
        self.actors: list[Any] = []
        self._return, self.free = anyio.create_memory_object_stream[Any](math.inf)

    def add(self, actors: list[Any]) -> None:
        """Started actors join the pool, each with :data:`IN_FLIGHT` slots."""
        self.actors.extend(actors)
        for actor in actors * IN_FLIGHT:
            self._return.send_nowait(actor)

    def close(self) -> None:
        """Close the pool of free actors (its two stream ends)."""
        self._return.close()
        self.free.close()

    async def record(self, kind: str, key: str, size: int, error: str | None) -> None:
        event = SyncEvent(kind, key, size, error)  # type: ignore[arg-type]
        self.counts.add(event)
        if kind != "skip":
            await call_back(self.on_event, event)

    async def run_batch(self, actor: Any, batch: list[Any], last: str, mark: Watermark) -> None:
        attempt, deaths = 1, 0
        waited = 0.0
        try:
            while True:
                try:
                    events = await actor.run.remote(batch, attempt)
                    break
                except self.ray.exceptions.RayActorError as exc:
                    # ActorUnavailableError (a subclass): restarting, back later; it does not
                    # count as a death, but is waited for at most UNAVAILABLE_PATIENCE seconds
                    # (a restart is a new process: seconds on a loaded node)
                    unavailable = isinstance(exc, self.ray.exceptions.ActorUnavailableError)
                    deaths += not unavailable
                    if deaths >= self.max_attempts or waited >= UNAVAILABLE_PATIENCE:
                        events = [
                            ("fail", t[1], 0, f"worker lost: {type(exc).__name__}") for t in batch
                        ]
                        break
                    delay = min(0.5 * 2 ** (attempt - 1), 5.0)
                    attempt += 1  # the retried batch cleans up after the lost attempt
                    self.retries += 1
                    await anyio.sleep(delay)  # let Ray restart the actor
                    waited += delay
        finally:
            await self._return.send(actor)
        ok = True
        for kind, key, size, error in events:
            ok = ok and kind != "fail"
            await self.record(kind, key, size, error)
        mark.finish(last, ok=ok)
        if self.manifest is not None:
            await self.manifest.maybe_save()

    async def shard(
        self,
        tg: Any,
        src: Side,
        dst: Side,
        mark: Watermark,
        until: str | None,
        decide_args: dict[str, Any],
        filters: Filters,
    ) -> None:
        batch: list[Any] = []
        last: str | None = None
        size = min(FIRST_BATCH, self.batch_size)  # slow start: see FIRST_BATCH

        async def flush() -> None:
            nonlocal batch, size
            assert last is not None
            mark.start(last)
            if not batch:
                mark.finish(last)
                return
            actor = await self.free.receive()
            tg.start_soon(self.run_batch, actor, batch, last, mark)
            batch = []
            size = min(2 * size, self.batch_size)

        pairs = merge(entries(src, dst, mark.value, until), entries(dst, src, mark.value, until))
        async for s, d in pairs:
            key = (s or d).key  # type: ignore[union-attr]
            if not filters(key):
                continue
            last = key
            action = decide(s, d, **decide_args)
            if action is None:
                if s is not None:
                    await self.record("skip", key, s.size, None)
                continue
            batch.append(pack_action(action))
            if len(batch) >= size:
                await flush()
        if last is not None and (batch or mark.value != last):
            await flush()
