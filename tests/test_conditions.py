"""Conditional writes and deletes against real servers (issue 15).

Which server honours what was measured (see streamx/_stores.py): SeaweedFS honours
IfNoneMatch/IfMatch on PutObject, CompleteMultipartUpload and CopyObject and the
per-object ETag of DeleteObjects; moto honours both on PutObject and IfNoneMatch on
Complete, and ignores the rest; rclone ignores them all. Every failure must leave
the existing object unchanged and no multipart upload behind.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from conftest import list_uploads, read_object
from faultproxy import Fault, FaultProxy

import streamx
from streamx import TransferConfig

MiB = 1024 * 1024
SMALL = b"new small body"
BIG = bytes(range(256)) * (48 * 1024)  # 12 MiB: three 5 MiB parts
OLD = b"the existing object"

pytestmark = pytest.mark.anyio


def cfg(**kw: Any) -> TransferConfig:
    return TransferConfig(part_size=5 * MiB, multipart_threshold=5 * MiB, **kw)


@pytest.fixture(params=["moto", "seaweedfs"])
def cserver(request: pytest.FixtureRequest) -> Any:
    """The servers that honour IfNoneMatch on PutObject and CompleteMultipartUpload."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
async def ceng(cserver: Any) -> AsyncIterator[streamx.Engine]:
    async with streamx.Engine(**cserver.engine_args(), store=cserver.store) as eng:
        yield eng


async def fresh_bucket(eng: streamx.Engine) -> str:
    name = f"c-{uuid.uuid4().hex[:12]}"
    await eng.client.create_bucket(Bucket=name)
    return name


async def unchanged(eng: streamx.Engine, bucket: str, key: str, body: bytes) -> None:
    assert await read_object(eng, bucket, key) == body
    assert await list_uploads(eng, bucket) == []


