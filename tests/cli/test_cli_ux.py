"""A user's first hour with ``streamx``: ranges, stopping early, help, plain messages.

Run as a user would (``python -m streamx`` in a subprocess, against rclone or
moto), except the pure pieces (range clamping, wording) and the help screens,
which need no server.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import list_uploads
from test_cli import cli_env, streamx_cmd, text

import streamx
from streamx.cli._exit import UsageError, classify, cli_wording
from streamx.cli._transfer import clamp_range

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def rclone_bucket(rclone_server: Any) -> Any:
    async with streamx.Engine(**rclone_server.engine_args()) as engine:
        name = f"u-{os.urandom(6).hex()}"
        await engine.client.create_bucket(Bucket=name)
        yield engine, name
        assert await list_uploads(engine, name) == []


# -- cat --range: clamped like HTTP ranges and tail -c ---------------------------------


def test_clamp_range_is_what_http_and_tail_do() -> None:
    url = "s3://b/six"
    assert clamp_range((-500, None), 6, "-500", url) == (0, 6)  # tail -c 500 of 6 bytes
    assert clamp_range((-2, None), 6, "-2", url) == (4, 6)
    assert clamp_range((0, 1024), 6, "0-1023", url) == (0, 6)
    assert clamp_range((2, 4), 6, "2-3", url) == (2, 4)
    assert clamp_range((5, None), 6, "5-", url) == (5, 6)
    assert clamp_range((0, 1024), 0, "0-1023", url) is None  # an empty object: nothing to read
    assert clamp_range((-500, None), 0, "-500", url) is None
    with pytest.raises(UsageError) as info:
        clamp_range((6, None), 6, "6-", url)
    assert str(info.value) == (
        "--range 6- starts past the end of s3://b/six, which has 6 bytes (the last byte is 5)"
    )


@pytest.mark.parametrize("server_name", ["moto", "rclone"])
async def test_cat_range_clamps_on_a_small_object(server_name: str, request: Any) -> None:
    server = request.getfixturevalue(f"{server_name}_server")
    async with streamx.Engine(**server.engine_args()) as engine:
        bucket = f"c-{os.urandom(5).hex()}"
        await engine.client.create_bucket(Bucket=bucket)
        await engine.upload(bucket, "six", b"abcdef")
        await engine.upload(bucket, "empty", b"")
    cases = [
        ("six", "-500", 0, b"abcdef"),
        ("six", "0-1023", 0, b"abcdef"),
        ("six", "-2", 0, b"ef"),
        ("six", "4-", 0, b"ef"),
        ("six", "1-2", 0, b"bc"),
        ("empty", "-500", 0, b""),
        ("six", "6-", 2, b""),
    ]
    for key, spec, code, expected in cases:
        result = await streamx_cmd(server, "cat", f"s3://{bucket}/{key}", "--range", spec)
        assert (result.returncode, result.stdout) == (code, expected), text(result.stderr)
        if code:
            assert text(result.stderr) == (
                f"streamx: error: --range {spec} starts past the end of s3://{bucket}/{key}, "
                "which has 6 bytes (the last byte is 5)\n"
            )


# -- cp -r stops at the first error every file would meet -------------------------------


def make_dir(root: Path, n: int = 8) -> None:
    root.mkdir()
    for i in range(n):
        (root / f"f{i}.txt").write_bytes(b"x" * (100 + i))


async def test_recursive_copy_stops_at_a_missing_bucket_or_refused_credentials(
    rclone_server: Any, rclone_bucket: Any, tmp_path: Path
) -> None:
    engine, bucket = rclone_bucket
    make_dir(tmp_path / "dir")
    src = str(tmp_path / "dir")
    missing = await streamx_cmd(rclone_server, "cp", "-r", src, f"s3://{bucket}x-typo/p")
    assert missing.returncode == 3
    assert text(missing.stderr) == (
        f"streamx: error: bucket '{bucket}x-typo' does not exist (NoSuchBucket); check its name "
        "('streamx ls' lists your buckets); stopped after 0 of 8 files\n"
    )
    env = cli_env(rclone_server, AWS_SECRET_ACCESS_KEY="wrong-secret-4321")
    refused = await streamx_cmd(rclone_server, "cp", "-r", src, f"s3://{bucket}/p", env=env)
    assert refused.returncode == 4
    assert text(refused.stderr) == (
        "streamx: error: the server refused the credentials (SignatureDoesNotMatch); check "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --profile; stopped after 0 of 8 files\n"
    )
    assert [o async for o in engine.list(bucket)] == []


async def test_recursive_copy_reports_a_dangling_symlink(
    rclone_server: Any, rclone_bucket: Any, tmp_path: Path
) -> None:
    engine, bucket = rclone_bucket
    make_dir(tmp_path / "dir", 3)
    (tmp_path / "dir" / "gone").symlink_to(tmp_path / "nowhere")
    result = await streamx_cmd(rclone_server, "cp", "-r", str(tmp_path / "dir"), f"s3://{bucket}/d")
    lines = text(result.stderr).splitlines()
    assert result.returncode == 5
    assert (
        f"streamx: error: {tmp_path / 'dir' / 'gone'}: a symbolic link to {tmp_path / 'nowhere'}, "
        "which does not exist; skipped"
    ) in lines
    assert lines[-1] == "streamx: error: copied 3 of 4 files; 1 skipped"
    assert sorted([o.key async for o in engine.list(bucket, "d/")]) == [
        "d/f0.txt",
        "d/f1.txt",
        "d/f2.txt",
    ]


# -- help ---------------------------------------------------------------------------------


def test_bare_streamx_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    from streamx.cli._app import run

    assert run([]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0] == "Usage: streamx [OPTIONS] COMMAND [ARGS]..."
    assert "Commands:" in lines and len(lines) > 15 and "streamx: error" not in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    "args", [["-h"], ["cp", "-h"], ["cat", "-h"], ["rm", "-h"], ["presign", "-h"], ["sweep", "-h"]]
)
def test_dash_h_is_help(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from streamx.cli._app import run

    assert run(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: streamx") and "-h, --help" in out


def test_ls_keeps_dash_h_for_human_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    from streamx.cli._app import run

    assert run(["ls", "--help"]) == 0
    out = capsys.readouterr().out
    assert "-h, --human-readable" in out and "  --help" in out


# -- messages in the command line's words -------------------------------------------------


def test_library_advice_is_said_with_flags() -> None:
    assert cli_wording("x changed; pass restart=True to start over") == (
        "x changed; add --restart to start over"
    )
    err = streamx.CheckpointError(
        "c.ckpt is not a streamx upload checkpoint (bad); pass restart=True to overwrite it"
    )
    message = classify(err).message
    assert "restart=True" not in message and message.count("--restart") == 1
    no_credentials = streamx.AccessDeniedError(
        "PutObject failed: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or pass them to Engine()",
        code="NoCredentials",
    )
    assert "Engine()" not in classify(no_credentials).message


async def test_a_bad_checkpoint_file_is_explained_with_flags(
    rclone_server: Any, rclone_bucket: Any, tmp_path: Path
) -> None:
    _, bucket = rclone_bucket
    (tmp_path / "f").write_bytes(b"data")
    (tmp_path / "bad.ckpt").write_text("not json")
    result = await streamx_cmd(
        rclone_server, "cp", str(tmp_path / "f"), f"s3://{bucket}/k", "--checkpoint",
        str(tmp_path / "bad.ckpt"),
    )
    err = text(result.stderr)
    assert result.returncode == 2 and len(err.splitlines()) == 1
    assert "add --restart" in err and "restart=True" not in err and err.count("--restart") == 1


def test_library_errors_are_plain_warnings_without_debug(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the CLI shows of the library's log without --debug: no structlog line."""
    from streamx._log import log
    from streamx.cli._common import configure_logging

    try:
        configure_logging(debug=False)
        log.warning("upload.aborted", bucket="b", key="k", cause="CancelledError")
        log.error("upload.abort.failed", bucket="b", key="k", error="NoSuchUpload", cause="X")
        lines = capsys.readouterr().err.splitlines()
        assert lines == [
            "streamx: warning: the unfinished multipart upload of s3://b/k could not be aborted "
            "(NoSuchUpload); it is billed until removed: 'streamx sweep s3://b/' removes it"
        ]
        configure_logging(debug=True)
        log.debug("upload.part", bucket="b", key="k", part_number=1)
        err = capsys.readouterr().err
        assert "upload.part" in err and "part_number=1" in err and "[debug" in err
    finally:
        logger = logging.getLogger("streamx")
        for handler in list(logger.handlers):
            if getattr(handler, "_streamx_cli", False):
                logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


