"""Cleanup: abort multipart uploads that were started and never finished.

An unfinished multipart upload keeps its parts on the server, and on AWS they
are billed as storage until the upload is completed or aborted. streamx aborts
its own uploads on failure, but a process killed with SIGKILL, a machine that
lost power, or another tool can leave some behind. :func:`abort_stale_uploads`
(``Engine.abort_stale_uploads``, ``streamx sweep``) finds those older than a
given age under a prefix and aborts them.

The age is the server's ``Initiated`` time against this machine's clock, so a
skewed clock shifts it: choose an ``older_than`` far above any upload that may
still be running (hours, not seconds), or an upload in progress is destroyed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import ConfigError, NotFoundError
from ._log import log
from ._s3 import S3

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True, slots=True)
class StaleUpload:
    """One unfinished multipart upload that was (or, in a dry run, would be) aborted.

    ``initiated`` is the server's timestamp (timezone-aware); ``age`` is how
    long before the sweep it was started; ``aborted`` is ``False`` in a dry run.
    """

    bucket: str
    key: str
    upload_id: str
    initiated: dt.datetime
    age: dt.timedelta
    aborted: bool


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_older_than(older_than: object) -> dt.timedelta:
    """``older_than`` as a non-negative timedelta (a number means seconds)."""
    if isinstance(older_than, dt.timedelta):
        age = older_than
    elif isinstance(older_than, int | float) and not isinstance(older_than, bool):
        if older_than != older_than or older_than in (float("inf"), float("-inf")):
            raise ConfigError(f"older_than must be a finite number of seconds, not {older_than!r}")
        try:
            age = dt.timedelta(seconds=older_than)
        except OverflowError as exc:
            raise ConfigError(f"older_than {older_than!r} seconds is too large") from exc
    else:
        raise ConfigError(
            "older_than must be a datetime.timedelta or a number of seconds, "
            f"not {type(older_than).__name__}"
        )
    if age < dt.timedelta(0):
        raise ConfigError(f"older_than must not be negative, not {age}")
    return age


def check_bucket_prefix(bucket: object, prefix: object) -> None:
    if not isinstance(bucket, str) or not bucket:
        raise ConfigError(f"bucket must be a non-empty str, not {bucket!r}")
    if "/" in bucket:
        raise ConfigError(f"bucket {bucket!r} contains '/'; pass the prefix separately")
    if not isinstance(prefix, str):
        raise ConfigError(f"prefix must be a str, not {type(prefix).__name__}")


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


async def abort_stale_uploads(
    s3: S3,
    bucket: str,
    prefix: str = "",
    *,
    older_than: dt.timedelta | float,
    dry_run: bool = False,
    clock: Clock = _utcnow,
) -> list[StaleUpload]:
    """Abort the multipart uploads under ``prefix`` started more than ``older_than`` ago.

    Returns what was aborted (with ``dry_run``, what would be, and nothing is
    changed). An upload that disappears between the listing and its abort (it
    completed, or someone else aborted it) is skipped silently. Uploads are
    aborted one at a time, in listing order; the first other failure is raised
    and the uploads after it are left as they were.
    """
    check_bucket_prefix(bucket, prefix)
    age_limit = check_older_than(older_than)
    if not isinstance(dry_run, bool):
        raise ConfigError("dry_run must be True or False")
    now = _aware(clock())
    found: list[StaleUpload] = []
    async for upload in s3.list_multipart_uploads(bucket, prefix):
        initiated = upload.get("Initiated")
        if not isinstance(initiated, dt.datetime):
            continue  # a server that does not say when: never guess
        initiated = _aware(initiated)
        age = now - initiated
        if age < age_limit:
            continue
        found.append(
            StaleUpload(
                bucket=bucket,
                key=str(upload["Key"]),
                upload_id=str(upload["UploadId"]),
                initiated=initiated,
                age=age,
                aborted=not dry_run,
            )
        )
    if dry_run:
        log.info("sweep.dry_run", bucket=bucket, prefix=prefix, stale=len(found))
        return found
    aborted: list[StaleUpload] = []
    for stale in found:
        try:
            await s3.abort_multipart_upload(bucket, stale.key, stale.upload_id)
        except NotFoundError:
            log.info("sweep.already_gone", bucket=bucket, key=stale.key, upload_id=stale.upload_id)
            continue
        log.info(
            "sweep.aborted",
            bucket=bucket,
            key=stale.key,
            upload_id=stale.upload_id,
            age_seconds=round(stale.age.total_seconds()),
        )
        aborted.append(stale)
    return aborted
