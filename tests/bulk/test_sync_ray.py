"""The Ray executor with a real local Ray (2 CPUs, no dashboard) against moto and rclone serve s3."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import list_uploads

import streamx
from streamx.bulk import SyncEvent
from streamx.testing import MotoServer, RcloneServer

try:
    import ray
except ImportError as exc:  # fail loudly, with the command
    raise ImportError("the Ray tests need Ray: pip install 'ray>=2.9'") from exc

from streamx.bulk.ray import sync_on_ray
from streamx.bulk.ray_actors import KEPT_NAMESPACE
from streamx.bulk.sides import file_digest

# Ray's start-up and its worker processes share the 2 cores with the servers: a loaded machine
# needs more than the suite's 180 s per test
# one worker runs them all (pytest-xdist, --dist loadgroup): two Ray clusters at once would
# fight over the 2 cores
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(420), pytest.mark.xdist_group("ray")]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def make_tree(root: Path, n: int, big: int = 0) -> dict[str, bytes]:
    files = {f"d{i % 7}/f{i:04d}": f"object {i}".encode() * (1 + i % 5) for i in range(n)}
    files.update({f"big/{j}.bin": os.urandom(9 * 1024 * 1024 + j) for j in range(big)})
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return files


async def prefix_contents(engine: streamx.Engine, bucket: str, prefix: str) -> dict[str, bytes]:
    out = {}
    async for info in engine.list(bucket, prefix):
        async with engine.download(bucket, info.key) as stream:
            out[info.key[len(prefix) :]] = await stream.read_all()
    return out


async def test_mirror_through_actors_then_nothing(
    local_ray: None, rclone_server: RcloneServer, tmp_path: Path
) -> None:
    files = make_tree(tmp_path, 300)
    async with streamx.Engine(**rclone_server.engine_args()) as engine:
        bucket = f"r-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
        await engine.upload(bucket, "m/stale", b"to delete")
        args: dict[str, Any] = {
            "engine_args": rclone_server.engine_args(),
            "actors": 2,
            "batch_size": 16,
            "shards": 4,
            "delete": True,
        }
        result = await sync_on_ray(tmp_path, f"s3://{bucket}/m", **args)
        assert (result.copied, result.deleted, result.failed) == (300, 1, 0)
        assert await prefix_contents(engine, bucket, "m/") == files
        again = await sync_on_ray(tmp_path, f"s3://{bucket}/m", **args)
        assert (again.copied, again.deleted, again.skipped, again.failed) == (0, 0, 300, 0)


async def test_killed_actor_still_ends_exact(
    local_ray: None, moto_server: MotoServer, tmp_path: Path
) -> None:
    files = make_tree(tmp_path, 150, big=2)
    name = f"kill-{uuid.uuid4().hex[:6]}"
    seen: list[str] = []
    killed: list[int] = []

    def kill_one(event: SyncEvent) -> None:
        seen.append(event.key)
        if len(seen) == 20:
            ray.kill(ray.get_actor(f"{name}-0"), no_restart=False)  # Ray restarts it
            killed.append(len(seen))

    async with streamx.Engine(**moto_server.engine_args()) as engine:
        bucket = f"k-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
        result = await sync_on_ray(
            tmp_path,
            f"s3://{bucket}",
            engine_args=moto_server.engine_args(),
            actors=2,
            batch_size=12,
            shards=3,
            job_name=name,
            on_event=kill_one,
        )
        assert killed == [20]  # the kill came with most of the job still to do
        assert (result.copied, result.failed) == (len(files), 0)
        assert await prefix_contents(engine, bucket, "") == files
        assert await list_uploads(engine, bucket) == []
        again = await sync_on_ray(
            tmp_path, f"s3://{bucket}", engine_args=moto_server.engine_args(), actors=2
        )
        assert (again.copied, again.skipped) == (0, len(files))


async def test_kept_actors_serve_the_next_run_then_leave(
    local_ray: None, rclone_server: RcloneServer, tmp_path: Path
) -> None:
    import anyio

    files = make_tree(tmp_path, 30)
    name = f"keep-{uuid.uuid4().hex[:6]}"

    def kept() -> list[str]:
        return [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(name) and a["namespace"] == KEPT_NAMESPACE
        ]

    async with streamx.Engine(**rclone_server.engine_args()) as engine:
        bucket = f"p-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
        args: dict[str, Any] = {
            "engine_args": rclone_server.engine_args(),
            "actors": 1,
            "job_name": name,
            "keep_actors": 4.0,
        }
        first = await sync_on_ray(tmp_path, f"s3://{bucket}/k", **args)
        assert (first.copied, first.failed) == (len(files), 0)
        [actor] = kept()  # still there after the job
        pid = await ray.get_actor(actor, namespace=KEPT_NAMESPACE).pid.remote()
        again = await sync_on_ray(tmp_path, f"s3://{bucket}/k", **args)
        assert (again.copied, again.skipped, again.failed) == (0, len(files), 0)
        assert kept() == [actor]
        assert await ray.get_actor(actor, namespace=KEPT_NAMESPACE).pid.remote() == pid
        # another job (another prefix) gets actors of its own
        other = await sync_on_ray(tmp_path, f"s3://{bucket}/other", **args)
        assert other.copied == len(files)
        assert any(n != actor for n in kept())  # (the first may have left by now)
        with anyio.fail_after(120):  # each leaves by itself after 4 s without a batch
            while True:
                if not kept():
                    break
                await anyio.sleep(0.5)
    with pytest.raises(streamx.ConfigError):
        await sync_on_ray(tmp_path, "s3://b/x", engine_args={}, keep_actors=-1)


async def bucket_and_env(server: RcloneServer, prefix: str) -> tuple[str, dict[str, str]]:
    """A new bucket, and the environment of a child process that syncs into it (the server's
    credentials; none of this process's AWS_ or RAY_ settings)."""
    async with streamx.Engine(**server.engine_args()) as engine:
        bucket = f"{prefix}-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
    env.update(server.env())
    return bucket, env


async def test_cli_executor_ray(rclone_server: RcloneServer, tmp_path: Path) -> None:
    import json
    import sys

    import anyio

    files = make_tree(tmp_path / "src", 40, big=1)  # 9 MiB: split in two 5 MiB parts
    bucket, env = await bucket_and_env(rclone_server, "c")
    proc = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "streamx",
            "sync",
            str(tmp_path / "src"),
            f"s3://{bucket}/c",
            "--executor",
            "ray",
            "--json",
            "--tpslimit",
            "1000",
            "--ray-actors-per-node",
            "1",
            "--ray-split-threshold",
            "8MiB",
            "--part-size",
            "5MiB",
        ],
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert lines[-1]["copied"] == 41 and lines[-1]["failed"] == 0
    assert len([r for r in lines if r.get("action") == "copy"]) == 41
    async with streamx.Engine(**rclone_server.engine_args()) as engine:
        assert await prefix_contents(engine, bucket, "c/") == files
        assert await list_uploads(engine, bucket) == []


