"""Data a user could lose or be misled about, against real servers.

* a known-size file that shrinks mid-upload is a SourceError, not a short object;
* every OSError streamx raises is a streamx error (LocalFileError): a full disk
  under download_file (a 1 MiB tmpfs as root, else RLIMIT_FSIZE), a missing
  or directory source path;
* an abort answered NoSuchUpload is done, not "abort failed";
* the default retries ride out a 2-second outage (every request answered 503);
* a single PUT whose ETag is that of an empty body is not a success (moto
  empties a body sent as application/x-www-form-urlencoded).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import resource
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import list_uploads, read_object
from faultproxy import Fault, FaultProxy

import streamx
from streamx.testing import capture_logs

MiB = 1024 * 1024
PART = 5 * MiB
CFG = streamx.TransferConfig(part_size=PART, queue_size=2, multipart_threshold=PART)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- a source that shrinks ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_file_truncated_mid_upload_is_a_source_error(
    engine: streamx.Engine, bucket: str, tmp_path: Path
) -> None:
    path = tmp_path / "shrinks.bin"
    path.write_bytes(random.Random(1).randbytes(12 * PART))  # 60 MiB planned
    truncated = []

    def truncate_once(event: streamx.ProgressEvent) -> None:
        # the producer reads at most the window (2 parts) + one part ahead of the acks
        if event.bytes_done >= PART and not truncated:
            os.truncate(path, 6 * PART + 123)
            truncated.append(event.bytes_done)

    cfg = streamx.TransferConfig(
        part_size=PART, queue_size=2, multipart_threshold=PART, progress_interval=0
    )
    with pytest.raises(streamx.SourceError, match="shrank") as info:
        await engine.upload(bucket, "shrunk", path, config=cfg, on_progress=truncate_once)
    assert truncated
    assert info.value.upload_id is not None  # the multipart upload existed, and was aborted
    assert await list_uploads(engine, bucket) == []
    with pytest.raises(streamx.NotFoundError):
        await engine.head(bucket, "shrunk")


# -- every OSError is a streamx error ----------------------------------------------------------


@pytest.mark.anyio
async def test_missing_or_directory_source_path(moto_server: Any, tmp_path: Path) -> None:
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            with pytest.raises(streamx.LocalFileError) as missing:
                await eng.upload("b-files", "k", str(tmp_path / "missing.bin"))
            with pytest.raises(streamx.LocalFileError) as directory:
                await eng.upload("b-files", "k", tmp_path)
        assert proxy.requests == []
    assert isinstance(missing.value, FileNotFoundError)
    assert missing.value.errno == errno.ENOENT
    assert missing.value.filename == str(tmp_path / "missing.bin")
    assert isinstance(directory.value, IsADirectoryError)
    assert isinstance(directory.value, streamx.StreamxError)


@contextlib.contextmanager
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory with 1 MiB of room: a tmpfs as root; otherwise RLIMIT_FSIZE makes any
    file write past 1 MiB fail (EFBIG), which is how a quota looks to a writer."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            try:
                yield mount
            finally:
                subprocess.run(["umount", "-l", str(mount)], check=False)
            return
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (MiB, old_limit[1]))
    try:
        yield mount
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


@pytest.mark.anyio
async def test_download_onto_a_full_disk_is_a_local_file_error(
    engine: streamx.Engine, bucket: str, tmp_path: Path
) -> None:
    data = random.Random(2).randbytes(3 * MiB)
    await engine.upload(bucket, "big", data)
    cfg = streamx.TransferConfig(part_size=PART, queue_size=2)
    with full_disk(tmp_path) as directory:
        target = directory / "out.bin"
        with pytest.raises(streamx.LocalFileError) as info:
            await engine.download_file(bucket, "big", target, config=cfg)
        leftovers = os.listdir(directory)
    err = info.value
    assert isinstance(err, OSError) and isinstance(err, streamx.StreamxError)
    assert err.errno in (errno.ENOSPC, errno.EFBIG)
    assert str(target) in str(err)
    assert leftovers == []  # no partial file, no temporary file


# -- an abort answered NoSuchUpload is done ----------------------------------------------------


@pytest.mark.anyio
async def test_abort_answered_no_such_upload_is_not_a_failure(
    server: Any, engine: streamx.Engine, bucket: str
) -> None:
    class Stop(Exception):
        pass

    async def abort_then_raise(event: streamx.ProgressEvent) -> None:
        if event.parts_done >= 1:
            # the upload disappears under streamx (as when a store drops it): its own
            # abort then meets NoSuchUpload
            for upload in await list_uploads(engine, bucket):
                await engine.client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            raise Stop

    cfg = streamx.TransferConfig(part_size=PART, queue_size=1, progress_interval=0)
    data = random.Random(3).randbytes(3 * PART)
    with capture_logs() as logs, pytest.raises(Stop):
        await engine.upload(bucket, "gone", data, config=cfg, on_progress=abort_then_raise)
    events = {e["event"]: e for e in logs}
    assert "upload.abort.failed" not in events
    # moto and rclone answer NoSuchUpload, as AWS does; SeaweedFS answers 204 again
    assert bool(events["upload.aborted"].get("already_gone")) is (server.name != "seaweedfs")


# -- retries ride out a short outage -----------------------------------------------------------


@pytest.mark.anyio
async def test_default_retries_ride_out_a_two_second_outage(
    server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """Every request answered 503 for 2 s from the first UploadPart on, with the
    default RetryPolicy (real sleeps): the upload succeeds. (The old defaults waited
    at most 1.5 s in all, so they gave up inside the outage.)"""
    data = random.Random(4).randbytes(3 * PART)
    outage: list[float] = []

    def down(request: Any) -> bool:
        if not outage and request.op == "UploadPart":
            outage.append(time.monotonic())
        return bool(outage) and time.monotonic() - outage[0] < 2.0

    async with FaultProxy(server.endpoint_url) as proxy:
        proxy.add(Fault("status", where=down, status=503, code="ServiceUnavailable", times=None))
        args = {**server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            result = await eng.upload(bucket, "outage", data, config=CFG)
        answered_503 = [r for r in proxy.requests if r.status == 503]
    assert len(answered_503) >= 2
    assert result.size == len(data)
    assert sha(await read_object(engine, bucket, "outage")) == sha(data)


# -- an emptied body is not a success ----------------------------------------------------------


@pytest.fixture(params=["direct", "aiobotocore"])
async def moto_engine(request: pytest.FixtureRequest, moto_server: Any) -> AsyncIterator[Any]:
    async with streamx.Engine(
        **moto_server.engine_args(), direct_parts=request.param == "direct"
    ) as eng:
        yield eng


@pytest.mark.anyio
async def test_a_put_the_store_emptied_is_not_a_success(moto_engine: streamx.Engine) -> None:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    await moto_engine.client.create_bucket(Bucket=bucket)
    with pytest.raises(streamx.ChecksumError, match="empty body"):
        await moto_engine.upload(
            bucket, "form", b"a=1&b=2", ContentType="application/x-www-form-urlencoded"
        )
    # the same bytes with another content type are stored and succeed
    result = await moto_engine.upload(bucket, "plain", b"a=1&b=2", ContentType="text/plain")
    assert result.size == 7
    assert await read_object(moto_engine, bucket, "plain") == b"a=1&b=2"
