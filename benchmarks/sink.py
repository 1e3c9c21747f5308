"""A minimal loopback S3 endpoint that reads and discards request bodies, fast.

Why: against a real server (rclone, moto) the server's own CPU sets the pace
on a two-core machine, so a client's cost is invisible. The sink accepts what
upload clients send and throws the bytes away without checking signatures or
checksums, so what remains is the client's own cost.

Supported (path-style and virtual-host-less only, which is what the harness uses):

- ``PUT /bucket`` (CreateBucket), ``HEAD /bucket``, ``GET /bucket?location``
- ``POST /b/k?uploads`` CreateMultipartUpload, ``PUT /b/k?partNumber&uploadId``
  UploadPart, ``POST /b/k?uploadId`` CompleteMultipartUpload,
  ``DELETE /b/k?uploadId`` AbortMultipartUpload, ``GET /b?uploads`` (empty)
- ``PUT /b/k`` PutObject, ``DELETE /b/k``
- ``HEAD``/``GET /b/k`` (with ``Range``): the object's bytes are a fixed
  pseudo-random pattern, as long as what was uploaded under that key, or as
  the number in a key containing ``size-<bytes>`` (e.g. ``data/size-1073741824``).
  Byte ``i`` of every object is ``PATTERN[i % 1 MiB]`` (see :func:`pattern_bytes`).
- ``GET /__stats``: JSON with the sink's CPU seconds and bytes received.

Bodies are read straight into one reusable buffer (``asyncio.BufferedProtocol``),
so the sink costs about 0.1-0.2 CPU-s per GiB. ``Expect: 100-continue`` is answered.

Run: ``python benchmarks/sink.py --port 9000`` (prints ``READY <port>`` when listening).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import sys
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MiB = 1024 * 1024
_PATTERN_SEED = 20240601
_SIZE_IN_KEY = re.compile(r"size-(\d+)")
_DEBUG = bool(os.environ.get("SINK_DEBUG"))


def pattern_bytes(n: int = MiB) -> bytes:
    """The 1 MiB block every GET serves from (deterministic, incompressible)."""
    return random.Random(_PATTERN_SEED).randbytes(n)


PATTERN = pattern_bytes()
_DOUBLE = memoryview(PATTERN + PATTERN)  # any window of <= 1 MiB is one contiguous slice


def expected_bytes(offset: int, length: int) -> bytes:
    """The bytes of any sink object in ``[offset, offset + length)`` (for checks)."""
    out = bytearray()
    while len(out) < length:
        start = (offset + len(out)) % MiB
        take = min(MiB, length - len(out))
        out += _DOUBLE[start : start + take]
    return bytes(out)


class Stats:
    bytes_in = 0
    requests = 0
    objects: dict[str, int] = {}  # noqa: RUF012 - one process-wide store
    uploads: dict[str, int] = {}  # noqa: RUF012 - upload id -> bytes so far


def _xml(body: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()


def _etag() -> str:
    return '"' + uuid.uuid4().hex + '"'


class S3Sink(asyncio.BufferedProtocol):
    BUF = 1 * MiB

    def __init__(self) -> None:
        self.buf = bytearray(self.BUF)
        self.view = memoryview(self.buf)
        self.filled = 0  # header bytes in buf
        self.remaining = 0  # body bytes still to discard
        self.chunked = False
        self.request: tuple[str, str, dict[str, str]] | None = None
        self.transport: asyncio.Transport | None = None
        self.can_write: asyncio.Event = asyncio.Event()
        self.can_write.set()
        self.sending: asyncio.Task[None] | None = None
        self.queue: list[tuple[str, str, dict[str, str], int]] = []
        self.chunk_left = 0
        self.need_crlf = False
        self.body_len = 0

    # -- asyncio plumbing -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.can_write.set()
        if self.sending is not None:
            self.sending.cancel()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.request is not None and not self.chunked:
            return self.view[: min(self.BUF, self.remaining)]
        if self.filled >= len(self.buf):
            self.buf.extend(bytes(len(self.buf)))  # a huge header or chunk framing
            self.view = memoryview(self.buf)
        return self.view[self.filled :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.request is not None and not self.chunked:
            self.remaining -= nbytes
            Stats.bytes_in += nbytes
            if self.remaining == 0:
                self._body_done(0)
            return
        self.filled += nbytes
        self._parse()

    # -- parsing ----------------------------------------------------------------------
    def _parse(self) -> None:
        while True:
            if self.request is None:
                end = self.buf.find(b"\r\n\r\n", 0, self.filled)
                if end < 0:
                    return
                head = bytes(self.buf[:end]).decode("latin-1")
                self._consume(end + 4)
                lines = head.split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.request = (method, target, headers)
                if _DEBUG:
                    print(f"{time.monotonic():.3f} {method} {target} {headers}", file=sys.stderr)
                self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
                self.remaining = 0 if self.chunked else int(headers.get("content-length", "0"))
                if headers.get("expect", "").lower() == "100-continue" and self.transport:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.body_len = 0
            if self.chunked:
                if not self._parse_chunks():
                    return
                continue
            take = min(self.remaining, self.filled)
            self._consume(take)
            self.remaining -= take
            Stats.bytes_in += take
            self.body_len = take
            if self.remaining:
                # the rest of the body goes straight into get_buffer's view
                return
            self._body_done(0)
            if not self.filled:
                return

    def _parse_chunks(self) -> bool:
        """Discard chunked framing and data in ``buf``; True once the last chunk is read."""
        while True:
            if self.chunk_left:
                take = min(self.chunk_left, self.filled)
                self._consume(take)
                self.chunk_left -= take
                Stats.bytes_in += take
                if self.chunk_left:
                    return False
                self.need_crlf = True
            if self.need_crlf:
                if self.filled < 2:
                    return False
                self._consume(2)
                self.need_crlf = False
            eol = self.buf.find(b"\r\n", 0, self.filled)
            if eol < 0:
                return False
            size = int(bytes(self.buf[:eol]).split(b";")[0], 16)
            if size == 0:
                end = self.buf.find(b"\r\n\r\n", eol, self.filled)  # after any trailers
                if end < 0:
                    return False
                self._consume(end + 4)
                self._body_done(0)
                return True
            self._consume(eol + 2)
            self.chunk_left = size

    def _consume(self, n: int) -> None:
        if n:
            rest = self.filled - n
            if rest:
                self.buf[:rest] = self.buf[n : self.filled]
            self.filled = rest

    def _body_done(self, _: int) -> None:
        assert self.request is not None
        method, target, headers = self.request
        length = int(headers.get("content-length", "0") or 0)
        self.request = None
        self.chunked = False
        self.remaining = 0
        self.queue.append((method, target, headers, length))
        if _DEBUG:
            print(f"{time.monotonic():.3f} done {method} {target[:60]}", file=sys.stderr)
        if self.sending is None or self.sending.done():
            self.sending = asyncio.get_running_loop().create_task(self._answer_all())

    # -- answers ------------------------------------------------------------------------
    async def _answer_all(self) -> None:
        while self.queue:
            method, target, headers, length = self.queue.pop(0)
            Stats.requests += 1
            try:
                await self._answer(method, target, headers, length)
            except Exception as exc:  # a bug here must not kill the connection silently
                print(f"sink error: {type(exc).__name__}: {exc}", file=sys.stderr)
                self._send(500, b"", {})

    def _send(self, status: int, body: bytes, headers: dict[str, str], length: int = -1) -> None:
        reason = {200: "OK", 204: "No Content", 206: "Partial Content", 404: "Not Found"}.get(
            status, "Error"
        )
        lines = [f"HTTP/1.1 {status} {reason}"]
        headers.setdefault("Content-Length", str(len(body) if length < 0 else length))
        headers.setdefault("x-amz-request-id", "sink")
        headers.setdefault("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
        lines += [f"{k}: {v}" for k, v in headers.items()]
        assert self.transport is not None
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _object_size(self, key: str) -> int | None:
        if key in Stats.objects:
            return Stats.objects[key]
        match = _SIZE_IN_KEY.search(key)
        return int(match.group(1)) if match else None

    async def _answer(self, method: str, target: str, headers: dict[str, str], length: int) -> None:
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        path = unquote(url.path)
        if path == "/__stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            body = json.dumps(
                {
                    "cpu_seconds": usage.ru_utime + usage.ru_stime,
                    "bytes_in": Stats.bytes_in,
                    "requests": Stats.requests,
                    "maxrss_kib": usage.ru_maxrss,
                }
            ).encode()
            self._send(200, body, {"Content-Type": "application/json"})
            return
        bucket, _, key = path.lstrip("/").partition("/")
        xml = {"Content-Type": "application/xml"}
        if not key:
            if "uploads" in query:
                self._send(
                    200,
                    _xml(
                        f"<ListMultipartUploadsResult><Bucket>{bucket}</Bucket>"
                        "<IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"
                    ),
                    xml,
                )
            elif "location" in query:
                self._send(200, _xml("<LocationConstraint/>"), xml)
            elif method == "GET":
                prefix = query.get("prefix", [""])[0]
                items = "".join(
                    f"<Contents><Key>{k}</Key><Size>{s}</Size><ETag>&quot;x&quot;</ETag>"
                    "<LastModified>2024-01-01T00:00:00.000Z</LastModified></Contents>"
                    for k, s in sorted(Stats.objects.items())
                    if k.startswith(f"{bucket}/{prefix}")
                ).replace(f"<Key>{bucket}/", "<Key>")
                self._send(
                    200,
                    _xml(
                        f"<ListBucketResult><Name>{bucket}</Name><IsTruncated>false</IsTruncated>"
                        f"<KeyCount>{items.count('<Contents>')}</KeyCount>{items}</ListBucketResult>"
                    ),
                    xml,
                )
            else:
                self._send(200, b"", {})
            return
        full = f"{bucket}/{key}"
        if method == "POST" and "uploads" in query:
            upload_id = uuid.uuid4().hex
            Stats.uploads[upload_id] = 0
            self._send(
                200,
                _xml(
                    f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                    f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
                ),
                xml,
            )
        elif method == "PUT" and "uploadId" in query:
            upload_id = query["uploadId"][0]
            Stats.uploads[upload_id] = Stats.uploads.get(upload_id, 0) + length
            self._send(200, b"", {"ETag": _etag()})
        elif method == "POST" and "uploadId" in query:
            size = Stats.uploads.pop(query["uploadId"][0], 0)
            Stats.objects[full] = size
            self._send(
                200,
                _xml(
                    f"<CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                    f"<ETag>&quot;{uuid.uuid4().hex}-1&quot;</ETag></CompleteMultipartUploadResult>"
                ),
                xml,
            )
        elif method == "DELETE":
            if "uploadId" in query:
                Stats.uploads.pop(query["uploadId"][0], None)
            else:
                Stats.objects.pop(full, None)
            self._send(204, b"", {})
        elif method == "PUT":
            Stats.objects[full] = length
            self._send(200, b"", {"ETag": _etag()})
        elif method in ("GET", "HEAD"):
            size = self._object_size(full)
            if size is None:
                self._send(
                    404,
                    _xml("<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>"),
                    xml,
                )
                return
            await self._serve(method, size, headers.get("range"))
        else:
            self._send(405, b"", {})

    async def _serve(self, method: str, size: int, range_header: str | None) -> None:
        start, end = 0, size - 1
        status = 200
        extra = {
            "ETag": f'"sink-{size}"',
            "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        if range_header and range_header.startswith("bytes="):
            first, _, last = range_header[6:].partition("-")
            if first:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            else:  # suffix range
                start = max(0, size - int(last))
            status = 206
            extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        self._send(status, b"", extra, length=length)
        if method == "HEAD":
            return
        assert self.transport is not None
        pos = start
        while pos <= end:
            if not self.can_write.is_set():
                await self.can_write.wait()
            if self.transport.is_closing():
                return
            off = pos % MiB
            take = min(MiB, end + 1 - pos)
            self.transport.write(_DOUBLE[off : off + take])
            pos += take


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(S3Sink, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found]

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        runner(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