async def test_default_actors_one_per_cpu_share_the_node(
    local_ray: None, rclone_server: RcloneServer, tmp_path: Path
) -> None:
    """On the suite's 2-CPU Ray, the default is two actors, each with half the node's
    concurrency and memory budget, and the mirror is exact."""
    files = make_tree(tmp_path, 120)
    name = f"node-{uuid.uuid4().hex[:6]}"
    seen: dict[str, Any] = {}

    async def look(event: SyncEvent) -> None:
        if not seen:
            seen["names"] = sorted(n for n in ray.util.list_named_actors() if n.startswith(name))
            seen["limits"] = [await ray.get_actor(n).limits.remote() for n in seen["names"]]

    async with streamx.Engine(**rclone_server.engine_args()) as engine:
        bucket = f"n-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
        result = await sync_on_ray(
            tmp_path,
            f"s3://{bucket}/n",
            engine_args=rclone_server.engine_args(),
            job_name=name,
            concurrency=10,
            memory_limit=64 * 1024 * 1024,
            batch_size=8,
            on_event=look,
        )
        assert (result.copied, result.failed) == (len(files), 0)
        assert seen["names"] == [f"{name}-0", f"{name}-1"]
        assert seen["limits"] == [(5, 32 * 1024 * 1024)] * 2
        assert await prefix_contents(engine, bucket, "n/") == files


def test_placement_deals_actors_over_nodes() -> None:
    """Pure logic: which node each actor goes to."""
    from streamx.bulk.ray_actors import placement

    class Nodes:
        def __init__(self, cpus: list[float]) -> None:
            self.list = [
                {"NodeID": f"n{i}", "Alive": True, "Resources": {"CPU": c}}
                for i, c in enumerate(cpus)
            ] + [{"NodeID": "dead", "Alive": False, "Resources": {"CPU": 64.0}}]

        def nodes(self) -> list[dict[str, Any]]:
            return self.list

    assert placement(Nodes([2.0, 1.0, 16.0]), None, None) == [
        ("n0", 2),
        ("n0", 2),
        ("n1", 1),
        ("n2", 2),
        ("n2", 2),
    ]
    assert placement(Nodes([2.0, 1.0]), None, 3) == [("n0", 3)] * 3 + [("n1", 3)] * 3
    assert placement(Nodes([2.0, 8.0]), 3, None) == [("n0", 2), ("n0", 2), ("n1", 1)]


