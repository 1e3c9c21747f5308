"""One S3 part being filled from PATCH bodies, its memory counted against budgets.

A :class:`~streamx.upload.growing.GrowingBuffer` (the upload pipeline's growing
part): its pages cost memory only once bytes land in them, and every byte is
first taken from the endpoint's :class:`~streamx.MemoryBudget` (and the engine's
shared one) as a *growing* part, so many PATCHes together hold at most the
budget: when it is spent the bodies are not read and TCP stops the clients; the
oldest PATCH can always finish its part, so they cannot deadlock (``_budget.py``).
What tus adds: room left at the front for the pieces stored by earlier PATCHes.
"""

from __future__ import annotations

from ..._budget import MemoryBudget
from ...upload.growing import GrowingBuffer


class PartBuffer(GrowingBuffer):
    """Part bytes ``[0, got)``; the first ``skip`` are left for the pieces stored earlier."""

    def __init__(self, size: int, skip: int, budgets: list[MemoryBudget], token: object) -> None:
        super().__init__(size, budgets, token, start=skip)
        self.skip = skip

    async def add(self, data: memoryview) -> None:
        """Append ``data`` (at most :attr:`room` bytes), once the budgets allow it."""
        await self.reserve(len(data))
        self.write(data)

    async def put_front(self, data: bytes) -> None:
        """The stored pieces' bytes, into the room left for them."""
        if len(data) != self.skip:
            raise ValueError("the pieces do not fill the room left for them")
        await self.reserve(len(data))
        self.write(data, at=0)
        self.skip = 0
