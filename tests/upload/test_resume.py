"""Crash-safe resume: ``upload(..., checkpoint=PATH)``.

The crash is real in one test (a child process SIGKILLed mid-upload against
rclone, a separate process whose state survives). The others "crash" the
first attempt with a part that fails for good, which with a checkpoint keeps
the multipart upload, as a crash would.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import list_uploads, read_object
from faultproxy import Fault, FaultProxy

import streamx
from streamx.testing import capture_logs

MiB = 1024 * 1024
PART = 5 * MiB
DATA = random.Random(11).randbytes(4 * PART + 777)  # 5 parts
CFG = streamx.TransferConfig(part_size=PART, queue_size=1, multipart_threshold=PART, max_attempts=1)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunks(data: bytes, size: int = 1000_003) -> Iterator[bytes]:
    """A non-seekable source."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def crash_at_part_3(
    engine: streamx.Engine, proxy: FaultProxy, bucket: str, key: str, source: Any, cp: Path
) -> None:
    """First attempt: part 3 fails for good; parts 1-2 are committed and recorded."""
    fault = Fault(
        "status", op="UploadPart", query={"partNumber": "3"}, code="InternalError", status=500
    )
    proxy.add(fault)
    with pytest.raises(streamx.ServiceUnavailableError):
        await engine.upload(bucket, key, source, config=CFG, checkpoint=cp)
    proxy.faults.remove(fault)
    assert not proxy.sent("AbortMultipartUpload")  # kept for the resume
    record = recorded(cp)
    assert sorted(record["parts"]) == ["1", "2"] and record["bytes_committed"] == 2 * PART


def recorded(cp: Path) -> dict[str, Any]:
    """The checkpoint as written (a few hundred bytes: read synchronously)."""
    return dict(json.loads(cp.read_text()))


def part_bytes(proxy: FaultProxy, since: int = 0) -> int:
    return sum(r.body_bytes for r in proxy.requests[since:] if r.op == "UploadPart")


