"""Upload round trips, the single-PUT path, the writer, failures and cancellation.

Every test runs against moto and rclone (the ``server`` fixture); the
``bucket`` fixture fails a test that leaves a multipart upload behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiofiles
import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from conftest import list_uploads, read_object
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamx
from streamx._limits import MiB
from streamx.testing import capture_logs

PART = 5 * MiB
CFG = streamx.TransferConfig(part_size=PART, queue_size=3, multipart_threshold=PART)
SIZES = {
    "empty": 0,
    "one-byte": 1,
    "one-part": PART,
    "part-plus-one": PART + 1,
    "many-ragged": 3 * PART + 12_345,
}
PAYLOAD = os.urandom(max(SIZES.values()))


def chunks_of(data: bytes, sizes: list[int]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append(data[pos : pos + n])
        pos += n
        i += 1
    return out


def make_source(kind: str, data: bytes, tmp_path: Path) -> Any:
    ragged = chunks_of(data, [1, 0, 777_777, 3 * MiB + 5, 65_536, 0, 11])
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    if kind in ("path", "pathlike"):
        path = tmp_path / "source.bin"
        path.write_bytes(data)
        return str(path) if kind == "path" else path
    if kind == "sync-file":
        return io.BufferedReader(io.BytesIO(data))
    if kind == "sync-iterable":
        return iter(ragged)
    if kind == "async-iterable":

        async def gen() -> AsyncIterator[bytes]:
            for c in ragged:
                await anyio.lowlevel.checkpoint()
                yield c

        return gen()
    if kind == "stream-reader":
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return reader
    if kind == "anyio-stream":
        send, receive = anyio.create_memory_object_stream[bytes](len(ragged) + 1)
        for c in ragged:
            if c:
                send.send_nowait(c)
        send.close()
        return BufferedByteReceiveStream(receive)
    raise AssertionError(kind)


SOURCE_KINDS = [
    "bytes",
    "bytearray",
    "memoryview",
    "path",
    "pathlike",
    "sync-file",
    "sync-iterable",
    "async-iterable",
    "stream-reader",
    "anyio-stream",
]


# every kind with 0 bytes, 1 byte and many ragged parts; the part-boundary sizes
# with one source of each family (in memory, file, stream)
CASES = [(kind, size) for kind in SOURCE_KINDS for size in ("empty", "one-byte", "many-ragged")]
CASES += [
    (kind, size)
    for kind in ("bytes", "path", "async-iterable", "sync-iterable")
    for size in ("one-part", "part-plus-one")
]


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "size_name"), CASES)
async def test_round_trip(
    engine: streamx.Engine, bucket: str, tmp_path: Path, kind: str, size_name: str
) -> None:
    size = SIZES[size_name]
    data = PAYLOAD[:size]
    source = make_source(kind, data, tmp_path)
    result = await engine.upload(bucket, "obj", source, config=CFG)
    if isinstance(source, BufferedByteReceiveStream):
        await source.aclose()  # the caller's stream stays the caller's to close
    stored = await read_object(engine, bucket, "obj")
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    assert result.size == size
    expected_parts = max(1, -(-size // PART))
    assert result.part_count == expected_parts
    assert (result.upload_id is None) == (size < PART)
    assert result.bucket == bucket and result.key == "obj" and result.etag


@pytest.mark.anyio
async def test_aiofiles_source(engine: streamx.Engine, bucket: str, tmp_path: Path) -> None:
    data = PAYLOAD[: 2 * PART + 3]
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    async with aiofiles.open(path, "rb") as f:
        result = await engine.upload(bucket, "a", f, config=CFG)
    assert result.part_count == 3
    assert await read_object(engine, bucket, "a") == data


@pytest.mark.anyio
async def test_single_put_below_threshold_and_put_args(engine: streamx.Engine, bucket: str) -> None:
    data = PAYLOAD[: 2 * MiB]
    result = await engine.upload(
        bucket,
        "small.txt",
        data,
        ContentType="text/plain",
        Metadata={"origin": "test"},
    )
    assert result.upload_id is None and result.part_count == 1
    assert "-" not in result.etag.strip('"')
    head = await engine.client.head_object(Bucket=bucket, Key="small.txt")
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"origin": "test"}
    assert head["ContentLength"] == len(data)


@pytest.mark.anyio
async def test_a_small_upload_from_memory_takes_no_budget(
    server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """Bytes below the threshold go to the sender as the caller's memory (no part buffer), so
    they need no budget: they go up while other transfers hold all of it; a stream of the
    same bytes (read into a buffer of streamx's) waits for its share."""
    budget = streamx.MemoryBudget(MiB)
    data = PAYLOAD[:1000]
    async with streamx.Engine(**server.engine_args(), memory_budget=budget) as budgeted:
        await budget.acquire(MiB)  # another transfer holds the whole budget
        with anyio.fail_after(30):
            result = await budgeted.upload(bucket, "mem", data)
        assert result.size == len(data) and budget.in_use == MiB
        with anyio.move_on_after(1) as waited:
            await budgeted.upload(bucket, "stream", iter([data]))
        assert waited.cancelled_caught
        budget.release(MiB)
    assert await read_object(engine, bucket, "mem") == data
    assert await list_uploads(engine, bucket) == []


@pytest.mark.anyio
async def test_multipart_keeps_put_args(engine: streamx.Engine, bucket: str) -> None:
    await engine.upload(
        bucket, "big", PAYLOAD, config=CFG, ContentType="video/mp4", Metadata={"a": "1"}
    )
    head = await engine.client.head_object(Bucket=bucket, Key="big")
    assert head["ContentType"] == "video/mp4" and head["Metadata"] == {"a": "1"}


@pytest.mark.anyio
async def test_threshold_above_part_size(engine: streamx.Engine, bucket: str) -> None:
    cfg = streamx.TransferConfig(part_size=PART, queue_size=2, multipart_threshold=3 * PART)
    below = PAYLOAD[: 2 * PART + 7]  # read as three parts, sent as one PutObject
    r1 = await engine.upload(bucket, "below", iter([below]), config=cfg)
    assert r1.upload_id is None and await read_object(engine, bucket, "below") == below
    r2 = await engine.upload(bucket, "above", PAYLOAD, config=cfg)
    assert r2.part_count == 4 and await read_object(engine, bucket, "above") == PAYLOAD


@pytest.mark.anyio
async def test_key_with_odd_unicode_and_1024_bytes(engine: streamx.Engine, bucket: str) -> None:
    # segments stay under 255 bytes: rclone stores keys as file paths on disk
    key = "dir/ünï cødé +&=?#%/" + "/".join(["é" * 100] * 4) + "/"
    key = key + "x" * (1024 - len(key.encode()))
    assert len(key.encode()) == 1024
    await engine.upload(bucket, key, b"odd")
    assert await read_object(engine, bucket, key) == b"odd"


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cuts=st.lists(st.integers(0, 2 * PART + 999), max_size=12))
def test_any_chunking_round_trips(moto_server: Any, cuts: list[int]) -> None:
    data = PAYLOAD[: 2 * PART + 999]
    bounds = [0, *sorted(cuts), len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]

    async def run() -> bytes:
        async with streamx.Engine(**moto_server.engine_args()) as engine:
            name = f"hyp-{os.urandom(4).hex()}"
            await engine.client.create_bucket(Bucket=name)
            await engine.upload(name, "k", iter(chunks), config=CFG)
            assert await list_uploads(engine, name) == []
            return await read_object(engine, name, "k")

    assert anyio.run(run) == data


