"""streamx's own UploadPart transport (streamx/_direct.py).

The fault scenarios of tests/test_faults.py run over this transport and over
aiobotocore's; here: which transport an engine picks, what goes on the wire,
and the HTTP/1.1 client's edges (answers before the body is read, interim
answers, chunked and unframed error bodies, stale pooled connections) against
real sockets on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import profile_of, read_object
from faultproxy import Fault, FaultProxy

import streamx
from streamx._direct import DirectParts, _Call, _Pool, _read_response, _Target
from streamx.testing import RcloneServer

MiB = 1024 * 1024
CFG = streamx.TransferConfig(part_size=5 * MiB, multipart_threshold=5 * MiB)
BIG = hashlib.sha256(b"seed").digest() * (11 * MiB // 32)  # 11 MiB: parts of 5, 5, 1 MiB


# ---------------------------------------------------------------- which transport, on the wire


@pytest.mark.anyio
async def test_the_default_sends_parts_over_streamx_connections(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        assert eng._s3_layer.direct is not None
        result = await eng.upload(bucket, "obj", BIG, config=CFG)
    assert result.part_count == 3
    assert await read_object(engine, bucket, "obj") == BIG
    parts = proxy.sent("UploadPart")
    assert len(parts) == 3
    for req in parts:
        assert req.headers["user-agent"] == "streamx (direct)"
        assert req.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        if profile_of(server).checksums:  # rclone takes no checksums: none is sent there
            assert "x-amz-checksum-crc32c" in req.headers["authorization"]  # and it is signed
        assert req.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    # the control calls stay with aiobotocore
    assert "streamx" not in proxy.sent("CreateMultipartUpload")[0].headers["user-agent"]


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
        assert eng._s3_layer.direct is not None
        await eng.upload(bucket, "obj", BIG, config=CFG)
    assert await read_object(engine, bucket, "obj") == BIG
    for req in proxy.sent("UploadPart"):
        assert req.headers["x-amz-security-token"] == "tok-123"
        assert "x-amz-security-token" in req.headers["authorization"]


@pytest.mark.anyio
async def test_a_small_object_goes_up_in_one_direct_put_with_its_headers(
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
async def test_arguments_that_need_botocores_serialiser_put_through_aiobotocore(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    """A timestamp (Expires) or a non-ASCII metadata value: botocore formats them."""
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        assert eng._s3_layer.direct is not None
        assert not eng._s3_layer.direct.can_put({"Expires": datetime.datetime(2030, 1, 1)})
        assert not eng._s3_layer.direct.can_put({"Metadata": {"name": "ü"}})
        assert eng._s3_layer.direct.can_put({"ContentType": "a/b", "BucketKeyEnabled": True})
        await eng.upload(bucket, "k", b"x" * 100, Expires=datetime.datetime(2030, 1, 1))
    (put,) = proxy.sent("PutObject")
    assert "streamx" not in put.headers["user-agent"]
    assert await read_object(engine, bucket, "k") == b"x" * 100


@pytest.mark.anyio
async def test_direct_parts_false_sends_them_through_aiobotocore(
    server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    async with streamx.Engine(**args, direct_parts=False) as eng:
        assert eng._s3_layer.direct is None
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
        assert eng._s3_layer.direct is not None
        await eng.upload(bucket, "obj", BIG, config=CFG)
    assert await read_object(engine, bucket, "obj") == BIG
    sums = [r.headers["x-amz-content-sha256"] for r in proxy.sent("UploadPart")]
    step = 5 * MiB
    expected = [hashlib.sha256(BIG[i : i + step]).hexdigest() for i in range(0, len(BIG), step)]
    assert sorted(sums) == sorted(expected)


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


@pytest.mark.anyio
async def test_a_failed_upload_leaves_no_sending_thread_behind(
    server: Any,
    proxy: FaultProxy,
    engine: streamx.Engine,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Part 2 stalls mid-body while part 1 is refused: when upload() raises, the thread that
    was sending part 2 has been shut down and has returned (the abort never races it)."""
    active: list[int] = []
    real = DirectParts._exchange

    def slow_to_finish(self: DirectParts, *args: Any) -> Any:
        active.append(1)
        try:
            return real(self, *args)
        finally:
            time.sleep(0.3)  # a thread that takes its time to wind down
            active.pop()

    monkeypatch.setattr(DirectParts, "_exchange", slow_to_finish)
    proxy.add(Fault("stall", op="UploadPart", query={"partNumber": "2"}, at=MiB, seconds=None))
    proxy.add(Fault("status", op="UploadPart", query={"partNumber": "1"}, status=403))
    async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as eng:
        with pytest.raises(streamx.AccessDeniedError):
            await eng.upload(bucket, "obj", BIG, config=CFG)
        assert active == []