# -- rm -----------------------------------------------------------------------------------


async def test_rm_says_what_is_not_there(rclone_server: Any, rclone_bucket: Any) -> None:
    engine, bucket = rclone_bucket
    await engine.upload(bucket, "a.txt", b"a")
    await engine.upload(bucket, "dir/x", b"x")
    result = await streamx_cmd(rclone_server, "rm", f"s3://{bucket}/a.txt", f"s3://{bucket}/nope")
    assert result.returncode == 3
    assert text(result.stderr).splitlines() == [
        f"streamx: error: s3://{bucket}/nope: no such object",
        f"delete: s3://{bucket}/a.txt",
    ]
    with pytest.raises(streamx.NotFoundError):
        await engine.head(bucket, "a.txt")
    result = await streamx_cmd(rclone_server, "rm", f"s3://{bucket}/dir")
    assert result.returncode == 3
    assert text(result.stderr) == (
        f"streamx: error: s3://{bucket}/dir: no such object; s3://{bucket}/dir/ is a prefix: "
        "add --recursive to delete what is under it\n"
    )
    assert (await engine.head(bucket, "dir/x")).size == 1
    result = await streamx_cmd(rclone_server, "rm", f"s3://{bucket}-typo/k")
    assert result.returncode == 3 and "does not exist (NoSuchBucket)" in text(result.stderr)


