"""MemoryBudget: a fair, byte-counting semaphore.

Each transfer has one for its own window (``part_size × queue_size``); an
:class:`~streamx.Engine` may also share one across every transfer in the
process, so 1,000 concurrent uploads from a web app cannot hold more than the
budget, and a slow upstream pushes back on every producer.

Waiters are served in FIFO order, so a large request is not starved by small
ones. A request larger than the whole budget is clamped to the budget (it then
waits until the budget is entirely free).

Growing parts. A part read from a source that delivers at its sender's pace (an
HTTP request body) takes its budget in steps as its bytes arrive
(:meth:`MemoryBudget.acquire_growing`) instead of a whole part up front, so a
client that sends 10 bytes holds 10 bytes (plus one step), not 8 MiB. Steps
alone could deadlock: many half-filled parts that hold the whole budget, each
waiting for more. So the transfers that grow parts are kept in arrival order;
the oldest (the *finisher*) may use the whole budget, every other one only what
leaves a full part (the largest registered part size) free. Whatever the clients
do, the finisher can always complete its part; parts complete, are sent and
release their bytes, and the next oldest becomes the finisher. A finisher that
stops sending still blocks nobody but the growers (who keep the rest of the
budget); the web adapters cut such a client off with their body-rate limits.

An :class:`~streamx.Engine` shares one by default, sized by
:func:`default_memory_budget`: ``min(128 MiB, RAM / 8)``, but never less than
the engine's own :attr:`TransferConfig.memory_bound` (so a lone transfer
still gets its whole window). 128 MiB is sixteen 8 MiB parts in flight (two
default windows): on loopback one upload already moves about 2 GiB/s,
and 64 concurrent uploads of 16 MiB then peak at about a quarter of a GiB of
RSS (interpreter and HTTP stack included) instead of over a GiB. What other
streams may hold while they wait for a part (a probed head, read-ahead) is
charged to :attr:`MemoryBudget.heads`, at most half of it.

Idle part buffers. A transfer that ends hands its acknowledged part buffers to
the budget it shares (:meth:`MemoryBudget.park`), and the next transfer's part
takes one (:meth:`MemoryBudget.unpark`) instead of a new ``bytearray``: that
spares the allocation, the zero-fill and the page faults of a fresh part (on a
VM whose page faults are slow, 64 fresh 8 MiB parts took 0.4–1.7 s of CPU). A
parked buffer's bytes stay counted against the limit (:attr:`parked`, beside
:attr:`in_use`), so parked and held bytes together never pass it; and a parked
buffer never makes anybody wait: whenever a request would not fit, parked
buffers are dropped first, before it is queued, and nothing is parked or taken
from the pool while anybody waits. Then a finished part's buffer goes instead
with the bytes its release grants to a waiting part of its size
(:meth:`MemoryBudget.acquire_part`), the grant and the buffer together. A
buffer is handed on only when no view of it is alive any more (a sending thread
that outlived its request keeps one; see ``upload/parts.py``), so nothing still
reads it.
"""

from __future__ import annotations

import os
from collections import deque
from types import TracebackType
from typing import Any, Literal, overload

import anyio

from ._errors import ConfigError

MiB = 1024 * 1024
DEFAULT_BUDGET_CAP = 128 * MiB
DEFAULT_BUDGET_RAM_FRACTION = 8


