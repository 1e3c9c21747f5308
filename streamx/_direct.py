"""UploadPart (and PutObject) bodies over streamx's own HTTP/1.1 connections, from worker threads.

Why: a part's request through aiobotocore costs the event loop about a
millisecond of Python (hooks, serialisation, aiohttp's writer) plus every
socket write of the body, all on the one thread that also runs the producer,
the checksums' bookkeeping and every other transfer. Measured against
benchmarks/sink.py from memory, 256 parts of 8 MiB at concurrency 8:
aiobotocore 1.5-2.2 GiB/s at 0.45-0.58 CPU-s per GiB, this path 3.0-3.5
GiB/s at 0.33-0.38. Here the event loop only signs the request (botocore's
own SigV4 signer, with the client's credentials, refreshed as botocore
refreshes them); a worker thread then writes the head and the part's memory
with ``socket.sendall`` (the GIL is released for every send, no copy of the
part is made) and reads the short answer. aiobotocore keeps every other
call: create, complete, abort, list, and the URL itself, which is taken
from a presigned PutObject URL (once per bucket) so that botocore's endpoint
rules (addressing style, accelerate, dual-stack ...) decide it.

Stall detection: every blocking send and receive has ``stall_timeout`` (or
the client's read timeout) as its socket timeout, so an attempt that moves
no byte for that long fails with :class:`NetworkError`; ``part_timeout``
(the caller's cancel scope) shuts the socket down, which ends the thread's
blocking call at once. Idle connections are kept for reuse (one pool per
engine, at most ``max_pool_connections`` in use) and are checked before
reuse: one the server has closed or written to is dropped, never resent on.

Errors: a non-2xx answer becomes the ``ClientError`` botocore would raise
(code and message from the XML body, else the status), so the same
translation applies; a connection that fails becomes :class:`NetworkError`
naming only the failure's type. No URL, header or signature reaches an
error or a log line.
"""

from __future__ import annotations

import hashlib
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from xml.etree import ElementTree

import anyio
import anyio.to_thread
import botocore.exceptions as bexc
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

from ._errors import NetworkError
from ._validate import header_safe

_SEND_SLICE = 1024 * 1024
_MAX_HEAD = 64 * 1024
_MAX_ERROR_BODY = 1024 * 1024
_UNSIGNED = "UNSIGNED-PAYLOAD"
_USER_AGENT = "streamx (direct)"
_JOIN_TIMEOUT = 10.0  # seconds a cancelled request's thread is waited for (a connect may block)


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    netloc: str
    path: str
    query: tuple[tuple[str, str], ...]  # the presigned URL's, but for its X-Amz-* params


class _Call:
    """One request in a worker thread; ``abort`` (from the loop) ends its blocking I/O."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.aborted = False
        self.started = False
        self.done = threading.Event()
        self._lock = threading.Lock()

    def begin(self) -> bool:
        """In the thread, first: false if the call was aborted before it started."""
        with self._lock:
            if self.aborted:
                return False
            self.started = True
            return True

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self.sock = sock
            if self.aborted:
                _shutdown(sock)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            if self.sock is not None:
                _shutdown(self.sock)

    def detach(self) -> bool:
        """The request is over: a later ``abort`` must not touch the socket (it may be
        back in the pool, serving another part). True if it was aborted meanwhile."""
        with self._lock:
            self.sock = None
            return self.aborted


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read (or is closed) right now."""
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit (a busy web server has many fds)
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


