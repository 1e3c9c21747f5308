"""Read-ahead for chunked sources: up to ``high_water_mark`` bytes beyond the parts in flight.

While every part of the window is queued or in flight, the producer cannot
start a new part; a pump task keeps reading the source into a small staging
queue until ``high_water_mark`` bytes are staged (plus at most one chunk),
so a slow or bursty source (an HTTP body, a pipe) keeps flowing and the next
part fills at memory speed when the window frees. When the staging queue is
full, the pump stops reading, and backpressure reaches the source.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio

Chunk = bytes | memoryview


class ReadAhead:
    def __init__(self, fetch: Callable[[], Awaitable[Chunk | None]], limit: int) -> None:
        self._fetch = fetch
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._staged = 0
        self._done = False
        self._error: BaseException | None = None
        self._data = anyio.Event()
        self._space = anyio.Event()

    @property
    def staged(self) -> int:
        return self._staged

    async def pump(self) -> None:
        try:
            while True:
                while self._staged >= self._limit:
                    self._space = anyio.Event()
                    await self._space.wait()
                chunk = await self._fetch()
                if chunk is None:
                    return
                # staged chunks outlive the read: own them (the source may reuse buffers)
                owned = chunk if isinstance(chunk, bytes) else bytes(chunk)
                self._chunks.append(owned)
                self._staged += len(owned)
                self._data.set()
        except Exception as exc:
            self._error = exc
        finally:
            self._done = True
            self._data.set()

    async def next_chunk(self) -> Chunk | None:
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise self._error
                return None
            self._data = anyio.Event()
            await self._data.wait()
        chunk = self._chunks.popleft()
        self._staged -= len(chunk)
        self._space.set()
        return chunk
