"""Pure parts of sync: the local walk's key order, the merge-join, filters, decisions, watermarks."""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import streamx
from streamx.bulk.entries import Entry, walk_local
from streamx.bulk.fileio import ThreadBatcher
from streamx.bulk.manifest import Manifest, Watermark
from streamx.bulk.plan import Filters, SyncOrderError, decide, merge

pytestmark = [pytest.mark.anyio, pytest.mark.unit]  # pure logic: no server


def make_tree(root: Path, keys: list[str]) -> None:
    for key in keys:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())


async def collect(it: AsyncIterator[Entry]) -> list[str]:
    return [e.key async for e in it]


async def test_local_walk_is_in_s3_key_order(tmp_path: Path) -> None:
    keys = ["a/b", "a-b", "a.b", "a0", "a/c/d", "ab", "é", "z", "a/b0", "日本/x", "~", "a/x/y/z"]
    make_tree(tmp_path, keys)
    walked = await collect(walk_local(str(tmp_path)))
    assert walked == sorted(keys, key=lambda k: k.encode("utf-8"))
    assert walked.index("a-b") < walked.index("a/b") and walked.index("a.b") < walked.index("a/b")


async def test_local_walk_ranges(tmp_path: Path) -> None:
    keys = [f"{d}/{f}" for d in ("p", "q", "r") for f in ("1", "2")] + ["q-", "q0"]
    make_tree(tmp_path, keys)
    ordered = sorted(keys)
    for after, until in [("q/1", None), (None, "q/2"), ("p/2", "q0"), ("q", "q/1")]:
        got = await collect(walk_local(str(tmp_path), after=after, until=until))
        want = [
            k for k in ordered if (after is None or k > after) and (until is None or k <= until)
        ]
        assert got == want, (after, until)


async def test_local_walk_cuts_symlink_loops(tmp_path: Path) -> None:
    make_tree(tmp_path, ["d/f"])
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop")
    assert await collect(walk_local(str(tmp_path))) == ["d/f"]


async def aiter_entries(keys: list[str]) -> AsyncIterator[Entry]:
    for k in keys:
        yield Entry(k, 1, 0.0)


async def test_merge_join_pairs_every_key_once() -> None:
    rng = random.Random(7)
    universe = sorted({f"k{rng.randrange(10_000):05d}" for _ in range(3000)})
    left = [k for k in universe if rng.random() < 0.6]
    right = [k for k in universe if rng.random() < 0.6]
    pairs = [
        (s.key if s else None, d.key if d else None)
        async for s, d in merge(aiter_entries(left), aiter_entries(right))
    ]
    assert [p[0] for p in pairs if p[0]] == left
    assert [p[1] for p in pairs if p[1]] == right
    assert all(a == b for a, b in pairs if a and b)
    assert len(pairs) == len(set(left) | set(right))


async def test_merge_refuses_a_listing_out_of_order() -> None:
    with pytest.raises(SyncOrderError, match="destination listing is not in key order"):
        async for _ in merge(aiter_entries(["a", "c"]), aiter_entries(["a/b", "a-b"])):
            pass
    assert issubclass(SyncOrderError, streamx.StreamxError)


def test_filters_last_match_wins() -> None:
    rules = Filters([("exclude", "*.tmp"), ("include", "keep/*.tmp"), ("exclude", "logs/*")])
    assert rules("a.txt") and not rules("x/a.tmp") and rules("keep/a.tmp") and not rules("logs/x")
    with pytest.raises(streamx.ConfigError):
        Filters([("skip", "*")])


def test_decide() -> None:
    a = Entry("k", 10, 100.0, etag="e1")
    assert decide(a, None, compare="checksum", delete=False).kind == "copy"  # type: ignore[union-attr]
    assert decide(None, a, compare="checksum", delete=False) is None
    assert decide(None, a, compare="checksum", delete=True).kind == "delete"  # type: ignore[union-attr]
    assert decide(a, Entry("k", 11, 0.0), compare="size", delete=False).kind == "update"  # type: ignore[union-attr]
    assert decide(a, Entry("k", 10, 0.0), compare="size", delete=False) is None
    assert decide(a, Entry("k", 10, 99.0), compare="size-mtime", delete=False).kind == "update"  # type: ignore[union-attr]
    assert decide(a, Entry("k", 10, 101.0), compare="size-mtime", delete=False) is None
    assert decide(a, Entry("k", 10, 0.0, etag="e1"), compare="checksum", delete=False) is None
    assert (
        decide(a, Entry("k", 10, 0.0, etag="e2"), compare="checksum", delete=False).kind == "check"
    )  # type: ignore[union-attr]