RAY_IN_A_THREAD = """
import sys, anyio, streamx
from streamx.bulk.ray import sync_on_ray

async def main():
    args = dict(engine_args=eval(sys.argv[3]), actors=1)
    first = await sync_on_ray(sys.argv[1], sys.argv[2], **args)
    await anyio.sleep(15)  # longer than an idle anyio worker thread lives (10 s)
    (open(sys.argv[1] + "/late", "w")).write("late")
    again = await sync_on_ray(sys.argv[1], sys.argv[2], **args)
    print(first.copied, again.copied, again.skipped, again.failed)

anyio.run(main)
"""


async def test_ray_started_by_sync_outlives_its_thread(
    rclone_server: RcloneServer, tmp_path: Path
) -> None:
    """sync_on_ray starts Ray in a thread of its own; Ray's processes die with the thread
    that started them, so a Ray started in a pooled worker thread was gone (GCS lost) once
    that thread idled out. A process that syncs, waits, and syncs again sees Ray still up."""
    import sys

    import anyio

    make_tree(tmp_path / "src", 20)
    bucket, env = await bucket_and_env(rclone_server, "t")
    proc = await anyio.run_process(
        [
            sys.executable,
            "-c",
            RAY_IN_A_THREAD,
            str(tmp_path / "src"),
            f"s3://{bucket}/t",
            repr(rclone_server.engine_args()),
        ],
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().split() == ["20", "1", "20", "0"]


# -- objects split into part tasks across the actors (streamx/bulk/split.py) ---------------------

MiB = 1024 * 1024
PARTS_OF_5MIB = {"config": streamx.TransferConfig(part_size=5 * MiB)}


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)


async def watch_uploads(
    engine: streamx.Engine, bucket: str, act: Any, seen: set[str] | None = None
) -> None:
    """Call ``act(key)`` once for each multipart upload that appears in ``bucket`` (polled
    every 20 ms until cancelled): a hook into a split object while its parts are sent."""
    import anyio

    seen = set() if seen is None else seen
    while True:
        for upload in await list_uploads(engine, bucket):
            if upload["Key"] not in seen:
                seen.add(upload["Key"])
                await act(upload["Key"])
        await anyio.sleep(0.02)


async def test_split_objects_go_as_parts_over_the_actors(
    local_ray: None, moto_server: MotoServer, tmp_path: Path
) -> None:
    """Objects of 12-20 MiB with an 8 MiB threshold and 5 MiB parts: each is one multipart
    upload of several parts sent by both actors, completed by the driver with its FULL_OBJECT
    checksum; the manifest records them like any object, and re-runs copy nothing (with
    the manifest: not even looked at; without: compared by an actor)."""
    import json

    big = {"a/x.bin": 12 * MiB + 1, "a/y.bin": 16 * MiB, "a/z.bin": 20 * MiB - 3}
    files = {key: os.urandom(size) for key, size in big.items()}
    files |= {f"{d}/f{i}": f"{d}{i}".encode() * 50 for d in "bc" for i in range(12)}
    write_files(tmp_path / "src", files)
    # a name that is not UTF-8 fails at once, in another shard than the big objects
    (tmp_path / "src" / "b" / os.fsdecode(b"bad-\xff")).write_bytes(b"not an S3 key")
    name = f"split-{uuid.uuid4().hex[:6]}"
    tallies: list[list[tuple[int, int, int]]] = []

    async def tally(event: SyncEvent) -> None:
        if event.key in big:
            tallies.append([await ray.get_actor(f"{name}-{i}").tally.remote() for i in (0, 1)])

    async with streamx.Engine(**moto_server.engine_args()) as engine:
        bucket = f"s-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
        args: dict[str, Any] = {
            "engine_args": moto_server.engine_args() | PARTS_OF_5MIB,
            "actors": 2,
            "shards": 3,
            "split_threshold": 8 * MiB,
        }
        job = tmp_path / "job.json"
        src, dst = str(tmp_path / "src"), f"s3://{bucket}/m"
        first = await sync_on_ray(src, dst, **args, job_name=name, checkpoint=job, on_event=tally)
        assert (first.copied, first.failed) == (len(files), 1)
        assert await prefix_contents(engine, bucket, "m/") == files
        assert await list_uploads(engine, bucket) == []
        for key, size in big.items():
            head = await engine.client.head_object(
                Bucket=bucket, Key=f"m/{key}", ChecksumMode="ENABLED"
            )
            assert head["ETag"].endswith(f'-{-(-size // (5 * MiB))}"'), head["ETag"]
            assert head["ChecksumType"] == "FULL_OBJECT"
            assert head["ChecksumCRC32C"] == file_digest(str(tmp_path / "src" / key), "CRC32C")
        parts = [p for _, p, _ in tallies[-1]]  # after the last split object's event
        assert sum(parts) == 3 + 4 + 4 and min(parts) > 0, tallies  # over both actors
        assert json.loads(job.read_text())["shards"]["a/"] == "a/z.bin"
        resumed = await sync_on_ray(src, dst, **args, checkpoint=job)
        assert (resumed.copied, resumed.skipped, resumed.failed) == (0, 24, 1)  # a/ not listed
        again = await sync_on_ray(src, dst, **args)
        assert (again.copied, again.skipped, again.failed) == (0, len(files), 1)
        assert await list_uploads(engine, bucket) == []


