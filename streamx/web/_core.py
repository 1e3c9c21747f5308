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

import dataclasses
import inspect
import json
import re
import unicodedata
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._config import TransferConfig
from .._engine import Engine
from .._errors import ConfigError
from .._limits import (
    MAX_KEY_BYTES,
    MAX_OBJECT_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    format_size,
)
from ._errors import WebError as WebError  # importable from here, as before
from ._errors import web_error_for as web_error_for
from ._guard import BodyLimits, check_origins, check_secret
from ._metadata import check_metadata as check_metadata  # kept importable from here

MAX_URL_LIFETIME = 7 * 24 * 3600  # SigV4's limit for a presigned URL
MAX_JSON_BODY = 2 * 1024 * 1024  # a complete of 10,000 parts is about 700 KB
MAX_BATCH = 100  # part URLs per batch request (Uppy asks for a few at a time)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
        upload_secret: the key of the upload tokens that bind every upload id the
            routes hand out to its key and caller (see ``streamx.web._guard``); by
            default random per process. Set the same secret (16+ bytes) in every
            process and replica that serves the same clients.
        identity: the caller's identity bound into upload tokens, a (sync or async)
            callable taking the request; by default the caller's prefix.
        body_read_timeout: seconds the stream route waits for the next piece of a body.
        body_min_rate: bytes per second a streamed body must average once
            ``body_rate_grace`` seconds of waiting on the client have passed (0: none).
        body_rate_grace: see ``body_min_rate``.
        body_timeout: seconds a whole streamed body may take, or ``None`` (the default).
        allowed_origins: origins (``https://app.example``) whose pages may open the
            WebSocket route besides the server's own; ``("*",)`` allows any.
        overwrite: whether an upload may replace an existing object. ``False`` (the
            default): S3 itself refuses it (``If-None-Match: *`` on every write route;
            409 ``object_exists``); POST form uploads (``/s3/params``), which cannot carry
            the condition, are refused; on a store that ignores the condition (rclone
            serve s3) every write route answers 500 ``overwrite_unenforceable`` until
            this is set to ``True``. See ``streamx.web._overwrite``. (Not applied by the
            tus routes yet, whose keys are random unless a ``make_key`` names them.)
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
    upload_secret: str | bytes | None = dataclasses.field(default=None, repr=False)
    identity: PrefixHook | None = None
    body_read_timeout: float = 30.0
    body_min_rate: int = 16 * 1024
    body_rate_grace: float = 10.0
    body_timeout: float | None = None
    allowed_origins: tuple[str, ...] = ()
    overwrite: bool = False

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
        if self.upload_secret is not None:
            check_secret(self.upload_secret)
        if self.identity is not None and not callable(self.identity):
            raise ConfigError("identity must be a callable taking the request")
        _ = self.body_limits  # validates the body_* settings
        object.__setattr__(self, "allowed_origins", check_origins(self.allowed_origins))
        if not isinstance(self.overwrite, bool):
            raise ConfigError(f"overwrite must be True or False, not {self.overwrite!r}")

    @property
    def body_limits(self) -> BodyLimits:
        return BodyLimits(
            read_timeout=self.body_read_timeout,
            min_rate=self.body_min_rate,
            rate_grace=self.body_rate_grace,
            timeout=self.body_timeout,
        )


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
        value = int(value) if len(value) <= 20 else MAX_OBJECT_SIZE + 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WebError(400, f"'size' must be a non-negative integer of bytes, not {value!r}")
    if value > max_size:
        shown = format_size(value) if value <= MAX_OBJECT_SIZE else "more than 5 TiB"
        raise WebError(413, f"{shown} is over this server's {format_size(max_size)} limit")
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
    body = parse_json(bytes(data))
    if not isinstance(body, dict):
        raise WebError(400, "the JSON body must be an object")
    return body


def parse_json(data: bytes | str) -> Any:
    """JSON from a client: a 400 for invalid or absurdly nested JSON (never a RecursionError)."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WebError(400, f"the body is not valid JSON: {str(exc)[:200]}") from None


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
