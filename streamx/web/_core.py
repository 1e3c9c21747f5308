"""The framework-neutral core of ``streamx.web``: settings, checks, and every route's handler.

The FastAPI and aiohttp adapters are thin: they turn a request into a :class:`Call`
(path parameters, query, JSON body), hand it to :class:`UploadService`, and turn the
returned payload or :class:`WebError` into a JSON response. Everything that decides
something lives here, once:

* keys are validated (no traversal, no empty or dot segments, no control characters)
  and must start with the caller's prefix; then the application's authorization hook
  decides (:class:`AccessRequest`), for every route;
* part numbers are 1-10,000, URL lifetimes 1 s - 7 days, object sizes at most
  ``max_size`` — checked when a size is declared, on every part number (part *n* means
  at least (*n*-1) x 5 MiB), on a streamed body as it arrives, and on complete;
* presigned URLs are bearer credentials: they go into responses, never into a log
  line or an error message.

Routes (``{key*}`` takes the rest of the path, slashes included): the presigned
contract of the browser document (``/uploads/...``), the streaming PUT, and the
Companion-compatible routes that Uppy's ``@uppy/aws-s3`` plugin calls (``/s3/...``).
"""

from __future__ import annotations

import base64
import inspect
import json
import math
import re
import unicodedata
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._config import TransferConfig
from .._engine import Engine
from .._errors import (
    AccessDeniedError,
    ConfigError,
    NetworkError,
    NotFoundError,
    PartLimitError,
    S3Error,
    ServiceUnavailableError,
    StreamxError,
)
from .._limits import (
    MAX_KEY_BYTES,
    MAX_OBJECT_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    format_size,
)

MAX_URL_LIFETIME = 7 * 24 * 3600  # SigV4's limit for a presigned URL
MAX_JSON_BODY = 2 * 1024 * 1024  # a complete of 10,000 parts is about 700 KB
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_META_KEY = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")  # an HTTP header token
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


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
            413: "too_large",
            499: "client_disconnected",
        }.get(status, "storage_error")

    def payload(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code}


@dataclass(frozen=True)
class AccessRequest:
    """What the authorization hook decides on.

    ``request`` is the framework's own request (or WebSocket) object, so the hook can
    read cookies, headers or the session. ``action`` is one of ``"upload"``,
    ``"download"``, ``"multipart.create"``, ``"multipart.sign"``,
    ``"multipart.complete"``, ``"multipart.abort"``, ``"multipart.list"``.
    """

    request: Any
    action: str
    key: str
    upload_id: str | None = None


Authorizer = Callable[[AccessRequest], bool | Awaitable[bool]]
PrefixHook = Callable[[Any], str | Awaitable[str]]
KeyMaker = Callable[[Any, str, str], str]  # (request, prefix, filename) -> key


def allow_all(access: AccessRequest) -> bool:
    """An authorizer that allows everything: for demos and tests, never for production."""
    return True


@dataclass(frozen=True, kw_only=True)
class UploadSettings:
    """How the web routes reach S3 and what they allow.

    Attributes:
        bucket: the bucket every route writes to and reads from.
        engine: the :class:`streamx.Engine` (entered by the application), or a
            callable returning it (e.g. ``lambda: app.state.engine``).
        authorize: called with an :class:`AccessRequest` for every route; a false
            result answers 403, a :class:`WebError` it raises answers its status.
        prefix: keys must start with it; a string, or a (sync or async) callable
            taking the request, e.g. ``users/{user id}/``. Must end with ``/``.
        url_lifetime: seconds a presigned URL stays valid (1 s - 7 days).
        max_size: the largest object a client may create, in bytes.
        transfer_config: for streamed bodies and WebSocket uploads (the engine's by default).
        make_key: builds the key for Uppy's create and params routes from
            ``(request, prefix, filename)``; by default ``prefix + filename``.
        websocket_idle_timeout: seconds a WebSocket upload may stay silent.
    """

    bucket: str
    engine: Engine | Callable[[], Engine]
    authorize: Authorizer
    prefix: str | PrefixHook = ""
    url_lifetime: int = 900
    max_size: int = MAX_OBJECT_SIZE
    transfer_config: TransferConfig | None = None
    make_key: KeyMaker | None = None
    websocket_idle_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.bucket, str) or not self.bucket or "/" in self.bucket:
            raise ConfigError(f"bucket must be a bucket name, not {self.bucket!r}")
        if not isinstance(self.engine, Engine) and not callable(self.engine):
            raise ConfigError("engine must be a streamx.Engine or a callable returning one")
        if not callable(self.authorize):
            raise ConfigError("authorize must be callable (use streamx.web.allow_all for demos)")
        if isinstance(self.prefix, str):
            check_prefix(self.prefix)
        elif not callable(self.prefix):
            raise ConfigError("prefix must be a str or a callable taking the request")
        lifetime = self.url_lifetime
        if isinstance(lifetime, bool) or not isinstance(lifetime, int):
            raise ConfigError(f"url_lifetime must be an int of seconds, not {lifetime!r}")
        if not 1 <= lifetime <= MAX_URL_LIFETIME:
            raise ConfigError(f"url_lifetime must be 1 to {MAX_URL_LIFETIME} s, not {lifetime}")
        size = self.max_size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_OBJECT_SIZE:
            raise ConfigError(f"max_size must be an int of bytes up to 5 TiB, not {size!r}")
        if self.transfer_config is not None and not isinstance(
            self.transfer_config, TransferConfig
        ):
            raise ConfigError("transfer_config must be a streamx.TransferConfig")
        if self.make_key is not None and not callable(self.make_key):
            raise ConfigError("make_key must be callable")
        idle = self.websocket_idle_timeout
        if isinstance(idle, bool) or not isinstance(idle, int | float) or idle <= 0:
            raise ConfigError(f"websocket_idle_timeout must be a positive number, not {idle!r}")


