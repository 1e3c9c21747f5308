"""``streamx rm``: delete keys, or everything under a prefix, in batches of 1,000.

S3 reports a key that does not exist as deleted, so ``rm`` looks each named
key up first (one HEAD each) and says which are not there (exit 3), and
whether a missing key is a prefix that ``--recursive`` would delete; the keys
that exist are deleted all the same. A missing bucket is an error. With ``--recursive`` the prefix is read as a
directory (``s3://b/logs`` deletes ``logs/…``, not ``logs-old/…``), and the
listing streams into the batches, so memory does not grow with the prefix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import click

from .._engine import Engine
from .._errors import NotFoundError
from .._s3 import _DENIED, _NOT_FOUND
from ._common import Options, Output, common_options, make_engine, options, run_async
from ._exit import EXIT_ACCESS_DENIED, EXIT_NOT_FOUND, EXIT_OK, EXIT_TRANSFER, UsageError
from ._location import S3Location, parse_s3


async def _keys_under(engine: Engine, location: S3Location) -> AsyncIterator[str]:
    async for info in engine.list(location.bucket, location.dir_prefix):
        yield info.key


async def _not_objects(engine: Engine, bucket: str, keys: list[str]) -> dict[str, str]:
    """The named keys that are not objects, each with what to say about it."""
    missing: dict[str, str] = {}
    errors: list[Exception] = []
    limiter = anyio.CapacityLimiter(16)

    async def look(key: str) -> None:
        async with limiter:
            try:
                try:
                    await engine.head(bucket, key)
                    return
                except NotFoundError:
                    pass
                under = key.rstrip("/") + "/"
                async for _ in engine.list(bucket, under, page_size=1):  # NoSuchBucket: here
                    missing[key] = (
                        f"no such object; s3://{bucket}/{under} is a prefix: "
                        "add --recursive to delete what is under it"
                    )
                    return
                missing[key] = "no such object"
            except Exception as exc:  # reported as the command's one error, not as a group
                errors.append(exc)

    async with anyio.create_task_group() as tg:
        for key in dict.fromkeys(keys):
            tg.start_soon(look, key)
    if errors:
        raise errors[0]
    return missing


def _code_for(codes: set[str]) -> int:
    if codes and codes <= _DENIED:
        return EXIT_ACCESS_DENIED
    if codes and codes <= _NOT_FOUND:
        return EXIT_NOT_FOUND
    return EXIT_TRANSFER


async def _rm(opts: Options, locations: list[S3Location], recursive: bool, dry_run: bool) -> int:
    out = Output(opts)
    verb = "would delete" if dry_run else "delete"
    failed_codes: set[str] = set()
    count = 0
    async with make_engine(opts) as engine:
        for bucket in dict.fromkeys(loc.bucket for loc in locations):
            here = [loc for loc in locations if loc.bucket == bucket]
            keys: Any
            if recursive:
                keys = _chain([_keys_under(engine, loc) for loc in here])
            else:
                named = [loc.key for loc in here]
                missing = await _not_objects(engine, bucket, named)
                for key in named:
                    if key in missing:
                        failed_codes.add("NoSuchKey")
                        out.record({"key": key, "bucket": bucket, "error": "NoSuchKey"})
                        out.error(f"s3://{bucket}/{key}: {missing[key]}")
                keys = [key for key in dict.fromkeys(named) if key not in missing]
            if dry_run:
                async for key in _aiter(keys):
                    count += 1
                    out.record({"key": key, "bucket": bucket, "deleted": False})
                    out.line(f"{verb}: s3://{bucket}/{key}")
                continue
            result = await engine.delete_many(bucket, keys)
            for key in result.deleted:
                count += 1
                out.record({"key": key, "bucket": bucket, "deleted": True})
                out.info(f"{verb}: s3://{bucket}/{key}")
            for error in result.errors:
                failed_codes.add(error.code)
                out.record(
                    {
                        "key": error.key,
                        "bucket": bucket,
                        "error": error.code,
                        "message": error.message,
                    }
                )
                reason = error.message or "the server gave no reason"
                out.error(f"s3://{bucket}/{error.key}: {error.code}: {reason}")
    if failed_codes:
        return _code_for(failed_codes)
    out.info(
        f"{'would delete' if dry_run else 'deleted'} {count} object{'s' if count != 1 else ''}"
    )
    return EXIT_OK


async def _aiter(keys: Any) -> AsyncIterator[str]:
    if hasattr(keys, "__aiter__"):
        async for key in keys:
            yield key
    else:
        for key in keys:
            yield key


async def _chain(iterators: list[AsyncIterator[str]]) -> AsyncIterator[str]:
    for iterator in iterators:
        async for key in iterator:
            yield key


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("urls", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Delete everything under each prefix.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
@common_options
def rm(urls: tuple[str, ...], recursive: bool, dry_run: bool) -> int:
    """Delete objects: s3://bucket/key ..., or --recursive s3://bucket/prefix.

    \b
      streamx rm s3://bucket/a.txt s3://bucket/b.txt
      streamx rm --recursive s3://bucket/tmp/ --dry-run
    """
    locations = [parse_s3(url, "each argument of rm") for url in urls]
    for location in locations:
        if not recursive and location.is_dir:
            raise UsageError(f"{location} is a prefix; add --recursive to delete what is under it")
    opts = options()
    return run_async(lambda: _rm(opts, locations, recursive, dry_run))
