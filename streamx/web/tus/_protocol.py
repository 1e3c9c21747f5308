"""tus 1.0.0 on the wire: the headers, their parsing, the options, requests and responses.

Nothing here talks to S3 or knows a web framework. The adapters build a
:class:`TusRequest`; :class:`~streamx.web.tus.TusService` answers a :class:`TusResponse`.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from ..._errors import ConfigError
from ..._limits import MAX_PART_SIZE, MIN_PART_SIZE, format_size

TUS_VERSION = "1.0.0"
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "expiration",
    "checksum",
    "concatenation",
)
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
EXPOSED_HEADERS = (
    "Location, Upload-Offset, Upload-Length, Upload-Metadata, Upload-Defer-Length, "
    "Upload-Expires, Upload-Concat, Tus-Version, Tus-Resumable, Tus-Extension, Tus-Max-Size, "
    "Tus-Checksum-Algorithm"
)
ALLOWED_HEADERS = (
    "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, "
    "Content-Type, Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, "
    "Upload-Defer-Length, Upload-Concat, Upload-Checksum"
)
ALLOWED_METHODS = "POST, HEAD, PATCH, OPTIONS, DELETE"
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_META_NAME = re.compile(r"^[^\s,]+$")
_DIGITS = re.compile(r"^[0-9]{1,20}$")

# (request, prefix, upload id, metadata) -> the object key
TusKeyMaker = Callable[[Any, str, str, Mapping[str, str]], str]


class TusError(Exception):
    """A refusal: ``status`` with ``message`` as a plain-text body."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True, kw_only=True)
class TusOptions:
    """What the tus routes do beyond :class:`~streamx.web.UploadSettings`.

    Attributes:
        state_prefix: where each upload's helper objects live in the bucket:
            ``<state_prefix><id>.info`` (JSON), ``.part.<offset>`` (bytes received
            that do not fill an S3 part yet) and ``.lock``. Must end with ``/``.
        part_size: the S3 part size (5 MiB - 5 GiB; larger for uploads that would
            need more than 10,000 parts).
        expiration: seconds an upload may stay idle before it expires (``Upload-Expires``);
            ``None``: never. Expired uploads answer 410 and are removed, by the next
            request that touches them or by :func:`~streamx.web.tus.sweep_expired`.
        concurrency: parts sent to S3 at once by one PATCH (while the next one fills);
            1 by default.
        memory_limit: bytes of request bodies held at once by all PATCHes of this
            endpoint together (parts being filled and being sent); when it is spent
            the bodies are not read, and TCP stops the clients. At least two parts;
            ``None`` (the default): 32 MiB, or four parts if that is more.

    The defaults (1 part in flight per PATCH while the next fills, 32 MiB for all
    PATCHes) keep a tus server's peak RSS below ``@tus/server``'s, which buffers parts
    on its disk (``benchmarks/tus_bench.py``: 4 parts and 128 MiB cost 16 MiB more in
    one 1 GiB PATCH and 100 MiB more for 32 uploads of 32 MiB at once; 2 parts 8 MiB
    more in one PATCH than 1, at the same speed into rclone: 29-73 vs 31-76 MiB/s on
    FastAPI, 256 MiB, interleaved runs on a shared machine). A tus client's uplink is
    rarely faster than one 8 MiB part in flight to S3; raise both for fast clients
    next to the store.
        lock_timeout: a PATCH refreshes its lock object every third of this; a lock
            left by a crashed server is taken over once it is this old.
        allow_origins: origins answered with CORS headers (``("*",)`` for any).
        make_key: builds the object key from ``(request, prefix, upload_id, metadata)``;
            by default ``prefix + upload_id``. The key is checked against the prefix
            and passed to the authorization hook like any other route's key.
    """

    state_prefix: str = ".tus/"
    part_size: int = 8 * 1024 * 1024
    expiration: float | None = 24 * 3600.0
    lock_timeout: float = 30.0
    concurrency: int = 1
    memory_limit: int | None = None
    allow_origins: tuple[str, ...] = ()
    make_key: TusKeyMaker | None = None

    @property
    def memory_bound(self) -> int:
        """``memory_limit``, or its default: 32 MiB, or four parts if that is more."""
        if self.memory_limit is not None:
            return self.memory_limit
        return max(32 * 1024 * 1024, 4 * self.part_size)

    def __post_init__(self) -> None:
        state = self.state_prefix
        if not isinstance(state, str) or not state.endswith("/") or state.startswith("/"):
            raise ConfigError(f"state_prefix must be a key prefix ending with '/', not {state!r}")
        size = self.part_size
        if isinstance(size, bool) or not isinstance(size, int):
            raise ConfigError(f"part_size must be an int of bytes, not {size!r}")
        if not MIN_PART_SIZE <= size <= MAX_PART_SIZE:
            raise ConfigError(
                f"part_size {format_size(size)} is outside S3's "
                f"{format_size(MIN_PART_SIZE)} - {format_size(MAX_PART_SIZE)} part sizes"
            )
        exp = self.expiration
        if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float)):
            raise ConfigError(f"expiration must be seconds or None, not {exp!r}")
        if exp is not None and exp <= 0:
            raise ConfigError(f"expiration must be positive, not {exp!r}")
        lock = self.lock_timeout
        if isinstance(lock, bool) or not isinstance(lock, int | float) or lock <= 0:
            raise ConfigError(f"lock_timeout must be a positive number of seconds, not {lock!r}")
        conc = self.concurrency
        if isinstance(conc, bool) or not isinstance(conc, int) or not 1 <= conc <= 64:
            raise ConfigError(f"concurrency must be an int from 1 to 64, not {conc!r}")
        most = self.memory_limit
        if most is not None and (
            isinstance(most, bool) or not isinstance(most, int) or most < 2 * size
        ):
            raise ConfigError(
                f"memory_limit must be an int of at least two parts ({format_size(2 * size)}), "
                f"not {most!r}"
            )
        if not isinstance(self.allow_origins, tuple) or not all(
            isinstance(o, str) and o for o in self.allow_origins
        ):
            raise ConfigError("allow_origins must be a tuple of origins such as 'https://a.b'")
        if self.make_key is not None and not callable(self.make_key):
            raise ConfigError("make_key must be callable")


