"""Checksums computed once in the producer, sent per part, and checked end to end.

moto computes the object's checksum from the bytes it stored (FULL_OBJECT or
COMPOSITE), so there a byte flipped on the wire is caught by the completion
check. rclone stores no checksum of its own; there the proxy answers as AWS
does (400 BadDigest) for the per-part path.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
from typing import Any

import pytest
from conftest import list_uploads, profile_of, read_object
from faultproxy import Fault, FaultProxy

import streamx
from streamx._checksum import Running, combine, composite, compute

MiB = 1024 * 1024
PART = 5 * MiB
DATA = random.Random(7).randbytes(2 * PART + 4321)  # 3 parts
ALGORITHMS = ["CRC32C", "CRC32", "CRC64NVME", "SHA256"]


def config(algorithm: str = "CRC32C", **kw: Any) -> streamx.TransferConfig:
    settings: dict[str, Any] = {"checksum_algorithm": algorithm, **kw}
    return streamx.TransferConfig(
        part_size=PART, queue_size=2, multipart_threshold=PART, **settings
    )


def parts_of(data: bytes, algorithm: str) -> list[Any]:
    return [compute(algorithm, data[i : i + PART]) for i in range(0, len(data), PART)]


def whole_object_value(data: bytes, algorithm: str) -> str:
    """What the upload should report: the plain checksum of the whole object for a CRC
    (FULL_OBJECT), the composite ``-N`` form for SHA256."""
    if algorithm == "SHA256":
        return composite(parts_of(data, algorithm))
    return base64.b64encode(compute(algorithm, data).raw).decode()


# ------------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize("algorithm", ["CRC32C", "CRC32", "CRC64NVME"])
@pytest.mark.parametrize("cuts", [[1], [3, 5], [0, 10, 10, 300], [999]])
def test_combined_crc_equals_crc_of_the_whole(algorithm: str, cuts: list[int]) -> None:
    data = random.Random(sum(cuts)).randbytes(1000)
    bounds = [0, *cuts, len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    combined = combine([compute(algorithm, p) for p in pieces])
    assert combined == compute(algorithm, data)
    running = Running(algorithm)
    for piece in pieces:
        running.update(piece)
    assert running.result() == combined


def test_composite_sha256_is_the_hash_of_part_hashes() -> None:
    parts = [b"a" * 10, b"b" * 7]
    digests = b"".join(hashlib.sha256(p).digest() for p in parts)
    expected = base64.b64encode(hashlib.sha256(digests).digest()).decode() + "-2"
    assert composite([compute("SHA256", p) for p in parts]) == expected


# ------------------------------------------------------------------------------ on real servers


@pytest.mark.anyio
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_each_algorithm_end_to_end(
    server: Any,
    pengine: streamx.Engine,
    engine: streamx.Engine,
    bucket: str,
    proxy: FaultProxy,
    algorithm: str,
) -> None:
    result = await pengine.upload(bucket, "obj", DATA, config=config(algorithm))

    assert await read_object(engine, bucket, "obj") == DATA
    assert result.checksum_algorithm == algorithm
    assert result.checksum == whole_object_value(DATA, algorithm)
    create = proxy.sent("CreateMultipartUpload")[0].headers
    assert create.get("x-amz-checksum-algorithm") == algorithm
    assert create.get("x-amz-checksum-type") == (
        "COMPOSITE" if algorithm == "SHA256" else "FULL_OBJECT"
    )
    header = f"x-amz-checksum-{algorithm.lower()}"
    sent = [r.headers.get(header) for r in proxy.sent("UploadPart")]
    head = await engine.client.head_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    stored = head.get(f"Checksum{algorithm}")
    if profile_of(server).checksums:
        # moto and SeaweedFS name the algorithm back: every part carries its checksum,
        # and the check after completion used the store's own value (from the Complete
        # answer, or one HEAD where the store leaves it out: moto)
        assert sorted(v for v in sent if v) == sorted(c.b64 for c in parts_of(DATA, algorithm))
        assert len(proxy.sent("HeadObject")) <= 1
        assert stored is not None
        assert stored.split("-")[0] == result.checksum.split("-")[0]
    else:
        # rclone does not: it would neither check nor keep them, so none is sent
        # (and none asked for); the result reports the value of the bytes read
        assert sent and not any(sent)
        complete = proxy.sent("CompleteMultipartUpload")[0].headers
        assert header not in complete
        assert not proxy.sent("HeadObject")
        assert stored is None


@pytest.mark.anyio
async def test_moto_checks_the_whole_object_with_its_own_computation(moto_server: Any) -> None:
    """Guard for the end-to-end test below: moto really computes (not echoes) the value."""
    async with streamx.Engine(**moto_server.engine_args()) as eng:
        await eng.client.create_bucket(Bucket="b-own")
        await eng.upload("b-own", "k", DATA, config=config())
        head = await eng.client.head_object(Bucket="b-own", Key="k", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32C"] == whole_object_value(DATA, "CRC32C")
        assert head["ChecksumType"] == "FULL_OBJECT"


@pytest.mark.anyio
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_a_flipped_byte_in_a_part_is_caught_after_completion(
    moto_server: Any, algorithm: str
) -> None:
    """moto stores the damaged part; the store's checksum differs; the object is deleted."""
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            await eng.client.create_bucket(Bucket="b-flip")
            proxy.add(Fault("corrupt", op="UploadPart", query={"partNumber": "2"}, at=12345))
            with pytest.raises(streamx.ChecksumError, match="deleted") as info:
                await eng.upload("b-flip", "k", DATA, config=config(algorithm))
            err = info.value
            assert err.bucket == "b-flip" and err.key == "k" and err.upload_id
            assert proxy.sent("CompleteMultipartUpload") and proxy.sent("DeleteObject")
            listing = await eng.client.list_objects_v2(Bucket="b-flip")
            assert listing.get("KeyCount", 0) == 0
            assert await list_uploads(eng, "b-flip") == []