# -- checks --------------------------------------------------------------------------------


def check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise ConfigError(f"the key prefix must be a str, not {type(prefix).__name__}")
    if prefix and (not prefix.endswith("/") or _key_problem(prefix[:-1])):
        raise ConfigError(f"key prefix {prefix!r} must be '' or valid key segments ending with '/'")
    return prefix


def _key_problem(key: str) -> str | None:
    if not key:
        return "is empty"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    if _CONTROL.search(key) or "\\" in key:
        return "contains a control character or a backslash"
    if any(unicodedata.category(c) == "Cs" for c in key):
        return "is not valid UTF-8"
    segments = key.split("/")
    if "" in segments:
        return "has an empty path segment (leading, trailing or double '/')"
    if "." in segments or ".." in segments:
        return "has a '.' or '..' segment"
    return None


def check_key(key: object, prefix: str) -> str:
    """``key`` if it is a safe object key under ``prefix``; a 400 or 403 otherwise."""
    if not isinstance(key, str):
        raise WebError(400, "'key' must be a string")
    problem = _key_problem(key)
    if problem:
        raise WebError(400, f"key {key[:200]!r} {problem}", "invalid_key")
    if not key.startswith(prefix):
        raise WebError(403, f"key {key[:200]!r} is outside your prefix {prefix!r}")
    return key


