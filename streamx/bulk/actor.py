"""The fleet worker: runs batches of planned actions with its own Engine(s).

A plain class, made a Ray actor by :mod:`streamx.bulk.ray` (so this module
needs no Ray). It holds one :class:`~streamx.Engine` per store with its own
memory budget and its share of the rate limit, and runs a batch's actions
``concurrency`` at a time. Only keys and metadata travel in and out: object
bytes go between the stores and this process, never through Ray.

A batch sent again (``attempt > 1``, after its worker died mid-batch) is
made safe first: the multipart uploads the dead attempt left for the batch's
keys are aborted, and each write is re-checked against the destination as it
is now: an object the dead attempt finished (same content) counts as copied,
and the rest is written as planned (with its conditions), so nothing is
duplicated or lost.

It also does the actors' half of an object the driver split into parts
(:mod:`streamx.bulk.split`): :meth:`BatchWorker.part` reads one byte range
from the source and uploads it as one part (:mod:`streamx.bulk.parts`), and
:meth:`BatchWorker.same` compares a split object's two sides.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import anyio

from .._budget import MemoryBudget
from .._engine import Engine
from .._ratelimit import RateLimit
from .conditions import prepare
from .entries import Entry
from .execute import Runner, SyncEvent, delete_keys, describe
from .parts import PartDone, PartTask, send_part
from .plan import Action
from .sides import LocalSide, S3Side, Side, same_content

#: an Entry on the wire: (key, size, mtime, etag, checksums, error)
EntryTuple = tuple[str, int, float, str | None, tuple[str, ...], str | None]
ActionTuple = tuple[str, str, EntryTuple | None, EntryTuple | None]
EventTuple = tuple[str, str, int, str | None]


def pack_entry(e: Entry | None) -> EntryTuple | None:
    return None if e is None else (e.key, e.size, e.mtime, e.etag, e.checksums, e.error)


def unpack_entry(t: EntryTuple | None) -> Entry | None:
    return None if t is None else Entry(t[0], t[1], t[2], t[3], tuple(t[4]), t[5])


def pack_action(a: Action) -> ActionTuple:
    return (a.kind, a.key, pack_entry(a.src), pack_entry(a.dst))


def unpack_action(t: ActionTuple) -> Action:
    return Action(t[0], t[1], unpack_entry(t[2]), unpack_entry(t[3]))  # type: ignore[arg-type]


def pack_event(e: SyncEvent) -> EventTuple:
    return (e.kind, e.key, e.size, e.error)


def make_side(spec: dict[str, Any], engine: Engine | None) -> Side:
    if spec["kind"] == "local":
        return LocalSide(spec["root"])
    assert engine is not None
    return S3Side(engine, spec["bucket"], spec["prefix"])


def side_spec(side: Side) -> dict[str, Any]:
    if isinstance(side, LocalSide):
        return {"kind": "local", "root": os.path.abspath(side.root)}
    return {"kind": "s3", "bucket": side.bucket, "prefix": side.prefix}


class BatchWorker:
    """Runs batches for one sync job (one instance per Ray actor)."""

    def __init__(
        self,
        src: dict[str, Any],
        dst: dict[str, Any],
        engine_args: dict[str, Any],
        source_engine_args: dict[str, Any] | None,
        *,
        memory_limit: int,
        rates: tuple[float | None, float | None],
        concurrency: int,
        conditional: bool,
        retire: Callable[[], None] | None = None,
    ) -> None:
        self._specs = (src, dst)
        self._retire = retire  # how to leave for good (see linger)
        self._idle_until = 0.0
        self._linger = 0.0
        self._busy = 0
        self._tally = [0, 0, 0]  # batches run, parts sent, parts being sent
        self._watch: asyncio.Future[None] | None = None
        self._engine_args = (engine_args, source_engine_args)
        self._memory_limit = memory_limit
        self._rates = rates
        self._concurrency = concurrency
        self._conditional = conditional
        self._stack: AsyncExitStack | None = None
        self._runner: Runner | None = None
        self._lock = anyio.Lock()
        # one limit for all of this actor's batches (the driver keeps more than one in flight)
        self._limiter: anyio.Semaphore | None = None

    async def _ready(self) -> Runner:
        async with self._lock:
            if self._runner is not None:
                return self._runner
            stack = AsyncExitStack()
            budget = MemoryBudget(self._memory_limit)
            limit = None
            if any(r is not None for r in self._rates):
                limit = RateLimit(
                    bytes_per_second=self._rates[0], requests_per_second=self._rates[1]
                )
            dst_args, src_args = self._engine_args
            src_spec, dst_spec = self._specs
            try:
                engine = await stack.enter_async_context(
                    Engine(**dst_args, memory_budget=budget, rate_limit=limit)
                )
                source = engine
                if src_args is not None:
                    source = await stack.enter_async_context(
                        Engine(**src_args, memory_budget=budget, rate_limit=limit)
                    )
                if self._conditional and dst_spec["kind"] == "s3":
                    await prepare(engine, dst_spec["bucket"])
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await stack.aclose()  # a later call starts again from nothing
                raise
            self._stack = stack
            self._limiter = anyio.Semaphore(self._concurrency)
            self._runner = Runner(
                make_side(src_spec, source),
                make_side(dst_spec, engine),
                conditional=self._conditional,
            )
            return self._runner

    async def warm(self) -> None:
        """Get ready (engines; a store probe if the driver sent no profile) before the first
        batch arrives. A failure here is not reported: the first batch's :meth:`run` meets it
        again and reports it."""
        try:
            await self._ready()
        except Exception:
            pass

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = self._runner = None

    async def limits(self) -> tuple[int, int]:
        """This actor's share of its node: (objects at once, memory budget in bytes)."""
        return self._concurrency, self._memory_limit

    async def tally(self) -> tuple[int, int, int]:
        """(batches run, parts sent, parts being sent) by this actor: how a job's work spread
        over its actors."""
        return self._tally[0], self._tally[1], self._tally[2]

    async def pid(self) -> int:
        """This actor's process id (tools and tests tell a kept actor from a new one by it)."""
        return os.getpid()

    async def linger(self, seconds: float) -> None:
        """Stay for a later run of the same job; leave (``retire``) after ``seconds`` without a
        batch. The watch is a task of the actor's own loop (no task group outlives a call)."""
        self._idle_until = time.monotonic() + seconds
        self._linger = seconds
        if self._watch is None and self._retire is not None:
            self._watch = asyncio.ensure_future(self._leave_when_idle())

    async def _leave_when_idle(self) -> None:
        while True:
            left = self._idle_until - time.monotonic()
            if left <= 0 and not self._busy:
                break
            await anyio.sleep(max(0.2, left))  # a batch meanwhile moves _idle_until on
        await self.close()
        assert self._retire is not None
        self._retire()

    @contextmanager
    def _working(self) -> Iterator[None]:
        """A call at work: a kept actor does not leave meanwhile (see :meth:`linger`)."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            self._idle_until = time.monotonic() + self._linger

    async def run(self, batch: list[ActionTuple], attempt: int = 1) -> list[EventTuple]:
        """Perform a batch; one event per action, in no particular order."""
        with self._working():
            events = await self._run(batch, attempt)
        self._tally[0] += 1
        return events

    async def part(self, task: PartTask) -> PartDone:
        """Read one part's range from the source and upload it (a split object's part task);
        a failure comes back as the part's error, after the engine's own retries."""
        with self._working():
            try:
                runner = await self._ready()
                assert self._limiter is not None and isinstance(runner.dst, S3Side)
                async with self._limiter:
                    self._tally[2] += 1
                    try:
                        done = await send_part(runner.src, runner.dst, task)
                    finally:
                        self._tally[2] -= 1
                self._tally[1] += 1
                return done
            except Exception as exc:
                return task[2], None, None, f"part {task[2]}: {describe(exc)}"

    async def same(self, action: ActionTuple) -> bool | str:
        """Whether a split object's ``check`` pair holds the same bytes (see
        :func:`~streamx.bulk.sides.same_content`); a failure comes back as its text."""
        with self._working():
            try:
                runner = await self._ready()
                a = unpack_action(action)
                assert self._limiter is not None and a.src is not None and a.dst is not None
                async with self._limiter:
                    return await same_content(runner.src, runner.dst, a.src, a.dst)
            except Exception as exc:
                return describe(exc)

    async def _run(self, batch: list[ActionTuple], attempt: int) -> list[EventTuple]:
        runner = await self._ready()
        actions = [unpack_action(t) for t in batch]
        events: list[EventTuple] = []
        if attempt > 1:
            await self._abort_leftovers(runner, actions)
        deletes = [a for a in actions if a.kind == "delete" and isinstance(runner.dst, S3Side)]
        others = [a for a in actions if a not in deletes]
        if deletes:
            assert isinstance(runner.dst, S3Side)
            try:
                errors = await delete_keys(runner.src, runner.dst, [a.key for a in deletes])
            except Exception as exc:
                errors = {a.key: describe(exc) for a in deletes}
            for a in deletes:
                size = a.dst.size if a.dst else 0
                kind = "fail" if a.key in errors else "delete"
                events.append((kind, a.key, size, errors.get(a.key)))
        if attempt == 1:  # small local files' MD5s in one thread hop (a retry re-checks each)
            hashable = [a for a in others if runner.hashable(a)]
            if hashable:
                others = [a for a in others if not runner.hashable(a)]
                decided, updates = await runner.check_many(hashable)
                events.extend(pack_event(event) for event in decided)
                others.extend(updates)
        limiter = self._limiter
        assert limiter is not None

        async def one(action: Action) -> None:
            async with limiter:
                if attempt > 1:
                    event = await self._recheck(runner, action)
                    if event is not None:
                        events.append(pack_event(event))
                        return
                events.append(pack_event(await runner.run(action)))

        async with anyio.create_task_group() as tg:
            for action in others:
                tg.start_soon(one, action)
        return events

    async def _abort_leftovers(self, runner: Runner, actions: list[Action]) -> None:
        """Abort the multipart uploads a dead attempt left for this batch's keys."""
        dst = runner.dst
        writes = (
            {dst.key(a.key) for a in actions if a.kind != "delete"}
            if isinstance(dst, S3Side)
            else set()
        )
        if not writes:
            return
        assert isinstance(dst, S3Side)
        low, high = min(writes), max(writes)
        n = next((i for i, (a, b) in enumerate(zip(low, high, strict=False)) if a != b), len(low))
        common = low[:n]  # the longest prefix of every key written (string, not path)
        multipart = dst.engine.multipart
        async for upload in multipart.uploads(dst.bucket, common):
            if upload.get("Key") in writes:
                await multipart.abort(dst.bucket, str(upload["Key"]), str(upload["UploadId"]))

    async def _recheck(self, runner: Runner, action: Action) -> SyncEvent | None:
        """On a retried batch: an event if the dead attempt already finished this action."""
        if action.kind == "delete" or action.src is None:
            return None
        try:
            now = await runner.dst.stat(action.key)
        except Exception as exc:
            return SyncEvent("fail", action.key, action.size, describe(exc))
        if now is None or now.size != action.src.size:
            return None
        if now.etag == (action.dst.etag if action.dst else None) and action.kind != "copy":
            return None  # still the object that was listed: the update is still to do
        if await same_content(runner.src, runner.dst, action.src, now):
            kind = "skip" if action.kind == "check" else action.kind
            return SyncEvent(kind, action.key, action.size)
        return None
