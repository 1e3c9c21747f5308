"""``streamx sync`` run for real in a subprocess against rclone (conftest servers marker): output, exit codes, files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import streamx

# the command line's logic, not the store's: one server suffices (tests/conftest.py); every
# run is a fresh interpreter, so a second server would double the cost and test nothing new
pytestmark = [pytest.mark.anyio, pytest.mark.servers("rclone")]


def env_for(server: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(server.env())
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return env


async def run(server: Any, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await anyio.run_process(
        [sys.executable, "-m", "streamx", "sync", *args],
        env=env or env_for(server),
        check=False,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def tree(root: Path, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)


async def test_json_actions_filters_delete_and_summary(
    server: Any, engine: streamx.Engine, bucket: str, tmp_path: Path
) -> None:
    tree(tmp_path, {"a.txt": b"a", "b/c.log": b"cc", "b/keep.log": b"kk", "d.tmp": b"t"})
    await engine.upload(bucket, "site/gone", b"old")
    url = f"s3://{bucket}/site"
    args = [
        str(tmp_path),
        url,
        "--json",
        "--delete",
        "--exclude",
        "*.log",
        "--exclude",
        "*.tmp",
        "--include",
        "b/keep.log",
    ]
    code, out, err = await run(server, *args, "--dry-run")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert lines[-1] == {
        "summary": True,
        "copied": 2,
        "updated": 0,
        "skipped": 0,
        "deleted": 1,
        "failed": 0,
        "bytes": 0,
        "dry_run": True,
    }
    assert [i.key async for i in engine.list(bucket)] == ["site/gone"]

    code, out, err = await run(server, *args)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert sorted((r["action"], r["key"]) for r in lines[:-1]) == [
        ("copy", "a.txt"),
        ("copy", "b/keep.log"),
        ("delete", "gone"),
    ]
    assert lines[-1]["copied"] == 2 and lines[-1]["bytes"] == 3 and lines[-1]["deleted"] == 1
    assert sorted([i.key async for i in engine.list(bucket)]) == ["site/a.txt", "site/b/keep.log"]

    code, out, _ = await run(server, *args)
    assert json.loads(out.splitlines()[-1])["skipped"] == 2 and len(out.splitlines()) == 1

    # and back down, with size-mtime
    down = tmp_path / "down"
    code, out, err = await run(
        server,
        url,
        str(down),
        "--compare",
        "size-mtime",
        "--json",
        "--tpslimit",
        "500",
        "--bwlimit",
        "64MiB",
    )
    assert code == 0, err
    assert (down / "b" / "keep.log").read_bytes() == b"kk"
    code, out, _ = await run(server, url, str(down), "--compare", "size-mtime", "--json")
    assert json.loads(out)["copied"] == 0


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("missing-source", 3, "does not exist"),
        ("destination-file", 2, "is a file"),
        ("overlap", 2, "overlap"),
        ("no-bucket", 3, "NoSuchBucket"),
        ("local-local", 2, "s3://"),
        ("stdin", 2, "stdin"),
        ("keep-without-ray", 2, "--executor ray"),
        ("per-node-without-ray", 2, "--executor ray"),
        ("split-without-ray", 2, "--executor ray"),
        ("split-too-small", 2, "at least 5MiB"),
        ("split-not-a-size", 2, "at least 5MiB"),
    ],
)
async def test_bad_input_one_line_and_exit_code(
    server: Any,
    engine: streamx.Engine,
    bucket: str,
    tmp_path: Path,
    case: str,
    code: int,
    words: str,
) -> None:
    tree(tmp_path / "src", {"f": b"x"})
    (tmp_path / "file").write_bytes(b"f")
    args = {
        "missing-source": [str(tmp_path / "nope"), f"s3://{bucket}/d"],
        "destination-file": [f"s3://{bucket}/d", str(tmp_path / "file")],
        "overlap": [f"s3://{bucket}/d", f"s3://{bucket}/d/e"],
        "no-bucket": [str(tmp_path / "src"), "s3://no-such-bucket-zz/d"],
        "local-local": [str(tmp_path / "src"), str(tmp_path / "other")],
        "stdin": ["-", f"s3://{bucket}/d"],
        "keep-without-ray": [str(tmp_path / "src"), f"s3://{bucket}/d", "--ray-keep-actors", "9"],
        "per-node-without-ray": [
            *(str(tmp_path / "src"), f"s3://{bucket}/d", "--ray-actors-per-node", "1")
        ],
        "split-without-ray": [
            *(str(tmp_path / "src"), f"s3://{bucket}/d", "--ray-split-threshold", "64MiB")
        ],
        "split-too-small": [
            *(str(tmp_path / "src"), f"s3://{bucket}/d", "--executor", "ray"),
            *("--ray-split-threshold", "1MiB"),  # refused before Ray starts or a request
        ],
        "split-not-a-size": [
            *(str(tmp_path / "src"), f"s3://{bucket}/d", "--executor", "ray"),
            *("--ray-split-threshold", "never"),
        ],
    }[case]
    got, out, err = await run(server, *args)
    assert (got, out) == (code, ""), err
    assert len(err.strip().splitlines()) == 1 and words in err, err
    if case == "missing-source":  # a local directory: no advice about buckets and keys
        assert "bucket" not in err, err
    assert [i.key async for i in engine.list(bucket)] == []


async def test_bad_credentials_exit_4(rclone_server: Any, tmp_path: Path) -> None:
    tree(tmp_path, {"f": b"x"})
    env = env_for(rclone_server)
    env["AWS_SECRET_ACCESS_KEY"] = "wrong-secret"
    code, out, err = await run(rclone_server, str(tmp_path), "s3://bucket/x", env=env)
    assert (code, out) == (4, "") and len(err.strip().splitlines()) == 1, err
    assert "wrong-secret" not in err
