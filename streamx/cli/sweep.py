"""``streamx sweep``: abort unfinished multipart uploads older than a given age.

The prefix is a plain key prefix (``s3://b/logs`` matches ``logs/…`` and
``logs-old/…``). Unfinished uploads are billed as storage until aborted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from ..maintenance import StaleUpload
from ._common import DURATION, Options, Output, common_options, make_engine, options, run_async
from ._exit import EXIT_OK
from ._location import S3Location, parse_s3


def _age(age: dt.timedelta) -> str:
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


async def _sweep(
    opts: Options, location: S3Location, older_than: float, dry_run: bool, tus: str | None
) -> int:
    async with make_engine(opts) as engine:
        if tus is not None:  # first: the uploads it removes are not stale ones to report
            await _sweep_tus(opts, engine, location.bucket, tus, older_than, dry_run)
        found: list[StaleUpload] = await engine.abort_stale_uploads(
            location.bucket, location.key, older_than=older_than, dry_run=dry_run
        )
    out = Output(opts)
    verb = "would abort" if dry_run else "aborted"
    for stale in found:
        out.record(
            {
                "bucket": stale.bucket,
                "key": stale.key,
                "upload_id": stale.upload_id,
                "initiated": stale.initiated.isoformat(),
                "age_seconds": round(stale.age.total_seconds()),
                "aborted": stale.aborted,
            }
        )
        out.line(
            f"{verb}: s3://{stale.bucket}/{stale.key}  {stale.upload_id}  "
            f"(started {_age(stale.age)} ago)"
        )
    out.info(f"{verb} {len(found)} unfinished upload{'s' if len(found) != 1 else ''}")
    return EXIT_OK


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("url")
@click.option(
    "--older-than",
    type=DURATION,
    required=True,
    help="Age, e.g. 24h, 7d, 90m, or seconds. Uploads younger than this are left alone.",
)
@click.option("--dry-run", is_flag=True, help="List what would be aborted; change nothing.")
@click.option(
    "--tus",
    "tus",
    flag_value=".tus/",
    default=None,
    help="Also remove expired tus uploads (streamx.web.tus) whose state is under .tus/.",
)
@click.option("--tus-state", "tus", help="Like --tus, for another TusOptions.state_prefix.")
@common_options
def sweep(url: str, older_than: float, dry_run: bool, tus: str | None) -> int:
    """Abort unfinished multipart uploads under s3://bucket/prefix.

    \b
      streamx sweep s3://bucket/ --older-than 24h --dry-run
      streamx sweep s3://bucket/uploads/ --older-than 7d
    """
    location = parse_s3(url)
    opts = options()
    return run_async(lambda: _sweep(opts, location, older_than, dry_run, tus))


async def _sweep_tus(
    opts: Options, engine: Any, bucket: str, state: str, older_than: float, dry_run: bool
) -> None:
    from ..web.tus import sweep_expired

    removed = await sweep_expired(
        engine, bucket, state_prefix=state, orphan_age=older_than, dry_run=dry_run
    )
    out = Output(opts)
    verb = "would remove" if dry_run else "removed"
    for gone in removed:
        out.record({"bucket": bucket, "tus_upload": gone.upload, "key": gone.key})
        out.line(f"{verb}: tus upload {gone.upload} -> s3://{bucket}/{gone.key}")
    out.info(f"{verb} {len(removed)} expired tus upload{'s' if len(removed) != 1 else ''}")
