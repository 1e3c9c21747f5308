"""Argument checks shared by the public entry points, run before any request.

Each raises :class:`~streamx.ConfigError` naming the argument and saying what
to pass instead. They are pure (no I/O but ``os.fspath``), so every verb can
afford to run them first.

**Header values.** Put arguments (``ContentType``, ``ContentDisposition``,
``CacheControl``, ``Metadata`` ...) travel as HTTP headers. A CR or LF in one
would end the header early: the rest becomes another header, or a second
request that inherits the first one's signed Authorization line. So every
string argument that maps to a header is refused if it holds a control
character (U+0000-U+001F, U+007F), whatever transport sends it.

**Non-ASCII.** Header values are ASCII on the wire. S3 defines one encoding
for user metadata: a value holding non-ASCII characters is sent as an RFC 2047
encoded word and S3 decodes it before storing (and returns it RFC 2047
encoded on GET and HEAD). streamx does that for ``Metadata`` values, the way
Uppy's Companion does: ``{"name": "café"}`` is sent as
``x-amz-meta-name: =?UTF-8?B?Y2Fmw6k=?=``. (botocore itself refuses such
values with "Non ascii characters found in S3 metadata"; stores that do not
decode RFC 2047, such as moto and rclone, keep the encoded form.) Metadata
keys are header names and must be ASCII tokens. No other header has an
encoding S3 decodes, so non-ASCII in them is refused; for a file name in
``ContentDisposition`` use RFC 6266's ``filename*=UTF-8''...`` with
``urllib.parse.quote(name)``.
"""

from __future__ import annotations

import base64
import datetime
import math
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError
from ._limits import MAX_KEY_BYTES, MAX_MEMORY, format_size

if TYPE_CHECKING:
    from ._budget import MemoryBudget

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# botocore's own rule (botocore.utils.validate_region_name)
_REGION = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?$")


