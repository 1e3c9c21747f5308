"""Read-ahead for chunked sources: up to ``high_water_mark`` bytes beyond the parts in flight.

While every part of the window is queued or in flight, the producer cannot
start a new part; a pump task keeps reading the source into a small staging
queue until ``high_water_mark`` bytes are staged (plus at most one chunk),
so a slow or bursty source (an HTTP body, a pipe) keeps flowing and the next
part fills at memory speed when the window frees. When the staging queue is
full, the pump stops reading, and backpressure reaches the source.

Under a budget shared between transfers (an :class:`~streamx.Engine`'s),
staged bytes are charged to its ``heads`` half and to it, but only when
they have room right now (:meth:`MemoryBudget.try_acquire`: waiters go first);
when they have none, the pump stages one uncharged chunk and parks until the
producer has taken it. The pump starts only once the transfer has its first
part (:meth:`go`; before, the producer reads the source itself): staged bytes
are then only ever held by a transfer waiting for a part, parts always have
the other half of the budget and finish without waiting on anything, so
read-ahead cannot deadlock the transfers that share the budget, and 1,000
waiting uploads hold at most a chunk each beyond it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from .._budget import MemoryBudget

Chunk = bytes | memoryview


class ReadAhead:
    def __init__(
        self,
        fetch: Callable[[], Awaitable[Chunk | None]],
        limit: int,
        *,
        budget: MemoryBudget | None = None,
    ) -> None:
        self._fetch = fetch
        self._limit = limit
        self._budget = budget
        self._chunks: deque[tuple[bytes, int]] = deque()  # (chunk, bytes charged for it)
        self._staged = 0
        self._charged = 0
        self._parked = False  # the budget had no room: stage no more until drained
        self._done = False
        self._error: BaseException | None = None
        self._data = anyio.Event()
        self._space = anyio.Event()
        self._go = anyio.Event()
        if budget is None:
            self._go.set()

    def go(self) -> None:
        """The transfer holds its first part: start reading ahead."""
        self._go.set()

    @property
    def staged(self) -> int:
        return self._staged

    async def pump(self) -> None:
        await self._go.wait()
        try:
            while True:
                while self._staged >= self._limit or self._parked:
                    self._space = anyio.Event()
                    await self._space.wait()
                chunk = await self._fetch()
                if chunk is None:
                    return
                # staged chunks outlive the read: own them (the source may reuse buffers)
                owned = chunk if isinstance(chunk, bytes) else bytes(chunk)
                charged = 0
                if self._budget is not None:
                    if self._charge(len(owned)):
                        charged = len(owned)
                    else:
                        self._parked = True
                self._chunks.append((owned, charged))
                self._staged += len(owned)
                self._data.set()
        except Exception as exc:
            self._error = exc
        finally:
            self._done = True
            self._data.set()

    async def next_chunk(self) -> Chunk | None:
        if not self._go.is_set():  # no pump yet: read directly
            return await self._fetch()
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise self._error
                return None
            self._data = anyio.Event()
            await self._data.wait()
        chunk, charged = self._chunks.popleft()
        self._staged -= len(chunk)
        self._uncharge(charged)
        if not self._chunks:
            self._parked = False  # drained: the pump may try the budget again
        self._space.set()
        return chunk

    def _charge(self, n: int) -> bool:
        assert self._budget is not None
        heads = self._budget.heads
        if not heads.try_acquire(n):
            return False
        if not self._budget.try_acquire(n):
            heads.release(n)
            return False
        self._charged += n
        return True

    def _uncharge(self, n: int) -> None:
        if n and self._budget is not None:
            self._charged -= n
            self._budget.release(n)
            self._budget.heads.release(n)

    def release(self) -> None:
        """Give back what staged chunks hold of the budget (the transfer is over)."""
        chunks, self._chunks = self._chunks, deque()
        self._staged = 0
        for _, charged in chunks:
            self._uncharge(charged)