class _Pool:
    """Idle keep-alive connections per (scheme, host, port)."""

    def __init__(self, verify: bool | str, connect_timeout: float) -> None:
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None  # made at the first https connection
        self._connect_timeout = connect_timeout
        self._idle: dict[tuple[str, str, int], list[socket.socket]] = {}
        self._lock = threading.Lock()
        self.closed = False

    def get(self, target: _Target) -> socket.socket:
        key = (target.scheme, target.host, target.port)
        while True:
            with self._lock:
                idle = self._idle.get(key)
                sock = idle.pop() if idle else None
            if sock is None:
                break
            # a kept connection must be silent: readable means closed (or junk) by the server
            if not _readable(sock):
                return sock
            sock.close()
        sock = socket.create_connection((target.host, target.port), timeout=self._connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.scheme == "https":
            try:
                sock = self._tls().wrap_socket(sock, server_hostname=target.host)
            except BaseException:
                sock.close()
                raise
        return sock

    def _tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl is None:
                if self._verify is False:
                    ctx = ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                else:
                    cafile = self._verify if isinstance(self._verify, str) else None
                    ctx = ssl.create_default_context(cafile=cafile)
                self._ssl = ctx
            return self._ssl

    def put(self, target: _Target, sock: socket.socket) -> None:
        with self._lock:
            if not self.closed:
                self._idle.setdefault((target.scheme, target.host, target.port), []).append(sock)
                return
        sock.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, {}
        for socks in idle.values():
            for sock in socks:
                sock.close()


@dataclass(slots=True)
class _Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    reusable: bool


def _read_response(sock: socket.socket) -> _Response:
    buf = bytearray()
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                raise ConnectionError("response head too large")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the response")
            buf += chunk
            continue
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        version, _, status_reason = head[0].partition(" ")
        status_text, _, reason = status_reason.partition(" ")
        status = int(status_text)
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            continue
        break
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    reusable = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _read_chunked(sock, buf)
    elif "content-length" in headers:
        body = _read_exact(sock, buf, int(headers["content-length"]))
    else:  # no length: until close
        body = _read_to_close(sock, buf)
        reusable = False
    return _Response(status, reason, headers, body, reusable)


def _read_exact(sock: socket.socket, rest: bytearray, n: int) -> bytes:
    if n > _MAX_ERROR_BODY:
        raise ConnectionError("response body too large")
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in the response body")
        rest += chunk
    return bytes(rest[:n])


def _read_to_close(sock: socket.socket, rest: bytearray) -> bytes:
    while len(rest) <= _MAX_ERROR_BODY:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(rest)
        rest += chunk
    raise ConnectionError("response body too large")


def _read_chunked(sock: socket.socket, rest: bytearray) -> bytes:
    body = bytearray()
    buf = rest

    def fill(need: int) -> None:
        while len(buf) < need:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed in a chunked response")
            buf.extend(chunk)

    while True:
        while b"\r\n" not in buf:
            fill(len(buf) + 1)
        line, _, remainder = bytes(buf).partition(b"\r\n")
        buf[:] = remainder
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while not (buf.startswith(b"\r\n") or b"\r\n\r\n" in buf):
                fill(len(buf) + 1)
            return bytes(body)
        fill(size + 2)
        body += buf[:size]
        del buf[: size + 2]
        if len(body) > _MAX_ERROR_BODY:
            raise ConnectionError("response body too large")


def _client_error(response: _Response, operation: str) -> bexc.ClientError:
    """The ``ClientError`` botocore would raise for this answer."""
    code, message = str(response.status), response.reason
    if response.body:
        try:
            root = ElementTree.fromstring(response.body)
        except ElementTree.ParseError:
            pass
        else:
            node = root if root.tag == "Error" else root.find("Error")
            if node is not None:
                code = node.findtext("Code") or code
                message = node.findtext("Message") or message
    error = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": response.status, "HTTPHeaders": response.headers},
    }
    return bexc.ClientError(error, operation)


_KEY_MARK = "streamx-key-placeholder"
_PLAIN_TYPES = {"string": str, "integer": int, "long": int, "boolean": bool}


def _parse_target(url: str) -> _Target:
    """Where a presigned URL points, without its signature."""
    parts = urlsplit(url)
    query = tuple(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("x-amz-")
    )
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return _Target(scheme, parts.hostname or "", port, parts.netloc, parts.path, query)


