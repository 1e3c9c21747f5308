"""streamx.MemoryBudget: FIFO fairness, clamping, cancellation, and a process-wide bound.

The unit tests drive the budget directly; the last test runs 64 concurrent
streaming uploads in a child process under a 128 MiB budget against rclone and
measures the child's peak RSS (the only honest way to bound memory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import anyio
import pytest

import streamx
from streamx._budget import Reservation
from streamx.testing import RcloneServer

MiB = 1024 * 1024


# ---- unit tests -------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "128"])
def test_rejects_a_bad_limit(limit: object) -> None:
    with pytest.raises(streamx.ConfigError):
        streamx.MemoryBudget(limit)  # type: ignore[arg-type]


@pytest.mark.unit
def test_engine_rejects_a_bad_budget() -> None:
    with pytest.raises(streamx.ConfigError):
        streamx.Engine(memory_budget="lots")  # type: ignore[arg-type]
    engine = streamx.Engine(memory_budget=64 * MiB)
    assert isinstance(engine.memory_budget, streamx.MemoryBudget)
    assert engine.memory_budget.limit == 64 * MiB


@pytest.mark.unit
@pytest.mark.anyio
async def test_waiters_are_served_in_fifo_order() -> None:
    """A small request that would fit must not overtake a larger one queued before it."""
    budget = streamx.MemoryBudget(10)
    await budget.acquire(8)
    order: list[str] = []

    async def want(name: str, n: int) -> None:
        await budget.acquire(n)
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(want, "big", 5)
        await wait_until(lambda: budget.waiting == 1)
        tg.start_soon(want, "small", 1)  # 8 + 1 <= 10, but "big" is first in line
        await wait_until(lambda: budget.waiting == 2)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        assert order == []
        budget.release(8)
    assert order == ["big", "small"]
    assert budget.in_use == 6
    assert budget.peak == 8


@pytest.mark.unit
@pytest.mark.anyio
async def test_a_request_larger_than_the_budget_is_clamped() -> None:
    budget = streamx.MemoryBudget(10)
    await budget.acquire(3)
    got: list[int] = []

    async def huge() -> None:
        got.append(await budget.acquire(1000))

    async with anyio.create_task_group() as tg:
        tg.start_soon(huge)
        await wait_until(lambda: budget.waiting == 1)
        assert got == []  # waits for the whole budget to be free
        budget.release(3)
    assert got == [10]
    assert budget.in_use == 10
    budget.release(10)
    assert budget.in_use == 0


@pytest.mark.unit
@pytest.mark.anyio
async def test_a_reservation_releases_exactly_once() -> None:
    shared = streamx.MemoryBudget(100)
    own = streamx.MemoryBudget(50)
    reservation = Reservation()
    await reservation.take(own, 30)
    await reservation.take(shared, 30)
    assert (own.in_use, shared.in_use) == (30, 30)
    reservation.release()
    reservation.release()
    assert (own.in_use, shared.in_use) == (0, 0)
    async with Reservation() as r:
        await r.take(shared, 70)
        assert shared.in_use == 70
    assert shared.in_use == 0


@pytest.mark.unit
@pytest.mark.anyio
async def test_idle_buffers_stay_counted_and_never_make_anybody_wait() -> None:
    budget = streamx.MemoryBudget(100)
    reservation = Reservation()
    await reservation.take(budget, 40)
    buffer = bytearray(40)
    assert budget.park(buffer, reservation.detach(budget))
    assert (budget.in_use, budget.parked) == (0, 40)  # idle, still counted against the limit
    found = budget.unpark(40)
    assert found is not None and found[0] is buffer and budget.parked == 0
    assert budget.in_use == 40  # now the caller's
    assert budget.park(buffer, found[1])
    assert budget.unpark(39) is None  # only a buffer of the very size
    # a request that would not fit drops idle buffers instead of waiting
    with anyio.fail_after(5):
        assert await budget.acquire(90) == 90
    assert (budget.in_use, budget.parked) == (90, 0)
    budget.release(90)


@pytest.mark.unit
@pytest.mark.anyio
async def test_idle_buffers_are_dropped_for_a_request_and_none_handed_out_while_it_waits() -> None:
    budget = streamx.MemoryBudget(100)
    await budget.acquire(30)
    await budget.acquire(20)  # a part's bytes, then its buffer goes idle with them
    assert budget.park(bytearray(20), 20) and (budget.in_use, budget.parked) == (30, 20)
    await budget.acquire(50)  # fits beside the idle buffer
    assert budget.parked == 20
    async with anyio.create_task_group() as tg:
        tg.start_soon(budget.acquire, 40)  # 30 + 50 held: dropping the idle 20 is not enough
        await wait_until(lambda: budget.waiting == 1)
        assert budget.parked == 0 and budget.in_use == 80
        assert budget.unpark(20) is None
        budget.release(30)
    assert budget.in_use == 90 and budget.waiting == 0
    assert not budget.park(bytearray(60), 60)  # the pool holds at most half the limit


@pytest.mark.unit
@pytest.mark.anyio
async def test_a_finished_parts_buffer_goes_with_the_grant_it_makes() -> None:
    """While parts wait, an idle buffer is not kept: its bytes are released at once and the
    buffer goes to the part the release lets in (one of its size), never to anybody else."""
    budget = streamx.MemoryBudget(100)
    await budget.acquire(100)  # two parts of 50 in flight
    got: dict[str, object] = {}

    async def part(name: str, n: int) -> None:
        got[name] = await budget.acquire_part(n)

    async def plain(name: str, n: int) -> None:
        got[name] = await budget.acquire(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(plain, "download", 50)
        await wait_until(lambda: budget.waiting == 1)
        tg.start_soon(part, "part", 50)
        await wait_until(lambda: budget.waiting == 2)
        first = bytearray(50)
        assert budget.park(first, 50)  # the bytes go to the download, which takes no buffer
        await wait_until(lambda: "download" in got)
        assert got["download"] == 50 and budget.parked == 0 and budget.waiting == 1
        second = bytearray(50)
        assert budget.park(second, 50)
        await wait_until(lambda: "part" in got)
    assert got["part"] == (50, second)  # the very buffer, with its bytes
    assert budget.in_use == 100 and budget.parked == 0


@pytest.mark.unit
@pytest.mark.anyio
async def test_a_buffer_still_viewed_is_never_handed_to_another_transfer() -> None:
    """What a sending thread that outlived its request holds (a view of the part) keeps the
    part's buffer out of the pool; an acknowledged buffer nothing refers to goes in. This
    checks the reference count the producer relies on, on this Python."""
    from streamx._limits import PartPlan
    from streamx.upload.parts import Part, PartProducer
    from streamx.upload.source import BytesSource

    shared = streamx.MemoryBudget(64 * MiB)

    def producer() -> PartProducer:
        plan = PartPlan.for_known_size(16 * MiB, 8 * MiB)
        return PartProducer(
            BytesSource(b""), plan, [streamx.MemoryBudget(16 * MiB), shared],
            checksum_algorithm=None, equal_parts=False,
        )

    async def part(p: PartProducer) -> Part:
        reservation = Reservation()
        for b in p.budgets:
            await reservation.take(b, MiB)
        made = Part(1, bytearray(MiB), None, reservation)
        p.live.add(made)
        return made

    p = producer()
    viewed = await part(p)
    view = memoryview(viewed.data)[10:20]  # a thread still sending a slice of it
    p.eof = True
    p.release(viewed)
    assert shared.parked == 0 and shared.in_use == 0
    del view
    p.release(await part(p), sent=False)  # not acknowledged: never reused
    assert shared.parked == 0 and shared.in_use == 0
    p.release(await part(p))
    assert shared.parked == MiB and shared.in_use == 0
    other = producer()
    buffer, reservation = other._take_spare(MiB)
    assert buffer is not None and len(buffer) == MiB and reservation.held(shared) == MiB
    assert shared.parked == 0
    reservation.release()
    assert shared.in_use == 0


async def wait_until(condition: object, attempts: int = 200) -> None:
    for _ in range(attempts):
        if condition():  # type: ignore[operator]
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("the condition never became true")


# ---- 64 concurrent uploads under one budget, in a child process ---------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, os, resource, sys
    import structlog
    import streamx

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    MiB = 1024 * 1024
    endpoint, access, secret, bucket, budget_mib, use_budget = sys.argv[1:7]
    N, SIZE = 64, 20 * MiB
    BLOCK = os.urandom(MiB)

    def chunks():
        for _ in range(SIZE // MiB):
            yield BLOCK

    def maxrss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def main():
        budget = streamx.MemoryBudget(int(budget_mib) * MiB) if use_budget == "1" else None
        # one part per head, so every upload goes multipart at once
        cfg = streamx.TransferConfig(part_size=5 * MiB, queue_size=4, multipart_threshold=5 * MiB)
        async with streamx.Engine(
            endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
            region_name="us-east-1", config=cfg, memory_budget=budget,
        ) as engine:
            await engine.upload(bucket, "warm-up", b"x" * 1000)  # the HTTP stack is loaded
            baseline = maxrss_mib()
            results = await asyncio.gather(
                *(engine.upload(bucket, f"obj-{i}", chunks()) for i in range(N))
            )
            peak = maxrss_mib()
            sizes = []
            for i in range(N):
                head = await engine.client.head_object(Bucket=bucket, Key=f"obj-{i}")
                sizes.append(head["ContentLength"])
        print(json.dumps({
            "baseline_mib": baseline, "peak_mib": peak, "sizes": sizes,
            "result_sizes": [r.size for r in results],
            "budget_peak": budget.peak if budget else None,
        }))

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_64_concurrent_stream_uploads_stay_within_a_128_mib_budget(
    rclone_server: RcloneServer,
) -> None:
    budget_mib, margin_mib = 128, 96
    bucket = f"budget-{uuid.uuid4().hex[:10]}"
    rclone_server.make_bucket(bucket)
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            rclone_server.endpoint_url,
            rclone_server.access_key,
            rclone_server.secret_key,
            bucket,
            str(budget_mib),
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["sizes"] == [20 * MiB] * 64
    assert report["result_sizes"] == [20 * MiB] * 64
    assert report["budget_peak"] <= budget_mib * MiB
    grown = report["peak_mib"] - report["baseline_mib"]
    # Without the budget the 64 windows (4 parts × 5 MiB each) could hold 1.25 GiB.
    assert grown <= budget_mib + margin_mib, (
        f"peak RSS {report['peak_mib']:.0f} MiB is {grown:.0f} MiB over the baseline "
        f"{report['baseline_mib']:.0f} MiB; the budget is {budget_mib} MiB (+{margin_mib} margin)"
    )
