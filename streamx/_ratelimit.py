"""RateLimit: requests and bytes per second, process-wide, and an adaptive in-flight window.

Like :class:`~streamx.MemoryBudget`, one ``RateLimit`` may be shared by any
number of engines (``Engine(rate_limit=limit)``); every request any of them
sends takes one request token and its body's bytes (a GetObject: the bytes
announced by its answer) from two token buckets. A bucket holds at most
``burst`` seconds of its rate; a request that finds it empty goes into debt
and sleeps until the debt is paid, so waiters are served in arrival order and
the long-run rate never exceeds the limit.

Adaptive backoff: :meth:`RateLimit.slot` bounds the work in flight (a sync's
objects) by a window that halves when the store answers SlowDown or 503
(at most once per ``cooldown`` seconds) and grows by ``1/window`` per success
(additive increase, multiplicative decrease, as TCP does); it never goes
below 1 nor above ``max_in_flight``.

The clock and the sleep are injectable, so tests count tokens and sleeps
without sleeping (s3transfer's ``bandwidth.py`` does the same with its
``TimeUtils``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ._errors import ConfigError

_THROTTLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "RequestLimitExceeded",
    "ServiceUnavailable",
}


def _rate(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number or None, not {value!r}")
    return float(value)


class _Bucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(rate * burst, 1.0)
        self.tokens = self.capacity
        self.stamp = now

    def reserve(self, n: float, now: float) -> float:
        """Take ``n`` tokens (going into debt if needed); seconds until the debt is paid."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class RateLimit:
    """At most ``bytes_per_second`` and ``requests_per_second`` over every engine that shares it."""

    def __init__(
        self,
        *,
        bytes_per_second: float | None = None,
        requests_per_second: float | None = None,
        burst: float = 1.0,
        max_in_flight: int = 64,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ) -> None:
        self.bytes_per_second = _rate(bytes_per_second, "bytes_per_second")
        self.requests_per_second = _rate(requests_per_second, "requests_per_second")
        if _rate(burst, "burst") is None:
            raise ConfigError("burst must be a positive number of seconds")
        if (
            isinstance(max_in_flight, bool)
            or not isinstance(max_in_flight, int)
            or max_in_flight < 1
        ):
            raise ConfigError(f"max_in_flight must be a positive int, not {max_in_flight!r}")
        self._clock, self._sleep = clock, sleep
        now = clock()
        self._bytes = (
            None if self.bytes_per_second is None else _Bucket(self.bytes_per_second, burst, now)
        )
        self._requests = (
            None
            if self.requests_per_second is None
            else _Bucket(self.requests_per_second, burst, now)
        )
        self.burst = burst
        self.max_in_flight = max_in_flight
        self.window = float(max_in_flight)
        self.cooldown = cooldown
        self._last_decrease: float | None = None
        self._in_flight = 0
        self._changed = anyio.Event()
        #: counters, for tests and reports
        self.requests = 0
        self.bytes = 0
        self.slept = 0.0
        self.throttled = 0

    def share(self, n: int) -> RateLimit:
        """A new limit with ``1/n`` of the rates (one per fleet worker)."""

        def part(rate: float | None) -> float | None:
            return None if rate is None else rate / n

        return RateLimit(
            bytes_per_second=part(self.bytes_per_second),
            requests_per_second=part(self.requests_per_second),
            burst=self.burst,
            max_in_flight=max(1, self.max_in_flight // n),
            cooldown=self.cooldown,
        )

    async def acquire(self, nbytes: int = 0, *, requests: int = 1) -> None:
        """Take tokens for ``requests`` requests carrying ``nbytes``; sleep while in debt."""
        now = self._clock()
        wait = 0.0
        if self._requests is not None and requests:
            wait = self._requests.reserve(requests, now)
        if self._bytes is not None and nbytes:
            wait = max(wait, self._bytes.reserve(nbytes, now))
        self.requests += requests
        self.bytes += nbytes
        if wait > 0:
            self.slept += wait
            await self._sleep(wait)

    # -- the adaptive window

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def on_throttle(self) -> None:
        """The store said SlowDown/503: halve the window (once per cooldown)."""
        self.throttled += 1
        now = self._clock()
        if self._last_decrease is not None and now - self._last_decrease < self.cooldown:
            return
        self._last_decrease = now
        self.window = max(1.0, self.window / 2)

    def on_success(self) -> None:
        if self.window < self.max_in_flight:
            self.window = min(float(self.max_in_flight), self.window + 1.0 / self.window)
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one place in the window while the block runs."""
        while self._in_flight >= int(self.window):
            await self._changed.wait()
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._wake()

    # -- the hooks on an aiobotocore client

    def attach(self, client: Any) -> None:
        """Meter every request of ``client`` and watch its answers for throttling."""
        events = client.meta.events

        async def before_send(request: Any, **_: Any) -> None:
            body = getattr(request, "body", None)
            size = 0
            if isinstance(body, bytes | bytearray | memoryview):
                size = len(body)
            elif body is not None and hasattr(body, "__len__"):
                size = len(body)
            await self.acquire(size)

        async def after_get(parsed: Any, **_: Any) -> None:
            await self.acquire(int(parsed.get("ContentLength") or 0), requests=0)

        def observe(response: Any = None, **_: Any) -> None:
            if response is None:
                return
            http, parsed = response
            status = getattr(http, "status_code", 0)
            code = (parsed or {}).get("Error", {}).get("Code")
            if status == 503 or code in _THROTTLE_CODES:
                self.on_throttle()
            elif 200 <= status < 300:
                self.on_success()

        events.register("before-send.s3", before_send)
        events.register("after-call.s3.GetObject", after_get)
        events.register("needs-retry.s3", observe)

    def __repr__(self) -> str:
        return (
            f"RateLimit(bytes_per_second={self.bytes_per_second}, "
            f"requests_per_second={self.requests_per_second}, window={self.window:.1f})"
        )