# -- presign, units, the demo -------------------------------------------------------------


async def test_presign_with_a_content_type_says_the_uploader_must_send_it(
    rclone_server: Any, rclone_bucket: Any
) -> None:
    _, bucket = rclone_bucket
    result = await streamx_cmd(
        rclone_server, "presign", f"s3://{bucket}/up", "--method", "PUT", "--content-type",
        "image/png",
    )
    assert result.returncode == 0 and "X-Amz-Signature=" in text(result.stdout)
    assert text(result.stderr) == (
        "the uploader must send the header 'Content-Type: image/png' with the PUT (it is signed "
        "into the URL), e.g. curl -T FILE -H 'Content-Type: image/png' URL\n"
    )


def test_the_bar_speaks_mib_like_the_summary() -> None:
    import io

    from streamx.cli._progress import ByteBar

    out = io.StringIO()
    bar = ByteBar(total=20 * 2**20, desc="x", file=out, disable=False, mininterval=0)
    bar.update(10 * 2**20)
    bar.close()
    drawn = out.getvalue()
    assert "10 MiB/20 MiB" in drawn and "MiB/s" in drawn and "MB/s" not in drawn
    piped = io.StringIO()  # not a terminal: tqdm's disable=None draws nothing
    bar = ByteBar(total=100, desc="x", file=piped)
    bar.update(100)
    bar.close()
    assert piped.getvalue() == ""


def test_the_demo_draws_no_bar_into_a_pipe() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--size", "12MiB"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "%|" not in done.stderr
    assert "matches" in done.stdout and "MiB/s" in done.stdout




def test_config_fields_are_named_by_their_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from streamx.cli._app import run

    assert run(["cp", "x", "s3://b/k", "--part-size", "1MiB"]) == 2
    err = capsys.readouterr().err
    assert "--part-size 1 MiB is below S3's 5 MiB minimum" in err and "part_size" not in err
    assert cli_wording("queue_size 0 must be at least 1") == "--concurrency 0 must be at least 1"
