"""abort_stale_uploads against moto and rclone: what is old is aborted, what is young is kept."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from conftest import list_uploads

import streamx
from streamx.maintenance import abort_stale_uploads

pytestmark = pytest.mark.anyio

# moto reports a fixed Initiated date in 2010; rclone the real time. A century is
# "young" for both, zero seconds is "old" for both.
CENTURY = dt.timedelta(days=36500)


async def _start(engine: streamx.Engine, bucket: str, keys: list[str]) -> dict[str, str]:
    ids = {}
    for key in keys:
        response = await engine.client.create_multipart_upload(Bucket=bucket, Key=key)
        ids[key] = response["UploadId"]
    return ids


async def _cleanup(engine: streamx.Engine, bucket: str) -> None:
    for upload in await list_uploads(engine, bucket):
        await engine.client.abort_multipart_upload(
            Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )


async def test_old_uploads_under_prefix_are_aborted(engine: streamx.Engine, bucket: str) -> None:
    ids = await _start(engine, bucket, ["logs/a", "logs/deep/b", "keep/c"])
    try:
        aborted = await engine.abort_stale_uploads(bucket, "logs/", older_than=0)
        assert sorted(s.key for s in aborted) == ["logs/a", "logs/deep/b"]
        assert {s.upload_id for s in aborted} == {ids["logs/a"], ids["logs/deep/b"]}
        assert all(s.aborted and s.bucket == bucket for s in aborted)
        assert all(s.age >= dt.timedelta(0) and s.initiated.tzinfo for s in aborted)
        left = await list_uploads(engine, bucket)
        assert [(u["Key"], u["UploadId"]) for u in left] == [("keep/c", ids["keep/c"])]
    finally:
        await _cleanup(engine, bucket)


async def test_young_uploads_are_kept(engine: streamx.Engine, bucket: str) -> None:
    await _start(engine, bucket, ["x", "y"])
    try:
        assert await engine.abort_stale_uploads(bucket, older_than=CENTURY) == []
        assert len(await list_uploads(engine, bucket)) == 2
        # a timedelta and a number of seconds mean the same
        aborted = await engine.abort_stale_uploads(bucket, older_than=dt.timedelta(0))
        assert sorted(s.key for s in aborted) == ["x", "y"]
        assert await list_uploads(engine, bucket) == []
    finally:
        await _cleanup(engine, bucket)


async def test_dry_run_changes_nothing(engine: streamx.Engine, bucket: str) -> None:
    ids = await _start(engine, bucket, ["p/one", "p/two"])
    try:
        would = await engine.abort_stale_uploads(bucket, "p/", older_than=0.0, dry_run=True)
        assert sorted((s.key, s.upload_id) for s in would) == sorted(ids.items())
        assert not any(s.aborted for s in would)
        assert len(await list_uploads(engine, bucket)) == 2
    finally:
        await _cleanup(engine, bucket)


async def test_age_is_measured_against_the_clock(engine: streamx.Engine, bucket: str) -> None:
    """With an injected clock: only uploads initiated before now - older_than go."""
    await _start(engine, bucket, ["k"])
    try:
        uploads = await list_uploads(engine, bucket)
        initiated = uploads[0]["Initiated"]
        hour = dt.timedelta(hours=1)

        def at(offset: dt.timedelta) -> Any:
            return lambda: initiated + offset

        young = await abort_stale_uploads(
            engine._s3_layer, bucket, older_than=hour, clock=at(hour - dt.timedelta(seconds=1))
        )
        assert young == []
        old = await abort_stale_uploads(engine._s3_layer, bucket, older_than=hour, clock=at(hour * 2))
        assert [s.key for s in old] == ["k"]
        assert old[0].age == hour * 2
    finally:
        await _cleanup(engine, bucket)


async def test_an_upload_gone_meanwhile_is_skipped(
    server: Any, engine: streamx.Engine, bucket: str
) -> None:
    """An upload aborted by someone else between listing and abort is not an error."""
    ids = await _start(engine, bucket, ["gone", "there"])

    class RacingS3(streamx._s3.S3):
        async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
            if key == "gone":
                await super().abort_multipart_upload(bucket, key, upload_id)
            await super().abort_multipart_upload(bucket, key, upload_id)

    try:
        aborted = await abort_stale_uploads(RacingS3(engine.client), bucket, older_than=0)
        if server.name == "seaweedfs":
            # SeaweedFS answers 204 to aborting an aborted upload (AWS: 404 NoSuchUpload),
            # so the one gone meanwhile cannot be told from one aborted now
            assert ids["there"] in [s.upload_id for s in aborted]
        else:
            assert [s.upload_id for s in aborted] == [ids["there"]]
        assert await list_uploads(engine, bucket) == []
    finally:
        await _cleanup(engine, bucket)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("",), {"older_than": 1}, "bucket"),
        (("a/b",), {"older_than": 1}, "contains '/'"),
        ((123,), {"older_than": 1}, "bucket"),
        (("b", 5), {"older_than": 1}, "prefix"),
        (("b",), {"older_than": -1}, "negative"),
        (("b",), {"older_than": dt.timedelta(seconds=-1)}, "negative"),
        (("b",), {"older_than": "24h"}, "timedelta"),
        (("b",), {"older_than": True}, "timedelta"),
        (("b",), {"older_than": float("nan")}, "finite"),
        (("b",), {"older_than": 1e300}, "too large"),
        (("b",), {"older_than": 1, "dry_run": "yes"}, "dry_run"),
    ],
)
async def test_bad_arguments_fail_before_any_request(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    # an endpoint nothing listens on: a request would fail with NetworkError instead
    async with streamx.Engine(
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
    ) as engine:
        with pytest.raises(streamx.ConfigError, match=match):
            await engine.abort_stale_uploads(*args, **kwargs)


async def test_older_than_is_required() -> None:
    async with streamx.Engine(endpoint_url="http://127.0.0.1:9", region_name="us-east-1") as engine:
        with pytest.raises(TypeError):
            await engine.abort_stale_uploads("b")  # type: ignore[call-arg]
