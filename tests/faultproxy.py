"""A loopback HTTP/1.1 proxy that injects faults between a client and a real S3 server.

::

    async with FaultProxy(server.endpoint_url) as proxy:
        proxy.add(Fault("status", op="UploadPart", status=503, code="SlowDown"))
        async with Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as e: ...

Each client connection gets its own upstream connection; requests are read
one at a time (keep-alive works), matched against the :class:`Fault` rules in
the order they were added, and forwarded. The first rule that matches and
still has quota (``skip``, ``times``) acts on that request:

======== ============ =============================================================
action   phase        what happens
======== ============ =============================================================
reset    request      after ``at`` bytes of the request body (all of a shorter body: the
                      request never reaches the server), the connection is reset (RST)
reset    response     after ``at`` bytes of the response body (``at=0``: before the
                      status line), the connection is reset
stall    request      after ``at`` bytes of the request body, stop reading for ``seconds``
                      (``None``: until the client gives up), then carry on
stall    response     hold the server's response for ``seconds`` (``None``: forever)
status   (request)    read the whole body, do not forward, answer ``status`` with an
                      S3 error document (``code``: SlowDown, InternalError, ...)
truncate response     send the headers and ``at`` bytes of the body (``at=0``: nothing
                      at all), then close (FIN)
corrupt  request      flip one bit of the request body byte at offset ``at``, forward
corrupt  response     flip one bit of the response body byte at offset ``at`` (and, if
                      ``header`` is given, set it as the ``header`` action does)
header   response     forward the server's answer with response header ``header`` set to
                      ``value`` (a store that reports something else, e.g. a checksum)
======== ============ =============================================================

Requests are also recorded (:attr:`FaultProxy.requests`) with their S3
operation, so a test can count what was sent (e.g. UploadPart body bytes).
Only ``Content-Length`` and chunked bodies are understood; that is all the
AWS SDKs send over plain http.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

_CHUNK = 256 * 1024


@dataclass
class Request:
    """What the proxy saw of one request (its body length is filled in once read)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body_bytes: int = 0
    status: int | None = None  # the status the client was given, if any
    fault: str | None = None

    @property
    def op(self) -> str:
        """The S3 operation, from the method and the query (enough for the calls streamx makes)."""
        q, m = self.query, self.method
        if m == "PUT":
            if "partNumber" in q and "uploadId" in q:
                return "UploadPartCopy" if "x-amz-copy-source" in self.headers else "UploadPart"
            if "x-amz-copy-source" in self.headers:
                return "CopyObject"
            return "PutObject" if self.path.strip("/").count("/") >= 1 else "CreateBucket"
        if m == "POST":
            if "uploads" in q:
                return "CreateMultipartUpload"
            if "uploadId" in q:
                return "CompleteMultipartUpload"
            if "delete" in q:
                return "DeleteObjects"
        if m == "DELETE":
            return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
        if m == "HEAD":
            return "HeadObject"
        if m == "GET":
            if "uploadId" in q:
                return "ListParts"
            if "uploads" in q:
                return "ListMultipartUploads"
            if self.path.strip("/").count("/") == 0:
                return "ListObjects"
            return "GetObject"
        return m

    @property
    def part_number(self) -> int | None:
        value = self.query.get("partNumber")
        return int(value) if value is not None else None


@dataclass
class Fault:
    """One fault rule; see the module docstring for the actions."""

    action: str
    op: str | None = None  # S3 operation name, e.g. "UploadPart"
    method: str | None = None
    path: str | None = None  # regular expression searched in the path
    query: dict[str, str | None] | None = None  # required params (None: just present)
    where: Callable[[Request], bool] | None = None  # any other condition
    phase: str = "request"
    at: int = 0  # byte offset in the body
    seconds: float | None = None
    status: int = 503
    code: str = "SlowDown"
    message: str = "injected by FaultProxy"
    header: str = ""  # the "header" action: this response header ...
    value: str = ""  # ... gets this value
    skip: int = 0  # let this many matching requests through first
    times: int | None = 1  # then act on this many (None: all)
    matched: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        allowed = {
            ("reset", "request"), ("reset", "response"), ("stall", "request"),
            ("stall", "response"), ("status", "request"), ("truncate", "response"),
            ("corrupt", "request"), ("corrupt", "response"), ("header", "response"),
        }  # fmt: skip
        if (self.action, self.phase) not in allowed:
            raise ValueError(f"unknown fault {self.action!r} in phase {self.phase!r}")

    def matches(self, req: Request) -> bool:
        if self.op is not None and req.op != self.op:
            return False
        if self.method is not None and req.method != self.method:
            return False
        if self.path is not None and not re.search(self.path, req.path):
            return False
        for name, value in (self.query or {}).items():
            if name not in req.query or (value is not None and req.query[name] != value):
                return False
        return self.where is None or self.where(req)

    def take(self) -> bool:
        """Count a match; true if this one is to be acted on."""
        self.matched += 1
        if self.matched <= self.skip:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True


