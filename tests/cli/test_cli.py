"""The ``streamx`` command, run for real in a subprocess against moto and rclone.

Every test drives ``python -m streamx`` with the server's ``AWS_*`` variables,
as a user would, and checks bytes (SHA-256), output, exit codes, and that no
multipart upload is left behind (the ``bucket`` fixture asserts it too).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from conftest import list_uploads

import streamx
from streamx._limits import MiB

pytestmark = pytest.mark.anyio

STREAM_SIZE = 200 * MiB


def cli_env(server: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(server.env())
    env["AWS_CONFIG_FILE"] = os.devnull  # no user profile leaks into the tests
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["COLUMNS"] = "120"
    env.update(extra)
    return env


async def streamx_cmd(
    server: Any,
    *args: str,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(
        [sys.executable, "-m", "streamx", *args],
        input=input,
        env=dict(env) if env is not None else cli_env(server),
        cwd=cwd,
        check=False,
    )


def text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# -- streaming 200 MiB through stdin and stdout -----------------------------------------


@pytest.mark.servers("rclone")  # the CLI's streaming, not the store's: rclone keeps memory flat
async def test_pipe_200_mib_through_stdin_and_back_out(
    server: Any, engine: streamx.Engine, bucket: str
) -> None:
    url = f"s3://{bucket}/streams/big.bin"
    sent = hashlib.sha256()
    rng = random.Random(7)
    async with await anyio.open_process(
        [sys.executable, "-m", "streamx", "cp", "-", url, "--json", "--part-size", "16MiB"],
        env=cli_env(server),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

        async def drain(stream: Any, into: bytearray) -> None:
            async for chunk in stream:
                into.extend(chunk)

        out, err = bytearray(), bytearray()
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, proc.stdout, out)
            tg.start_soon(drain, proc.stderr, err)
            for _ in range(STREAM_SIZE // MiB):
                chunk = rng.randbytes(MiB)
                sent.update(chunk)
                await proc.stdin.send(chunk)
            await proc.stdin.aclose()
            await proc.wait()
    assert proc.returncode == 0, text(err)
    record = json.loads(out.decode())
    assert record["action"] == "upload"
    assert record["size"] == STREAM_SIZE
    assert record["parts"] > 1
    assert record["destination"] == url

    got = hashlib.sha256()
    size = 0
    err = bytearray()
    async with await anyio.open_process(
        [sys.executable, "-m", "streamx", "cp", url, "-"],
        env=cli_env(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, proc.stderr, err)
            async for chunk in proc.stdout:
                got.update(chunk)
                size += len(chunk)
            await proc.wait()
    assert proc.returncode == 0, text(err)
    assert size == STREAM_SIZE
    assert got.hexdigest() == sent.hexdigest()
    await engine.client.delete_object(Bucket=bucket, Key="streams/big.bin")  # frees moto's RAM


# -- recursive copies of a tree with odd names ------------------------------------------

ODD_FILES = {
    "top.txt": b"top\n",
    "empty": b"",
    "a b/x#1+2.txt": b"hash and plus\n",
    "a b/ünï cødé/f %20 ?.bin": bytes(range(256)) * 3,
    "deep/er/still/déjà vu.dat": b"d" * 1000,
    "big/nine-mib.bin": random.Random(3).randbytes(9 * MiB),  # multipart up, ranged down
}


def make_tree(root: Path) -> None:
    for rel, data in ODD_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.servers("moto", "rclone")  # moto keeps names as AWS does; rclone is a real disk
async def test_recursive_copy_of_a_tree_with_odd_names(
    server: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    up = await streamx_cmd(server, "cp", "--recursive", str(src), f"s3://{bucket}/tree", "--json")
    assert up.returncode == 0, text(up.stderr)
    records = [json.loads(line) for line in up.stdout.decode().splitlines()]
    assert sorted(r["destination"] for r in records) == sorted(
        f"s3://{bucket}/tree/{rel}" for rel in ODD_FILES
    )

    listed = await streamx_cmd(server, "ls", "--recursive", f"s3://{bucket}/tree/", "--json")
    assert listed.returncode == 0, text(listed.stderr)
    entries = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert {e["key"]: e["size"] for e in entries} == {
        f"tree/{rel}": len(data) for rel, data in ODD_FILES.items()
    }

    dst = tmp_path / "dst"
    down = await streamx_cmd(server, "cp", "-r", f"s3://{bucket}/tree", str(dst), "--jobs", "3")
    assert down.returncode == 0, text(down.stderr)
    assert read_tree(dst) == ODD_FILES
    assert not [p for p in dst.rglob("*") if "streamx" in p.name]  # no temporary file left


@pytest.fixture
async def moto_bucket(moto_server: Any) -> Any:
    """A bucket on moto only (for what moto does faithfully: UploadPartCopy)."""
    async with streamx.Engine(**moto_server.engine_args()) as engine:
        name = f"m-{os.urandom(6).hex()}"
        await engine.client.create_bucket(Bucket=name)
        yield engine, name
        assert await list_uploads(engine, name) == []


@pytest.fixture
async def rclone_bucket(rclone_server: Any) -> Any:
    async with streamx.Engine(**rclone_server.engine_args()) as engine:
        name = f"r-{os.urandom(6).hex()}"
        await engine.client.create_bucket(Bucket=name)
        yield engine, name
        assert await list_uploads(engine, name) == []


async def test_recursive_server_side_copy_and_rm(moto_server: Any, moto_bucket: Any) -> None:
    server = moto_server
    engine, bucket = moto_bucket
    big = random.Random(9).randbytes(9 * MiB)  # multipart-sized, copied server-side
    for key, data in (
        ("a/one.txt", b"one"),
        ("a/sub dir/two+2.txt", b"two"),
        ("a/sub dir/#3.txt", big),
        ("a-sibling", b"sibling"),
    ):
        await engine.upload(bucket, key, data)

    copied = await streamx_cmd(server, "cp", "-r", f"s3://{bucket}/a", f"s3://{bucket}/b", "--json")
    assert copied.returncode == 0, text(copied.stderr)
    records = [json.loads(x) for x in copied.stdout.decode().splitlines()]
    assert {r["action"] for r in records} == {"copy"} and len(records) == 3
    response = await engine.client.get_object(Bucket=bucket, Key="b/sub dir/#3.txt")
    async with response["Body"] as body:
        assert await body.read() == big

    # rm --recursive reads the prefix as a directory: a-sibling survives
    removed = await streamx_cmd(server, "rm", "--recursive", f"s3://{bucket}/a")
    assert removed.returncode == 0, text(removed.stderr)
    assert "deleted 3 objects" in text(removed.stderr)
    removed = await streamx_cmd(
        server, "rm", f"s3://{bucket}/b/one.txt", f"s3://{bucket}/b/sub dir/#3.txt"
    )
    assert removed.returncode == 0, text(removed.stderr)

    listing = await engine.list(bucket).collect()
    assert sorted(info.key for info in listing) == ["a-sibling", "b/sub dir/two+2.txt"]


# -- ls ----------------------------------------------------------------------------------


async def test_ls_output(rclone_server: Any, rclone_bucket: Any) -> None:
    server = rclone_server
    engine, bucket = rclone_bucket
    for key, size in (("docs/a.txt", 1024), ("docs/sub/b.bin", 3 * MiB), ("root.txt", 5)):
        await engine.upload(bucket, key, b"x" * size)
    env = cli_env(server)
    flat, deep, human, buckets = await _gather(
        streamx_cmd(server, "ls", f"s3://{bucket}/docs/", env=env),
        streamx_cmd(server, "ls", "-r", f"s3://{bucket}", env=env),
        streamx_cmd(server, "ls", "-h", "--summarize", "-r", f"s3://{bucket}/docs/", env=env),
        streamx_cmd(server, "ls", env=env),
    )
    for result in (flat, deep, human, buckets):
        assert result.returncode == 0, text(result.stderr)
    row = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +(\S+(?: \S?i?B)?)  (.+)$")

    lines = text(flat.stdout).splitlines()  # in key order, one level deep
    assert len(lines) == 2
    m = row.match(lines[0])
    assert m is not None and m.groups() == ("1024", "docs/a.txt")
    assert lines[1] == " " * 30 + "PRE  docs/sub/"

    parsed = [row.match(line) for line in text(deep.stdout).splitlines()]
    assert all(parsed)
    assert [m.groups() for m in parsed if m] == [
        ("1024", "docs/a.txt"),
        (str(3 * MiB), "docs/sub/b.bin"),
        ("5", "root.txt"),
    ]
    assert "PRE" not in text(deep.stdout)

    human_lines = text(human.stdout).splitlines()
    assert [row.match(x).groups() for x in human_lines[:2]] == [  # type: ignore[union-attr]
        ("1 KiB", "docs/a.txt"),
        ("3 MiB", "docs/sub/b.bin"),
    ]
    assert "Total objects: 2" in human_lines
    assert "Total size: 3.0 MiB" in human_lines

    assert any(line.endswith(f"  {bucket}") for line in text(buckets.stdout).splitlines())


async def _gather(*coros: Any) -> list[Any]:
    results: list[Any] = [None] * len(coros)

    async def one(i: int, coro: Any) -> None:
        results[i] = await coro

    async with anyio.create_task_group() as tg:
        for i, coro in enumerate(coros):
            tg.start_soon(one, i, coro)
    return results


# -- presign, sweep, cat, metadata ---------------------------------------------------------


async def test_presign_get_and_put(rclone_server: Any, rclone_bucket: Any) -> None:
    server = rclone_server
    engine, bucket = rclone_bucket
    await engine.upload(bucket, "p/get me.txt", b"presigned body")
    env = cli_env(server)
    got, put = await _gather(
        streamx_cmd(
            server, "presign", f"s3://{bucket}/p/get me.txt", "--expires-in", "5m", env=env
        ),
        streamx_cmd(
            server,
            "presign",
            f"s3://{bucket}/p/put.txt",
            "--method",
            "PUT",
            "--json",
            "--content-type",
            "text/plain",
            env=env,
        ),
    )
    assert got.returncode == 0 and put.returncode == 0, text(got.stderr + put.stderr)
    url = text(got.stdout).strip()
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url
    record = json.loads(put.stdout)
    assert record["method"] == "PUT" and record["expires_in"] == 3600
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        assert response.status_code == 200 and response.content == b"presigned body"
        response = await client.put(
            record["url"], content=b"put through a URL", headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 200, response.text
    async with engine.download(bucket, "p/put.txt") as stream:
        assert await stream.read_all() == b"put through a URL"


async def test_cat_ranges_and_upload_options(moto_server: Any, moto_bucket: Any) -> None:
    server = moto_server
    engine, bucket = moto_bucket
    data = bytes(range(256)) * 40
    env = cli_env(server)
    up = await streamx_cmd(
        server,
        "cp",
        "-",
        f"s3://{bucket}/r.bin",
        "--content-type",
        "application/x-test",
        "--metadata",
        "owner=cli",
        "--metadata",
        "purpose=a=b",
        "--checksum",
        "crc32",
        input=data,
        env=env,
    )
    assert up.returncode == 0, text(up.stderr)
    head = await engine.head(bucket, "r.bin")
    assert head.content_type == "application/x-test"
    assert dict(head.metadata) == {"owner": "cli", "purpose": "a=b"}
    first, tail = await _gather(
        streamx_cmd(server, "cat", f"s3://{bucket}/r.bin", "--range", "10-19", env=env),
        streamx_cmd(server, "cat", f"s3://{bucket}/r.bin", "--range", "-100", env=env),
    )
    assert first.stdout == data[10:20]
    assert tail.stdout == data[-100:]


async def test_sweep(rclone_server: Any, rclone_bucket: Any) -> None:
    server = rclone_server
    engine, bucket = rclone_bucket
    ids = {}
    for key in ("up/a", "up/b", "other/c"):
        response = await engine.client.create_multipart_upload(Bucket=bucket, Key=key)
        ids[key] = response["UploadId"]
    try:
        dry = await streamx_cmd(
            server, "sweep", f"s3://{bucket}/up/", "--older-than", "0", "--dry-run"
        )
        assert dry.returncode == 0, text(dry.stderr)
        lines = text(dry.stdout).splitlines()
        assert len(lines) == 2 and all(line.startswith("would abort: s3://") for line in lines)
        assert ids["up/a"] in text(dry.stdout) and ids["up/b"] in text(dry.stdout)
        assert len(await list_uploads(engine, bucket)) == 3

        young = await streamx_cmd(server, "sweep", f"s3://{bucket}/", "--older-than", "1h")
        assert young.returncode == 0 and young.stdout == b""
        assert "aborted 0 unfinished uploads" in text(young.stderr)

        swept = await streamx_cmd(
            server, "sweep", f"s3://{bucket}/up/", "--older-than", "0s", "--json"
        )
        assert swept.returncode == 0, text(swept.stderr)
        records = [json.loads(x) for x in swept.stdout.decode().splitlines()]
        assert sorted(r["upload_id"] for r in records) == sorted([ids["up/a"], ids["up/b"]])
        assert all(r["aborted"] for r in records)
        left = await list_uploads(engine, bucket)
        assert [u["Key"] for u in left] == ["other/c"]
    finally:
        for upload in await list_uploads(engine, bucket):
            await engine.client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )


async def test_copy_between_two_endpoints(
    moto_server: Any, rclone_server: Any, tmp_path: Path
) -> None:
    """moto → rclone through this process; rclone's credentials are used for both (moto accepts any)."""
    src_bucket, dst_bucket = "cli-migrate-src", "cli-migrate-dst"
    data = random.Random(5).randbytes(MiB + 17)
    async with (
        streamx.Engine(**moto_server.engine_args()) as moto,
        streamx.Engine(**rclone_server.engine_args()) as rclone,
    ):
        await moto.client.create_bucket(Bucket=src_bucket)
        await rclone.client.create_bucket(Bucket=dst_bucket)
        await moto.upload(src_bucket, "k/obj", data, ContentType="image/png")
        result = await streamx_cmd(
            rclone_server,
            "cp",
            f"s3://{src_bucket}/k/obj",
            f"s3://{dst_bucket}/copied",
            "--source-endpoint-url",
            moto_server.endpoint_url,
            "--json",
        )
        assert result.returncode == 0, text(result.stderr)
        assert json.loads(result.stdout)["action"] == "migrate"
        response = await rclone.client.get_object(Bucket=dst_bucket, Key="copied")
        async with response["Body"] as body:
            assert await body.read() == data
        assert response["ContentType"] == "image/png"