@pytest.mark.anyio
async def test_writer_round_trip_and_progress(engine: streamx.Engine, bucket: str) -> None:
    events: list[streamx.ProgressEvent] = []
    async with engine.open_writer(
        bucket, "w", config=CFG, on_progress=events.append, ContentType="application/x-rec"
    ) as writer:
        for chunk in chunks_of(PAYLOAD, [300_000, 1, 2 * MiB]):
            await writer.write(chunk)
        await writer.write(b"")
    assert writer.result is not None and writer.result.size == len(PAYLOAD)
    assert writer.bytes_written == len(PAYLOAD)
    assert await read_object(engine, bucket, "w") == PAYLOAD
    assert events[-1].final and events[-1].bytes_done == len(PAYLOAD)
    assert events[-1].total == len(PAYLOAD) and events[-1].parts_done == 4
    assert all(a.bytes_done <= b.bytes_done for a, b in itertools.pairwise(events))


@pytest.mark.anyio
async def test_writer_backpressure(engine: streamx.Engine, bucket: str) -> None:
    """write() waits while the window is full: the writer never runs far ahead of S3."""
    cfg = streamx.TransferConfig(
        part_size=PART,
        queue_size=1,
        high_water_mark=0,
        multipart_threshold=PART,
        progress_interval=0,
    )
    acked = 0

    def on_progress(event: streamx.ProgressEvent) -> None:
        nonlocal acked
        acked = event.bytes_done

    lead = []
    chunk = 256 * 1024
    async with engine.open_writer(bucket, "bp", config=cfg, on_progress=on_progress) as writer:
        for i in range(0, 6 * PART, chunk):
            await writer.write(PAYLOAD[i % (3 * PART) : i % (3 * PART) + chunk])
            lead.append(writer.bytes_written - acked)
    # one part in the window, one part being filled, one chunk in the hand-off
    assert max(lead) <= 2 * PART + chunk
    assert writer.result is not None and writer.result.part_count == 6


