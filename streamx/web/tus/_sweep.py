"""Removing expired tus uploads: their multipart upload and every helper object.

Requests that touch an expired upload remove it themselves; this finds the ones
nobody comes back for. ``streamx sweep s3://bucket/ --tus`` runs it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..._engine import Engine
from ..._errors import ConfigError
from ._protocol import TusError, TusOptions, now
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
    if not isinstance(engine, Engine):
        raise ConfigError("engine must be a streamx.Engine (entered)")
    if not isinstance(bucket, str) or not bucket or "/" in bucket:
        raise ConfigError(f"bucket must be a bucket name, not {bucket!r}")
    TusOptions(state_prefix=state_prefix)  # the same check as the server's
    age = orphan_age
    if isinstance(age, bool) or not isinstance(age, int | float) or age < 0:
        raise ConfigError(f"orphan_age must be a non-negative number of seconds, not {age!r}")
    if not isinstance(dry_run, bool):
        raise ConfigError(f"dry_run must be True or False, not {dry_run!r}")
    at = now()
    store = TusStore(lambda: engine, bucket, state_prefix, lock_timeout=30.0)
    groups: dict[str, list[tuple[str, float]]] = {}
    async for item in engine.list(bucket, state_prefix):
        upload = item.key[len(state_prefix) :].split(".", 1)[0]
        stamp = item.last_modified.timestamp() if item.last_modified is not None else at
        groups.setdefault(upload, []).append((item.key, stamp))
    removed: list[ExpiredUpload] = []
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
