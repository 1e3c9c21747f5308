"""Small frozen result objects returned by the public API."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What an upload produced.

    ``checksum`` is the full-object checksum as S3 reports it (base64, with a
    ``-N`` suffix for a composite multipart checksum), ``None`` when checksums
    are off. ``upload_id`` is ``None`` for a single PutObject.
    """

    bucket: str
    key: str
    etag: str
    size: int
    part_count: int
    version_id: str | None = None
    upload_id: str | None = None
    checksum: str | None = None
    checksum_algorithm: str | None = None