async def test_split_parts_survive_a_killed_actor(
    local_ray: None, rclone_server: RcloneServer, tmp_path: Path, caplog: Any
) -> None:
    """An actor killed while it sends a part (Ray restarts it): the parts it held go again
    to the next free actor (``sync.task.retry``), the mirror is exact, and no multipart
    upload is left."""
    import logging

    import anyio

    files = {f"big/{i}.bin": os.urandom(14 * MiB + i) for i in range(3)}
    files |= {f"small/{i}": b"s" * i for i in range(20)}
    write_files(tmp_path, files)
    name = f"splitkill-{uuid.uuid4().hex[:6]}"
    killed: list[int] = []

    async def kill_among_parts() -> None:
        while True:
            try:
                sending = (await ray.get_actor(f"{name}-0").tally.remote())[2]
            except ValueError:  # not started yet
                sending = 0
            if sending:
                ray.kill(ray.get_actor(f"{name}-0"), no_restart=False)
                killed.append(sending)
                return
            await anyio.sleep(0.02)

    async with streamx.Engine(**rclone_server.engine_args()) as engine:
        bucket = f"sk-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
        with caplog.at_level(logging.WARNING, logger="streamx"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_among_parts)
                result = await sync_on_ray(
                    tmp_path,
                    f"s3://{bucket}",
                    engine_args=rclone_server.engine_args() | PARTS_OF_5MIB,
                    actors=2,
                    job_name=name,
                    split_threshold=8 * MiB,
                    bytes_per_second=24 * MiB,  # parts take seconds: the kill lands among them
                )
                tg.cancel_scope.cancel()
        assert killed  # while the actor was sending parts
        retried = [r.getMessage() for r in caplog.records if "sync.task.retry" in r.getMessage()]
        assert retried and all("task='part'" in m for m in retried), retried
        assert (result.copied, result.failed) == (len(files), 0), result.failures
        assert await prefix_contents(engine, bucket, "") == files
        assert await list_uploads(engine, bucket) == []


async def test_split_failures_abort_and_are_reported(
    local_ray: None, moto_server: MotoServer, tmp_path: Path
) -> None:
    """Once each object's upload exists: b.bin's source file is deleted (its later parts
    cannot be read), someone else writes c.bin at the destination (Complete's
    IfNoneMatch="*" loses the race), d.bin's file grows. All three are reported failed,
    their uploads aborted, and the other writer's c.bin is left as it is; a.bin is copied."""
    import anyio

    files = {f"{k}.bin": os.urandom(30 * MiB) for k in "abc"} | {"d.bin": os.urandom(20 * MiB)}
    write_files(tmp_path, files)
    events: list[SyncEvent] = []

    async with streamx.Engine(**moto_server.engine_args()) as engine:
        bucket = f"sf-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)

        async def interfere(key: str) -> None:
            if key == "b.bin":
                (tmp_path / key).unlink()
            elif key == "c.bin":
                await engine.upload(bucket, key, b"someone else's")
            elif key == "d.bin":
                with (tmp_path / key).open("ab") as f:
                    f.write(b"more")

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_uploads, engine, bucket, interfere)
            result = await sync_on_ray(
                tmp_path,
                f"s3://{bucket}",
                engine_args=moto_server.engine_args() | PARTS_OF_5MIB,
                actors=2,
                split_threshold=8 * MiB,
                bytes_per_second=32 * MiB,
                on_event=events.append,
            )
            tg.cancel_scope.cancel()
        assert (result.copied, result.failed) == (1, 3)
        errors = {e.key: e.error or "" for e in events if e.kind == "fail"}
        assert errors.keys() == {"b.bin", "c.bin", "d.bin"} == {f.key for f in result.failures}
        # a part opened after the delete fails ("No such file"); if every part was already
        # open (deleted files stay readable), the check before Complete finds the file gone
        assert any(m in errors["b.bin"] for m in ("No such file", "changed while")), errors
        assert errors["c.bin"] == "the destination changed since it was listed; not overwritten"
        assert "d.bin changed while it was copied" in errors["d.bin"], errors
        assert await list_uploads(engine, bucket) == []
        assert await prefix_contents(engine, bucket, "") == {
            "a.bin": files["a.bin"],
            "c.bin": b"someone else's",
        }


