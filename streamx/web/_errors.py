"""WebError: a refusal, answered as JSON with its HTTP status (every route, every adapter);
:func:`web_error_for`: the answer for each streamx error."""

from __future__ import annotations

from typing import Any

from .._errors import (
    AccessDeniedError,
    ConditionalConflictError,
    ConfigError,
    NetworkError,
    NotFoundError,
    PartLimitError,
    PreconditionFailedError,
    S3Error,
    ServiceUnavailableError,
    StreamxError,
)


class WebError(Exception):
    """A refusal, answered as ``{"error": message, "code": code}`` with HTTP ``status``."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or {
            400: "bad_request",
            401: "unauthenticated",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            408: "timeout",
            413: "too_large",
            415: "unsupported_media_type",
            499: "client_disconnected",
        }.get(status, "storage_error")

    def payload(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code}


def web_error_for(exc: StreamxError) -> WebError:
    """The answer for a streamx error; the message carries no URL and no credential.

    A failed ``If-None-Match: *`` (``UploadSettings.overwrite=False``) is a 409: the key
    is taken (``object_exists``), or another conditional write to it won (``write_conflict``).
    """
    if isinstance(exc, ConfigError):
        return WebError(400, exc.message)
    if isinstance(exc, PartLimitError):
        return WebError(413, exc.message)
    if isinstance(exc, PreconditionFailedError):
        return WebError(
            409,
            f"an object already exists at {(exc.key or '')[:200]!r} and this server does not "
            "let uploads replace objects: nothing was written; choose another key",
            "object_exists",
        )
    if isinstance(exc, ConditionalConflictError):
        return WebError(
            409,
            f"another upload to {(exc.key or '')[:200]!r} finished at the same time: nothing "
            "was written; try again",
            "write_conflict",
        )
    if isinstance(exc, NotFoundError):
        what = "multipart upload" if exc.code == "NoSuchUpload" or exc.upload_id else "object"
        return WebError(404, f"no such {what}", "not_found")
    if isinstance(exc, AccessDeniedError):
        return WebError(502, "the storage refused this server's credentials", "storage_denied")
    if isinstance(exc, ServiceUnavailableError | NetworkError):
        return WebError(503, "the storage is unavailable; try again", "storage_unavailable")
    if isinstance(exc, S3Error) and exc.status is not None and 400 <= exc.status < 500:
        return WebError(400, f"the storage refused the request: {exc.code or exc.status}")
    return WebError(502, f"the storage failed: {type(exc).__name__}")
