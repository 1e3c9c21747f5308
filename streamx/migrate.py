"""Cross-store migration of a prefix: :meth:`Engine.copy_to` for every object under it.

The two engines may point at different endpoints with different
credentials; bytes pass through this process once, never to disk. Each object
is one streamed GET (resumed where a connection drops, pinned to its ETag)
feeding the destination's upload pipeline as an async iterable
(:meth:`streamx.Engine.copy_to`), so memory is bounded as for any upload of a
stream: the destination's ``TransferConfig.memory_bound`` plus one 1 MiB
chunk, per object. Only the engines' public API is used.

:func:`migrate_prefix` lists a prefix lazily and copies up to ``concurrency``
objects at once (memory: ``concurrency *`` the bound above, further capped by
the destination engine's shared ``memory_budget``). One object's failure is
recorded and the others go on; the result lists what failed and why.
Progress is one stream of events for the whole migration: ``bytes_done``
counts bytes acknowledged by the destination, ``parts_done`` objects copied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._concurrency import FirstFailure
from ._config import TransferConfig
from ._errors import ConfigError
from ._events import Progress, ProgressCallback, ProgressEvent
from ._log import log
from ._objects import MigrationFailure, MigrationResult, ObjectInfo
from ._s3 import check_put_args
from ._validate import check_bucket, check_prefix

if TYPE_CHECKING:
    from ._engine import Engine


class _Aggregate:
    """Folds each object's progress events into one stream for the whole migration."""

    def __init__(self, callback: ProgressCallback | None, interval: float) -> None:
        self.progress = Progress(callback, interval=interval)
        self.error: BaseException | None = None

    def for_object(self) -> ProgressCallback:
        last = 0

        async def on_progress(event: ProgressEvent) -> None:
            nonlocal last
            delta, last = event.bytes_done - last, event.bytes_done
            try:
                await self.progress.advance(delta, parts=1 if event.final else 0)
            except BaseException as exc:
                self.error = exc  # the caller's callback stops the whole migration
                raise

        return on_progress


async def migrate_prefix(
    src: Engine,
    src_bucket: str,
    prefix: str,
    dst: Engine,
    dst_bucket: str,
    dst_prefix: str | None = None,
    *,
    concurrency: int = 8,
    config: TransferConfig | None = None,
    on_progress: ProgressCallback | None = None,
    fail_fast: bool = False,
    **put_args: Any,
) -> MigrationResult:
    """Copy every object under ``prefix`` from ``src`` to ``dst``, ``concurrency`` at a time.

    A key ``prefix + rest`` becomes ``dst_prefix + rest`` (the same key when
    ``dst_prefix`` is ``None``). With ``fail_fast`` the first failure stops
    the migration and is raised; otherwise failures are collected in the
    result. Objects already copied stay copied either way.

    ``put_args`` apply to every object written, conditions included:
    ``IfNoneMatch="*"`` makes a re-run skip nothing silently and overwrite nothing
    (an object already at the destination fails with
    :class:`streamx.PreconditionFailedError`, listed in ``failed``).
    """
    from ._engine import Engine

    for name, engine in (("src", src), ("dst", dst)):
        if not isinstance(engine, Engine):
            raise ConfigError(f"{name} must be an Engine, not {type(engine).__name__}")
    check_bucket(src_bucket, "src_bucket")
    check_bucket(dst_bucket, "dst_bucket")
    check_prefix(prefix)
    if dst_prefix is not None:
        check_prefix(dst_prefix, "dst_prefix")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be a positive int, not {concurrency!r}")
    if not isinstance(fail_fast, bool):
        raise ConfigError(f"fail_fast must be True or False, not {fail_fast!r}")
    if config is not None and not isinstance(config, TransferConfig):
        raise ConfigError(f"config must be a TransferConfig, not {type(config).__name__}")
    cfg = dst.config if config is None else config
    args = check_put_args(put_args)
    listing = src.list(src_bucket, prefix)
    aggregate = _Aggregate(on_progress, cfg.progress_interval)
    failures: list[MigrationFailure] = []
    copied = 0
    copied_bytes = 0

    def target(key: str) -> str:
        return key if dst_prefix is None else dst_prefix + key[len(prefix) :]

    async def produce(send: MemoryObjectSendStream[ObjectInfo]) -> None:
        async with send:
            async for info in listing:
                if not info.is_prefix:
                    await send.send(info)

    async def worker(receive: MemoryObjectReceiveStream[ObjectInfo]) -> None:
        nonlocal copied, copied_bytes
        async with receive:
            async for info in receive:
                try:
                    result = await src.copy_to(
                        dst,
                        src_bucket,
                        info.key,
                        dst_bucket,
                        target(info.key),
                        config=cfg,
                        on_progress=aggregate.for_object(),
                        **args,
                    )
                except Exception as exc:
                    if aggregate.error is not None and aggregate.error is not exc:
                        raise aggregate.error from exc
                    if aggregate.error is not None or fail_fast:
                        raise
                    log.warning("migrate.object.failed", key=info.key, error=type(exc).__name__)
                    failures.append(MigrationFailure(info.key, exc))
                    continue
                copied += 1
                copied_bytes += result.size

    first = FirstFailure()
    async with anyio.create_task_group() as tg:
        send, receive = anyio.create_memory_object_stream[ObjectInfo](0)
        with receive:
            for _ in range(concurrency):
                tg.start_soon(first.run, tg.cancel_scope, worker, receive.clone())
        tg.start_soon(first.run, tg.cancel_scope, produce, send)
    first.raise_if_failed()
    await aggregate.progress.finish()
    log.info(
        "migrate.complete",
        src_bucket=src_bucket,
        prefix=prefix,
        copied=copied,
        failed=len(failures),
    )
    return MigrationResult(copied=copied, bytes_copied=copied_bytes, failed=tuple(failures))
