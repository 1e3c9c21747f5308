"""boto3 with the classic (threaded) TransferManager, and the naive pattern (see common.py).

``--naive`` is the pattern from ``shared/seeds/000_*``: collect every chunk,
``b"".join`` them, send one ``put_object``.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from common import (
    CLOCK,
    NullSink,
    StreamReader,
    Unsupported,
    chunks,
    measure,
    parse_args,
    quiet_logs,
    repeat_steady,
)

NAIVE = "--naive" in sys.argv
if NAIVE:
    sys.argv.remove("--naive")

import boto3  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402


def main() -> None:
    args = parse_args()
    quiet_logs()
    threads = max(args.concurrency, args.count if "concurrent" in args.scenario else 0)
    make_client = lambda: boto3.client(  # noqa: E731
        "s3",
        endpoint_url=args.endpoint,
        aws_access_key_id=args.access_key,
        aws_secret_access_key=args.secret_key,
        region_name=args.region,
        config=Config(
            max_pool_connections=max(10, threads * 2),
            response_checksum_validation="when_required",  # rclone's ranged GETs
        ),
    )
    tc = TransferConfig(
        multipart_threshold=args.part_size,
        multipart_chunksize=args.part_size,
        max_concurrency=args.concurrency,
        use_threads=True,
        preferred_transfer_client="classic",
    )
    if args.defaults:
        tc = TransferConfig(preferred_transfer_client="classic")
    s3: Any = None if args.mode == "first" else make_client()
    b, k, size = args.bucket, args.key, args.size

    def naive() -> int:
        if args.scenario != "upload_stream":
            raise Unsupported("the naive pattern is a stream upload")
        collected = []
        for chunk in chunks(size):
            collected.append(chunk)
        data = b"".join(collected)
        s3.put_object(Bucket=b, Key=k, Body=data)
        return len(data)

    def run() -> int:
        nonlocal s3
        if s3 is None:
            s3 = make_client()
        CLOCK.after_setup()
        if args.mode == "steady":
            return repeat_steady(transfer, args.repeat)
        return transfer()

    def get_stream() -> int:
        body = s3.get_object(Bucket=b, Key=k)["Body"]
        total = 0
        for chunk in body.iter_chunks(1024 * 1024):
            total += len(chunk)
        return total

    def transfer() -> int:
        if NAIVE:
            return naive()
        if args.scenario == "upload_file":
            s3.upload_file(args.file, b, k, Config=tc)
            return size
        if args.scenario == "upload_stream":
            s3.upload_fileobj(StreamReader(chunks(size)), b, k, Config=tc)
            return size
        if args.scenario == "download_file":
            s3.download_file(b, k, args.out, Config=tc)
            return os.path.getsize(args.out)
        if args.scenario == "download_stream":
            sink = NullSink()
            s3.download_fileobj(b, k, sink, Config=tc)
            return sink.count
        if args.scenario == "download_iter":
            return get_stream()
        if args.scenario == "download_concurrent":
            with ThreadPoolExecutor(args.count) as pool:
                return sum(pool.map(lambda _: get_stream(), range(args.count)))
        if args.scenario in ("many_small", "concurrent"):
            small = args.scenario == "many_small"
            block = os.urandom(size)

            def one(i: int) -> int:
                if small:
                    s3.put_object(Bucket=b, Key=f"{k}/{i}", Body=block)
                else:
                    s3.upload_fileobj(StreamReader(chunks(size)), b, f"{k}/{i}", Config=tc)
                return size

            workers = args.concurrency if small else args.count
            with ThreadPoolExecutor(workers) as pool:
                return sum(pool.map(one, range(args.count)))
        raise Unsupported(f"boto3 has no {args.scenario}")

    version: Any = boto3.__version__
    measure(run, note=("naive; " if NAIVE else "classic; ") + f"boto3 {version}")


if __name__ == "__main__":
    main()
