"""Delivered ranges' buffers, refilled by the next ranges of the same download.

Why: a new range buffer costs its zero-fill and a page fault per 4 KiB on the event
loop's thread (``bytearray(8 MiB)``: 2-3 ms; a third of the loop's time in a 1 GiB
``download_to`` from the benchmark source), and the receiving thread's copy then
touches cold memory. A buffer the sink or the file is done with goes back to the
dispatcher *with its reservation* (so what it holds stays inside the download's
window and the engine's budget) and is lent to the next range of the same size.

Rules that keep this safe:

- only a ``bytearray`` nothing else refers to is kept: a sink that kept the bytes
  (a list of chunks, a view, a transport's buffer) holds a reference, and such a
  buffer is left to the garbage collector (so is one a worker thread still holds for
  a moment after its job: that costs a reuse, nothing more);
- while the dispatcher waits for budget, the kept buffer's memory is what it waits
  for: the reservation is released, and the one buffer is held loose (outside the
  budget, at most one per download) for the range the dispatcher then reserves;
- nothing is kept once every range has been dispatched: a buffer of a whole range then
  goes, with its share of the engine's budget, to that budget's pool of idle buffers
  (:meth:`~streamx.MemoryBudget.park`), where the next transfer's ranges or parts find
  it (:meth:`unpark`), as uploads do (:mod:`streamx.upload.recycle`).
"""

from __future__ import annotations

import sys

from .._budget import MemoryBudget, Reservation


class RangeBuffers:
    """The kept ``(buffer, reservation)`` pairs of one download, and the buffers lent."""

    __slots__ = ("_kept", "_lent", "_loose", "dispatching", "part_size", "shared", "waiting")

    def __init__(self, shared: MemoryBudget | None = None, part_size: int = 0) -> None:
        self.shared = shared  # the engine's budget, whose pool gets the buffers at the end
        self.part_size = part_size  # only buffers of a whole range are worth pooling
        self._kept: list[tuple[bytearray, Reservation]] = []
        self._loose: bytearray | None = None  # kept while the dispatcher waited for budget
        self._lent: dict[int, bytearray] = {}  # id(reservation) -> the buffer that came with it
        self.waiting = False  # the dispatcher waits for budget
        self.dispatching = True  # ranges remain to be dispatched

    def keep(self, data: object, reservation: Reservation) -> None:
        """Keep a delivered range's buffer and reservation for a later range, or release the
        reservation. The caller must hold exactly one reference to ``data`` (its own local)
        and call this directly: the count below is of the references on this call's path."""
        # 3: ``data`` here, the caller's local, and getrefcount's own argument
        if not (isinstance(data, bytearray) and sys.getrefcount(data) <= 3):
            reservation.release()
        elif not self.dispatching:
            self._park(data, reservation)
        elif self.waiting:  # the dispatcher needs the memory now: the buffer goes loose
            reservation.release()
            if self._loose is None:
                self._loose = data
        else:
            self._kept.append((data, reservation))

    def take(self, size: int) -> Reservation | None:
        """A kept reservation whose buffer (of ``size`` bytes) is lent to the range it is
        given to (:meth:`lent`); none if no kept buffer fits."""
        while self._kept:
            data, reservation = self._kept.pop()
            if len(data) == size:
                self._lent[id(reservation)] = data
                return reservation
            reservation.release()  # a short last range's buffer: of no use
        return None

    def unpark(self, size: int) -> Reservation | None:
        """A reservation holding the engine budget's share of an idle buffer of ``size``
        bytes from that budget's pool, the buffer lent with it (the window's share is still
        to be taken); none if the pool has no such buffer."""
        found = self.shared.unpark(size) if self.shared is not None else None
        if found is None:
            return None
        reservation = Reservation()
        reservation.adopt(self.shared, found[1])  # type: ignore[arg-type]
        self._lent[id(reservation)] = found[0]
        return reservation

    def _park(self, data: bytearray, reservation: Reservation) -> None:
        """The download is done with ``data``: to the engine's pool with its share of that
        budget (a whole range's only), the rest of the reservation released."""
        if self.shared is None or len(data) != self.part_size:
            reservation.release()
        else:
            self.shared.park_held(data, reservation)

    def adopt(self, reservation: Reservation, size: int) -> None:
        """Lend the loose buffer, if it is of ``size`` bytes, with a new ``reservation`` that
        has no buffer lent yet."""
        loose, self._loose = self._loose, None
        if loose is not None and len(loose) == size and id(reservation) not in self._lent:
            self._lent[id(reservation)] = loose

    def lent(self, reservation: Reservation) -> bytearray | None:
        """The buffer lent with ``reservation`` (once), if any."""
        return self._lent.pop(id(reservation), None)

    def release_all(self) -> None:
        """Give back every kept reservation (the download ends, however it ends)."""
        self.dispatching = False
        kept, self._kept = self._kept, []
        self._lent.clear()
        self._loose = None
        for data, reservation in kept:
            self._park(data, reservation)
