"""Small structured-concurrency helpers on top of anyio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup


@asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    """An anyio task group that raises a lone failure as itself, not in an ExceptionGroup.

    The failure surfaces once, with its own type and cause chain, so callers can
    ``except streamx.NotFoundError`` instead of unpacking groups.
    """
    single: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        single = group.exceptions[0]
    if single is not None:
        raise single


class FirstFailure:
    """Runs tasks in one group; the first failure cancels the rest and is kept to raise once.

    ``tg.start_soon(first.run, tg.cancel_scope, fn, *args)`` for each task; after
    the group, ``first.raise_if_failed()``. The failure surfaces once, as itself
    (no ExceptionGroup), with its own cause chain.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None

    async def run(
        self, scope: anyio.CancelScope, fn: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            if self.error is None:
                self.error = exc
            scope.cancel()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error