# -- errors: one line, a hint, a distinct exit code, never a credential ---------------------


Case = tuple[Sequence[str], dict[str, Any], int, str]


def _usage_cases(tmp: Path) -> list[tuple[list[str], str]]:
    """Command lines refused before any request (exit 2), and what the one line must say."""
    (tmp / "dir").mkdir(exist_ok=True)
    (tmp / "file.txt").write_bytes(b"x")
    f = str(tmp / "file.txt")
    return [
        (["cp", f], "Missing argument 'DST'"),
        (["cp", f, str(tmp / "copy")], "one side of cp must be an s3:// URL"),
        (["cp", str(tmp / "dir"), "s3://b/d"], "is a directory; add --recursive"),
        (["cp", f, "s3://b/k", "--part-size", "1MiB"], "below S3's 5 MiB minimum"),
        (["cp", f, "s3://b/k", "--part-size", "lots"], "cannot read 'lots' as a size"),
        (["cp", f, "s3://b/k", "--concurrency", "0"], "0 is not in the range"),
        (["cp", f, "s3://b/k", "--metadata", "novalue"], "KEY=VALUE"),
        (["cp", f, "s3://b/k", "--expected-size", "1GiB"], "sizes the parts of a stdin stream"),
        (["cp", f, "s3://b/k", "--restart"], "--restart applies to --checkpoint"),
        (["cp", "s3://b/k", f, "--checkpoint", f], "--checkpoint applies to uploads only"),
        (["cp", "-", "s3://b/"], "give the object's key"),
        (["cp", "s3://b/dir/", str(tmp)], "is a prefix, not an object"),
        (["cp", "-r", "-", "s3://b/x/"], "not stdin/stdout"),
        (["cp", "-r", f, "s3://b/x/"], "is not a directory; drop --recursive"),
        (["cp", "s3:/b/k", f], "is not an S3 URL"),
        (["cp", "s3:///k", f], "has no bucket"),
        (["cat", "s3://b/k", "--range", "9-2"], "is inverted"),
        (["cat", "s3://b/k", "--range", "x"], "write START-END"),
        (["cat", f], "cat reads s3://BUCKET/KEY"),
        (["rm", "s3://b/"], "add --recursive"),
        (["rm", f], "must be an s3://BUCKET/KEY URL"),
        (["presign", "s3://b/k", "--expires-in", "8d"], "between 1 second and 7 days"),
        (["presign", "s3://b/"], "presign needs an object key"),
        (["presign", "s3://b/k", "--content-type", "a/b"], "--content-type applies to PUT URLs"),
        (["sweep", "s3://b/", "--older-than", "soon"], "as a duration"),
        (["sweep", "s3://b/"], "Missing option '--older-than'"),
        (["nope"], "No such command 'nope'"),
    ]


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any request: exit 2 and one line (run in-process: no server involved)."""
    from streamx.cli._app import run

    problems = []
    for args, needle in _usage_cases(tmp_path):
        code = run(args)
        captured = capsys.readouterr()
        lines = captured.err.splitlines()
        if code != 2 or len(lines) != 1 or needle not in lines[0] or captured.out:
            problems.append(f"{args}: exit {code}, stderr {captured.err!r}")
    assert not problems, "\n".join(problems)


def _server_cases(server: Any, bucket: str, tmp: Path) -> list[Case]:
    """(args, run options, exit code, text the one stderr line must contain)."""
    (tmp / "file.txt").write_bytes(b"x")
    f = str(tmp / "file.txt")
    cases: list[Case] = [
        (["cat", f"s3://{bucket}/no/such/key"], {}, 3, "NoSuchKey"),
        (["ls", "s3://no-such-bucket-here/"], {}, 3, "NoSuchBucket"),
        (["cp", f, "s3://no-such-bucket-here/k"], {}, 3, "NoSuchBucket"),
    ]
    if server.name == "rclone":  # the only server here that checks signatures
        cases += [
            (
                ["cp", f, f"s3://{bucket}/k"],
                {"env": {"AWS_SECRET_ACCESS_KEY": "wrong-secret-9876"}},
                4,
                "SignatureDoesNotMatch",
            ),
            (["cp"], {}, 2, "Missing argument 'SRC'"),
            (["cp", str(tmp / "missing.txt"), "s3://b/k"], {}, 3, "no such file or directory"),
            (["--profile", "no-such-profile", "ls"], {}, 2, "could not be found; check --profile"),
            (
                ["cp", f, "s3://b/k"],
                {"env": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}},
                5,
                "check --endpoint-url",
            ),
        ]
    return cases


async def _check_errors(server: Any, cases: list[Case]) -> None:
    limiter = anyio.CapacityLimiter(4)
    problems: list[str] = []

    async def one(args: Sequence[str], run: dict[str, Any], code: int, needle: str) -> None:
        env = cli_env(server, **run.get("env", {}))
        async with limiter:
            result = await streamx_cmd(server, *args, input=run.get("input"), env=env)
        err = text(result.stderr)
        lines = err.splitlines()
        if result.returncode != code:
            problems.append(f"{args}: exit {result.returncode}, expected {code}: {err!r}")
        elif code and (len(lines) != 1 or needle not in lines[0] or "streamx" not in lines[0]):
            problems.append(f"{args}: expected one line with {needle!r}, got {err!r}")
        for secret in (server.secret_key, "wrong-secret-9876"):
            if secret in err or secret in text(result.stdout):
                problems.append(f"{args}: a secret was printed")
        if "Traceback" in err:
            problems.append(f"{args}: printed a traceback")

    async with anyio.create_task_group() as tg:
        for args, run, code, needle in cases:
            tg.start_soon(one, args, run, code, needle)
    assert not problems, "\n".join(problems)


async def test_errors_of_the_real_command(server: Any, bucket: str, tmp_path: Path) -> None:
    await _check_errors(server, _server_cases(server, bucket, tmp_path))


async def test_debug_shows_the_traceback(rclone_server: Any) -> None:
    result = await streamx_cmd(rclone_server, "--debug", "cat", "s3://no-such-bucket-here/k")
    assert result.returncode == 3
    assert "Traceback" in text(result.stderr) and "NotFoundError" in text(result.stderr)


def project_metadata() -> dict[str, Any]:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    project: dict[str, Any] = tomllib.loads(pyproject.read_text())["project"]
    return project


def test_the_distribution_has_a_name_of_its_own() -> None:
    """``streamx`` on PyPI is another project: ours installs as streamx-s3, imports as streamx."""
    project = project_metadata()
    assert project["name"] == "streamx-s3"
    assert project["scripts"] == {"streamx": "streamx.cli:main"}
    for extra in project["optional-dependencies"].values():  # self-references use the new name
        assert not any(req.startswith("streamx[") for req in extra)


async def test_missing_extra_prints_an_install_hint() -> None:
    name = project_metadata()["name"]
    code = "import sys; sys.modules['click'] = None; from streamx.cli import main; main(['ls'])"
    result = await anyio.run_process([sys.executable, "-c", code], check=False)
    assert result.returncode == 1
    assert text(result.stderr) == (
        "streamx: the command line needs the 'cli' extra (click is not installed); "
        f"install it with: pip install '{name}[cli]'\n"
    )
    code = (  # (aiohttp cannot be missing: aiobotocore needs it)
        "import sys; sys.modules['fastapi'] = None\n"
        "try:\n    import streamx.web.fastapi\nexcept ImportError as e:\n    print(e)\n"
    )
    result = await anyio.run_process([sys.executable, "-c", code], check=False)
    assert f"pip install '{name}[fastapi]'" in text(result.stdout)


async def test_closed_stdout_exits_141_quietly(rclone_server: Any, rclone_bucket: Any) -> None:
    server = rclone_server
    engine, bucket = rclone_bucket
    await engine.upload(bucket, "big", b"z" * (3 * MiB))
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # nobody will ever read
    try:
        result = await anyio.run_process(
            [sys.executable, "-m", "streamx", "cat", f"s3://{bucket}/big"],
            env=cli_env(server),
            stdout=write_fd,
            check=False,
        )
    finally:
        os.close(write_fd)
    assert result.returncode == 141
    assert result.stderr == b""


async def _first_part_stored(engine: streamx.Engine, bucket: str) -> None:
    """Poll until a multipart upload exists in ``bucket`` and holds at least one part."""
    for _ in range(100_000):
        uploads = await list_uploads(engine, bucket)
        if uploads:
            response = await engine.client.list_parts(
                Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
            )
            if response.get("Parts"):
                return
        await anyio.sleep(0.05)


# -- Ctrl-C ------------------------------------------------------------------------------


@pytest.mark.servers("moto", "rclone")
@pytest.mark.diagonal("server", "signum")  # each signal once, each server once
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_signal_mid_upload_leaves_no_multipart_upload(
    server: Any, engine: streamx.Engine, bucket: str, signum: int
) -> None:
    async with await anyio.open_process(
        [sys.executable, "-m", "streamx", "cp", "-", f"s3://{bucket}/interrupted"],
        env=cli_env(server),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        await proc.stdin.send(b"\x01" * (20 * MiB))  # two full parts, then the stream stalls
        with anyio.fail_after(60):
            await _first_part_stored(engine, bucket)
        proc.send_signal(signum)
        with anyio.fail_after(60):
            err = b"".join([chunk async for chunk in proc.stderr])
            code = await proc.wait()
        await proc.stdin.aclose()
    assert code == (130 if signum == signal.SIGINT else 143), text(err)
    assert text(err).splitlines()[-1].startswith("streamx: interrupted")
    # no log line of the library without --debug, only the command's own words
    assert all(line.startswith("streamx:") for line in text(err).splitlines()), text(err)
    assert await list_uploads(engine, bucket) == []
    with pytest.raises(streamx.NotFoundError):
        await engine.head(bucket, "interrupted")


async def test_checkpoint_keeps_an_interrupted_upload_and_resumes_it(
    rclone_server: Any, rclone_bucket: Any, tmp_path: Path
) -> None:
    """Ctrl-C with --checkpoint keeps the upload; the same command with the same stream resumes it."""
    engine, bucket = rclone_bucket
    data = random.Random(11).randbytes(30 * MiB)
    checkpoint = tmp_path / "upload.ckpt"
    url = f"s3://{bucket}/resumed.bin"
    args = [sys.executable, "-m", "streamx", "cp", "-", url, "--checkpoint", str(checkpoint)]
    async with await anyio.open_process(
        args, env=cli_env(rclone_server), stdin=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        await proc.stdin.send(data[: 20 * MiB])  # two parts, then the stream stalls
        with anyio.fail_after(60):
            await _first_part_stored(engine, bucket)
        proc.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            err = b"".join([chunk async for chunk in proc.stderr])
            code = await proc.wait()
        await proc.stdin.aclose()
    assert code == 130, text(err)
    assert "run the same command again to resume" in text(err)
    assert len(await list_uploads(engine, bucket)) == 1 and checkpoint.exists()

    result = await streamx_cmd(
        rclone_server, "cp", "-", url, "--checkpoint", str(checkpoint), "--json", input=data
    )
    assert result.returncode == 0, text(result.stderr)
    assert json.loads(result.stdout)["size"] == len(data)
    async with engine.download(bucket, "resumed.bin") as stream:
        assert hashlib.sha256(await stream.read_all()).digest() == hashlib.sha256(data).digest()
    assert await list_uploads(engine, bucket) == []
    assert not checkpoint.exists()


# -- the progress bar ----------------------------------------------------------------------


def run_in_pty(args: Sequence[str], env: Mapping[str, str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal (120 columns); return the exit code and what it drew."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamx", *args],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
    finally:
        os.close(slave)
    drawn = bytearray()
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            drawn.extend(chunk)
    finally:
        os.close(master)
        code = proc.wait(60)
    return code, drawn.decode("utf-8", "replace")


async def test_progress_bar_on_a_terminal_only(
    rclone_server: Any, rclone_bucket: Any, tmp_path: Path
) -> None:
    server = rclone_server
    _, bucket = rclone_bucket
    path = tmp_path / "twenty.bin"
    path.write_bytes(random.Random(1).randbytes(20 * MiB))
    tree = tmp_path / "tree"
    make_tree(tree)
    env = cli_env(server)
    url = f"s3://{bucket}/bar.bin"

    code, drawn = await anyio.to_thread.run_sync(run_in_pty, ["cp", str(path), url], env)
    assert code == 0, drawn
    assert "twenty.bin" in drawn and "100%" in drawn and "20 MiB/20 MiB" in drawn
    assert "in flight" in drawn and "MiB/s" in drawn and "MB/s" not in drawn and "\r" in drawn
    assert f"upload: {path} -> {url}" in drawn

    code, drawn = await anyio.to_thread.run_sync(
        run_in_pty, ["cp", "-r", str(tree), f"s3://{bucket}/tree"], env
    )
    assert code == 0, drawn
    assert f"total ({len(ODD_FILES)} files)" in drawn and "copied 6 files" in drawn

    code, drawn = await anyio.to_thread.run_sync(run_in_pty, ["cp", "-q", str(path), url], env)
    assert (code, drawn) == (0, "")

    piped = await streamx_cmd(server, "cp", str(path), url)  # stderr is a pipe: no bar
    assert piped.returncode == 0
    assert (
        text(piped.stderr)
        == f"upload: {path} -> {url} (20 MiB, "
        + text(piped.stderr)[len(f"upload: {path} -> {url} (20 MiB, ") :]
    )
    assert len(text(piped.stderr).splitlines()) == 1
    assert "%" not in text(piped.stderr) and "\r" not in text(piped.stderr)