def check_part_number(value: object, max_size: int = MAX_OBJECT_SIZE) -> int:
    """An int 1-10,000 (numeric strings from paths and queries accepted)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 7:
        number = int(value)
    if number is None or not 1 <= number <= MAX_PARTS:
        raise WebError(400, f"part_number must be an integer from 1 to {MAX_PARTS}, not {value!r}")
    if (number - 1) * MIN_PART_SIZE > max_size:
        raise WebError(
            413,
            f"part {number} cannot belong to an object of at most {format_size(max_size)}: "
            f"every part before it is at least {format_size(MIN_PART_SIZE)}",
        )
    return number


def check_upload_id(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024 or _CONTROL.search(value):
        raise WebError(400, "'upload_id' must be the non-empty id returned by init")
    return value


def check_size(value: object, max_size: int, *, required: bool = False) -> int | None:
    if value is None or value == "":
        if required:
            raise WebError(400, "'size' (the file's size in bytes) is required")
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WebError(400, f"'size' must be a non-negative integer of bytes, not {value!r}")
    if value > max_size:
        raise WebError(
            413, f"{format_size(value)} is over this server's {format_size(max_size)} limit"
        )
    return value


def check_content_type(value: object) -> str:
    if value is None or value == "":
        return "application/octet-stream"
    if not isinstance(value, str) or len(value) > 255 or _CONTROL.search(value):
        raise WebError(400, "'content_type' must be a MIME type such as 'image/png'")
    return value


def check_parts(value: object) -> list[dict[str, Any]]:
    """``[{"PartNumber": n, "ETag": "..."}]``, ascending, no repeats."""
    if not isinstance(value, list) or not value:
        raise WebError(400, "'parts' must be a non-empty list of {PartNumber, ETag} objects")
    if len(value) > MAX_PARTS:
        raise WebError(400, f"'parts' lists more than {MAX_PARTS} parts")
    parts: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("ETag"), str):
            raise WebError(400, "every entry of 'parts' needs a PartNumber and an ETag string")
        number = check_part_number(item.get("PartNumber"))
        if parts and number <= parts[-1]["PartNumber"]:
            raise WebError(400, "'parts' must be in ascending PartNumber order without repeats")
        parts.append({"PartNumber": number, "ETag": item["ETag"]})
    return parts


def metadata_text(value: object) -> str | None:
    """One metadata value as Companion stores it; ``None`` for a null (the field is left out).

    Uppy sends every meta field of a file: strings, ``null`` (the Dashboard's
    ``relativePath``), numbers, whatever the application set. Like Companion
    (``rfc2047EncodeMetadata``) values become strings; objects and lists become
    compact JSON, booleans ``true``/``false``. A value that is not printable ASCII
    (``café.bin``, a tab, a line break) is stored RFC 2047-encoded,
    ``=?UTF-8?B?<base64>?=``, as S3 defines for non-ASCII metadata, so no header
    ever carries a raw control character.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        integral = math.isfinite(value) and value.is_integer() and abs(value) < 1e21
        text = str(int(value)) if integral else json.dumps(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            text = str(value)
    if _PRINTABLE_ASCII.fullmatch(text):
        return text
    encoded = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")
    return f"=?UTF-8?B?{encoded}?="


def check_metadata(value: object) -> dict[str, str]:
    """Uppy's ``metadata`` object as S3 metadata, converted the way Companion does it.

    Names must be HTTP header tokens (``relativePath``, ``user-id``); values go
    through :func:`metadata_text` (nulls are left out). At most 32 fields and S3's
    2 KB for names and values together.
    """
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 32:
        raise WebError(400, "'metadata' must be an object of at most 32 fields")
    meta: dict[str, str] = {}
    for name, raw in value.items():
        if not isinstance(name, str) or not _META_KEY.match(name):
            raise WebError(
                400,
                f"metadata name {str(name)[:64]!r} must be 1-128 letters, digits or "
                "!#$%&'*+.^_`|~- (it becomes an x-amz-meta- header)",
            )
        text = metadata_text(raw)
        if text is not None:
            meta[name] = text
    if sum(len(k) + len(v) for k, v in meta.items()) > 2048:
        raise WebError(400, "metadata is over S3's 2 KB limit")
    return meta


def bare_etag(value: str) -> str:
    return value.strip().strip('"')


async def maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def find_cause(
    exc: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first exception of ``kind`` in ``exc``'s cause/context chain (itself included)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def web_error_for(exc: StreamxError) -> WebError:
    """The answer for a streamx error; the message carries no URL and no credential."""
    if isinstance(exc, ConfigError):
        return WebError(400, exc.message)
    if isinstance(exc, PartLimitError):
        return WebError(413, exc.message)
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


# -- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request, as the adapters hand it over."""

    request: Any
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: Any = None

    def field(self, name: str) -> Any:
        """A field from the JSON body, else from the query string."""
        if isinstance(self.body, dict) and name in self.body:
            return self.body[name]
        return self.query.get(name)


async def read_json(chunks: AsyncIterable[bytes], content_length: int | None) -> Any:
    """The JSON body (``{}`` when empty), refusing more than :data:`MAX_JSON_BODY` bytes."""
    if content_length is not None and content_length > MAX_JSON_BODY:
        raise WebError(413, f"the JSON body is over {format_size(MAX_JSON_BODY)}")
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > MAX_JSON_BODY:
            raise WebError(413, f"the JSON body is over {format_size(MAX_JSON_BODY)}")
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WebError(400, "the JSON body must be an object")
    return body


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "{name*}" matches the rest of the path, slashes included
    handler: str  # an UploadService method taking a Call
    json_body: bool = False


ROUTES: tuple[Route, ...] = (
    Route("POST", "/uploads/url", "presign_put", True),
    Route("GET", "/uploads/download/{key*}", "presign_get"),
    Route("POST", "/uploads/multipart/init", "multipart_init", True),
    Route("POST", "/uploads/multipart/part-url", "multipart_part_url", True),
    Route("POST", "/uploads/multipart/complete", "multipart_complete", True),
    Route("DELETE", "/uploads/multipart/abort", "multipart_abort", True),
    Route("GET", "/uploads/multipart/parts", "multipart_parts"),
    # Companion-compatible, as Uppy's @uppy/aws-s3 calls them; batch before {partNumber}
    Route("GET", "/s3/params", "uppy_params"),
    Route("POST", "/s3/multipart", "uppy_create", True),
    Route("GET", "/s3/multipart/{uploadId}/batch", "uppy_sign_batch"),
    Route("GET", "/s3/multipart/{uploadId}/{partNumber}", "uppy_sign_part"),
    Route("GET", "/s3/multipart/{uploadId}", "uppy_list_parts"),
    Route("POST", "/s3/multipart/{uploadId}/complete", "uppy_complete", True),
    Route("DELETE", "/s3/multipart/{uploadId}", "uppy_abort"),
)
STREAM_PATH = "/uploads/stream/{key*}"  # PUT or POST, the raw body is the object
WEBSOCKET_PATH = "/uploads/ws"
