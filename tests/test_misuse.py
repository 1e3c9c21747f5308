"""Misuse of the API gets a message that says what to do, against real servers.

* ``engine.open_writer(...)`` without ``async with`` (``.write`` on it, or ``await`` it);
* ``writer.write`` after the block;
* ``async with engine`` entered twice (the outer block keeps a working engine);
* ``size=`` that the stream does not keep (more or fewer bytes): SourceError, aborted;
* an ``on_progress`` that raises: the caller's own exception, unchanged, below and
  above ``multipart_threshold``;
* an immediate in-process resume after parts were cut mid-request (rclone).
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import list_uploads, read_object
from faultproxy import FaultProxy

import streamx

MiB = 1024 * 1024
PART = 5 * MiB
CFG = streamx.TransferConfig(part_size=PART, queue_size=2, multipart_threshold=PART)


async def chunks(data: bytes, size: int = MiB) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.anyio
async def test_open_writer_without_async_with(moto_server: Any) -> None:
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            writer = eng.open_writer("b-misuse", "k")
            with pytest.raises(streamx.UsageError, match=r"async with engine\.open_writer"):
                await writer.write(b"data")
            with pytest.raises(streamx.UsageError, match=r"async with engine\.open_writer"):
                await eng.open_writer("b-misuse", "k")
        assert proxy.requests == []


@pytest.mark.anyio
async def test_write_after_the_block(engine: streamx.Engine, bucket: str) -> None:
    async with engine.open_writer(bucket, "w") as writer:
        await writer.write(b"inside")
    assert writer.result is not None and writer.result.size == 6
    with pytest.raises(streamx.UsageError, match=r"after the .* block: the upload has completed"):
        await writer.write(b"too late")
    assert await read_object(engine, bucket, "w") == b"inside"


@pytest.mark.anyio
async def test_write_after_a_failed_block(engine: streamx.Engine, bucket: str) -> None:
    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        async with engine.open_writer(bucket, "w2", config=CFG) as writer:
            await writer.write(os.urandom(PART + 1))
            raise Stop
    with pytest.raises(streamx.UsageError, match="has ended"):
        await writer.write(b"x")


@pytest.mark.anyio
async def test_entering_an_engine_twice_is_refused(server: Any, bucket: str) -> None:
    async with streamx.Engine(**server.engine_args()) as eng:
        with pytest.raises(streamx.UsageError, match="entered twice"):
            async with eng:
                pytest.fail("the inner block must not run")
        # the outer block's engine still works
        result = await eng.upload(bucket, "after", b"still open")
        assert result.size == 10
        assert await read_object(eng, bucket, "after") == b"still open"
    with pytest.raises(streamx.UsageError, match="async with Engine"):
        eng.client  # noqa: B018
    async with eng:  # entering it again after the block is fine
        assert (await eng.head(bucket, "after")).size == 10


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("given", "streamed", "message"),
    [
        (3, 9, "more than size=3"),  # a single PUT: refused before it is sent
        (PART, 3 * PART, "more than size="),  # multipart: aborted
        (3 * PART, PART + 10, "ended after"),  # fewer: multipart aborted at the end
        (100, 10, "ended after 10 bytes, but size=100"),
    ],
)
async def test_size_must_be_kept(
    engine: streamx.Engine, bucket: str, given: int, streamed: int, message: str
) -> None:
    data = random.Random(given).randbytes(streamed)
    with pytest.raises(streamx.SourceError, match=message):
        await engine.upload(bucket, "sized", chunks(data), size=given, config=CFG)
    with pytest.raises(streamx.SourceError, match=message):
        async with engine.open_writer(bucket, "sized", size=given, config=CFG) as writer:
            async for chunk in chunks(data):
                await writer.write(chunk)
    with pytest.raises(streamx.NotFoundError):
        await engine.head(bucket, "sized")
    # (the bucket fixture checks that no multipart upload was left)


@pytest.mark.anyio
async def test_exact_size_is_accepted(engine: streamx.Engine, bucket: str) -> None:
    data = random.Random(5).randbytes(2 * PART + 3)
    events: list[streamx.ProgressEvent] = []
    result = await engine.upload(
        bucket, "exact", chunks(data), size=len(data), config=CFG, on_progress=events.append
    )
    assert result.size == len(data)
    assert events and all(e.total == len(data) for e in events)


@pytest.mark.anyio
@pytest.mark.parametrize("size", [PART - 1, 3 * PART])
async def test_a_raising_on_progress_propagates_unchanged(
    engine: streamx.Engine, bucket: str, size: int
) -> None:
    """Below and above multipart_threshold: the caller's own exception, not a wrapper."""

    class TooBig(Exception):
        pass

    def limit(event: streamx.ProgressEvent) -> None:
        if event.bytes_done > 0:
            raise TooBig("over the limit")

    cfg = streamx.TransferConfig(
        part_size=PART, queue_size=2, multipart_threshold=PART, progress_interval=0
    )
    with pytest.raises(TooBig, match="over the limit") as info:
        await engine.upload(bucket, "limited", os.urandom(size), config=cfg, on_progress=limit)
    assert type(info.value) is TooBig
    assert await list_uploads(engine, bucket) == []


@pytest.mark.anyio
async def test_immediate_resume_after_parts_were_cut(rclone_server: Any, tmp_path: Path) -> None:
    """rclone serve s3 writes parts to disk in order; a part sent again while it still
    processes the request cut by the failure can fail the whole upload (measured without
    the settle: 1-5 failures in 10). Each round: an on_progress raises while parts are in
    flight, then the same call resumes at once; it must complete with the right bytes."""
    part = 8 * MiB
    cfg = streamx.TransferConfig(
        part_size=part, queue_size=8, multipart_threshold=part, progress_interval=0
    )
    data = os.urandom(12 * part)

    class Stop(Exception):
        pass

    def stop(event: streamx.ProgressEvent) -> None:
        if event.bytes_done >= part:
            raise Stop

    async with streamx.Engine(**rclone_server.engine_args()) as eng:
        for round_ in range(6):
            bucket = f"resume-{round_}-{os.getpid()}"
            await eng.client.create_bucket(Bucket=bucket)
            checkpoint = tmp_path / f"{round_}.json"
            with pytest.raises(Stop):
                await eng.upload(
                    bucket, "k", data, config=cfg, checkpoint=checkpoint, on_progress=stop
                )
            assert checkpoint.exists()
            result = await eng.upload(bucket, "k", data, config=cfg, checkpoint=checkpoint)
            assert result.size == len(data)
            assert await read_object(eng, bucket, "k") == data
            assert not checkpoint.exists()
            assert await list_uploads(eng, bucket) == []
