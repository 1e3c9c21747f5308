"""One S3 part being filled from PATCH bodies, its memory counted against budgets.

The bytes go into an anonymous mapping of the part's size: its pages cost memory
only once bytes land in them (a PATCH of 1 KiB holds about 1 KiB, not a part),
each byte is copied once, and closing it unmaps it. Every byte is first taken
from the endpoint's :class:`~streamx.MemoryBudget` (and the engine's shared one,
if any) as a *growing* part, so many PATCHes together hold at most the budget:
when it is spent the bodies are not read and TCP stops the clients; the oldest
PATCH can always finish its part, so they cannot deadlock (see ``_budget.py``).
"""

from __future__ import annotations

import mmap

from ..._budget import MemoryBudget, Reservation

_FLAGS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS if hasattr(mmap, "MAP_ANONYMOUS") else 0


class PartBuffer:
    """Part bytes ``[0, got)``; the first ``skip`` are left for the pieces stored earlier."""

    def __init__(self, size: int, skip: int, budgets: list[MemoryBudget], token: object) -> None:
        self.size = size
        self.skip = skip
        self.got = skip
        self.budgets = budgets
        self.token = token
        self.reservation = Reservation()
        self.buf = mmap.mmap(-1, size, flags=_FLAGS) if _FLAGS else mmap.mmap(-1, size)

    @property
    def room(self) -> int:
        return self.size - self.got

    async def _take(self, n: int) -> None:
        for budget in self.budgets:
            await self.reservation.grow(budget, self.token, n)

    async def add(self, data: memoryview) -> None:
        """Append ``data`` (at most :attr:`room` bytes), once the budgets allow it."""
        await self._take(len(data))
        self.buf[self.got : self.got + len(data)] = data
        self.got += len(data)

    async def put_front(self, data: bytes) -> None:
        """The stored pieces' bytes, into the room left for them."""
        if len(data) != self.skip:
            raise ValueError("the pieces do not fill the room left for them")
        await self._take(len(data))
        self.buf[: self.skip] = data
        self.skip = 0

    def view(self, start: int = 0) -> memoryview:
        return memoryview(self.buf)[start : self.got]

    def free(self) -> None:
        self.reservation.release()
        try:
            self.buf.close()
        except BufferError:  # a view is still alive somewhere: the mapping goes with it
            pass
