"""Anything → a :class:`Source` that hands out part-sized buffers.

Accepted: ``bytes``/``bytearray``/``memoryview`` (sliced without copying); a
path (``str`` or ``os.PathLike``, read with aiofiles off the event loop);
a binary file object, sync (read in a worker thread) or async (aiofiles,
anything with an ``async read(n)``, ``asyncio.StreamReader``); an anyio
``ByteReceiveStream``; a sync or async iterable of bytes-like chunks of any
size, empty ones included (sync iterables are pulled in a worker thread, a
batch per part, so a blocking generator never stalls the loop).

Every kind is checked before the first request. A chunk that is not
bytes-like raises :class:`~streamx.SourceTypeError` naming its type. The
chunked kinds are in :mod:`.chunks`; bytes, paths and sync files here.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import AsyncIterable, Iterable
from typing import Any, Protocol

import aiofiles
import anyio
from anyio.abc import ByteReceiveStream

from .._errors import ConfigError, SourceTypeError, local_file_error
from .._validate import check_local_path
from .chunks import (
    AsyncIterSource,
    AsyncReaderSource,
    Buffer,
    ByteStreamSource,
    ChunkSource,
    PartData,
    SyncIterSource,
    as_bytes_view,
)

UploadSource = (
    bytes
    | bytearray
    | memoryview
    | str
    | os.PathLike[str]
    | io.IOBase
    | Iterable[Buffer]
    | AsyncIterable[Buffer]
    | ByteReceiveStream
    | Any
)


class Source(Protocol):
    """What the producer reads from."""

    size: int | None  # exact length when known up front
    description: str

    async def read(self, n: int, into: bytearray | None = None) -> PartData:
        """Up to ``n`` bytes; fewer only at the end of the source.

        ``into`` is a reusable buffer of ``n`` bytes that a source may fill
        instead of allocating one (the producer recycles acknowledged parts).
        """

    async def aclose(self) -> None: ...


class BytesSource:
    """A bytes-like object, sliced without copying."""

    def __init__(self, data: Buffer) -> None:
        self._view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        self._pos = 0
        self.size: int | None = len(self._view)
        self.description = type(data).__name__

    async def read(self, n: int, into: bytearray | None = None) -> Buffer:
        return self.take(n)

    def take(self, n: int) -> memoryview:
        """The next ``n`` bytes (fewer at the end), without copying."""
        chunk = self._view[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk

    async def aclose(self) -> None:
        self._view.release()


class PathSource:
    """A file path, opened and read with aiofiles; regular files have a known size."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_local_path(path, "the source path")
        try:
            st = os.stat(self.path)  # a missing file fails now, before any request
        except OSError as exc:
            raise local_file_error(exc, f"cannot upload {self.path}") from exc
        if stat.S_ISDIR(st.st_mode):
            is_dir = IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), self.path)
            raise local_file_error(is_dir, f"cannot upload {self.path} (upload the files in it)")
        self.size = st.st_size if stat.S_ISREG(st.st_mode) else None
        self.description = f"file {self.path}"
        self._file: Any = None

    async def read(self, n: int, into: bytearray | None = None) -> Buffer:
        if self._file is None:
            self._file = await aiofiles.open(self.path, "rb", buffering=0)
        buf = into if into is not None and len(into) == n else bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            count = await self._file.readinto(view[got:])
            if not count:
                break
            got += count
        if got < n:  # the last part: a copy, since executor threads may still hold views
            return buf[:got]
        return buf

    async def aclose(self) -> None:
        if self._file is not None:
            await self._file.close()


class SyncFileSource:
    """A sync binary file object (``open(..., 'rb')``, ``sys.stdin.buffer``, a socket file)."""

    def __init__(self, fileobj: Any) -> None:
        if getattr(fileobj, "closed", False):
            raise ConfigError("the file object is closed")
        if isinstance(fileobj, io.TextIOBase):
            raise SourceTypeError(
                "the file object is opened in text mode; open it with 'rb' (or pass .buffer)"
            )
        self._file = fileobj
        self.size = None
        try:
            if fileobj.seekable():
                pos = fileobj.tell()
                end = fileobj.seek(0, io.SEEK_END)
                fileobj.seek(pos)
                self.size = end - pos
        except (AttributeError, OSError, ValueError):
            self.size = None
        self.description = f"file object {type(fileobj).__name__}"

    def _read_blocking(self, n: int, into: bytearray | None = None) -> Buffer:
        readinto = getattr(self._file, "readinto", None)
        if readinto is None:
            out = bytearray()
            while len(out) < n:
                chunk = self._file.read(n - len(out))
                if not chunk:
                    break
                out += as_bytes_view(chunk)
            return out
        buf = into if into is not None and len(into) == n else bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            count = readinto(view[got:])
            if not count:
                break
            got += count
        if got < n:  # the last part: a copy, since executor threads may still hold views
            return buf[:got]
        return buf

    async def read(self, n: int, into: bytearray | None = None) -> Buffer:
        return await anyio.to_thread.run_sync(self._read_blocking, n, into)

    async def aclose(self) -> None:  # the caller owns the file
        return None


def open_source(obj: object) -> Source:
    """Wrap ``obj`` as a :class:`Source`, or raise ``TypeError``/``OSError`` before any request."""
    if isinstance(obj, ChunkSource):
        return obj  # already one (``ArrivingSource`` from the web adapters)
    if isinstance(obj, bytes | bytearray | memoryview):
        return BytesSource(obj)
    if isinstance(obj, str | os.PathLike):
        return PathSource(obj)
    if isinstance(obj, ByteReceiveStream):
        return ByteStreamSource(obj)
    read = getattr(obj, "read", None)
    if read is not None and callable(read):
        import inspect

        if inspect.iscoroutinefunction(read) or inspect.iscoroutinefunction(
            getattr(read, "__func__", None)
        ):
            return AsyncReaderSource(obj)
        return SyncFileSource(obj)
    if isinstance(obj, AsyncIterable):
        return AsyncIterSource(obj)
    if isinstance(obj, Iterable) and not isinstance(obj, dict | set | frozenset):
        return SyncIterSource(obj)
    raise SourceTypeError(
        f"cannot upload a {type(obj).__name__}: pass bytes, a path, a binary file object, "
        "an asyncio.StreamReader or anyio byte stream, or an (async) iterable of bytes chunks"
    )
