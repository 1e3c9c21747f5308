"""A download's range buffers are reused only when nothing else holds them, and what they
hold stays inside the budget (streamx/download/buffers.py)."""

from __future__ import annotations

import pytest

from streamx import MemoryBudget
from streamx._budget import Reservation
from streamx.download.buffers import RangeBuffers

pytestmark = pytest.mark.unit  # pure logic: no server


async def reserved(budget: MemoryBudget, n: int) -> Reservation:
    r = Reservation()
    await r.take(budget, n)
    return r


@pytest.mark.anyio
async def test_a_buffer_nothing_else_holds_is_lent_with_its_reservation() -> None:
    budget = MemoryBudget(100)
    buffers = RangeBuffers()
    buf = bytearray(10)
    first = await reserved(budget, 10)
    buffers.keep(buf, first)
    assert budget.in_use == 10  # still held: the kept buffer is inside the budget
    assert buffers.take(20) is None  # a buffer of another size is let go
    assert budget.in_use == 0
    second = await reserved(budget, 10)
    buf = bytearray(10)
    ident = id(buf)
    buffers.keep(buf, second)
    del buf
    lent_with = buffers.take(10)
    assert lent_with is second
    got = buffers.lent(second)
    assert got is not None and id(got) == ident
    assert buffers.lent(second) is None  # lent once


@pytest.mark.anyio
async def test_a_buffer_the_sink_kept_is_never_reused() -> None:
    budget = MemoryBudget(100)
    buffers = RangeBuffers()
    kept_by_sink = []
    buf = bytearray(10)
    kept_by_sink.append(buf)
    buffers.keep(buf, await reserved(budget, 10))
    assert budget.in_use == 0 and buffers.take(10) is None
    view = memoryview(buf)  # a view alive holds a reference through the buffer export
    kept_by_sink.clear()
    buffers.keep(buf, await reserved(budget, 10))
    assert budget.in_use == 0 and buffers.take(10) is None
    view.release()


@pytest.mark.anyio
async def test_while_the_dispatcher_waits_the_memory_goes_back_and_the_buffer_waits_loose() -> None:
    budget = MemoryBudget(100)
    buffers = RangeBuffers()
    buffers.waiting = True
    buf = bytearray(10)
    buffers.keep(buf, await reserved(budget, 10))
    assert budget.in_use == 0  # the waiting dispatcher gets the memory at once
    buffers.waiting = False
    fresh = await reserved(budget, 10)
    buffers.adopt(fresh, 10)
    assert buffers.lent(fresh) is buf
    # once every range is dispatched nothing is kept (no engine budget: nothing is pooled)
    buffers.dispatching = False
    other = bytearray(10)
    buffers.keep(other, await reserved(budget, 10))
    assert budget.in_use == 10  # only ``fresh`` is held
    fresh.release()


@pytest.mark.anyio
async def test_at_the_end_whole_range_buffers_go_to_the_engines_pool() -> None:
    """What the engine's budget holds for a buffer goes with it to the budget's pool, where
    the next download (or upload) finds it; the download's own window is released."""
    engine_budget, window = MemoryBudget(1000), MemoryBudget(100)
    buffers = RangeBuffers(engine_budget, part_size=10)

    async def both(n: int) -> Reservation:
        r = Reservation()
        await r.take(window, n)
        await r.take(engine_budget, n)
        return r

    buffers.keep(bytearray(10), await both(10))  # kept for a later range of this download
    buffers.dispatching = False
    buffers.keep(bytearray(10), await both(10))  # delivered after the last dispatch
    buffers.keep(bytearray(7), await both(7))  # a short last range: not worth pooling
    buffers.release_all()
    assert window.in_use == 0
    assert engine_budget.parked == 20 and engine_budget.in_use == 0
    later = RangeBuffers(engine_budget, part_size=10)
    found = later.unpark(10)
    assert found is not None and found.held(engine_budget) == 10 and engine_budget.parked == 10
    lent = later.lent(found)
    assert lent is not None and len(lent) == 10
    found.release()


@pytest.mark.anyio
async def test_release_all_gives_every_kept_reservation_back() -> None:
    budget = MemoryBudget(100)
    buffers = RangeBuffers()
    held = [bytearray(10) for _ in range(3)]
    for b in held:
        buffers.keep(b, await reserved(budget, 10))
        del b
    # the list still refers to them: none kept
    assert budget.in_use == 0
    for _ in range(3):
        buffers.keep(bytearray(10), await reserved(budget, 10))
    assert budget.in_use == 30
    buffers.release_all()
    assert budget.in_use == 0 and buffers.take(10) is None
