"""A source below ``multipart_threshold``: one PutObject, retried, checked, verified.

The whole source is already in memory (the parts the producer read); it is sent
as one body, the write conditions go on the request, and the stored checksum
is checked against the one computed while reading (see :mod:`.completer` for
what a mismatch decides).
"""

from __future__ import annotations

from typing import Any

from .._checksum import checksum_errors, compute, param_name
from .._conditions import is_our_object, precondition_errors
from .._config import TransferConfig
from .._errors import ChecksumError, PreconditionFailedError
from .._events import Progress
from .._gathered import Gathered, pieces
from .._results import UploadResult
from .._retry import RetryPolicy
from .._stores import check_conditions, condition_points
from .completer import settle_mismatch, verify_checksum
from .parts import Part
from .target import PutTarget
from .uploader import CompletedPart, check_not_emptied


class SinglePut:
    """One PutObject for an upload whose source fits below ``multipart_threshold``."""

    def __init__(
        self,
        target: PutTarget,
        *,
        config: TransferConfig,
        retry: RetryPolicy,
        progress: Progress,
    ) -> None:
        t = target
        self.s3, self.bucket, self.key, self.log = t.s3, t.bucket, t.key, t.log
        self.put_args, self.conditions, self.store = t.put_args, t.conditions, t.store
        self.algorithm, self.send_checksums = t.algorithm, t.send_checksums
        self.config = config
        self.retry = retry
        self.progress = progress

    async def run(self, head: list[Part]) -> UploadResult:
        """Send ``head`` (every part of the source) as one PutObject and check the answer."""
        check_conditions(self.store, condition_points("upload", self.conditions, multipart=False))
        body: Any = (
            head[0].data
            if len(head) == 1
            else Gathered([piece for part in head for piece in pieces(part.data)])
        )
        params = {**self.put_args, **self.conditions}
        checksums = [p.checksum for p in head if p.checksum is not None]
        if self.algorithm and len(head) > 1:
            checksums = [compute(self.algorithm, body)]
        if self.send_checksums and checksums and self.algorithm:
            # naming the algorithm makes stores keep the value (moto stores it only then)
            params["ChecksumAlgorithm"] = self.algorithm
            params[param_name(self.algorithm)] = checksums[0].b64

        async def attempt() -> dict[str, Any]:
            with checksum_errors(self.send_checksums):
                return await self.s3.put_object(
                    self.bucket,
                    self.key,
                    body,
                    stall_timeout=self.config.stall_timeout,
                    time_limit=self.config.part_timeout or None,
                    **params,
                )

        async def on_retry(attempt_no: int, exc: BaseException) -> None:
            self.progress.bytes_retried += len(body)
            self.log.warning("upload.put.retry", attempt=attempt_no, error=type(exc).__name__)

        try:
            with precondition_errors(self.conditions):
                response = await self.retry.call(
                    attempt, timeout=self.config.part_timeout or None, on_retry=on_retry
                )
        except PreconditionFailedError:
            # after a retry, a 412 may answer our own first attempt (it landed, its
            # answer was lost): the stored object is then ours, byte for byte
            if not self.progress.bytes_retried or not await is_our_object(
                self.s3, self.bucket, self.key, body, checksums
            ):
                raise
            response = await self.s3.head_object(self.bucket, self.key, ChecksumMode="ENABLED")
        # not retried: the same request would be emptied the same way; the object the
        # store now holds is empty, and the error says so
        check_not_emptied(response, len(body), "PutObject", bucket=self.bucket, key=self.key)
        sent = self.algorithm if self.send_checksums else None  # else the store has none
        if self.s3.checksums_untrusted:  # caught reporting wrong values: ours stand
            response = {k: v for k, v in response.items() if not k.startswith("Checksum")}
        try:
            checksum = verify_checksum(
                response, checksums, sent, multipart=False, bucket=self.bucket, key=self.key
            )
        except ChecksumError as exc:  # corrupt bytes, or a store computing wrong: read back
            assert sent is not None
            part = CompletedPart(1, str(response.get("ETag", "")), len(body), checksums[0])
            context = {"bucket": self.bucket, "key": self.key, "upload_id": None}
            checksum = await settle_mismatch(
                self.s3, response, [part], sent, exc, self.config.abort_timeout, context
            )
        await self.progress.advance(len(body), parts=1)
        return UploadResult(
            bucket=self.bucket,
            key=self.key,
            etag=str(response.get("ETag", "")),
            size=len(body),
            part_count=1,
            version_id=response.get("VersionId"),
            checksum=checksum,
            checksum_algorithm=self.algorithm if checksum else None,
        )

