"""WebError: a refusal, answered as JSON with its HTTP status (every route, every adapter)."""

from __future__ import annotations

from typing import Any


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
