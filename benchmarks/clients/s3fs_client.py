"""s3fs: ``put_file`` / ``open('wb')`` / ``get_file`` / ``open('rb')`` (see common.py)."""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import s3fs
from common import (
    CHUNK,
    NullSink,
    Unsupported,
    chunks,
    measure,
    parse_args,
    quiet_logs,
)


def main() -> None:
    args = parse_args()
    quiet_logs()
    fs = s3fs.S3FileSystem(
        endpoint_url=args.endpoint,
        key=args.access_key,
        secret=args.secret_key,
        client_kwargs={"region_name": args.region},
        config_kwargs={
            "response_checksum_validation": "when_required",
            "max_pool_connections": max(10, 2 * args.concurrency),
        },
        max_concurrency=args.concurrency,
        default_block_size=args.part_size,
        skip_instance_cache=True,
    )
    b, k, size = args.bucket, args.key, args.size
    path = f"{b}/{k}"

    def run() -> int:
        if args.scenario == "upload_file":
            fs.put_file(args.file, path, chunksize=args.part_size, max_concurrency=args.concurrency)
            return size
        if args.scenario in ("upload_stream", "upload_writer"):
            with fs.open(path, "wb", block_size=args.part_size) as f:
                for chunk in chunks(size):
                    f.write(chunk)
            return size
        if args.scenario == "download_file":
            fs.get_file(path, args.out)
            return os.path.getsize(args.out)
        if args.scenario in ("download_stream", "download_iter"):
            sink = NullSink()
            with fs.open(path, "rb", block_size=args.part_size, cache_type="none") as f:
                while True:
                    data = f.read(CHUNK)
                    if not data:
                        break
                    sink.write(data)
            return sink.count
        if args.scenario == "many_small":
            block = os.urandom(size)

            async def all_puts() -> int:
                sem = asyncio.Semaphore(args.concurrency)

                async def one(i: int) -> int:
                    async with sem:
                        await fs._pipe_file(f"{path}/{i}", block)
                    return size

                return sum(await asyncio.gather(*(one(i) for i in range(args.count))))

            from fsspec.asyn import sync

            return int(sync(fs.loop, all_puts))
        raise Unsupported(f"s3fs has no {args.scenario} here")

    measure(run, note=f"s3fs {s3fs.__version__}")


if __name__ == "__main__":
    main()