def test_watermark_moves_over_the_finished_run_only() -> None:
    mark = Watermark()
    for k in "abcde":
        mark.start(k)
    mark.finish("b")
    mark.finish("c")
    assert mark.value is None
    mark.finish("a")
    assert mark.value == "c" and mark.pending == 2
    mark.finish("e")
    mark.finish("d", ok=False)  # a failure freezes it and drops what it kept
    mark.start("f")
    mark.finish("f")
    assert mark.value == "c" and mark.pending == 0


async def test_manifest_refuses_another_job(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    m = Manifest(path, {"source": "a", "destination": "b"})
    m.shard("", None).value = "k1"
    await m.save()
    assert Manifest(path, {"source": "a", "destination": "b"}).load() == {"": "k1"}
    with pytest.raises(streamx.CheckpointError, match="records another sync"):
        Manifest(path, {"source": "a", "destination": "c"}).load()
    path.write_text(json.dumps({"x": 1}))
    with pytest.raises(streamx.CheckpointError, match="not a streamx sync manifest"):
        Manifest(path, {}).load()


# -- ThreadBatcher: small file jobs share thread hops ---------------------------------------------


async def test_thread_batcher_runs_waiting_jobs_together_and_hands_back_each_result() -> None:
    batcher = ThreadBatcher(limit=8)
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await batcher.run(lambda: i * i)

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(one, i)
    assert results == {i: i * i for i in range(40)}
    assert 5 <= batcher.hops < 40  # at most 8 per hop, and not one hop per job


async def test_thread_batcher_errors_go_to_their_own_job() -> None:
    batcher = ThreadBatcher()

    def fail() -> int:
        raise FileNotFoundError("gone")

    outcome: dict[str, object] = {}

    async def bad() -> None:
        with pytest.raises(FileNotFoundError):
            await batcher.run(fail)
        outcome["bad"] = "raised"

    async def good() -> None:
        outcome["good"] = await batcher.run(lambda: 7)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bad)
        tg.start_soon(good)
    assert outcome == {"bad": "raised", "good": 7}


async def test_thread_batcher_cancelled_waiters_leave_and_the_rest_finish() -> None:
    """A waiter cancelled while queued takes its job out; the lead passes on, nobody hangs."""
    batcher = ThreadBatcher(limit=1)
    started = threading.Event()
    release = threading.Event()
    ran: list[int] = []

    def slow() -> int:
        started.set()
        release.wait(10)
        ran.append(0)
        return 0

    def quick(i: int) -> int:
        ran.append(i)
        return i

    got: list[int] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: batcher.run(slow))
            await anyio.to_thread.run_sync(started.wait)
            with anyio.CancelScope() as doomed:
                async with anyio.create_task_group() as inner:
                    inner.start_soon(lambda: batcher.run(lambda: quick(1)))
                    await anyio.sleep(0.01)
                    doomed.cancel()

            async def last() -> None:
                got.append(await batcher.run(lambda: quick(2)))

            tg.start_soon(last)
            await anyio.sleep(0.01)
            release.set()
    assert got == [2] and ran == [0, 2]  # the cancelled job never ran


def test_split_part_ranges_cover_the_object_in_at_most_10000_parts() -> None:
    """A split object's parts: the engine's part size, grown (whole MiB) past 10,000 parts."""
    from streamx.bulk.split import check_split_threshold, part_ranges

    mib = 1024 * 1024
    assert part_ranges(12 * mib + 1, 5 * mib, 5 * 1024**4) == [
        (0, 5 * mib),
        (5 * mib, 10 * mib),
        (10 * mib, 12 * mib + 1),
    ]
    size = 100 * 1024**3 + 7  # 100 GiB at 8 MiB would be 12,800 parts
    ranges = part_ranges(size, 8 * mib, 5 * 1024**4)
    assert len(ranges) <= 10_000 and ranges[0] == (0, 11 * mib) and ranges[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert check_split_threshold(None) is None and check_split_threshold(5 * mib) == 5 * mib
    with pytest.raises(streamx.ConfigError, match="at least 5 MiB"):
        check_split_threshold(5 * mib - 1)