class _Operation:
    """One operation's header parameters and response headers, from botocore's S3 model."""

    def __init__(self, client: Any, name: str) -> None:
        self.name = name
        model = client.meta.service_model.operation_model(name)
        self._in: dict[str, tuple[str, str]] = {}  # member -> (header, shape type)
        self._prefix: dict[str, str] = {}  # map members (Metadata) -> header prefix
        for member, shape in model.input_shape.members.items():
            location = shape.serialization.get("location")
            if location == "header":
                self._in[member] = (shape.serialization.get("name", member), shape.type_name)
            elif location == "headers":
                self._prefix[member] = shape.serialization.get("name", "")
        self._out = {
            shape.serialization.get("name", member).lower(): member
            for member, shape in model.output_shape.members.items()
            if shape.serialization.get("location") == "header"
        }

    def plain(self, params: Mapping[str, Any]) -> bool:
        """Every param is a header of a plain type (strings, numbers, booleans, a str map)."""
        for member, value in params.items():
            if member.startswith("SSECustomer"):  # botocore encodes the key and adds its MD5
                return False
            if member in self._prefix:
                if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) and (k + v).isascii()
                    for k, v in value.items()
                ):
                    return False
                continue
            spec = self._in.get(member)
            if spec is None or spec[1] not in _PLAIN_TYPES:
                return False
            if not isinstance(value, _PLAIN_TYPES[spec[1]]) or (
                isinstance(value, str) and not value.isascii()
            ):
                return False
        return True

    def headers(self, params: Mapping[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for member, value in params.items():
            if member in self._prefix:
                out.update({f"{self._prefix[member]}{k}": v for k, v in value.items()})
            elif isinstance(value, bool):
                out[self._in[member][0]] = "true" if value else "false"
            else:
                out[self._in[member][0]] = str(value)
        return out

    def result(self, headers: Mapping[str, str]) -> dict[str, Any]:
        return {self._out[k]: v for k, v in headers.items() if k in self._out}


class _PartAuth(S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 SigV4 signer, told the body's hash (it cannot see the body)."""

    def __init__(self, credentials: Any, region: str, payload: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload = payload

    def payload(self, request: Any) -> str:
        return self._payload


class DirectParts:
    """UploadPart and PutObject requests for one aiobotocore client (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        *,
        sign_payload: bool | None,
        max_connections: int,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        self._client = client
        self._sign_payload = sign_payload
        self._read_timeout = read_timeout
        # TLS as the client's own sessions do it (botocore's verify: True, False or a CA bundle)
        http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        self._pool = _Pool(getattr(http_session, "_verify", True), connect_timeout)
        self._limiter = anyio.CapacityLimiter(max_connections)
        self._ops = {op: _Operation(client, op) for op in ("UploadPart", "PutObject")}
        self._templates: dict[str, _Target] = {}  # bucket -> URL for a placeholder key

    @staticmethod
    def usable(client: Any) -> bool:
        """Whether this client's requests can be reproduced here (SigV4, no proxy)."""
        meta = getattr(client, "meta", None)
        config = getattr(meta, "config", None)
        if config is None or getattr(config, "proxies", None):
            return False
        if getattr(config, "signature_version", "s3v4") not in (None, "s3v4", "v4"):
            return False
        http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        if http_session is None or getattr(http_session, "_proxy_config", None) is None:
            return False
        proxies = getattr(http_session._proxy_config, "_proxies", None)
        if proxies:
            return False
        endpoint = urlsplit(getattr(meta, "endpoint_url", "") or "")
        env = urllib.request.getproxies()
        if endpoint.scheme in env and not urllib.request.proxy_bypass(endpoint.hostname or ""):
            return False
        return hasattr(client, "_request_signer")

    def close(self) -> None:
        self._pool.close()

    def can_put(self, params: Mapping[str, Any]) -> bool:
        """Whether PutObject ``params`` are plain headers here (else aiobotocore serialises them)."""
        return self._ops["PutObject"].plain(params)

    async def _object_target(self, bucket: str, key: str) -> _Target:
        """The object's URL (PutObject's; UploadPart's adds its query): presigned once per
        bucket for a placeholder key, the key put in with botocore's own escaping
        (``quote(key, safe="/~")``), so botocore's endpoint rules decide the rest."""
        template = self._templates.get(bucket)
        if template is None:
            url = await self._client.generate_presigned_url(
                "put_object", Params={"Bucket": bucket, "Key": _KEY_MARK}, ExpiresIn=60
            )
            template = _parse_target(url)
            if not template.path.endswith("/" + _KEY_MARK):
                raise AssertionError("unexpected PutObject URL form")  # pragma: no cover
            if len(self._templates) > 1024:
                self._templates.clear()
            self._templates[bucket] = template
        path = template.path[: -len(_KEY_MARK)] + quote(key, safe="/~")
        return _Target(
            template.scheme, template.host, template.port, template.netloc, path, template.query
        )

    async def put_object(
        self,
        bucket: str,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        stall_timeout: float | None,
        **params: Any,
    ) -> dict[str, Any]:
        """PutObject; ``can_put(params)`` must hold."""
        target = await self._object_target(bucket, key)
        return await self._put(
            self._ops["PutObject"], target, target.query, data, stall_timeout, params
        )

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: bytes | bytearray | memoryview,
        *,
        stall_timeout: float | None,
        **params: Any,
    ) -> dict[str, Any]:
        target = await self._object_target(bucket, key)
        pairs = (*target.query, ("partNumber", str(part_number)), ("uploadId", upload_id))
        return await self._put(self._ops["UploadPart"], target, pairs, data, stall_timeout, params)

    async def _put(
        self,
        op: _Operation,
        target: _Target,
        pairs: tuple[tuple[str, str], ...],
        data: bytes | bytearray | memoryview,
        stall_timeout: float | None,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        view = memoryview(data).cast("B")
        payload = _UNSIGNED
        sign = self._sign_payload if self._sign_payload is not None else target.scheme == "http"
        if sign:
            payload = await anyio.to_thread.run_sync(_sha256_hex, view)
        # RFC 3986 escapes, as SigV4's canonical query string has them (no '+' for a space)
        query = urlencode(pairs, safe="-_.~", quote_via=quote)
        headers = {
            "User-Agent": _USER_AGENT,
            "Content-Length": str(len(view)),
            "X-Amz-Content-SHA256": payload,
            **op.headers(params),
        }
        url = f"{target.scheme}://{target.netloc}{target.path}" + (f"?{query}" if query else "")
        request = AWSRequest(method="PUT", url=url, headers=headers)
        region = self._client.meta.region_name
        # the client's signer hands out its credentials, refreshed when they expire
        base = await self._client._request_signer.get_auth_instance("s3", region, "s3v4")
        _PartAuth(base.credentials, region, payload).add_auth(request)
        lines = [f"PUT {target.path}" + (f"?{query}" if query else "") + " HTTP/1.1"]
        if "host" not in request.headers:
            lines.append(f"Host: {target.netloc}")
        for name, value in request.headers.items():
            # put arguments were checked (streamx/_validate.py); this sender writes raw
            # bytes to a socket, so it checks again: no CR/LF ever reaches the wire
            header_safe(name, value)
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        limit: tuple[str, float] = ("the read timeout", self._read_timeout)
        if stall_timeout is not None:
            limit = ("stall_timeout", stall_timeout)
        call = _Call()
        try:
            response = await anyio.to_thread.run_sync(
                self._send,
                call,
                target,
                head,
                view,
                limit,
                limiter=self._limiter,
                abandon_on_cancel=True,
            )
        except NetworkError as exc:  # from the thread, which has finished
            raise NetworkError(f"{op.name} failed: {exc.message}") from None
        except BaseException:
            call.abort()
            if call.started:
                # the thread's I/O ends with the shutdown: wait for it, so that no thread
                # still sends a part when the caller aborts the upload or closes the engine
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(call.done.wait, _JOIN_TIMEOUT)
            raise
        if not 200 <= response.status < 300:
            raise _client_error(response, op.name)
        return op.result(response.headers)

    def _send(
        self,
        call: _Call,
        target: _Target,
        head: bytes,
        body: memoryview,
        limit: tuple[str, float],
    ) -> _Response:
        name, timeout = limit
        if not call.begin():
            raise NetworkError("the request was cancelled")
        try:
            return self._exchange(call, target, head, body, name, timeout)
        finally:
            call.done.set()

    def _exchange(
        self,
        call: _Call,
        target: _Target,
        head: bytes,
        body: memoryview,
        name: str,
        timeout: float,
    ) -> _Response:
        try:
            sock = self._pool.get(target)
        except (OSError, ssl.SSLError) as exc:
            raise NetworkError(f"could not connect: {type(exc).__name__}") from None
        call.attach(sock)
        ok = False
        try:
            sock.settimeout(timeout)
            try:
                sock.sendall(head)
                for start in range(0, len(body), _SEND_SLICE):
                    sock.sendall(body[start : start + _SEND_SLICE])
            except OSError:
                # a server may answer (an error) before it has read the whole body,
                # then close: that answer, if it arrived, says more than the reset
                early = _early_response(sock)
                if early is None:
                    raise
                return early
            response = _read_response(sock)
            ok = response.reusable
            return response
        except TimeoutError:
            raise NetworkError(f"made no progress for {name}={timeout:g} s") from None
        except (OSError, ssl.SSLError, ValueError, IndexError) as exc:
            raise NetworkError(f"the connection failed: {type(exc).__name__}") from None
        finally:
            if call.detach() or not ok:
                sock.close()
            else:
                self._pool.put(target, sock)


def _early_response(sock: socket.socket) -> _Response | None:
    """An answer already in the socket's receive buffer, else None."""
    try:
        sock.settimeout(0.5)
        response = _read_response(sock)
    except (OSError, ValueError, IndexError):
        return None
    response.reusable = False
    return response


def _sha256_hex(view: memoryview) -> str:
    return hashlib.sha256(view).hexdigest()


__all__ = ["DirectParts"]
