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
(see :mod:`streamx.bulk.actor`). An object of ``split_threshold`` bytes or
more goes as part tasks over all the actors instead, its multipart upload
created, completed (or aborted) by the driver (:mod:`streamx.bulk.split`).
Object bytes never enter Ray's object store.

A local side must be visible at the same path on every node that runs an
actor (one node, or a shared filesystem).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from contextlib import AsyncExitStack
from typing import Any

import anyio

from .._api.base import s3_layer
from .._engine import Engine
from .._errors import ConfigError
from .._limits import MiB
from .job import (
    SyncResult,
    check_options,
    check_overlap,
    check_paths,
    job_record,
    parse_side,
    preflight,
)
from .local import EventCallback
from .manifest import Manifest, Watermark
from .plan import Compare, Filters
from .ray_actors import start_actors
from .ray_driver import Driver
from .sides import LocalSide, S3Side, Side
from .split import SPLIT_THRESHOLD, Splitter, abort_left, check_split_threshold


class _QuietThreadWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "not the main thread" not in record.getMessage()


def _init(ray: Any, address: str | None) -> None:
    quiet = _QuietThreadWarning()  # Ray sets its SIGTERM handler only from the main thread;
    worker_log = logging.getLogger("ray._private.worker")  # the CLI has its own
    worker_log.addFilter(quiet)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    finally:
        worker_log.removeFilter(quiet)


def _start_ray(ray: Any, address: str | None, started: Future[None]) -> None:
    try:
        _init(ray, address)
    except BaseException as exc:
        started.set_exception(exc)
        return
    started.set_result(None)
    # Ray's processes die with the *thread* that started them (PR_SET_PDEATHSIG is per
    # thread on Linux): this one stays until the process ends
    threading.Event().wait()


_starting: Future[None] | None = None
_starting_lock = threading.Lock()


def start_ray(ray: Any, address: str | None) -> Future[None]:
    """``ray.init`` for a sync, begun in a thread of its own (it takes seconds when it starts a
    local Ray, and the driver checks and lists meanwhile): no dashboard, no worker logs on the
    driver's terminal. Done when Ray is up (at once if it already is)."""
    global _starting
    with _starting_lock:
        if ray.is_initialized() and (_starting is None or _starting.done()):
            done: Future[None] = Future()
            done.set_result(None)
            return done
        if _starting is None or _starting.done():
            _starting = Future()
            threading.Thread(
                target=_start_ray, args=(ray, address, _starting), name="streamx-ray", daemon=True
            ).start()
        return _starting


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


