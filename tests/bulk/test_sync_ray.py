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


async def test_cli_executor_ray(rclone_server: RcloneServer, tmp_path: Path) -> None:
    import json
    import sys

    import anyio

    make_tree(tmp_path / "src", 40)
    async with streamx.Engine(**rclone_server.engine_args()) as engine:
        bucket = f"c-{uuid.uuid4().hex[:10]}"
        await engine.client.create_bucket(Bucket=bucket)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
    env.update(rclone_server.env())
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
        ],
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert lines[-1]["copied"] == 40 and lines[-1]["failed"] == 0
    assert len([r for r in lines if r.get("action") == "copy"]) == 40
