"""Pause and resume of push uploads: ``writer.suspend()`` -> ResumeToken -> ``open_writer(resume=)``
(in another process) or ``upload(path, resume=)``, on moto and rclone."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import list_uploads, read_object

import streamx
from streamx import ResumeToken

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
PART = 5 * MiB
CFG = streamx.TransferConfig(part_size=PART, multipart_threshold=PART, queue_size=2)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def suspended(
    engine: streamx.Engine, bucket: str, key: str, data: bytes, chunk: int = MiB
) -> ResumeToken:
    async with engine.open_writer(bucket, key, config=CFG) as writer:
        for i in range(0, len(data), chunk):
            await writer.write(data[i : i + chunk])
        token = await writer.suspend()
        with pytest.raises(streamx.StreamxError, match="suspended"):
            await writer.write(b"more")
    assert writer.result is None
    return token


async def test_suspend_then_resume_in_another_process(
    engine: streamx.Engine, bucket: str, server: Any, tmp_path: Path
) -> None:
    data = os.urandom(23 * MiB + 17)
    token = await suspended(engine, bucket, "pushed.bin", data[: 17 * MiB])
    assert token.upload_id is not None
    assert token.bytes_done == 15 * MiB  # the parts cut; the 2 MiB being filled are not kept
    assert [p[0] for p in token.parts] == list(range(1, len(token.parts) + 1))
    assert all(p[1] and p[3] for p in token.parts)  # ETag and checksum of every part
    uploads = await list_uploads(engine, bucket)
    assert [u["UploadId"] for u in uploads] == [token.upload_id]  # kept, not completed
    with pytest.raises(streamx.NotFoundError):
        await engine.head(bucket, "pushed.bin")

    source = tmp_path / "all.bin"
    source.write_bytes(data)
    (tmp_path / "token.json").write_text(token.to_json())
    script = f"""
import anyio, streamx, sys
from streamx import ResumeToken
async def main():
    token = ResumeToken.from_json(open({str(tmp_path / "token.json")!r}).read())
    data = open({str(source)!r}, "rb").read()
    cfg = streamx.TransferConfig(part_size={PART}, multipart_threshold={PART})
    async with streamx.Engine(**{server.engine_args()!r}) as engine:
        async with engine.open_writer({bucket!r}, "pushed.bin", config=cfg, resume=token) as w:
            rest = data[token.bytes_done:]
            for i in range(0, len(rest), 3 * 1024 * 1024):
                await w.write(rest[i : i + 3 * 1024 * 1024])
    print(w.result.upload_id == token.upload_id, w.result.size)
anyio.run(main)
"""
    done = await anyio.run_process(
        [sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": ROOT}, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert done.stdout.decode().splitlines()[-1].split() == ["True", str(len(data))]
    got = await read_object(engine, bucket, "pushed.bin")
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


async def test_upload_a_file_from_the_token(
    engine: streamx.Engine, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(21 * MiB + 3)
    token = await suspended(engine, bucket, "file.bin", data[: 12 * MiB])
    assert token.bytes_done == 10 * MiB
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    events: list[streamx.ProgressEvent] = []
    result = await engine.upload(
        bucket,
        "file.bin",
        str(path),
        config=CFG,
        resume=ResumeToken.from_json(token.to_json()),
        on_progress=events.append,
    )
    assert result.size == len(data)
    assert events[-1].bytes_done == len(data)
    assert await read_object(engine, bucket, "file.bin") == data
    # bytes (not a path) are read through and checked against the token's checksums
    token2 = await suspended(engine, bucket, "bytes.bin", data[: 11 * MiB])
    assert token2.bytes_done == 10 * MiB
    changed = bytearray(data)
    changed[1] ^= 1
    with pytest.raises(streamx.CheckpointError, match="differ"):
        await engine.upload(bucket, "bytes.bin", bytes(changed), config=CFG, resume=token2)
    result = await engine.upload(bucket, "bytes.bin", data, config=CFG, resume=token2)
    assert await read_object(engine, bucket, "bytes.bin") == data


async def test_suspend_before_the_first_part(engine: streamx.Engine, bucket: str) -> None:
    token = await suspended(engine, bucket, "small.bin", b"abc")
    assert token.upload_id is None and token.bytes_done == 0
    assert await list_uploads(engine, bucket) == []
    async with engine.open_writer(bucket, "small.bin", config=CFG, resume=token) as writer:
        await writer.write(b"abcdef")
    assert await read_object(engine, bucket, "small.bin") == b"abcdef"


async def test_bad_tokens(engine: streamx.Engine, bucket: str) -> None:
    token = await suspended(engine, bucket, "t.bin", os.urandom(11 * MiB))
    with pytest.raises(streamx.ConfigError, match="not s3://"):
        async with engine.open_writer(bucket, "other.bin", resume=token):
            pass
    with pytest.raises(streamx.ConfigError, match="ResumeToken"):
        await engine.upload(bucket, "t.bin", b"x", resume=token.to_json())  # type: ignore[arg-type]
    with pytest.raises(streamx.CheckpointError):
        ResumeToken.from_json('{"format": "nope"}')
    assert token.upload_id is not None
    await engine.multipart.abort(bucket, "t.bin", token.upload_id)
    with pytest.raises(streamx.CheckpointError, match="no longer exists"):
        async with engine.open_writer(bucket, "t.bin", config=CFG, resume=token) as writer:
            await writer.write(b"x" * MiB)
    assert await list_uploads(engine, bucket) == []