@pytest.mark.anyio
async def test_writer_exception_aborts(engine: streamx.Engine, bucket: str) -> None:
    with pytest.raises(KeyError, match="camera unplugged"):
        async with engine.open_writer(bucket, "w", config=CFG) as writer:
            await writer.write(PAYLOAD[: 3 * PART])
            await wait_for_upload(engine, bucket)
            raise KeyError("camera unplugged")
    assert await list_uploads(engine, bucket) == []
    with pytest.raises(streamx.NotFoundError):
        await engine.head(bucket, "w")


async def wait_for_upload(engine: streamx.Engine, bucket: str) -> None:
    """Wait until the multipart upload exists, so that the test proves its abort."""
    for _ in range(200):
        if await list_uploads(engine, bucket):
            return
        await anyio.sleep(0.02)
    raise AssertionError("the multipart upload never started")


@pytest.mark.anyio
async def test_source_raising_halfway(engine: streamx.Engine, bucket: str) -> None:
    def failing() -> Iterator[bytes]:
        yield PAYLOAD[: 2 * PART]
        raise OSError("disk vanished")

    with pytest.raises(streamx.SourceError) as info:
        await engine.upload(bucket, "f", failing(), config=CFG)
    err = info.value
    assert isinstance(err.__cause__, OSError) and "disk vanished" in str(err)
    assert err.bucket == bucket and err.key == "f" and err.upload_id
    assert err.part_number is not None


