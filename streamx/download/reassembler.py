"""The reassembler: ranges finish in any order, a sink needs them in order.

Fetchers hand over finished ranges by index; :meth:`Reassembler.run` delivers
them to the sink strictly in index order and releases each range's memory
once the sink has taken it. The window is bounded upstream: the dispatcher
reserves memory for range *n* before range *n + 1*, so the range the sink is
waiting for always holds its reservation and the window can never deadlock,
even when several transfers share one :class:`~streamx.MemoryBudget`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from .._budget import Reservation
from .buffers import RangeBuffers

Deliver = Callable[[bytearray], Awaitable[None]]


class Reassembler:
    """Holds finished ranges until their turn; delivers them in order."""

    def __init__(
        self, deliver: Deliver, *, first_index: int = 0, buffers: RangeBuffers | None = None
    ) -> None:
        self._deliver = deliver
        self._buffers = buffers  # where a delivered range's buffer goes (else: released)
        self._next = first_index
        self._ready: dict[int, tuple[bytearray, Reservation]] = {}
        self._changed = anyio.Event()
        self.delivered_bytes = 0

    @property
    def waiting(self) -> int:
        """Ranges fetched and waiting for an earlier one."""
        return len(self._ready)

    def put(self, index: int, data: bytearray, reservation: Reservation) -> None:
        if index < self._next or index in self._ready:  # pragma: no cover - a caller bug
            raise RuntimeError(f"range {index} was handed over twice")
        self._ready[index] = (data, reservation)
        self._changed.set()

    async def run(self, count: int, on_delivered: Callable[[int], Awaitable[None]]) -> None:
        """Deliver ranges ``first_index .. count - 1`` in order, then return."""
        while self._next < count:
            while self._next not in self._ready:
                await self._changed.wait()
                self._changed = anyio.Event()
            data, reservation = self._ready.pop(self._next)
            n = len(data)
            try:
                await self._deliver(data)
            except BaseException:
                reservation.release()
                raise
            if self._buffers is not None:
                self._buffers.keep(data, reservation)  # a buffer the sink let go is reused
            else:
                reservation.release()
            del data
            self._next += 1
            self.delivered_bytes += n
            await on_delivered(n)

    def release_all(self) -> None:
        """Give back the memory of ranges never delivered (after a failure)."""
        ready, self._ready = self._ready, {}
        for _, reservation in ready.values():
            reservation.release()
