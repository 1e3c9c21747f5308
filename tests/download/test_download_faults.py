"""Download faults injected at the network level (tests/faultproxy.py) in front of moto and rclone.

Each scenario ends with the downloaded bytes' SHA-256 equal to the object's
(and the stored checksum verified on the way), or with a clear streamx
error and no file. Retries never really sleep: the download pipeline's
RetryPolicy gets a recording sleep (:class:`faultproxy.Sleeps`).
"""

from __future__ import annotations

import hashlib
import random
import zlib
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Fault, FaultProxy, Request, Sleeps

import streamx
from streamx.testing import capture_logs

MiB = 1024 * 1024
PART = 5 * MiB
DATA = random.Random(31).randbytes(3 * PART + 777)  # 4 ranges, the last one short
CFG = streamx.TransferConfig(part_size=PART, queue_size=2)


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def starts_at(offset: int) -> Any:
    return lambda r: r.headers.get("range", "").startswith(f"bytes={offset}-")


def ranges_asked(proxy: FaultProxy) -> list[str]:
    return [r.headers.get("range", "") for r in proxy.sent("GetObject")]


@pytest.fixture
async def stored(engine: streamx.Engine, bucket: str) -> str:
    """DATA as one PUT with a CRC32C both servers keep, so every download is also verified."""
    await engine.client.put_object(Bucket=bucket, Key="obj", Body=DATA, ChecksumAlgorithm="CRC32C")
    return "obj"


@pytest.mark.anyio
async def test_a_truncated_range_is_resumed_for_the_missing_bytes(
    tengine: streamx.Engine, proxy: FaultProxy, bucket: str, stored: str, tmp_path: Path
) -> None:
    cut = MiB + 17
    proxy.add(Fault("truncate", op="GetObject", phase="response", at=cut, where=starts_at(PART)))
    with capture_logs() as logs:
        result = await tengine.download_file(bucket, stored, tmp_path / "f", config=CFG)
    assert sha((tmp_path / "f").read_bytes()) == sha(DATA)
    asked = ranges_asked(proxy)
    assert asked.count(f"bytes={PART + cut}-{2 * PART - 1}") == 1  # only the rest of that range
    assert len(asked) == result.requests == 5 and result.ranges == 4
    assert [e["event"] for e in logs].count("download.checksum.verified") == 1
    assert entries(tmp_path) == ["f"]

    # the same through the ordered sink: the reorder window waits for the resumed range
    proxy.add(
        Fault("truncate", op="GetObject", phase="response", at=cut, where=starts_at(2 * PART))
    )
    got = bytearray()
    await tengine.download_to(bucket, stored, got.extend, config=CFG)
    assert sha(got) == sha(DATA)
    assert ranges_asked(proxy)[-5:].count(f"bytes={2 * PART + cut}-{3 * PART - 1}") == 1


@pytest.mark.anyio
async def test_a_stalled_server_is_retried_after_part_timeout(
    tengine: streamx.Engine, proxy: FaultProxy, bucket: str, stored: str, tmp_path: Path,
    sleeps: Sleeps,
) -> None:  # fmt: skip
    # the response to one ranged GET never comes (until the proxy closes)
    proxy.add(Fault("stall", op="GetObject", phase="response", where=starts_at(2 * PART)))
    cfg = streamx.TransferConfig(part_size=PART, queue_size=2, part_timeout=1.0)
    with capture_logs() as logs:
        await tengine.download_file(bucket, stored, tmp_path / "s", config=cfg)
    assert sha((tmp_path / "s").read_bytes()) == sha(DATA)
    assert ranges_asked(proxy).count(f"bytes={2 * PART}-{3 * PART - 1}") == 2
    retries = [e for e in logs if e["event"] == "download.range.retry"]
    assert len(retries) == 1 and retries[0]["error"] == "NetworkError"
    assert len(sleeps.delays) == 1


@pytest.mark.anyio
async def test_a_fifth_of_ranged_gets_fail_once(
    tengine: streamx.Engine, proxy: FaultProxy, bucket: str, stored: str, tmp_path: Path,
    sleeps: Sleeps,
) -> None:  # fmt: skip
    failed: set[str] = set()

    def first_time_for_a_fifth(req: Request) -> bool:
        """A fifth of the ranges, chosen by their Range header (whatever order they come in)."""
        asked = req.headers.get("range", "")
        chosen = zlib.crc32(asked.encode()) % 5 == 0 or asked.startswith(f"bytes={PART}-")
        if asked in failed or not chosen:
            return False
        failed.add(asked)
        return True

    proxy.add(Fault("status", op="GetObject", where=first_time_for_a_fifth, times=None))
    # 60 small ranges far apart: 60 ranged GETs (no coalescing), about 12 answered 503 once
    specs = [(i * 250_000, i * 250_000 + 1000 + i) for i in range(60)]
    got = await tengine.get_ranges(bucket, stored, specs, coalesce_gap=0, config=CFG)
    assert got == [DATA[s:e] for s, e in specs]
    first_round = len(failed)
    assert 6 <= first_round <= 18  # about a fifth

    result = await tengine.download_file(bucket, stored, tmp_path / "t", config=CFG)
    assert sha((tmp_path / "t").read_bytes()) == sha(DATA)
    statuses = [r.status for r in proxy.sent("GetObject")]
    assert statuses.count(503) == len(failed) == len(sleeps.delays) > first_round
    assert result.requests == 4 + len(failed) - first_round


@pytest.mark.anyio
async def test_a_range_that_keeps_failing_leaves_no_file(
    tengine: streamx.Engine, proxy: FaultProxy, bucket: str, stored: str, tmp_path: Path
) -> None:
    proxy.add(
        Fault(
            "status", op="GetObject", where=starts_at(PART), status=500, code="InternalError",
            times=None,
        )
    )  # fmt: skip
    cfg = streamx.TransferConfig(part_size=PART, queue_size=2, max_attempts=3)
    with pytest.raises(streamx.ServiceUnavailableError) as info:
        await tengine.download_file(bucket, stored, tmp_path / "x", config=cfg)
    assert "gave up after 3 attempts" in str(info.value) and info.value.key == stored
    assert ranges_asked(proxy).count(f"bytes={PART}-{2 * PART - 1}") == 3
    assert entries(tmp_path) == []