def default_memory_budget(floor: int = 0) -> int:
    """An engine's default budget: ``min(128 MiB, RAM / 8)``, at least ``floor`` bytes."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: no RAM figure
        ram = 8 * DEFAULT_BUDGET_CAP * DEFAULT_BUDGET_RAM_FRACTION
    return max(floor, min(DEFAULT_BUDGET_CAP, ram // DEFAULT_BUDGET_RAM_FRACTION))


class MemoryBudget:
    """At most ``limit`` bytes held at once by the transfers that share it."""

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"a memory budget must be a positive number of bytes, not {limit!r}")
        self._limit = limit
        self._in_use = 0
        self._peak = 0
        self._waiters: deque[tuple[int, anyio.Event, object]] = deque()
        self._growers: dict[object, int] = {}  # in arrival order: token -> its part size
        self._heads: MemoryBudget | None = None
        self._parked: list[tuple[bytearray, int]] = []  # idle buffers; their bytes count
        self._parked_bytes = 0
        # waiters for a part's bytes (acquire_part) -> the buffer handed to them on the grant
        self._part_waiters: dict[anyio.Event, bytearray | None] = {}

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def heads(self) -> MemoryBudget:
        """Half the budget, for stream heads and read-ahead (see upload/parts.py, readahead.py).

        Bytes a transfer may hold while it waits for a part (a probed stream
        head, staged read-ahead) are charged here and to this budget. They
        never hold more than half, so parts (which finish without waiting on
        anything) always have the other half, and no set of transfers can
        wait on each other for ever.
        """
        if self._heads is None:
            self._heads = MemoryBudget(max(1, self._limit // 2))
        return self._heads

    @property
    def in_use(self) -> int:
        """Bytes held by transfers now (idle buffers kept for reuse: :attr:`parked`; the two
        together never pass the limit)."""
        return self._in_use - self._parked_bytes

    @property
    def peak(self) -> int:
        """The most bytes ever held at once."""
        return self._peak

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def clamp(self, n: int) -> int:
        return min(n, self._limit)

    @property
    def parked(self) -> int:
        """Bytes of idle part buffers kept for reuse (within the limit, beside :attr:`in_use`)."""
        return self._parked_bytes

    def park(self, buffer: bytearray, n: int) -> bool:
        """Keep ``buffer`` for a later part; its ``n`` bytes, already held by the caller,
        stay held by the budget. While parts wait for bytes, the bytes are released at once
        and the buffer goes with the grant they make to a part of its size, if any (true:
        the bytes are taken care of either way). Refused (false: the caller releases them)
        when the pool would hold over half the limit."""
        if self._waiters:
            for event, size in self._give_back(n):
                if self._part_waiters.get(event, buffer) is None and size == len(buffer):
                    self._part_waiters[event] = buffer
                    break
            return True
        if self._parked_bytes + n > self._limit // 2:
            return False
        self._parked.append((buffer, n))
        self._parked_bytes += n
        return True

    def park_held(self, buffer: bytearray, reservation: Reservation) -> None:
        """:meth:`park` ``buffer`` with the bytes ``reservation`` holds of this budget;
        the rest of the reservation is released."""
        n = reservation.detach(self)
        reservation.release()
        if n and not self.park(buffer, n):
            self.release(n)

    def unpark(self, size: int) -> tuple[bytearray, int] | None:
        """An idle buffer of ``size`` bytes and the bytes it holds (now the caller's),
        or ``None`` (none of that size, or somebody waits: they come first)."""
        if self._waiters:
            return None
        for i in range(len(self._parked) - 1, -1, -1):
            buffer, n = self._parked[i]
            if len(buffer) == size:
                del self._parked[i]
                self._parked_bytes -= n
                return buffer, n
        return None

    def _drop_parked(self, n: int, token: object) -> None:
        """Drop idle buffers until ``n`` bytes fit (or none is left): they never make
        anybody wait."""
        while self._parked and not self._fits(n, token):
            _, held = self._parked.pop(0)
            self._parked_bytes -= held
            self._in_use -= held

    def try_acquire(self, n: int) -> bool:
        """Take ``n`` bytes now if they are free and nobody is waiting; never waits."""
        if self._parked:
            self._drop_parked(n, None)
        if self._waiters or not self._fits(n, None):
            return False
        self._take(n)
        return True

    async def acquire(self, n: int) -> int:
        """Wait until ``n`` bytes (clamped to the limit) are free; return what was taken."""
        return await self._acquire(self.clamp(n), None)

    async def acquire_part(self, n: int) -> tuple[int, bytearray | None]:
        """:meth:`acquire` for a part's buffer: also the idle buffer a finished part handed
        over with the grant, if the wait ended that way (see :meth:`park`)."""
        return await self._acquire(self.clamp(n), None, part=True)

    def join_growers(self, token: object, part_size: int) -> None:
        """Register a transfer whose parts grow as data arrives (see the module docstring)."""
        self._growers[token] = max(part_size, self._growers.get(token, 0))

    def leave_growers(self, token: object) -> None:
        if self._growers.pop(token, None) is not None:
            self._wake()

    async def acquire_growing(self, token: object, n: int, held: int) -> int:
        """``n`` more bytes for ``token``'s part, which already holds ``held`` of this budget.

        The oldest grower is served first and may fill the budget; the others wait
        while taking ``n`` would leave less than a whole part free. A part larger
        than the budget is clamped, as :meth:`acquire` does.
        """
        if token not in self._growers:
            raise RuntimeError("acquire_growing() before join_growers()")  # pragma: no cover
        n = max(0, min(n, self._limit - held))
        if n == 0:  # the part already holds the whole budget (clamped)
            await anyio.lowlevel.checkpoint()
            return 0
        return await self._acquire(n, token)

    @overload
    async def _acquire(self, n: int, token: object) -> int: ...
    @overload
    async def _acquire(
        self, n: int, token: object, *, part: Literal[True]
    ) -> tuple[int, bytearray | None]: ...
    async def _acquire(self, n: int, token: object, *, part: bool = False) -> Any:
        finisher = token is not None and token is next(iter(self._growers), None)
        if self._parked:
            self._drop_parked(n, token)
        if (finisher or not self._waiters) and self._fits(n, token):
            self._take(n)
            try:
                await anyio.lowlevel.checkpoint()
            except BaseException:  # cancelled at the checkpoint: the caller never got the bytes
                self.release(n)
                raise
            return (n, None) if part else n
        event = anyio.Event()
        entry = (n, event, token)
        if finisher:
            self._waiters.appendleft(entry)
        else:
            self._waiters.append(entry)
        if part:
            self._part_waiters[event] = None
        try:
            await event.wait()
        except BaseException:
            self._part_waiters.pop(event, None)  # a buffer handed over goes with the bytes
            if event.is_set():  # granted just as we were cancelled: give it back
                self.release(n)
            else:
                self._waiters.remove(entry)
                self._wake()
            raise
        if part:
            return n, self._part_waiters.pop(event, None)
        return n

    def _fits(self, n: int, token: object) -> bool:
        if token is None or token is next(iter(self._growers), None):
            return self._in_use + n <= self._limit
        reserve = min(self._limit, max(self._growers.values()))
        return self._in_use + n + reserve <= self._limit

    def release(self, n: int) -> None:
        self._give_back(n)

    def _give_back(self, n: int) -> list[tuple[anyio.Event, int]]:
        """Release ``n`` bytes; the waiters that were granted bytes by it."""
        self._in_use -= n
        if self._in_use < 0:  # pragma: no cover - a bug in the caller
            raise RuntimeError("MemoryBudget released more than was acquired")
        return self._wake()

    def _take(self, n: int) -> None:
        self._in_use += n
        self._peak = max(self._peak, self._in_use)

    def _wake(self) -> list[tuple[anyio.Event, int]]:
        """Grant the waiters that fit now, in order; what was granted."""
        granted: list[tuple[anyio.Event, int]] = []
        finisher = next(iter(self._growers), None)
        if finisher is not None:  # the finisher first, wherever it waits
            for entry in self._waiters:
                if entry[2] is finisher:
                    if self._fits(entry[0], finisher):
                        self._waiters.remove(entry)
                        self._take(entry[0])
                        entry[1].set()
                        granted.append((entry[1], entry[0]))
                    break
        while self._waiters and self._fits(self._waiters[0][0], self._waiters[0][2]):
            n, event, _ = self._waiters.popleft()
            self._take(n)
            event.set()
            granted.append((event, n))
        return granted

    def __repr__(self) -> str:
        return (
            f"MemoryBudget(limit={self._limit}, in_use={self.in_use}, parked={self.parked}, "
            f"waiting={self.waiting})"
        )


class Reservation:
    """Bytes held from one or more budgets; released exactly once."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[MemoryBudget, int] = {}

    def held(self, budget: MemoryBudget) -> int:
        return self._held.get(budget, 0)

    def adopt(self, budget: MemoryBudget, n: int) -> None:
        """Count ``n`` bytes the budget already holds for us (a buffer from its pool)."""
        self._held[budget] = self._held.get(budget, 0) + n

    def detach(self, budget: MemoryBudget) -> int:
        """Stop holding ``budget``'s bytes without releasing them (they go to its pool)."""
        return self._held.pop(budget, 0)

    async def take(self, budget: MemoryBudget, n: int) -> None:
        granted = await budget.acquire(n)
        self._held[budget] = self._held.get(budget, 0) + granted

    async def take_part(self, budget: MemoryBudget, n: int) -> bytearray | None:
        """:meth:`take` for a part: also the idle buffer that came with the grant, if any."""
        granted, buffer = await budget.acquire_part(n)
        self._held[budget] = self._held.get(budget, 0) + granted
        return buffer

    async def grow(self, budget: MemoryBudget, token: object, n: int) -> None:
        """``n`` more bytes of a growing part (see :meth:`MemoryBudget.acquire_growing`)."""
        granted = await budget.acquire_growing(token, n, self.held(budget))
        self._held[budget] = self._held.get(budget, 0) + granted

    def try_take(self, budget: MemoryBudget, n: int) -> bool:
        """Take ``n`` bytes (clamped) from ``budget`` if it can give them without waiting."""
        n = budget.clamp(n)
        if not budget.try_acquire(n):
            return False
        self._held[budget] = self._held.get(budget, 0) + n
        return True

    def any_held(self) -> bool:
        return bool(self._held)

    def shrink_to(self, n: int) -> None:
        """Hold at most ``n`` bytes of each budget (a probed stream turned out small)."""
        for budget, held in self._held.items():
            if held > n:
                self._held[budget] = n
                budget.release(held - n)

    def release_from(self, budget: MemoryBudget) -> None:
        """Release what is held of ``budget`` alone (a probed head became a part)."""
        n = self._held.pop(budget, 0)
        if n:
            budget.release(n)

    def give_back(self, n: int) -> None:
        """Return up to ``n`` bytes to each budget (a step that was not filled)."""
        for budget, held in self._held.items():
            back = min(n, held)
            if back:
                self._held[budget] = held - back
                budget.release(back)

    def release(self) -> None:
        held, self._held = self._held, {}
        for budget, n in reversed(held.items()):
            if n:
                budget.release(n)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