@pytest.mark.anyio
async def test_source_yielding_str_midway(engine: streamx.Engine, bucket: str) -> None:
    async def gen() -> AsyncIterator[Any]:
        yield PAYLOAD[: 2 * PART]
        yield "not bytes"

    with pytest.raises(TypeError, match="str") as info:
        await engine.upload(bucket, "t", gen(), config=CFG)
    assert isinstance(info.value, streamx.StreamxError) and info.value.upload_id


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["rclone", "seaweedfs"], indirect=True)
async def test_part_failing_for_good(engine: streamx.Engine, bucket: str) -> None:
    """The upload disappears server-side mid-way: NoSuchUpload is not retried, the error has context.

    rclone and SeaweedFS answer an UploadPart to an aborted upload with NoSuchUpload; moto 5.2
    answers 500 (a KeyError inside moto), which is rightly retried, so it cannot show this.
    Attempts are counted from streamx's own record: every retry logs ``upload.part.retry``
    (test_faults.py checks that record against the retry sleeps and the proxy's count)."""

    async def slow_stream() -> AsyncIterator[bytes]:
        for i in range(6):
            if i == 2:
                await wait_for_upload(engine, bucket)
                for upload in await list_uploads(engine, bucket):
                    await engine.client.abort_multipart_upload(
                        Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
            yield PAYLOAD[:PART]

    with capture_logs() as logs, pytest.raises(streamx.NotFoundError) as info:
        await engine.upload(bucket, "gone", slow_stream(), config=CFG)
    err = info.value
    assert err.code == "NoSuchUpload" and err.status == 404
    assert err.upload_id and err.bucket == bucket and err.key == "gone"
    assert err.part_number is not None
    retries = [e for e in logs if e["event"] == "upload.part.retry"]
    assert retries == [], f"NoSuchUpload was retried: {retries}"  # one attempt per part
    stored = [e["part_number"] for e in logs if e["event"] == "upload.part"]
    assert err.part_number not in stored and len(stored) == len(set(stored))


@pytest.mark.anyio
async def test_progress_callback_can_stop_an_upload(engine: streamx.Engine, bucket: str) -> None:
    class TooLarge(Exception):
        pass

    def limit(event: streamx.ProgressEvent) -> None:
        if event.bytes_done > PART:
            raise TooLarge("over the limit")

    cfg = streamx.TransferConfig(part_size=PART, queue_size=1, progress_interval=0)
    # the callback's own exception propagates unchanged (also above multipart_threshold)
    with pytest.raises(TooLarge):
        await engine.upload(bucket, "limited", iter([PAYLOAD] * 3), config=cfg, on_progress=limit)


@pytest.mark.anyio
async def test_leave_parts_on_error_keeps_the_upload(engine: streamx.Engine, bucket: str) -> None:
    def failing() -> Iterator[bytes]:
        yield PAYLOAD[: 2 * PART]
        raise OSError("stop")

    cfg = streamx.TransferConfig(part_size=PART, leave_parts_on_error=True)
    with pytest.raises(streamx.SourceError) as info:
        await engine.upload(bucket, "kept", failing(), config=cfg)
    uploads = await list_uploads(engine, bucket)
    assert [u["UploadId"] for u in uploads] == [info.value.upload_id]
    await engine.client.abort_multipart_upload(
        Bucket=bucket, Key="kept", UploadId=info.value.upload_id
    )


@pytest.mark.anyio
async def test_equal_parts_stream_keeps_part_size(engine: streamx.Engine, bucket: str) -> None:
    cfg = streamx.TransferConfig(part_size=PART, equal_parts=True, multipart_threshold=PART)
    result = await engine.upload(bucket, "eq", iter(chunks_of(PAYLOAD, [MiB])), config=cfg)
    parts = [p for p in range(result.part_count)]
    assert len(parts) == 4


@pytest.mark.anyio
async def test_missing_bucket_is_not_found(engine: streamx.Engine) -> None:
    with pytest.raises(streamx.NotFoundError) as info:
        await engine.upload("no-such-bucket-here", "k", PAYLOAD, config=CFG)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.bucket == "no-such-bucket-here"


@pytest.mark.anyio
async def test_engine_borrows_a_client(server: Any, bucket: str) -> None:
    from aiobotocore.session import AioSession

    async with AioSession().create_client("s3", **server.engine_args()) as client:
        async with streamx.Engine(client=client) as engine:
            await engine.upload(bucket, "borrowed", b"abc")
        # the engine did not close the caller's client
        head = await client.head_object(Bucket=bucket, Key="borrowed")
        assert head["ContentLength"] == 3


@pytest.mark.anyio
async def test_engine_reads_aws_environment(
    server: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    async with streamx.Engine() as engine:
        await engine.upload(bucket, "from-env", b"env")
        assert await read_object(engine, bucket, "from-env") == b"env"


@pytest.mark.anyio
async def test_logs_carry_context_and_no_secret(server: Any, bucket: str) -> None:
    from streamx.testing import capture_logs

    with capture_logs() as logs:
        async with streamx.Engine(**server.engine_args()) as engine:
            await engine.upload(bucket, "logged", PAYLOAD, config=CFG)
    names = [e["event"] for e in logs]
    assert "upload.start" in names and "upload.complete" in names
    assert names.count("upload.part") == 4
    done = next(e for e in logs if e["event"] == "upload.complete")
    assert done["bucket"] == bucket and done["key"] == "logged" and done["upload_id"]
    text = repr(logs)
    assert server.secret_key not in text and server.access_key not in text
