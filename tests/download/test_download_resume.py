"""Crash-safe resume of ``download_file(..., checkpoint=PATH)``.

One test crashes for real (a child process SIGKILLed mid-download from
rclone, through a proxy that holds some ranges back). The others "crash" the
first attempt with a range that fails for good, which with a checkpoint
keeps the temporary file and PATH, as a crash would.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from faultproxy import Fault, FaultProxy

import streamx

MiB = 1024 * 1024
PART = 5 * MiB
DATA = random.Random(41).randbytes(3 * PART + 999)  # 4 ranges
CFG = streamx.TransferConfig(part_size=PART, queue_size=1, max_attempts=1)


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def recorded(cp: Path) -> dict[str, Any]:
    """The checkpoint as written (a few hundred bytes: read synchronously)."""
    return dict(json.loads(cp.read_text()))


def exists(*paths: Path) -> list[bool]:
    return [p.exists() for p in paths]


def size_of(path: Path) -> int:
    return path.stat().st_size


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def starts_at(offset: int) -> Any:
    return lambda r: r.headers.get("range", "").startswith(f"bytes={offset}-")


def asked(proxy: FaultProxy, since: int = 0) -> list[str]:
    return [r.headers.get("range", "") for r in proxy.requests[since:] if r.op == "GetObject"]


def range_bytes(headers: list[str]) -> int:
    total = 0
    for h in headers:
        first, last = h.removeprefix("bytes=").split("-")
        total += int(last) - int(first) + 1
    return total


@pytest.fixture
async def obj(engine: streamx.Engine, bucket: str) -> str:
    await engine.client.put_object(Bucket=bucket, Key="obj", Body=DATA, ChecksumAlgorithm="CRC32C")
    return "obj"


async def crash_at_range(
    engine: streamx.Engine, proxy: FaultProxy, bucket: str, key: str, target: Path, cp: Path,
    index: int = 2,
) -> Path:  # fmt: skip
    """First attempt: range ``index`` fails for good; the ranges before it are recorded."""
    fault = Fault("status", op="GetObject", where=starts_at(index * PART), status=500, times=None)
    proxy.add(fault)
    with pytest.raises(streamx.ServiceUnavailableError):
        await engine.download_file(bucket, key, target, config=CFG, checkpoint=cp)
    proxy.faults.remove(fault)
    record = recorded(cp)
    assert sorted(map(int, record["ranges"])) == list(range(index))
    assert record["etag"] and record["size"] == len(DATA) and record["algorithm"] == "CRC32C"
    assert record["bytes_done"] == index * PART
    temp = Path(record["temp_path"])
    assert exists(temp, target) == [True, False] and size_of(temp) == len(DATA)
    return temp


@pytest.mark.anyio
async def test_sigkill_mid_download_then_resume(rclone_server: Any, tmp_path: Path) -> None:
    """A real crash: the child dies while ranges from 30 MiB on hang; the resume fetches only those."""
    size, part = 48 * MiB + 123, 5 * MiB
    data = random.Random(6).randbytes(size)
    target, cp = tmp_path / "big.bin", tmp_path / "download.checkpoint"
    child = f"""
import asyncio, streamx
async def main():
    cfg = streamx.TransferConfig(part_size={part}, queue_size=2)
    async with streamx.Engine() as engine:
        await engine.download_file("kill-dl", "big", {str(target)!r}, config=cfg, checkpoint={str(cp)!r})
