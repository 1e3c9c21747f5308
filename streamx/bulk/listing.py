"""Both listings of one key range joined into pairs, the destination listed several pages at once.

An S3 listing is a chain: each page names the next (a continuation token), so
one listing waits for one round trip per 1,000 keys, and on a re-run that
finds nothing to copy those round trips are the sync's whole time. When the
destination is an S3 prefix, :func:`listed_pairs` cuts its listing at the
source's keys instead::

    source  ─▶ chunks of SPAN keys ─┬──────────────────────────────▶ merge ─▶ pairs
                                    └▶ dest. range (prev, last] ─ pages ─┘   (in order)
                                       (up to AHEAD ranges listed at once)

Each chunk of ``SPAN`` source keys ``(previous chunk's last key, this chunk's
last key]`` (the last chunk: up to the shard's end) has its own destination
listing (``StartAfter`` = the lower bound) started as soon as the chunk is
read, while earlier chunks are still being merged; a re-run of a mirror lists
one page per range. Memory stays flat: at most ``AHEAD`` chunks wait, and each
range listing holds at most two pages (one queued, one being filled) before it
waits for the merge to take them.

A local destination is walked as before (its walk costs no round trips), and so is a
store listed directory by directory (``S3Side.tree``: each range would list the
directories above it again).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._concurrency import FirstFailure
from .._errors import SyncOrderError
from .entries import Entry
from .plan import merge
from .sides import LocalSide, S3Side, Side

#: Source keys per destination range (one listing page when both sides hold the same keys).
SPAN = 1000
#: Destination ranges listed ahead of the merge.
AHEAD = 4

Pair = tuple[Entry | None, Entry | None]
Pages = MemoryObjectReceiveStream[list[Entry]]


def entries(side: Side, other: Side, after: str | None, until: str | None) -> AsyncIterator[Entry]:
    """``side``'s entries in ``(after, until]``; an S3 side bound for a local one drops folder
    markers and flags keys that cannot be local paths."""
    if isinstance(side, S3Side):
        return side.entries(after, until, for_local=isinstance(other, LocalSide))
    return side.entries(after, until)


@asynccontextmanager
async def listed_pairs(
    src: Side,
    dst: Side,
    after: str | None,
    until: str | None,
    *,
    span: int = SPAN,
    ahead: int = AHEAD,
) -> AsyncIterator[AsyncIterator[Pair]]:
    """``async with listed_pairs(src, dst, after, until) as pairs: async for s, d in pairs``:
    the merge-join of both sides over ``(after, until]`` (see the module docstring)."""
    if not isinstance(dst, S3Side) or dst.tree:
        yield merge(entries(src, dst, after, until), entries(dst, src, after, until))
        return
    first = FirstFailure()  # the first failed listing surfaces as itself, once
    send, receive = anyio.create_memory_object_stream[tuple[list[Entry], Pages]](ahead)
    joined = _join(receive)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                first.run, tg.cancel_scope, _cut, tg, first, src, dst, after, until, span, send
            )
            try:
                yield joined
            finally:  # a caller that stopped iterating (or failed) left it suspended in a range
                with anyio.CancelScope(shield=True):
                    await joined.aclose()  # closes that range's stream now, not at GC
            tg.cancel_scope.cancel()  # the caller stopped early: stop listing
    finally:
        with receive:
            while True:  # ranges read ahead but not merged
                try:
                    receive.receive_nowait()[1].close()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
    first.raise_if_failed()


async def _cut(
    tg: TaskGroup,
    first: FirstFailure,
    src: Side,
    dst: Side,
    after: str | None,
    until: str | None,
    span: int,
    send: MemoryObjectSendStream[tuple[list[Entry], Pages]],
) -> None:
    """Read the source in chunks and start each chunk's destination range listing."""

    async def emit(chunk: list[Entry], lo: str | None, hi: str | None) -> None:
        pages_send, pages = anyio.create_memory_object_stream[list[Entry]](1)
        tg.start_soon(first.run, tg.cancel_scope, _list_range, dst, src, lo, hi, span, pages_send)
        try:
            await send.send((chunk, pages))
        except BaseException:
            pages.close()
            raise

    with send:
        lo, last = after, None
        chunk: list[Entry] = []
        async for entry in entries(src, dst, after, until):
            if last is not None and entry.key <= last:
                raise SyncOrderError(
                    f"the source listing is not in key order ({entry.key!r} after {last!r}); "
                    "nothing was deleted on that reading"
                )
            last = entry.key
            chunk.append(entry)
            if len(chunk) >= span:
                await emit(chunk, lo, last)
                lo, chunk = last, []
        await emit(chunk, lo, until)


async def _list_range(
    dst: Side,
    src: Side,
    lo: str | None,
    hi: str | None,
    span: int,
    send: MemoryObjectSendStream[list[Entry]],
) -> None:
    with send:
        page: list[Entry] = []
        async for entry in entries(dst, src, lo, hi):
            page.append(entry)
            if len(page) >= span:
                await send.send(page)
                page = []
        if page:
            await send.send(page)


async def _join(
    receive: MemoryObjectReceiveStream[tuple[list[Entry], Pages]],
) -> AsyncGenerator[Pair, None]:
    async for chunk, pages in receive:
        with pages:
            async for pair in merge(_items(chunk), _flat(pages)):
                yield pair


async def _items(chunk: list[Entry]) -> AsyncIterator[Entry]:
    for entry in chunk:
        yield entry


async def _flat(pages: Pages) -> AsyncIterator[Entry]:
    async for page in pages:
        for entry in page:
            yield entry
