"""The main job, end to end: ``make demo`` (or ``python examples/demo.py --size 1GiB``).

1. starts ``rclone serve s3`` on a free loopback port with a temporary data
   directory (or uses the endpoint in ``AWS_ENDPOINT_URL`` with ``--endpoint env``);
2. streams a generated, non-seekable source of ``--size`` bytes through the
   engine with a progress bar;
3. reads the object back as a stream and checks its SHA-256;
4. prints the throughput and the process's peak memory next to the bound that
   ``TransferConfig`` states, then stops the server.

``--json`` prints one machine-readable line instead (the memory test uses it).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import structlog

import streamx
from streamx._limits import MiB, format_size, parse_size
from streamx.testing import RcloneServer

CHUNK = 1 * MiB


def peak_rss() -> int:
    """This process's peak resident set size in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def generated_stream(size: int, digest: Any) -> Iterator[bytes]:
    """A non-seekable source: 1 MiB chunks of pseudo-random bytes, each stamped with its index."""
    block = os.urandom(CHUNK)
    sent = 0
    index = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        chunk = (index.to_bytes(8, "big") + block[8:])[:n]
        digest.update(chunk)
        yield chunk
        sent += n
        index += 1


class Bar:
    """A tqdm progress bar fed by streamx progress events (a listener, nothing more).

    The CLI's bar: MiB and MiB/s like the summary, and drawn only when stderr is a
    terminal (under ``tee`` or in a log file it writes nothing).
    """

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._bar = None
        if enabled and sys.stderr.isatty():
            from streamx.cli._progress import ByteBar

            self._bar = ByteBar(total=total, desc=desc)

    def __call__(self, event: streamx.ProgressEvent) -> None:
        if self._bar is not None:
            self._bar.n = event.bytes_done
            if (
                event.parts_done or event.parts_in_flight
            ):  # uploads count parts; a read-back does not
                self._bar.set_postfix(parts=event.parts_done, in_flight=event.parts_in_flight)
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def show_with_cli(args: argparse.Namespace, engine_args: dict[str, Any]) -> None:
    """``streamx ls -h s3://bucket/demo/``, run as a user would, with the same endpoint."""
    env = dict(os.environ)
    names = {
        "endpoint_url": "AWS_ENDPOINT_URL",
        "aws_access_key_id": "AWS_ACCESS_KEY_ID",
        "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
        "region_name": "AWS_REGION",
    }
    env.update({names[k]: v for k, v in engine_args.items() if k in names})
    prefix = args.key.rsplit("/", 1)[0] + "/" if "/" in args.key else ""
    url = f"s3://{args.bucket}/{prefix}"
    print(f"\n$ streamx ls -h {url}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "streamx", "ls", "-h", url], env=env, check=False)


async def run(args: argparse.Namespace, engine_args: dict[str, Any]) -> dict[str, Any]:
    config = streamx.TransferConfig(part_size=args.part_size, queue_size=args.queue_size)
    async with streamx.Engine(**engine_args, config=config) as engine:
        try:
            await engine.client.create_bucket(Bucket=args.bucket)
        except Exception as exc:  # the bucket may exist already (MinIO from compose.yaml)
            if "BucketAlreadyOwnedByYou" not in repr(exc) and "BucketAlreadyExists" not in repr(
                exc
            ):
                raise
        baseline = peak_rss()
        sent = hashlib.sha256()
        bar = Bar(args.size, "upload", args.progress)
        start = time.perf_counter()
        cpu0 = time.process_time()
        result = await engine.upload(
            args.bucket,
            args.key,
            generated_stream(args.size, sent),
            on_progress=bar,
            ContentType="application/octet-stream",
        )
        upload_seconds = time.perf_counter() - start
        upload_cpu = time.process_time() - cpu0
        bar.close()
        upload_peak = peak_rss()

        received = hashlib.sha256()
        bar = Bar(result.size, "verify", args.progress)
        done = 0
        async with engine.download(args.bucket, args.key) as stream:
            async for chunk in stream:
                received.update(chunk)
                done += len(chunk)
                bar(streamx.ProgressEvent(done, result.size, 0, 0, 0.0))
        bar.close()
        if not args.json:  # a person is watching: the same object through the command line
            await anyio.to_thread.run_sync(show_with_cli, args, engine_args)
        if not args.keep:
            await engine.client.delete_object(Bucket=args.bucket, Key=args.key)
    return {
        "size": result.size,
        "parts": result.part_count,
        "sha256_sent": sent.hexdigest(),
        "sha256_read_back": received.hexdigest(),
        "verified": sent.hexdigest() == received.hexdigest() and done == args.size,
        "upload_seconds": upload_seconds,
        "upload_cpu_seconds": upload_cpu,
        "throughput_mib_s": args.size / MiB / upload_seconds if upload_seconds else 0.0,
        "baseline_rss": baseline,
        "peak_rss_upload": upload_peak,
        "peak_rss": peak_rss(),
        "memory_bound": config.memory_bound,
        "process_memory_bound": config.process_memory_bound,
        "part_size": config.part_size,
        "queue_size": config.queue_size,
        "high_water_mark": config.high_water_mark,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--part-size", type=parse_size, default=8 * MiB)
    parser.add_argument("--queue-size", type=int, default=streamx.TransferConfig().queue_size)
    parser.add_argument("--bucket", default="streamx-demo")
    parser.add_argument("--key", default="demo/stream.bin")
    parser.add_argument(
        "--endpoint",
        choices=["rclone", "env"],
        default="rclone",
        help="rclone: start an embedded rclone server; env: use AWS_ENDPOINT_URL and friends",
    )
    parser.add_argument("--keep", action="store_true", help="keep the object afterwards")
    parser.add_argument("--json", action="store_true", help="print one JSON line, no progress bar")
    args = parser.parse_args()
    args.progress = not args.json
    # the library logs to the stdlib "streamx" logger and is silent until a program asks:
    # this one shows warnings and errors on stderr, rendered by structlog
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
            ]
        )
    )
    logging.getLogger("streamx").addHandler(handler)
    logging.getLogger("streamx").setLevel(logging.WARNING)

    if args.endpoint == "env":
        report = asyncio.run(run(args, {}))
        where = os.environ.get("AWS_ENDPOINT_URL", "AWS")
    else:
        with RcloneServer() as server:
            if not args.json:
                print(f"rclone serve s3 listening on {server.endpoint_url}", file=sys.stderr)
            report = asyncio.run(run(args, server.engine_args()))
        where = "embedded rclone serve s3"
    if args.json:
        print(json.dumps(report))
        return 0 if report["verified"] else 1
    growth = report["peak_rss"] - report["baseline_rss"]
    print(
        f"\nstreamx demo against {where}\n"
        f"  streamed    {format_size(report['size'])} from a non-seekable generator "
        f"in {report['parts']} parts of {format_size(report['part_size'])}\n"
        f"  upload      {report['upload_seconds']:.2f} s, {report['throughput_mib_s']:.0f} MiB/s, "
        f"{report['upload_cpu_seconds'] / max(report['size'] / 1024**3, 1e-9):.2f} CPU-s per GiB\n"
        f"  read back   SHA-256 {report['sha256_read_back'][:16]}… "
        f"{'matches' if report['verified'] else 'DOES NOT MATCH'}\n"
        f"  memory      peak RSS {format_size(report['peak_rss'])}; "
        f"{format_size(max(growth, 0))} above the {format_size(report['baseline_rss'])} baseline; "
        f"bound {format_size(report['process_memory_bound'])} = "
        f"{format_size(report['memory_bound'])} of data (high_water_mark "
        f"{format_size(report['high_water_mark'])} + part_size {format_size(report['part_size'])} "
        f"× queue_size {report['queue_size']}) + "
        f"{format_size(report['process_memory_bound'] - report['memory_bound'])} for the HTTP "
        f"stack, sender threads and malloc arenas"
    )
    return 0 if report["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
