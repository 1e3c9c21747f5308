"""``streamx ls``: buckets, or the objects under a prefix (with sizes and dates)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from .._s3 import map_errors
from ._common import Options, Output, common_options, human_size, make_engine, options, run_async
from ._exit import EXIT_OK
from ._location import parse_s3

_PREFIX_COLUMN = "PRE"


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return " " * 19


def _size(n: int, human: bool) -> str:
    return f"{human_size(n):>10}" if human else f"{n:>12}"


async def _buckets(opts: Options, out: Output) -> int:
    async with make_engine(opts) as engine:
        with map_errors("ListBuckets"):
            response = await engine.client.list_buckets()
    for bucket in response.get("Buckets", []):
        out.record({"bucket": bucket["Name"], "created": bucket.get("CreationDate")})
        out.line(f"{_when(bucket.get('CreationDate'))}  {bucket['Name']}")
    return EXIT_OK


async def _objects(
    opts: Options, out: Output, url: str, recursive: bool, human: bool, summarize: bool
) -> int:
    location = parse_s3(url)
    prefix = location.key
    count = total = 0
    async with make_engine(opts) as engine:
        delimiter = None if recursive else "/"
        async for info in engine.list(location.bucket, prefix, delimiter=delimiter):
            if info.is_prefix:
                out.record({"prefix": info.key})
                width = 10 if human else 12
                out.line(f"{'':19}  {_PREFIX_COLUMN:>{width}}  {info.key}")
                continue
            count += 1
            total += info.size
            out.record(
                {
                    "key": info.key,
                    "size": info.size,
                    "last_modified": info.last_modified.isoformat() if info.last_modified else None,
                    "etag": info.etag,
                    "storage_class": info.storage_class,
                }
            )
            out.line(f"{_when(info.last_modified)}  {_size(info.size, human)}  {info.key}")
    if summarize:
        out.line(f"\nTotal objects: {count}\nTotal size: {_size(total, human).strip()}")
    return EXIT_OK


@click.command(context_settings={"help_option_names": ["--help"]})
@click.argument("url", required=False)
@click.option("-r", "--recursive", is_flag=True, help="Every key under the prefix, not one level.")
@click.option("-h", "--human-readable", "human", is_flag=True, help="Sizes as KiB, MiB, GiB.")
@click.option("--summarize", is_flag=True, help="Print the number of objects and their total size.")
@common_options
def ls(url: str | None, recursive: bool, human: bool, summarize: bool) -> int:
    """List buckets, or the objects under s3://bucket/prefix.

    \b
    Without --recursive, keys are grouped at the next '/' (shown as PRE).
    Columns: date and time (local), size in bytes, full key.
    """
    opts = options()
    out = Output(opts)
    if url is None or url == "s3://":
        return run_async(lambda: _buckets(opts, out))
    parse_s3(url)  # a usage error before any request
    return run_async(lambda: _objects(opts, out, url, recursive, human, summarize))
