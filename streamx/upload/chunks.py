"""Sources that deliver chunks of their own sizes, assembled into parts.

Iterables (sync, pulled in a worker thread a part at a time; async), streams
with an ``async read(n)`` (aiofiles, ``asyncio.StreamReader``), anyio byte
streams, and the web adapters' request bodies (:class:`ArrivingSource`). A
chunk that is not bytes-like raises :class:`~streamx.SourceTypeError`
naming its type. :func:`streamx.upload.source.open_source` picks the class.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Generator, Iterable, Iterator
from typing import Any, cast

import anyio
from anyio.abc import ByteReceiveStream

from .._budget import MemoryBudget
from .._errors import ConfigError, SourceTypeError
from .._gathered import Gathered, Piece
from .readahead import ReadAhead

Buffer = bytes | bytearray | memoryview
PartData = Buffer | Gathered  # a part's bytes: one buffer, or a stream's chunks
GATHER_MIN = 64 * 1024  # a smaller chunk is copied into a part buffer, not gathered


def as_bytes_view(chunk: object) -> memoryview | bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        view = memoryview(chunk)
        return view if view.format == "B" and view.ndim == 1 else view.cast("B")
    raise SourceTypeError(
        f"the source yielded {type(chunk).__name__}, but only bytes-like chunks "
        "(bytes, bytearray, memoryview) can be uploaded"
        + ("; encode text first, e.g. text.encode()" if isinstance(chunk, str) else "")
    )


def owned(chunk: object) -> bytes:
    """A chunk as immutable bytes: a source may reuse its buffer once it yields again."""
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray):
        return bytes(chunk)
    if isinstance(chunk, memoryview):
        return chunk.tobytes()
    as_bytes_view(chunk)  # raises SourceTypeError naming the type
    raise AssertionError("unreachable")


class ChunkSource:
    """Sources that deliver chunks of their own sizes: assembled into parts.

    Chunks are taken as immutable ``bytes`` (a ``bytearray`` or ``memoryview``
    chunk is copied when it arrives, since a generator may reuse its buffer).
    A chunk at least as large as the part being filled is sliced without a
    copy; a part of chunks of :data:`GATHER_MIN` and more is the list of them
    (:class:`~streamx._gathered.Gathered`, no copy); once a smaller chunk shows
    up, the stream's parts are copied into part buffers (``gathers`` turns false).
    A gathered piece may be a view of a chunk split at a part boundary, which
    keeps the whole chunk alive until both parts are sent: at most one chunk per
    part more than the budget counts, as with a sliced chunk.
    """

    description = "stream"
    readahead = True  # staged up to high_water_mark ahead of the parts (see readahead.py)
    probes = True  # the head is peeked at before part 1 is reserved (see parts.py)
    grows = False  # parts take their budget as the bytes arrive (see parts.py)

    def __init__(self) -> None:
        self.size: int | None = None
        # parts are the chunks themselves (no copy), until a small chunk shows up
        self.gathers = True
        self._carry: memoryview | bytes = b""
        self._eof = False

    def read_ahead(self, limit: int, budget: MemoryBudget | None) -> ReadAhead | None:
        """Stage up to ``limit`` bytes ahead of the parts (see :mod:`.readahead`): the
        returned ReadAhead's ``pump`` fills it and this source reads from it from now on;
        ``None`` if this source is not read ahead."""
        if not self.readahead or limit <= 0:
            return None
        staged = ReadAhead(self._next_chunk, limit, budget=budget)
        self._next_chunk = staged.next_chunk  # type: ignore[method-assign]
        return staged

    async def _next_chunk(self) -> memoryview | bytes | None:
        """The next non-empty chunk, or None at the end."""
        raise NotImplementedError

    async def read(self, n: int, into: bytearray | None = None) -> PartData:
        steps = self._assemble(n, into)
        try:
            steps.send(None)
            while True:
                steps.send(await self._next_chunk())
        except StopIteration as done:
            return cast(PartData, done.value)

    async def peek(self, limit: int) -> None:
        """Read up to ``limit`` bytes ahead (before the first part); a stream that ends
        within them gets its ``size``, so its part is sized to what arrived."""
        steps = self._peeking(limit)
        try:
            steps.send(None)
            while True:
                steps.send(await self._next_chunk())
        except StopIteration:
            pass

    def _peeking(self, limit: int) -> Generator[None, memoryview | bytes | None, None]:
        pieces = [self._carry] if self._carry else []
        have = len(self._carry)
        while have <= limit and not self._eof:  # one chunk past it: an end at the limit shows
            chunk = yield
            if chunk is None:
                self._eof = True
            else:
                pieces.append(chunk)
                have += len(chunk)
        if len(pieces) > 1:
            self._carry = b"".join(pieces)
        elif pieces:
            self._carry = pieces[0]
        if self._eof:
            self.size = have

    def _assemble(
        self, n: int, into: bytearray | None
    ) -> Generator[None, memoryview | bytes | None, PartData]:
        """Cut the next ``n`` bytes; yields for each chunk it needs (sent None at the end)."""
        if not self._carry and not self._eof:
            chunk = yield
            if chunk is None:
                self._eof = True
            else:
                self._carry = chunk
        first = self._carry
        if len(first) >= n:
            # zero-copy: the part is a slice of an immutable chunk
            view = first if isinstance(first, memoryview) else memoryview(first)
            self._carry = view[n:] if len(first) > n else b""
            return first if len(first) == n else view[:n]
        # large chunks are gathered as they are (see _gathered.py); small ones are copied
        # into a buffer: a send and a checksum step per 4 KiB would cost more than a copy
        pieces: list[Piece] = []
        buf = None if self.gathers else self._buffer(n, into)
        got = 0
        while got < n:
            chunk = self._carry
            if not chunk:
                if self._eof:
                    break
                nxt = yield
                if nxt is None:
                    self._eof = True
                    break
                chunk = nxt
            take = min(len(chunk), n - got)
            view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
            if buf is None and take < GATHER_MIN and got + take < n:
                self.gathers = False  # from now on this stream's parts are copied
                buf = self._buffer(n, into)
                at = 0
                for piece in pieces:
                    buf[at : at + len(piece)] = piece
                    at += len(piece)
            if buf is None:
                pieces.append(chunk if take == len(chunk) else view[:take])
            else:
                buf[got : got + take] = view[:take]
            got += take
            self._carry = view[take:] if take < len(chunk) else b""
        if buf is None:
            if len(pieces) == 1:
                return pieces[0]
            return Gathered(pieces) if pieces else b""
        if got < n:  # the last part (a recycled buffer may still be exported: copy)
            return buf[:got]
        return buf

    @staticmethod
    def _buffer(n: int, into: bytearray | None) -> bytearray:
        return into if into is not None and len(into) == n else bytearray(n)

    async def read_some(self, n: int) -> Buffer:
        """Up to ``n`` bytes as soon as any arrived (the carried rest first); empty at the end."""
        if not self._carry and not self._eof:
            chunk = await self._next_chunk()
            if chunk is None:
                self._eof = True
            else:
                self._carry = chunk
        chunk = self._carry
        if len(chunk) <= n:
            self._carry = b""
            return chunk
        view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
        self._carry = view[n:]
        return view[:n]

    async def aclose(self) -> None:
        return None


class AsyncIterSource(ChunkSource):
    def __init__(self, iterable: AsyncIterable[Any]) -> None:
        super().__init__()
        self._iterable = iterable
        self._iter: AsyncIterator[Any] | None = None
        self.description = f"async iterable {type(iterable).__name__}"

    async def _next_chunk(self) -> memoryview | bytes | None:
        if self._iter is None:
            self._iter = aiter(self._iterable)
        while True:
            try:
                chunk = await anext(self._iter)
            except StopAsyncIteration:
                return None
            data = owned(chunk)
            if data:
                return data

    async def aclose(self) -> None:
        aclose = getattr(self._iter, "aclose", None)
        if aclose is not None:
            await aclose()


class SyncIterSource(ChunkSource):
    """A sync iterable, pulled in a worker thread a whole part at a time.

    One thread hop per part, not per chunk: the worker takes the chunks and
    copies them into the part's buffer itself (measured with 1 MiB chunks:
    a hop per chunk held a 4 GiB stream to ~1.5 GiB/s with the uploaders
    mostly idle). No read-ahead beyond the part being filled: the iterable
    runs in this process, so there is no far side to keep flowing.
    """

    readahead = False
    # No probe: it would join the head's chunks in a worker thread, whose malloc
    # arena keeps the memory (see read() below); parts are budgeted whole instead.
    probes = False

    def __init__(self, iterable: Iterable[Any]) -> None:
        super().__init__()
        self._iter: Iterator[Any] = iter(iterable)
        self.description = f"iterable {type(iterable).__name__}"

    def _next(self) -> memoryview | bytes | None:
        for chunk in self._iter:
            data = owned(chunk)
            if data:
                return data
        return None

    def _fill(self, n: int, into: bytearray | None) -> PartData:
        steps = self._assemble(n, into)
        try:
            steps.send(None)
            while True:
                steps.send(self._next())
        except StopIteration as done:
            return cast(PartData, done.value)

    async def read(self, n: int, into: bytearray | None = None) -> PartData:
        if not self.gathers and (into is None or len(into) != n):
            # allocated here, on the event loop's thread: a part buffer allocated in a
            # worker thread lands in that thread's malloc arena, which keeps the memory
            # after it is freed (64 concurrent uploads under a 128 MiB budget peaked at
            # 444 MiB RSS that way, 232 MiB this way). A stream of large chunks needs
            # no buffer: its parts are the chunks (one part of a small-chunked stream is
            # copied into a buffer of the thread's before the next ones come from here)
            into = bytearray(n)
        return await anyio.to_thread.run_sync(self._fill, n, into)

    async def aclose(self) -> None:
        close = getattr(self._iter, "close", None)
        if close is not None:
            close()


class ArrivingSource(AsyncIterSource):
    """An async iterable of chunks that arrive at their sender's pace (an HTTP request body).

    Parts grow with the bytes that arrived, taking the memory budget step by
    step (``parts.py``), and nothing is read ahead: while the part window is
    full the body is not read, and TCP slows the sender.
    """

    readahead = False
    grows = True


class AsyncReaderSource(ChunkSource):
    """Anything with ``async read(n)``: aiofiles, ``asyncio.StreamReader``, Starlette-like bodies."""

    _READ = 1024 * 1024

    def __init__(self, reader: Any) -> None:
        super().__init__()
        if getattr(reader, "closed", False) is True:
            raise ConfigError("the file object is closed")
        self._reader = reader
        self.description = f"async reader {type(reader).__name__}"

    async def _next_chunk(self) -> memoryview | bytes | None:
        chunk = await self._reader.read(self._READ)
        if not chunk:
            return None
        return owned(chunk)


class ByteStreamSource(ChunkSource):
    """An anyio ``ByteReceiveStream``."""

    def __init__(self, stream: ByteReceiveStream) -> None:
        super().__init__()
        self._stream = stream
        self.description = f"byte stream {type(stream).__name__}"

    async def _next_chunk(self) -> memoryview | bytes | None:
        try:
            chunk = await self._stream.receive(1024 * 1024)
        except anyio.EndOfStream:
            return None
        return owned(chunk)
