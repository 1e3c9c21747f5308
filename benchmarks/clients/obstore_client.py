"""obstore (Rust): ``put`` from a path / an iterator, ``open_writer``, GETs (see common.py).

``--unsigned`` sets ``unsigned_payload`` (obstore signs payloads by default).
Downloads: ``download_stream``/``download_iter``/``download_concurrent`` are
streamed ``get_async`` (one GET each); ``download_file`` is ranged: ``part-size``
ranges, ``concurrency`` at a time with ``get_range_async``, each written at
its offset with ``os.pwrite``. obstore processes sometimes abort (SIGABRT) at
interpreter exit after a finished transfer: the result line is printed
before exit, and the harness counts the run when it is there (and records
the abort).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
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

UNSIGNED = "--unsigned" in sys.argv
if UNSIGNED:
    sys.argv.remove("--unsigned")

import obstore  # noqa: E402
from obstore.store import S3Store  # noqa: E402


def main() -> None:
    args = parse_args()
    quiet_logs()
    config: dict[str, Any] = {
        "endpoint": args.endpoint,
        "access_key_id": args.access_key,
        "secret_access_key": args.secret_key,
        "region": args.region,
        "virtual_hosted_style_request": False,
    }
    if UNSIGNED:
        config["unsigned_payload"] = True

    def make_store() -> S3Store:
        return S3Store(args.bucket, config=config, client_options={"allow_http": True})

    k, size = args.key, args.size
    opts: dict[str, Any] = (
        {} if args.defaults else {"chunk_size": args.part_size, "max_concurrency": args.concurrency}
    )

    async def get_stream(store: S3Store, key: str) -> int:
        result = await obstore.get_async(store, key)
        sink = NullSink()
        async for chunk in result.stream(min_chunk_size=args.part_size):
            sink.write(chunk)
        return sink.count

    async def get_ranged(store: S3Store, key: str, out: str) -> int:
        meta = await obstore.head_async(store, key)
        total = meta["size"]
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            sem = asyncio.Semaphore(args.concurrency)

            async def one(start: int) -> None:
                async with sem:
                    end = min(start + args.part_size, total)
                    data = await obstore.get_range_async(store, key, start=start, end=end)
                    await asyncio.to_thread(os.pwrite, fd, memoryview(data), start)

            await asyncio.gather(*(one(s) for s in range(0, total, args.part_size)))
        finally:
            os.close(fd)
        return total

    async def transfer(store: S3Store) -> int:
        if args.scenario == "upload_file":
            await obstore.put_async(store, k, Path(args.file), **opts)
            return size
        if args.scenario == "upload_stream":
            obstore.put(store, k, chunks(size), **opts)
            return size
        if args.scenario == "upload_writer":
            with obstore.open_writer(
                store, k, buffer_size=args.part_size, max_concurrency=args.concurrency
            ) as writer:
                for chunk in chunks(size):
                    writer.write(chunk)
            return size
        if args.scenario == "download_file":
            return await get_ranged(store, k, args.out)
        if args.scenario in ("download_stream", "download_iter"):
            return await get_stream(store, k)
        if args.scenario == "download_concurrent":
            return sum(await asyncio.gather(*(get_stream(store, k) for _ in range(args.count))))
        if args.scenario in ("many_small", "concurrent", "concurrent_async", "slow"):
            small = args.scenario == "many_small"
            block = os.urandom(size)
            sem = asyncio.Semaphore(args.concurrency if small else args.count)

            async def one(i: int) -> int:
                async with sem:
                    source: Any = block if small else chunks(size)
                    if args.scenario in ("concurrent_async", "slow"):
                        source = slow_chunks(size, args.chunk, args.delay, args.fresh_chunks)
                    await obstore.put_async(store, f"{k}/{i}", source, **opts)
                return size

            return sum(await asyncio.gather(*(one(i) for i in range(args.count))))
        raise Unsupported(f"obstore has no {args.scenario} here")

    async def scenario() -> int:
        store = make_store()
        CLOCK.after_setup()
        if args.mode == "steady":
            return await repeat_steady_async(lambda: transfer(store), args.repeat)
        return await transfer(store)

    measure(
        lambda: asyncio.run(scenario()),
        note=f"obstore {obstore.__version__}" + (", unsigned payload" if UNSIGNED else ""),
    )


if __name__ == "__main__":
    main()
