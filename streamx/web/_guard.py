"""Guards of the web routes, reusable by any route (tus, a custom one): upload tokens that bind
an upload id to its key and its user, request bodies bounded in time and rate, and the CSRF
checks (JSON content type, the stream route's method, the WebSocket ``Origin``).

Upload tokens. S3 does not promise that an upload id only works with the key it was created
for (moto ignores the key), so a route that took the client's ``(key, upload_id)`` as given
would let user A list, sign, overwrite, complete or abort user B's upload by naming her own
key. Every upload id a route hands out is therefore a token, ``<S3 upload id>.<MAC>``: an
HMAC-SHA256 (truncated to 128 bits) over the bucket, the key, the S3 upload id and the caller's
identity. Clients echo it unchanged (Uppy does: it sends back the ``uploadId`` and ``key`` that
create answered); a route that takes one verifies it before anything reaches S3.

Bodies. A client that opens a body and then sends a byte now and then would hold its buffers
(and its share of a shared memory budget) for as long as it liked. :func:`guard_body` wraps a
body's chunks: every wait for the next chunk has a deadline, and once a grace period has
passed the body must arrive at a minimum average rate, counted over the time spent waiting on
the client only (time the server does not read, because S3 is slower, is the server's).
A body that breaks a limit ends with a 408 :class:`WebError`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio

from .._errors import ConfigError
from .._limits import format_size
from .._log import log
from ._errors import WebError

_PROCESS_SECRET = secrets.token_bytes(32)  # the default: tokens are valid in this process only
_MAC_BYTES = 16
_MAC_CHARS = 22  # base64url of 16 bytes, unpadded


class UploadTokenError(Exception):
    """A token that was not issued for this bucket, key and caller."""


class UploadTokens:
    """Issue and verify upload tokens (see the module docstring).

    ``secret``: bytes or text shared by every process that serves the same clients
    (several workers, replicas behind a load balancer); by default a random secret
    made when the process starts, so tokens die with the process.
    """

    def __init__(self, secret: str | bytes | None = None) -> None:
        self._secret = _PROCESS_SECRET if secret is None else check_secret(secret)

    def _mac(self, bucket: str, key: str, upload_id: str, identity: str) -> str:
        message = json.dumps(["streamx-upload-v1", bucket, key, upload_id, identity]).encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def issue(self, upload_id: str, *, bucket: str, key: str, identity: str) -> str:
        """The token a client gets instead of the bare S3 upload id."""
        return f"{upload_id}.{self._mac(bucket, key, upload_id, identity)}"

    def open(self, token: str, *, bucket: str, key: str, identity: str) -> str:
        """The S3 upload id inside ``token``; :class:`UploadTokenError` unless it was
        issued for this bucket, key and identity."""
        upload_id, dot, mac = token.rpartition(".")
        if not dot or not upload_id or len(mac) != _MAC_CHARS:
            raise UploadTokenError("not an upload token")
        expected = self._mac(bucket, key, upload_id, identity)
        if not hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii")):
            raise UploadTokenError("the upload token does not match this key and caller")
        return upload_id


def check_secret(secret: object) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes) or len(secret) < 16:
        raise ConfigError(
            "upload_secret must be at least 16 bytes (or characters) of secret, "
            "e.g. secrets.token_hex(32), the same in every process that serves the routes"
        )
    return secret


# -- request bodies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyLimits:
    """How long a request body may take (see :func:`guard_body`).

    ``read_timeout``: seconds to wait for the next chunk. ``min_rate``: bytes per second
    the body must average (0: no minimum) once ``rate_grace`` seconds of waiting have
    passed. ``timeout``: seconds for the whole body, or ``None``.
    """

    read_timeout: float = 30.0
    min_rate: int = 16 * 1024
    rate_grace: float = 10.0
    timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("read_timeout", "rate_grace", "timeout"):
            value = getattr(self, name)
            if value is None and name == "timeout":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"body_{name} must be a number of seconds, not {value!r}")
            if not math.isfinite(value) or value < 0 or (value == 0 and name != "rate_grace"):
                raise ConfigError(f"body_{name} must be a positive number of seconds, not {value}")
        rate = self.min_rate
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
            raise ConfigError(f"body_min_rate must be a non-negative int of bytes/s, not {rate!r}")


async def guard_body(
    chunks: AsyncIterable[bytes],
    limits: BodyLimits,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[bytes]:
    """``chunks``, ended by a 408 :class:`~streamx.web.WebError` when the client is too slow."""
    iterator = aiter(chunks)
    started = clock()
    waited = 0.0
    received = 0
    while True:
        wait = limits.read_timeout
        if limits.timeout is not None:
            wait = min(wait, limits.timeout - (clock() - started))
        before = clock()
        chunk: bytes | None = None
        with anyio.move_on_after(max(wait, 0)):
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
        if chunk is None:
            whole = limits.timeout is not None and clock() - started >= limits.timeout
            if whole:
                message = f"the body took longer than {limits.timeout:g} s"
            else:
                message = f"no data for {limits.read_timeout:g} s"
            raise WebError(408, f"{message}; the upload was aborted", "body_timeout")
        waited += clock() - before
        received += len(chunk)
        if limits.min_rate and waited > limits.rate_grace and received < limits.min_rate * waited:
            raise WebError(
                408,
                f"the body arrives slower than this server's minimum of "
                f"{format_size(limits.min_rate)}/s; the upload was aborted",
                "body_too_slow",
            )
        yield chunk


# -- cross-site requests ------------------------------------------------------------------------

_SIMPLE_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """``application/json`` (or ``application/<x>+json``), which no cross-site form can send."""
    kind = media_type(content_type)
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def check_json_request(method: str, content_type: str | None, content_length: int | None) -> None:
    """A JSON route's request: a POST (or any request with a body) must say
    ``Content-Type: application/json``, which a cross-site form cannot send (415 otherwise)."""
    if is_json(content_type) or method.upper() in ("GET", "HEAD"):
        return
    if method.upper() != "POST" and not content_length:
        return  # a DELETE without a body: no form can send one, fetch needs a preflight
    raise WebError(
        415, "send the body as JSON with Content-Type: application/json", "json_required"
    )


def stream_method_allowed(method: str, content_type: str | None) -> bool:
    """PUT, or a POST that a cross-site form or a ``no-cors`` fetch cannot send (a content
    type other than the three that need no CORS preflight)."""
    if method.upper() == "PUT":
        return True
    kind = media_type(content_type)
    return method.upper() == "POST" and bool(kind) and kind not in _SIMPLE_TYPES


def check_origins(origins: object) -> tuple[str, ...]:
    """The ``allowed_origins`` setting: ``scheme://host[:port]`` entries, or ``"*"``."""
    if isinstance(origins, str) or not isinstance(origins, tuple | list | frozenset | set):
        raise ConfigError("allowed_origins must be a tuple of origins like 'https://app.example'")
    checked: list[str] = []
    for origin in origins:
        if origin == "*":
            checked.append(origin)
            continue
        parts = urlsplit(origin) if isinstance(origin, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path
            or parts.query
            or parts.fragment
        ):
            raise ConfigError(
                f"allowed_origins entry {origin!r} must be scheme://host[:port], "
                "as browsers send it in the Origin header"
            )
        checked.append(origin.lower())
    return tuple(checked)


def log_refused_origin(origin: str | None) -> None:
    log.warning("web.ws.origin_refused", origin=(origin or "")[:200])


def internal_error(route: str, exc: Exception) -> WebError:
    """A failure nobody foresaw, answered as JSON (500) and logged with its type only."""
    log.error("web.internal_error", route=route, error=type(exc).__name__)
    return WebError(500, "the server failed; see its log", "internal_error")


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """May a WebSocket from ``origin`` upgrade on a server reached as ``host``?

    No ``Origin`` (not a browser), the same host as the request's ``Host``, or an
    origin on the allow-list; ``"*"`` allows every origin.
    """
    if origin is None:
        return True
    origin = origin.strip().lower()
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc == (host or "").lower()