asyncio.run(main())
"""
    async with FaultProxy(rclone_server.endpoint_url) as proxy:
        args = {**rclone_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            await eng.client.create_bucket(Bucket="kill-dl")
            await eng.client.put_object(
                Bucket="kill-dl", Key="big", Body=data, ChecksumAlgorithm="CRC32C"
            )

            def late(r: Any) -> bool:
                first = r.headers.get("range", "bytes=0-").removeprefix("bytes=").split("-")[0]
                return int(first) >= 30 * MiB

            # ranges from 30 MiB on are held back (the proxy never answers), so the kill lands mid-way
            proxy.add(Fault("stall", op="GetObject", phase="response", where=late, times=None))
            env = {**os.environ, **rclone_server.env(), "AWS_ENDPOINT_URL": proxy.url}
            process = await anyio.open_process([sys.executable, "-c", child], env=env)
            try:
                with anyio.fail_after(60):
                    # another process writes the file: poll it
                    while not (cp.exists() and len(recorded(cp)["ranges"]) >= 6):  # noqa: ASYNC110
                        await anyio.sleep(0.05)
            finally:
                process.kill()  # SIGKILL: no cleanup runs in the child
                await process.wait()
            first_run = range_bytes(asked(proxy))
            record = recorded(cp)
            assert sorted(map(int, record["ranges"])) == [0, 1, 2, 3, 4, 5]
            temp = Path(record["temp_path"])
            assert exists(temp, target) == [True, False]

            proxy.clear()
            mark = len(proxy.requests)
            result = await eng.download_file(
                "kill-dl",
                "big",
                target,
                config=streamx.TransferConfig(part_size=8 * MiB),  # the record's 5 MiB wins
                checkpoint=cp,
            )
            second = asked(proxy, mark)
            assert sha(target.read_bytes()) == sha(data)
            assert result.size == size and result.ranges == 4 and result.requests == 4
            # the ranges go out from several threads at once: in any order
            starts = sorted(int(r.removeprefix("bytes=").split("-")[0]) for r in second)
            assert starts[0] == 30 * MiB and f"bytes={30 * MiB}-{35 * MiB - 1}" in second
            assert range_bytes(second) == size - 30 * MiB < size
            assert first_run >= 30 * MiB
            assert entries(tmp_path) == ["big.bin"]  # no checkpoint, no temporary file


@pytest.mark.anyio
async def test_resume_fetches_only_the_missing_ranges(
    pengine: streamx.Engine, proxy: FaultProxy, bucket: str, obj: str, tmp_path: Path
) -> None:
    target, cp = tmp_path / "out.bin", tmp_path / "cp.json"
    await crash_at_range(pengine, proxy, bucket, obj, target, cp)
    events: list[streamx.ProgressEvent] = []
    mark = len(proxy.requests)
    result = await pengine.download_file(
        bucket, obj, target, config=CFG, checkpoint=cp, on_progress=events.append
    )
    assert sha(target.read_bytes()) == sha(DATA)
    assert sorted(asked(proxy, mark)) == sorted(  # sent from two threads: in any order
        [f"bytes={2 * PART}-{3 * PART - 1}", f"bytes={3 * PART}-{len(DATA) - 1}"]
    )
    assert [r.headers.get("if-match") for r in proxy.requests[mark:] if r.op == "GetObject"] == [
        result.etag
    ] * 2
    assert result.requests == 2 and result.size == len(DATA)
    assert events[0].bytes_done >= 2 * PART and events[-1].final
    assert events[-1].bytes_done == len(DATA)
    assert entries(tmp_path) == ["out.bin"]


@pytest.mark.anyio
async def test_damaged_ranges_in_the_temporary_file_are_fetched_again(
    pengine: streamx.Engine, proxy: FaultProxy, bucket: str, obj: str, tmp_path: Path
) -> None:
    """A recorded range whose bytes on disk changed (a write lost in a power cut) is not trusted."""
    target, cp = tmp_path / "out.bin", tmp_path / "cp.json"
    temp = await crash_at_range(pengine, proxy, bucket, obj, target, cp, index=3)
    flip_byte(temp, PART + 100)  # damage range 1
    mark = len(proxy.requests)
    await pengine.download_file(bucket, obj, target, config=CFG, checkpoint=cp)
    assert sha(target.read_bytes()) == sha(DATA)
    assert sorted(asked(proxy, mark)) == sorted(  # sent from two threads: in any order
        [f"bytes={PART}-{2 * PART - 1}", f"bytes={3 * PART}-{len(DATA) - 1}"]
    )
    assert entries(tmp_path) == ["out.bin"]


@pytest.mark.anyio
async def test_a_changed_object_is_refused_until_restart(
    engine: streamx.Engine, pengine: streamx.Engine, proxy: FaultProxy, bucket: str, obj: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    target, cp = tmp_path / "out.bin", tmp_path / "cp.json"
    temp = await crash_at_range(pengine, proxy, bucket, obj, target, cp)
    replacement = random.Random(42).randbytes(len(DATA) + 1)
    await engine.client.put_object(Bucket=bucket, Key=obj, Body=replacement)
    mark = len(proxy.requests)
    with pytest.raises(streamx.CheckpointError) as info:
        await pengine.download_file(bucket, obj, target, config=CFG, checkpoint=cp)
    assert isinstance(info.value, streamx.ObjectChangedError)
    assert "changed since checkpoint" in str(info.value) and "restart=True" in str(info.value)
    assert asked(proxy, mark) == []  # refused after one HEAD, before any GET
    assert exists(cp, temp, target) == [True, True, False]

    await pengine.download_file(bucket, obj, target, config=CFG, checkpoint=cp, restart=True)
    assert sha(target.read_bytes()) == sha(replacement)
    assert entries(tmp_path) == ["out.bin"]


@pytest.mark.anyio
async def test_a_flipped_byte_after_resume_fails_and_leaves_nothing(
    pengine: streamx.Engine, proxy: FaultProxy, bucket: str, obj: str, tmp_path: Path
) -> None:
    """The kept ranges' checksums and the new ones combine into the full-object check."""
    target, cp = tmp_path / "out.bin", tmp_path / "cp.json"
    await crash_at_range(pengine, proxy, bucket, obj, target, cp)
    proxy.add(Fault("corrupt", op="GetObject", phase="response", at=5, where=starts_at(3 * PART)))
    with pytest.raises(streamx.ChecksumError):
        await pengine.download_file(bucket, obj, target, config=CFG, checkpoint=cp)
    assert entries(tmp_path) == []  # no file, no temporary file, no checkpoint


