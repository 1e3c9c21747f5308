"""streamx.sync against real servers (moto and rclone serve s3): every direction, exact mirrors."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import list_uploads

import streamx
from streamx.bulk import SyncEvent, sync
from streamx.testing import MotoServer, RcloneServer

# streamx's own logic, not the store's: two of the three servers suffice (tests/conftest.py)
pytestmark = [pytest.mark.anyio, pytest.mark.servers("moto", "rclone")]

TREE = {
    "a/b": b"ab" * 100,
    "a-b": b"dash",
    "a.b": b"dot",
    "a/c/d.txt": b"deep" * 1000,
    "a0": b"",
    "big.bin": os.urandom(9 * 1024 * 1024 + 17),  # multipart at the default 8 MiB threshold
    "é/日本.txt": "ünicode".encode(),
    "x.tmp": b"temporary",
}


def write_tree(root: Path, tree: dict[str, bytes]) -> None:
    for key, data in tree.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


async def read_prefix(engine: streamx.Engine, bucket: str, prefix: str) -> dict[str, bytes]:
    out = {}
    async for info in engine.list(bucket, prefix):
        async with engine.download(bucket, info.key) as stream:
            out[info.key[len(prefix) :]] = await stream.read_all()
    return out


async def new_bucket(engine: streamx.Engine) -> str:
    name = f"s-{uuid.uuid4().hex[:12]}"
    await engine.client.create_bucket(Bucket=name)
    return name


async def test_local_to_s3_then_nothing_then_changes(
    engine: streamx.Engine, bucket: str, tmp_path: Path
) -> None:
    write_tree(tmp_path, TREE)
    events: list[SyncEvent] = []
    result = await sync(tmp_path, f"s3://{bucket}/m", engine=engine, on_event=events.append)
    assert (result.copied, result.failed, result.bytes) == (
        len(TREE),
        0,
        sum(map(len, TREE.values())),
    )
    assert await read_prefix(engine, bucket, "m/") == TREE
    assert sorted(e.key for e in events) == sorted(TREE)

    again = await sync(tmp_path, f"s3://{bucket}/m", engine=engine)
    assert (again.copied, again.skipped, again.failed) == (0, len(TREE), 0)

    # same size, other bytes: the default comparison finds it (MD5 vs ETag, or checksum)
    (tmp_path / "a-b").write_bytes(b"DASH")
    (tmp_path / "big.bin").write_bytes(os.urandom(len(TREE["big.bin"])))
    (tmp_path / "new").write_bytes(b"n")
    (tmp_path / "a.b").unlink()
    third = await sync(tmp_path, f"s3://{bucket}/m/", engine=engine, delete=True)
    assert (third.copied, third.updated, third.deleted, third.failed) == (3, 2, 1, 0)
    assert await read_prefix(engine, bucket, "m/") == read_tree(tmp_path)


async def test_s3_to_local_and_delete_and_filters(
    engine: streamx.Engine, bucket: str, tmp_path: Path, server: Any
) -> None:
    for key, data in TREE.items():
        await engine.upload(bucket, "src/" + key, data)
    if server.name == "moto":  # rclone stores "dir-marker/" as a file "dir-marker"
        await engine.upload(bucket, "src/dir-marker/", b"")
    dst = tmp_path / "out"
    write_tree(dst, {"stale": b"old", "keep.log": b"mine"})
    rules = [("exclude", "*.tmp"), ("exclude", "*.log")]
    result = await sync(f"s3://{bucket}/src", dst, engine=engine, delete=True, filters=rules)
    want = {k: v for k, v in TREE.items() if not k.endswith(".tmp")}
    assert read_tree(dst) == {**want, "keep.log": b"mine"}  # excluded keys are not deleted
    assert (result.copied, result.deleted, result.failed) == (len(want), 1, 0)
    again = await sync(f"s3://{bucket}/src", dst, engine=engine, delete=True, filters=rules)
    assert (again.copied, again.deleted, again.skipped) == (0, 0, len(want))


async def test_s3_to_s3_server_side_and_dry_run(engine: streamx.Engine, bucket: str) -> None:
    for key, data in TREE.items():
        await engine.upload(bucket, "one/" + key, data)
    await engine.upload(bucket, "two/only-here", b"x")
    dry = await sync(
        f"s3://{bucket}/one", f"s3://{bucket}/two", engine=engine, delete=True, dry_run=True
    )
    assert (dry.copied, dry.deleted, dry.bytes, dry.dry_run) == (len(TREE), 1, 0, True)
    assert await read_prefix(engine, bucket, "two/") == {"only-here": b"x"}
    result = await sync(f"s3://{bucket}/one", f"s3://{bucket}/two", engine=engine, delete=True)
    assert (result.copied, result.deleted, result.failed) == (len(TREE), 1, 0)
    assert await read_prefix(engine, bucket, "two/") == TREE
    again = await sync(f"s3://{bucket}/one", f"s3://{bucket}/two", engine=engine)
    assert (again.copied, again.skipped) == (0, len(TREE))


async def test_across_two_stores(
    moto_server: MotoServer, rclone_server: RcloneServer, tmp_path: Path
) -> None:
    async with (
        streamx.Engine(**moto_server.engine_args()) as moto,
        streamx.Engine(**rclone_server.engine_args()) as rclone,
    ):
        src, dst = await new_bucket(moto), await new_bucket(rclone)
        for key, data in TREE.items():
            await moto.upload(src, key, data)
        result = await sync(f"s3://{src}", f"s3://{dst}/copy", engine=rclone, source_engine=moto)
        assert (result.copied, result.failed) == (len(TREE), 0)
        assert await read_prefix(rclone, dst, "copy/") == TREE
        again = await sync(f"s3://{src}", f"s3://{dst}/copy", engine=rclone, source_engine=moto)
        assert (again.copied, again.skipped) == (0, len(TREE))
        assert await list_uploads(rclone, dst) == []


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "aiobotocore"])
async def test_across_two_stores_a_corrupted_read_is_caught_not_copied(
    moto_server: MotoServer, rclone_server: RcloneServer, direct: bool
) -> None:
    """A source object's bytes flipped on the wire: its MD5 ETag catches it (hashed by the
    thread that read it, or on the loop through aiobotocore); nothing of it is written, the
    others are copied, and the next run copies it."""
    from faultproxy import Fault, FaultProxy

    async with FaultProxy(moto_server.endpoint_url) as proxy:
        source_args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with (
            streamx.Engine(**source_args, direct_parts=direct) as moto,
            streamx.Engine(**rclone_server.engine_args()) as rclone,
        ):
            src, dst = await new_bucket(moto), await new_bucket(rclone)
            for key, data in TREE.items():
                await moto.upload(src, key, data)
            bad = "a/c/d.txt"
            proxy.add(
                Fault("corrupt", op="GetObject", phase="response", path="d.txt", at=3, times=None)
            )
            result = await sync(f"s3://{src}", f"s3://{dst}", engine=rclone, source_engine=moto)
            assert (result.copied, result.failed) == (len(TREE) - 1, 1)
            assert result.failures[0].key == bad and "MD5" in str(result.failures[0].error)
            assert bad not in await read_prefix(rclone, dst, "")
            proxy.clear()
            again = await sync(f"s3://{src}", f"s3://{dst}", engine=rclone, source_engine=moto)
            assert (again.copied, again.skipped) == (1, len(TREE) - 1)
            assert await read_prefix(rclone, dst, "") == TREE


class Stop(Exception):
    pass


async def test_resume_from_the_manifest(
    engine: streamx.Engine, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_tree(src, {f"k{i:03d}": bytes([i]) * 100 for i in range(60)})
    manifest = tmp_path / "job.json"
    seen: list[str] = []

    def stop_after_20(event: SyncEvent) -> None:
        seen.append(event.key)
        if len(seen) == 20:
            raise Stop  # the job stops half-way, as on Ctrl-C

    with pytest.raises(Stop):
        await sync(
            src,
            f"s3://{bucket}/r",
            engine=engine,
            checkpoint=manifest,
            concurrency=2,
            on_event=stop_after_20,
        )
    assert manifest.exists()
    done = len([k async for k in engine.list(bucket, "r/")])
    resumed: list[str] = []
    result = await sync(
        src,
        f"s3://{bucket}/r",
        engine=engine,
        checkpoint=manifest,
        on_event=lambda e: resumed.append(e.key),
    )
    # the resume listed from the watermark on: what was finished before it is not looked at
    assert result.skipped + result.copied <= 60 - 18
    assert result.copied == 60 - done and result.failed == 0
    assert not manifest.exists()
    assert len([k async for k in engine.list(bucket, "r/")]) == 60


@pytest.mark.parametrize(
    "case",
    ["missing-source", "destination-file", "overlap", "no-bucket", "local-local", "bad-compare"],
)
async def test_bad_input_fails_before_any_object_moves(
    engine: streamx.Engine, bucket: str, tmp_path: Path, case: str
) -> None:
    write_tree(tmp_path / "src", {"f": b"x"})
    (tmp_path / "file").write_bytes(b"f")
    await engine.upload(bucket, "p/x", b"x")
    calls: dict[str, Any] = {
        "missing-source": (tmp_path / "nope", f"s3://{bucket}/d", streamx.NotFoundError),
        "destination-file": (f"s3://{bucket}/p", tmp_path / "file", streamx.ConfigError),
        "overlap": (f"s3://{bucket}/p", f"s3://{bucket}/p/sub", streamx.ConfigError),
        "no-bucket": (tmp_path / "src", "s3://no-such-bucket-xyz/d", streamx.NotFoundError),
        "local-local": (tmp_path / "src", tmp_path / "dst", streamx.ConfigError),
        "bad-compare": (tmp_path / "src", f"s3://{bucket}/d", streamx.ConfigError),
    }
    src, dst, error = calls[case]
    kwargs: dict[str, Any] = {"compare": "md5"} if case == "bad-compare" else {}
    with pytest.raises(error):
        await sync(src, dst, engine=engine, **kwargs)
    assert [i.key async for i in engine.list(bucket)] == ["p/x"]


async def test_bad_credentials_and_unreachable_endpoint(
    rclone_server: RcloneServer, tmp_path: Path
) -> None:
    write_tree(tmp_path, {"f": b"x"})
    args = {**rclone_server.engine_args(), "aws_secret_access_key": "wrong"}
    async with streamx.Engine(**args) as bad:
        with pytest.raises(streamx.AccessDeniedError):
            await sync(tmp_path, "s3://anything/d", engine=bad)
    from streamx.testing import free_port

    args = {**rclone_server.engine_args(), "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    async with streamx.Engine(**args) as gone:
        with pytest.raises(streamx.NetworkError):
            await sync(tmp_path, "s3://anything/d", engine=gone)


@pytest.fixture
async def moto_engine(moto_server: MotoServer) -> AsyncIterator[streamx.Engine]:
    async with streamx.Engine(**moto_server.engine_args()) as e:
        yield e


async def test_a_lost_race_is_reported_never_clobbered(
    moto_engine: streamx.Engine, tmp_path: Path
) -> None:
    """moto honours IfNoneMatch/IfMatch on PutObject: objects written behind the sync's back
    after its listing survive, and their keys are reported as failures."""
    engine = moto_engine
    bucket = await new_bucket(engine)
    write_tree(tmp_path, {"a": b"first", "y": b"new y", "z": b"new z"})
    await engine.upload(bucket, "y", b"old y, other size")
    raced: list[str] = []

    async def race(event: SyncEvent) -> None:
        if event.key == "a" and not raced:
            await engine.upload(bucket, "y", b"racer's y")
            await engine.upload(bucket, "z", b"racer's z")
            raced.append("y")

    result = await sync(tmp_path, f"s3://{bucket}", engine=engine, concurrency=1, on_event=race)
    assert raced and (result.copied, result.failed) == (1, 2)
    assert {f.key for f in result.failures} == {"y", "z"}
    assert all("not overwritten" in (f.error or "") for f in result.failures)
    assert await read_prefix(engine, bucket, "") == {
        "a": b"first",
        "y": b"racer's y",
        "z": b"racer's z",
    }


async def test_delete_only_what_the_source_still_lacks(
    moto_engine: streamx.Engine, tmp_path: Path
) -> None:
    """A key the source listing did not show is deleted only after the source is asked."""
    engine = moto_engine
    bucket = await new_bucket(engine)
    write_tree(tmp_path, {"a": b"1", "b": b"2", "c": b"3"})  # the queue holds one: "a" is done
    await engine.upload(bucket, "y", b"only at the destination")  # before the deletes are sent
    await engine.upload(bucket, "z", b"appears at the source meanwhile")

    def appear(event: SyncEvent) -> None:
        if event.key == "a":
            (tmp_path / "z").write_bytes(b"new z")  # after the source was listed

    result = await sync(
        tmp_path, f"s3://{bucket}", engine=engine, delete=True, concurrency=1, on_event=appear
    )
    assert (result.copied, result.deleted, result.failed) == (3, 1, 1)
    assert result.failures[0].key == "z" and "not deleted" in (result.failures[0].error or "")
    assert sorted([i.key async for i in engine.list(bucket)]) == ["a", "b", "c", "z"]
