"""Store profiles: the decisions as pure functions, and the documented answers of stores no
local server reproduces (B2's 400 to checksum headers, R2's checksum-type rules) emulated in
the fault proxy in front of moto."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import list_uploads, read_object
from faultproxy import (
    FaultProxy,
    b2_checksum_rejection,
    checksum_headers,
    r2_checksum_type_rules,
)

import streamx
from streamx import TransferConfig
from streamx._limits import MAX_PART_SIZE, MAX_PARTS, GiB, MiB, PartPlan, TiB
from streamx._stores import (
    POINTS,
    PROFILES,
    UNKNOWN,
    adapt,
    check_conditions,
    condition_points,
    detect,
    profile,
)

# -- the table ---------------------------------------------------------------------------------


def test_every_profile_cites_a_source_for_its_facts() -> None:
    assert set(PROFILES) == {
        "aws", "minio", "r2", "b2", "gcs", "wasabi", "ceph", "seaweedfs", "rclone", "moto",
    }  # fmt: skip
    for p in PROFILES.values():
        assert p.sources and all(p.sources.values()), p.name
        assert set(p.conditions) <= set(POINTS), p.name


@pytest.mark.parametrize(
    ("endpoint", "name"),
    [
        (None, "aws"),
        ("https://s3.eu-west-1.amazonaws.com", "aws"),
        ("https://abc123.r2.cloudflarestorage.com", "r2"),
        ("https://s3.us-west-004.backblazeb2.com", "b2"),
        ("https://storage.googleapis.com", "gcs"),
        ("https://s3.eu-central-1.wasabisys.com", "wasabi"),
        ("http://127.0.0.1:9000", "unknown"),
        ("https://minio.example.com", "unknown"),
    ],
)
def test_detect_from_the_host_name(endpoint: str | None, name: str) -> None:
    assert detect(endpoint).name == name


def test_an_unknown_store_name_is_a_config_error() -> None:
    with pytest.raises(streamx.ConfigError, match="store must be one of"):
        profile("s4")
    with pytest.raises(streamx.ConfigError):
        streamx.Engine(store="nope")


# -- profile -> transfer settings ----------------------------------------------------------------


def test_aws_keeps_the_defaults() -> None:
    config = TransferConfig()
    assert adapt(config, PROFILES["aws"]) is config


def test_unknown_store_keeps_the_defaults() -> None:
    config = TransferConfig()
    assert adapt(config, UNKNOWN) is config


@pytest.mark.parametrize("name", ["b2", "gcs"])
def test_stores_that_refusechecksum_headers_get_none(name: str) -> None:
    adapted = adapt(TransferConfig(), PROFILES[name])
    assert adapted.checksum == "when_required"  # computed, not sent
    assert adapt(TransferConfig(checksum="off"), PROFILES[name]).checksum == "off"


def test_r2_gets_equal_parts_and_a_full_object_algorithm_it_verifies() -> None:
    adapted = adapt(TransferConfig(), PROFILES["r2"])
    assert adapted.equal_parts is True
    assert adapted.checksum_algorithm == "CRC64NVME"  # CRC32C is COMPOSITE-only on R2
    # SHA256 is composite everywhere: R2 verifies it as such, so it stays
    assert adapt(
        TransferConfig(checksum_algorithm="SHA256"), PROFILES["r2"]
    ).checksum_algorithm == ("SHA256")


def test_minio_keeps_crc32c() -> None:
    """MinIO keeps a composite value whatever type is asked (streamx verifies it as such):
    no reason to trade CRC32C for a slower algorithm."""
    assert adapt(TransferConfig(), PROFILES["minio"]) == TransferConfig()
    sha = TransferConfig(checksum_algorithm="SHA256")
    assert adapt(sha, PROFILES["minio"]) == sha


# -- conditions ------------------------------------------------------------------------------------


def test_condition_points() -> None:
    assert condition_points("upload", {"IfNoneMatch": "*"}) == [
        "PutObject:IfNoneMatch",
        "CompleteMultipartUpload:IfNoneMatch",
    ]
    assert condition_points("upload", {"IfMatch": "e"}, multipart=True) == [
        "CompleteMultipartUpload:IfMatch"
    ]
    assert condition_points("copy", {"IfNoneMatch": "*"}, multipart=False) == [
        "CopyObject:IfNoneMatch"
    ]
    assert condition_points("delete", {"ETag": "e"}) == ["DeleteObjects:ETag"]
    assert condition_points("upload", {}) == []


def test_check_conditions_refuses_only_what_is_known_to_be_ignored() -> None:
    check_conditions(PROFILES["aws"], POINTS)
    check_conditions(UNKNOWN, POINTS)  # unknown: the engine probes first
    check_conditions(PROFILES["moto"], ["PutObject:IfMatch"])
    with pytest.raises(streamx.ConfigError, match="moto ignores CompleteMultipartUpload"):
        check_conditions(PROFILES["moto"], ["CompleteMultipartUpload:IfMatch"])
    with pytest.raises(streamx.ConfigError, match="rclone serve s3 ignores PutObject"):
        check_conditions(PROFILES["rclone"], ["PutObject:IfNoneMatch"])


# -- sizes -------------------------------------------------------------------------------------------


def test_aws_limit_is_10000_parts_of_5_gib() -> None:
    assert PROFILES["aws"].max_object_size == MAX_PARTS * MAX_PART_SIZE
    assert round(PROFILES["aws"].max_object_size / TiB, 1) == 48.8


def test_planner_reaches_48_8_tib_on_aws() -> None:
    limit = PROFILES["aws"].max_object_size
    plan = PartPlan.for_known_size(limit, 8 * MiB, max_object_size=limit)
    assert plan.base == MAX_PART_SIZE and plan.capacity >= limit
    size = int(48.8 * TiB)
    plan = PartPlan.for_known_size(size, 8 * MiB, max_object_size=limit)
    parts = -(-size // plan.base)
    assert parts <= MAX_PARTS and 4.99 * GiB < plan.base <= MAX_PART_SIZE
    with pytest.raises(ValueError):
        PartPlan.for_known_size(limit + 1, 8 * MiB, max_object_size=limit)


def test_planner_stops_at_5_tib_elsewhere() -> None:
    PartPlan.for_known_size(5 * TiB, 8 * MiB)
    with pytest.raises(ValueError, match="5 TiB"):
        PartPlan.for_known_size(5 * TiB + 1, 8 * MiB)


@pytest.mark.anyio
@pytest.mark.parametrize(("store", "size"), [("r2", 5 * TiB + 1), ("aws", 49 * TiB)])
async def test_a_size_over_the_stores_limit_is_a_config_error_before_any_request(
    rclone_server: Any, store: str, size: int
) -> None:
    async with FaultProxy(rclone_server.endpoint_url) as proxy:
        args = {**rclone_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args, store=store) as eng:

            async def stream() -> Any:
                yield b"x"

            with pytest.raises(streamx.ConfigError, match="object limit"):
                await eng.upload("bucket", "k", stream(), size=size)
        assert proxy.requests == []


# -- emulated stores (fault proxy in front of moto) ---------------------------------------------

MIB = 1024 * 1024
DATA = bytes(range(256)) * (48 * 1024)  # 12 MiB


def cfg() -> TransferConfig:
    return TransferConfig(part_size=5 * MIB, multipart_threshold=5 * MIB)


@pytest.mark.anyio
@pytest.mark.parametrize("body", [b"small", DATA], ids=["put", "multipart"])
async def test_b2_profile_sends_no_checksum_header(moto_server: Any, body: bytes) -> None:
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        proxy.add(b2_checksum_rejection())
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        bucket = f"b2-{uuid.uuid4().hex[:10]}"
        async with streamx.Engine(**args) as eng:  # no profile: the headers are refused
            await eng.client.create_bucket(Bucket=bucket)
            with pytest.raises(streamx.S3Error, match="checksum='when_required'"):
                await eng.upload(bucket, "k", body, config=cfg())
        async with streamx.Engine(**args, store="b2") as eng:
            before = len(proxy.requests)
            await eng.upload(bucket, "k", body, config=cfg())
            sent = proxy.requests[before:]
            assert sent and not any(checksum_headers(r) for r in sent)
            assert await read_object(eng, bucket, "k") == body
            assert await list_uploads(eng, bucket) == []


@pytest.mark.anyio
async def test_r2_profile_asks_for_a_checksum_type_r2_verifies(moto_server: Any) -> None:
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        proxy.add(r2_checksum_type_rules())
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        bucket = f"r2-{uuid.uuid4().hex[:10]}"
        async with streamx.Engine(**args) as eng:  # CRC32C/FULL_OBJECT: refused
            await eng.client.create_bucket(Bucket=bucket)
            with pytest.raises(streamx.S3Error, match="InvalidRequest"):
                await eng.upload(bucket, "k", DATA, config=cfg())
        async with streamx.Engine(**args, store="r2") as eng:
            result = await eng.upload(bucket, "k", DATA, config=cfg())
            assert result.checksum_algorithm == "CRC64NVME"
            create = proxy.sent("CreateMultipartUpload")[-1].headers
            assert create["x-amz-checksum-algorithm"] == "CRC64NVME"
            assert create["x-amz-checksum-type"] == "FULL_OBJECT"
            # in size order: concurrent parts may reach the proxy in any order
            sizes = sorted((r.body_bytes for r in proxy.sent("UploadPart")[-3:]), reverse=True)
            assert sizes[0] == sizes[1] >= sizes[2]  # equal parts
            assert await read_object(eng, bucket, "k") == DATA
            assert await list_uploads(eng, bucket) == []


def _pipeline(store: str, size_hint: int) -> Any:
    from streamx._context import TransferContext
    from streamx._retry import RetryPolicy
    from streamx._s3 import S3
    from streamx.upload.call import check_upload, start_pipeline
    from streamx.upload.source import open_source

    async def stream() -> Any:
        yield b""

    profile = PROFILES[store]
    call = check_upload("bucket", "key", TransferConfig(), profile, {}, size_hint, None)
    ctx = TransferContext(S3(client=None), call.config, None, RetryPolicy())
    return start_pipeline(ctx, call, open_source(stream()), profile, None)


def test_a_stream_with_a_size_hint_may_pass_5_tib_on_aws_only() -> None:
    plan = _pipeline("aws", 40 * TiB).plan
    assert plan.capacity >= 40 * TiB and plan.base <= MAX_PART_SIZE
    with pytest.raises(streamx.ConfigError, match="Cloudflare R2's 5 TiB object limit"):
        _pipeline("r2", 40 * TiB)
    # without a hint a stream keeps the plan that holds 5 TiB with small parts first
    assert _pipeline("aws", 8 * MiB).plan.base == 8 * MiB


@pytest.mark.anyio
async def test_the_store_is_detected_from_the_endpoint_botocore_resolved(
    rclone_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_ENDPOINT_URL_S3 (or a config file) may name the endpoint: not AWS, so unknown."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", rclone_server.endpoint_url)
    args = {k: v for k, v in rclone_server.engine_args().items() if k != "endpoint_url"}
    engine = streamx.Engine(**args)
    assert engine.store.name == "aws"  # all it can tell before the client exists
    async with engine:
        assert engine.store.name == "unknown"
    async with streamx.Engine(**args, store="rclone") as eng:
        assert eng.store.name == "rclone"  # given: kept


@pytest.mark.anyio
async def test_the_probe_finds_a_store_that_refuses_checksum_headers(moto_server: Any) -> None:
    """B2's answer (emulated): the probe notes it, and later uploads send no checksum header."""
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        proxy.add(b2_checksum_rejection())
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        bucket = f"pb-{uuid.uuid4().hex[:10]}"
        async with streamx.Engine(**args) as eng:
            await eng.client.create_bucket(Bucket=bucket)
            store = await eng.probe(bucket)
            assert store.checksum_headers is False and store.probed
            await eng.upload(bucket, "k", DATA, config=cfg())
            assert await read_object(eng, bucket, "k") == DATA
            assert [o.key async for o in eng.list(bucket)] == ["k"]  # no scratch key left
            assert await list_uploads(eng, bucket) == []
