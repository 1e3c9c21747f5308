"""Acknowledged part buffers, refilled by the next parts instead of allocating new ones.

Why: a recycled buffer skips the allocation, zero-fill and page faults of a new
one (about an eighth of the CPU of a file upload; on a VM whose page faults are
slow, 64 fresh 8 MiB parts took 0.4-1.7 s of CPU), and stays inside the budget.
A transfer keeps its acknowledged buffers for its own next parts: one, and more
(up to what its own window holds) only while the shared budget is uncrowded, so
a lone transfer recycles its whole window and 64 at once do not hoard idle
buffers. Any other acknowledged buffer goes to the shared budget's pool
(:meth:`~streamx.MemoryBudget.park`) for another transfer's parts.
"""

from __future__ import annotations

import sys

from .._budget import MemoryBudget, Reservation


class Spares:
    """A transfer's kept buffers (``window``: its own budget) and the pool of ``shared``."""

    def __init__(
        self,
        window: MemoryBudget,
        shared: MemoryBudget | None,
        first_part: int,
        *,
        grows: bool,
    ) -> None:
        self._kept: list[tuple[bytearray, Reservation]] = []
        # a growing part (an HTTP body's) never reuses a whole-part buffer
        self._max = 0 if grows else max(1, window.limit // max(1, first_part))
        self.shared = shared

    def keep(
        self, data: object, reservation: Reservation, *, next_size: int | None, waiting: bool
    ) -> bool:
        """Keep an acknowledged part's buffer and reservation for this transfer's next part
        of ``next_size`` bytes (``None``: there is none); false if not kept (the caller then
        parks it: :meth:`park`). Nothing is kept while the producer is ``waiting`` for
        budget."""
        if (
            len(self._kept) < self._max
            and not waiting
            and (not self._kept or self.shared is None or not _crowded(self.shared))
            and isinstance(data, bytearray)
            and len(data) == next_size
        ):
            self._kept.append((data, reservation))
            return True
        return False

    def park(self, data: object, reservation: Reservation) -> None:
        """Hand an acknowledged buffer, with its share of the shared budget, to that budget's
        pool; release the rest. Only a ``bytearray`` nothing else refers to: a view of it
        still alive (a sending thread that outlived its request, a caller's reference)
        keeps a reference through its buffer export, and such a buffer is dropped. The
        caller must hold exactly one reference (its own local) and call this directly: the
        count below is of the references on this call's path."""
        shared = self.shared
        # 3: ``data`` here, the caller's local, and getrefcount's own argument
        if shared is None or not isinstance(data, bytearray) or sys.getrefcount(data) > 3:
            reservation.release()
            return
        shared.park_held(data, reservation)

    def take(self, size: int, *, pooled: bool) -> tuple[bytearray | None, Reservation]:
        """A buffer of ``size`` bytes to refill: this transfer's own (holding every budget),
        or, if ``pooled``, one from the shared budget's pool (holding that budget only), or
        none."""
        while self._kept:
            buffer, reservation = self._kept.pop()
            if len(buffer) == size:
                return buffer, reservation
            reservation.release()  # the parts have grown: these buffers are of no use
        reservation = Reservation()
        if self.shared is not None and pooled:
            found = self.shared.unpark(size)
            if found is not None:
                reservation.adopt(self.shared, found[1])
                return found[0], reservation
        return None, reservation

    def park_all(self) -> None:
        """The transfer is over: its kept buffers go to the pool (another transfer may refill
        them)."""
        kept, self._kept = self._kept, []
        while kept:
            buffer, reservation = kept.pop()
            self.park(buffer, reservation)


def _crowded(budget: MemoryBudget) -> bool:
    """Others wait for the shared budget, or more than half of it is held."""
    return bool(budget.waiting or budget.heads.waiting or 2 * budget.in_use > budget.limit)


__all__ = ["Spares"]
