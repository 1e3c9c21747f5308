"""Checksums computed once, from the bytes the producer read.

CRC32C and CRC64NVME come from awscrt (tens of GiB/s per core, the same code
botocore uses when it has the CRT); CRC32 from python-isal (Intel's ISA-L):
awscrt's CRC32 measured 3.1 GiB/s on this project's Xeon (best of 50 passes over
1 MiB), isal's about 100 GiB/s (awscrt's CRC32C: 83), and CRC32 is what objects
written by boto3 >= 1.36 and the AWS CLI carry, so a download verifies it. CRCs
can be *combined* (awscrt), so the full-object value is derived from the part
values without reading the bytes twice. SHA256 cannot be combined: its
full-object form is S3's composite checksum (the SHA256 of the concatenated part digests, suffixed ``-N``).

Multipart uploads ask for the FULL_OBJECT checksum type where the algorithm
allows it (the CRCs), so the value S3 stores is the plain checksum of the
whole object, comparable with a single-PUT object and with what a reader
computes while streaming; SHA256 uses COMPOSITE. Stores that ignore the type
(MinIO) report a composite value, which is recognised by its ``-N`` suffix or
its ``ChecksumType``.

:func:`checksum_errors` turns the two checksum-related answers a store may
give into errors that say what to do: a part damaged in transit (BadDigest:
a :class:`~streamx.ChecksumError`, which the part retry resends), and a store
that does not accept checksum headers at all (an :class:`~streamx.S3Error`
naming ``TransferConfig.checksum``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from awscrt import checksums as _crt
from isal import isal_zlib

from ._errors import ChecksumError, S3Error
from ._gathered import Gathered, hashed, pieces

Buffer = bytes | bytearray | memoryview

_CRC_WIDTH = {"CRC32C": 4, "CRC32": 4, "CRC64NVME": 8}
_CRC_FN = {"CRC32C": _crt.crc32c, "CRC32": isal_zlib.crc32, "CRC64NVME": _crt.crc64nvme}
_CRC_COMBINE = {
    "CRC32C": _crt.combine_crc32c,
    "CRC32": _crt.combine_crc32,
    "CRC64NVME": _crt.combine_crc64nvme,
}


@dataclass(frozen=True, slots=True)
class PartChecksum:
    """One part's checksum: the raw value and its length (needed to combine CRCs)."""

    algorithm: str
    raw: bytes
    length: int

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")


def compute(algorithm: str, data: Buffer | Gathered) -> PartChecksum:
    if algorithm == "SHA256":
        return PartChecksum(algorithm, hashed("sha256", data).digest(), len(data))
    width = _CRC_WIDTH[algorithm]
    crc, value = _CRC_FN[algorithm], 0
    for piece in pieces(data):
        value = crc(piece, value)
    return PartChecksum(algorithm, value.to_bytes(width, "big"), len(data))


def supports_full_object(algorithm: str) -> bool:
    return algorithm in _CRC_WIDTH


def checksum_type(algorithm: str) -> str:
    """The multipart checksum type streamx asks for: FULL_OBJECT for CRCs, else COMPOSITE."""
    return "FULL_OBJECT" if supports_full_object(algorithm) else "COMPOSITE"


def from_b64(algorithm: str, value: str, length: int) -> PartChecksum:
    """A recorded base64 value back into a :class:`PartChecksum`."""
    return PartChecksum(algorithm, base64.b64decode(value), length)


# Codes with which a store says the bytes it received do not match their checksum.
DAMAGED_CODES = frozenset(
    {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch"}
)
_REJECTION_CODES = frozenset(
    {"InvalidArgument", "InvalidRequest", "NotImplemented", "BadRequest", "UnsupportedHeader"}
)


@contextmanager
def checksum_errors(sent: bool) -> Iterator[None]:
    """Explain checksum-related S3 errors; ``sent``: checksum headers were on the request."""
    try:
        yield
    except S3Error as exc:
        if exc.code in DAMAGED_CODES:
            raise ChecksumError(
                f"the store found the bytes it received damaged ({exc.code}); "
                "they differ from the bytes read from the source",
                bucket=exc.bucket,
                key=exc.key,
                upload_id=exc.upload_id,
                part_number=exc.part_number,
            ) from exc
        rejected = exc.code in _REJECTION_CODES or exc.status in (400, 501)
        if sent and rejected and "checksum" in exc.message.lower():
            raise S3Error(
                f"{exc.message}. This store does not accept S3's checksum headers: use "
                "TransferConfig(checksum='when_required') (or checksum='off') for it",
                code=exc.code,
                status=exc.status,
                bucket=exc.bucket,
                key=exc.key,
                upload_id=exc.upload_id,
                part_number=exc.part_number,
            ) from exc
        raise


def combine(parts: Sequence[PartChecksum]) -> PartChecksum:
    """The full-object CRC of the concatenation of ``parts``, in order."""
    if not parts:
        raise ValueError("nothing to combine")
    algorithm = parts[0].algorithm
    if algorithm not in _CRC_WIDTH:
        raise ValueError(f"{algorithm} cannot be combined; use composite()")
    fn = _CRC_COMBINE[algorithm]
    value = int.from_bytes(parts[0].raw, "big")
    total = parts[0].length
    for part in parts[1:]:
        value = fn(value, int.from_bytes(part.raw, "big"), part.length)
        total += part.length
    return PartChecksum(algorithm, value.to_bytes(_CRC_WIDTH[algorithm], "big"), total)


def composite(parts: Sequence[PartChecksum]) -> str:
    """S3's COMPOSITE multipart checksum: ``b64(H(h1 || h2 || ...))-N``."""
    algorithm = parts[0].algorithm
    joined = b"".join(p.raw for p in parts)
    if algorithm == "SHA256":
        raw = hashlib.sha256(joined).digest()
    else:
        raw = compute(algorithm, joined).raw
    return f"{base64.b64encode(raw).decode('ascii')}-{len(parts)}"


def param_name(algorithm: str) -> str:
    """The botocore parameter / response field: ``ChecksumCRC32C`` etc."""
    return f"Checksum{algorithm}"


class Running:
    """A checksum updated as bytes stream past (used by downloads and streams)."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.length = 0
        self._sha = hashlib.sha256() if algorithm == "SHA256" else None
        self._crc = 0

    def update(self, data: Buffer) -> None:
        if self._sha is not None:
            self._sha.update(data)
        else:
            self._crc = _CRC_FN[self.algorithm](data, self._crc)
        self.length += len(data)

    def result(self) -> PartChecksum:
        if self._sha is not None:
            return PartChecksum(self.algorithm, self._sha.digest(), self.length)
        width = _CRC_WIDTH[self.algorithm]
        return PartChecksum(self.algorithm, self._crc.to_bytes(width, "big"), self.length)
