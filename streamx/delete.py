"""Batch delete: any (sync or async) iterable of keys, in DeleteObjects batches of 1,000.

Keys are consumed lazily, so deleting the output of a listing of millions of
keys holds a few batches, not the listing. Batches run concurrently; each is
retried on its own on retryable failures. S3 answers per key, and a key that
fails does not stop the others: :class:`~streamx.DeleteResult` lists every
deleted key and every per-key error. A batch that fails as a whole with a
non-retryable error (the bucket does not exist, access is denied) stops the
operation with that error, since every other batch would fail the same way.

**Conditional deletes.** An item may be a ``(key, etag)`` pair: DeleteObjects then
removes that key only while it still has that ETag (S3's per-object ``ETag``), and a
key that changed comes back in ``DeleteResult.errors`` with code
``PreconditionFailed``. Before the first pair is sent, ``on_conditional`` runs (the
engine makes sure the store honours the condition: one that ignores it would delete
unconditionally, so it is refused).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._concurrency import FirstFailure
from ._context import TransferContext
from ._errors import (
    AccessDeniedError,
    ConfigError,
    ConfigTypeError,
    NotFoundError,
    S3Error,
    StreamxError,
)
from ._log import log
from ._objects import DeleteError, DeleteResult
from ._validate import check_key as _check_key

BATCH_SIZE = 1000  # S3's limit per DeleteObjects request

Item = str | tuple[str, str]
KeySource = Iterable[Item] | AsyncIterable[Item]


def check_item(item: object) -> Item:
    """A key, or a ``(key, etag)`` pair for a conditional delete."""
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[1], str) or not item[1].strip('" '):
            raise ConfigError(
                f"a conditional delete is a (key, etag) pair with a non-empty ETag, not {item!r}"
            )
        return (check_key(item[0]), item[1])
    return check_key(item)


def check_key(key: object) -> str:
    """One key of the batch: a non-empty, valid UTF-8 str of at most 1,024 bytes."""
    return _check_key(key, "every key")


def check_keys(keys: object) -> None:
    """Reject what cannot be a key source before any request (and every key of a sequence)."""
    if isinstance(keys, str | bytes):
        raise ConfigTypeError(
            "keys must be an iterable of keys, not a single str; wrap it in a list"
        )
    if isinstance(keys, list | tuple | set | frozenset):
        for key in keys:
            check_item(key)
        return
    if not isinstance(keys, Iterable | AsyncIterable):
        raise ConfigTypeError(
            f"keys must be a (sync or async) iterable of str, not {type(keys).__name__}"
        )


def check_concurrency(n: object) -> int:
    """``concurrency=`` of ``Engine.delete_many``: a positive int."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"concurrency must be a positive int, not {n!r}")
    return n


async def _aiter(keys: KeySource) -> AsyncIterator[Item]:
    if isinstance(keys, AsyncIterable):
        async for key in keys:
            yield key
    else:
        for key in keys:
            yield key


async def delete_many(
    ctx: TransferContext,
    bucket: str,
    keys: KeySource,
    *,
    concurrency: int,
    batch_size: int = BATCH_SIZE,
    on_conditional: Callable[[], Awaitable[None]] | None = None,
) -> DeleteResult:
    deleted: list[str] = []
    errors: list[DeleteError] = []

    async def produce(send: MemoryObjectSendStream[list[Item]]) -> None:
        checked = on_conditional is None
        async with send:
            batch: list[Item] = []
            async for key in _aiter(keys):
                item = check_item(key)
                if not checked and isinstance(item, tuple):
                    assert on_conditional is not None
                    await on_conditional()  # before the first conditional batch is sent
                    checked = True
                batch.append(item)
                if len(batch) == batch_size:
                    await send.send(batch)
                    batch = []
            if batch:
                await send.send(batch)

    async def one_batch(items: list[Item]) -> None:
        batch = [i if isinstance(i, str) else i[0] for i in items]
        try:
            response = await ctx.retry.call(
                lambda: ctx.s3.delete_objects(bucket, items, quiet=True)
            )
        except (NotFoundError, AccessDeniedError):
            raise
        except S3Error as exc:
            log.warning("delete.batch.failed", bucket=bucket, keys=len(batch), code=exc.code)
            errors.extend(DeleteError(k, exc.code or "Error", exc.message) for k in batch)
            return
        except StreamxError as exc:  # network, after the retries
            errors.extend(DeleteError(k, type(exc).__name__, exc.message) for k in batch)
            return
        failed: dict[str, dict[str, Any]] = {
            str(e.get("Key")): e for e in response.get("Errors", []) or []
        }
        for key in batch:
            e = failed.get(key)
            if e is None:
                deleted.append(key)
            else:
                errors.append(DeleteError(key, str(e.get("Code", "")), str(e.get("Message", ""))))

    async def worker(receive: MemoryObjectReceiveStream[list[Item]]) -> None:
        async with receive:
            async for batch in receive:
                await one_batch(batch)

    first = FirstFailure()
    async with anyio.create_task_group() as tg:
        send, receive = anyio.create_memory_object_stream[list[Item]](0)
        with receive:
            for _ in range(concurrency):
                tg.start_soon(first.run, tg.cancel_scope, worker, receive.clone())
        tg.start_soon(first.run, tg.cancel_scope, produce, send)
    if first.error is not None:
        if isinstance(first.error, StreamxError):
            first.error.add_context(bucket=bucket)
        raise first.error
    log.info("delete.complete", bucket=bucket, deleted=len(deleted), errors=len(errors))
    return DeleteResult(deleted=tuple(deleted), errors=tuple(errors))