def check_key(key: object, name: str = "key") -> str:
    """A non-empty str that is valid UTF-8 (no lone surrogate) and at most 1,024 bytes."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{name} must be a non-empty str, not {key!r}")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{name} {key!r} is not valid UTF-8 (a lone surrogate?); S3 keys are UTF-8 text"
        ) from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise ConfigError(
            f"{name} is {len(encoded)} bytes in UTF-8; S3 allows at most {MAX_KEY_BYTES}"
        )
    return key


def check_bucket(bucket: object, name: str = "bucket") -> str:
    if not isinstance(bucket, str) or not bucket:
        raise ConfigError(f"{name} must be a non-empty str, not {bucket!r}")
    if "/" in bucket:
        raise ConfigError(f"{name} {bucket!r} contains '/'; pass the key separately")
    if _CONTROL.search(bucket) or not bucket.isascii():
        raise ConfigError(f"{name} {bucket!r} is not a bucket name (ASCII letters, digits, -, .)")
    return bucket


def check_bucket_key(bucket: object, key: object) -> None:
    """Validate a bucket name and key before any request."""
    check_bucket(bucket)
    check_key(key)


def check_prefix(prefix: object, name: str = "prefix") -> str:
    """A str (may be empty) that is valid UTF-8."""
    if not isinstance(prefix, str):
        raise ConfigError(f"{name} must be a str ('' for everything), not {prefix!r}")
    if prefix:
        check_key(prefix, name)
    return prefix


def check_local_path(path: object, name: str = "path") -> str:
    """A local file path: a non-empty str or os.PathLike without NUL; returned as str."""
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"{name} must be a str or os.PathLike, not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise ConfigError(f"{name} must be a text path, not {type(text).__name__}")
    if not text:
        raise ConfigError(f"{name} is empty; give a file name")
    if "\x00" in text:
        raise ConfigError(f"{name} {text!r} contains a NUL character, which no file name can hold")
    return text


def check_timeout(name: str, value: object, *, allow_none: bool = False) -> None:
    """A finite, non-negative number (or None where allowed)."""
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"{name} must be a finite, non-negative number of seconds, not {value!r}")


# -- put arguments ---------------------------------------------------------------------------


# botocore base64-encodes these (and they are secrets: never echoed)
_ENCODED_BY_BOTOCORE = frozenset({"SSECustomerKey"})


def _header_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a str, not {type(value).__name__}")
    if _CONTROL.search(value):
        raise ConfigError(
            f"{name} {value!r} contains a control character (CR, LF, NUL ...); "
            "header values cannot hold them"
        )
    return value


def rfc2047(value: str) -> str:
    """``value`` as it goes on the wire: as is if ASCII, else one RFC 2047 encoded word."""
    if value.isascii():
        return value
    return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def _metadata(name: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a dict of str to str, not {type(value).__name__}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _TOKEN.match(k):
            raise ConfigError(
                f"{name} key {k!r} is not a valid header name: use ASCII letters, digits and "
                "-_. (no spaces, colons or control characters)"
            )
        text = _header_text(f"{name}[{k!r}]", v)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(f"{name}[{k!r}] is not valid UTF-8 (a lone surrogate?)") from exc
        out[k] = rfc2047(text)
    return out


def check_put_values(args: Mapping[str, Any], shapes: Mapping[str, Any]) -> dict[str, Any]:
    """Check each put argument's value against its botocore shape; returns them as sent.

    ``shapes`` maps an argument name to its botocore shape (from the S3 model).
    Strings that become headers: no control characters, ASCII only; maps
    (``Metadata``): see :func:`_metadata`; numbers, booleans and timestamps:
    their Python types. Arguments without a shape are left to the caller.
    """
    out = dict(args)
    for name, value in args.items():
        shape = shapes.get(name)
        if shape is None or name in _ENCODED_BY_BOTOCORE:
            continue
        kind = shape.type_name
        if kind == "map":
            out[name] = _metadata(name, value)
        elif kind == "string":
            text = _header_text(name, value)
            if not text.isascii():
                hint = (
                    "; for a file name use filename*=UTF-8''<urllib.parse.quote(name)> (RFC 6266)"
                    if name == "ContentDisposition"
                    else "; percent-encode it (urllib.parse.quote)"
                )
                raise ConfigError(
                    f"{name} {value!r} holds non-ASCII characters, which S3 headers cannot "
                    f"carry (only Metadata values have an encoding S3 decodes){hint}"
                )
        elif kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an int, not {value!r}")
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be True or False, not {value!r}")
        elif kind == "timestamp":
            if isinstance(value, str):
                _header_text(name, value)
            elif isinstance(value, bool) or not isinstance(value, datetime.datetime | int | float):
                raise ConfigError(f"{name} must be a datetime, not {value!r}")
    return out


def header_safe(name: str, value: str) -> None:
    """The last line of defence in a sender that writes headers itself (see _s3/_threaded.py)."""
    if _CONTROL.search(name) or _CONTROL.search(value) or ":" in name:
        raise ConfigError(f"refusing to send header {name!r}: it holds a control character")


# -- Engine(...) -----------------------------------------------------------------------------


def check_region(region: object) -> None:
    if region is None:
        return
    if not isinstance(region, str) or not _REGION.match(region):
        raise ConfigError(
            f"region_name must be a region such as 'us-east-1' (letters, digits and '-'), "
            f"not {region!r}"
        )


def check_endpoint(url: object, name: str = "endpoint_url") -> None:
    from urllib.parse import urlsplit

    if url is None:
        return
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{name} must be a non-empty str such as 'http://127.0.0.1:9000'")
    if _CONTROL.search(url) or " " in url:
        raise ConfigError(f"{name} {url!r} contains spaces or control characters")
    if "://" not in url:
        raise ConfigError(
            f"{name} {url!r} has no scheme; add http:// or https:// (e.g. 'http://{url}')"
        )
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigError(f"{name} {url!r} must start with http:// or https://")
    try:
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise ConfigError(f"{name} {url!r} has an invalid port") from exc
    if not parts.hostname:
        raise ConfigError(f"{name} {url!r} names no host")


def check_credentials(key_id: object, secret: object, token: object) -> None:
    for name, value in (
        ("aws_access_key_id", key_id),
        ("aws_secret_access_key", secret),
        ("aws_session_token", token),
    ):
        if value is None:
            continue
        # never echo a credential: name the argument and the type only
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty str, not {type(value).__name__}")
        if _CONTROL.search(value) or not value.isascii() or " " in value:
            raise ConfigError(f"{name} holds spaces, control or non-ASCII characters")
    if (key_id is None) != (secret is None):
        raise ConfigError("pass both aws_access_key_id and aws_secret_access_key, or neither")
    if token is not None and key_id is None:
        raise ConfigError("aws_session_token needs aws_access_key_id and aws_secret_access_key")


ADDRESSING_STYLES = ("auto", "virtual", "path")


def check_addressing_style(style: object) -> None:
    if style is not None and style not in ADDRESSING_STYLES:
        raise ConfigError(f"addressing_style must be one of {ADDRESSING_STYLES}, not {style!r}")


def check_budget(budget: object) -> MemoryBudget | None:
    """``Engine(memory_budget=)``: a MemoryBudget or a number of bytes, at most 1 TiB."""
    from ._budget import MemoryBudget

    if isinstance(budget, int) and not isinstance(budget, bool):
        budget = MemoryBudget(budget)
    if budget is not None and not isinstance(budget, MemoryBudget):
        raise ConfigError("memory_budget must be a MemoryBudget or a number of bytes")
    if budget is not None and budget.limit > MAX_MEMORY:
        raise ConfigError(
            f"memory_budget {format_size(budget.limit)} is absurd: it caps the bytes held in "
            f"memory (at most {format_size(MAX_MEMORY)}; None for the default)"
        )
    return budget


def check_client_args(client: object, **args: Any) -> None:
    """Engine(...)'s connection arguments, before any request (see streamx._validate)."""
    given = sorted(name for name, value in args.items() if value is not None)
    if client is not None and given:
        raise ConfigError(
            f"{', '.join(given)} cannot be combined with client=: the client is used as it "
            "is; configure it when you create it"
        )
    endpoint = args["endpoint_url"]
    if client is None and endpoint is None and os.environ.get("AWS_ENDPOINT_URL"):
        check_endpoint(os.environ["AWS_ENDPOINT_URL"], "the AWS_ENDPOINT_URL variable")
    check_endpoint(endpoint)
    check_region(args["region_name"])
    check_credentials(
        args["aws_access_key_id"], args["aws_secret_access_key"], args["aws_session_token"]
    )
    check_addressing_style(args["addressing_style"])
    profile = args["profile"]
    if profile is not None:
        if not isinstance(profile, str) or not profile:
            raise ConfigError(f"profile must be a non-empty str, not {profile!r}")
        import botocore.exceptions
        import botocore.session

        # a fresh session reads the config files as they are now (a cached one would not)
        known = botocore.session.Session().available_profiles
        if profile not in known:
            listed = f"profiles {', '.join(sorted(known))}" if known else "no profile"
            raise ConfigError(
                f"the AWS config files (~/.aws/config, AWS_CONFIG_FILE) have {listed}; "
                f"the config profile {profile!r} could not be found"
            ) from botocore.exceptions.ProfileNotFound(profile=profile)
