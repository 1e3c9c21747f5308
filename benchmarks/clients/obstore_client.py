"""obstore (Rust): ``put`` from a path / an iterator, ``open_writer``, a streamed GET (see common.py).

``--unsigned`` sets ``unsigned_payload`` (obstore signs payloads by default).
obstore processes sometimes abort (SIGABRT) at interpreter exit after a
finished transfer: the result line is printed before exit, and the harness
counts the run when it is there (and records the abort).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import (
    NullSink,
    Unsupported,
    chunks,
    measure,
    parse_args,
    quiet_logs,
)

UNSIGNED = "--unsigned" in sys.argv
if UNSIGNED:
    sys.argv.remove("--unsigned")

import obstore  # noqa: E402
from obstore.store import S3Store  # noqa: E402


def main() -> None:
    args = parse_args()
    quiet_logs()
    config = {
        "endpoint": args.endpoint,
        "access_key_id": args.access_key,
        "secret_access_key": args.secret_key,
        "region": args.region,
        "virtual_hosted_style_request": False,
    }
    if UNSIGNED:
        config["unsigned_payload"] = True
    store = S3Store(
        args.bucket,
        config=config,
        client_options={"allow_http": True},
    )
    k, size = args.key, args.size
    opts = {"chunk_size": args.part_size, "max_concurrency": args.concurrency}

    def run() -> int:
        if args.scenario == "upload_file":
            obstore.put(store, k, Path(args.file), **opts)
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
        if args.scenario in ("download_file", "download_stream"):
            result = obstore.get(store, k)
            target = open(args.out, "wb") if args.scenario == "download_file" else NullSink()
            try:
                for chunk in result.stream(min_chunk_size=args.part_size):
                    target.write(chunk)
            finally:
                if args.scenario == "download_file":
                    target.close()
            return os.path.getsize(args.out) if args.scenario == "download_file" else target.count
        if args.scenario in ("many_small", "concurrent"):
            small = args.scenario == "many_small"
            block = os.urandom(size)

            async def all_puts() -> int:
                sem = asyncio.Semaphore(args.concurrency if small else args.count)

                async def one(i: int) -> int:
                    async with sem:
                        source = block if small else chunks(size)
                        await obstore.put_async(store, f"{k}/{i}", source, **opts)
                    return size

                return sum(await asyncio.gather(*(one(i) for i in range(args.count))))

            return asyncio.run(all_puts())
        raise Unsupported(f"obstore has no {args.scenario} here")

    measure(run, note=f"obstore {obstore.__version__}" + (", unsigned payload" if UNSIGNED else ""))


if __name__ == "__main__":
    main()
