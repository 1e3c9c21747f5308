"""Idempotent writes: the one place where a sync's write conditions are chosen.

An object absent from the destination listing is written with
``IfNoneMatch="*"`` (an object that appeared meanwhile is not clobbered: the
store answers 412); a replacement with ``IfMatch`` on the ETag the listing
showed (an object changed since is not clobbered either). A lost race is a
failure of that key (:class:`~streamx.PreconditionFailedError`), never an
overwrite.

A condition goes out only on a write path the destination's store profile
says it honours (``Engine.store``; an unknown store is probed once before the
sync starts). Where the store would ignore it (``rclone serve s3``; moto's
``IfMatch`` on CompleteMultipartUpload) the write goes without it, as plain
sync tools do, rather than being refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._stores import condition_points, unknown_points
from .entries import Entry

if TYPE_CHECKING:
    from .._engine import Engine


def wanted(dst: Entry | None) -> dict[str, str]:
    """The conditions of a write over ``dst`` (``None``: the key was absent)."""
    if dst is None:
        return {"IfNoneMatch": "*"}
    if dst.etag:
        return {"IfMatch": f'"{dst.etag}"'}
    return {}


def write_conditions(
    engine: Engine, dst: Entry | None, *, copy: bool, size: int, split: bool = False
) -> dict[str, str]:
    """``wanted(dst)`` if ``engine``'s store honours it on the path a write of ``size`` takes
    (``split``: an object split across actors, always completed as a multipart upload)."""
    conditions = wanted(dst)
    if not conditions:
        return {}
    cfg = engine.config
    multipart: bool | None
    if split:
        multipart = True
    elif copy:
        multipart = size > cfg.copy_threshold
    elif cfg.part_size <= size < cfg.multipart_threshold:
        multipart = None  # with a shared budget either path may be taken
    else:
        multipart = size >= cfg.multipart_threshold
    points = condition_points("copy" if copy else "upload", conditions, multipart=multipart)
    if all(engine.store.honours(p) is True for p in points):
        return conditions
    return {}


async def prepare(engine: Engine, bucket: str) -> None:
    """Probe an unknown store once, so every write knows which conditions it honours."""
    points = condition_points("upload", ["IfNoneMatch", "IfMatch"])
    points += condition_points("copy", ["IfNoneMatch", "IfMatch"])
    if unknown_points(engine.store, points):
        await engine.probe(bucket)
