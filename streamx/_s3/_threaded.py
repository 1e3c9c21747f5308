"""The worker-thread part sender: the event loop signs, a thread sends the part's memory.

Why: a part's request through aiobotocore costs the event loop about a
millisecond of Python (hooks, serialisation, aiohttp's writer) plus every
socket write of the body, all on the one thread that also runs the producer,
the checksums' bookkeeping and every other transfer. Here the event loop only
signs the request (SigV4 by awscrt's signer, :mod:`._sign`, with botocore's
credentials for the engine, refreshed as botocore refreshes them); a worker
thread then sends it on one of urllib3's pooled connections (:mod:`._pool`: ``HTTPConnectionPool.urlopen``, the
pools built with the arguments botocore gave the client's own HTTP session), which
sends the part's memory slice by slice with ``socket.sendall`` (no copy of the part
is made; the GIL is released for every send) and reads the answer. The HTTP
framing, connection pooling and keep-alive, TLS (verify, CA bundle, client
certificate), proxies and timeouts are urllib3's, configured as botocore configures
them (:class:`._session.HttpSettings`). The GET of a small object read whole
(:meth:`ThreadSender.fetch`: sync's small objects), a download's ranged GETs read
into the range's buffer (:meth:`ThreadSender.fetch_into`), CreateMultipartUpload,
CompleteMultipartUpload and HeadObject (:meth:`ThreadSender.call`) go the same way.
aiobotocore keeps every other call: abort, list, copy, delete, and the URL itself, taken
from a presigned PutObject
URL (once per bucket) so that botocore's endpoint rules (addressing style,
accelerate, dual-stack ...) decide it.

Stalls: the S3 layer's one stall detector (:class:`streamx._retry.ProgressDeadline`)
hears of the slices a thread has sent from a timer on the loop (:class:`._handoff.Watch`);
the thread's own socket timeouts are the stall timeout or the request's time limit
(``part_timeout``), whichever is shorter, plus a second, so a thread whose request
was given up on returns soon after. A cancelled request (``part_timeout``, a
sibling's failure) stops at the next slice, and the caller waits for its thread (at
most its socket timeout), so that no thread still sends a part when the upload is
aborted or the engine closed.

A 2xx answer's headers are read as the S3 model says (:mod:`._operation`, the
same result botocore's parser gives); any other answer is parsed by botocore's
own REST-XML parser and becomes the ``ClientError`` botocore would raise. No URL, header or signature reaches
an error or a log line of streamx.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import anyio.to_thread
import botocore.exceptions as bexc
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from urllib3 import HTTPHeaderDict
from urllib3.util import parse_url

from .._gathered import hexdigest
from . import _handoff as handoff
from . import _stream as stream
from ._operation import Operation, Target, parse_target
from ._pool import Answer, PartPool
from ._sender import PartRequest, PartSender, RangeRead
from ._session import HttpSettings
from ._sign import Signer

_SEND_SLICE = 1024 * 1024
_SHORT_STALL = 5.0  # below this stall timeout, slices of a quarter: a slow reader is no stall
_HASH_HERE = 64 * 1024  # bytes of body hashed on the loop (~40 µs) rather than in a thread
_UNSIGNED = "UNSIGNED-PAYLOAD"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_USER_AGENT = "streamx (direct)"
_KEY_MARK = "streamx-key-placeholder"


class ThreadSender:
    """UploadPart and PutObject bodies from worker threads (see the module docstring).

    ``credentials`` is botocore's (or aiobotocore's refreshable) credentials object, or
    a ``(access_key, secret_key, token)`` tuple; ``fallback`` takes the PutObject
    requests whose arguments need botocore's serialiser (a timestamp, non-ASCII
    metadata, SSE-C keys).
    """

    def __init__(
        self,
        client: Any,
        *,
        settings: HttpSettings,
        credentials: Any,
        sign_payload: bool | None,
        fallback: PartSender,
    ) -> None:
        self._client = client
        self._settings = settings
        self._signer = Signer(credentials, client.meta.region_name, sign_payload)
        self._fallback = fallback
        self._pool = PartPool(settings)
        self._streams = stream.Streams(PartPool(settings), settings.max_pool_connections)
        # at most one thread per pooled connection; a request not yet started when it is
        # cancelled never runs (handoff.in_thread cancels the executor's job)
        self._executor = ThreadPoolExecutor(
            settings.max_pool_connections, thread_name_prefix="streamx-send"
        )
        self._ops = {
            op: Operation(client, op)
            for op in (
                "UploadPart",
                "PutObject",
                "GetObject",
                "CreateMultipartUpload",
                "CompleteMultipartUpload",
                "HeadObject",
            )
        }
        self._serializer = create_serializer("rest-xml", include_validation=False)
        # bucket -> URL for a placeholder key, and its host and port as urllib3 reads them
        self._templates: dict[str, tuple[Target, str, int | None]] = {}
        self._parser = create_parser("rest-xml")
        self.closed = False

    def can_send(self, request: PartRequest) -> bool:
        """Whether ``request``'s arguments are plain headers here (else the fallback sends)."""
        return self._ops[request.operation].plain(request.params)

    def close(self) -> None:
        self.closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._pool.close()
        self._streams.pool.close()
        self._fallback.close()

    def _timeouts(self, request: PartRequest | RangeRead) -> tuple[Any, float]:
        """The socket timeouts, capped at the request's stall timeout and time limit, and
        the longest a thread's blocking call can take with them."""
        connect, read = self._settings.timeout
        limits = [t for t in (request.stall_timeout, request.time_limit) if t is not None]
        if limits:
            # a little over the limit: the loop's stall detector or part_timeout speaks
            # first, and a thread whose request was given up on returns soon after
            limit = min(limits) + handoff.SOCKET_MARGIN
            connect, read = min(connect, limit), min(read, limit)
        return self._pool.timeout(connect, read), max(connect, read)

    async def _object_target(self, bucket: str, key: str) -> tuple[Target, str, int | None]:
        """The object's URL (PutObject's; UploadPart's adds its query): presigned once per
        bucket for a placeholder key, the key put in with botocore's own escaping
        (``quote(key, safe="/~")``), so botocore's endpoint rules decide the rest."""
        found = self._templates.get(bucket)
        if found is None:
            url = await self._client.generate_presigned_url(
                "put_object", Params={"Bucket": bucket, "Key": _KEY_MARK}, ExpiresIn=60
            )
            template = parse_target(url)
            if not template.path.endswith("/" + _KEY_MARK):
                raise AssertionError("unexpected PutObject URL form")  # pragma: no cover
            where = parse_url(f"{template.scheme}://{template.netloc}")
            if len(self._templates) > 1024:
                self._templates.clear()
            found = self._templates[bucket] = (template, where.host or "", where.port)
        template, host, port = found
        path = template.path[: -len(_KEY_MARK)] + quote(key, safe="/~")
        return Target(template.scheme, template.netloc, path, template.query), host, port

    async def send(self, request: PartRequest) -> dict[str, Any]:
        if not self.can_send(request):
            return await self._fallback.send(request)
        op = self._ops[request.operation]
        params = request.params
        target, host, port = await self._object_target(params["Bucket"], params["Key"])
        pairs = target.query
        if request.operation == "UploadPart":
            pairs = (
                *pairs,
                ("partNumber", str(params["PartNumber"])),
                ("uploadId", str(params["UploadId"])),
            )
        view = request.body
        payload = _UNSIGNED
        # a small body is hashed here: a hop to a thread costs more
        if self._signer.hashes_payload(target.scheme):
            small = len(view) <= _HASH_HERE
            payload = (
                hexdigest("sha256", view)
                if small
                else await anyio.to_thread.run_sync(hexdigest, "sha256", view)
            )
        path = _path_and_query(target, pairs)
        headers = {
            "Host": target.netloc,  # as signed (urllib3 then sends this one)
            "User-Agent": _USER_AGENT,
            "Content-Length": str(len(view)),
            **op.headers(params),
        }
        call = handoff.Call()
        stall = request.stall_timeout
        size = _SEND_SLICE // 4 if stall is not None and stall < _SHORT_STALL else _SEND_SLICE
        signed = await self._signer.sign("PUT", path, headers, payload)
        timeout, longest = self._timeouts(request)
        watch = handoff.Watch(request.progress, stall) if stall is not None else None
        body = handoff.slices(view, call, watch, size)
        exchange = (target.scheme, host, port, path, signed, body, timeout)
        http = await handoff.run(
            self._executor, call, watch, longest, handoff.exchange, self._pool, exchange, call
        )
        if 200 <= http.status < 300 and op.answers:
            return op.answer(http.status, http.headers)
        return self._parsed(op, http)

    async def fetch(
        self, bucket: str, key: str, params: Mapping[str, Any], *, md5: bool = False
    ) -> dict[str, Any]:
        """GetObject of a small object from a worker thread, its body read whole.

        Why: through aiobotocore a small GET costs the event loop about 2 ms of Python
        (hooks, serialisation, aiohttp's reader, the parser), the most of what an s3 → s3
        sync of small objects costs per object. Here the loop signs and reads the answer's
        headers as the S3 model names them (:meth:`Operation.answer`: botocore's parser
        took 0.35 ms per answer, most of it in dateutil for ``LastModified``); the thread
        sends and reads the body, and hashes it (``md5``: on the loop a hash of more than
        2 KiB lets go of the GIL, and getting it back from the busy sending threads cost
        ~0.2 ms per object). A GET is not watched slice by slice: its socket read timeout
        is the stall timeout.
        """
        op = self._ops["GetObject"]
        args = {"Bucket": bucket, "Key": key, **params}
        if not op.plain(args):
            return await self._fallback.fetch(bucket, key, params, md5=md5)
        target, host, port, path, signed = await self._signed_get(op, args)
        timeout = self._pool.timeout(*self._settings.timeout)
        exchange = (target.scheme, host, port, path, signed, None, timeout, "GET")
        http, digest = await handoff.in_thread(
            self._executor, handoff.fetch_whole, self._pool, exchange, handoff.Call(), md5
        )
        if not 200 <= http.status < 300:
            self._parsed(op, http)  # raises botocore's ClientError
        parsed = op.answer(http.status, http.headers)  # the headers' members (see answer)
        parsed["Body"] = http.body
        if md5:
            parsed["BodyMD5"] = digest
        return parsed

    async def fetch_into(self, bucket: str, key: str, read: RangeRead) -> dict[str, Any]:
        """GetObject of a range, its body read by a worker thread into the range's memory
        (nothing of it on the loop, the GIL let go while the socket fills urllib3's buffer).

        Why: through aiobotocore a download costs the loop ~1 CPU-s per GiB (aiohttp's
        reader, a copy of every chunk into the range's buffer), on the one thread that
        also runs every other transfer. Here the loop signs and waits; the thread checks
        the answer's headers (``read.accept``), reads the body, and counts it for the
        stall detector (:class:`._handoff.Watch`). A request given up on stops at its next
        read, and the caller waits for its thread, so that no thread still writes into a
        buffer its owner has let go.
        """
        op = self._ops["GetObject"]
        args = {"Bucket": bucket, "Key": key, **read.params}
        if not op.plain(args):
            return await self._fallback.fetch_into(bucket, key, read)
        target, host, port, path, signed = await self._signed_get(op, args)
        timeout, longest = self._timeouts(read)
        call = handoff.Call()
        stall = read.stall_timeout
        watch = handoff.Watch(read.progress, stall) if stall is not None else None
        exchange = (target.scheme, host, port, path, signed, None, timeout, "GET")
        http, parsed = await handoff.run(
            self._executor,
            call,
            watch,
            longest,
            handoff.receive_into,
            self._pool,
            exchange,
            call,
            read,
            op.answer,
            watch,
        )
        if http is not None:
            self._parsed(op, http)  # raises botocore's ClientError
        answer: dict[str, Any] = parsed
        return answer

    async def open_get(self, bucket: str, key: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """GetObject whose body is left on its connection and read by worker threads a piece
        at a time (:class:`._stream.StreamBody`; why: see :mod:`._stream`)."""
        op = self._ops["GetObject"]
        args = {"Bucket": bucket, "Key": key, **params}
        if not op.plain(args):
            return await self._fallback.open_get(bucket, key, params)
        target, host, port, path, signed = await self._signed_get(op, args)
        streams = self._streams
        timeout = streams.pool.timeout(*self._settings.timeout)
        exchange = (target.scheme, host, port, path, signed, None, timeout, "GET")
        call, held = handoff.Call(), list[Any]()
        await streams.acquire()  # one connection per open stream, at most the pool's size
        try:
            longest = max(self._settings.timeout)
            opening = (stream.open_response, streams.pool, exchange, call, held)
            http, response = await handoff.run(self._executor, call, None, longest, *opening)
            if http is not None:
                self._parsed(op, http)  # raises botocore's ClientError
            parsed = op.answer(response.status, response.headers)
        except BaseException:
            stream.drop(held)
            streams.release()
            raise
        where = (target.scheme, host, port)
        parsed["Body"] = stream.StreamBody(response, streams, where, self._executor)
        return parsed

    async def _signed_get(
        self, op: Operation, args: Mapping[str, Any]
    ) -> tuple[Target, str, int | None, str, dict[str, str]]:
        """A GetObject's target, host, port, path and signed headers."""
        target, host, port = await self._object_target(args["Bucket"], args["Key"])
        part = (("partNumber", str(args["PartNumber"])),) if "PartNumber" in args else ()
        path = _path_and_query(target, (*target.query, *part))
        headers = {"Host": target.netloc, "User-Agent": _USER_AGENT, **op.headers(args)}
        payload = _EMPTY_SHA256 if self._signer.hashes_payload(target.scheme) else _UNSIGNED
        return target, host, port, path, await self._signer.sign("GET", path, headers, payload)

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """CreateMultipartUpload, CompleteMultipartUpload or HeadObject from a worker thread.

        Why: through aiobotocore each costs the event loop about 2.5 ms of Python (hooks,
        endpoint rules, its signer, aiohttp, the parser): a sixth of the loop's time in 64
        concurrent 16 MiB uploads, and most of a small download's (its checksum probe).
        Here botocore's own serialiser writes the method, query, headers and body (~40 µs),
        the loop signs, a thread sends, and the answer is read as the S3 model says (a HEAD's
        headers, :meth:`Operation.answer`) or by botocore's parser. Arguments that need
        botocore's handlers (SSE-C keys, non-ASCII values) go through aiobotocore. A
        CompleteMultipartUpload answered 200 with an error document is the error it holds,
        as botocore's handler has it.
        """
        op = self._ops.get(operation)
        if op is None:
            raise ValueError(f"not a call of the thread path: {operation}")  # pragma: no cover
        request = self._serializer.serialize_to_request(dict(params), op.model)
        headers: dict[str, str] = request["headers"]
        if any(k.startswith("SSECustomer") for k in params) or not all(
            str(v).isascii() for v in headers.values()
        ):
            return await self._fallback.call(operation, params)
        method: str = request["method"]
        body: bytes = request["body"] or b""
        target, host, port = await self._object_target(params["Bucket"], params["Key"])
        # the query the model puts in the path (``?uploads``) and its query parameters
        flags = request["url_path"].partition("?")[2]
        extra = (
            *((flag, "") for flag in flags.split("&") if flag),
            *((k, str(v)) for k, v in request["query_string"].items()),
        )
        path = _path_and_query(target, (*target.query, *extra))
        headers = {
            "Host": target.netloc,
            "User-Agent": _USER_AGENT,
            **({"Content-Length": str(len(body))} if method == "POST" else {}),
            **{k: str(v) for k, v in headers.items()},
        }
        payload = (
            hexdigest("sha256", body) if self._signer.hashes_payload(target.scheme) else _UNSIGNED
        )
        signed = await self._signer.sign(method, path, headers, payload)
        timeout = self._pool.timeout(*self._settings.timeout)
        sent = [body] if method == "POST" else None
        exchange = (target.scheme, host, port, path, signed, sent, timeout, method)
        http = await handoff.in_thread(
            self._executor, handoff.exchange, self._pool, exchange, handoff.Call()
        )
        if http.status == 200 and b"<Error>" in http.body[:512]:
            http.status = 500  # an error after the 200 was sent (botocore: handlers.py)
        if 200 <= http.status < 300 and op.answers:
            return op.answer(http.status, http.headers)
        return self._parsed(op, http)

    def _parsed(self, op: Operation, http: Answer) -> dict[str, Any]:
        """The answer as botocore's REST-XML parser reads it; a non-2xx one raises the
        ``ClientError`` botocore would. Header names lower-cased, as aiobotocore has them."""
        headers = HTTPHeaderDict({name.lower(): http.headers[name] for name in http.headers})
        response = {"headers": headers, "status_code": http.status, "body": http.body}
        parsed: dict[str, Any] = self._parser.parse(response, op.model.output_shape)
        if http.status >= 300:
            raise bexc.ClientError(parsed, op.name)
        return parsed


def _path_and_query(target: Target, pairs: tuple[tuple[str, str], ...]) -> str:
    """The request target as sent and signed: RFC 3986 escapes, as SigV4's canonical query
    string has them (no '+' for a space)."""
    query = urlencode(pairs, safe="-_.~", quote_via=quote)
    return target.path + (f"?{query}" if query else "")


__all__ = ["ThreadSender"]