class _Reset(Exception):
    """Abort both connections of this client connection."""


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _parse_head(head: bytes) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    raw = [tuple(line.split(":", 1)) for line in lines[1:] if line]
    pairs = [(k.strip(), v.strip()) for k, v in raw]
    return lines[0], {k.lower(): v for k, v in pairs}, pairs


def _build_head(first: str, pairs: list[tuple[str, str]]) -> bytes:
    return (first + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n").encode("latin-1")


def _error_response(status: int, code: str, message: str) -> bytes:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>faultproxy</RequestId></Error>"
    ).encode()
    reason = {500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    head = _build_head(
        f"HTTP/1.1 {status} {reason}",
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
    )
    return head + body


class FaultProxy:
    """The proxy; ``url`` is its endpoint once entered (``async with``)."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.url = ""
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, *faults: Fault) -> FaultProxy:
        self.faults.extend(faults)
        return self

    def clear(self) -> None:
        self.faults.clear()

    def sent(self, op: str) -> list[Request]:
        """Requests of one S3 operation that the proxy forwarded or answered."""
        return [r for r in self.requests if r.op == op]

    def body_bytes(self, op: str) -> int:
        return sum(r.body_bytes for r in self.sent(op))

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream)
                await self._exchange(head, reader, writer, *upstream)
        except _Reset:
            _rst(writer)
            writer = None  # type: ignore[assignment]
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # the proxy is closing (asyncio's server callback would log a cancellation)
        finally:
            if upstream is not None:
                upstream[1].transport.abort()
            if writer is not None:
                writer.close()
            self._tasks.discard(task)

    def _match(self, req: Request, phase: str | None = None) -> Fault | None:
        for fault in self.faults:
            if fault.matches(req) and fault.take():
                return fault
        return None

    async def _exchange(
        self,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        first, headers, pairs = _parse_head(head)
        method, target, _ = first.split(" ", 2)
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        req = Request(method, url.path, query, headers)
        self.requests.append(req)
        fault = self._match(req)
        req.fault = fault.action if fault else None

        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            pairs = [(k, v) for k, v in pairs if k.lower() != "expect"]
        body = await self._read_body(reader, headers, fault if fault else None, req)

        if fault is not None and fault.action == "status":
            req.status = fault.status
            writer.write(_error_response(fault.status, fault.code, fault.message))
            await writer.drain()
            return

        up_writer.write(_build_head(first, pairs) + body)
        await up_writer.drain()
        rfirst, rheaders, rpairs = _parse_head(await up_reader.readuntil(b"\r\n\r\n"))
        status = int(rfirst.split(" ", 2)[1])
        req.status = status
        response_fault = fault if fault is not None and fault.phase == "response" else None
        if response_fault is not None and response_fault.action == "stall":
            await self._stall(response_fault.seconds, reader)
        if response_fault is not None and response_fault.action in ("reset", "truncate"):
            if response_fault.at == 0:  # the server's answer is lost entirely
                if response_fault.action == "reset":
                    raise _Reset
                writer.close()
                raise ConnectionError("closed by FaultProxy before the response")
        if response_fault is not None and response_fault.header:  # "header", or "corrupt" too
            name = response_fault.header.lower()
            rpairs = [(k, v) for k, v in rpairs if k.lower() != name]
            rpairs.append((response_fault.header, response_fault.value))
        writer.write(_build_head(rfirst, rpairs))
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            await writer.drain()
            return
        await self._relay_response(up_reader, writer, rheaders, response_fault)

    async def _stall(self, seconds: float | None, reader: asyncio.StreamReader) -> None:
        """Wait ``seconds`` without reading, or forever (until the proxy closes)."""
        await asyncio.sleep(seconds if seconds is not None else 3600)

    async def _read_body(
        self,
        reader: asyncio.StreamReader,
        headers: dict[str, str],
        fault: Fault | None,
        req: Request,
    ) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            raw = await _read_chunked(reader)
            req.body_bytes = len(raw)
            return raw
        length = int(headers.get("content-length", "0") or 0)
        act = fault.action if fault is not None and fault.phase == "request" else None
        body = bytearray()
        while len(body) < length:
            if act in ("reset", "stall") and len(body) >= fault.at:  # type: ignore[union-attr]
                req.body_bytes = len(body)
                if act == "reset":
                    raise _Reset
                await self._stall(fault.seconds, reader)  # type: ignore[union-attr]
                act = None
            want = length - len(body)
            if act in ("reset", "stall"):
                want = min(want, fault.at - len(body))  # type: ignore[union-attr]
            chunk = await reader.read(min(want, _CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(body), length)
            body += chunk
        req.body_bytes = len(body)
        if act in ("reset", "stall"):  # ``at`` lies beyond a short body: act before forwarding
            if act == "reset":
                raise _Reset
            await self._stall(fault.seconds, reader)  # type: ignore[union-attr]
        if act == "corrupt" and fault is not None and fault.at < len(body):
            body[fault.at] ^= 0x01
        return bytes(body)

    async def _relay_response(
        self,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
        fault: Fault | None,
    ) -> None:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            writer.write(await _read_chunked(up_reader))  # faults apply to sized bodies only
            await writer.drain()
            return
        length = int(headers.get("content-length", "-1"))
        sent = 0
        while length < 0 or sent < length:
            want = _CHUNK if length < 0 else min(_CHUNK, length - sent)
            if fault is not None and fault.action in ("reset", "truncate") and sent >= fault.at:
                await writer.drain()
                if fault.action == "reset":
                    raise _Reset
                writer.close()
                raise ConnectionError("truncated by FaultProxy")
            if fault is not None and fault.action in ("reset", "truncate"):
                want = min(want, fault.at - sent)
            chunk = await up_reader.read(want)
            if not chunk:
                break
            if (
                fault is not None
                and fault.action == "corrupt"
                and sent <= fault.at < sent + len(chunk)
            ):
                mutable = bytearray(chunk)
                mutable[fault.at - sent] ^= 0x01
                chunk = bytes(mutable)
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A whole chunked body, returned still chunk-encoded (to forward as is)."""
    out = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        out += line
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:
                trailer = await reader.readuntil(b"\r\n")
                out += trailer
                if trailer == b"\r\n":
                    return bytes(out)
        out += await reader.readexactly(size + 2)


class Sleeps:
    """An injectable sleep for :class:`streamx._retry.RetryPolicy`: records, never waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


# -- documented answers of stores no local server reproduces ------------------------------------


def checksum_headers(req: Request) -> list[str]:
    return [h for h in req.headers if h.startswith("x-amz-checksum-") and h != "x-amz-checksum-type"]


_UPLOAD_OPS = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}


def b2_checksum_rejection() -> Fault:
    """Backblaze B2's S3 API answers 400 InvalidArgument to ``x-amz-checksum-*`` headers
    ("Unsupported header 'x-amz-checksum-crc32' received for this API call": reported in
    home-assistant/core#143995 and jschneier/django-storages#1498, on uploads). Emulated
    on the upload operations those reports are about; DeleteObjects, whose checksum
    botocore itself adds, is left alone (its answer on B2 is not documented there)."""
    return Fault(
        "status",
        where=lambda r: r.op in _UPLOAD_OPS
        and bool(checksum_headers(r) or "x-amz-sdk-checksum-algorithm" in r.headers),
        status=400,
        code="InvalidArgument",
        message="Unsupported header 'x-amz-checksum-crc32c' received for this API call.",
        times=None,
    )


def r2_checksum_type_rules() -> Fault:
    """Cloudflare R2 verifies CRC64NVME only as FULL_OBJECT and CRC32, CRC32C, SHA1 and
    SHA256 only as COMPOSITE (the checksum types table of
    https://developers.cloudflare.com/r2/api/s3/api/, where the other combinations are marked
    "not implemented"). The emulation refuses a CreateMultipartUpload asking for one (400
    InvalidRequest): the safe reading, since a store that quietly ignored the type would
    also be handled by streamx's composite check."""

    def refused(req: Request) -> bool:
        if req.op != "CreateMultipartUpload":
            return False
        algorithm = req.headers.get("x-amz-checksum-algorithm", "").upper()
        kind = req.headers.get("x-amz-checksum-type", "COMPOSITE").upper()
        if not algorithm:
            return False
        return (algorithm == "CRC64NVME") != (kind == "FULL_OBJECT")

    return Fault(
        "status",
        where=refused,
        status=400,
        code="InvalidRequest",
        message="checksum algorithm and checksum type combination is not supported",
        times=None,
    )
