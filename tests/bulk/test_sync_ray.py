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

    make_tree(tmp_path / "src", 40)
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
        ],
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert lines[-1]["copied"] == 40 and lines[-1]["failed"] == 0
    assert len([r for r in lines if r.get("action") == "copy"]) == 40


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
