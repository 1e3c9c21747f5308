"""Composite-checksum objects verified part by part (issue 15 item 6).

No local server returns a part's checksum on ``GetObject(PartNumber=n)``
(SeaweedFS honours ``PartNumber`` but sends no checksum; moto ignores
``PartNumber``), so the store's answer is emulated at the network level on
SeaweedFS: the fault proxy adds the headers AWS documents. A multipart object
with a COMPOSITE checksum reports ``x-amz-checksum-crc32c: <b64>-N`` on HEAD,
and each part's own checksum on ``GetObject``/``HeadObject`` with
``partNumber`` and ``x-amz-checksum-mode: ENABLED``:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Fault, FaultProxy

import streamx
from streamx._checksum import composite, compute
from streamx.download.parts import (
    CompositeChecksum,
    check_composite,
    check_part,
    composite_of,
    should_fetch_parts,
)
from streamx.testing import capture_logs

MiB = 1024 * 1024
PART = 5 * MiB
DATA = random.Random(15).randbytes(2 * PART + 777)  # parts of 5 MiB, 5 MiB, 777 bytes
PIECES = [DATA[i : i + PART] for i in range(0, len(DATA), PART)]
SUMS = [compute("CRC32C", p) for p in PIECES]
COMPOSITE = composite(SUMS)
CONFIG = streamx.TransferConfig(part_size=PART, queue_size=2)


# -- the decisions, pure ---------------------------------------------------------------------


@pytest.mark.unit
def test_composite_values_are_recognised() -> None:
    assert composite_of({"ChecksumCRC32C": "AAAAAA==-3"}) == CompositeChecksum(
        "CRC32C", "AAAAAA==-3", 3
    )
    # moto's HEAD: the value without its suffix, the type says COMPOSITE, N from the ETag
    moto = {"ChecksumCRC32C": "AAAAAA==", "ChecksumType": "COMPOSITE", "ETag": '"ab-2"'}
    assert composite_of(moto) == CompositeChecksum("CRC32C", "AAAAAA==-2", 2)
    assert composite_of({**moto, "PartsCount": 4}) == CompositeChecksum("CRC32C", "AAAAAA==-4", 4)
    assert composite_of({"ChecksumCRC32C": "AAAAAA==", "ChecksumType": "FULL_OBJECT"}) is None
    assert composite_of({"ChecksumCRC32C": "AAAAAA==", "ETag": '"ab-2"'}) is None  # type unknown
    assert composite_of({"ETag": '"ab-2"'}) is None


@pytest.mark.unit
def test_parts_are_fetched_only_to_verify_a_composite_object_without_checkpoint() -> None:
    head = {"ChecksumCRC32C": "AAAAAA==-3"}
    assert should_fetch_parts(head, checksum="when_supported", checkpoint=False)
    assert not should_fetch_parts(head, checksum="off", checkpoint=False)
    assert not should_fetch_parts(head, checksum="when_supported", checkpoint=True)
    full = {"ChecksumCRC32C": "AAAAAA==", "ChecksumType": "FULL_OBJECT"}
    assert not should_fetch_parts(full, checksum="when_supported", checkpoint=False)


@pytest.mark.unit
def test_part_and_composite_checks() -> None:
    check_part("CRC32C", SUMS[0].b64, SUMS[0], bucket="b", key="k", part=1)
    with pytest.raises(streamx.ChecksumError) as info:
        check_part("CRC32C", SUMS[1].b64, SUMS[0], bucket="b", key="k", part=1)
    assert info.value.part_number == 1
    expected = CompositeChecksum("CRC32C", COMPOSITE, 3)
    check_composite(expected, SUMS, bucket="b", key="k")
    with pytest.raises(streamx.ChecksumError):
        check_composite(expected, SUMS[:2], bucket="b", key="k")
    with pytest.raises(streamx.ChecksumError):
        check_composite(expected, [SUMS[1], SUMS[0], SUMS[2]], bucket="b", key="k")


# -- on SeaweedFS, the store's answers emulated by the proxy ----------------------------------


@pytest.fixture
async def seaweed(seaweedfs_server: Any) -> AsyncIterator[tuple[Any, str]]:
    """SeaweedFS with a bucket holding ``DATA`` as a 3-part multipart object ``m``."""
    async with streamx.Engine(**seaweedfs_server.engine_args()) as engine:
        bucket = f"parts-{random.randrange(1 << 32):08x}"
        c = engine.client
        await c.create_bucket(Bucket=bucket)
        upload_id = (await c.create_multipart_upload(Bucket=bucket, Key="m"))["UploadId"]
        parts = []
        for n, piece in enumerate(PIECES, 1):
            r = await c.upload_part(
                Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=n, Body=piece
            )
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        await c.complete_multipart_upload(
            Bucket=bucket, Key="m", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        yield seaweedfs_server, bucket


def emulate(proxy: FaultProxy, *, part_sums: bool = True) -> None:
    """HEAD reports the composite CRC32C; each part's GET reports the part's CRC32C."""
    name = "x-amz-checksum-crc32c"
    proxy.add(Fault("header", method="HEAD", phase="response", header=name, value=COMPOSITE,
                    times=None))  # fmt: skip
    if part_sums:
        for n, s in enumerate(SUMS, 1):
            proxy.add(Fault("header", op="GetObject", query={"partNumber": str(n)},
                            phase="response", header=name, value=s.b64, times=None))  # fmt: skip


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.anyio
async def test_a_composite_object_is_verified_part_by_part(
    seaweed: tuple[Any, str], tmp_path: Path
) -> None:
    server, bucket = seaweed
    async with FaultProxy(server.endpoint_url) as proxy:
        emulate(proxy)
        async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as e:
            with capture_logs() as logs:
                result = await e.download_file(bucket, "m", tmp_path / "m", config=CONFIG)
        gets = proxy.sent("GetObject")
    assert sha((tmp_path / "m").read_bytes()) == sha(DATA)
    assert sorted(r.query.get("partNumber") for r in gets) == ["1", "2", "3"]
    assert result.size == len(DATA) and result.ranges == 3
    verified = [x for x in logs if x["event"] == "download.checksum.verified"]
    assert len(verified) == 1 and verified[0]["parts"] == 3


@pytest.mark.anyio
async def test_a_damaged_part_raises_and_leaves_no_file(
    seaweed: tuple[Any, str], tmp_path: Path
) -> None:
    server, bucket = seaweed
    target = tmp_path / "m"
    async with FaultProxy(server.endpoint_url) as proxy:
        # part 2 arrives with one bit flipped (every attempt), its true checksum in the header
        proxy.add(Fault("corrupt", op="GetObject", query={"partNumber": "2"}, phase="response",
                        at=4321, header="x-amz-checksum-crc32c", value=SUMS[1].b64,
                        times=None))  # fmt: skip
        emulate(proxy)
        async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as e:
            cfg = streamx.TransferConfig(part_size=PART, queue_size=2, max_attempts=2)
            with pytest.raises(streamx.ChecksumError) as info:
                await e.download_file(bucket, "m", target, config=cfg)
    assert info.value.part_number == 2 and "CRC32C" in str(info.value)
    assert entries(tmp_path) == []  # no file, no temporary file


@pytest.mark.anyio
async def test_a_store_without_part_checksums_falls_back_to_ranges(
    seaweed: tuple[Any, str], tmp_path: Path
) -> None:
    """SeaweedFS as it is: PartNumber honoured, no checksum of the part: ranges, unverified."""
    server, bucket = seaweed
    async with FaultProxy(server.endpoint_url) as proxy:
        emulate(proxy, part_sums=False)
        async with streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}) as e:
            with capture_logs() as logs:
                await e.download_file(bucket, "m", tmp_path / "m", config=CONFIG)
        heads = proxy.sent("HeadObject")
    assert sha((tmp_path / "m").read_bytes()) == sha(DATA)
    assert [x["event"] for x in logs if x["event"].startswith("download.parts")] == [
        "download.parts.fallback"
    ]
    assert len(heads) == 1  # the range path reuses the HEAD the part path asked
    assert [x for x in logs if x["event"] == "download.checksum.verified"] == []
