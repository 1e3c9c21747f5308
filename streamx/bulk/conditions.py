"""Idempotent writes: the one place where a sync's write conditions are made.

An object absent from the destination listing is written with
``IfNoneMatch="*"`` (someone else's object that appeared meanwhile is not
clobbered: the store answers 412); a replacement with ``IfMatch`` on the
ETag the listing showed (an object changed since is not clobbered either).
A lost race is reported as a failure of that key.

Conditions are sent only where this streamx accepts them on every write
path (PutObject, CompleteMultipartUpload, CopyObject): :func:`supported`.
Stores that ignore them (``rclone serve s3``) then behave as without them.
"""

from __future__ import annotations

from .._errors import ConfigError
from .entries import Entry


def write_conditions(dst: Entry | None) -> dict[str, str]:
    """The conditions of a write over ``dst`` (``None``: the key was absent)."""
    if dst is None:
        return {"IfNoneMatch": "*"}
    if dst.etag:
        return {"IfMatch": f'"{dst.etag}"'}
    return {}


def supported() -> bool:
    """Whether uploads and copies accept ``IfNoneMatch``/``IfMatch`` in this build."""
    from ..copy import check_copy_args

    try:
        check_copy_args({"IfNoneMatch": "*"})
        check_copy_args({"IfMatch": '"x"'})
    except ConfigError:
        return False
    return True
