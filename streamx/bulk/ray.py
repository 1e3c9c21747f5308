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
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from .._api.base import s3_layer
from .._engine import Engine
from .._errors import ConfigError
from .._limits import MiB
from .actor import BatchWorker, pack_action, side_spec
from .execute import Counts, SyncEvent
from .job import SyncResult, check_options, check_sides, job_record, parse_side, preflight
from .local import EventCallback, call_back, entries
from .manifest import Manifest, Watermark
from .plan import Compare, Filters, decide, merge
from .sides import LocalSide, S3Side, Side


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

    async def record(self, kind: str, key: str, size: int, error: str | None) -> None:
        event = SyncEvent(kind, key, size, error)  # type: ignore[arg-type]
        self.counts.add(event)
        if kind != "skip":
            await call_back(self.on_event, event)

    async def run_batch(self, actor: Any, batch: list[Any], last: str, mark: Watermark) -> None:
        attempt = 1
        try:
            while True:
                try:
                    events = await actor.run.remote(batch, attempt)
                    break
                except (
                    self.ray.exceptions.RayActorError,
                    self.ray.exceptions.ActorUnavailableError,
                ) as exc:
                    if attempt >= self.max_attempts:
                        events = [
                            ("fail", t[1], 0, f"worker lost: {type(exc).__name__}") for t in batch
                        ]
                        break
                    attempt += 1
                    self.retries += 1
                    await anyio.sleep(0.5)  # let Ray restart the actor
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

        async def flush() -> None:
            nonlocal batch
            assert last is not None
            mark.start(last)
            if not batch:
                mark.finish(last)
                return
            actor = await self.free.receive()
            tg.start_soon(self.run_batch, actor, batch, last, mark)
            batch = []

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
            if len(batch) >= self.batch_size:
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
            src, dst = await preflight(src), await preflight(dst)
            if isinstance(dst, LocalSide):
                os.makedirs(dst.root, exist_ok=True)
            bounds = sorted(marks) if marks else [""] + await split_points(src, shards)
            if not ray.is_initialized():
                ray.init(address=ray_address, log_to_driver=False, logging_level="ERROR")
            n = actors or max(1, len([x for x in ray.nodes() if x.get("Alive")]))
            name = job_name or f"streamx-sync-{uuid.uuid4().hex[:8]}"
            remote = ray.remote(BatchWorker)
            options = {
                "max_restarts": max_restarts,
                "max_task_retries": 0,
                "scheduling_strategy": "SPREAD",
                **(actor_options or {}),
            }
            rates = tuple(
                None if r is None else r / n for r in (bytes_per_second, requests_per_second)
            )
            handles = [
                remote.options(name=f"{name}-{i}", **options).remote(
                    side_spec(src),
                    side_spec(dst),
                    dict(engine_args),
                    dict(source_engine_args) if source_engine_args is not None else None,
                    memory_limit=memory_limit,
                    rates=rates,
                    concurrency=concurrency,
                    conditional=conditional,
                )
                for i in range(n)
            ]
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
                for handle in handles:
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
