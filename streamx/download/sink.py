"""Sinks: where downloaded bytes go.

:class:`FileSink` writes ranges at their offsets into a temporary file in the
destination's directory (so the final rename stays on one filesystem and is
atomic) and renames it over the destination only when every byte is there.
On failure or cancellation the temporary file is removed: a path either holds
the complete object or is left as it was. With a checkpoint (a resumable
``download_file``) the temporary file is kept instead, for the resume to
fill in; the destination path itself is still never half-written.

:func:`open_sink` adapts anything that accepts bytes in order: an anyio byte
stream, an ``asyncio.StreamWriter``, an object with an async or a sync
``write`` (a sync one runs in a worker thread so a pipe that blocks does not
stall the event loop), or a plain (sync or async) callable.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import io
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import anyio
from anyio.abc import ByteSendStream

from .._errors import ConfigError, ConfigTypeError, LocalFileError, StreamxError, local_file_error
from .._validate import check_local_path


def _refused(code: int, path: str, why: str) -> LocalFileError:
    return local_file_error(
        OSError(code, os.strerror(code), path), f"cannot download to {path}: {why}"
    )


class OrderedSink(Protocol):
    """Receives the object's bytes in order."""

    description: str

    async def write(self, data: bytes | bytearray | memoryview) -> None: ...


class _AsyncWriteSink:
    def __init__(self, write: Callable[[Any], Awaitable[Any]], description: str) -> None:
        self._write = write
        self.description = description

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await self._write(data)


class _StreamWriterSink:
    """``asyncio.StreamWriter``: write, then drain so a slow reader pushes back."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.description = "asyncio.StreamWriter"

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self._writer.write(data)
        await self._writer.drain()


class _ThreadWriteSink:
    """A sync ``write`` (a pipe, ``sys.stdout.buffer``, a socket file) in a worker thread."""

    def __init__(self, write: Callable[[Any], Any], description: str) -> None:
        self._write = write
        self.description = description

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            n = self._write(view)
            if n is None:  # BufferedWriter-like: wrote it all
                return
            view = view[n:]

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await anyio.to_thread.run_sync(self._write_all, data)


class _CallableSink:
    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn
        self.description = f"callable {getattr(fn, '__name__', type(fn).__name__)}"

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        result = self._fn(data)
        if inspect.isawaitable(result):
            await result


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__func__", None)
    )


def open_sink(obj: object) -> OrderedSink:
    """Adapt ``obj`` to an :class:`OrderedSink`, or raise :class:`ConfigTypeError` before any request."""
    if isinstance(obj, str | os.PathLike):
        raise ConfigTypeError("download_to takes a writer; to write a file use download_file(path)")
    if getattr(obj, "closed", False) is True:
        raise ConfigError("the sink is closed")
    if isinstance(obj, ByteSendStream):
        return _AsyncWriteSink(obj.send, f"byte stream {type(obj).__name__}")
    if isinstance(obj, asyncio.StreamWriter):
        return _StreamWriterSink(obj)
    write = getattr(obj, "write", None)
    if write is not None and callable(write):
        if isinstance(obj, io.TextIOBase):
            raise ConfigTypeError(
                "the sink is opened in text mode; open it with 'wb' (or pass .buffer)"
            )
        if _is_async(write):
            return _AsyncWriteSink(write, f"async writer {type(obj).__name__}")
        return _ThreadWriteSink(write, f"writer {type(obj).__name__}")
    if callable(obj):
        return _CallableSink(obj)
    raise ConfigTypeError(
        f"cannot download into a {type(obj).__name__}: pass an object with a write() method "
        "(sync or async), an asyncio.StreamWriter, an anyio byte stream, or a callable"
    )


class FileSink:
    """Writes ranges at their offsets into ``.<name>.<random>.streamx-part``, then renames it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(check_local_path(path))
        self.description = f"file {self.path}"
        directory = os.path.dirname(self.path)
        if os.path.isdir(self.path):
            raise _refused(errno.EISDIR, self.path, "give a file name inside the directory")
        if not os.path.isdir(directory):
            raise _refused(errno.ENOENT, directory, "its directory does not exist")
        if not os.access(directory, os.W_OK):
            raise _refused(errno.EACCES, directory, "cannot write to its directory")
        name = os.path.basename(self.path)
        self.temp_path = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.streamx-part")
        self._fd: int | None = None
        self._writer = anyio.CapacityLimiter(1)

    def is_temp_name(self, temp_path: str) -> bool:
        """Whether ``temp_path`` could be one of this destination's temporary files.

        A checkpoint names the temporary file to resume into; only a name of
        this shape, next to the destination, is ever reopened or removed.
        """
        name = os.path.basename(self.path)
        return (
            os.path.dirname(temp_path) == os.path.dirname(self.path)
            and os.path.basename(temp_path).startswith(f".{name}.")
            and temp_path.endswith(".streamx-part")
        )

    async def open(self, size: int, *, reuse: bool = False) -> bool:
        """Create the temporary file, ``size`` bytes long; true if an existing one was reused.

        ``reuse`` (a resume): an existing temporary file of exactly ``size``
        bytes is opened as it is, so the ranges already in it stay; anything
        else is replaced by a fresh file.
        """

        def create() -> tuple[int, bool]:
            if reuse:
                try:
                    fd = os.open(self.temp_path, os.O_WRONLY)
                except FileNotFoundError:
                    pass
                else:
                    if os.fstat(fd).st_size == size:
                        return fd, True
                    os.close(fd)
                    os.unlink(self.temp_path)
            fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                os.ftruncate(fd, size)
            except BaseException:
                os.close(fd)
                os.unlink(self.temp_path)
                raise
            return fd, False

        with self._local("creating"):
            self._fd, reused = await anyio.to_thread.run_sync(create)
        return reused

    @contextmanager
    def _local(self, doing: str) -> Iterator[None]:
        """OSErrors (a full disk: ENOSPC) as :class:`~streamx.LocalFileError`."""
        try:
            yield
        except OSError as exc:
            if isinstance(exc, StreamxError):
                raise
            raise local_file_error(exc, f"{doing} {self.temp_path} for {self.path}") from exc

    def _pwrite_all(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while len(view):
            n = os.pwrite(self._fd, view, offset)
            view = view[n:]
            offset += n

    async def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        # One write at a time: concurrent pwrites into one file contend for its inode lock
        # and copy into the page cache far slower (download_file from rclone, 1 GiB, runs
        # alternated: median 3.1-3.4 CPU-s per GiB with every range writing at once, 2.5-2.6
        # with one writer; the writes are not what bounds the throughput).
        with self._local("writing"):
            await anyio.to_thread.run_sync(self._pwrite_all, offset, data, limiter=self._writer)

    async def commit(self) -> None:
        """Close the temporary file and move it over the destination."""
        fd, self._fd = self._fd, None

        def finish() -> None:
            if fd is not None:
                os.close(fd)
            os.replace(self.temp_path, self.path)

        with self._local("closing and renaming"):
            await anyio.to_thread.run_sync(finish)

    def keep(self) -> None:
        """Close the temporary file but leave it for a resume (a checkpoint names it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def discard(self) -> None:
        """Remove the temporary file (sync, so it runs even under cancellation)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass
