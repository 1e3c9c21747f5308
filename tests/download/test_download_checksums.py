"""Downloads verify the bytes against the object's stored full-object checksum.

No server here damages bytes, so a proxy flips one bit of a GET response
(tests/faultproxy.py). What each server reports was measured first (see
streamx/download/verify.py): moto and rclone both keep a single PUT's
checksum; moto keeps a FULL_OBJECT multipart checksum and reports composite
ones confusingly on HEAD (no ``-N``, sometimes no type); rclone keeps none
for multipart objects. Only values whose type can be told are trusted.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import profile_of
from faultproxy import Fault, FaultProxy

import streamx
from streamx._checksum import compute
from streamx._retry import RetryPolicy
from streamx.download.verify import StoredChecksum, probe, stored_checksum
from streamx.testing import capture_logs

MiB = 1024 * 1024
PART = 5 * MiB
DATA = random.Random(21).randbytes(3 * PART + 4321)  # 4 ranges of PART
MULTI = streamx.TransferConfig(part_size=PART, multipart_threshold=PART)  # FULL_OBJECT
RANGES = streamx.TransferConfig(part_size=PART, queue_size=3)
OFF = streamx.TransferConfig(part_size=PART, queue_size=3, checksum="off")


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def starts_at(offset: int) -> Any:
    """A fault condition: the ranged GET that starts at ``offset``."""
    return lambda r: r.headers.get("range", "").startswith(f"bytes={offset}-")


def through(server: Any, proxy: FaultProxy, **kwargs: Any) -> streamx.Engine:
    return streamx.Engine(**{**server.engine_args(), "endpoint_url": proxy.url}, **kwargs)


async def put(
    engine: streamx.Engine, bucket: str, key: str, data: bytes, algorithm: str = "CRC32C"
) -> None:
    """One PutObject with a checksum both servers keep (moto needs ChecksumAlgorithm with it)."""
    await engine.client.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm=algorithm)


async def composite_upload(engine: streamx.Engine, bucket: str, key: str, data: bytes) -> None:
    """A multipart CRC32C upload without a checksum type, as other SDKs make them (COMPOSITE)."""
    c = engine.client
    upload_id = (
        await c.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32C")
    )["UploadId"]
    parts = []
    for n, start in enumerate(range(0, len(data), PART), 1):
        r = await c.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=n,
            Body=data[start : start + PART],
            ChecksumAlgorithm="CRC32C",
        )
        part = {"PartNumber": n, "ETag": r["ETag"]}
        if r.get("ChecksumCRC32C"):
            part["ChecksumCRC32C"] = r["ChecksumCRC32C"]
        parts.append(part)
    await c.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


# -- which values are trusted ------------------------------------------------------------


@pytest.mark.unit
def test_only_values_of_a_known_type_are_trusted() -> None:
    single = '"5ffd3843f43dad3b15fb079dddb6c87b"'
    multi = '"24fee29023f7006aa299120e56d94d8d-3"'
    trusted = [
        ({"ETag": single, "ChecksumCRC32C": "UdZ0hA=="}, "CRC32C"),  # a single PUT
        ({"ETag": multi, "ChecksumCRC32C": "+YXhyA==", "ChecksumType": "FULL_OBJECT"}, "CRC32C"),
        ({"ETag": single, "ChecksumSHA256": "1W4W", "ChecksumCRC64NVME": "AAAA"}, "CRC64NVME"),
    ]
    for response, algorithm in trusted:
        found, _ = stored_checksum(response)
        assert found is not None and found.algorithm == algorithm, response
    untrusted = [
        # moto's HEAD of a composite object: no suffix, no type, but a multipart ETag
        ({"ETag": multi, "ChecksumCRC32C": "oVdhRA=="}, "cannot be told"),
        ({"ETag": multi, "ChecksumCRC32C": "oVdhRA==-3", "ChecksumType": "COMPOSITE"}, "composite"),
        ({"ETag": multi, "ChecksumSHA256": "1W4W", "ChecksumType": "COMPOSITE"}, "composite"),
        ({"ETag": single, "ChecksumCRC32C": "oVdhRA==-3"}, "composite"),
        ({"ETag": single, "ChecksumType": "FULL_OBJECT"}, "no checksum"),  # rclone multipart
        ({"ETag": single}, "no checksum"),
    ]
    for response, why in untrusted:
        found, reason = stored_checksum(response)
        assert found is None and why in reason, (response, reason)


@pytest.mark.anyio
async def test_what_each_server_reports(server: Any, engine: streamx.Engine, bucket: str) -> None:
    """The measured behaviour the trust rules rest on (through streamx's own probe)."""
    small = DATA[: PART + 1]
    await put(engine, bucket, "single", small)
    await engine.upload(bucket, "multi", small, config=MULTI)
    await composite_upload(engine, bucket, "composite", small)
    retry = RetryPolicy(max_attempts=1)
    got = {
        k: await probe(engine._s3_layer, bucket, k, None, retry) for k in ("single", "multi", "composite")
    }
    whole = compute("CRC32C", small).b64
    assert got["single"][0] == StoredChecksum("CRC32C", whole)
    if profile_of(server).checksums:
        assert got["multi"][0] == StoredChecksum("CRC32C", whole)  # FULL_OBJECT
        assert got["composite"][0] is None  # a composite value cannot check a stream
    if server.name == "moto":
        head = await engine.client.head_object(
            Bucket=bucket, Key="composite", ChecksumMode="ENABLED"
        )
        assert head["ChecksumCRC32C"] != whole and "-" not in head["ChecksumCRC32C"]  # looks full
        assert got["composite"][0] is None and "cannot be told" in got["composite"][1]
    elif not profile_of(server).checksums:  # rclone keeps none for multipart objects
        assert got["multi"] == (None, "the store reports no checksum for the object")
        assert got["composite"][0] is None


# -- verified reads ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("algorithm", ["CRC32C", "CRC32", "CRC64NVME", "SHA256"])
async def test_every_read_is_verified(
    engine: streamx.Engine, bucket: str, tmp_path: Path, algorithm: str
) -> None:
    data = DATA[: PART + 999]  # two ranges
    await put(engine, bucket, "o", data, algorithm)
    with capture_logs() as logs:
        async with engine.download(bucket, "o") as stream:
            assert sha(await stream.read_all()) == sha(data)
        assert stream.checksum == compute(algorithm, data).b64
        await engine.download_file(bucket, "o", tmp_path / "o", config=RANGES)
        got = bytearray()
        await engine.download_to(bucket, "o", got.extend, config=RANGES)
        assert sha(got) == sha(data)
        ranges = await engine.get_ranges(bucket, "o", [(0, PART), (PART, None)], coalesce_gap=0)
        assert sha(b"".join(ranges)) == sha(data)
    assert sha((tmp_path / "o").read_bytes()) == sha(data)
    verified = events(logs, "download.checksum.verified")
    unverified = events(logs, "download.checksum.unverified")
    if algorithm == "SHA256":  # cannot be combined from parallel ranges: download_file skips it
        assert len(verified) == 3 and len(unverified) == 1
        assert "cannot be combined" in unverified[0]["reason"]
    else:
        assert len(verified) == 4 and unverified == []
    assert {e["algorithm"] for e in verified} == {algorithm}


@pytest.mark.anyio
async def test_composite_checksums_are_not_taken_for_full_ones(
    engine: streamx.Engine, bucket: str, tmp_path: Path
) -> None:
    """moto's HEAD shows a composite CRC as if it were a full one: trusting it would fail here."""
    data = DATA[: PART + 12345]
    await composite_upload(engine, bucket, "c", data)
    with capture_logs() as logs:
        await engine.download_file(bucket, "c", tmp_path / "c", config=RANGES)
        assert sha(await engine.download(bucket, "c").read_all()) == sha(data)
    assert sha((tmp_path / "c").read_bytes()) == sha(data)
    assert events(logs, "download.checksum.verified") == []
    assert len(events(logs, "download.checksum.unverified")) == 2


# -- damaged bytes -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_flipped_byte_fails_every_whole_object_read(
    server: Any, engine: streamx.Engine, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    await put(engine, bucket, "f", DATA)
    target = tmp_path / "f.bin"
    async with through(server, proxy) as pengine:
        # the third ranged GET of download_file (bytes 2*PART ...) is damaged at one byte
        proxy.add(
            Fault("corrupt", op="GetObject", phase="response", at=12345, where=starts_at(2 * PART))
        )
        with pytest.raises(streamx.ChecksumError) as info:
            await pengine.download_file(bucket, "f", target, config=RANGES)
        assert info.value.key == "f" and "CRC32C" in str(info.value)
        assert entries(tmp_path) == []  # no file, no temporary file

        proxy.add(Fault("corrupt", op="GetObject", phase="response", at=3 * PART))
        with pytest.raises(streamx.ChecksumError):
            async for _chunk in pengine.download(bucket, "f"):
                pass

        proxy.add(Fault("corrupt", op="GetObject", phase="response", at=7))
        with pytest.raises(streamx.ChecksumError):
            await pengine.download_to(bucket, "f", bytearray().extend, config=RANGES)

        proxy.add(Fault("corrupt", op="GetObject", phase="response", at=99, where=starts_at(PART)))
        with pytest.raises(streamx.ChecksumError):
            await pengine.get_ranges(bucket, "f", [(0, None)], config=RANGES)

        # checksum="off" turns the check off: the damage then goes through unnoticed
        proxy.add(
            Fault("corrupt", op="GetObject", phase="response", at=12345, where=starts_at(PART))
        )
        await pengine.download_file(bucket, "f", target, config=OFF)
        assert sha(target.read_bytes()) != sha(DATA)
        assert len([f for f in proxy.faults if f.fired]) == 5

    async with through(server, proxy, config=OFF) as off:
        proxy.add(Fault("corrupt", op="GetObject", phase="response", at=5))
        assert sha(await off.download(bucket, "f").read_all()) != sha(DATA)


@pytest.mark.anyio
async def test_a_flipped_byte_in_a_full_object_multipart_download(
    moto_server: Any, tmp_path: Path
) -> None:
    """A multipart upload's FULL_OBJECT CRC (moto keeps it) checks a parallel download."""
    async with streamx.Engine(**moto_server.engine_args()) as engine:
        await engine.client.create_bucket(Bucket="full-object")
        result = await engine.upload("full-object", "m", DATA, config=MULTI)
        assert result.part_count == 4
        async with FaultProxy(moto_server.endpoint_url) as proxy, through(moto_server, proxy) as pe:
            proxy.add(
                Fault("corrupt", op="GetObject", phase="response", at=10, where=starts_at(3 * PART))
            )
            with pytest.raises(streamx.ChecksumError):
                await pe.download_file("full-object", "m", tmp_path / "m", config=RANGES)
            assert entries(tmp_path) == []
            await pe.download_file("full-object", "m", tmp_path / "m", config=RANGES)
            assert sha((tmp_path / "m").read_bytes()) == sha(DATA)