@dataclass
class TusRequest:
    """One request as an adapter hands it over.

    ``headers`` has lower-case names; ``collection`` is the URL path of the tus
    endpoint (``/api/tus``), used to build ``Location``; ``body`` is the request
    body's chunks (``None`` when there is none); a read failing with one of
    ``disconnect`` means the client went away: what arrived before is kept.
    """

    method: str
    headers: Mapping[str, str]
    upload_id: str | None
    collection: str
    native: Any
    body: AsyncIterator[bytes] | None = None
    disconnect: tuple[type[BaseException], ...] = ()

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class TusResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def add_cors(request: TusRequest, response: TusResponse, allowed: tuple[str, ...]) -> None:
    """CORS headers on ``response`` for an allowed ``Origin`` (``("*",)``: any)."""
    origin = request.header("origin")
    if not origin or not allowed or ("*" not in allowed and origin not in allowed):
        return
    response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
    if "*" not in allowed:
        response.headers["Vary"] = "Origin"
    response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if request.method.upper() == "OPTIONS":
        asked = request.header("access-control-request-headers")
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = (
            f"{ALLOWED_HEADERS}, {asked}" if asked else ALLOWED_HEADERS
        )
        response.headers["Access-Control-Max-Age"] = "86400"


def check_upload_id(value: str | None) -> str:
    if value is None or not _ID.match(value):
        raise TusError(404, "no such upload")
    return value


def parse_int(name: str, value: str | None) -> int:
    if value is None or not _DIGITS.match(value.strip()):
        raise TusError(400, f"{name} must be a non-negative integer")
    return int(value.strip())


def parse_metadata(value: str | None) -> dict[str, str]:
    """``Upload-Metadata``: ``name base64,name2 base64``; values decoded as UTF-8."""
    meta: dict[str, str] = {}
    if not value or not value.strip():
        return meta
    if len(value) > 4096:
        raise TusError(400, "Upload-Metadata is over 4 KiB")
    for item in value.split(","):
        words = item.strip().split(" ")
        if not 1 <= len(words) <= 2 or not _META_NAME.match(words[0]) or words[0] in meta:
            raise TusError(400, "Upload-Metadata must be 'name base64' pairs, names unique")
        try:
            raw = base64.b64decode(words[1], validate=True) if len(words) == 2 else b""
            meta[words[0]] = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise TusError(400, f"Upload-Metadata {words[0]!r} is not base64 of UTF-8") from None
    return meta


def parse_checksum(value: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: sha1 <base64>`` -> (algorithm, digest)."""
    if value is None:
        return None
    words = value.strip().split(" ")
    if len(words) != 2:
        raise TusError(400, "Upload-Checksum must be '<algorithm> <base64 digest>'")
    algorithm = words[0].lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise TusError(400, f"checksum algorithm {words[0][:20]!r} is not supported")
    try:
        return algorithm, base64.b64decode(words[1], validate=True)
    except binascii.Error:
        raise TusError(400, "the Upload-Checksum digest is not base64") from None


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def now() -> float:
    return time.time()
