"""streamx's worker-thread part sender (streamx/_s3/_threaded.py).

The fault scenarios of tests/test_faults.py run over this sender and over
aiobotocore's; here: which sender an engine picks, what goes on the wire
(checked by rclone, which verifies signatures), TLS, proxies, and the
answers and cancellations of the thread's requests against real sockets on
127.0.0.1. The HTTP client underneath is urllib3 (botocore's), configured from the
client's own HTTP settings (streamx/_s3/_pool.py; client certificates: test_pool.py).
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import profile_of, read_object
from faultproxy import Fault, FaultProxy
from rawserver import read_head, serving, threads_in

import streamx
import streamx._s3._handoff as handoff
from streamx._s3 import AiobotocoreSender, PartRequest, ThreadSender
from streamx._s3._session import HttpSettings
from streamx.testing import RcloneServer

MiB = 1024 * 1024
CFG = streamx.TransferConfig(part_size=5 * MiB, multipart_threshold=5 * MiB)
BIG = hashlib.sha256(b"seed").digest() * (11 * MiB // 32)  # 11 MiB: parts of 5, 5, 1 MiB


def thread_sender(eng: streamx.Engine) -> ThreadSender:
    sender = eng._s3_layer.sender
    assert isinstance(sender, ThreadSender)
    return sender


def put_request(bucket: str, key: str, data: bytes, **params: Any) -> PartRequest:
    return PartRequest(
        "PutObject", {"Bucket": bucket, "Key": key, **params}, memoryview(data), lambda: None
    )


# ---------------------------------------------------------------- which sender, on the wire


@pytest.mark.anyio
async def test_the_default_sends_parts_from_worker_threads(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        thread_sender(eng)
        result = await eng.upload(bucket, "obj", BIG, config=CFG)
    assert result.part_count == 3
    assert await read_object(engine, bucket, "obj") == BIG
    parts = proxy.sent("UploadPart")
    assert len(parts) == 3
    for req in parts:
        assert req.headers["user-agent"] == "streamx (direct)"
        assert req.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert "expect" not in req.headers  # no 100-continue round trip per part
        if profile_of(server).checksums:  # rclone takes no checksums: none is sent there
            assert "x-amz-checksum-crc32c" in req.headers["authorization"]  # and it is signed
        assert req.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    # Create and Complete go from the threads too (signed by awscrt); Abort and the
    # listings stay with aiobotocore
    for op in ("CreateMultipartUpload", "CompleteMultipartUpload"):
        (req,) = proxy.sent(op)
        assert req.headers["user-agent"] == "streamx (direct)"
        assert req.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")


@pytest.mark.anyio
async def test_temporary_credentials_carry_their_session_token(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    """Role and STS credentials: the token goes with every part, inside the signature."""
    args = {**server.engine_args(), "endpoint_url": proxy.url, "aws_session_token": "tok-123"}
    if server.name == "seaweedfs":
        # SeaweedFS checks session tokens (moto and rclone accept any): an invented one
        # is refused at the first request, which carried it inside its signature
        async with streamx.Engine(**args) as eng:
            with pytest.raises(streamx.AccessDeniedError):
                await eng.upload(bucket, "obj", BIG, config=CFG)
        (create,) = proxy.sent("CreateMultipartUpload")
        assert create.headers["x-amz-security-token"] == "tok-123"
        assert "x-amz-security-token" in create.headers["authorization"]
        return
    async with streamx.Engine(**args) as eng:
        thread_sender(eng)
        await eng.upload(bucket, "obj", BIG, config=CFG)
    assert await read_object(engine, bucket, "obj") == BIG
    for req in proxy.sent("UploadPart"):
        assert req.headers["x-amz-security-token"] == "tok-123"
        assert "x-amz-security-token" in req.headers["authorization"]


@pytest.mark.anyio
async def test_credentials_from_the_environment_sign_the_parts(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str, monkeypatch: Any
) -> None:
    """No keys passed: the session's credentials (``session.get_credentials()``) sign."""
    args = server.engine_args()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", args.pop("aws_access_key_id"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", args.pop("aws_secret_access_key"))
    async with streamx.Engine(**{**args, "endpoint_url": proxy.url}) as eng:
        thread_sender(eng)
        await eng.upload(bucket, "obj", BIG, config=CFG)
    assert await read_object(engine, bucket, "obj") == BIG
    assert len(proxy.sent("UploadPart")) == 3


