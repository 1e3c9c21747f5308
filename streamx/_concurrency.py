"""Small structured-concurrency helpers on top of anyio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