@pytest.mark.anyio
async def test_sigkill_mid_upload_then_resume(rclone_server: Any, tmp_path: Path) -> None:
    """A real crash: the child dies while parts 7-8 hang; the resume sends only parts 7-12."""
    data = random.Random(5).randbytes(60 * MiB)
    source, cp = tmp_path / "src.bin", tmp_path / "upload.checkpoint"
    source.write_bytes(data)
    child = f"""
import asyncio, streamx
async def main():
    cfg = streamx.TransferConfig(part_size={PART}, queue_size=2)
    async with streamx.Engine() as engine:
        await engine.upload("kill-bucket", "big", {str(source)!r}, config=cfg, checkpoint={str(cp)!r})
asyncio.run(main())
"""
    async with FaultProxy(rclone_server.endpoint_url) as proxy:
        args = {**rclone_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            await eng.client.create_bucket(Bucket="kill-bucket")
            # parts from 7 on hang (the proxy never reads them), so the kill lands mid-way
            proxy.add(
                Fault(
                    "stall", op="UploadPart", where=lambda r: (r.part_number or 0) >= 7, times=None
                )
            )
            env = {**os.environ, **rclone_server.env(), "AWS_ENDPOINT_URL": proxy.url}
            process = await anyio.open_process([sys.executable, "-c", child], env=env)
            try:
                with anyio.fail_after(60):
                    # another process writes the file: poll it
                    while not (cp.exists() and len(recorded(cp)["parts"]) >= 6):  # noqa: ASYNC110
                        await anyio.sleep(0.05)
            finally:
                process.kill()  # SIGKILL: no cleanup runs in the child
                await process.wait()
            first = part_bytes(proxy)
            record = recorded(cp)
            assert sorted(map(int, record["parts"])) == [1, 2, 3, 4, 5, 6]
            assert len(await list_uploads(eng, "kill-bucket")) == 1
            assert (await eng.client.list_objects_v2(Bucket="kill-bucket")).get("KeyCount", 0) == 0

            proxy.clear()
            mark = len(proxy.requests)
            result = await eng.upload(
                "kill-bucket",
                "big",
                source,
                config=streamx.TransferConfig(part_size=PART),
                checkpoint=cp,
            )

            second = part_bytes(proxy, mark)
            assert sha(await read_object(eng, "kill-bucket", "big")) == sha(data)
            assert result.size == len(data) and result.part_count == 12
            assert second == len(data) - 6 * PART < len(data)
            assert first >= 6 * PART
            assert not cp.exists()
            assert await list_uploads(eng, "kill-bucket") == []


@pytest.mark.anyio
async def test_non_seekable_source_is_read_through_and_verified(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    cp = tmp_path / "cp.json"
    await crash_at_part_3(pengine, proxy, bucket, "stream", chunks(DATA), cp)
    mark = len(proxy.requests)
    events: list[streamx.ProgressEvent] = []

    with capture_logs() as logs:
        result = await pengine.upload(
            bucket, "stream", chunks(DATA), config=CFG, checkpoint=cp, on_progress=events.append
        )

    assert sha(await read_object(engine, bucket, "stream")) == sha(DATA)
    assert result.part_count == 5 and not cp.exists()
    assert part_bytes(proxy, mark) == len(DATA) - 2 * PART
    assert sorted(r.part_number for r in proxy.requests[mark:] if r.op == "UploadPart") == [3, 4, 5]  # type: ignore[type-var]
    resume = next(e for e in logs if e["event"] == "upload.resume")
    assert resume["skip"] == "read-verify" and resume["parts_committed"] == 2
    assert events[-1].bytes_done == len(DATA)


@pytest.mark.anyio
async def test_changed_bytes_are_caught_before_anything_is_sent(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    cp = tmp_path / "cp.json"
    await crash_at_part_3(pengine, proxy, bucket, "changed", chunks(DATA), cp)
    changed = bytearray(DATA)
    changed[PART + 10] ^= 0xFF  # a byte of committed part 2
    mark = len(proxy.requests)

    with pytest.raises(streamx.CheckpointError, match="part 2 differ") as info:
        await pengine.upload(bucket, "changed", chunks(bytes(changed)), config=CFG, checkpoint=cp)
    assert info.value.part_number == 2 and "restart=True" in str(info.value)
    assert not proxy.sent("UploadPart")[mark:] and part_bytes(proxy, mark) == 0
    assert cp.exists()  # nothing is thrown away without being asked

    await pengine.upload(bucket, "changed", bytes(changed), config=CFG, checkpoint=cp, restart=True)
    assert await read_object(engine, bucket, "changed") == bytes(changed)
    assert not cp.exists()


@pytest.mark.anyio
async def test_a_file_is_seeked_and_a_touched_file_is_verified(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    src, cp = tmp_path / "data.bin", tmp_path / "cp.json"
    src.write_bytes(DATA)
    await crash_at_part_3(pengine, proxy, bucket, "file", src, cp)
    # the same bytes, a new mtime: seeking is no longer safe, reading and verifying is
    os.utime(src, ns=(1_000_000_000, 1_000_000_000))
    await crash_at_part_3_again(pengine, proxy, bucket, src, cp)

    with capture_logs() as logs:
        await pengine.upload(bucket, "file", src, config=CFG, checkpoint=cp)
    assert sha(await read_object(engine, bucket, "file")) == sha(DATA)
    assert next(e for e in logs if e["event"] == "upload.resume")["skip"] == "seek"


async def crash_at_part_3_again(
    engine: streamx.Engine, proxy: FaultProxy, bucket: str, src: Path, cp: Path
) -> None:
    """Resume once with the touched file (read-verify), crashing again at part 3."""
    fault = Fault(
        "status", op="UploadPart", query={"partNumber": "3"}, code="InternalError", status=500
    )
    proxy.add(fault)
    with capture_logs() as logs, pytest.raises(streamx.ServiceUnavailableError):
        await engine.upload(bucket, "file", src, config=CFG, checkpoint=cp)
    proxy.faults.remove(fault)
    assert next(e for e in logs if e["event"] == "upload.resume")["skip"] == "read-verify"


@pytest.mark.anyio
async def test_mismatching_checkpoints(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    cp = tmp_path / "cp.json"
    src = tmp_path / "data.bin"
    src.write_bytes(DATA)
    await crash_at_part_3(pengine, proxy, bucket, "k", src, cp)
    upload_id = recorded(cp)["upload_id"]
    mark = len(proxy.requests)

    with pytest.raises(streamx.CheckpointError, match=f"s3://{bucket}/k; pass restart=True"):
        await pengine.upload(bucket, "other-key", src, config=CFG, checkpoint=cp)
    with pytest.raises(streamx.CheckpointError, match="s3://"):
        await pengine.upload(bucket + "x", "k", src, config=CFG, checkpoint=cp)
    with pytest.raises(streamx.CheckpointError, match="it changed"):
        await pengine.upload(bucket, "k", DATA[:-1], config=CFG, checkpoint=cp)
    assert proxy.requests[mark:] == []  # all refused before any request

    await engine.client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    with pytest.raises(streamx.CheckpointError, match="no longer exists") as info:
        await pengine.upload(bucket, "k", src, config=CFG, checkpoint=cp)
    assert info.value.upload_id == upload_id

    cp.write_text("{not json")
    with pytest.raises(streamx.CheckpointError, match="not a streamx upload checkpoint"):
        await pengine.upload(bucket, "k", src, config=CFG, checkpoint=cp)

    await pengine.upload(bucket, "k", src, config=CFG, checkpoint=cp, restart=True)
    assert await read_object(engine, bucket, "k") == DATA and not cp.exists()


@pytest.mark.anyio
async def test_restart_aborts_the_recorded_upload(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    cp = tmp_path / "cp.json"
    await crash_at_part_3(pengine, proxy, bucket, "r", DATA, cp)
    old = recorded(cp)["upload_id"]
    mark = len(proxy.requests)

    result = await pengine.upload(bucket, "r", DATA, config=CFG, checkpoint=cp, restart=True)

    assert result.upload_id != old and await read_object(engine, bucket, "r") == DATA
    assert next(r.op for r in proxy.requests[mark:]) == "AbortMultipartUpload"
    assert part_bytes(proxy, mark) == len(DATA)


@pytest.mark.anyio
async def test_small_source_with_checkpoint_is_one_put(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    cp = tmp_path / "cp.json"
    await pengine.upload(bucket, "small", b"tiny", checkpoint=cp)
    assert await read_object(engine, bucket, "small") == b"tiny"
    assert [r.op for r in proxy.requests] == ["PutObject"] and not cp.exists()


@pytest.mark.unit
def test_checkpoint_argument_validation(tmp_path: Path) -> None:
    from streamx.upload.checkpoint import open_checkpoint

    assert open_checkpoint(None, False) is None
    assert open_checkpoint(tmp_path / "cp", True) is not None
    for path, restart in [
        (tmp_path, False),
        (tmp_path / "no" / "cp", False),
        (3, False),
        ("", False),
    ]:
        with pytest.raises(streamx.ConfigError):
            open_checkpoint(path, restart)
    with pytest.raises(streamx.ConfigError, match="needs checkpoint"):
        open_checkpoint(None, True)
    with pytest.raises(streamx.ConfigError, match="True or False"):
        open_checkpoint(tmp_path / "cp", "yes")
