"""Presigned requests, which a browser (or any client without credentials) sends:
``engine.presign_url`` and ``engine.presign_post`` (see :mod:`.multipart` for the rest of
the narrow API). A presigned URL is a credential until it expires: streamx never logs it.
"""

from __future__ import annotations

from typing import Any

from .._errors import ConfigError
from .._validate import check_bucket_key
from .base import EngineBase

#: The operations :meth:`PresignAPI.presign_url` signs.
PRESIGNABLE = ("put_object", "get_object", "upload_part", "head_object")

#: Presigned URLs last at most 7 days (SigV4's limit).
MAX_EXPIRES_IN = 7 * 24 * 3600


def check_expires_in(expires_in: object) -> int:
    """A presigned request's lifetime in seconds: 1 to 7 days' worth."""
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 1 <= expires_in <= MAX_EXPIRES_IN
    ):
        raise ConfigError(
            f"expires_in must be an int of seconds from 1 to {MAX_EXPIRES_IN:,} (7 days, "
            f"SigV4's limit), not {expires_in!r}"
        )
    return expires_in


class PresignAPI(EngineBase):
    """``engine.presign_url`` and ``engine.presign_post``."""

    async def presign_url(
        self, operation: str, bucket: str, key: str, *, expires_in: int, **params: Any
    ) -> str:
        """A presigned URL for ``operation`` (``"put_object"``, ``"get_object"``,
        ``"upload_part"``) of ``bucket/key``, valid ``expires_in`` seconds.

        ``params`` that map to headers (``ContentType``, ``ContentLength``,
        ``IfNoneMatch``) are signed: the client must send exactly those values. The
        URL is a credential until it expires: streamx never logs it.
        """
        check_bucket_key(bucket, key)
        if operation not in PRESIGNABLE:
            raise ConfigError(f"operation must be one of {PRESIGNABLE}, not {operation!r}")
        lifetime = check_expires_in(expires_in)
        return await self._s3_layer.presign_url(
            operation, {"Bucket": bucket, "Key": key, **params}, lifetime
        )

    async def presign_post(
        self,
        bucket: str,
        key: str,
        *,
        fields: dict[str, Any],
        conditions: list[Any],
        expires_in: int,
    ) -> dict[str, Any]:
        """A browser POST upload form for ``bucket/key``: ``{"url": ..., "fields": {...}}``
        whose policy holds ``fields`` and ``conditions`` (``content-length-range`` ...)."""
        check_bucket_key(bucket, key)
        lifetime = check_expires_in(expires_in)
        return await self._s3_layer.presign_post(bucket, key, fields, conditions, lifetime)
