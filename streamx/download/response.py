"""Checking a GET's answer: which bytes it sent, and whether the object is still the one pinned.

Shared by the streamed GET (:mod:`.stream`), the ranged fetchers
(:mod:`.fetcher`) and the part-wise download (:mod:`.parts`). Servers may
answer a ranged GET with 206 (AWS, moto) or with 200 and the right bytes
(rclone): ``Content-Range`` and the length say which bytes came.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .._errors import ObjectChangedError, S3Error, StreamxError
from .planner import ByteRange

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def parse_content_range(response: Mapping[str, Any]) -> tuple[ByteRange | None, int | None]:
    """``(range sent, object size)`` from a GET response; ``(None, None)`` if it has none."""
    text = response.get("ContentRange")
    if not text:
        return None, None
    m = _CONTENT_RANGE.fullmatch(str(text).strip())
    if m is None:
        return None, None
    total = None if m.group(3) == "*" else int(m.group(3))
    return ByteRange(int(m.group(1)), int(m.group(2)) + 1), total


def changed(bucket: str, key: str, pinned: str, seen: str | None) -> ObjectChangedError:
    """The error for an answer from another version than the one pinned."""
    return ObjectChangedError(
        f"the object was replaced during the download (ETag {pinned} became {seen}); "
        "download it again to get one consistent version",
        bucket=bucket,
        key=key,
    )


def translate_get(exc: S3Error, bucket: str, key: str, etag: str | None) -> StreamxError:
    """An S3 error of a GET as the download reports it: 412 on a pinned request and
    416 mean the object changed under us."""
    if etag is not None and (exc.code == "PreconditionFailed" or exc.status == 412):
        return changed(bucket, key, etag, "something else")
    if etag is not None and (exc.code == "InvalidRange" or exc.status == 416):
        return changed(bucket, key, etag, "a shorter object")
    return exc