@pytest.mark.anyio
async def test_a_small_object_goes_up_in_one_threaded_put_with_its_headers(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    key = "dir/odd key ü+%.txt"
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        result = await eng.upload(
            bucket,
            key,
            b"hello" * 1000,
            ContentType="text/plain",
            CacheControl="no-cache",
            Metadata={"owner": "ada", "n": "1"},
        )
    assert result.part_count == 1
    (put,) = proxy.sent("PutObject")
    assert put.headers["user-agent"] == "streamx (direct)"
    assert put.headers["x-amz-meta-owner"] == "ada"
    head = await engine.client.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "text/plain" and head["CacheControl"] == "no-cache"
    assert head["Metadata"] == {"owner": "ada", "n": "1"}
    assert head["ETag"] == result.etag
    assert await read_object(engine, bucket, key) == b"hello" * 1000


@pytest.mark.anyio
async def test_a_small_get_is_read_whole_in_a_worker_thread(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    """GetObject of a small object (sync's s3 → s3 reads) on the thread path: the bytes, the
    answer botocore would give (type, metadata, ETag), its If-Match sent; a missing key and
    a changed object (412) fail with streamx's errors; a Range header is honoured."""
    key = "dir/odd key ü+%.txt"
    data = b"hello" * 1000
    put = await engine.upload(
        bucket, key, data, ContentType="text/plain", Metadata={"owner": "ada"}
    )
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        s3 = eng._s3_layer
        got = await s3.get_object_bytes(bucket, key, md5=True, IfMatch=put.etag)
        assert got["Body"] == data and got["ETag"] == put.etag
        assert got["BodyMD5"] == hashlib.md5(data).hexdigest()
        assert got["ContentType"] == "text/plain" and got["Metadata"] == {"owner": "ada"}
        assert got["ContentLength"] == len(data)
        # every member aiobotocore's answer has, the same (LastModified a datetime, ...)
        ref = await engine.client.get_object(Bucket=bucket, Key=key)
        ref["Body"].close()
        members = {k: v for k, v in ref.items() if k not in ("Body", "ResponseMetadata")}
        assert {k: got.get(k) for k in members} == members
        with pytest.raises(streamx.NotFoundError):
            await s3.get_object_bytes(bucket, "missing")
        # rclone ignores If-Match on a GET: the store's 412 comes from the proxy here
        proxy.add(Fault("status", op="GetObject", status=412, code="PreconditionFailed"))
        with pytest.raises(streamx.PreconditionFailedError):
            await s3.get_object_bytes(bucket, key, IfMatch='"0123456789abcdef0123456789abcdef"')
        ranged = await s3.get_object_bytes(bucket, key, Range="bytes=5-9")
        assert ranged["Body"] == data[5:10]
    gets = proxy.sent("GetObject")
    assert len(gets) == 4
    assert all(g.headers["user-agent"] == "streamx (direct)" for g in gets)
    assert gets[0].headers["if-match"] == put.etag
    assert "signature=" not in repr(got).lower()


@pytest.mark.anyio
async def test_a_head_goes_from_a_worker_thread_with_botocores_answer(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    """HeadObject (a download's checksum probe, stat, sync) on the thread path: every member
    aiobotocore's answer has, the same (with and without metadata, with the checksum asked
    for); a missing key and a failed precondition fail with streamx's errors."""
    await engine.upload(
        bucket, "meta", b"m" * 3000, ContentType="text/plain", Metadata={"owner": "ada"}
    )
    await engine.upload(bucket, "plain", b"p" * 10)
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        s3 = eng._s3_layer
        for key, params in (("meta", {}), ("plain", {}), ("meta", {"ChecksumMode": "ENABLED"})):
            got = await s3.head_object(bucket, key, **params)
            ref = await engine.client.head_object(Bucket=bucket, Key=key, **params)
            members = {k: v for k, v in ref.items() if k != "ResponseMetadata"}
            assert {k: got.get(k) for k in members} == members
            assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
        with pytest.raises(streamx.NotFoundError):
            await s3.head_object(bucket, "missing")
        proxy.add(Fault("status", op="HeadObject", status=412, code="PreconditionFailed"))
        with pytest.raises(streamx.PreconditionFailedError):
            await s3.head_object(bucket, "meta", IfMatch='"0123456789abcdef0123456789abcdef"')
    heads = proxy.sent("HeadObject")
    assert len(heads) == 5 and all(h.method == "HEAD" for h in heads)
    assert all(h.headers["user-agent"] == "streamx (direct)" for h in heads)


@pytest.mark.anyio
async def test_a_small_get_cut_short_fails_as_a_network_error(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    """The connection closes half-way through the body: no short object is returned."""
    data = bytes(range(256)) * 400
    await engine.upload(bucket, "k", data)
    proxy.add(Fault("truncate", op="GetObject", phase="response", at=50_000))
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        with pytest.raises(streamx.NetworkError):
            await eng._s3_layer.get_object_bytes(bucket, "k")
        assert (await eng._s3_layer.get_object_bytes(bucket, "k"))["Body"] == data


@pytest.mark.anyio
async def test_arguments_that_need_botocores_serialiser_put_through_aiobotocore(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    """A timestamp (Expires) or a non-ASCII metadata value: botocore formats them."""
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        sender = thread_sender(eng)
        expires = datetime.datetime(2030, 1, 1)
        assert not sender.can_send(put_request(bucket, "k", b"", Expires=expires))
        assert not sender.can_send(put_request(bucket, "k", b"", Metadata={"name": "ü"}))
        assert sender.can_send(put_request(bucket, "k", b"", ContentType="a/b"))
        await eng.upload(bucket, "k", b"x" * 100, Expires=expires)
    (put,) = proxy.sent("PutObject")
    assert "streamx" not in put.headers["user-agent"]
    assert await read_object(engine, bucket, "k") == b"x" * 100


@pytest.mark.anyio
async def test_direct_parts_false_sends_them_through_aiobotocore(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    async with streamx.Engine(**args, direct_parts=False) as eng:
        assert not isinstance(eng._s3_layer.sender, ThreadSender)
        await eng.upload(bucket, "obj", BIG, config=CFG)
    assert await read_object(engine, bucket, "obj") == BIG
    agents = {r.headers["user-agent"] for r in proxy.sent("UploadPart")}
    assert len(proxy.sent("UploadPart")) == 3
    assert not any("streamx" in agent for agent in agents)


@pytest.mark.anyio
async def test_a_signed_payload_carries_the_parts_sha256(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    """``sign_payload=True`` over http: the hash is computed off the loop, and the
    signature covers it (rclone checks signatures and refuses a wrong one)."""
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    async with streamx.Engine(**args, sign_payload=True) as eng:
        thread_sender(eng)
        await eng.upload(bucket, "obj", BIG, config=CFG)
    assert await read_object(engine, bucket, "obj") == BIG
    sums = [r.headers["x-amz-content-sha256"] for r in proxy.sent("UploadPart")]
    step = 5 * MiB
    expected = [hashlib.sha256(BIG[i : i + step]).hexdigest() for i in range(0, len(BIG), step)]
    assert sorted(sums) == sorted(expected)


@pytest.mark.anyio
async def test_a_complete_answered_200_with_an_error_is_that_error(
    tengine: streamx.Engine, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    """S3 may send 200 and then an error document for CompleteMultipartUpload: it is the
    error it holds (botocore's handler has it so; the thread path does the same), the upload
    is aborted, and no object appears."""
    proxy.add(Fault("status", op="CompleteMultipartUpload", status=200, code="InternalError"))
    with pytest.raises(streamx.ServiceUnavailableError, match="InternalError"):
        await tengine.upload(bucket, "obj", BIG, config=CFG)
    assert len(proxy.sent("CompleteMultipartUpload")) == 1
    with pytest.raises(streamx.NotFoundError):
        await engine.head(bucket, "obj")


@pytest.mark.anyio
async def test_a_multipart_upload_with_metadata_is_created_from_the_threads(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    """Create carries the object's headers as botocore's serialiser writes them (non-ASCII
    metadata RFC 2047-encoded by streamx first), signed by awscrt; the object reads back
    with them."""
    from streamx._validate import rfc2047

    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        await eng.upload(
            bucket, "obj", BIG, config=CFG, ContentType="a/b", Metadata={"name": "ü", "n": "1"}
        )
    (create,) = proxy.sent("CreateMultipartUpload")
    assert create.headers["user-agent"] == "streamx (direct)"
    assert create.headers["x-amz-meta-name"] == rfc2047("ü")
    head = await engine.client.head_object(Bucket=bucket, Key="obj")
    assert head["ContentType"] == "a/b"
    assert head["Metadata"] == {"name": rfc2047("ü"), "n": "1"}
    assert await read_object(engine, bucket, "obj") == BIG


@pytest.mark.anyio
async def test_a_refused_part_names_the_error_and_never_the_signature(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    proxy.add(Fault("status", op="UploadPart", status=403, code="AccessDenied", times=None))
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        with pytest.raises(streamx.AccessDeniedError) as info:
            await eng.upload(bucket, "obj", BIG, config=CFG)
    exc = info.value
    assert exc.code == "AccessDenied" and exc.status == 403 and exc.part_number is not None
    signature = proxy.sent("UploadPart")[0].headers["authorization"].rsplit("Signature=", 1)[1]
    secret = server.engine_args()["aws_secret_access_key"]
    text = " ".join([str(exc), repr(exc), *map(str, exc.args), repr(exc.__cause__)])
    assert signature not in text and secret not in text


def sending_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that holds one entry per worker thread inside the thread sender's exchange."""
    return threads_in(monkeypatch, handoff, "exchange")


@pytest.mark.anyio
async def test_a_failed_upload_leaves_no_sending_thread_behind(
    server: Any,
    proxy: FaultProxy,
    engine: streamx.Engine,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Part 2 stalls mid-body while part 1 is refused: when upload() raises, the thread that
    was sending part 2 has returned (the abort never races it)."""
    active = sending_threads(monkeypatch)
    proxy.add(Fault("stall", op="UploadPart", query={"partNumber": "2"}, at=MiB, seconds=None))
    proxy.add(Fault("status", op="UploadPart", query={"partNumber": "1"}, status=403))
    cfg = streamx.TransferConfig(part_size=5 * MiB, multipart_threshold=5 * MiB, stall_timeout=1)
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        with pytest.raises(streamx.AccessDeniedError):
            await eng.upload(bucket, "obj", BIG, config=cfg)
        assert active == []
        assert [u async for u in eng._s3_layer.list_multipart_uploads(bucket)] == []


def test_direct_parts_must_be_a_bool_and_needs_the_engines_own_client() -> None:
    with pytest.raises(streamx.ConfigError):
        streamx.Engine(direct_parts="yes")  # type: ignore[arg-type]
    with pytest.raises(streamx.ConfigError, match="own client"):
        streamx.Engine(client=object(), direct_parts=True)


# ---------------------------------------------------------------- settings as botocore's


def test_the_sender_gets_botocores_http_settings(
    monkeypatch: pytest.MonkeyPatch, moto_server: Any, tmp_path: Path
) -> None:
    """Contract with aiobotocore: ``AioConfig(http_session_cls=...)`` is constructed with the
    verify, proxies and timeouts botocore resolved; if that hook moves, this fails."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not read until an https connection is made")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")

    async def main() -> HttpSettings:
        async with streamx.Engine(**moto_server.engine_args()) as eng:
            return thread_sender(eng)._settings

    settings = anyio.run(main)
    assert settings.verify == str(bundle)
    assert settings.proxies is not None and settings.proxies.get("https") == "http://127.0.0.1:9"
    assert settings.timeout == (10.0, 60.0)


def test_each_event_loop_gets_its_own_session(moto_server: Any) -> None:
    """Two ``anyio.run`` calls in one process: credential objects (and their asyncio
    locks) are never shared between loops, and both engines work."""
    from streamx._s3 import session_for

    async def main(n: int) -> Any:
        session = session_for(None)
        assert session_for(None) is session  # cached within the loop
        async with streamx.Engine(**moto_server.engine_args()) as eng:
            bucket = f"loops-{n}"
            await eng.client.create_bucket(Bucket=bucket)
            await eng.upload(bucket, "k", b"x" * 10)
            assert await read_object(eng, bucket, "k") == b"x" * 10
        return session

    first, second = anyio.run(main, 1), anyio.run(main, 2)
    assert first is not second


class LoopbackServer:
    """A listening socket on 127.0.0.1, each connection served by ``_serve`` in a thread of
    its own; ``close`` stops accepting (and, with ``join_on_close``, waits for those threads)."""

    scheme = "http"
    join_on_close = False

    def __init__(self) -> None:
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.url = f"{self.scheme}://127.0.0.1:{self._srv.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        self._srv.close()
        if self.join_on_close:
            for thread in self._threads:
                thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class ForwardProxy(LoopbackServer):
    """A minimal HTTP forward proxy on 127.0.0.1: notes each request line it is sent
    (absolute-form, as clients send them to a proxy) and pipes the bytes on."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        from urllib.parse import urlsplit

        head = read_head(conn)
        if not head:
            conn.close()
            return
        line = head.split(b"\r\n", 1)[0].decode()
        self.lines.append(line)
        target = urlsplit(line.split(" ")[1])
        upstream = socket.create_connection((target.hostname, target.port))
        upstream.sendall(head)  # the server takes the absolute form too (RFC 9112 3.2.2)

        def pipe(src: socket.socket, dst: socket.socket, note: bool) -> None:
            try:
                while chunk := src.recv(1 << 20):
                    if note and chunk.startswith((b"PUT http", b"POST http", b"GET http")):
                        self.lines.append(chunk.split(b"\r\n", 1)[0].decode())
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        back = threading.Thread(target=pipe, args=(upstream, conn, False), daemon=True)
        back.start()
        pipe(conn, upstream, True)
        back.join()
        upstream.close()
        conn.close()


def test_parts_go_through_the_proxy_botocore_uses(
    rclone_server: RcloneServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY in the environment: aiobotocore's calls and the threads' parts both go
    through it (the part sender is no longer turned off by a proxy)."""
    fwd = ForwardProxy()
    monkeypatch.setenv("HTTP_PROXY", fwd.url)
    monkeypatch.setenv("NO_PROXY", "")

    async def main() -> None:
        async with streamx.Engine(**rclone_server.engine_args()) as eng:
            thread_sender(eng)
            await eng.client.create_bucket(Bucket="proxied")
            result = await eng.upload("proxied", "obj", BIG, config=CFG)
            assert result.part_count == 3
        monkeypatch.delenv("HTTP_PROXY")
        async with streamx.Engine(**rclone_server.engine_args()) as eng:
            assert await read_object(eng, "proxied", "obj") == BIG

    try:
        anyio.run(main)
    finally:
        fwd.close()
    parts = [line for line in fwd.lines if "partNumber=" in line]
    assert len(parts) == 3 and all(line.startswith("PUT http://") for line in parts)
    assert any("?uploads" in line for line in fwd.lines)  # the Create went through it too


# ---------------------------------------------------------------- answers and cancellation


@pytest.fixture
def listener() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """A TCP server on 127.0.0.1 running ``handler`` per connection; returns its URL."""
    with ExitStack() as stack:
        yield lambda handler: stack.enter_context(serving(handler))


def local_engine(url: str) -> streamx.Engine:
    return streamx.Engine(
        endpoint_url=url, aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1"
    )


def test_an_answer_before_the_body_is_read_is_reported(
    listener: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    """A server that refuses a part at its head and closes: its error, not 'connection reset'."""

    def refuse(conn: socket.socket) -> None:
        read_head(conn)
        body = b"<Error><Code>EntityTooLarge</Code><Message>no thanks</Message></Error>"
        conn.sendall(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1024)  # some body bytes arrive, then the connection is dropped

    url = listener(refuse)

    async def main() -> None:
        async with local_engine(url) as eng:
            thread_sender(eng)
            with pytest.raises(streamx.S3Error) as info:
                await eng._s3_layer.upload_part(
                    "bkt", "k", "up-1", 1, bytes(32 * MiB), stall_timeout=5
                )
            assert info.value.code == "EntityTooLarge" and info.value.part_number == 1
            assert "no thanks" in str(info.value)

    anyio.run(main)


def test_a_stalled_send_is_cut_and_its_thread_returns(
    listener: Callable[[Callable[[socket.socket], None]], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that stops reading mid-body: the one stall detector ends the request with
    NetworkError, and by then the sending thread has returned (its socket timed out)."""
    release = threading.Event()

    def stop_reading(conn: socket.socket) -> None:
        read_head(conn)
        release.wait(30)

    url = listener(stop_reading)
    active = sending_threads(monkeypatch)

    async def main() -> None:
        async with local_engine(url) as eng:
            thread_sender(eng)
            with pytest.raises(streamx.NetworkError, match="no progress for stall_timeout"):
                await eng._s3_layer.upload_part(
                    "bkt", "k", "up-1", 1, bytes(64 * MiB), stall_timeout=0.5
                )
            assert active == []

    try:
        anyio.run(main)
    finally:
        release.set()


def test_a_cancelled_send_stops_and_its_thread_is_waited_for(
    listener: Callable[[Callable[[socket.socket], None]], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelled from outside (``part_timeout``, a sibling's failure) while the server reads
    slowly: the cancel returns only once the thread has stopped sending."""
    got = bytearray()

    def slow_reader(conn: socket.socket) -> None:
        read_head(conn)
        while True:
            chunk = conn.recv(256 * 1024)
            if not chunk:
                return
            got.extend(chunk)
            threading.Event().wait(0.01)

    url = listener(slow_reader)
    active = sending_threads(monkeypatch)

    async def main() -> None:
        async with local_engine(url) as eng:
            with anyio.move_on_after(0.3) as scope:
                await eng._s3_layer.upload_part(
                    "bkt", "k", "up-1", 1, bytes(256 * MiB), stall_timeout=5
                )
            assert scope.cancelled_caught
            assert active == []
            sent = len(got)
        assert sent < 256 * MiB  # it stopped part way

    anyio.run(main)


def test_a_connection_the_server_closed_is_not_reused(
    listener: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    """Keep-alive as urllib3 does it: a pooled connection the server has closed since is
    dropped, and the next part goes over a new one (never resent on a dead socket)."""
    connections: list[int] = []

    def one_answer(conn: socket.socket) -> None:
        connections.append(1)
        head = read_head(conn)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        rest = len(head) - head.index(b"\r\n\r\n") - 4
        while rest < length:
            rest += len(conn.recv(65536))
        conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "e"\r\nContent-Length: 0\r\n\r\n')
        # then closed, although the answer said keep-alive

    url = listener(one_answer)

    async def main() -> None:
        async with local_engine(url) as eng:
            for n in (1, 2, 3):
                response = await eng._s3_layer.upload_part("bkt", "k", "up-1", n, b"x" * 100)
                assert response["ETag"] == '"e"'
                await anyio.sleep(0.05)

    anyio.run(main)
    assert len(connections) == 3


# ---------------------------------------------------------------- over TLS


def self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (and its key), PEM files in ``directory``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamx test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def tls_rclone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneServer]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    server = RcloneServer(tls=(cert, key))
    server.start()
    try:
        server.make_bucket("tls")
        yield server
    finally:
        server.stop()


def test_parts_go_over_tls_checked_against_the_ca_bundle(
    tls_rclone: RcloneServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """https with AWS_CA_BUNDLE: the parts' connections verify the server as botocore's do."""
    assert tls_rclone.tls is not None
    monkeypatch.setenv("AWS_CA_BUNDLE", tls_rclone.tls[0])

    async def main() -> None:
        async with streamx.Engine(**tls_rclone.engine_args()) as eng:
            thread_sender(eng)
            result = await eng.upload("tls", "obj", BIG, config=CFG)
            assert result.part_count == 3
            assert await read_object(eng, "tls", "obj") == BIG

    anyio.run(main)


def test_an_untrusted_certificate_fails_the_part(
    tls_rclone: RcloneServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender told to trust the system's CAs only: the TLS check fails, and the error
    names only the failure's type."""
    assert tls_rclone.tls is not None
    monkeypatch.setenv("AWS_CA_BUNDLE", tls_rclone.tls[0])

    async def main() -> None:
        async with streamx.Engine(**tls_rclone.engine_args()) as eng:
            own = thread_sender(eng)
            args = tls_rclone.engine_args()
            sender = ThreadSender(
                eng.client,
                settings=HttpSettings(True, None, (5.0, 5.0), 2, None, None, None),
                credentials=(args["aws_access_key_id"], args["aws_secret_access_key"], None),
                sign_payload=None,
                fallback=AiobotocoreSender(eng.client),
            )
            eng._s3_layer.sender = sender
            try:
                with pytest.raises(streamx.NetworkError) as info:
                    await eng._s3_layer.put_object("tls", "refused", BIG)
            finally:
                eng._s3_layer.sender = own
                sender.close()
            assert "SSLCertVerificationError" in str(info.value)
            assert args["aws_secret_access_key"] not in str(info.value)

    anyio.run(main)
