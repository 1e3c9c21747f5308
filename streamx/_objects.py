"""Small frozen result objects of the read side and the object API.

``head`` and ``list`` describe objects with :class:`ObjectInfo`; each verb
returns one result object (``DownloadResult``, ``DeleteResult``,
``CopyResult``, ``MigrationResult``) rather than a dict, so callers get
attribute names a type checker knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object (or, from a listing with a delimiter, one common prefix).

    ``content_type`` and ``metadata`` are known from ``head`` only (a listing
    does not return them); ``is_prefix`` marks a common prefix of a listing
    with a delimiter (its ``size`` is 0 and it has no ETag).
    """

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    version_id: str | None = None
    storage_class: str | None = None
    is_prefix: bool = False

    @classmethod
    def from_head(cls, key: str, response: Mapping[str, Any]) -> ObjectInfo:
        return cls(
            key=key,
            size=int(response.get("ContentLength", 0)),
            etag=response.get("ETag"),
            last_modified=response.get("LastModified"),
            content_type=response.get("ContentType"),
            metadata=dict(response.get("Metadata") or {}),
            version_id=response.get("VersionId"),
            storage_class=response.get("StorageClass"),
        )

    @classmethod
    def from_listing(cls, entry: Mapping[str, Any]) -> ObjectInfo:
        return cls(
            key=str(entry["Key"]),
            size=int(entry.get("Size", 0)),
            etag=entry.get("ETag"),
            last_modified=entry.get("LastModified"),
            storage_class=entry.get("StorageClass"),
        )

    @classmethod
    def prefix(cls, prefix: str) -> ObjectInfo:
        return cls(key=prefix, size=0, is_prefix=True)


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """What a download delivered: ``size`` bytes of the object version ``etag``.

    ``path`` is the file written by ``download_file`` (``None`` for a sink);
    ``requests`` counts the ranged GETs sent, retries included.
    """

    bucket: str
    key: str
    size: int
    etag: str | None
    ranges: int
    requests: int
    path: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteError:
    """One key that S3 did not delete, with S3's error code and message."""

    key: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """The keys deleted and the per-key failures of a ``delete_many``.

    S3 reports a key that did not exist as deleted (deletion is idempotent).
    """

    deleted: tuple[str, ...]
    errors: tuple[DeleteError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class CopyResult:
    """A copied object: ``part_count`` is 1 for a single CopyObject or a one-shot migration."""

    bucket: str
    key: str
    etag: str
    size: int
    part_count: int
    version_id: str | None = None
    upload_id: str | None = None


@dataclass(frozen=True, slots=True)
class MigrationFailure:
    """An object a migration could not copy, and why (the exception, cause chained)."""

    key: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What a prefix migration did: objects and bytes copied, and each failure."""

    copied: int
    bytes_copied: int
    failed: tuple[MigrationFailure, ...]

    @property
    def ok(self) -> bool:
        return not self.failed
