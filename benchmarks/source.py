"""A loopback S3 *source*: serves GET, HEAD and ranged GET of synthetic objects, cheaply.

The counterpart of ``sink.py`` for downloads. Against ``rclone serve s3`` the
server's CPU (reading its disk, hashing) sets the pace on a two-core machine,
so a download cell says little about the client. This server holds one 2 MiB
pattern in a ``memfd`` and answers every GET with ``os.sendfile`` from it
(no copy through Python, the GIL released), one thread per connection, so it
costs a few hundredths of a CPU-second per GiB and the client's own cost shows.

Objects: every key containing ``size-<bytes>`` (``bench/size-16777216``) is an
object of that many bytes whose byte ``i`` is ``PATTERN[i % 1 MiB]`` (the same
pattern as the sink's, :func:`sink.pattern_bytes`). Other keys answer 404.
Headers, as S3 sends them: ``ETag`` (stable per size), ``Last-Modified``,
``Accept-Ranges``, ``Content-Range`` on 206, and, when the request asks for
checksums (``x-amz-checksum-mode: ENABLED``) and reads the whole object,
``x-amz-checksum-crc32`` with ``x-amz-checksum-type: FULL_OBJECT`` (computed
once per size and cached; a ranged GET gets none, as on S3). ``If-Match``
with another ETag answers 412. Bucket-level requests (create, head,
location) succeed and do nothing.

Run: ``python benchmarks/source.py --port 0`` (prints ``READY <port>``).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import socket
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

sys.path.insert(0, os.path.dirname(__file__))
from sink import PATTERN

MiB = 1024 * 1024
_SIZE_IN_KEY = re.compile(r"size-(\d+)")
_LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"


def _pattern_fd() -> int:
    """A memfd holding the pattern twice: any window of <= 1 MiB is one contiguous range."""
    fd = os.memfd_create("streamx-bench-source")
    os.write(fd, PATTERN + PATTERN)
    return fd


_FD = _pattern_fd()
_crc_cache: dict[int, str] = {}
_crc_lock = threading.Lock()


def full_crc32(size: int) -> str:
    """The base64 CRC32 of an object of ``size`` bytes (computed once per size)."""
    with _crc_lock:
        if size not in _crc_cache:
            crc, whole, rest = 0, size // MiB, size % MiB
            for _ in range(whole):
                crc = zlib.crc32(PATTERN, crc)
            crc = zlib.crc32(PATTERN[:rest], crc)
            _crc_cache[size] = base64.b64encode(crc.to_bytes(4, "big")).decode()
        return _crc_cache[size]


def etag_of(size: int) -> str:
    return f'"source-{size:x}"'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "streamx-bench-source"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            got = self.rfile.read(min(length, MiB))
            if not got:
                break
            length -= len(got)

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-request-id", "source")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _bucket_level(self) -> None:
        xml = {"Content-Type": "application/xml"}
        if "location" in urlsplit(self.path).query:
            self._reply(200, b'<?xml version="1.0"?><LocationConstraint/>', xml)
        else:
            self._reply(200)

    def do_PUT(self) -> None:
        self._drain_body()
        self._reply(200)

    def do_DELETE(self) -> None:
        self._reply(204)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        _, _, key = path.lstrip("/").partition("/")
        if not key:
            self._bucket_level()
            return
        match = _SIZE_IN_KEY.search(key)
        if match is None:
            body = b"<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>"
            self._reply(404, body, {"Content-Type": "application/xml"})
            return
        self._serve(int(match.group(1)))

    def _serve(self, size: int) -> None:
        etag = etag_of(size)
        if_match = self.headers.get("If-Match")
        if if_match and if_match.strip() not in (etag, "*"):
            body = b"<Error><Code>PreconditionFailed</Code><Message>If-Match</Message></Error>"
            self._reply(412, body, {"Content-Type": "application/xml"})
            return
        start, end, status = 0, size - 1, 200
        headers = {
            "ETag": etag,
            "Last-Modified": _LAST_MODIFIED,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            if first:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            else:
                start = max(0, size - int(last))
            if start >= size:
                self._reply(416, b"", {"Content-Range": f"bytes */{size}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        elif (self.headers.get("x-amz-checksum-mode") or "").upper() == "ENABLED":
            headers["x-amz-checksum-crc32"] = full_crc32(size)
            headers["x-amz-checksum-type"] = "FULL_OBJECT"
        length = end - start + 1
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.send_header("x-amz-request-id", "source")
        self.end_headers()
        if self.command == "HEAD":
            return
        out = self.connection.fileno()
        pos = start
        try:
            while pos <= end:
                off = pos % MiB
                pos += os.sendfile(out, _FD, off, min(MiB, end + 1 - pos))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prime", type=int, nargs="*", default=[], help="sizes to checksum now")
    args = parser.parse_args()
    for size in args.prime:
        full_crc32(size)
    server = Server((args.host, args.port), Handler)
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
