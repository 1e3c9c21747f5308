"""Per-request retries: exponential backoff with equal jitter, on retryable failures only.

**How long a failure is ridden out.** By default an attempt fails up to 5
times (``TransferConfig.max_attempts``); after failed attempt *n* it waits
``cap/2 + random() * cap/2`` seconds with ``cap = min(20, 0.5 * 2**(n-1))``:
0.25-0.5 s, 0.5-1 s, 1-2 s, 2-4 s. So a request gives up only after at least
3.75 s (at most 7.5 s) of waiting, plus the time of the attempts themselves:
an outage, a restart or a throttling burst of a few seconds is ridden out,
as botocore's ``standard`` retry mode intends (it waits ``random() * 2**n``
s, capped at 20 s, 3 attempts). Half of each wait is fixed ("equal
jitter") so that the window has a floor: with full jitter (waits from 0) a
one-second outage could exhaust every attempt by chance. Set ``max_attempts``
higher to ride out longer trouble (6 attempts: at least 7.75 s).

**What is retried.** streamx retries each part (an UploadPart, a ranged GET,
an UploadPartCopy) on its own, resending the identical bytes it still holds:
connection refused/reset/closed early, timeouts (including the stall detector
below), HTTP 500/502/503/504, SlowDown and the other throttling codes, and a
part whose bytes the server reports as damaged in transit (BadDigest). Nothing
else is: 403, NoSuchBucket, NoSuchUpload, EntityTooSmall, InvalidPart, 501 and
every local error fail at once, and the upload is aborted.

**How this layers with botocore's retries.** The clients streamx creates have
botocore's retries turned off (``total_max_attempts=1``), so an attempt here is
one HTTP request and ``TransferConfig.max_attempts`` is the true ceiling: the
attempts never multiply. A client the caller passes in (``Engine(client=...)``)
keeps its own retry configuration; then each streamx attempt may itself be
retried by botocore, so a part can be sent up to ``max_attempts x botocore's
total_max_attempts`` times, and botocore's attempts all happen inside one
streamx ``part_timeout``. Give such a client ``retries={"total_max_attempts": 1}``
to get streamx's behaviour exactly, or set ``max_attempts=1`` to leave retrying
to botocore. One layer below, aiohttp itself resends an idempotent request
(UploadPart and PutObject are PUTs; GET, HEAD, DELETE) once when its
connection breaks mid-request (ClientOSError, ServerDisconnectedError); it
rewinds the body and sends the same bytes, and streamx never sees that first
failure. So under connection resets a part may reach the wire up to
``2 x max_attempts`` times; the fault-injection tests account for it.

**Timeouts.** ``part_timeout`` caps one attempt, whatever it is doing. The
stall detector (:class:`ProgressDeadline`) is the finer tool: it cancels an
attempt that has moved no byte for ``stall_timeout`` seconds (see
``upload/uploader.py`` for where its byte-level signal comes from).

The sleep and the random source are injected, so tests never really sleep.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from ._errors import ChecksumError, NetworkError, S3Error, ServiceUnavailableError, StreamxError

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """Connection failures, timeouts, 5xx (not 501), throttling, damage in transit."""
    if isinstance(exc, NetworkError | TimeoutError | ChecksumError):
        return True
    if isinstance(exc, ServiceUnavailableError):
        # 501 Not Implemented is a 5xx that will never succeed
        return exc.status is None or exc.status != 501
    if isinstance(exc, S3Error):
        return exc.status in RETRYABLE_STATUS
    return False


@dataclass
class RetryPolicy:
    """Up to ``max_attempts`` attempts, sleeping ``delay(n)`` after failed attempt ``n``."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    rand: Callable[[], float] = field(default=random.random)

    def delay(self, attempt: int) -> float:
        """Equal jitter: uniform in [cap/2, cap], cap = min(max_delay, base * 2^(attempt-1))."""
        cap = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return cap / 2 + self.rand() * cap / 2

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (a per-attempt limit)
        on_retry: Callable[[int, BaseException], Awaitable[None] | None] | None = None,
    ) -> T:
        """``await fn()`` until it succeeds, fails for good, or attempts run out.

        The error of the last attempt is raised; it names the attempt count.
        """
        attempt = 1
        while True:
            try:
                if timeout:
                    with anyio.fail_after(timeout):
                        return await fn()
                return await fn()
            except (StreamxError, TimeoutError) as exc:
                if isinstance(exc, TimeoutError) and not isinstance(exc, StreamxError):
                    error: StreamxError = NetworkError(
                        f"the request did not finish within part_timeout={timeout:g} s "
                        f"(attempt {attempt} of {self.max_attempts})"
                    )
                    error.__cause__ = exc
                else:
                    error = exc
                if not is_retryable(error) or attempt >= self.max_attempts:
                    if attempt > 1 and is_retryable(error):
                        error.message = f"{error.message} (gave up after {attempt} attempts)"
                    if error is exc:
                        raise
                    raise error from exc
                if on_retry is not None:
                    result = on_retry(attempt, error)
                    if result is not None:
                        await result
                await self.sleep(self.delay(attempt))
                attempt += 1


class ProgressDeadline:
    """A cancel scope whose deadline moves forward each time a byte moves.

    ``with ProgressDeadline(30) as watch: ...; watch.progress()``: the block is
    cancelled once ``seconds`` pass without a call to :meth:`progress`;
    :attr:`stalled` then tells the caller that it was the stall, not an outer
    cancellation, that ended it. Moving a deadline costs nothing (no task, no
    timer per byte), so ``progress()`` may be called for every chunk sent.

    The clock starts at the first ``progress()``, not on entry: a request that
    waits for a pooled connection is queued, not stalled (``part_timeout``
    still bounds it).
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._scope = anyio.CancelScope()

    def __enter__(self) -> ProgressDeadline:
        self._scope.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> bool:
        return bool(self._scope.__exit__(*exc_info))  # type: ignore[arg-type]

    def progress(self) -> None:
        if self.seconds is not None:
            self._scope.deadline = anyio.current_time() + self.seconds

    @property
    def stalled(self) -> bool:
        return self._scope.cancelled_caught
