"""A part that grows as its bytes arrive: an anonymous mapping, its budget taken step by step.

Used by the producer for sources that deliver at their sender's pace (an HTTP
request body: :meth:`~streamx.upload.parts.PartProducer._grow`) and by the tus
server for the part a PATCH body fills (``streamx/web/tus/_buffer.py``).

The bytes go into an anonymous mapping of the part's size: its pages cost memory
only once bytes land in them (a 1 KiB body holds about 1 KiB, not a part), each
byte is copied once, with none of the reallocation copies (and heap
fragmentation) of a growing ``bytearray``, and closing it unmaps it. The budget
is taken as a *growing* part (:meth:`~streamx._budget.Reservation.grow`) before
the bytes are copied in, so many growing parts together hold at most the budget
and the oldest can always finish its part (see ``_budget.py``). The caller
registers ``token`` with :meth:`~streamx.MemoryBudget.join_growers` first.
"""

from __future__ import annotations

import mmap

from .._budget import MemoryBudget, Reservation

_MAP_FLAGS = (
    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    if hasattr(mmap, "MAP_ANONYMOUS")
    else 0  # Windows: mmap(-1, size) is anonymous already
)


class GrowingBuffer:
    """Bytes ``[start, got)`` of a part of ``size`` bytes, counted against ``budgets``."""

    def __init__(
        self, size: int, budgets: list[MemoryBudget], token: object, *, start: int = 0
    ) -> None:
        self.size = size
        self.got = start
        self.budgets = budgets
        self.token = token
        self.reservation = Reservation()
        self.buf = mmap.mmap(-1, size, flags=_MAP_FLAGS) if _MAP_FLAGS else mmap.mmap(-1, size)

    @property
    def room(self) -> int:
        return self.size - self.got

    async def reserve(self, n: int) -> None:
        """Take ``n`` more bytes of every budget (waits while they are spent)."""
        for budget in self.budgets:
            await self.reservation.grow(budget, self.token, n)

    def write(self, data: bytes | bytearray | memoryview, at: int | None = None) -> None:
        """Copy ``data`` in at ``at`` (default: the end, which moves on)."""
        if at is None:
            self.buf[self.got : self.got + len(data)] = data
            self.got += len(data)
        else:
            self.buf[at : at + len(data)] = data

    def view(self, start: int = 0) -> memoryview:
        return memoryview(self.buf)[start : self.got]

    def free(self) -> None:
        """Give the budget back and unmap the bytes (once every view is gone)."""
        self.reservation.release()
        try:
            self.buf.close()
        except BufferError:  # a view is still alive somewhere: the mapping goes with it
            pass
