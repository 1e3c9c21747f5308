"""Growing parts under a shared MemoryBudget (pure logic, no server): parts of sources that
arrive at their sender's pace take budget step by step, and many half-filled parts cannot
deadlock the budget."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from streamx._budget import MemoryBudget, Reservation
from streamx._limits import PartPlan
from streamx.upload.chunks import ArrivingSource
from streamx.upload.parts import GROW_STEP, PartProducer

pytestmark = [pytest.mark.anyio, pytest.mark.unit]  # pure logic: no server
MiB = 1024 * 1024


async def test_half_filled_parts_cannot_deadlock_the_budget() -> None:
    """Eight transfers fill 4-byte parts one byte at a time, in turn, under an 8-byte budget:
    taking steps first-come-first-served would leave eight half-filled parts holding the
    whole budget, each waiting for more. The oldest transfer may always finish its part."""
    budget = MemoryBudget(8)
    done: list[int] = []

    async def transfer(index: int) -> None:
        token = object()
        budget.join_growers(token, 4)
        for _ in range(3):  # three parts each
            reservation = Reservation()
            for _ in range(4):
                await reservation.grow(budget, token, 1)
                await anyio.lowlevel.checkpoint()  # the next byte arrives later: let the others run
            await anyio.lowlevel.checkpoint()  # the part is sent, then acknowledged
            reservation.release()
        budget.leave_growers(token)
        done.append(index)

    with anyio.fail_after(10):  # a deadlock never ends; this is a guard, not a timing
        async with anyio.create_task_group() as tg:
            for index in range(8):
                tg.start_soon(transfer, index)
    assert sorted(done) == list(range(8))
    assert budget.peak <= 8 and budget.in_use == 0


async def test_the_oldest_grower_is_served_first_and_others_leave_a_part_free() -> None:
    budget = MemoryBudget(10)
    old, young = object(), object()
    budget.join_growers(old, 4)
    budget.join_growers(young, 4)
    held = Reservation()
    await held.grow(budget, young, 6)  # 6 + a free part of 4 = 10: allowed
    assert budget.in_use == 6
    blocked = anyio.Event()

    async def young_more() -> None:
        await held.grow(budget, young, 1)  # would leave less than a part: waits
        blocked.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(young_more)
        await anyio.wait_all_tasks_blocked()
        assert budget.waiting == 1 and not blocked.is_set()
        finisher = Reservation()
        await finisher.grow(budget, old, 4)  # the oldest jumps the queue into the free part
        assert budget.in_use == 10
        finisher.release()
        await anyio.wait_all_tasks_blocked()
        assert not blocked.is_set()  # 7 + 4 > 10 still
        budget.leave_growers(old)  # now the young one is the oldest: it may use the rest
        await blocked.wait()
    assert budget.in_use == 7
    held.give_back(2)
    assert budget.in_use == 5 and held.held(budget) == 5
    held.release()
    assert budget.in_use == 0


async def test_a_growing_part_holds_what_arrived_not_a_whole_part() -> None:
    """A body that sent 10 bytes of an 8 MiB part holds 10 bytes plus one step of the
    budget; when the rest arrives the part is whole and exact."""
    send, receive = anyio.create_memory_object_stream[bytes](100)
    shared = MemoryBudget(64 * MiB)
    window = MemoryBudget(32 * MiB)
    plan = PartPlan.for_known_size(12 * MiB, 8 * MiB)
    producer = PartProducer(
        ArrivingSource(receive), plan, [window, shared], checksum_algorithm=None, equal_parts=False
    )
    data = bytes(range(256)) * (12 * MiB // 256)
    async with anyio.create_task_group() as tg:
        parts: list[bytes] = []

        async def produce() -> None:
            while (part := await producer.next_part()) is not None:
                parts.append(bytes(part.data))
                producer.release(part)

        tg.start_soon(produce)
        await send.send(data[:10])
        await anyio.wait_all_tasks_blocked()
        assert 0 < shared.in_use <= GROW_STEP and window.in_use <= GROW_STEP
        for offset in range(10, len(data), 100_000):
            await send.send(data[offset : offset + 100_000])
        await send.aclose()
    await receive.aclose()  # the caller's stream: streamx does not close what it was given
    producer.release_all()
    assert [len(p) for p in parts] == [8 * MiB, 4 * MiB] and b"".join(parts) == data
    assert shared.in_use == 0 and window.in_use == 0
    assert shared.peak <= 8 * MiB + GROW_STEP
