"""The thread sender's connections (streamx/_s3/_pool.py): client certificates.

TLS verification against a CA bundle, untrusted certificates and proxies are
checked in test_direct.py against rclone; here the client certificate, which
rclone's test server does not ask for: a TLS server on 127.0.0.1 that requires
one (Python's ssl module, CERT_REQUIRED) and answers each PUT with 200.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_direct import LoopbackServer, put_request, self_signed

import streamx
from streamx._s3 import AiobotocoreSender, ThreadSender
from streamx._s3._session import HttpSettings


class MutualTLSServer(LoopbackServer):
    """Serves https on 127.0.0.1, requiring a client certificate issued by ``client_ca``;
    notes the subject of each certificate presented and answers every PUT with 200."""

    scheme = "https"
    join_on_close = True

    def __init__(self, cert: str, key: str, client_ca: str) -> None:
        self.peers: list[Any] = []
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._context.verify_mode = ssl.CERT_REQUIRED
        self._context.load_verify_locations(client_ca)
        super().__init__()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            with self._context.wrap_socket(raw, server_side=True) as conn:
                self.peers.append(conn.getpeercert())
                while self._answer(conn):
                    pass
        except (OSError, ssl.SSLError):
            pass  # a client without a certificate: the handshake fails, as it should
        finally:
            raw.close()

    @staticmethod
    def _answer(conn: ssl.SSLSocket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "e"\r\nContent-Length: 0\r\n\r\n')
        return True


@pytest.fixture
def mtls(tmp_path: Path) -> Iterator[tuple[MutualTLSServer, tuple[str, str], str]]:
    """The server, a client certificate it accepts (cert, key), and its CA bundle."""
    (tmp_path / "server").mkdir()
    (tmp_path / "client").mkdir()
    server_cert, server_key = self_signed(tmp_path / "server")
    client = self_signed(tmp_path / "client")
    server = MutualTLSServer(server_cert, server_key, client_ca=client[0])
    try:
        yield server, client, server_cert
    finally:
        server.close()


def sender_for(eng: streamx.Engine, bundle: str, cert: tuple[str, str] | None) -> ThreadSender:
    return ThreadSender(
        eng.client,
        settings=HttpSettings(bundle, None, (5.0, 5.0), 2, None, cert, None),
        credentials=("AKIDEXAMPLE", "secret-that-must-not-leak", None),
        sign_payload=None,
        fallback=AiobotocoreSender(eng.client),
    )


def test_parts_present_the_client_certificate(
    mtls: tuple[MutualTLSServer, tuple[str, str], str],
) -> None:
    """``client_cert`` (botocore's setting, as the client's session got it): the part's
    connection presents it, and a server that requires one takes the part."""
    server, client, bundle = mtls

    async def main() -> dict[str, Any]:
        args = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "x"}
        async with streamx.Engine(endpoint_url=server.url, region_name="us-east-1", **args) as eng:
            sender = sender_for(eng, bundle, client)
            try:
                return await sender.send(put_request("b", "k", b"x" * 1000))
            finally:
                sender.close()

    answer = anyio.run(main)
    assert answer["ETag"] == '"e"'
    assert len(server.peers) == 1 and server.peers[0]  # a certificate was presented


def test_without_the_client_certificate_the_part_fails(
    mtls: tuple[MutualTLSServer, tuple[str, str], str],
) -> None:
    """The same server, no ``client_cert``: the handshake is refused and the part fails
    with a NetworkError that names no secret."""
    server, _, bundle = mtls

    async def main() -> None:
        args = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "x"}
        async with streamx.Engine(endpoint_url=server.url, region_name="us-east-1", **args) as eng:
            own = eng._s3_layer.sender
            sender = sender_for(eng, bundle, None)
            eng._s3_layer.sender = sender
            try:
                with pytest.raises(streamx.NetworkError) as info:
                    await eng._s3_layer.put_object("b", "k", b"x" * 1000)
            finally:
                eng._s3_layer.sender = own
                sender.close()
            assert "secret-that-must-not-leak" not in str(info.value)

    anyio.run(main)
    assert server.peers == []
