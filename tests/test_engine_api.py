"""The Engine's narrow API for code that drives uploads itself (``engine.multipart``,
``engine.presign_url``) and its test seam (``Engine(retry=...)``).

The argument checks are plain unit tests (no server: each must fail before the
engine is even asked for its S3 layer); the round trip runs against the real
servers, and the presigned URL is fetched by a real HTTP client (httpx).
"""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from conftest import list_uploads, read_object
from faultproxy import Fault, FaultProxy, Sleeps

import streamx

MiB = 1024 * 1024
PART = 5 * MiB


def test_retry_must_be_a_retry_policy() -> None:
    with pytest.raises(streamx.ConfigError, match=r"retry must be a streamx\.RetryPolicy"):
        streamx.Engine(retry=3)  # type: ignore[arg-type]
    streamx.Engine(retry=streamx.RetryPolicy(max_attempts=2))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: e.multipart.create("", "k"), "bucket must be a non-empty str"),
        (lambda e: e.multipart.create("b", "k", Colour="red"), "unknown S3 upload argument"),
        (lambda e: e.multipart.upload_part("b", "k", "", 1, b"x"), "upload_id must be"),
        (lambda e: e.multipart.upload_part("b", "k", "u", 10_001, b"x"), "part_number must be"),
        (lambda e: e.multipart.complete("b", "k", 7, []), "upload_id must be"),
        (lambda e: e.multipart.complete("b", "k", "u", [], IfNoneMatch="x"), "IfNoneMatch"),
        (lambda e: e.multipart.complete("b", "k", "u", [], Colour=1), "only IfNoneMatch"),
        (lambda e: e.multipart.upload_part("b", "k", "u", 1, "text"), "data must be bytes"),
        (lambda e: e.multipart.copy_part("b", "k", "u", 1, "src", 5, 5), "start and end"),
        (lambda e: e.multipart.copy_part("b", "k", "u", 1, "", 0, 5), "key must be"),
        (lambda e: e.multipart.get_bytes("b", ""), "key must be"),
        (lambda e: e.multipart.put_bytes("b", "k", [1]), "data must be bytes"),
        (lambda e: e.multipart.put_bytes("b", "k", b"", Colour=1), "unknown S3 upload arg"),
        (lambda e: e.presign_url("delete_bucket", "b", "k", expires_in=60), "operation must be"),
        (lambda e: e.presign_url("get_object", "b", "k", expires_in=0), "expires_in must be"),
        (lambda e: e.presign_url("get_object", "b", "k", expires_in=8 * 86400), "7 days"),
    ],
)
async def test_narrow_api_checks_arguments_before_anything_else(call: Any, message: str) -> None:
    engine = streamx.Engine()  # never opened: a check that came second would say so
    with pytest.raises(streamx.ConfigError, match=message):
        await call(engine)


@pytest.mark.anyio
async def test_narrow_api_outside_async_with_is_a_usage_error() -> None:
    with pytest.raises(streamx.UsageError, match="async with"):
        await streamx.Engine().multipart.create("bucket", "key")


@pytest.mark.anyio
async def test_multipart_round_trip_and_presigned_get(engine: streamx.Engine, bucket: str) -> None:
    data = random.Random(13).randbytes(PART + 1234)
    multipart = engine.multipart
    upload_id = await multipart.create(bucket, "driven", ContentType="application/x-test")
    assert [u["UploadId"] async for u in multipart.uploads(bucket)] == [upload_id]
    etags = [
        await multipart.upload_part(bucket, "driven", upload_id, 1, data[:PART]),
        await multipart.upload_part(bucket, "driven", upload_id, 2, memoryview(data)[PART:]),
    ]
    listed = await multipart.list_parts(bucket, "driven", upload_id)
    assert [(p["PartNumber"], int(p["Size"])) for p in listed] == [(1, PART), (2, 1234)]
    parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, 1)]
    await multipart.complete(bucket, "driven", upload_id, parts)
    assert await read_object(engine, bucket, "driven") == data
    assert await list_uploads(engine, bucket) == []
    url = await engine.presign_url("get_object", bucket, "driven", expires_in=60)
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200 and response.content == data
    # an aborted upload is gone; aborting it again is the store's NoSuchUpload
    other = await multipart.create(bucket, "dropped")
    await multipart.abort(bucket, "dropped", other)
    assert await list_uploads(engine, bucket) == []
    with pytest.raises(streamx.NotFoundError):
        await multipart.list_parts(bucket, "dropped", other)