async def test_split_across_stores_reads_ranges_pinned_to_the_listed_etag(
    local_ray: None, moto_server: MotoServer, rclone_server: RcloneServer
) -> None:
    """s3 → s3 across two stores: each part is one ranged GET of the source (pinned to the
    ETag the listing showed) and one UploadPart at the destination; the content type and
    metadata come along, as with copy_to."""
    async with (
        streamx.Engine(**rclone_server.engine_args()) as source,
        streamx.Engine(**moto_server.engine_args()) as engine,
    ):
        src_bucket, bucket = f"xs-{uuid.uuid4().hex[:10]}", f"xd-{uuid.uuid4().hex[:10]}"
        await source.client.create_bucket(Bucket=src_bucket)
        await engine.client.create_bucket(Bucket=bucket)
        files = {"v/a.bin": os.urandom(11 * MiB), "v/b.txt": b"small"}
        for key, data in files.items():
            await source.upload(src_bucket, key, data, ContentType="video/mp4", Metadata={"m": key})
        name = f"xsplit-{uuid.uuid4().hex[:6]}"
        tallies: list[tuple[int, int, int]] = []

        async def tally(event: SyncEvent) -> None:
            if event.key == "a.bin":  # the actors' parts sent so far (copy_to would send none)
                tallies.extend([await ray.get_actor(f"{name}-{i}").tally.remote() for i in (0, 1)])

        result = await sync_on_ray(
            f"s3://{src_bucket}/v",
            f"s3://{bucket}/w",
            engine_args=moto_server.engine_args() | PARTS_OF_5MIB,
            source_engine_args=rclone_server.engine_args(),
            actors=2,
            split_threshold=8 * MiB,
            job_name=name,
            on_event=tally,
        )
        assert (result.copied, result.failed) == (2, 0), result.failures
        assert sum(t[1] for t in tallies) == 3, tallies  # a.bin went as three part tasks
        got = await prefix_contents(engine, bucket, "w/")
        assert got == {key[2:]: data for key, data in files.items()}
        head = await engine.client.head_object(Bucket=bucket, Key="w/a.bin")
        assert (head["ContentType"], head["Metadata"]) == ("video/mp4", {"m": "v/a.bin"})
        assert head["ETag"].endswith('-3"'), head["ETag"]
        assert await list_uploads(engine, bucket) == []


async def test_cancelled_sync_aborts_its_split_uploads(
    local_ray: None, moto_server: MotoServer, tmp_path: Path
) -> None:
    """A sync cancelled while split objects' parts are on their way leaves no multipart
    upload (the driver aborts them, shielded)."""
    import anyio

    write_files(tmp_path, {f"{k}.bin": os.urandom(25 * MiB) for k in "ab"})
    async with streamx.Engine(**moto_server.engine_args()) as engine:
        bucket = f"sc-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
        seen: set[str] = set()

        async def cancel_when_both_open(key: str) -> None:
            if {"a.bin", "b.bin"} <= seen:  # (the store probe's scratch upload aside)
                await anyio.sleep(0.3)  # parts in flight
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_uploads, engine, bucket, cancel_when_both_open, seen)
            await sync_on_ray(
                tmp_path,
                f"s3://{bucket}",
                engine_args=moto_server.engine_args() | PARTS_OF_5MIB,
                actors=2,
                split_threshold=8 * MiB,
                bytes_per_second=16 * MiB,
            )
            raise AssertionError("the sync was not cancelled")
        assert {"a.bin", "b.bin"} <= seen
        assert await list_uploads(engine, bucket) == []
        assert [i.key async for i in engine.list(bucket)] == []


