"""``cp --recursive``: plan one job per file, then run ``--jobs`` of them at once.

Every job shares the engine's :class:`~streamx.MemoryBudget` (``--memory-limit``),
so memory stays bounded however many files are in flight. One file's failure
is reported and the others go on, unless every file would fail the same way (a
missing bucket, refused credentials): then the copy stops with one line. Ctrl-C
cancels them all, and each upload in flight is aborted. What is not copied
(dangling symlinks, sockets) is reported.

A prefix is read as a directory: ``s3://b/photos`` copies the keys under
``photos/``, and keys that cannot be mapped safely onto a local tree
(``../x``, ``a//b``) are reported and skipped, never written elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from .._engine import Engine
from ..bulk.sides import safe_relative_path
from ._exit import Failure, UsageError, classify, stops_everything
from ._location import LocalLocation, Location, S3Location, StdioLocation


@dataclass(frozen=True)
class Job:
    src: Location
    dst: Location
    size: int | None


@dataclass(frozen=True)
class Skipped:
    src: Location
    reason: str


def _walk(root: str) -> tuple[list[tuple[str, str, int]], list[tuple[str, str]]]:
    """(path, relative key, size) of the regular files under ``root``, in a stable order,
    and (path, reason) of what is not copied: dangling symlinks, sockets, devices."""
    found = []
    passed = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                target = os.readlink(path) if os.path.islink(path) else "?"
                passed.append((path, f"a symbolic link to {target}, which does not exist; skipped"))
                continue
            if not os.path.isfile(path):
                passed.append((path, "not a regular file; skipped"))
                continue
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            found.append((path, rel, st.st_size))
    return found, passed


def _raise(exc: OSError) -> None:
    raise exc


def check(src: Location, dst: Location) -> None:
    """Usage errors of a recursive copy, before any request."""
    if isinstance(src, StdioLocation) or isinstance(dst, StdioLocation):
        raise UsageError("--recursive copies directories and prefixes, not stdin/stdout")
    if isinstance(src, LocalLocation):
        if not isinstance(dst, S3Location):
            raise UsageError("one side of cp must be an s3:// URL")
        if not os.path.exists(src.path):
            raise FileNotFoundError(2, "No such file or directory", src.path)
        if not os.path.isdir(src.path):
            raise UsageError(f"{src.path} is not a directory; drop --recursive to copy one file")


async def plan(
    src: Location, dst: Location, source_engine: Engine
) -> tuple[list[Job], list[Skipped]]:
    """The jobs of a recursive copy from ``src`` to ``dst`` (checked by :func:`check`)."""
    jobs: list[Job] = []
    skipped: list[Skipped] = []
    if isinstance(src, LocalLocation):
        assert isinstance(dst, S3Location)
        files, passed = await anyio.to_thread.run_sync(_walk, src.path)
        base = dst.dir_prefix
        for path, rel, size in files:
            jobs.append(Job(LocalLocation(path), S3Location(dst.bucket, base + rel), size))
        skipped.extend(Skipped(LocalLocation(path), reason) for path, reason in passed)
        return jobs, skipped
    assert isinstance(src, S3Location)
    prefix = src.dir_prefix
    async for info in source_engine.list(src.bucket, prefix):
        rel = info.key[len(prefix) :]
        if not rel or rel.endswith("/"):
            continue  # the prefix itself, or a "directory" marker object
        item = S3Location(src.bucket, info.key)
        if isinstance(dst, S3Location):
            jobs.append(Job(item, S3Location(dst.bucket, dst.dir_prefix + rel), info.size))
            continue
        assert isinstance(dst, LocalLocation)
        local = safe_relative_path(rel)
        if local is None:
            skipped.append(Skipped(item, "its key cannot be a local path safely; skipped"))
            continue
        jobs.append(Job(item, LocalLocation(os.path.join(dst.path, local)), info.size))
    return jobs, skipped


@dataclass
class Outcome:
    """What :func:`run_jobs` saw: per-file failures, or the one failure that stopped them all."""

    failures: list[Failure]
    stopped_by: Failure | None = None
    done: int = 0


async def run_jobs(
    jobs: list[Job],
    workers: int,
    one: Callable[[Job], Awaitable[dict[str, Any]]],
    on_done: Callable[[Job, dict[str, Any]], None],
    on_failed: Callable[[Job, BaseException, Failure], None],
) -> Outcome:
    """Run ``one(job)`` for every job, ``workers`` at a time; failures are collected.

    A failure that every other file would meet too (a missing bucket, refused
    credentials: :func:`stops_everything`) cancels the jobs in flight (their
    uploads are aborted) and stops the copy; it is reported once, by the caller.
    """
    outcome = Outcome([])
    send, receive = anyio.create_memory_object_stream[Job](max(1, workers))

    async with anyio.create_task_group() as tg:

        async def worker(inbox: Any) -> None:
            async with inbox:
                async for job in inbox:
                    try:
                        record = await one(job)
                    except Exception as exc:
                        if outcome.stopped_by is not None:
                            continue  # the same cause, already reported
                        failure = classify(exc)
                        if stops_everything(exc):
                            outcome.stopped_by = failure
                            tg.cancel_scope.cancel()
                            return
                        outcome.failures.append(failure)
                        on_failed(job, exc, failure)
                    else:
                        outcome.done += 1
                        on_done(job, record)

        async with receive:
            for _ in range(workers):
                tg.start_soon(worker, receive.clone())
        async with send:
            for job in jobs:
                await send.send(job)
    return outcome
