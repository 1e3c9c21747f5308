"""The fleet executor: the driver plans, Ray actors move the bytes (the ``ray`` extra).

::

    driver: shard key space ─▶ per shard: merge-join ─▶ decide ─▶ batches of keys
                                                                     │ (keys and sizes only)
    actors (one Engine each, own budget, share of the rate limit) ◀──┘
                                                                     │ events
    driver: counts, on_event, manifest (per-shard watermark of finished batches) ◀┘

Shards are ranges of the key space cut at the source's top-level prefixes
(one ``Delimiter="/"`` listing, or the top directory), listed and merged
concurrently; their bounds are kept in the manifest, so a resume cuts the same
shards. Each batch goes to a free actor; a batch whose actor dies (a node
lost, ``ray.kill``) is sent again once Ray has restarted the actor
(``max_restarts``), and the retried batch cleans up after the dead attempt
(see :mod:`streamx.bulk.actor`). Object bytes never enter Ray's object store.

A local side must be visible at the same path on every node that runs an
actor (one node, or a shared filesystem).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from .._api.base import s3_layer
from .._engine import Engine
from .._errors import ConfigError
from .._limits import MiB
from .actor import pack_action
from .execute import Counts, SyncEvent
from .job import SyncResult, check_options, check_sides, job_record, parse_side, preflight
from .listing import entries
from .local import EventCallback, call_back
from .manifest import Manifest, Watermark
from .plan import Compare, Filters, decide, merge
from .ray_actors import start_actors
from .sides import LocalSide, S3Side, Side

#: A shard's first batch; each next one doubles up to ``batch_size``. The shards are merged
#: concurrently and advance together, so with full-size first batches the actors idled until
#: every shard had planned ``batch_size`` keys (measured: 40% of a 10,000-key re-run on one
#: node planned before the first batch left).
FIRST_BATCH = 16

#: How long a batch waits, in all, for an actor that Ray is restarting.
UNAVAILABLE_PATIENCE = 60.0


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "the Ray executor needs the 'ray' extra: pip install 'streamx[ray]'"
        ) from exc
    return ray


async def split_points(side: Side, shards: int) -> list[str]:
    """Up to ``shards - 1`` increasing keys that cut the source's key space at top-level prefixes."""
    if shards <= 1:
        return []
    if isinstance(side, S3Side):
        response = await s3_layer(side.engine).list_objects_v2(
            side.bucket, Prefix=side.prefix, Delimiter="/", MaxKeys=1000
        )
        tops = [str(p["Prefix"])[len(side.prefix) :] for p in response.get("CommonPrefixes", [])]
    else:
        root = side.root

        def top_dirs() -> list[str]:
            return sorted(n + "/" for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)))

        tops = await anyio.to_thread.run_sync(top_dirs)
    step = max(1, len(tops) // shards)
    return tops[step - 1 : -1 : step][: shards - 1] if len(tops) > 1 else []


class _Driver:
    def __init__(
        self,
        ray: Any,
        actors: list[Any],
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
        send, self.free = anyio.create_memory_object_stream[Any](2 * len(actors))
        for actor in actors * 2:  # two batches in flight per actor: one runs, one waits
            send.send_nowait(actor)
        self._return = send

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


async def sync_on_ray(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    engine_args: Mapping[str, Any],
    source_engine_args: Mapping[str, Any] | None = None,
    ray_address: str | None = None,
    actors: int | None = None,
    actor_options: Mapping[str, Any] | None = None,
    shards: int = 16,
    batch_size: int = 256,
    job_name: str | None = None,
    delete: bool = False,
    compare: Compare = "checksum",
    filters: Sequence[tuple[str, str]] = (),
    concurrency: int = 16,
    checkpoint: str | os.PathLike[str] | None = None,
    conditional: bool = True,
    memory_limit: int = 256 * MiB,
    bytes_per_second: float | None = None,
    requests_per_second: float | None = None,
    max_attempts: int = 4,
    max_restarts: int = 4,
    keep_actors: float = 0.0,
    on_event: EventCallback | None = None,
) -> SyncResult:
    """:func:`streamx.sync` with the copying done by Ray actors (see the module docstring).

    ``engine_args`` (and ``source_engine_args`` for a source on another
    store) are the ``Engine(...)`` keyword arguments each actor uses; keep
    credentials out of them on a shared cluster and let the nodes' own
    ``AWS_*`` environment or roles supply them. ``actors`` defaults to one per
    live node; each runs ``concurrency`` objects at once within
    ``memory_limit`` bytes, with ``1/actors`` of the rate limits. Actors are
    named ``{job_name}-{i}`` and killed when the job ends.

    ``keep_actors=SECONDS`` keeps them instead, for a later run of the same
    job: they are detached actors in Ray namespace ``streamx``, named after a
    digest of the job (sides, engine arguments, limits, actor count), found
    again by a run with the same digest (``get_if_exists``), and each leaves
    by itself after ``SECONDS`` without a batch (or with the cluster). A re-run
    then skips the actors' start-up (a worker process, importing streamx and
    aiobotocore, the engine: seconds).
    """
    check_options(compare, concurrency, delete, False)
    rules = Filters(filters)
    for name, value in (
        ("batch_size", batch_size),
        ("shards", shards),
        ("max_attempts", max_attempts),
        ("memory_limit", memory_limit),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, not {value!r}")
    if (
        isinstance(keep_actors, bool)
        or not isinstance(keep_actors, int | float)
        or not (0 <= keep_actors < float("inf"))
    ):
        raise ConfigError(f"keep_actors must be seconds >= 0, not {keep_actors!r}")
    ray = _ray()
    if not isinstance(conditional, bool):
        raise ConfigError("conditional must be True or False")
    async with Engine(**engine_args) as engine:
        source_engine = engine
        if source_engine_args is not None:
            source_engine = await _enter(Engine(**source_engine_args))
        try:
            src = parse_side(source, source_engine, "source")
            dst = parse_side(destination, engine, "destination")
            check_sides(src, dst, dry_run=False)
            manifest = None
            marks: dict[str, str | None] = {}
            if checkpoint is not None:
                manifest = Manifest(checkpoint, job_record(src, dst, delete, compare, rules))
                marks = manifest.load()
            # the store is probed once, here, not by every actor (a probe cut short by a
            # killed actor would leave its scratch key behind); the actors get the answer
            src, dst = await preflight(src), await preflight(dst, probe=conditional)
            if isinstance(dst, LocalSide):
                os.makedirs(dst.root, exist_ok=True)
            else:
                engine_args = {**engine_args, "store": engine.store}
            if not ray.is_initialized():
                ray.init(address=ray_address, log_to_driver=False, logging_level="ERROR")
            # the actors start (process, Engine) while the driver lists
            handles = start_actors(
                ray,
                src,
                dst,
                actors=actors,
                job_name=job_name,
                options={
                    "max_restarts": max_restarts,
                    "max_task_retries": 0,
                    "scheduling_strategy": "SPREAD",
                    **(actor_options or {}),
                },
                engine_args=engine_args,
                source_engine_args=source_engine_args,
                memory_limit=memory_limit,
                rates=(bytes_per_second, requests_per_second),
                concurrency=concurrency,
                conditional=conditional,
                keep=keep_actors,
            )
            try:
                bounds = sorted(marks) if marks else [""] + await split_points(src, shards)
                driver = _Driver(
                    ray,
                    handles,
                    batch_size=batch_size,
                    max_attempts=max_attempts,
                    on_event=on_event,
                    manifest=manifest,
                )
                try:
                    async with anyio.create_task_group() as tg:
                        for i, lower in enumerate(bounds):
                            until = bounds[i + 1] if i + 1 < len(bounds) else None
                            mark = (
                                manifest.shard(lower, marks.get(lower, lower or None))
                                if manifest is not None
                                else Watermark(lower or None)
                            )
                            tg.start_soon(
                                driver.shard,
                                tg,
                                src,
                                dst,
                                mark,
                                until,
                                {"compare": compare, "delete": delete},
                                rules,
                            )
                except BaseException:
                    if manifest is not None:
                        with anyio.CancelScope(shield=True):
                            await manifest.save()
                    raise
            finally:
                driver.close()
                for handle in handles:
                    if keep_actors:
                        handle.linger.remote(keep_actors)
                    else:
                        ray.kill(handle, no_restart=True)
        finally:
            if source_engine is not engine:
                await source_engine.__aexit__(None, None, None)
    if manifest is not None:
        if driver.counts.failed:
            await manifest.save()
        else:
            manifest.remove()
    return SyncResult.from_counts(driver.counts, False)


async def _enter(engine: Engine) -> Engine:
    await engine.__aenter__()
    return engine
