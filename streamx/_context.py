"""TransferContext: the one object an Engine hands every pipeline it starts.

A pipeline needs the engine's S3 layer, the transfer's configuration, the
engine's shared memory budget, the retry policy and a clock; it gets them
together, so a new verb cannot forget one, and a test swaps the retry
policy's sleep or the clock through ``Engine(retry=...)`` instead of patching
a module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._budget import MemoryBudget
from ._config import TransferConfig
from ._events import Progress, ProgressCallback
from ._retry import RetryPolicy
from ._s3 import S3


@dataclass(frozen=True)
class TransferContext:
    """What every pipeline gets from its Engine.

    ``retry`` already has ``config.max_attempts`` attempts (the engine's
    :class:`~streamx._retry.RetryPolicy` gives the backoff, the sleep and the
    jitter; the transfer's config gives the count).
    """

    s3: S3
    config: TransferConfig
    budget: MemoryBudget | None
    retry: RetryPolicy
    clock: Callable[[], float] = field(default=time.monotonic)

    def progress(self, callback: ProgressCallback | None) -> Progress:
        """The transfer's progress channel: ``callback`` throttled to
        ``config.progress_interval``, timed by this context's clock."""
        return Progress(callback, interval=self.config.progress_interval, clock=self.clock)
