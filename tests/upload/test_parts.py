"""The producer's part accounting and the 10,001st-part guard (pure logic, no server).

S3's 10,000-part limit is far beyond what a test can upload, so the guard is
exercised with the limit lowered to 3 parts; the code path is the same.
"""

from __future__ import annotations

import pytest

import streamx
from streamx._budget import MemoryBudget
from streamx._limits import PartPlan
from streamx.upload import parts as parts_module
from streamx.upload.parts import PartProducer
from streamx.upload.source import open_source

pytestmark = pytest.mark.unit  # pure logic: no server

PART = 5 * 1024 * 1024


def producer(data: bytes, *, equal: bool, window: int = 4 * PART) -> PartProducer:
    return PartProducer(
        open_source(iter([data[i : i + 999_999] for i in range(0, len(data), 999_999)])),
        PartPlan.for_stream(PART, equal_parts=equal),
        [MemoryBudget(window)],
        checksum_algorithm="CRC32C",
        equal_parts=equal,
    )


@pytest.mark.anyio
async def test_error_before_the_part_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts_module, "MAX_PARTS", 3)
    p = producer(b"x" * (3 * PART + 1), equal=True)
    got = [await p.next_part() for _ in range(3)]
    assert [part.number for part in got if part] == [1, 2, 3]
    with pytest.raises(streamx.PartLimitError, match="longer than 3 parts") as info:
        await p.next_part()
    assert info.value.part_number == 4
    assert "part_size" in str(info.value)


@pytest.mark.anyio
async def test_exactly_full_stream_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts_module, "MAX_PARTS", 3)
    p = producer(b"x" * (3 * PART), equal=True)
    sizes = []
    while (part := await p.next_part()) is not None:
        sizes.append(part.size)
        p.release(part)
    assert sizes == [PART, PART, PART]


@pytest.mark.anyio
async def test_parts_hold_the_window_until_released() -> None:
    budget = MemoryBudget(2 * PART)
    p = PartProducer(
        open_source(b"y" * (4 * PART)),
        PartPlan.for_known_size(4 * PART, PART),
        [budget],
        checksum_algorithm=None,
        equal_parts=False,
    )
    first, second = await p.next_part(), await p.next_part()
    assert first and second and budget.in_use == 2 * PART
    p.release(first)
    assert budget.in_use == PART
    third = await p.next_part()
    assert third and budget.in_use == 2 * PART
    p.release_all()
    assert budget.in_use == 0
