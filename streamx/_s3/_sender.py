"""The part sender: one method that carries an UploadPart's or PutObject's body.

:class:`PartSender` has the shape of httpx's ``handle_async_request``: a
:class:`PartRequest` in, the operation's parsed answer out (or botocore's
``ClientError`` / ``BotoCoreError``, which :mod:`._translate` maps). The S3 layer
(:class:`streamx._s3.S3`) picks the sender when the client is built; the upload
stages never know which one runs. The same sender carries the bodies that come back:
a small object's GET read whole (:meth:`PartSender.fetch`) and a download's ranges
read into their buffers (:meth:`PartSender.fetch_into`, :class:`RangeRead`), and
CreateMultipartUpload / CompleteMultipartUpload (:meth:`PartSender.call`). Two
implementations:

- :class:`AiobotocoreSender` (here): the client's own request path, the body
  handed to aiohttp as a :class:`BufferBody`;
- :class:`streamx._s3._threaded.ThreadSender`: the event loop signs, a worker
  thread sends the part's memory over urllib3's pools (:mod:`._pool`).

Tests plug in small fakes (tests/test_s3_sender.py) to drive cancellation and
faults without a server.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .._errors import NetworkError
from .._gathered import Gathered, hexdigest

#: The operations a part sender carries.
OPERATIONS = ("UploadPart", "PutObject")


@dataclass(frozen=True, slots=True)
class PartRequest:
    """One request with a body in memory.

    ``params`` are the API call's (``Bucket``, ``Key``, for UploadPart ``UploadId`` and
    ``PartNumber``, and header arguments such as ``ContentType`` or a checksum), without
    ``Body``. ``progress`` is the stall detector's signal: a sender calls it, on the event
    loop's thread or through :meth:`PartSender`'s own hand-off, whenever bytes move.
    ``stall_timeout`` lets a sender bound its own blocking I/O by the same limit, and
    ``time_limit`` (the attempt's ``part_timeout``) by that one: a request given up on
    must not keep a thread busy much longer than the caller waited for it.
    """

    operation: str
    params: Mapping[str, Any]
    body: memoryview | Gathered  # one buffer, or a stream's chunks (see _gathered.py)
    progress: Callable[[], None]
    stall_timeout: float | None = None
    time_limit: float | None = None


@dataclass(slots=True)
class RangeRead:
    """One GET whose body is read into memory the caller owns (a download's range).

    ``accept`` is given the 2xx answer's parsed headers before a byte of the body is
    read and returns where the body goes, exactly its length (or raises: another
    version, other bytes than asked). It runs in the thread that reads (worker-thread
    sender) or on the loop, so it must only check and allocate. ``received`` counts the
    body's bytes written so far, also after a failure: a retry asks only for the rest.
    ``progress``, ``stall_timeout`` and ``time_limit`` are as :class:`PartRequest`'s.
    """

    params: Mapping[str, Any]  # GetObject's, but Bucket and Key (Range, IfMatch ...)
    accept: Callable[[Mapping[str, Any]], memoryview]
    progress: Callable[[], None]
    stall_timeout: float | None = None
    time_limit: float | None = None
    received: int = 0


class PartSender(Protocol):
    async def send(self, request: PartRequest) -> dict[str, Any]:
        """Send ``request``; the parsed answer (``ETag``, checksums ...), or raise."""
        ...

    async def fetch(
        self, bucket: str, key: str, params: Mapping[str, Any], *, md5: bool = False
    ) -> dict[str, Any]:
        """GetObject of a small object, its body read whole: the parsed answer, ``Body``
        the bytes; with ``md5``, ``BodyMD5`` their MD5 (hex)."""
        ...

    async def fetch_into(self, bucket: str, key: str, read: RangeRead) -> dict[str, Any]:
        """GetObject with its body read into the memory ``read.accept`` gives: the parsed
        answer (no ``Body``); a body cut short raises :class:`~streamx.NetworkError`."""
        ...

    async def open_get(self, bucket: str, key: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """GetObject whose ``Body`` the caller reads (``await body.read(n)``) and closes
        (``body.close()``, also from the garbage collector)."""
        ...

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """CreateMultipartUpload, CompleteMultipartUpload or HeadObject: the parsed answer."""
        ...

    def close(self) -> None:
        """Release connections (the engine is closing)."""
        ...


_MIN_READ = 1024 * 1024
_READ = 1024 * 1024  # most bytes asked of aiohttp per read of a GET's body


class BufferBody(io.BytesIO):
    """A bytes-like request body as a read-only, zero-copy file object.

    Why: handed a ``bytearray`` (or ``bytes``, which botocore turns into a
    ``BytesIO`` copy), aiohttp writes the whole part to the transport at once,
    and the transport then keeps the unsent rest in its own buffer, copying it
    again and again as the socket drains: about 2 CPU-s per GiB more than
    writing it piece by piece (measured against benchmarks/sink.py). A
    ``BytesIO`` subclass is sent by aiohttp in chunks, with backpressure; this
    one never fills the ``BytesIO`` buffer: each read is a slice of the
    caller's memory. It also passes botocore's parameter validation, which
    rejects ``memoryview``, so a view is no longer copied with ``tobytes()``.
    """

    def __init__(
        self, data: bytes | bytearray | memoryview, on_read: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        self._pos = 0
        self._on_read = on_read  # the stall detector's "bytes moved" signal

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int | None = -1) -> Any:
        if self._on_read is not None:
            self._on_read()
        # at least 1 MiB a read: aiohttp asks for 256 KiB, and every read costs a loop turn
        if size is not None and 0 <= size < _MIN_READ:
            size = _MIN_READ
        end = (
            len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        )
        chunk = self._view[self._pos : end]
        self._pos = end
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, min(len(self._view), base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def getbuffer(self) -> memoryview:
        return self._view[:]

    def getvalue(self) -> bytes:
        return self._view.tobytes()


_SMALL_BODY = 64 * 1024  # below this one write is cheapest: pass the bytes themselves


def request_body(data: Any, on_read: Callable[[], None] | None = None) -> Any:
    """The request body for ``data``; bytes-like bodies go out zero-copy (see BufferBody),
    a stream's gathered chunks joined first (this path wants one buffer)."""
    if isinstance(data, Gathered):
        data = bytes(data)
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) >= _SMALL_BODY or on_read is not None:
            return BufferBody(data, on_read)
        return data.tobytes() if isinstance(data, memoryview) else data
    return data


class AiobotocoreSender:
    """Parts through the client's own request path (aiohttp)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def send(self, request: PartRequest) -> dict[str, Any]:
        watched = request.stall_timeout is not None and len(request.body) > 0
        body = request_body(request.body, request.progress if watched else None)
        if request.operation == "UploadPart":
            call = self.client.upload_part
            extra: dict[str, Any] = {"ContentLength": len(request.body)}
        elif request.operation == "PutObject":
            call, extra = self.client.put_object, {}
        else:
            raise ValueError(f"not a part operation: {request.operation}")
        return dict(await call(Body=body, **request.params, **extra))

    async def fetch(
        self, bucket: str, key: str, params: Mapping[str, Any], *, md5: bool = False
    ) -> dict[str, Any]:
        response = dict(await self.client.get_object(Bucket=bucket, Key=key, **params))
        body = response["Body"]
        try:
            data = response["Body"] = bytes(await body.read())
        finally:
            body.close()
        if md5:
            response["BodyMD5"] = hexdigest("md5", data)
        return response

    async def fetch_into(self, bucket: str, key: str, read: RangeRead) -> dict[str, Any]:
        response = dict(await self.client.get_object(Bucket=bucket, Key=key, **read.params))
        body = response.pop("Body")
        try:
            read.progress()
            view = read.accept(response)
            try:
                while read.received < len(view):
                    got = read.received
                    chunk = await body.read(min(len(view) - got, _READ))
                    if not chunk:
                        raise NetworkError(f"the connection ended after byte {got} of {len(view)}")
                    view[got : got + len(chunk)] = chunk
                    read.received = got + len(chunk)
                    read.progress()
            finally:
                view.release()
        finally:
            body.close()
        return response

    async def open_get(self, bucket: str, key: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return dict(await self.client.get_object(Bucket=bucket, Key=key, **params))

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        method = {
            "CreateMultipartUpload": self.client.create_multipart_upload,
            "CompleteMultipartUpload": self.client.complete_multipart_upload,
            "HeadObject": self.client.head_object,
        }[operation]
        return dict(await method(**params))

    def close(self) -> None:
        pass


__all__ = [
    "OPERATIONS",
    "AiobotocoreSender",
    "BufferBody",
    "PartRequest",
    "PartSender",
    "RangeRead",
]
