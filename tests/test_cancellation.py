"""Cancellation at every stage, and what a cancelled transfer leaves behind.

An upload cancelled before CompleteMultipartUpload leaves no multipart upload (the ``bucket``
fixture checks every test at teardown) and no object, unless a checkpoint keeps the upload for
a resume; a cancelled download leaves no file and no temporary file, unless a checkpoint keeps
them; listings and streams give their connection back. The memory budget and the part producer
hand back what a cancelled waiter held (pure logic: marked ``unit``, no server).

The cancellation tests that need one part transport's internals stay with that transport's
tests (tests/s3/test_direct.py).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
import test_download as download
import test_download_resume as download_resume
import test_faults as faults
import test_resume as resume
import test_upload as upload
from conftest import list_uploads, read_object
from faultproxy import Fault, FaultProxy
from test_budget import wait_until

import streamx
from streamx._budget import MemoryBudget

pytestmark = pytest.mark.anyio


# ---- the memory budget (unit) -----------------------------------------------------------------


@pytest.mark.unit
async def test_cancelling_a_waiter_takes_nothing_and_wakes_the_next() -> None:
    budget = streamx.MemoryBudget(10)
    await budget.acquire(6)
    served: list[str] = []

    async def want(name: str, n: int) -> None:
        await budget.acquire(n)
        served.append(name)

    async with anyio.create_task_group() as tg:
        first_scope = anyio.CancelScope()

        async def first() -> None:
            with first_scope:
                await want("first", 8)

        tg.start_soon(first)
        await wait_until(lambda: budget.waiting == 1)
        tg.start_soon(want, "second", 4)  # fits now, but queued behind "first"
        await wait_until(lambda: budget.waiting == 2)
        first_scope.cancel()  # leaving the line lets "second" through
    assert served == ["second"]
    assert budget.in_use == 10
    assert budget.waiting == 0


@pytest.mark.unit
async def test_a_grant_that_races_a_cancellation_is_given_back_once() -> None:
    """Granted and cancelled in the same tick: the bytes return exactly once."""
    budget = streamx.MemoryBudget(10)
    await budget.acquire(10)
    scope = anyio.CancelScope()
    outcome: list[str] = []

    async def waiter() -> None:
        with scope:
            await budget.acquire(4)
            outcome.append("granted")
        if scope.cancelled_caught:
            outcome.append("cancelled")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await wait_until(lambda: budget.waiting == 1)
        budget.release(10)  # grants the waiter's 4 bytes...
        scope.cancel()  # ...and cancels it before it runs again
    assert budget.in_use in (0, 4)
    if outcome == ["cancelled"]:
        assert budget.in_use == 0  # handed back, not lost and not released twice
    else:
        assert outcome == ["granted"]
        budget.release(4)
    assert budget.in_use == 0
    await budget.acquire(10)  # the whole budget is available again
    assert budget.in_use == 10


@pytest.mark.unit
async def test_budget_cancelled_on_the_fast_path_gives_the_bytes_back() -> None:
    budget = MemoryBudget(10)
    with anyio.CancelScope() as scope:
        scope.cancel()  # the acquire's checkpoint raises the cancellation
        await budget.acquire(4)
    assert budget.in_use == 0


# ---- uploads -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["before-create", "mid-parts", "writer"])
async def test_cancellation_aborts(engine: streamx.Engine, bucket: str, stage: str) -> None:
    payload, cfg = upload.PAYLOAD, upload.CFG
    started = anyio.Event()

    async def stalls_after(n_parts: int) -> AsyncIterator[bytes]:
        for _ in range(n_parts):
            yield payload[: upload.PART]
        started.set()
        await anyio.sleep_forever()
        yield b""  # pragma: no cover

    async with anyio.create_task_group() as tg:

        async def run() -> None:
            if stage == "writer":
                async with engine.open_writer(bucket, "c", config=cfg) as writer:
                    await writer.write(payload[: 3 * upload.PART])
                    started.set()
                    await anyio.sleep_forever()
            else:
                n = 0 if stage == "before-create" else 3
                await engine.upload(bucket, "c", stalls_after(n), config=cfg)

        tg.start_soon(run)
        await started.wait()
        if stage != "before-create":
            await upload.wait_for_upload(engine, bucket)
        tg.cancel_scope.cancel()
    assert await list_uploads(engine, bucket) == []


@pytest.mark.parametrize("seed", range(5))
async def test_cancel_at_a_random_point(
    tengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, seed: int
) -> None:
    """Cancelled anywhere (create, parts, retries, complete), over both part transports:
    no upload left, no partial object."""
    data, sha = faults.DATA, faults.sha
    rng = random.Random(seed)
    # slow every request a little and fail some, so a cancellation can land anywhere
    proxy.add(
        Fault(
            "stall", phase="response", seconds=0.02, times=None, where=lambda r: rng.random() < 0.7
        )
    )
    proxy.add(Fault("status", op="UploadPart", times=2, code="SlowDown"))
    deadline = rng.uniform(0.0, 0.6)

    with anyio.move_on_after(deadline) as scope:
        await tengine.upload(bucket, "cancelled", data, config=faults.CFG)

    # Cancelled before CompleteMultipartUpload: no object. Cancelled once it was
    # sent (it is shielded, so its outcome is known) or not cancelled: the whole object.
    if scope.cancelled_caught and not proxy.sent("CompleteMultipartUpload"):
        await faults.assert_absent(engine, bucket, "cancelled")
    else:
        assert sha(await read_object(engine, bucket, "cancelled")) == sha(data)
    assert await list_uploads(engine, bucket) == []


async def test_cancellation_keeps_the_upload_for_a_resume(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    data, part = resume.DATA, resume.PART
    cp = tmp_path / "cp.json"
    proxy.add(Fault("stall", op="UploadPart", query={"partNumber": "4"}))
    reached = anyio.Event()

    def watch(event: streamx.ProgressEvent) -> None:
        if event.parts_done >= 3:
            reached.set()

    cfg = streamx.TransferConfig(part_size=part, queue_size=1, progress_interval=0)
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await pengine.upload(bucket, "c", data, config=cfg, checkpoint=cp, on_progress=watch)

        tg.start_soon(run)
        await reached.wait()
        tg.cancel_scope.cancel()

    assert len(await list_uploads(engine, bucket)) == 1 and cp.exists()
    proxy.clear()
    await pengine.upload(bucket, "c", data, config=resume.CFG, checkpoint=cp)
    assert await read_object(engine, bucket, "c") == data and not cp.exists()


# ---- downloads ---------------------------------------------------------------------------------


async def test_cancelled_download_file_leaves_nothing(
    engine: streamx.Engine, bucket: str, tmp_path: Path
) -> None:
    await download.put(engine, bucket, "c", random.Random(3).randbytes(4 * download.PART))
    target = tmp_path / "c.bin"
    with anyio.CancelScope() as scope:

        def cancel(event: streamx.ProgressEvent) -> None:
            if event.bytes_done > 0:
                scope.cancel()

        await engine.download_file(bucket, "c", target, config=download.cfg(), on_progress=cancel)
    assert scope.cancelled_caught
    assert download.entries(tmp_path) == []


async def test_cancelled_listing_and_stream(engine: streamx.Engine, bucket: str) -> None:
    await download.put(engine, bucket, "a", random.Random(4).randbytes(download.MiB))
    await download.put(engine, bucket, "b", b"b")
    with anyio.CancelScope() as scope:
        async for _info in engine.list(bucket, page_size=1):
            scope.cancel()
            await anyio.lowlevel.checkpoint()  # cancelled here
    assert scope.cancelled_caught
    with anyio.CancelScope() as scope:
        async with engine.download(bucket, "a", chunk_size=1024) as stream:
            async for _chunk in stream:
                scope.cancel()
                await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught and stream._body is None  # released
    assert [i.key async for i in engine.list(bucket)] == ["a", "b"]


async def test_cancellation_keeps_the_download_for_a_resume(
    pengine: streamx.Engine, engine: streamx.Engine, proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    data, part, sha = download_resume.DATA, download_resume.PART, download_resume.sha
    await engine.client.put_object(Bucket=bucket, Key="obj", Body=data, ChecksumAlgorithm="CRC32C")
    target, cp = tmp_path / "out.bin", tmp_path / "cp.json"
    with anyio.CancelScope() as scope:

        def cancel(event: streamx.ProgressEvent) -> None:
            if event.bytes_done >= part:
                scope.cancel()

        cfg = streamx.TransferConfig(part_size=part, queue_size=1, progress_interval=0)
        await pengine.download_file(
            bucket, "obj", target, config=cfg, checkpoint=cp, on_progress=cancel
        )
    assert scope.cancelled_caught
    record = download_resume.recorded(cp)
    assert "0" in record["ranges"] and download_resume.exists(Path(record["temp_path"])) == [True]
    mark = len(proxy.requests)
    await pengine.download_file(bucket, "obj", target, config=cfg, checkpoint=cp)
    assert sha(target.read_bytes()) == sha(data)
    assert f"bytes=0-{part - 1}" not in download_resume.asked(proxy, mark)
    assert download_resume.entries(tmp_path) == ["out.bin"]
