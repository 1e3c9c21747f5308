"""RateLimit: token buckets and the AIMD window on an injected clock; engines metered through a real
server behind the fault proxy (503 SlowDown answers shrink the window)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from faultproxy import Fault, FaultProxy, Sleeps

import streamx

pytestmark = pytest.mark.anyio


class Clock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def test_requests_per_second_after_the_burst() -> None:
    clock = Clock()
    limit = streamx.RateLimit(requests_per_second=10, clock=clock, sleep=clock.sleep)
    for _ in range(30):
        await limit.acquire()
    # 10 tokens of burst, then one request every 0.1 s: 20 more take 2 s
    assert limit.requests == 30
    assert len(clock.sleeps) == 20
    assert clock.now == pytest.approx(2.0)


async def test_bytes_per_second_and_debt_is_paid_in_order() -> None:
    clock = Clock()
    limit = streamx.RateLimit(bytes_per_second=1000, clock=clock, sleep=clock.sleep)
    await limit.acquire(1000)  # the burst
    await limit.acquire(5000)  # 5 s of debt
    assert clock.now == pytest.approx(5.0)
    clock.now += 10  # idle: the bucket refills to its burst only, not to 10 s worth
    await limit.acquire(3000)
    assert clock.now == pytest.approx(17.0)
    assert limit.bytes == 9000 and limit.slept == pytest.approx(7.0)


async def test_aimd_window() -> None:
    clock = Clock()
    limit = streamx.RateLimit(max_in_flight=16, cooldown=1.0, clock=clock, sleep=clock.sleep)
    limit.on_throttle()
    limit.on_throttle()  # within the cooldown: one decrease
    assert limit.window == 8 and limit.throttled == 2
    clock.now += 1.0
    limit.on_throttle()
    assert limit.window == 4
    for _ in range(4):
        limit.on_success()  # + 1/window each: about one per window's worth of successes
    assert 4.9 < limit.window < 5.0
    for _ in range(1000):
        limit.on_success()
    assert limit.window == 16
    for _ in range(10):
        clock.now += 1.0
        limit.on_throttle()
    assert limit.window == 1


async def test_slot_holds_the_window() -> None:
    limit = streamx.RateLimit(max_in_flight=2)
    peak = 0

    async def work() -> None:
        nonlocal peak
        async with limit.slot():
            peak = max(peak, limit.in_flight)
            await anyio.lowlevel.checkpoint()
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(work)
    assert peak == 2 and limit.in_flight == 0


def test_bad_arguments() -> None:
    for kwargs in (
        {"bytes_per_second": 0},
        {"requests_per_second": -1},
        {"max_in_flight": 0},
        {"bytes_per_second": "1M"},
        {"burst": 0},
    ):
        with pytest.raises(streamx.ConfigError):
            streamx.RateLimit(**kwargs)
    with pytest.raises(streamx.ConfigError):
        streamx.Engine(rate_limit=5)  # type: ignore[arg-type]


async def test_engines_share_one_limit_and_slowdown_shrinks_the_window(
    server: Any,
    proxy: FaultProxy,
    engine: streamx.Engine,
    bucket: str,
    tmp_path: Path,
    sleeps: Sleeps,
) -> None:
    for i in range(12):
        (tmp_path / f"f{i:02d}").write_bytes(bytes([i]) * (1000 + i))
    clock = Clock()
    limit = streamx.RateLimit(
        requests_per_second=1000,
        bytes_per_second=10**9,
        max_in_flight=8,
        clock=clock,
        sleep=clock.sleep,
    )
    proxy.add(Fault("status", op="PutObject", path="/x/f", status=503, code="SlowDown", times=3))
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    async with (
        streamx.Engine(**args, rate_limit=limit, retry=streamx.RetryPolicy(sleep=sleeps)) as a,
        streamx.Engine(**args, rate_limit=limit, retry=streamx.RetryPolicy(sleep=sleeps)) as b,
    ):
        first = await streamx.sync(tmp_path, f"s3://{bucket}/x", engine=a, concurrency=4)
        await b.head(bucket, "x/f00")
    assert first.copied == 12 and first.failed == 0
    assert len(sleeps.delays) == 3  # the three SlowDowns were retried by the engine
    # every request through the proxy was metered, by both engines, bodies included
    assert limit.requests == len(proxy.requests)
    assert limit.bytes >= sum(r.body_bytes for r in proxy.requests if r.op == "PutObject")
    assert limit.throttled == 3
    assert limit.window < 8  # halved once (one cooldown on the still clock), grown back a little
