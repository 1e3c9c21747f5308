"""A download's ranges read into their buffers by the part sender (``PartSender.fetch_into``).

On the worker-thread sender (streamx/_s3/_threaded.py, the default) the loop signs and a
thread reads the body into the range's memory; on aiobotocore's (``direct_parts=False``)
the loop reads it. Both are checked here against real servers and real sockets: the
answer is the one botocore gives, a body cut short counts the bytes that arrived (a
retry asks only for the rest), an answer the caller refuses reads no body, and a
request given up on returns only once its thread no longer writes into the buffer.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from faultproxy import Fault, FaultProxy
from rawserver import read_head, serving, threads_in

import streamx
import streamx._s3._handoff as handoff
from streamx._s3 import RangeRead, ThreadSender

MiB = 1024 * 1024
DATA = hashlib.sha256(b"receive").digest() * (3 * MiB // 32)  # 3 MiB


class Into:
    """An ``accept`` that records the answer and hands out a buffer of the answer's length."""

    def __init__(self) -> None:
        self.answer: Mapping[str, Any] | None = None
        self.buf = bytearray()

    def __call__(self, answer: Mapping[str, Any]) -> memoryview:
        self.answer = answer
        self.buf = bytearray(int(answer["ContentLength"]))
        return memoryview(self.buf)


@pytest.fixture(params=["direct", "aiobotocore"])
async def either(request: pytest.FixtureRequest, server: Any, proxy: FaultProxy) -> Any:
    """An engine through the proxy, once per transport."""
    direct = request.param == "direct"
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    async with streamx.Engine(**args, direct_parts=direct) as eng:
        assert isinstance(eng._s3_layer.sender, ThreadSender) is direct
        yield eng


@pytest.mark.anyio
async def test_a_range_lands_in_its_buffer_with_botocores_answer(
    either: streamx.Engine, engine: streamx.Engine, proxy: FaultProxy, bucket: str
) -> None:
    key = "dir/odd key ü+%.bin"
    put = await engine.upload(bucket, key, DATA, ContentType="application/x-test")
    into = Into()
    read = RangeRead({"Range": "bytes=1000-2098151", "IfMatch": put.etag}, into, lambda: None)
    await either._s3_layer.get_into(bucket, key, read)
    assert read.received == 2097152 and bytes(into.buf) == DATA[1000:2098152]
    # the members aiobotocore's own ranged answer has, equal (ContentRange, ETag, types ...)
    ref = await engine.client.get_object(Bucket=bucket, Key=key, Range="bytes=1000-2098151")
    ref["Body"].close()
    members = {k: v for k, v in ref.items() if k not in ("Body", "ResponseMetadata")}
    assert into.answer is not None
    assert {k: into.answer.get(k) for k in members} == members
    sent = proxy.sent("GetObject")[-1]
    assert sent.headers["range"] == "bytes=1000-2098151"
    assert sent.headers["if-match"] == put.etag
    with pytest.raises(streamx.NotFoundError):
        await either._s3_layer.get_into(bucket, "missing", RangeRead({}, Into(), lambda: None))


@pytest.mark.anyio
async def test_a_body_cut_short_counts_what_arrived(
    either: streamx.Engine, engine: streamx.Engine, proxy: FaultProxy, bucket: str
) -> None:
    await engine.upload(bucket, "k", DATA)
    proxy.add(Fault("truncate", op="GetObject", phase="response", at=MiB))
    into = Into()
    read = RangeRead({}, into, lambda: None)
    with pytest.raises(streamx.NetworkError):
        await either._s3_layer.get_into(bucket, "k", read)
    # every byte that arrived is counted and in place: a retry asks for the rest only
    assert MiB - 4096 < read.received <= MiB
    assert bytes(into.buf[: read.received]) == DATA[: read.received]
    # the connection was not given back with bytes unread: the next GET is whole
    again = Into()
    await either._s3_layer.get_into(bucket, "k", RangeRead({}, again, lambda: None))
    assert bytes(again.buf) == DATA


