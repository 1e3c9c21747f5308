"""Aborting a multipart upload after a failure: shielded, retried, time-boxed.

Shared by uploads and server-side copies. A multipart upload left behind is
billed as storage until someone aborts it, so the abort runs shielded from
the cancellation that may have caused it, is retried like a part (a 500 or a
reset here would otherwise orphan the upload), and gives up after
``abort_timeout`` seconds. It never raises: the transfer's own error is the
one the caller sees; a failed abort is logged. An abort answered
``NoSuchUpload`` is done: the upload is gone, which is what was wanted.
"""

from __future__ import annotations

from typing import Any

import anyio

from ._config import TransferConfig
from ._errors import NotFoundError, StreamxError
from ._retry import RetryPolicy
from ._s3 import S3


async def abort_upload(
    s3: S3,
    bucket: str,
    key: str,
    upload_id: str,
    *,
    config: TransferConfig,
    retry: RetryPolicy,
    log: Any,
    what: str,
    cause: BaseException,
) -> None:
    """Abort ``upload_id``; log ``{what}.aborted``, ``.abort.failed`` or ``.abort.timeout``."""

    async def abort() -> None:
        await s3.abort_multipart_upload(bucket, key, upload_id)

    with anyio.move_on_after(config.abort_timeout, shield=True) as scope:
        try:
            await retry.call(abort, timeout=config.part_timeout or None)
        except NotFoundError as gone:
            if gone.code != "NoSuchUpload":
                log.error(f"{what}.abort.failed", error=str(gone), cause=type(cause).__name__)
                return
            # already gone (an earlier attempt's answer was lost, or the store dropped it
            # when a part was cut): nothing is left, which is what the abort is for
            log.warning(f"{what}.aborted", cause=type(cause).__name__, already_gone=True)
            return
        except StreamxError as abort_exc:
            log.error(f"{what}.abort.failed", error=str(abort_exc), cause=type(cause).__name__)
            return
    if scope.cancelled_caught:
        log.error(f"{what}.abort.timeout", seconds=config.abort_timeout)
    else:
        log.warning(f"{what}.aborted", cause=type(cause).__name__)
