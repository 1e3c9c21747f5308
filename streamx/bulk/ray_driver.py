"""The driver's side of the Ray executor: batches out to free actors, events and watermarks back.

Each actor takes up to :data:`IN_FLIGHT` batches at once (one runs while the
next waits in the actor, so it never idles on a round trip); a shard's planner
waits for a free slot, which bounds the planned but unsent work. The actors
join the pool as they are started (:meth:`Driver.add`), so the shards can be
listed and planned while Ray and the actors start.

An object of ``split_threshold`` bytes or more is not batched: the shard hands
it to the :class:`~streamx.bulk.split.Splitter`, whose part tasks take the same
slots (:meth:`Driver.take`, :meth:`Driver.call`). As many objects are split at
once as there are actors; each spreads its parts over all of them.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import anyio

from .._log import log
from .actor import pack_action
from .execute import Counts, SyncEvent
from .listing import entries
from .local import EventCallback, call_back
from .manifest import Manifest, Watermark
from .plan import Action, Filters, decide, merge
from .sides import Side
from .split import Splitter, TaskFailed

#: A shard's first batch; each next one doubles up to ``batch_size``. The shards are merged
#: concurrently and advance together, so with full-size first batches the actors idled until
#: every shard had planned ``batch_size`` keys (measured: 40% of a 10,000-key re-run on one
#: node planned before the first batch left).
FIRST_BATCH = 16

#: How long a batch waits, in all, for an actor that Ray is restarting.
UNAVAILABLE_PATIENCE = 60.0

#: Batches in flight per actor.
IN_FLIGHT = 2

#: How long a cancelled task's caller waits for the actor's task to end (a part being sent
#: stops at its next slice, or at its socket timeout).
SETTLE_PATIENCE = 30.0


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
        self.splitter: Splitter | None = None  # set once the sides are known (sync_on_ray)
        self._splits = anyio.CapacityLimiter(1)  # objects split at once: one per actor

    def add(self, actors: list[Any]) -> None:
        """Started actors join the pool, each with :data:`IN_FLIGHT` slots."""
        self.actors.extend(actors)
        for actor in actors * IN_FLIGHT:
            self._return.send_nowait(actor)
        self._splits.total_tokens = max(1, len(self.actors))

    async def take(self, avoid: Any = None) -> Any:
        """A free actor slot; with ``avoid`` (an actor that just died under a task), a slot
        of another actor if the pool holds one."""
        for _ in range(IN_FLIGHT):
            actor = await self.free.receive()
            if actor is not avoid:
                return actor
            self._return.send_nowait(actor)
        return await self.free.receive()

    async def call(self, actor: Any, method: str, *args: Any, **context: Any) -> Any:
        """``actor.method(*args)`` on a slot from :meth:`take`, given back at the end. A
        task whose actor dies is sent again to another one (:meth:`take` with ``avoid``;
        logged as ``sync.task.retry`` with ``context``), at most ``max_attempts`` deaths
        (then :class:`~streamx.bulk.split.TaskFailed`). Cancelled, it cancels the actor's
        task too (Ray cancels an async actor's call)."""
        deaths, tries, waited, held = 0, 0, 0.0, actor
        try:
            while True:
                ref = getattr(held, method).remote(*args)
                try:
                    return await ref
                except self.ray.exceptions.RayActorError as exc:
                    deaths += not isinstance(exc, self.ray.exceptions.ActorUnavailableError)
                    if deaths >= self.max_attempts or waited >= UNAVAILABLE_PATIENCE:
                        raise TaskFailed(f"worker lost: {type(exc).__name__}") from None
                    log.warning("sync.task.retry", task=method, error=type(exc).__name__, **context)
                except anyio.get_cancelled_exc_class():
                    with contextlib.suppress(Exception):  # (a task already done: nothing to do)
                        self.ray.cancel(ref)
                    # until the actor's task has ended (a part's send stops at its next
                    # slice): an abort that follows must not race a part still landing
                    with anyio.move_on_after(SETTLE_PATIENCE, shield=True):
                        with contextlib.suppress(Exception):
                            await ref
                    raise
                dead, held = held, None
                self._return.send_nowait(dead)  # Ray restarts it; the pool gets it back now
                delay = min(0.5 * 2**tries, 5.0)  # let Ray restart it
                tries += 1
                self.retries += 1
                await anyio.sleep(delay)
                waited += delay
                held = await self.take(avoid=dead)
        finally:
            if held is not None:
                self._return.send_nowait(held)

    async def split(self, tg: Any, action: Action, mark: Watermark) -> None:
        """Hand a big object to the splitter (waiting while as many are split as there are
        actors); it finishes like a batch of one key."""
        mark.start(action.key)
        token = object()
        await self._splits.acquire_on_behalf_of(token)
        tg.start_soon(self._run_split, action, mark, token)

    async def _run_split(self, action: Action, mark: Watermark, token: object) -> None:
        assert self.splitter is not None
        try:
            kind, key, size, error = await self.splitter.run(action)
        finally:
            self._splits.release_on_behalf_of(token)
        await self.record(kind, key, size, error)
        mark.finish(key, ok=kind != "fail")
        if self.manifest is not None:
            await self.manifest.maybe_save()

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
        started: str | None = None  # the last key the watermark was told of
        size = min(FIRST_BATCH, self.batch_size)  # slow start: see FIRST_BATCH
        splitter = self.splitter

        async def flush() -> None:
            nonlocal batch, size, started
            assert last is not None
            mark.start(last)
            started = last
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
            action = decide(s, d, **decide_args)
            if action is not None and splitter is not None and splitter.wants(action):
                if batch:
                    await flush()  # the keys before this one, in order
                last = started = key
                await self.split(tg, action, mark)
                continue
            last = key
            if action is None:
                if s is not None:
                    await self.record("skip", key, s.size, None)
                continue
            batch.append(pack_action(action))
            if len(batch) >= size:
                await flush()
        if last is not None and last != started and (batch or mark.value != last):
            await flush()