@pytest.mark.anyio
async def test_an_answer_the_caller_refuses_reads_no_body(
    either: streamx.Engine, engine: streamx.Engine, bucket: str
) -> None:
    await engine.upload(bucket, "k", DATA)

    def refuse(answer: Mapping[str, Any]) -> memoryview:
        raise streamx.ObjectChangedError("another version", bucket=bucket, key="k")

    read = RangeRead({}, refuse, lambda: None)
    with pytest.raises(streamx.ObjectChangedError):
        await either._s3_layer.get_into(bucket, "k", read)
    assert read.received == 0
    into = Into()
    await either._s3_layer.get_into(
        bucket, "k", RangeRead({"Range": "bytes=0-9"}, into, lambda: None)
    )
    assert bytes(into.buf) == DATA[:10]


# ---------------------------------------------------------------- real sockets


@pytest.fixture
def dribbler() -> Iterator[tuple[str, threading.Event]]:
    """A server that answers any GET with the headers of a 64 MiB object and then sends its
    body 64 KiB at a time every 20 ms, until the client leaves or ``stop`` is set."""
    stop = threading.Event()

    def dribble(conn: socket.socket) -> None:
        if read_head(conn):
            conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "e"\r\nContent-Length: 67108864\r\n\r\n')
            while not stop.wait(0.02):
                conn.sendall(b"x" * 65536)

    with serving(dribble) as url:
        yield url, stop
        stop.set()


def receiving_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per worker thread inside ``receive_into``."""
    return threads_in(monkeypatch, handoff, "receive_into")


def test_a_read_given_up_on_stops_writing_before_the_cancel_returns(
    dribbler: tuple[str, threading.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = dribbler
    active = receiving_threads(monkeypatch)
    into = Into()

    async def main() -> None:
        async with streamx.Engine(
            endpoint_url=url,
            aws_access_key_id="a",
            aws_secret_access_key="b",
            region_name="us-east-1",
        ) as eng:
            read = RangeRead({}, into, lambda: None, stall_timeout=5)
            with anyio.move_on_after(0.3) as scope:
                await eng._s3_layer.get_into("bkt", "k", read)
            assert scope.cancelled_caught
            assert active == []  # the thread returned before the cancel did
            seen = bytes(into.buf)
            assert 0 < read.received < 64 * MiB and seen.count(b"x") == read.received
            await anyio.sleep(0.2)
            assert bytes(into.buf) == seen  # nothing written after

    anyio.run(main)


def test_a_stalled_range_is_retried_then_fails_as_a_network_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that sends the head and then nothing: the stall detector cuts each attempt
    (never a hang), the range is retried, and the download fails with NetworkError."""
    hold = threading.Event()
    gets: list[int] = []

    def stall(conn: socket.socket) -> None:
        head = read_head(conn)
        if head.startswith(b"HEAD "):  # the download's checksum probe: none stored
            conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "e"\r\nContent-Length: 1024\r\n\r\n')
            return
        start = int(head.lower().split(b"range: bytes=")[1].split(b"-")[0])
        gets.append(start)
        conn.sendall(
            b'HTTP/1.1 206 Partial Content\r\nETag: "e"\r\n'
            + f"Content-Length: {1024 - start}\r\n".encode()
            + f"Content-Range: bytes {start}-1023/1024\r\n\r\n".encode()
            + b"y" * 100
        )
        hold.wait(30)

    active = receiving_threads(monkeypatch)

    async def main() -> None:
        retry = streamx.RetryPolicy(max_attempts=2, sleep=lambda s: anyio.lowlevel.checkpoint())
        async with streamx.Engine(
            endpoint_url=url,
            aws_access_key_id="a",
            aws_secret_access_key="b",
            region_name="us-east-1",
            retry=retry,
        ) as eng:
            got = bytearray()
            cfg = streamx.TransferConfig(stall_timeout=0.5, max_attempts=2)
            with pytest.raises(streamx.NetworkError, match="stall_timeout"):
                await eng.download_to("bkt", "k", got.extend, config=cfg)
            assert active == [] and got == b""

    try:
        with serving(stall) as url:
            anyio.run(main)
    finally:
        hold.set()
    assert gets == [0, 100]  # the retry asked for the bytes still missing