async def sync_on_ray(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    engine_args: Mapping[str, Any],
    source_engine_args: Mapping[str, Any] | None = None,
    ray_address: str | None = None,
    actors: int | None = None,
    actors_per_node: int | None = None,
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
    split_threshold: int | None = SPLIT_THRESHOLD,
    on_event: EventCallback | None = None,
) -> SyncResult:
    """:func:`streamx.sync` with the copying done by Ray actors (see the module docstring).

    ``engine_args`` (and ``source_engine_args`` for a source on another
    store) are the ``Engine(...)`` keyword arguments each actor uses; keep
    credentials out of them on a shared cluster and let the nodes' own
    ``AWS_*`` environment or roles supply them. Each live node gets
    ``actors_per_node`` actors (default: one per CPU, at most two: one Python
    process keeps about one core busy), or ``actors`` in all, dealt over the
    nodes; each node moves ``concurrency`` objects at once within
    ``memory_limit`` bytes, split among its actors, and each actor has
    ``1/actors`` of the rate limits. Actors are named ``{job_name}-{i}`` and
    killed when the job ends.

    Ray is started (or joined, at ``ray_address``) in a worker thread while the
    driver checks both sides, lists and plans; the actors are started as soon
    as Ray is up, and the planned batches wait for them.

    ``keep_actors=SECONDS`` keeps the actors instead, for a later run of the
    same job: they are detached actors in Ray namespace ``streamx``, named
    after a digest of the job (sides, engine arguments, limits, placement),
    found again by a run with the same digest (``get_if_exists``), and each
    leaves by itself after ``SECONDS`` without a batch (or with the cluster).
    A re-run then skips the actors' start-up (a worker process, importing
    streamx and aiobotocore, the engine: seconds).

    ``split_threshold`` (bytes, default 256 MiB, at least 5 MiB; ``None``: never):
    an object this large or larger, written to an S3 destination, is split into
    part tasks spread over the actors, its multipart upload created and
    completed by the driver (see :mod:`streamx.bulk.split`). A server-side copy
    (s3 → s3 on one engine) is not split.
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
    for name, count in (("actors", actors), ("actors_per_node", actors_per_node)):
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 1
        ):
            raise ConfigError(f"{name} must be a positive int or None, not {count!r}")
    if (
        isinstance(keep_actors, bool)
        or not isinstance(keep_actors, int | float)
        or not (0 <= keep_actors < float("inf"))
    ):
        raise ConfigError(f"keep_actors must be seconds >= 0, not {keep_actors!r}")
    check_split_threshold(split_threshold)
    ray = _ray()
    if not isinstance(conditional, bool):
        raise ConfigError("conditional must be True or False")
    engine = Engine(**engine_args)
    source_engine = engine if source_engine_args is None else Engine(**source_engine_args)
    src = parse_side(source, source_engine, "source")
    dst = parse_side(destination, engine, "destination")
    check_paths(src, dst)
    manifest = None
    marks: dict[str, str | None] = {}
    if checkpoint is not None:
        manifest = Manifest(checkpoint, job_record(src, dst, delete, compare, rules))
        marks = manifest.load()
    driver = Driver(
        ray,
        batch_size=batch_size,
        max_attempts=max_attempts,
        on_event=on_event,
        manifest=manifest,
    )
    sides_ready = anyio.Event()
    job: dict[str, Any] = {}
    ray_started = start_ray(ray, ray_address)  # everything checked that needs no request

    async def boot() -> None:
        """Ray (a thread: seconds), then, once the sides are checked, the actors."""
        await anyio.to_thread.run_sync(ray_started.result, abandon_on_cancel=True)
        await sides_ready.wait()
        driver.add(
            start_actors(
                ray,
                job["src"],
                job["dst"],
                actors=actors,
                per_node=actors_per_node,
                job_name=job_name,
                options={
                    "max_restarts": max_restarts,
                    "max_task_retries": 0,
                    **(actor_options or {}),
                },
                engine_args=job["engine_args"],
                source_engine_args=source_engine_args,
                memory_limit=memory_limit,
                rates=(bytes_per_second, requests_per_second),
                concurrency=concurrency,
                conditional=conditional,
                keep=keep_actors,
            )
        )

    try:
        async with anyio.create_task_group() as fleet:
            fleet.start_soon(boot)
            async with AsyncExitStack() as engines:
                await engines.enter_async_context(engine)
                if source_engine is not engine:
                    await engines.enter_async_context(source_engine)
                check_overlap(src, dst)
                # the store is probed once, here, not by every actor (a probe cut short by a
                # killed actor would leave its scratch key behind); the actors get the answer
                src, dst = await preflight(src), await preflight(dst, probe=conditional)
                if isinstance(dst, LocalSide):
                    os.makedirs(dst.root, exist_ok=True)
                job.update(src=src, dst=dst, engine_args=dict(engine_args))
                if isinstance(dst, S3Side):
                    job["engine_args"]["store"] = engine.store
                sides_ready.set()
                driver.splitter = Splitter(
                    src,
                    dst,
                    split_threshold,
                    conditional=conditional,
                    take=driver.take,
                    call=driver.call,
                    manifest=manifest,
                )
                if manifest is not None and manifest.left:
                    await abort_left(engine, manifest)
                bounds = sorted(marks) if marks else [""] + await split_points(src, shards)
                await _run_shards(driver, src, dst, bounds, marks, compare, delete, rules)
            fleet.cancel_scope.cancel()  # nothing was sent: no need to wait for Ray
    finally:
        driver.close()
        for handle in driver.actors:
            if keep_actors:
                handle.linger.remote(keep_actors)
            else:
                ray.kill(handle, no_restart=True)
    if manifest is not None:
        if driver.counts.failed:
            await manifest.save()
        else:
            manifest.remove()
    return SyncResult.from_counts(driver.counts, False)


async def _run_shards(
    driver: Driver,
    src: Side,
    dst: Side,
    bounds: list[str],
    marks: dict[str, str | None],
    compare: Compare,
    delete: bool,
    rules: Filters,
) -> None:
    """Each shard's planner, concurrently; the manifest is saved if they stop early."""
    manifest = driver.manifest
    try:
        async with anyio.create_task_group() as tg:
            for i, lower in enumerate(bounds):
                until = bounds[i + 1] if i + 1 < len(bounds) else None
                mark = (
                    manifest.shard(lower, marks.get(lower, lower or None))
                    if manifest is not None
                    else Watermark(lower or None)
                )
                args = {"compare": compare, "delete": delete}
                tg.start_soon(driver.shard, tg, src, dst, mark, until, args, rules)
    except BaseException:
        if manifest is not None:
            with anyio.CancelScope(shield=True):
                await manifest.save()
        raise
