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
)

import streamx


def main() -> None:
    args = parse_args()
    quiet_logs()
    cfg = streamx.TransferConfig(part_size=args.part_size, queue_size=args.concurrency)
    engine_args: dict[str, Any] = {
        "endpoint_url": args.endpoint,
        "aws_access_key_id": args.access_key,
        "aws_secret_access_key": args.secret_key,
        "region_name": args.region,
        "config": cfg,
    }
    if args.budget:
        engine_args["memory_budget"] = args.budget
    try:
        import uvloop  # type: ignore[import-not-found]

        runner: Any = uvloop.run
        loop_name = "uvloop"
    except ImportError:
        runner = asyncio.run
        loop_name = "asyncio"

    async def scenario() -> int:
        async with streamx.Engine(**engine_args) as engine:
            b, k, size = args.bucket, args.key, args.size
            CLOCK.start()
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
                fn = getattr(engine, "download_file", None)
                if fn is None:
                    raise Unsupported("not available yet (Engine.download_file)")
                await fn(b, k, args.out)
                return os.path.getsize(args.out)  # noqa: ASYNC240
            if args.scenario == "download_stream":
                fn = getattr(engine, "download_to", None)
                if fn is not None:
                    sink = NullSink()
                    await fn(b, k, sink)
                    return sink.count
                gen = getattr(engine, "download", None)
                if gen is None:
                    raise Unsupported("not available yet (Engine.download_to / download)")
                total = 0
                async for chunk in gen(b, k):
                    total += len(chunk)
                return total
            if args.scenario in ("many_small", "concurrent", "budget"):
                small = args.scenario == "many_small"
                sem = asyncio.Semaphore(args.concurrency if small else args.count)
                block = os.urandom(size) if small else b""

                async def one(i: int) -> int:
                    async with sem:
                        source: Any = block if small else chunks(size)
                        return (await engine.upload(b, f"{k}/{i}", source)).size

                sizes = await asyncio.gather(*(one(i) for i in range(args.count)))
                return sum(sizes)
            raise Unsupported(args.scenario)

    measure(lambda: runner(scenario()), note=loop_name)


if __name__ == "__main__":
    main()
