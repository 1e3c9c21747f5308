"""streamx: one measured transfer per process (see common.py for the protocol)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from common import (
    CLOCK,
    NullSink,
    Unsupported,
    chunks,
    measure,
    parse_args,
    quiet_logs,
    repeat_steady_async,
    slow_chunks,
)

import streamx


def main() -> None:
    args = parse_args()
    quiet_logs()
    engine_args: dict[str, Any] = {
        "endpoint_url": args.endpoint,
        "aws_access_key_id": args.access_key,
        "aws_secret_access_key": args.secret_key,
        "region_name": args.region,
    }
    if not args.defaults:
        engine_args["config"] = streamx.TransferConfig(
            part_size=args.part_size, queue_size=args.concurrency
        )
    if args.budget:
        engine_args["memory_budget"] = args.budget
    try:
        import uvloop  # type: ignore[import-not-found]

        runner: Any = uvloop.run
        loop_name = "uvloop"
    except ImportError:
        runner = asyncio.run
        loop_name = "asyncio"

    async def transfer(engine: streamx.Engine) -> int:
        b, k, size = args.bucket, args.key, args.size
        if args.scenario == "upload_file":
            return (await engine.upload(b, k, args.file)).size
        if args.scenario == "upload_stream":
            return (await engine.upload(b, k, chunks(size))).size
        if args.scenario == "upload_writer":
            async with engine.open_writer(b, k) as writer:
                for chunk in chunks(size):
                    await writer.write(chunk)
            assert writer.result is not None
            return writer.result.size
        if args.scenario == "download_file":
            await engine.download_file(b, k, args.out)
            return os.path.getsize(args.out)  # noqa: ASYNC240
        if args.scenario == "download_stream":
            sink = NullSink()
            await engine.download_to(b, k, sink)
            return sink.count
        if args.scenario in ("download_iter", "download_concurrent"):

            async def read_all() -> int:
                total = 0
                async with engine.download(b, k) as stream:
                    async for chunk in stream:
                        total += len(chunk)
                return total

            n = args.count if args.scenario == "download_concurrent" else 1
            return sum(await asyncio.gather(*(read_all() for _ in range(n))))
        if args.scenario in ("many_small", "concurrent", "concurrent_async", "slow", "budget"):
            small = args.scenario == "many_small"
            sem = asyncio.Semaphore(args.concurrency if small else args.count)
            block = os.urandom(size) if small else b""

            async def one(i: int) -> int:
                async with sem:
                    source: Any = block
                    if args.scenario in ("concurrent_async", "slow"):
                        source = slow_chunks(size, args.chunk, args.delay, args.fresh_chunks)
                    elif not small:
                        source = chunks(size)
                    return (await engine.upload(b, f"{k}/{i}", source)).size

            return sum(await asyncio.gather(*(one(i) for i in range(args.count))))
        raise Unsupported(args.scenario)

    async def scenario() -> int:
        async with streamx.Engine(**engine_args) as engine:
            CLOCK.after_setup()
            if args.mode == "steady":
                return await repeat_steady_async(lambda: transfer(engine), args.repeat)
            return await transfer(engine)

    measure(lambda: runner(scenario()), note=loop_name)


if __name__ == "__main__":
    main()
