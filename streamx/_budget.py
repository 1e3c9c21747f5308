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
still gets its whole window). 128 MiB is sixteen 8 MiB parts in flight: on
loopback one upload with four parts in flight already moves about 2 GiB/s,
and 64 concurrent uploads of 16 MiB then peak at about a quarter of a GiB of
RSS (interpreter and HTTP stack included) instead of over a GiB. What other
streams may hold while they wait for a part (a probed head, read-ahead) is
charged to :attr:`MemoryBudget.heads`, at most half of it.
"""

from __future__ import annotations

import os
from collections import deque
from types import TracebackType

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
        return self._in_use

    @property
    def peak(self) -> int:
        """The most bytes ever held at once."""
        return self._peak

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def clamp(self, n: int) -> int:
        return min(n, self._limit)

    def try_acquire(self, n: int) -> bool:
        """Take ``n`` bytes now if they are free and nobody is waiting; never waits."""
        if self._waiters or not self._fits(n, None):
            return False
        self._take(n)
        return True

    async def acquire(self, n: int) -> int:
        """Wait until ``n`` bytes (clamped to the limit) are free; return what was taken."""
        return await self._acquire(self.clamp(n), None)

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

    async def _acquire(self, n: int, token: object) -> int:
        finisher = token is not None and token is next(iter(self._growers), None)
        if (finisher or not self._waiters) and self._fits(n, token):
            self._take(n)
            try:
                await anyio.lowlevel.checkpoint()
            except BaseException:  # cancelled at the checkpoint: the caller never got the bytes
                self.release(n)
                raise
            return n
        event = anyio.Event()
        entry = (n, event, token)
        if finisher:
            self._waiters.appendleft(entry)
        else:
            self._waiters.append(entry)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # granted just as we were cancelled: give it back
                self.release(n)
            else:
                self._waiters.remove(entry)
                self._wake()
            raise
        return n

    def _fits(self, n: int, token: object) -> bool:
        if token is None or token is next(iter(self._growers), None):
            return self._in_use + n <= self._limit
        reserve = min(self._limit, max(self._growers.values()))
        return self._in_use + n + reserve <= self._limit

    def release(self, n: int) -> None:
        self._in_use -= n
        if self._in_use < 0:  # pragma: no cover - a bug in the caller
            raise RuntimeError("MemoryBudget released more than was acquired")
        self._wake()

    def _take(self, n: int) -> None:
        self._in_use += n
        self._peak = max(self._peak, self._in_use)

    def _wake(self) -> None:
        finisher = next(iter(self._growers), None)
        if finisher is not None:  # the finisher first, wherever it waits
            for entry in self._waiters:
                if entry[2] is finisher:
                    if self._fits(entry[0], finisher):
                        self._waiters.remove(entry)
                        self._take(entry[0])
                        entry[1].set()
                    break
        while self._waiters and self._fits(self._waiters[0][0], self._waiters[0][2]):
            n, event, _ = self._waiters.popleft()
            self._take(n)
            event.set()

    def __repr__(self) -> str:
        return f"MemoryBudget(limit={self._limit}, in_use={self._in_use}, waiting={self.waiting})"


class Reservation:
    """Bytes held from one or more budgets; released exactly once."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[MemoryBudget, int] = {}

    def held(self, budget: MemoryBudget) -> int:
        return self._held.get(budget, 0)

    async def take(self, budget: MemoryBudget, n: int) -> None:
        granted = await budget.acquire(n)
        self._held[budget] = self._held.get(budget, 0) + granted

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