@pytest.mark.anyio
async def test_damage_reported_by_the_store_is_retried(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    """AWS answers BadDigest when a part's bytes do not match their checksum: resend them."""
    proxy.add(
        Fault("status", op="UploadPart", query={"partNumber": "2"}, status=400, code="BadDigest")
    )

    await pengine.upload(bucket, "bd", DATA, config=config())

    assert await read_object(engine, bucket, "bd") == DATA
    assert len([r for r in proxy.sent("UploadPart") if r.part_number == 2]) == 2


@pytest.mark.anyio
async def test_persistent_damage_fails_with_checksum_error(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    proxy.add(
        Fault(
            "status",
            op="UploadPart",
            query={"partNumber": "1"},
            status=400,
            code="BadDigest",
            times=None,
        )
    )
    with pytest.raises(streamx.ChecksumError, match="BadDigest") as info:
        await pengine.upload(bucket, "bad", DATA, config=config(max_attempts=3))
    assert info.value.part_number == 1 and "after 3 attempts" in str(info.value)
    assert isinstance(info.value.__cause__, streamx.S3Error)
    assert proxy.sent("AbortMultipartUpload")


def _has_checksum_header(request: Any) -> bool:
    return any(
        h.startswith("x-amz-checksum") or h == "x-amz-sdk-checksum-algorithm"
        for h in request.headers
    )


@pytest.mark.anyio
@pytest.mark.parametrize("data", [DATA, DATA[:1000]], ids=["multipart", "single"])
async def test_a_store_that_rejects_checksum_headers_names_the_setting(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, data: bytes
) -> None:
    """As Backblaze B2 or GCS answer: the error says which TransferConfig setting to change."""
    message = "Unsupported header 'x-amz-checksum-crc32c' received for this API call."
    proxy.add(
        Fault(
            "status",
            status=400,
            code="InvalidArgument",
            message=message,
            times=None,
            where=_has_checksum_header,
        )
    )

    with pytest.raises(streamx.S3Error, match=r"checksum='when_required'") as info:
        await pengine.upload(bucket, "rejects", data, config=config())
    assert info.value.code == "InvalidArgument"

    result = await pengine.upload(bucket, "rejects", data, config=config(checksum="when_required"))
    assert await read_object(engine, bucket, "rejects") == data
    assert result.checksum is None


@pytest.mark.anyio
async def test_checksums_off_sends_none(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    result = await pengine.upload(bucket, "off", DATA, config=config(checksum="off"))
    assert await read_object(engine, bucket, "off") == DATA
    assert result.checksum is None and result.checksum_algorithm is None
    assert not any(_has_checksum_header(r) for r in proxy.requests)