@pytest.mark.anyio
@pytest.mark.servers("moto")  # rclone serve s3 ignores conditions and copies empty parts
async def test_small_objects_and_part_copies(engine: streamx.Engine, bucket: str) -> None:
    """What the tus server keeps beside an upload: small objects whole, a create-only
    write refused when the key is taken, and a range of an object copied as a part."""
    multipart = engine.multipart
    assert await multipart.get_bytes(bucket, "state") is None
    await multipart.put_bytes(bucket, "state", b'{"a":1}', ContentType="application/json")
    assert await multipart.get_bytes(bucket, "state") == b'{"a":1}'
    with pytest.raises(streamx.PreconditionFailedError):
        await multipart.put_bytes(bucket, "state", b"other", IfNoneMatch="*")
    assert await multipart.get_bytes(bucket, "state") == b'{"a":1}'
    source = random.Random(5).randbytes(PART + 10)
    await multipart.put_bytes(bucket, "source", memoryview(source))
    upload_id = await multipart.create(bucket, "joined")
    etags = [
        await multipart.copy_part(bucket, "joined", upload_id, 1, "source", 10, PART + 10),
        await multipart.upload_part(bucket, "joined", upload_id, 2, source[:10]),
    ]
    parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, 1)]
    await multipart.complete(bucket, "joined", upload_id, parts)
    assert await read_object(engine, bucket, "joined") == source[10:] + source[:10]
    # the key is taken now: a create-only Complete is refused, nothing is written
    again = await multipart.create(bucket, "joined")
    etag = await multipart.upload_part(bucket, "joined", again, 1, b"late")
    with pytest.raises(streamx.PreconditionFailedError):
        await multipart.complete(
            bucket, "joined", again, [{"PartNumber": 1, "ETag": etag}], IfNoneMatch="*"
        )
    await multipart.abort(bucket, "joined", again)
    assert await read_object(engine, bucket, "joined") == source[10:] + source[:10]


@pytest.mark.anyio
async def test_an_engines_retry_policy_paces_every_transfer(
    server: Any, proxy: FaultProxy, bucket: str
) -> None:
    """The seam tests use instead of patching a module: the policy's sleep is the one every
    retry waits in, and each transfer's attempts come from its TransferConfig."""
    recorder = Sleeps()
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    proxy.add(Fault("status", op="PutObject", status=503, times=2))
    config = streamx.TransferConfig(max_attempts=2)
    async with streamx.Engine(**args, retry=streamx.RetryPolicy(sleep=recorder)) as eng:
        with pytest.raises(streamx.ServiceUnavailableError, match="gave up after 2 attempts"):
            await eng.upload(bucket, "paced", b"abc", config=config)
        assert len(recorder.delays) == 1  # one wait, between the two attempts
        proxy.add(Fault("status", op="PutObject", status=503, times=3))
        result = await eng.upload(bucket, "paced", b"abc")  # the engine's default 5 attempts
        assert result.size == 3
        assert len(recorder.delays) == 4 and all(0.25 <= d <= 2.0 for d in recorder.delays)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "error", "builtin"),
    [
        (lambda e: e.get_ranges("b", "k", "0-9"), streamx.ConfigTypeError, TypeError),
        (lambda e: e.get_ranges("b", "k", [(0, "9")]), streamx.ConfigTypeError, TypeError),
        (lambda e: e.get_ranges("b", "k", [(9, 0)]), streamx.ConfigError, ValueError),
        (lambda e: e.delete_many("b", "one-key"), streamx.ConfigTypeError, TypeError),
        (lambda e: e.copy_to(object(), "b", "k", "b2"), streamx.ConfigTypeError, TypeError),
    ],
)
async def test_bad_arguments_raise_errors_of_the_tree(
    call: Any, error: type[Exception], builtin: type[Exception]
) -> None:
    """Still the builtin type callers catch, now also a streamx error (before any request)."""
    with pytest.raises(error) as info:
        await call(streamx.Engine())
    assert isinstance(info.value, builtin) and isinstance(info.value, streamx.StreamxError)
