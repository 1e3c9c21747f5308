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
- nothing is kept once every range has been dispatched.
"""

from __future__ import annotations

import sys

from .._budget import Reservation


class RangeBuffers:
    """The kept ``(buffer, reservation)`` pairs of one download, and the buffers lent."""

    __slots__ = ("_kept", "_lent", "_loose", "dispatching", "waiting")

    def __init__(self) -> None:
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
        if not (self.dispatching and isinstance(data, bytearray) and sys.getrefcount(data) <= 3):
            reservation.release()
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

    def adopt(self, reservation: Reservation, size: int) -> None:
        """Lend the loose buffer, if it is of ``size`` bytes, with a new ``reservation``."""
        loose, self._loose = self._loose, None
        if loose is not None and len(loose) == size:
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
        for _, reservation in kept:
            reservation.release()