def test_a_proxy_in_the_environment_turns_it_off(
    monkeypatch: pytest.MonkeyPatch, moto_server: Any
) -> None:
    async def main() -> tuple[bool, bool]:
        async with streamx.Engine(**moto_server.engine_args()) as plain:
            with_direct = plain._s3_layer.direct is not None
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("NO_PROXY", "")
        async with streamx.Engine(**moto_server.engine_args()) as proxied:
            return with_direct, proxied._s3_layer.direct is not None

    assert anyio.run(main) == (True, False)


def test_direct_parts_must_be_a_bool() -> None:
    with pytest.raises(streamx.ConfigError):
        streamx.Engine(direct_parts="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the HTTP/1.1 client's edges


@pytest.fixture
def listener() -> Iterator[Callable[[Callable[[socket.socket], None]], tuple[str, int]]]:
    """A one-connection-at-a-time TCP server on 127.0.0.1 running ``handler`` per connection."""
    servers: list[socket.socket] = []

    def start(handler: Callable[[socket.socket], None]) -> tuple[str, int]:
        srv = socket.create_server(("127.0.0.1", 0))
        servers.append(srv)

        def loop() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    handler(conn)

        threading.Thread(target=loop, daemon=True).start()
        host, port = srv.getsockname()[:2]
        return str(host), int(port)

    yield start
    for srv in servers:
        srv.close()


def answer(raw: bytes) -> Any:
    """What the client makes of ``raw`` sent back on a real socket."""
    a, b = socket.socketpair()
    with a, b:
        a.sendall(raw)
        a.shutdown(socket.SHUT_WR)
        return _read_response(b)


def test_responses_are_framed_by_length_chunks_or_close() -> None:
    r = answer(b'HTTP/1.1 200 OK\r\nETag: "abc"\r\nContent-Length: 3\r\n\r\nxyzTRAILING')
    assert (r.status, r.headers["etag"], r.body, r.reusable) == (200, '"abc"', b"xyz", True)
    r = answer(
        b"HTTP/1.1 503 Slow Down\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n<Err>\r\n3;ext=1\r\nabc\r\n0\r\n\r\n"
    )
    assert (r.status, r.reason, r.body, r.reusable) == (503, "Slow Down", b"<Err>abc", True)
    r = answer(b"HTTP/1.0 500 Oops\r\n\r\nuntil close")
    assert (r.status, r.body, r.reusable) == (500, b"until close", False)
    r = answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert r.reusable is False
    r = answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert (r.status, r.body) == (200, b"ok")
    with pytest.raises(ConnectionError):
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    with pytest.raises(ConnectionError):
        answer(b"")


def test_an_answer_before_the_body_is_read_is_reported(
    listener: Callable[[Callable[[socket.socket], None]], tuple[str, int]],
) -> None:
    """A server that refuses a part at its head and closes: its error, not 'connection reset'."""

    def refuse(conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += conn.recv(65536)
        body = b"<Error><Code>EntityTooLarge</Code><Message>no thanks</Message></Error>"
        conn.sendall(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1024)  # some body bytes arrive, then the connection is dropped

    host, port = listener(refuse)

    async def main() -> None:
        async with streamx.Engine(
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id="a",
            aws_secret_access_key="b",
            region_name="us-east-1",
        ) as eng:
            assert eng._s3_layer.direct is not None
            with pytest.raises(streamx.S3Error) as info:
                await eng._s3_layer.upload_part_direct(
                    "bkt", "k", "up-1", 1, bytes(32 * MiB), stall_timeout=5
                )
            assert info.value.code == "EntityTooLarge"
            assert "no thanks" in str(info.value)

    anyio.run(main)


def test_a_pooled_connection_the_server_closed_is_not_reused(
    listener: Callable[[Callable[[socket.socket], None]], tuple[str, int]],
) -> None:
    seen: list[int] = []

    def count(conn: socket.socket) -> None:
        seen.append(1)
        conn.close()  # at once: the client's kept connection is dead

    host, port = listener(count)
    pool = _Pool(True, connect_timeout=5)
    target = _Target("http", host, port, f"{host}:{port}", "/b/k", ())
    first = pool.get(target)
    pool.put(target, first)
    for _ in range(100):  # wait until the server has closed it
        if seen:
            break
        threading.Event().wait(0.01)
    threading.Event().wait(0.05)
    second = pool.get(target)
    assert second is not first and first.fileno() == -1
    pool.put(target, second)
    pool.close()
    assert second.fileno() == -1


def test_a_cancel_after_the_request_ended_leaves_the_connection_alone() -> None:
    """The thread returned its connection to the pool; the caller's late cancel must not
    shut it down (another part may be using it by then)."""
    a, b = socket.socketpair()
    with a, b:
        call = _Call()
        call.attach(a)
        assert call.detach() is False
        call.abort()  # too late: the socket is no longer the call's
        a.sendall(b"still open")
        assert b.recv(100) == b"still open"
        during = _Call()
        during.attach(b)
        during.abort()  # while the request runs: its blocking I/O ends
        assert b.recv(100) == b""
        assert during.detach() is True  # and the connection is not pooled


def test_usable_needs_sigv4_and_no_proxy() -> None:
    class Meta:
        def __init__(self, proxies: Any, version: str) -> None:
            self.config = type("C", (), {"proxies": proxies, "signature_version": version})()
            self.endpoint_url = "http://127.0.0.1:1"

    class Client:
        def __init__(self, proxies: Any = None, version: str = "s3v4") -> None:
            self.meta = Meta(proxies, version)
            session = type("S", (), {"_proxy_config": type("P", (), {"_proxies": {}})()})()
            self._endpoint = type("E", (), {"http_session": session})()
            self._request_signer = object()

    assert DirectParts.usable(Client())
    assert not DirectParts.usable(Client(proxies={"http": "http://p:1"}))
    assert not DirectParts.usable(Client(version="s3"))


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
            assert eng._s3_layer.direct is not None
            result = await eng.upload("tls", "obj", BIG, config=CFG)
            assert result.part_count == 3
            assert await read_object(eng, "tls", "obj") == BIG

    anyio.run(main)


def test_an_untrusted_certificate_fails_the_part_and_leaves_nothing(
    tls_rclone: RcloneServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiobotocore trusts the bundle, the part sender is told not to: the TLS check fails,
    the upload is aborted, and the error names only the failure's type."""
    assert tls_rclone.tls is not None
    monkeypatch.setenv("AWS_CA_BUNDLE", tls_rclone.tls[0])

    async def main() -> None:
        async with streamx.Engine(**tls_rclone.engine_args()) as eng:
            assert eng._s3_layer.direct is not None
            eng._s3_layer.direct._pool._verify = True  # the system's CAs: not this certificate
            cfg = streamx.TransferConfig(
                part_size=5 * MiB, multipart_threshold=5 * MiB, max_attempts=2
            )
            with pytest.raises(streamx.NetworkError) as info:
                await eng.upload("tls", "refused", BIG, config=cfg)
            assert "SSLCertVerificationError" in str(info.value)
            assert [u async for u in eng._s3_layer.list_multipart_uploads("tls")] == []

    anyio.run(main)
