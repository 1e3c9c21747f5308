"""The producer: cuts a source into parts, each holding its bytes' share of the memory budget.

A part's buffer counts against the budget from the moment the producer starts
filling it until S3 acknowledges it (the uploader releases it). Its checksum is
computed here, once, from the bytes just read.

A source that delivers at its sender's pace (``source.grows``: an HTTP request
body) gets parts that grow with the bytes that arrived: the budget is taken in
steps of :data:`GROW_STEP` just before the bytes are read, not a whole part up
front (see ``_budget.py`` for why that cannot deadlock).

Any other stream of unknown length is probed before its first part is
reserved: up to ``probe`` bytes (the transfer's ``high_water_mark``, already
part of its memory bound) are read ahead, and a stream that ends within them
reserves and holds only what arrived, not a whole part. Under a shared budget
the probe is charged to the budget's ``heads`` half until the stream ends or
passes it. A source of known size
reserves no more than it has left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from .._budget import MemoryBudget, Reservation
from .._checksum import PartChecksum, compute
from .._config import TransferConfig
from .._errors import PartLimitError, SourceError, StreamxError
from .._limits import MAX_OBJECT_SIZE, MAX_PARTS, PartPlan, format_size
from .chunks import Buffer, ChunkSource, PartData
from .growing import GrowingBuffer
from .recycle import Spares
from .source import BytesSource, Source

GROW_STEP = 256 * 1024  # budget taken per step of a growing part: at most this much is unfilled


@dataclass(eq=False, slots=True)
class Part:
    number: int
    data: PartData
    checksum: PartChecksum | None
    reservation: Reservation = field(repr=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.data)


def plan_parts(
    config: TransferConfig, size: int | None, max_object_size: int = MAX_OBJECT_SIZE
) -> PartPlan:
    """The part sizes of an upload of ``size`` bytes (``None``: a stream of unknown length)."""
    if size is None:
        return PartPlan.for_stream(config.part_size, equal_parts=config.equal_parts)
    return PartPlan.for_known_size(size, config.part_size, max_object_size=max_object_size)


class WouldWait(Exception):
    """``next_part(wait=False)``: the budget cannot give the next part without waiting."""


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
        probe: int = 0,
        size_hint: int | None = None,
    ) -> None:
        self.source = source
        # the length the source must have: its own (a file's size when the upload
        # started) or the caller's size= for a stream
        self.expected_size = source.size if source.size is not None else size_hint
        # a stream's size becomes known once a probe sees its end; what it must hold
        # was still only the caller's word
        self.size_from_caller = source.size is None
        self.plan = plan
        self.budgets = budgets
        self.checksum_algorithm = checksum_algorithm
        self.equal_parts = equal_parts
        self.probe = probe
        self.next_number = 1
        self.bytes_read = 0
        self.eof = False
        self.live: set[Part] = set()  # parts read and not yet released
        self._waiting = False  # the producer waits for budget: don't hold any back
        self.grows = isinstance(source, ChunkSource) and source.grows
        # the budget shared with other transfers, whose pool of idle buffers parts use
        self._shared = budgets[1] if len(budgets) == 2 else None
        # acknowledged parts' buffers, refilled by the next parts (see recycle.py)
        self.spares = Spares(budgets[0], self._shared, plan.size_of(1), grows=self.grows)

    async def _read(self, n: int, into: bytearray | None = None) -> PartData:
        data: PartData = await self._call(self.source.read, n, into)
        return data

    async def _call(self, read: Any, *args: Any) -> Any:
        try:
            result = await read(*args)
            return result
        except StreamxError:
            raise
        except Exception as exc:
            raise SourceError(
                f"reading the source ({self.source.description}) failed: "
                f"{type(exc).__name__}: {exc}",
                part_number=self.next_number,
            ) from exc

    async def read_head(
        self, threshold: int, *, shared: bool, on_part: Callable[[], None] | None = None
    ) -> list[Part]:
        """Parts up to ``threshold`` bytes (the multipart threshold), or the whole source
        if it is smaller; ``on_part`` is called once a part is held.

        With a budget shared between transfers (``shared``) only the first part may
        wait for budget: a transfer that held part 1 while waiting for room for part 2
        could wait forever, every other transfer holding its own part 1 (hold and
        wait). Further head parts are taken only if the budget has room now;
        otherwise a source between ``part_size`` and ``multipart_threshold``
        goes multipart with what it has.
        """
        head: list[Part] = []
        total = 0
        while not self.eof:
            try:
                part = await self.next_part(wait=not head or not shared)
            except WouldWait:
                break
            if on_part is not None:
                on_part()
            if part is None:
                break
            head.append(part)
            total += part.size
            if total >= threshold:
                break
        return head

    def whole_in_memory(self, threshold: int) -> list[Part] | None:
        """A bytes-like source smaller than ``threshold`` as its one part, without taking
        budget: its memory is the caller's and goes to the sender as it is (no buffer, no
        copy), so there is nothing of streamx's to bound. ``None`` for any other source.

        Why: a small object from memory is the common case of a service (and of sync's
        small files); the general path's reservation costs it two trips through the
        event loop and about a fifth of its loop time.
        """
        source = self.source
        if not isinstance(source, BytesSource) or self.next_number != 1 or self.bytes_read:
            return None
        size = source.size
        if size is None or size >= threshold:
            return None
        part = self._finish(1, size, source.take(size), Reservation())
        assert part is not None  # only an empty part after the first is dropped
        return [part]

    async def next_part(self, *, wait: bool = True) -> Part | None:
        """The next part, or ``None`` when the source is exhausted.

        With ``wait=False`` it raises :class:`WouldWait` (having read nothing)
        instead of waiting for budget: a caller that already holds parts must
        not wait for more (hold and wait).
        """
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
        if self.source.size is not None:  # a small object or the last part: no more than is left
            size = max(0, min(size, self.source.size - self.bytes_read))
        if self.grows:
            grown, reservation = await self._grow(size)
            return self._finish(number, size, grown, reservation)
        head = Reservation()
        if number == 1 and self.probe and self.source.size is None:
            size = await self._probe(size, head)
        ended = head.any_held() and self.source.size is not None  # its head is its whole part
        buffer, reservation = (None, head) if ended else self._take_spare(size)
        try:
            if not ended and not all(reservation.held(b) for b in self.budgets):
                handed = await self._reserve(reservation, size, wait=wait)  # the budgets it lacks
                if buffer is None and handed is not None and len(handed) == size:
                    buffer = handed  # a finished part's buffer came with the grant
            data = await self._read(size, buffer)
        except BaseException:
            reservation.release()
            raise
        finally:
            if not ended:
                head.release()  # the part's own reservation now covers the probed bytes
        return self._finish(number, size, data, reservation)

    async def _reserve(
        self, reservation: Reservation, size: int, *, wait: bool
    ) -> bytearray | None:
        """Take ``size`` bytes of each budget not yet held; the idle buffer a shared budget
        handed over with its grant, if one did."""
        budgets = [b for b in self.budgets if not reservation.held(b)]
        if not wait:
            if not all(reservation.try_take(b, size) for b in budgets):
                reservation.release()
                raise WouldWait
            return None
        handed = None
        self._waiting = True
        try:
            for budget in budgets:
                if budget is self._shared and not self._gathers:
                    handed = await reservation.take_part(budget, size)
                else:  # the transfer's own window
                    await reservation.take(budget, size)
        finally:
            self._waiting = False
        return handed

    async def _probe(self, size: int, head: Reservation) -> int:
        """Peek at a stream's head; its part size if it ended there (``head`` then holds it).

        Under a shared budget the probed bytes are charged to its ``heads``
        half and to it; alone they are the bound's ``high_water_mark``. The
        whole probe is taken up front: taken in steps as bytes arrive, 1,000
        slow streams each got a few steps, filled the heads half between them
        and then waited on each other, only the oldest moving (the bench's 1,000
        slow 1 MiB streams: 4 MiB/s against 140 up front). A stream that ended gives its
        heads share back at once: its bytes are a part now, held by the budget.
        """
        if not getattr(self.source, "probes", False):
            return size
        peek = cast(ChunkSource, self.source).peek
        limit = min(size, self.probe)
        shared = self.budgets[1:]
        if any(size > b.limit - b.heads.limit for b in shared):
            return size  # a budget too small to split: no probe (parts must always fit)
        try:
            for budget in shared:
                await head.take(budget.heads, limit)
                await head.take(budget, limit)
            await self._call(peek, limit)
        except BaseException:
            head.release()
            raise
        if self.source.size is None:
            return size  # longer than the probe: a whole part it is
        head.shrink_to(self.source.size)
        for budget in shared:
            head.release_from(budget.heads)
        if not shared:
            head.release()
        return min(size, self.source.size)

    async def _grow(self, size: int) -> tuple[Buffer, Reservation]:
        """Fill a part as its bytes arrive, taking budget one step ahead of them."""
        part = GrowingBuffer(size, self.budgets, self)  # see growing.py
        read_some = cast(ChunkSource, self.source).read_some
        for budget in self.budgets:  # the largest part so far sets the reserve
            budget.join_growers(self, size)
        try:
            while part.room:
                step = min(GROW_STEP, part.room)
                self._waiting = True
                try:
                    await part.reserve(step)
                finally:
                    self._waiting = False
                target = part.got + step
                while part.got < target:
                    piece = await self._call(read_some, target - part.got)
                    if not piece:
                        break
                    part.write(piece)
                if part.got < target:  # the end of the stream
                    part.reservation.give_back(target - part.got)
                    break
        except BaseException:
            part.free()
            raise
        return part.view(), part.reservation

    def _finish(
        self, number: int, size: int, data: PartData, reservation: Reservation
    ) -> Part | None:
        self.bytes_read += len(data)
        if len(data) < size or (
            self.source.size is not None and self.bytes_read >= self.source.size
        ):
            self.eof = True
        try:
            self._check_length(self.eof)
        except BaseException:
            reservation.release()
            raise
        if not data and number > 1:
            reservation.release()
            return None
        checksum = compute(self.checksum_algorithm, data) if self.checksum_algorithm else None
        part = Part(number, data, checksum, reservation)
        self.live.add(part)
        self.next_number += 1
        return part

    def _check_length(self, ended: bool) -> None:
        """A source that ends short of its known size, or a stream that passes ``size=``,
        fails before its bytes are sent: stored, they would be another object than the
        one planned, reported as a success."""
        expected = self.expected_size
        if expected is None:
            return
        if self.size_from_caller and self.bytes_read > expected:
            raise SourceError(
                f"the stream yielded more than size={expected} bytes ({self.bytes_read} so "
                "far); pass its exact length as size=, or leave size out for a stream of "
                "unknown length",
                part_number=self.next_number,
            )
        if ended and self.bytes_read < expected:
            what = (
                f"size={expected} was given"
                if self.size_from_caller
                else f"it had {expected} bytes when the upload started (it shrank, or was "
                "truncated, while being read)"
            )
            raise SourceError(
                f"the source ({self.source.description}) ended after {self.bytes_read} bytes, "
                f"but {what}; the upload was not completed",
                part_number=self.next_number,
            )

    def resume_at(self, number: int, offset: int) -> None:
        """Continue with part ``number``; the source has been moved to byte ``offset``."""
        self.next_number = number
        self.bytes_read = offset
        if self.source.size is not None and offset >= self.source.size:
            self.eof = True

    def release(self, part: Part, *, sent: bool = True) -> None:
        """Give back the part's budget and drop its buffer (``sent``: the store acknowledged
        it, so no request reads it any more; else it is never reused).

        The buffer goes with the budget: a task that still refers to the part
        (an idle uploader's loop variable) must not keep its bytes alive. An
        acknowledged buffer is kept for this transfer's next part or handed to the
        shared budget's pool for another transfer's (see ``recycle.py``).
        """
        data, part.data = part.data, b""
        self.live.discard(part)
        if not sent:
            part.reservation.release()
            return
        following = None if self.eof else self.plan.size_of(min(self.next_number, MAX_PARTS))
        if not self.spares.keep(data, part.reservation, next_size=following, waiting=self._waiting):
            self.spares.park(data, part.reservation)

    @property
    def _gathers(self) -> bool:
        """The source's parts are its chunks (see ``_gathered.py``): no buffer to refill."""
        return bool(getattr(self.source, "gathers", False))

    def _take_spare(self, size: int) -> tuple[bytearray | None, Reservation]:
        return self.spares.take(size, pooled=not self.grows and not self._gathers)

    def release_all(self) -> None:
        self.eof = True  # the transfer is over: nothing is held back for a next part
        if self.grows:
            for budget in self.budgets:
                budget.leave_growers(self)
        self.spares.park_all()  # acknowledged: another transfer may refill them
        for part in list(self.live):  # not acknowledged (the transfer failed): never reused
            self.release(part, sent=False)
