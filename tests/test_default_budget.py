"""``Engine()`` as is fits a server: one memory budget for every transfer, by default.

Unit tests drive the budget's non-waiting paths and the probe of a stream's
head (pure logic). Against rclone: 64 concurrent streaming uploads with
default settings in a child process, whose peak RSS must stay within the
default budget plus a generous margin (without it, 64 windows could hold
over 2 GiB), and 1,000 concurrent uploads from slow producers under the
default budget, which must all complete and leave no multipart upload and no
budget held. No timed assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

import streamx
from streamx._budget import Reservation, default_memory_budget
from streamx._limits import PartPlan
from streamx.testing import RcloneServer
from streamx.upload.chunks import AsyncIterSource
from streamx.upload.parts import PartProducer, WouldWait

MiB = 1024 * 1024
PART = 8 * MiB


# ---- unit tests -------------------------------------------------------------------------


@pytest.mark.unit
def test_the_default_budget_is_capped_and_never_below_the_floor() -> None:
    assert default_memory_budget() <= 128 * MiB
    assert default_memory_budget(floor=300 * MiB) == 300 * MiB
    engine = streamx.Engine(endpoint_url="http://127.0.0.1:9")
    assert engine.memory_budget.limit == default_memory_budget(
        streamx.TransferConfig().memory_bound
    )
    big = streamx.TransferConfig(part_size=64 * MiB, queue_size=8)
    engine = streamx.Engine(endpoint_url="http://127.0.0.1:9", config=big)
    assert engine.memory_budget.limit >= big.memory_bound  # a lone transfer gets its window


@pytest.mark.unit
def test_try_acquire_never_waits_and_never_jumps_the_queue() -> None:
    budget = streamx.MemoryBudget(100)
    assert budget.try_acquire(60)
    assert not budget.try_acquire(50)
    assert budget.in_use == 60

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(budget.acquire, 50)  # waits: 60 + 50 > 100
            await anyio.wait_all_tasks_blocked()
            assert budget.waiting == 1
            assert not budget.try_acquire(10)  # room, but a waiter comes first
            budget.release(60)
        assert budget.in_use == 50

    anyio.run(main)


@pytest.mark.unit
def test_a_reservation_shrinks_to_what_arrived() -> None:
    async def main() -> None:
        shared = streamx.MemoryBudget(10 * MiB)
        reservation = Reservation()
        await reservation.take(shared.heads, MiB)
        await reservation.take(shared, MiB)
        reservation.shrink_to(1000)
        assert (shared.in_use, shared.heads.in_use) == (1000, 1000)
        reservation.release()
        assert (shared.in_use, shared.heads.in_use) == (0, 0)

    anyio.run(main)


async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for i in range(n):
        yield bytes([i]) * size


def producer(source: AsyncIterSource, shared: streamx.MemoryBudget) -> PartProducer:
    plan = PartPlan.for_stream(PART, equal_parts=False)
    return PartProducer(
        source,
        plan,
        [streamx.MemoryBudget(4 * PART), shared],
        checksum_algorithm=None,
        equal_parts=False,
        probe=MiB,
    )


@pytest.mark.unit
def test_a_small_stream_holds_only_what_arrived_not_a_part() -> None:
    async def main() -> None:
        shared = streamx.MemoryBudget(64 * MiB)
        prod = producer(AsyncIterSource(chunks(3, 10_000)), shared)
        part = await prod.next_part()
        assert part is not None and bytes(part.data) == b"\0" * 10_000 + b"\1" * 10_000 + b"\2" * 10_000
        assert prod.eof
        # the heads half is given back once the stream has ended: its bytes are a part
        assert (shared.in_use, shared.heads.in_use) == (30_000, 0)
        prod.release(part)
        assert (shared.in_use, shared.heads.in_use) == (0, 0)

    anyio.run(main)


@pytest.mark.unit
def test_a_long_stream_trades_its_probed_head_for_a_whole_part() -> None:
    async def main() -> None:
        shared = streamx.MemoryBudget(64 * MiB)
        prod = producer(AsyncIterSource(chunks(40, 256 * 1024)), shared)
        part = await prod.next_part()
        assert part is not None and part.size == PART and not prod.eof
        assert (shared.in_use, shared.heads.in_use) == (PART, 0)
        # a second part must not wait while the first is held by a caller that says so
        blocker = Reservation()
        await blocker.take(shared, 64 * MiB - PART)
        with pytest.raises(WouldWait):
            await prod.next_part(wait=False)
        assert shared.in_use == 64 * MiB
        blocker.release()
        prod.release_all()
        assert shared.in_use == 0

    anyio.run(main)


# ---- against rclone ---------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, os, resource, sys
    import streamx

    MiB = 1024 * 1024
    endpoint, access, secret, bucket = sys.argv[1:5]
    N, SIZE, CHUNK = 64, 16 * MiB, 256 * 1024

    async def body():  # like a request body: 256 KiB chunks, yielding to the loop
        block = os.urandom(CHUNK)
        for _ in range(SIZE // CHUNK):
            yield block
            await asyncio.sleep(0)

    def maxrss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def main():
        async with streamx.Engine(
            endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
            region_name="us-east-1",
        ) as engine:  # default settings: no config, no memory_budget
            await engine.upload(bucket, "warm-up", b"x" * 1000)  # the HTTP stack is loaded
            baseline = maxrss_mib()
            results = await asyncio.gather(
                *(engine.upload(bucket, f"obj-{i}", body()) for i in range(N))
            )
            peak = maxrss_mib()
            sizes = []
            for i in range(N):
                head = await engine.client.head_object(Bucket=bucket, Key=f"obj-{i}")
                sizes.append(head["ContentLength"])
            budget = engine.memory_budget
        print(json.dumps({
            "baseline_mib": baseline, "peak_mib": peak, "sizes": sizes,
            "result_sizes": [r.size for r in results], "parts": [r.part_count for r in results],
            "limit": budget.limit, "budget_peak": budget.peak, "in_use": budget.in_use,
        }))

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_64_concurrent_streaming_uploads_with_default_settings_stay_bounded(
    rclone_server: RcloneServer,
) -> None:
    margin_mib = 96  # HTTP stack, worker threads, malloc arenas, one chunk per transfer
    bucket = f"defaults-{uuid.uuid4().hex[:10]}"
    rclone_server.make_bucket(bucket)
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    args = [rclone_server.endpoint_url, rclone_server.access_key, rclone_server.secret_key, bucket]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=170, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["sizes"] == [16 * MiB] * 64
    assert report["result_sizes"] == [16 * MiB] * 64
    assert report["parts"] == [2] * 64
    limit_mib = report["limit"] / MiB
    assert limit_mib <= 128
    assert report["budget_peak"] <= report["limit"]
    assert report["in_use"] == 0
    grown = report["peak_mib"] - report["baseline_mib"]
    assert grown <= limit_mib + margin_mib, (
        f"peak RSS {report['peak_mib']:.0f} MiB is {grown:.0f} MiB over the baseline "
        f"{report['baseline_mib']:.0f} MiB; the default budget is {limit_mib:.0f} MiB "
        f"(+{margin_mib} margin)"
    )


@pytest.mark.slow
@pytest.mark.anyio
async def test_1000_slow_producers_under_the_default_budget_all_complete(
    rclone_server: RcloneServer,
) -> None:
    small, large = 1000, 6
    bucket = f"slow-{uuid.uuid4().hex[:10]}"
    rclone_server.make_bucket(bucket)

    async def slow_body(size: int, chunk: int) -> AsyncIterator[bytes]:
        for i in range(size // chunk):
            yield bytes([i % 251]) * chunk
            await anyio.sleep(0.005)

    async with streamx.Engine(**rclone_server.engine_args()) as engine:
        budget = engine.memory_budget
        results: dict[str, int] = {}

        async def one(key: str, size: int, chunk: int) -> None:
            results[key] = (await engine.upload(bucket, key, slow_body(size, chunk))).size

        async with anyio.create_task_group() as tg:
            for i in range(small):
                tg.start_soon(one, f"small/{i}", 96 * 1024, 32 * 1024)
            for i in range(large):  # multipart, competing with the small ones for the budget
                tg.start_soon(one, f"large/{i}", 20 * MiB, 256 * 1024)
        assert len(results) == small + large
        assert all(results[f"small/{i}"] == 96 * 1024 for i in range(small))
        assert all(results[f"large/{i}"] == 20 * MiB for i in range(large))
        listed = [obj.key async for obj in engine.list(bucket)]
        assert len(listed) == small + large
        uploads = [u async for u in engine.multipart.uploads(bucket)]
        assert uploads == []
        assert (budget.in_use, budget.heads.in_use) == (0, 0)
        assert budget.peak <= budget.limit


@pytest.mark.unit
def test_a_small_object_of_known_size_reserves_its_size_not_a_part() -> None:
    from streamx.upload.source import BytesSource

    async def main() -> None:
        shared = streamx.MemoryBudget(64 * MiB)
        source = BytesSource(b"x" * 4096)
        plan = PartPlan.for_known_size(4096, PART)
        prod = PartProducer(
            source, plan, [streamx.MemoryBudget(4 * PART), shared], checksum_algorithm=None,
            equal_parts=False, probe=MiB,
        )
        part = await prod.next_part()
        assert part is not None and part.size == 4096 and prod.eof
        assert shared.in_use == 4096
        prod.release_all()
        assert shared.in_use == 0

    anyio.run(main)
