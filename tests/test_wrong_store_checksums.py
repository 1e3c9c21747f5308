"""A store that computes checksums wrong must not cost a good object (issue 12 item 3).

moto without the optional ``crc32c`` package (run in a child process where the import
is blocked) computes CRC32 where CRC32C was asked and reports that value for a multipart
object. streamx must read the object back, find the bytes intact, keep the object and
warn once; and must still delete an object whose bytes really are corrupt.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import list_uploads, read_object
from faultproxy import Fault, FaultProxy

import streamx
from streamx import TransferConfig
from streamx._checksum import compute
from streamx.testing import capture_logs

MiB = 1024 * 1024
DATA = bytes(range(251)) * (12 * MiB // 251)  # three parts of 5 MiB (the last shorter)

pytestmark = pytest.mark.anyio


def cfg() -> TransferConfig:
    return TransferConfig(part_size=5 * MiB, multipart_threshold=5 * MiB)


async def test_the_server_really_reports_a_wrong_crc32c(moto_nocrc_server: Any) -> None:
    """Guard: without crc32c, moto's stored CRC32C is the CRC32 of the bytes."""
    async with streamx.Engine(**moto_nocrc_server.engine_args()) as eng:
        bucket = f"g-{uuid.uuid4().hex[:10]}"
        await eng.client.create_bucket(Bucket=bucket)
        await eng.upload(bucket, "k", DATA, config=cfg())
        head = await eng.client.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32C"] != compute("CRC32C", DATA).b64
        assert head["ChecksumCRC32C"] == compute("CRC32", DATA).b64


async def test_a_good_object_is_kept_and_the_store_warned_about_once(
    moto_nocrc_server: Any,
) -> None:
    async with FaultProxy(moto_nocrc_server.endpoint_url) as proxy:
        args = {**moto_nocrc_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            bucket = f"n-{uuid.uuid4().hex[:10]}"
            await eng.client.create_bucket(Bucket=bucket)
            with capture_logs() as logs:
                first = await eng.upload(bucket, "a", DATA, config=cfg())
                second = await eng.upload(bucket, "b", DATA, config=cfg())
            # read back once, for the first upload only: the store is then known
            assert len(proxy.sent("GetObject")) == 1
            assert await read_object(eng, bucket, "a") == DATA
            assert await read_object(eng, bucket, "b") == DATA
            # the result carries the right value, not the store's
            assert first.checksum == second.checksum == compute("CRC32C", DATA).b64
            warnings = [e for e in logs if e["event"] == "upload.checksum.store_wrong"]
            assert len(warnings) == 1 and warnings[0]["key"] == "a"
            assert not proxy.sent("DeleteObject") and not proxy.sent("DeleteObjects")
            assert await list_uploads(eng, bucket) == []


async def test_corrupt_bytes_on_that_store_are_still_deleted(moto_nocrc_server: Any) -> None:
    """The read-back is the proof: a flipped byte in part 2 shows, and the object goes."""
    async with FaultProxy(moto_nocrc_server.endpoint_url) as proxy:
        args = {**moto_nocrc_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            bucket = f"x-{uuid.uuid4().hex[:10]}"
            await eng.client.create_bucket(Bucket=bucket)
            proxy.add(Fault("corrupt", op="UploadPart", query={"partNumber": "2"}, at=777))
            with pytest.raises(streamx.ChecksumError, match="confirmed it") as info:
                await eng.upload(bucket, "k", DATA, config=cfg())
            assert info.value.upload_id and info.value.key == "k"
            assert proxy.sent("GetObject") and proxy.sent("DeleteObject")
            listing = await eng.client.list_objects_v2(Bucket=bucket)
            assert listing.get("KeyCount", 0) == 0
            assert await list_uploads(eng, bucket) == []


async def test_an_unreadable_object_is_kept(moto_nocrc_server: Any) -> None:
    """The read-back fails: nothing is proven, so nothing is deleted."""
    async with FaultProxy(moto_nocrc_server.endpoint_url) as proxy:
        args = {**moto_nocrc_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args, config=TransferConfig(max_attempts=1)) as eng:
            bucket = f"u-{uuid.uuid4().hex[:10]}"
            await eng.client.create_bucket(Bucket=bucket)
            proxy.add(Fault("status", op="GetObject", status=500, code="InternalError"))
            with pytest.raises(streamx.ChecksumError, match="was kept"):
                await eng.upload(
                    bucket,
                    "k",
                    DATA,
                    config=TransferConfig(part_size=5 * MiB, multipart_threshold=5 * MiB),
                )
            assert not proxy.sent("DeleteObject")
            assert await read_object(eng, bucket, "k") == DATA


async def test_a_single_put_with_a_wrong_echoed_checksum_is_kept(moto_server: Any) -> None:
    """A store that answers a PutObject with a checksum its bytes do not have (emulated by
    rewriting the response header): read back, intact, kept, warned about once."""
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        proxy.add(
            Fault(
                "header",
                op="PutObject",
                phase="response",
                header="x-amz-checksum-crc32c",
                value="AQIDBA==",  # not the CRC32C of any of these bodies
                times=None,
            )
        )
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            bucket = f"p-{uuid.uuid4().hex[:10]}"
            await eng.client.create_bucket(Bucket=bucket)
            small = DATA[:1000]
            with capture_logs() as logs:
                first = await eng.upload(bucket, "a", small)
                await eng.upload(bucket, "b", small)
            assert first.checksum == compute("CRC32C", small).b64
            warnings = [e for e in logs if e["event"] == "upload.checksum.store_wrong"]
            assert len(warnings) == 1
            assert len(proxy.sent("GetObject")) == 1 and not proxy.sent("DeleteObject")
            assert await read_object(eng, bucket, "a") == small
            assert await read_object(eng, bucket, "b") == small


async def test_an_empty_object_with_a_wrong_echoed_checksum_is_kept(moto_server: Any) -> None:
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        proxy.add(
            Fault(
                "header",
                op="PutObject",
                phase="response",
                header="x-amz-checksum-crc32c",
                value="AQIDBA==",  # not the CRC32C of any of these bodies
            )
        )
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            bucket = f"e-{uuid.uuid4().hex[:10]}"
            await eng.client.create_bucket(Bucket=bucket)
            result = await eng.upload(bucket, "empty", b"")
            assert result.size == 0 and result.checksum == compute("CRC32C", b"").b64
            assert proxy.sent("GetObject") and not proxy.sent("DeleteObject")
            assert await read_object(eng, bucket, "empty") == b""
