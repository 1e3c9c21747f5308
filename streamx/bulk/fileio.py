"""Small local file work (a whole-file read, a hash) done many jobs per thread hop.

A sync of many small files reads or hashes each one. Sending each to a worker
thread on its own costs more than the work: measured on 10,000 × 4 KiB files
with 16 in flight, 1.2–1.7 CPU-s of thread hand-offs against 0.2 CPU-s when
the same reads went 16 to a hop. :class:`ThreadBatcher` lets every task ask for
its job as if alone (``await batcher.run(fn)``) and runs the jobs that are
waiting together, in one ``anyio.to_thread.run_sync`` call.

No extra task and no extra memory: the first task that finds no batch running
becomes the leader and runs the queue (up to ``limit`` jobs) in a thread,
shielded (small jobs: the call is short and every job in it has an owner
waiting); then it wakes the owners and, if jobs arrived meanwhile, hands the
lead to the oldest waiter. A waiter that is cancelled takes its job out of the
queue (a job already running finishes and its result is dropped). Each task
has at most one job queued, so a batch holds what the tasks would have held
anyway. Only small jobs belong here (callers send large files to a thread of
their own): a batch runs its jobs one after another.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

T = TypeVar("T")


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "result", "wake")

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
        self.wake = anyio.Event()


def _run_all(jobs: list[_Job[Any]]) -> None:
    for job in jobs:
        try:
            job.result = job.fn()
        except Exception as exc:  # handed to the job's owner
            job.error = exc


class ThreadBatcher:
    """``await run(fn)``: ``fn()`` in a worker thread, batched with the other jobs waiting."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._queue: deque[_Job[Any]] = deque()
        self._running = False
        self.hops = 0  # thread calls made (for tests and benchmarks)

    async def run(self, fn: Callable[[], T]) -> T:
        job: _Job[T] = _Job(fn)
        self._queue.append(job)
        try:
            while not job.done:
                if self._running:
                    await job.wake.wait()
                    job.wake = anyio.Event()
                else:
                    await self._lead()
        except BaseException:
            if not job.done and job in self._queue:
                self._queue.remove(job)
            self._hand_over()
            raise
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    async def _lead(self) -> None:
        self._running = True
        batch = [self._queue.popleft() for _ in range(min(self.limit, len(self._queue)))]
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_run_all, batch)
                self.hops += 1
        finally:
            self._running = False
            for job in batch:
                job.done = True
                job.wake.set()
            self._hand_over()

    def _hand_over(self) -> None:
        """Wake the oldest waiter to lead the next batch, if there is one and nobody leads."""
        if self._queue and not self._running:
            self._queue[0].wake.set()
