"""The part planner is a pure function: unit tests, including S3's 5 TiB ceiling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamx import PartPlan, TransferConfig
from streamx._limits import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    GiB,
    MiB,
    TiB,
    format_size,
    parse_size,
)


@pytest.mark.unit
@pytest.mark.parametrize("part_size", [5 * MiB, 8 * MiB, 16 * MiB, 100 * MiB, 5 * GiB])
def test_stream_plan_holds_5_tib_in_10000_parts(part_size: int) -> None:
    plan = PartPlan.for_stream(part_size)
    assert plan.capacity >= MAX_OBJECT_SIZE
    sizes = [plan.size_of(n) for n in range(1, MAX_PARTS + 1)]
    assert sum(sizes) == plan.capacity
    assert sizes[0] == part_size
    assert all(MIN_PART_SIZE <= s <= MAX_PART_SIZE for s in sizes)
    assert sizes == sorted(sizes), "parts never shrink"


@pytest.mark.unit
def test_stream_plan_keeps_parts_small_as_long_as_possible() -> None:
    plan = PartPlan.for_stream(8 * MiB)
    assert plan.interval is not None and plan.interval > 1000
    # a 1 GiB or a 4 GiB stream never leaves the configured part size
    assert plan.offset_of(plan.interval + 1) > 4 * GiB
    # one interval later the parts would no longer hold 5 TiB
    assert PartPlan(8 * MiB, plan.interval + 1).capacity < MAX_OBJECT_SIZE


@pytest.mark.unit
def test_large_base_needs_no_growth() -> None:
    plan = PartPlan.for_stream(600 * MiB)
    assert plan.interval is None and plan.capacity == 600 * MiB * MAX_PARTS


@pytest.mark.unit
def test_equal_parts_capacity_is_part_size_times_10000() -> None:
    plan = PartPlan.for_stream(8 * MiB, equal_parts=True)
    assert plan.size_of(1) == plan.size_of(MAX_PARTS) == 8 * MiB
    assert plan.capacity == 8 * MiB * MAX_PARTS


@pytest.mark.unit
@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, 8 * MiB), (1, 8 * MiB), (80 * GiB, 9 * MiB), (5 * TiB, 525 * MiB)],
)
def test_known_size_grows_to_fit_10000_parts(size: int, expected: int) -> None:
    plan = PartPlan.for_known_size(size, 8 * MiB)
    assert plan.base == expected
    assert plan.base * MAX_PARTS >= size


@pytest.mark.unit
def test_known_size_over_5_tib_is_refused() -> None:
    with pytest.raises(ValueError, match="5 TiB"):
        PartPlan.for_known_size(MAX_OBJECT_SIZE + 1, 8 * MiB)


@pytest.mark.unit
@given(st.integers(1, MAX_PARTS), st.sampled_from([5 * MiB, 8 * MiB, 64 * MiB]))
def test_offsets_are_prefix_sums(n: int, base: int) -> None:
    plan = PartPlan.for_stream(base)
    if n == 1:
        assert plan.offset_of(1) == 0
    else:
        assert plan.offset_of(n) == plan.offset_of(n - 1) + plan.size_of(n - 1)


@pytest.mark.unit
def test_part_number_outside_s3_range() -> None:
    with pytest.raises(ValueError):
        PartPlan(8 * MiB).size_of(0)
    with pytest.raises(ValueError):
        PartPlan(8 * MiB).size_of(MAX_PARTS + 1)


def test_memory_bound_stream_limit() -> None:
    cfg = TransferConfig(part_size=8 * MiB, queue_size=4)
    # parts grow past the 32 MiB window only beyond tens of GiB
    assert cfg.memory_bound_stream_limit > 50 * GiB
    assert cfg.memory_bound == cfg.high_water_mark + 32 * MiB


@pytest.mark.unit
def test_sizes_format_and_parse() -> None:
    assert format_size(8 * MiB) == "8 MiB"
    assert format_size(1536) == "1.5 KiB"
    assert parse_size("1GiB") == GiB
    assert parse_size("512 MiB") == 512 * MiB
    assert parse_size("10MB") == 10_000_000
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError):
        parse_size("ten")
