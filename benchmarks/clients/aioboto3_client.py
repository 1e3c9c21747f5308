"""aioboto3: ``upload_fileobj`` / ``download_file`` / a streamed GET (see common.py)."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
import aioboto3
import aioboto3.s3.inject as inject
from aiobotocore.config import AioConfig
from boto3.s3.transfer import TransferConfig
from common import (
    CLOCK,
    AsyncStreamReader,
    NullSink,
    Unsupported,
    chunks,
    measure,
    parse_args,
    quiet_logs,
    repeat_steady_async,
)


def apply_wait_workaround() -> str:
    """aioboto3 7.x passes bare coroutines to ``asyncio.wait`` (a TypeError on 3.11+).

    Newer releases wrap them in tasks themselves; only an old one gets the shim.
    """
    source = inspect.getsource(inject)
    if "asyncio.wait(" not in source or "create_task(io_queue.join())" in source:
        return ""
    real_wait = asyncio.wait

    async def wait(fs: Any, *a: Any, **kw: Any) -> Any:
        return await real_wait({asyncio.ensure_future(f) for f in fs}, *a, **kw)

    shim = type(sys)("asyncio_shim")
    shim.__dict__.update(asyncio.__dict__)
    shim.wait = wait  # type: ignore[attr-defined]
    inject.asyncio = shim  # type: ignore[attr-defined]
    return "workaround: asyncio.wait wrapped"


def main() -> None:
    args = parse_args()
    quiet_logs()
    note = apply_wait_workaround()
    version = getattr(aioboto3, "__version__", "?")
    note = f"aioboto3 {version}" + (f"; {note}" if note else "")
    tc = TransferConfig(
        multipart_threshold=args.part_size,
        multipart_chunksize=args.part_size,
        max_concurrency=args.concurrency,
    )
    tc.max_request_concurrency = args.concurrency  # what aioboto3's upload_fileobj reads
    if args.defaults:
        tc = TransferConfig()
    session = aioboto3.Session()
    client_args: dict[str, Any] = {
        "endpoint_url": args.endpoint,
        "aws_access_key_id": args.access_key,
        "aws_secret_access_key": args.secret_key,
        "region_name": args.region,
        "config": AioConfig(
            max_pool_connections=max(
                10, args.concurrency * 2, args.count if "concurrent" in args.scenario else 0
            ),
            response_checksum_validation="when_required",  # rclone's ranged GETs
        ),
    }

    async def scenario() -> int:
        async with session.client("s3", **client_args) as s3:
            CLOCK.after_setup()
            if args.mode == "steady":
                return await repeat_steady_async(lambda: transfer(s3), args.repeat)
            return await transfer(s3)

    async def get_stream(s3: Any, b: str, k: str) -> int:
        sink = NullSink()
        response = await s3.get_object(Bucket=b, Key=k)
        body = response["Body"]
        try:
            async for chunk in body.iter_chunks(1024 * 1024):
                sink.write(chunk)
        finally:
            body.close()
        return sink.count

    async def transfer(s3: Any) -> int:
        b, k, size = args.bucket, args.key, args.size
        if args.scenario == "upload_file":
            with open(args.file, "rb") as f:  # noqa: ASYNC230 - as a user would
                await s3.upload_fileobj(f, b, k, Config=tc)
            return size
        if args.scenario == "upload_stream":
            await s3.upload_fileobj(AsyncStreamReader(chunks(size)), b, k, Config=tc)
            return size
        if args.scenario == "download_file":
            await s3.download_file(b, k, args.out, Config=tc)
            return os.path.getsize(args.out)  # noqa: ASYNC240
        if args.scenario in ("download_stream", "download_iter"):
            return await get_stream(s3, b, k)
        if args.scenario == "download_concurrent":
            return sum(await asyncio.gather(*(get_stream(s3, b, k) for _ in range(args.count))))
        if args.scenario in ("many_small", "concurrent", "concurrent_async", "slow"):
            small = args.scenario == "many_small"
            sem = asyncio.Semaphore(args.concurrency if small else args.count)
            block = os.urandom(size)

            async def one(i: int) -> int:
                async with sem:
                    if small:
                        await s3.put_object(Bucket=b, Key=f"{k}/{i}", Body=block)
                    elif args.scenario in ("concurrent_async", "slow"):
                        raise Unsupported("upload_fileobj takes no async iterator")
                    else:
                        await s3.upload_fileobj(
                            AsyncStreamReader(chunks(size)), b, f"{k}/{i}", Config=tc
                        )
                    return size

            return sum(await asyncio.gather(*(one(i) for i in range(args.count))))
        raise Unsupported(f"aioboto3 has no {args.scenario}")

    measure(lambda: asyncio.run(scenario()), note=note)


if __name__ == "__main__":
    main()
