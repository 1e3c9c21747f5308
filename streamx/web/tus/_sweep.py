"""Removing expired tus uploads: their multipart upload and every helper object.

Requests that touch an expired upload remove it themselves; this finds the ones
nobody comes back for. ``streamx sweep s3://bucket/ --tus`` runs it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..._engine import Engine
from ._protocol import TusError, now
from ._state import TusStore


@dataclass(frozen=True)
class ExpiredUpload:
    upload: str
    key: str
    expires: float | None  # None: helper objects without an info (a crash's leftovers)


async def sweep_expired(
    engine: Engine,
    bucket: str,
    *,
    state_prefix: str = ".tus/",
    orphan_age: float = 24 * 3600.0,
    dry_run: bool = False,
) -> list[ExpiredUpload]:
    """Remove the tus uploads in ``bucket`` whose ``Upload-Expires`` has passed.

    Also removes helper objects left without an info object (a server that
    crashed between deleting them) once the newest is ``orphan_age`` seconds old.
    Returns what was removed (with ``dry_run=True``: what would be).
    """
    store = TusStore(lambda: engine.s3, bucket, state_prefix, lock_timeout=30.0)
    groups: dict[str, list[tuple[str, float]]] = {}
    params: dict[str, object] = {"Prefix": state_prefix}
    while True:
        page = await engine.s3.list_objects_v2(bucket, **params)
        for item in page.get("Contents", []):
            key = str(item["Key"])
            upload = key[len(state_prefix) :].split(".", 1)[0]
            groups.setdefault(upload, []).append((key, item["LastModified"].timestamp()))
        if not page.get("IsTruncated"):
            break
        params["ContinuationToken"] = page["NextContinuationToken"]
    removed: list[ExpiredUpload] = []
    at = now()
    for upload, objects in sorted(groups.items()):
        try:
            info = await store.load(upload)
        except TusError:
            info = None
        if info is not None:
            if not info.expired(at):
                continue
            removed.append(ExpiredUpload(upload, info.key, info.expires))
            if not dry_run:
                await store.remove(info, abort=True)
        elif at - max(t for _, t in objects) >= orphan_age:
            removed.append(ExpiredUpload(upload, "", None))
            if not dry_run:
                await store.delete([k for k, _ in objects])
    return removed
