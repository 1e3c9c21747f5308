"""Download verification: which stored checksum to trust, and checking the bytes read against it.

**What a store reports.** S3 keeps a full-object checksum for objects
uploaded with one (a single PUT with ``x-amz-checksum-*``, or a multipart
upload completed with ``ChecksumType=FULL_OBJECT`` — what streamx's uploads
ask for with the CRCs), and a *composite* one (a checksum of the part
checksums, suffixed ``-N``) for other multipart uploads. Measured here:

* **AWS / moto** report checksums only when asked (``ChecksumMode=ENABLED``).
  moto's GET then gives a composite value with its ``-N`` suffix and
  ``ChecksumType=COMPOSITE``, but its HEAD gives the same composite value
  *without* the suffix, and for an object uploaded without a checksum type
  no ``ChecksumType`` at all: it looks like a full-object value and is not.
  A FULL_OBJECT multipart upload is reported correctly (type and value).
* moto keeps a single PUT's checksum only when the request names the
  algorithm (``x-amz-sdk-checksum-algorithm``, botocore's
  ``ChecksumAlgorithm``); a PUT that sends only the value
  (``x-amz-checksum-crc32c``) is stored without one, so there is nothing
  to verify a download of it against.
* **rclone** keeps the checksum of a single PUT and sends it on every GET,
  asked or not, ranged or not (a ranged GET carries the *whole object's*
  CRC, which is why botocore's own validation must stay off for ranges). A
  multipart object gets ``ChecksumType`` and no value at all.

So a value is trusted only when its type can be told: ``ChecksumType:
FULL_OBJECT``, or no type and an object that is not multipart (its ETag has
no ``-N`` suffix: a single PUT). Composite values (a ``-N`` suffix, or
``ChecksumType: COMPOSITE``) cannot be checked against a stream without the
part boundaries and are ignored here, as is a value of unknown type on a
multipart object (``download_file`` without a checkpoint verifies a
composite object part by part where the store allows it: :mod:`.parts`). A checksum header on a *partial* response is never used
(no standard says whether it describes the range or the object): the value
comes from a HEAD (``ChecksumMode=ENABLED``), or from a GET that returned the
whole object.

**Why not botocore's validation.** Asking for ``ChecksumMode=ENABLED`` on a
GET makes botocore validate the body itself: a second computation, an error
that is not a :class:`~streamx.ChecksumError`, a false failure on rclone's
ranged answers, and a truncated body reported as damage instead of being
resumed. streamx's clients keep ``response_checksum_validation=
"when_required"`` and never send ``ChecksumMode`` on a GET.

**Computed once.** Parallel downloads compute each range's CRC as it
arrives and combine them in order (:func:`streamx._checksum.combine`): no
second read. SHA256 cannot be combined, so a SHA256-only object is verified
where bytes pass in order (``download()``, ``download_to``) and not by
``download_file``; that is logged (``download.checksum.unverified``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from .._checksum import PartChecksum, combine, compute, param_name, supports_full_object
from .._errors import ChecksumError, StreamxError
from .._log import log
from .._retry import RetryPolicy
from .._s3 import S3

#: Algorithms a download can check, most preferred first when a store reports several.
ALGORITHMS = ("CRC64NVME", "CRC32C", "CRC32", "SHA256")
#: The per-range checksum a checkpoint records when the store reports none.
FALLBACK_ALGORITHM = "CRC32C"
_MULTIPART_ETAG = re.compile(r'-\d+"?$')
_SLOW = {"CRC32", "SHA256"}  # about 1 GiB/s: large buffers go to a worker thread
_THREAD_AT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredChecksum:
    """A full-object checksum the store reports, of a type that could be told."""

    algorithm: str
    value: str  # base64

    @property
    def combinable(self) -> bool:
        return supports_full_object(self.algorithm)


def stored_checksum(response: Mapping[str, Any]) -> tuple[StoredChecksum | None, str]:
    """The trusted full-object checksum in a HEAD or whole-object GET, and why (not)."""
    kind = response.get("ChecksumType")
    multipart = bool(_MULTIPART_ETAG.search(str(response.get("ETag") or "")))
    reason = "the store reports no checksum for the object"
    for algorithm in ALGORITHMS:
        value = response.get(param_name(algorithm))
        if not value:
            continue
        value = str(value)
        if re.search(r"-\d+$", value) or kind == "COMPOSITE":
            reason = f"the store reports a composite {algorithm} (a checksum of part checksums)"
        elif kind == "FULL_OBJECT" or (kind is None and not multipart):
            return StoredChecksum(algorithm, value), "ok"
        else:
            reason = (
                f"the store reports {algorithm} {value} without a checksum type for a "
                "multipart object: it cannot be told from a composite value"
            )
    return None, reason


async def checksum_of(algorithm: str, data: bytes | bytearray | memoryview) -> PartChecksum:
    """One buffer's checksum; slow algorithms on large buffers run in a worker thread."""
    if algorithm in _SLOW and len(data) >= _THREAD_AT:
        return await anyio.to_thread.run_sync(compute, algorithm, data)
    return compute(algorithm, data)


