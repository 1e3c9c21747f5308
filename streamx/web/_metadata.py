"""Uppy's metadata as Companion stores it: values turned into strings, non-ASCII RFC 2047-encoded.

Companion (``@uppy/companion``'s ``rfc2047EncodeMetadata``) passes every meta field of a file
to S3 through ``String(value)`` and encodes a non-ASCII value as ``=?UTF-8?B?<base64>?=``.
Uppy 6's Dashboard sends ``relativePath: null`` for every file, and applications add numbers
or objects (``{userId: 42}``); refusing them would fail every Dashboard upload.
"""

from __future__ import annotations

import base64
import json
import math
import re

from ._errors import WebError

_META_KEY = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")  # an HTTP header token
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


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