@pytest.mark.parametrize("threshold", [0, 4 * MiB, -1, True, 8.5 * MiB, "64MiB"])
async def test_split_threshold_is_checked_before_any_request(
    tmp_path: Path, threshold: Any
) -> None:
    with pytest.raises(streamx.ConfigError, match="split_threshold must be"):
        await sync_on_ray(
            tmp_path,
            "s3://no-such-bucket/x",
            engine_args={"endpoint_url": "http://127.0.0.1:9"},  # nothing listens there
            split_threshold=threshold,
        )


async def test_a_part_of_a_replaced_source_is_refused(rclone_server: RcloneServer) -> None:
    """A part's ranged GET is pinned to the listed ETag; rclone ignores If-Match on GET, so
    the answer's own ETag decides: a part of another version of the object is never read
    into the upload (it would be completed into a mix of two versions)."""
    from streamx.bulk.parts import read_range
    from streamx.bulk.sides import S3Side

    async with streamx.Engine(**rclone_server.engine_args()) as engine:
        bucket = f"pin-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
        first = await engine.upload(bucket, "k", b"A" * 1000)
        side = S3Side(engine, bucket, "")
        pin = first.etag.strip('"')
        assert await read_range(side, "k", 10, 20, pin, 1000) == b"A" * 10
        await engine.upload(bucket, "k", b"B" * 1000)
        with pytest.raises(streamx.ObjectChangedError, match="replaced since it was listed"):
            await read_range(side, "k", 10, 20, pin, 1000)
        await engine.upload(bucket, "k", b"A" * 1200)  # same first bytes, another size
        with pytest.raises(streamx.ObjectChangedError):
            await read_range(side, "k", 10, 20, None, 1000)


async def test_a_killed_drivers_split_uploads_are_aborted_by_the_resume(
    local_ray: None, moto_server: MotoServer, tmp_path: Path
) -> None:
    """A split object's UploadId is in the manifest from Create (saved at once) to its
    Complete or abort: a driver killed in between cannot abort it, and the resume does,
    before anything else. Here: the manifest of a run that kept it (one unreadable name)
    names an upload a killed driver left; the resume aborts it and mirrors the rest."""
    import json

    import anyio

    files = {"big.bin": os.urandom(12 * MiB), "s/small": b"small"}
    write_files(tmp_path / "src", files)
    (tmp_path / "src" / os.fsdecode(b"bad-\xff")).write_bytes(b"not an S3 key")  # keeps the job
    job = tmp_path / "job.json"
    async with streamx.Engine(**moto_server.engine_args()) as engine:
        bucket = f"kd-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
        args: dict[str, Any] = {
            "engine_args": moto_server.engine_args() | PARTS_OF_5MIB,
            "actors": 2,
            "split_threshold": 8 * MiB,
            "checkpoint": job,
            "bytes_per_second": 16 * MiB,
        }
        recorded: list[list[str]] = []

        async def read_manifest(key: str) -> None:  # the upload exists: is it in the manifest?
            if key == "big.bin":
                for _ in range(100):
                    if job.exists() and json.loads(job.read_text()).get("uploads"):
                        recorded.extend(json.loads(job.read_text())["uploads"])
                        return
                    await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_uploads, engine, bucket, read_manifest)
            first = await sync_on_ray(tmp_path / "src", f"s3://{bucket}", **args)
            tg.cancel_scope.cancel()
        assert (first.copied, first.failed) == (len(files), 1)
        [(b, k, upload_id)] = recorded  # saved while its parts were on their way
        assert (b, k) == (bucket, "big.bin") and upload_id
        data = json.loads(job.read_text())
        assert "uploads" not in data  # completed: no longer the resume's to abort
        # what a driver killed between Create and Complete leaves behind
        left = await engine.multipart.create(bucket, "big.bin")
        job.write_text(json.dumps(data | {"uploads": [[bucket, "big.bin", left]]}))
        assert [u["UploadId"] for u in await list_uploads(engine, bucket)] == [left]
        again = await sync_on_ray(tmp_path / "src", f"s3://{bucket}", **args)
        assert again.failed == 1  # the unreadable name, again
        assert await list_uploads(engine, bucket) == []
        assert await prefix_contents(engine, bucket, "") == files
        assert "uploads" not in json.loads(job.read_text())
