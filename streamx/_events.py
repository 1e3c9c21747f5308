"""Progress events: one typed event, delivered through one throttled channel.

A CLI progress bar, a WebSocket progress message and a metrics exporter are
all just listeners. Progress counts bytes the server has acknowledged; a part
that is retried is counted again only once it is acknowledged, so progress
never counts bytes twice (``bytes_retried`` says how many bytes were resent).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ._errors import ConfigError


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Where a transfer stands.

    Attributes:
        bytes_done: bytes acknowledged by the server (uploads) or delivered (downloads).
        total: the total size, or ``None`` while a stream's length is unknown.
        parts_done: parts acknowledged so far.
        parts_in_flight: parts read but not yet acknowledged.
        elapsed: seconds since the transfer started.
        bytes_retried: bytes sent again after a failed attempt.
        final: ``True`` on the last event of a transfer that succeeded.
    """

    bytes_done: int
    total: int | None
    parts_done: int
    parts_in_flight: int
    elapsed: float
    bytes_retried: int = 0
    final: bool = False

    @property
    def rate(self) -> float:
        """Average bytes per second so far."""
        return self.bytes_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def fraction(self) -> float | None:
        if self.total is None:
            return None
        return 1.0 if self.total == 0 else self.bytes_done / self.total


ProgressCallback = Callable[[ProgressEvent], Awaitable[None] | None]


class Progress:
    """Counts a transfer's progress and calls ``callback`` at most every ``interval`` s.

    A callback may be sync or async. If it raises, the transfer stops and is
    cleaned up: this is how a caller enforces a size limit or a deadline.
    """

    def __init__(
        self,
        callback: ProgressCallback | None,
        *,
        interval: float,
        total: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if callback is not None and not callable(callback):
            raise ConfigError(f"on_progress must be callable, not {type(callback).__name__}")
        self._callback = callback
        self._interval = interval
        self._clock = clock
        self._start = clock()
        self._last_emit = float("-inf")
        self.total = total
        self.bytes_done = 0
        self.parts_done = 0
        self.parts_in_flight = 0
        self.bytes_retried = 0

    def snapshot(self, *, final: bool = False) -> ProgressEvent:
        return ProgressEvent(
            bytes_done=self.bytes_done,
            total=self.total,
            parts_done=self.parts_done,
            parts_in_flight=self.parts_in_flight,
            elapsed=self._clock() - self._start,
            bytes_retried=self.bytes_retried,
            final=final,
        )

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    async def advance(self, nbytes: int, *, parts: int = 0) -> None:
        self.bytes_done += nbytes
        self.parts_done += parts
        await self.maybe_emit()

    async def maybe_emit(self) -> None:
        if self._callback is None:
            return
        now = self._clock()
        if now - self._last_emit >= self._interval:
            self._last_emit = now
            await self._call(self.snapshot())

    async def finish(self) -> None:
        if self.total is None:
            self.total = self.bytes_done
        if self._callback is not None:
            await self._call(self.snapshot(final=True))

    async def _call(self, event: ProgressEvent) -> None:
        assert self._callback is not None
        result = self._callback(event)
        if inspect.isawaitable(result):
            await result
