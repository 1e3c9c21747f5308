"""One file's transfer, whatever its direction: upload, download, server-side copy, migration.

Each function returns the JSON record of what was done. The byte work is all
the library's; this module only picks the verb and wires the progress bar.
"""

from __future__ import annotations

import inspect
import mimetypes
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._config import TransferConfig
from .._engine import Engine
from ._exit import StdoutClosed, UsageError
from ._location import LocalLocation, Location, S3Location, StdioLocation
from ._progress import FileBar

_STDIN_CHUNK = 1024 * 1024
_F_SETPIPE_SZ = 1031  # Linux: grow a pipe's buffer so each wakeup reads more


@dataclass
class TransferContext:
    engine: Engine
    source_engine: Engine  # the same engine unless --source-endpoint-url
    config: TransferConfig
    put_args: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    restart: bool = False
    expected_size: int | None = None
    byte_range: tuple[int, int | None] | None = None
    range_text: str = ""  # the user's --range, for messages

    @property
    def cross_endpoint(self) -> bool:
        return self.source_engine is not self.engine


def clamp_range(
    spec: tuple[int, int | None], size: int, text: str, url: str
) -> tuple[int, int] | None:
    """A parsed ``--range`` fitted to an object of ``size`` bytes, as HTTP ranges and ``tail -c`` do.

    ``0-1023`` of a 6-byte object is its 6 bytes, ``-500`` the whole object;
    ``None`` means nothing to read (an empty object). A range that starts past
    the end is an error, said in the user's own syntax.
    """
    start, end = spec
    if start < 0:  # the last -start bytes
        start = max(0, size + start)
        end = size
    elif end is None or end > size:
        end = size
    if start >= size:
        if size == 0:
            return None
        raise UsageError(
            f"--range {text} starts past the end of {url}, which has {size} "
            f"byte{'s' if size != 1 else ''} (the last byte is {size - 1})"
        )
    return start, end


def supports(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (not merely ``**kwargs``)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


async def _read_fd(fd: int) -> AsyncIterator[bytes]:
    """A pipe, socket or terminal read without a thread, so Ctrl-C cancels at once.

    The descriptor stays blocking (a shared terminal must not be left
    non-blocking): ``os.read`` only runs once the descriptor is readable.
    """
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, _STDIN_CHUNK)
    except (ImportError, OSError):
        pass
    while True:
        await anyio.wait_readable(fd)
        data = os.read(fd, _STDIN_CHUNK)
        if not data:
            return
        yield data


def stdin_source() -> Any:
    """Standard input as an upload source: a regular file keeps its known size."""
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, ValueError, OSError) as exc:
        raise UsageError("standard input is closed; pipe data into 'streamx cp -'") from exc
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
        return _read_fd(fd)
    return sys.stdin.buffer


def _record(
    action: str, src: Location, dst: Location, result: Any, started: float
) -> dict[str, Any]:
    return {
        "action": action,
        "source": str(src),
        "destination": str(dst),
        "size": getattr(result, "size", None),
        "etag": getattr(result, "etag", None),
        "parts": getattr(result, "part_count", None),
        "seconds": round(time.monotonic() - started, 3),
    }


async def upload(
    tc: TransferContext, src: Location, dst: S3Location, bar: FileBar
) -> dict[str, Any]:
    started = time.monotonic()
    put_args = dict(tc.put_args)
    size = None
    source: Any
    if isinstance(src, LocalLocation):
        source = src.path
        if "ContentType" not in put_args:
            guessed, _ = mimetypes.guess_type(src.path)
            if guessed:
                put_args["ContentType"] = guessed
    else:
        source = stdin_source()
        size = tc.expected_size
    extra: dict[str, Any] = {}
    if tc.checkpoint is not None:
        extra["checkpoint"] = tc.checkpoint
        if tc.restart:
            extra["restart"] = True
    result = await tc.engine.upload(
        dst.bucket,
        dst.key,
        source,
        config=tc.config,
        on_progress=bar.update,
        size=size,
        **extra,
        **put_args,
    )
    return _record("upload", src, dst, result, started)


class _StdoutSink:
    """Standard output for a download: written from a worker thread, so a slow pipe pushes back."""

    def __init__(self) -> None:
        self._out = sys.stdout.buffer
        self.description = "stdout"

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await anyio.to_thread.run_sync(self._out.write, data, abandon_on_cancel=True)
        except BrokenPipeError as exc:
            raise StdoutClosed() from exc

    async def flush(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._out.flush, abandon_on_cancel=True)
        except BrokenPipeError as exc:
            raise StdoutClosed() from exc


async def download(
    tc: TransferContext, src: S3Location, dst: Location, bar: FileBar
) -> dict[str, Any]:
    started = time.monotonic()
    engine = tc.source_engine
    if isinstance(dst, LocalLocation):
        parent = os.path.dirname(dst.path)
        if parent:
            await anyio.to_thread.run_sync(lambda: os.makedirs(parent, exist_ok=True))
        result = await engine.download_file(
            src.bucket, src.key, dst.path, config=tc.config, on_progress=bar.update
        )
        return _record("download", src, dst, result, started)
    sink = _StdoutSink()
    if tc.byte_range is None:
        result = await engine.download_to(
            src.bucket, src.key, sink, config=tc.config, on_progress=bar.update
        )
        await sink.flush()
        return _record("download", src, dst, result, started)
    info = await engine.head(src.bucket, src.key)
    wanted = clamp_range(tc.byte_range, info.size, tc.range_text, str(src))
    size = 0
    etag = info.etag
    if wanted is not None:
        async with engine.download(src.bucket, src.key, range=wanted) as stream:
            async for chunk in stream:
                await sink.write(chunk)
                bar.advance(len(chunk))
                size += len(chunk)
        etag = stream.etag
    await sink.flush()
    record = _record("download", src, dst, None, started)
    record.update(size=size, etag=etag)
    return record


async def copy(
    tc: TransferContext, src: S3Location, dst: S3Location, bar: FileBar
) -> dict[str, Any]:
    started = time.monotonic()
    if tc.cross_endpoint:
        result = await tc.source_engine.copy_to(
            tc.engine,
            src.bucket,
            src.key,
            dst.bucket,
            dst.key,
            config=tc.config,
            on_progress=bar.update,
            **tc.put_args,
        )
        return _record("migrate", src, dst, result, started)
    result = await tc.engine.copy(
        src.bucket,
        src.key,
        dst.bucket,
        dst.key,
        config=tc.config,
        on_progress=bar.update,
        **tc.put_args,
    )
    return _record("copy", src, dst, result, started)


async def transfer(
    tc: TransferContext, src: Location, dst: Location, bar: FileBar
) -> dict[str, Any]:
    if isinstance(dst, S3Location) and not isinstance(src, S3Location):
        return await upload(tc, src, dst, bar)
    if isinstance(src, S3Location) and not isinstance(dst, S3Location):
        return await download(tc, src, dst, bar)
    if isinstance(src, S3Location) and isinstance(dst, S3Location):
        return await copy(tc, src, dst, bar)
    assert isinstance(src, LocalLocation | StdioLocation)
    raise UsageError("one side of cp must be an s3:// URL")