async def probe(
    s3: S3, bucket: str, key: str, etag: str | None, retry: RetryPolicy
) -> tuple[StoredChecksum | None, str]:
    """The stored checksum from one ``HeadObject(ChecksumMode=ENABLED)``.

    A failed HEAD (no permission, ...) or one that describes another version
    of the object means the download cannot be checked; it is not a failure
    of the download (the ranged GETs catch a replaced object themselves).
    """

    async def head() -> dict[str, Any]:
        return await s3.head_object(bucket, key, ChecksumMode="ENABLED")

    try:
        response = await retry.call(head)
    except StreamxError as exc:
        return None, f"HeadObject failed: {exc.message}"
    if etag is not None and response.get("ETag") not in (None, etag):
        return None, "the object was replaced while its checksum was asked for"
    return stored_checksum(response)


def check(
    expected: StoredChecksum, ours: PartChecksum, *, bucket: str, key: str, what: str
) -> None:
    """Raise :class:`~streamx.ChecksumError` unless ``ours`` is the stored value."""
    if ours.b64 != expected.value:
        raise ChecksumError(
            f"the {what} has {expected.algorithm} {ours.b64} but the store reports "
            f"{expected.value} for the object: bytes were changed on the way",
            bucket=bucket,
            key=key,
        )
    log.debug("download.checksum.verified", bucket=bucket, key=key, algorithm=expected.algorithm)


def unverified(bucket: str, key: str, reason: str) -> None:
    log.debug("download.checksum.unverified", bucket=bucket, key=key, reason=reason)


class RangeSums:
    """Per-range checksums of a parallel download, combined in order at the end.

    The algorithm is known once the stored checksum is (``settle``); ranges
    that finish before that wait for it, so each range is hashed exactly once.
    """

    def __init__(self, bucket: str, key: str) -> None:
        self.bucket = bucket
        self.key = key
        self.expected: StoredChecksum | None = None
        self.reason = "verification is off (TransferConfig.checksum='off')"
        self.algorithm: str | None = None
        self.sums: dict[int, PartChecksum] = {}
        self._settled = anyio.Event()

    def settle(
        self, expected: StoredChecksum | None, reason: str, *, fallback: str | None = None
    ) -> None:
        """Fix the stored value and the per-range algorithm (``fallback`` if none can be used)."""
        self.expected, self.reason = expected, reason
        if expected is not None and expected.combinable:
            self.algorithm = expected.algorithm
        else:
            self.algorithm = fallback
        self._settled.set()

    async def wait(self) -> None:
        """Until the stored checksum is known (or known to be absent)."""
        await self._settled.wait()

    async def add(self, index: int, data: bytes | bytearray | memoryview) -> PartChecksum | None:
        await self._settled.wait()
        if self.algorithm is None:
            return None
        value = await checksum_of(self.algorithm, data)
        self.sums[index] = value
        return value

    def verify(self, count: int, what: str) -> None:
        """Check ranges ``0 .. count-1`` (all recorded) against the stored value, if usable."""
        expected = self.expected
        if expected is None:
            unverified(self.bucket, self.key, self.reason)
            return
        if not expected.combinable:
            unverified(
                self.bucket,
                self.key,
                f"{expected.algorithm} cannot be combined from ranges fetched in parallel",
            )
            return
        if count == 0:  # an empty object: the checksum of no bytes
            ours = compute(expected.algorithm, b"")
        else:
            ours = combine([self.sums[i] for i in range(count)])
        check(expected, ours, bucket=self.bucket, key=self.key, what=what)