class PartSent:
    """``on_progress`` that fires once a part is acknowledged: the upload is past its
    pre-flight HEAD (a competing write then races with Complete, not with the HEAD)."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    async def __call__(self, event: streamx.ProgressEvent) -> None:
        if event.bytes_done:
            self.event.set()

    async def wait(self) -> None:
        with anyio.fail_after(60):
            await self.event.wait()


# -- IfNoneMatch="*": create only if absent ---------------------------------------------


@pytest.mark.parametrize("body", [SMALL, BIG], ids=["put", "multipart"])
async def test_if_none_match_creates_an_absent_key(ceng: streamx.Engine, body: bytes) -> None:
    bucket = await fresh_bucket(ceng)
    result = await ceng.upload(bucket, "k", body, config=cfg(), IfNoneMatch="*")
    assert result.size == len(body)
    await unchanged(ceng, bucket, "k", body)


async def test_if_none_match_refuses_an_existing_key_single_put(ceng: streamx.Engine) -> None:
    bucket = await fresh_bucket(ceng)
    await ceng.upload(bucket, "k", OLD)
    with pytest.raises(streamx.PreconditionFailedError) as info:
        await ceng.upload(bucket, "k", SMALL, config=cfg(), IfNoneMatch="*")
    err = info.value
    assert (err.bucket, err.key, err.status) == (bucket, "k", 412)
    assert isinstance(err, streamx.S3Error)
    await unchanged(ceng, bucket, "k", OLD)


async def test_if_none_match_multipart_fails_before_any_part(cserver: Any) -> None:
    """The pre-flight HEAD stops a multipart upload before CreateMultipartUpload."""
    async with FaultProxy(cserver.endpoint_url) as proxy:
        args = {**cserver.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args, store=cserver.store) as eng:
            bucket = await fresh_bucket(eng)
            await eng.upload(bucket, "k", OLD)
            with pytest.raises(streamx.PreconditionFailedError):
                await eng.upload(bucket, "k", BIG, config=cfg(), IfNoneMatch="*")
            assert proxy.sent("HeadObject")
            assert not proxy.sent("CreateMultipartUpload") and not proxy.sent("UploadPart")
            await unchanged(eng, bucket, "k", OLD)


async def test_if_none_match_at_complete_is_authoritative(ceng: streamx.Engine) -> None:
    """Another writer creates the key after the pre-flight: Complete refuses, upload aborted."""
    bucket = await fresh_bucket(ceng)
    sent = PartSent()
    with pytest.raises(streamx.PreconditionFailedError) as info:
        async with ceng.open_writer(
            bucket, "k", config=cfg(progress_interval=0), on_progress=sent, IfNoneMatch="*"
        ) as writer:
            await writer.write(BIG[: 6 * MiB])
            await sent.wait()
            await ceng.upload(bucket, "k", OLD)  # the other writer wins the race
            await writer.write(BIG[6 * MiB :])
    assert info.value.upload_id  # it happened at Complete
    await unchanged(ceng, bucket, "k", OLD)


# -- IfMatch=etag: replace only the version read -------------------------------------------


async def test_if_match_single_put(ceng: streamx.Engine) -> None:
    bucket = await fresh_bucket(ceng)
    old = await ceng.upload(bucket, "k", OLD)
    with pytest.raises(streamx.PreconditionFailedError):
        await ceng.upload(bucket, "k", SMALL, IfMatch='"0123456789abcdef0123456789abcdef"')
    await unchanged(ceng, bucket, "k", OLD)
    await ceng.upload(bucket, "k", SMALL, IfMatch=old.etag)
    await unchanged(ceng, bucket, "k", SMALL)


async def test_if_match_on_a_missing_key_is_a_failed_precondition(ceng: streamx.Engine) -> None:
    """AWS and moto answer 404 NoSuchKey here, SeaweedFS 412: one error either way."""
    bucket = await fresh_bucket(ceng)
    with pytest.raises(streamx.PreconditionFailedError):
        await ceng.upload(bucket, "absent", SMALL, IfMatch='"0123456789abcdef0123456789abcdef"')
    listing = await ceng.client.list_objects_v2(Bucket=bucket)
    assert listing.get("KeyCount", 0) == 0


async def test_if_match_multipart_on_seaweedfs(seaweedfs_server: Any) -> None:
    async with streamx.Engine(**seaweedfs_server.engine_args(), store="seaweedfs") as eng:
        bucket = await fresh_bucket(eng)
        old = await eng.upload(bucket, "k", OLD)
        # the object changes between the pre-flight HEAD and Complete
        sent = PartSent()
        config = cfg(progress_interval=0)
        with pytest.raises(streamx.PreconditionFailedError) as info:
            async with eng.open_writer(
                bucket, "k", config=config, on_progress=sent, IfMatch=old.etag
            ) as w:
                await w.write(BIG[: 6 * MiB])
                await sent.wait()
                await eng.upload(bucket, "k", b"someone else")
                await w.write(BIG[6 * MiB :])
        assert info.value.upload_id
        await unchanged(eng, bucket, "k", b"someone else")
        current = await eng.head(bucket, "k")
        await eng.upload(bucket, "k", BIG, config=cfg(), IfMatch=current.etag)
        await unchanged(eng, bucket, "k", BIG)


async def test_a_condition_the_store_ignores_is_refused_before_any_byte(
    moto_server: Any,
) -> None:
    """moto ignores IfMatch on CompleteMultipartUpload: a multipart IfMatch upload is refused."""
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args, store="moto") as eng:
            bucket = await fresh_bucket(eng)
            old = await eng.upload(bucket, "k", OLD)
            before = len(proxy.requests)
            with pytest.raises(streamx.ConfigError, match="ignores CompleteMultipartUpload"):
                await eng.upload(bucket, "k", BIG, config=cfg(), IfMatch=old.etag)
            assert proxy.requests[before:] == []
            await unchanged(eng, bucket, "k", OLD)


# -- rclone ignores every condition: refused, never a silent overwrite ------------------------


async def test_rclone_profile_refuses_conditions_without_a_request(rclone_server: Any) -> None:
    async with FaultProxy(rclone_server.endpoint_url) as proxy:
        args = {**rclone_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args, store="rclone") as eng:
            bucket = await fresh_bucket(eng)
            await eng.upload(bucket, "k", OLD)
            before = len(proxy.requests)
            for body in (SMALL, BIG):
                with pytest.raises(streamx.ConfigError, match="rclone serve s3 ignores"):
                    await eng.upload(bucket, "k", body, config=cfg(), IfNoneMatch="*")
            with pytest.raises(streamx.ConfigError):
                await eng.delete_many(bucket, [("k", '"0123"')])
            read: list[bytes] = []

            async def source() -> AsyncIterator[bytes]:
                read.append(SMALL)
                yield SMALL

            with pytest.raises(streamx.ConfigError):  # refused on both paths: nothing read
                await eng.upload(bucket, "k", source(), IfNoneMatch="*")
            assert read == []
            assert proxy.requests[before:] == []
            await unchanged(eng, bucket, "k", OLD)


async def test_unknown_store_is_probed_and_rclone_refused(rclone_server: Any) -> None:
    """No profile given (127.0.0.1 says nothing): the first conditional write probes."""
    async with streamx.Engine(**rclone_server.engine_args()) as eng:
        assert eng.store.name == "unknown"
        bucket = await fresh_bucket(eng)
        await eng.upload(bucket, "k", OLD)
        with pytest.raises(streamx.ConfigError, match="ignores PutObject with IfNoneMatch"):
            await eng.upload(bucket, "k", SMALL, IfNoneMatch="*")
        assert eng.store.probed and eng.store.honours("PutObject:IfNoneMatch") is False
        await unchanged(eng, bucket, "k", OLD)
        keys = [o.key async for o in eng.list(bucket)]
        assert keys == ["k"]  # the probe's scratch key is gone


async def test_probe_finds_what_seaweedfs_and_moto_honour(
    seaweedfs_server: Any, moto_server: Any
) -> None:
    async with streamx.Engine(**seaweedfs_server.engine_args()) as eng:
        bucket = await fresh_bucket(eng)
        found = await eng.probe(bucket)
        assert found.probed and all(found.conditions.values()), found.conditions
        assert found.checksum_headers is True
        assert [o async for o in eng.list(bucket)] == []
        assert await list_uploads(eng, bucket) == []
        assert await eng.probe(bucket) is found  # cached
    async with streamx.Engine(**moto_server.engine_args()) as eng:
        bucket = await fresh_bucket(eng)
        found = await eng.probe(bucket)
        expected = streamx.Engine(store="moto").store.conditions
        assert dict(found.conditions) == dict(expected)
        assert [o async for o in eng.list(bucket)] == []


# -- copies --------------------------------------------------------------------------------------


# copy_threshold is at least 5 MiB: a source just above it takes the multipart copy path
@pytest.mark.parametrize("size", [len(SMALL), 5 * MiB + 1], ids=["CopyObject", "multipart"])
async def test_copy_if_none_match_on_seaweedfs(seaweedfs_server: Any, size: int) -> None:
    body = (SMALL * (size // len(SMALL) + 1))[:size]
    async with streamx.Engine(**seaweedfs_server.engine_args(), store="seaweedfs") as eng:
        bucket = await fresh_bucket(eng)
        await eng.upload(bucket, "src", body)
        await eng.upload(bucket, "dst", OLD)
        config = cfg(copy_threshold=5 * MiB)
        with pytest.raises(streamx.PreconditionFailedError) as info:
            await eng.copy(bucket, "src", bucket, "dst", config=config, IfNoneMatch="*")
        assert not isinstance(info.value, streamx.ObjectChangedError)
        await unchanged(eng, bucket, "dst", OLD)
        await eng.copy(bucket, "src", bucket, "new", config=config, IfNoneMatch="*")
        await unchanged(eng, bucket, "new", body)


# copy_threshold is at least 5 MiB: a source just above it takes the multipart copy path
@pytest.mark.parametrize("size", [len(SMALL), 5 * MiB + 1], ids=["CopyObject", "multipart"])
async def test_copy_if_match_on_seaweedfs(seaweedfs_server: Any, size: int) -> None:
    body = (SMALL * (size // len(SMALL) + 1))[:size]
    async with streamx.Engine(**seaweedfs_server.engine_args(), store="seaweedfs") as eng:
        bucket = await fresh_bucket(eng)
        await eng.upload(bucket, "src", body)
        old = await eng.upload(bucket, "dst", OLD)
        config = cfg(copy_threshold=5 * MiB)
        wrong = '"0123456789abcdef0123456789abcdef"'
        with pytest.raises(streamx.PreconditionFailedError):
            await eng.copy(bucket, "src", bucket, "dst", config=config, IfMatch=wrong)
        await unchanged(eng, bucket, "dst", OLD)
        with pytest.raises(streamx.PreconditionFailedError):  # no object to match
            await eng.copy(bucket, "src", bucket, "none", config=config, IfMatch=old.etag)
        await eng.copy(bucket, "src", bucket, "dst", config=config, IfMatch=old.etag)
        await unchanged(eng, bucket, "dst", body)


async def test_copy_with_a_condition_moto_ignores_is_refused(moto_server: Any) -> None:
    async with streamx.Engine(**moto_server.engine_args(), store="moto") as eng:
        bucket = await fresh_bucket(eng)
        await eng.upload(bucket, "src", SMALL)
        await eng.upload(bucket, "dst", OLD)
        with pytest.raises(streamx.ConfigError, match="moto ignores CopyObject"):
            await eng.copy(bucket, "src", bucket, "dst", IfNoneMatch="*")
        await unchanged(eng, bucket, "dst", OLD)


async def test_copy_to_if_none_match(moto_server: Any, seaweedfs_server: Any) -> None:
    async with (
        streamx.Engine(**moto_server.engine_args(), store="moto") as src,
        streamx.Engine(**seaweedfs_server.engine_args(), store="seaweedfs") as dst,
    ):
        sb, db = await fresh_bucket(src), await fresh_bucket(dst)
        await src.upload(sb, "k", BIG, config=cfg())
        await dst.upload(db, "k", OLD)
        with pytest.raises(streamx.PreconditionFailedError):
            await src.copy_to(dst, sb, "k", db, config=cfg(), IfNoneMatch="*")
        await unchanged(dst, db, "k", OLD)
        result = await streamx.migrate_prefix(src, sb, "", dst, db, config=cfg(), IfNoneMatch="*")
        assert result.copied == 0 and len(result.failed) == 1
        assert isinstance(result.failed[0].error, streamx.PreconditionFailedError)
        await unchanged(dst, db, "k", OLD)


# -- conditional deletes -----------------------------------------------------------------------


async def test_conditional_delete_many_on_seaweedfs(seaweedfs_server: Any) -> None:
    async with streamx.Engine(**seaweedfs_server.engine_args(), store="seaweedfs") as eng:
        bucket = await fresh_bucket(eng)
        a = await eng.upload(bucket, "a", b"a")
        await eng.upload(bucket, "b", b"b")
        await eng.upload(bucket, "c", b"c")
        result = await eng.delete_many(
            bucket, [("a", a.etag), ("b", '"0123456789abcdef0123456789abcdef"'), "c"]
        )
        assert sorted(result.deleted) == ["a", "c"]
        assert [(e.key, e.code) for e in result.errors] == [("b", "PreconditionFailed")]
        assert await read_object(eng, bucket, "b") == b"b"


async def test_conditional_delete_refused_where_ignored(moto_server: Any) -> None:
    """moto deletes whatever the ETag: refused before the batch is sent."""
    async with streamx.Engine(**moto_server.engine_args(), store="moto") as eng:
        bucket = await fresh_bucket(eng)
        await eng.upload(bucket, "b", b"b")
        with pytest.raises(streamx.ConfigError, match="DeleteObjects"):
            await eng.delete_many(bucket, [("b", '"0123456789abcdef0123456789abcdef"')])
        assert await read_object(eng, bucket, "b") == b"b"


# -- arguments and retries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        {"IfNoneMatch": "etag"},
        {"IfMatch": ""},
        {"IfMatch": 5},
        {"IfNoneMatch": "*", "IfMatch": '"x"'},
    ],
)
async def test_bad_conditions_are_config_errors_before_any_request(
    rclone_server: Any, args: dict[str, Any]
) -> None:
    async with FaultProxy(rclone_server.endpoint_url) as proxy:
        conn = {**rclone_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**conn) as eng:
            with pytest.raises(streamx.ConfigError):
                await eng.upload("bucket", "k", SMALL, **args)
            with pytest.raises(streamx.ConfigError):
                await eng.copy("bucket", "a", "bucket", "b", **args)
            with pytest.raises(streamx.ConfigError):
                async with eng.open_writer("bucket", "k", **args):
                    pass
        assert proxy.requests == []


async def test_a_lost_answer_then_412_is_recognised_as_our_own_write(ceng: Any) -> None:
    """The first PUT lands but its answer is lost; the retry's 412 is about our own object."""
    bucket = await fresh_bucket(ceng)
    server_url = ceng.client.meta.endpoint_url
    async with FaultProxy(server_url) as proxy:
        proxy.add(Fault("reset", op="PutObject", phase="response", at=0))
        args = {
            "endpoint_url": proxy.url,
            "aws_access_key_id": "streamx-test-access",
            "aws_secret_access_key": "streamx-test-secret-0123456789",
            "region_name": "us-east-1",
        }
        async with streamx.Engine(**args, store=ceng.store) as eng:
            result = await eng.upload(bucket, "k", SMALL, IfNoneMatch="*")
        assert len(proxy.sent("PutObject")) == 2
        assert result.size == len(SMALL)
    await unchanged(ceng, bucket, "k", SMALL)


