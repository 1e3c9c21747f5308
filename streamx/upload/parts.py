"""The producer: cuts a source into parts, each holding its bytes' share of the memory budget.

A part's buffer counts against the budget from the moment the producer starts
filling it until S3 acknowledges it (the uploader releases it). Its checksum is
computed here, once, from the bytes just read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._budget import MemoryBudget, Reservation
from .._checksum import PartChecksum, compute
from .._errors import PartLimitError, SourceError, StreamxError
from .._limits import MAX_PARTS, PartPlan, format_size
from .source import Buffer, Source


@dataclass(eq=False, slots=True)
class Part:
    number: int
    data: Buffer
    checksum: PartChecksum | None
    reservation: Reservation = field(repr=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.data)


class PartProducer:
    """Reads parts from ``source`` in order; ``eof`` turns true after the last one."""

    def __init__(
        self,
        source: Source,
        plan: PartPlan,
        budgets: list[MemoryBudget],
        *,
        checksum_algorithm: str | None,
        equal_parts: bool,
    ) -> None:
        self.source = source
        self.plan = plan
        self.budgets = budgets
        self.checksum_algorithm = checksum_algorithm
        self.equal_parts = equal_parts
        self.next_number = 1
        self.bytes_read = 0
        self.eof = False
        self.live: set[Part] = set()  # parts read and not yet released

    async def _read(self, n: int) -> Buffer:
        try:
            return await self.source.read(n)
        except StreamxError:
            raise
        except Exception as exc:
            raise SourceError(
                f"reading the source ({self.source.description}) failed: "
                f"{type(exc).__name__}: {exc}",
                part_number=self.next_number,
            ) from exc

    async def next_part(self) -> Part | None:
        """The next part, or ``None`` when the source is exhausted."""
        if self.eof:
            return None
        number = self.next_number
        if number > MAX_PARTS:
            extra = await self._read(1)
            if not extra:
                self.eof = True
                return None
            hint = (
                "use a larger part_size, pass size= with the expected length, or drop equal_parts"
                if self.equal_parts
                else "S3 objects cannot exceed 5 TiB"
            )
            raise PartLimitError(
                f"the stream is longer than {MAX_PARTS:,} parts can hold "
                f"({format_size(self.plan.capacity)} with these part sizes); {hint}",
                part_number=number,
            )
        size = self.plan.size_of(number)
        reservation = Reservation()
        try:
            for budget in self.budgets:
                await reservation.take(budget, size)
            data = await self._read(size)
        except BaseException:
            reservation.release()
            raise
        self.bytes_read += len(data)
        if len(data) < size or (
            self.source.size is not None and self.bytes_read >= self.source.size
        ):
            self.eof = True
        if not data and number > 1:
            reservation.release()
            return None
        checksum = compute(self.checksum_algorithm, data) if self.checksum_algorithm else None
        part = Part(number, data, checksum, reservation)
        self.live.add(part)
        self.next_number += 1
        return part

    def resume_at(self, number: int, offset: int) -> None:
        """Continue with part ``number``; the source has been moved to byte ``offset``."""
        self.next_number = number
        self.bytes_read = offset
        if self.source.size is not None and offset >= self.source.size:
            self.eof = True

    def release(self, part: Part) -> None:
        """Give back the part's budget and drop its buffer.

        The buffer goes with the budget: a task that still refers to the part
        (an idle uploader's loop variable) must not keep its bytes alive.
        """
        part.reservation.release()
        part.data = b""
        self.live.discard(part)

    def release_all(self) -> None:
        for part in list(self.live):
            self.release(part)
