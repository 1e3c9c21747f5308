"""Source adapters cut any chunking into exact parts (pure logic, no server)."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamx
from streamx.upload.source import open_source

pytestmark = pytest.mark.unit  # pure logic: no server

DATA = os.urandom(300_000)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


async def drain(source: object, part: int) -> list[bytes]:
    src = open_source(source)
    parts = []
    while True:
        buf = await src.read(part)
        parts.append(bytes(buf))
        if len(buf) < part:
            break
    await src.aclose()
    return parts


def check(parts: list[bytes], data: bytes, part: int) -> None:
    assert b"".join(parts) == data
    assert all(len(p) == part for p in parts[:-1])
    assert len(parts[-1]) < part or parts[-1] == b"" or len(data) % part == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    points=st.lists(st.integers(0, len(DATA)), max_size=40),
    part=st.integers(1_000, 70_000),
    kind=st.sampled_from(["sync", "async", "mutable"]),
)
def test_any_chunking_gives_exact_parts(points: list[int], part: int, kind: str) -> None:
    chunks = cut(DATA, points)

    def sync_gen() -> Iterator[bytes]:
        yield from chunks

    async def async_gen() -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    def reused_buffer() -> Iterator[bytearray]:
        buf = bytearray()
        for c in chunks:
            buf[:] = c  # the generator reuses one buffer, as real readers do
            yield buf

    source = {"sync": sync_gen, "async": async_gen, "mutable": reused_buffer}[kind]()
    parts = anyio.run(drain, source, part)
    check(parts, DATA, part)


def test_a_sync_iterable_costs_one_thread_hop_per_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are gathered into the part inside the worker thread, not one hop per chunk."""
    hops = 0
    real = anyio.to_thread.run_sync

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal hops
        hops += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    chunks = [DATA[i : i + 1024] for i in range(0, 64 * 1024, 1024)]  # 64 chunks of 1 KiB
    parts = anyio.run(drain, iter(chunks), 16 * 1024)
    assert b"".join(parts) == DATA[: 64 * 1024]
    assert hops == 5  # 4 full parts, then the read that finds the end


@pytest.mark.anyio
async def test_readers_and_streams(tmp_path: object) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(DATA)
    reader.feed_eof()
    check(await drain(reader, 65_536), DATA, 65_536)
    check(await drain(io.BytesIO(DATA), 65_536), DATA, 65_536)
    check(await drain(memoryview(DATA), 65_536), DATA, 65_536)
    check(await drain(bytearray(DATA), 65_536), DATA, 65_536)

    send, receive = anyio.create_memory_object_stream[bytes](100)
    for c in cut(DATA, [5, 70_000, 70_001]):
        send.send_nowait(c)
    send.close()
    from anyio.streams.buffered import BufferedByteReceiveStream

    async with BufferedByteReceiveStream(receive) as stream:  # the caller's to close
        check(await drain(stream, 65_536), DATA, 65_536)


@pytest.mark.anyio
async def test_non_bytes_chunk_is_a_type_error_naming_the_type() -> None:
    with pytest.raises(streamx.SourceTypeError, match=r"yielded str.*encode") as info:
        await drain(iter([b"ok", "text"]), 1000)
    assert isinstance(info.value, TypeError)
    with pytest.raises(TypeError, match="yielded int"):
        await drain(iter([b"ok", 7]), 1000)


def test_unsupported_sources_are_named() -> None:
    for bad in (42, 3.5, None, {"a": b"b"}):
        with pytest.raises(TypeError, match=type(bad).__name__):
            open_source(bad)
    with pytest.raises(TypeError, match="text mode"):
        open_source(io.StringIO("abc"))


# ------------------------------------------------------- gathered parts (streamx/_gathered.py)


def test_large_chunks_become_a_part_without_a_copy() -> None:
    """Chunks of 64 KiB and more are the part's pieces themselves: no byte is copied."""
    from streamx._gathered import Gathered

    chunks = [os.urandom(256 * 1024) for _ in range(5)]

    async def main() -> None:
        async def gen() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        src = open_source(gen())
        part = await src.read(1024 * 1024)
        assert isinstance(part, Gathered) and len(part) == 1024 * 1024
        assert all(p is c for p, c in zip(part.pieces, chunks[:4], strict=True))
        last = await src.read(1024 * 1024)  # the rest: the fifth chunk itself
        assert last is chunks[4] and src.gathers
        await src.aclose()

    anyio.run(main)


def test_small_chunks_are_copied_into_one_buffer_from_then_on() -> None:
    """A chunk under 64 KiB that does not end the part turns the stream to copying: the
    pieces gathered so far go into the buffer with it, and so do later parts."""
    big, small = os.urandom(128 * 1024), os.urandom(1000)
    data = big + small * 200 + big

    async def main() -> None:
        async def gen() -> AsyncIterator[bytes]:
            yield big
            for _ in range(200):
                yield small
            yield big

        src = open_source(gen())
        first = await src.read(256 * 1024)
        assert isinstance(first, bytearray) and bytes(first) == data[: 256 * 1024]
        assert not src.gathers
        rest = await src.read(256 * 1024)
        assert isinstance(rest, bytearray) and bytes(rest) == data[256 * 1024 :]
        await src.aclose()

    anyio.run(main)


@pytest.mark.parametrize("algorithm", ["CRC32C", "CRC32", "CRC64NVME", "SHA256"])
def test_a_gathered_part_has_the_checksum_of_its_bytes(algorithm: str) -> None:
    from streamx._checksum import compute
    from streamx._gathered import Gathered

    pieces: list[bytes | memoryview] = [os.urandom(70_000), memoryview(os.urandom(90_000))[5:], b"x"]
    joined = b"".join(pieces)
    assert compute(algorithm, Gathered(pieces)) == compute(algorithm, joined)