async def test_a_409_conflict_is_its_own_error_not_retried_and_aborted(moto_server: Any) -> None:
    """AWS answers 409 ConditionalRequestConflict when a concurrent conditional write wins
    (CompleteMultipartUpload's documentation); emulated here at the network level."""
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        proxy.add(
            Fault(
                "status",
                op="CompleteMultipartUpload",
                status=409,
                code="ConditionalRequestConflict",
                message="A conflicting operation occurred",
            )
        )
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args, store="moto") as eng:
            bucket = await fresh_bucket(eng)
            with pytest.raises(streamx.ConditionalConflictError) as info:
                await eng.upload(bucket, "k", BIG, config=cfg(), IfNoneMatch="*")
            assert info.value.status == 409 and info.value.upload_id
            assert len(proxy.sent("CompleteMultipartUpload")) == 1
            assert proxy.sent("AbortMultipartUpload")
            assert await list_uploads(eng, bucket) == []
            listing = await eng.client.list_objects_v2(Bucket=bucket)
            assert listing.get("KeyCount", 0) == 0


async def test_the_condition_goes_only_where_the_object_appears(cserver: Any) -> None:
    """On PutObject and CompleteMultipartUpload; never on Create or the parts."""
    async with FaultProxy(cserver.endpoint_url) as proxy:
        args = {**cserver.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args, store=cserver.store) as eng:
            bucket = await fresh_bucket(eng)
            await eng.upload(bucket, "small", SMALL, config=cfg(), IfNoneMatch="*")
            await eng.upload(bucket, "big", BIG, config=cfg(), IfNoneMatch="*")
    (put,) = proxy.sent("PutObject")
    (complete,) = proxy.sent("CompleteMultipartUpload")
    assert put.headers["if-none-match"] == "*" and complete.headers["if-none-match"] == "*"
    others = proxy.sent("CreateMultipartUpload") + proxy.sent("UploadPart")
    assert len(others) == 4 and not any("if-none-match" in r.headers for r in others)


async def test_concurrent_conditional_writes_probe_once(moto_server: Any) -> None:
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            bucket = await fresh_bucket(eng)
            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(lambda n=n: eng.upload(bucket, f"k{n}", SMALL, IfNoneMatch="*"))
    probes = {r.path for r in proxy.requests if ".streamx-probe-" in r.path}
    assert len(probes) == 1  # one scratch key: one probe
    assert len([r for r in proxy.sent("CreateMultipartUpload") if r.path in probes]) == 2