@pytest.mark.parametrize("direct", [True, False])
def test_the_other_ranges_go_out_while_the_first_one_arrives(direct: bool) -> None:
    """A download asks for its other ranges once the first answer's headers told the size,
    not once the first range's body is in: this server holds the first range's body back
    after 1 MiB until another range has been asked for (a download that waited for the first
    range would stall here until the server gives up after 10 s)."""
    size, part = 10 * MiB + 1, 5 * MiB
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    other_asked = threading.Event()
    held_back: list[bool] = []

    def serve(conn: socket.socket) -> None:
        while head := read_head(conn):
            if head.startswith(b"HEAD "):  # the checksum probe: no checksum stored
                conn.sendall(
                    b'HTTP/1.1 200 OK\r\nETag: "e"\r\n' + f"Content-Length: {size}\r\n\r\n".encode()
                )
                continue
            spec = head.lower().split(b"range: bytes=")[1].split(b"\r\n")[0]
            start, end = (int(x) for x in spec.split(b"-"))
            end = min(end, size - 1)
            if start > 0:
                other_asked.set()
            body = data[start : end + 1]
            conn.sendall(
                b'HTTP/1.1 206 Partial Content\r\nETag: "e"\r\n'
                + f"Content-Length: {len(body)}\r\n".encode()
                + f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n".encode()
            )
            if start == 0:
                conn.sendall(body[:MiB])
                held_back.append(other_asked.wait(10))
                conn.sendall(body[MiB:])
            else:
                conn.sendall(body)

    async def main() -> None:
        async with streamx.Engine(
            endpoint_url=url, aws_access_key_id="a",
            aws_secret_access_key="b", region_name="us-east-1", direct_parts=direct,
        ) as eng:
            got = bytearray()
            cfg = streamx.TransferConfig(part_size=part, queue_size=2)
            await eng.download_to("bkt", "k", got.extend, config=cfg)
            assert got == data

    with serving(serve) as url:
        anyio.run(main)
    assert held_back == [True]  # the second range was asked for while the first was held


# ---------------------------------------------------------------- streamed bodies (download())


@pytest.mark.anyio
@pytest.mark.parametrize("direct", [True, False])
async def test_a_streamed_get_is_read_by_worker_threads_and_gives_its_connection_back(
    direct: bool, server: Any, proxy: FaultProxy, engine: streamx.Engine, bucket: str
) -> None:
    """``download()`` on either transport: the bytes, early closes that drop the connection,
    and more streams than the pool has connections (two): they take turns, none is lost."""
    await engine.upload(bucket, "k", DATA)
    args = {**server.engine_args(), "endpoint_url": proxy.url, "direct_parts": direct}
    async with streamx.Engine(**args, max_pool_connections=2) as eng:
        assert isinstance(eng._s3_layer.sender, ThreadSender) is direct
        async with eng.download(bucket, "k") as stream:
            assert await stream.read_all() == DATA
        for _ in range(3):  # broken off after one chunk: the connection is dropped
            async with eng.download(bucket, "k", chunk_size=65536) as stream:
                assert await stream.__anext__() == DATA[:65536]
        results: list[bytes] = []

        async def one() -> None:
            async with eng.download(bucket, "k") as s:
                results.append(await s.read_all())

        with anyio.fail_after(60):  # more streams than connections: they take turns
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(one)
    assert results == [DATA] * 6
    gets = proxy.sent("GetObject")
    assert len(gets) == 10
    assert all(("streamx" in g.headers["user-agent"]) is direct for g in gets)