@pytest.mark.anyio
async def test_mismatching_checkpoints(
    pengine: streamx.Engine, proxy: FaultProxy, bucket: str, obj: str, tmp_path: Path
) -> None:
    target, cp = tmp_path / "out.bin", tmp_path / "cp.json"
    await crash_at_range(pengine, proxy, bucket, obj, target, cp)
    mark = len(proxy.requests)
    with pytest.raises(streamx.CheckpointError, match="records a download of"):
        await pengine.download_file(bucket, "other", target, checkpoint=cp)
    with pytest.raises(streamx.CheckpointError, match="records a download to"):
        await pengine.download_file(bucket, obj, tmp_path / "elsewhere", checkpoint=cp)
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"format": "streamx-upload-checkpoint/1"}')
    with pytest.raises(streamx.CheckpointError, match="not a streamx download checkpoint"):
        await pengine.download_file(bucket, obj, target, checkpoint=garbage)
    assert proxy.requests[mark:] == []  # refused before any request
    # restart=True overwrites a checkpoint it cannot read
    await pengine.download_file(bucket, obj, target, config=CFG, checkpoint=garbage, restart=True)
    assert sha(target.read_bytes()) == sha(DATA) and not garbage.exists()
    # the recorded download is untouched by all this and still resumes
    await pengine.download_file(bucket, obj, target, config=CFG, checkpoint=cp)
    assert sha(target.read_bytes()) == sha(DATA)
    assert entries(tmp_path) == ["out.bin"]


@pytest.mark.anyio
async def test_checkpoint_argument_validation(engine: streamx.Engine, tmp_path: Path) -> None:
    # the bucket does not exist: these fail before any request
    for kwargs in (
        {"restart": True},
        {"checkpoint": 42},
        {"checkpoint": tmp_path},
        {"checkpoint": tmp_path / "no-dir" / "cp"},
        {"checkpoint": tmp_path / "cp", "restart": "yes"},
    ):
        with pytest.raises(streamx.ConfigError):
            await engine.download_file("no-such-bucket-xyz", "k", tmp_path / "x", **kwargs)
    assert entries(tmp_path) == []
