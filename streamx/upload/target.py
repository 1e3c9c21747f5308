"""What a write goes to and how: the object, its put arguments and conditions, the store's
profile, and the checksum plan — one value for the single PutObject and for Create."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._s3 import S3
from .._stores import StoreProfile


@dataclass(frozen=True, slots=True)
class PutTarget:
    """A snapshot of one upload's write plan, taken when the request is about to be made."""

    s3: S3
    bucket: str
    key: str
    put_args: dict[str, Any]
    conditions: dict[str, Any]
    store: StoreProfile
    algorithm: str | None  # the checksum computed while reading
    send_checksums: bool  # whether the store is sent (and keeps) it
    log: Any
