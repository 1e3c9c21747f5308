"""Per-request retries: exponential backoff with full jitter, on retryable failures only.

streamx retries each part (an UploadPart, a ranged GET, an UploadPartCopy) on
its own and turns botocore's retries off for the clients it creates, so the
attempts never multiply (see the README's "Retries" section). The clock and
the sleep are injected, so tests never really sleep.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from ._errors import NetworkError, ServiceUnavailableError, StreamxError

T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """Connection resets, timeouts, 5xx and throttling; never 4xx or local errors."""
    return isinstance(exc, NetworkError | ServiceUnavailableError | TimeoutError)


@dataclass
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    rand: Callable[[], float] = field(default=random.random)

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base × 2^(attempt-1))]."""
        return self.rand() * min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        timeout: float | None = None,
        on_retry: Callable[[int, BaseException], Awaitable[None] | None] | None = None,
    ) -> T:
        attempt = 1
        while True:
            try:
                if timeout:
                    with anyio.fail_after(timeout):
                        return await fn()
                return await fn()
            except (StreamxError, TimeoutError) as exc:
                if not is_retryable(exc) or attempt >= self.max_attempts:
                    if isinstance(exc, TimeoutError) and not isinstance(exc, StreamxError):
                        raise NetworkError(
                            f"the request made no answer within {timeout:g} s "
                            f"(attempt {attempt} of {self.max_attempts})"
                        ) from exc
                    raise
                if on_retry is not None:
                    result = on_retry(attempt, exc)
                    if result is not None:
                        await result
                await self.sleep(self.delay(attempt))
                attempt += 1
