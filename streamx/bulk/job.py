"""``streamx.sync``: validate, check both ends, then run the local executor (local.py).

Everything is checked before the first object moves: the arguments, that a
local source exists and is a directory, that a local destination is not a
file, that the two ends do not overlap, and one listing request per S3 side
(a missing bucket, bad credentials or an unreachable endpoint fail here,
once, with one message).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from .._api.base import s3_layer
from .._concurrency import task_group
from .._errors import ConfigError, NotFoundError
from . import conditions as conds
from .entries import in_s3_order
from .execute import Counts, SyncEvent
from .local import EventCallback, LocalExecutor, ProgressCallback
from .manifest import Manifest, Watermark
from .plan import COMPARE_MODES, Compare, Filters
from .sides import LocalSide, S3Side, Side

if TYPE_CHECKING:
    from .._engine import Engine


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What a sync did: ``copied`` includes ``updated`` (replacements); ``bytes`` were written."""

    copied: int
    updated: int
    skipped: int
    deleted: int
    failed: int
    bytes: int
    dry_run: bool
    failures: tuple[SyncEvent, ...]

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> dict[str, Any]:
        return {
            "summary": True,
            "copied": self.copied,
            "updated": self.updated,
            "skipped": self.skipped,
            "deleted": self.deleted,
            "failed": self.failed,
            "bytes": self.bytes,
            "dry_run": self.dry_run,
        }

    @classmethod
    def from_counts(cls, counts: Counts, dry_run: bool) -> SyncResult:
        return cls(
            copied=counts.copied,
            updated=counts.updated,
            skipped=counts.skipped,
            deleted=counts.deleted,
            failed=counts.failed,
            bytes=counts.bytes,
            dry_run=dry_run,
            failures=tuple(counts.failures),
        )


def parse_side(location: object, engine: Engine | None, what: str) -> Side:
    """A :class:`LocalSide` or :class:`S3Side` for ``location`` (raises ``ConfigError``)."""
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if not isinstance(location, str) or not location:
        raise ConfigError(f"{what} must be a local directory or an s3://BUCKET/PREFIX URL")
    if location.startswith("s3://"):
        bucket, _, prefix = location[5:].partition("/")
        if not bucket:
            raise ConfigError(f"{what} {location!r} has no bucket; write s3://BUCKET/PREFIX")
        if engine is None:
            raise ConfigError(f"{what} {location!r} is on S3: pass an Engine for it")
        if prefix and not prefix.endswith("/"):
            prefix += "/"  # a prefix is a directory: s3://b/photos syncs photos/…
        return S3Side(engine, bucket, prefix)
    if location.lower().startswith("s3:"):
        raise ConfigError(f"{what} {location!r} is not an S3 URL; write s3://BUCKET/PREFIX")
    return LocalSide(location)


def _endpoint(side: S3Side) -> str:
    return str(side.engine.client.meta.endpoint_url)


def check_sides(src: Side, dst: Side, *, dry_run: bool) -> None:
    """Local checks (no request): directions, existence, overlap."""
    check_paths(src, dst)
    check_overlap(src, dst)


def check_paths(src: Side, dst: Side) -> None:
    """Directions and the local side's existence (no request, no client needed)."""
    if isinstance(src, LocalSide) and isinstance(dst, LocalSide):
        raise ConfigError("one side of a sync must be an s3:// URL (use rsync between directories)")
    if isinstance(src, LocalSide):
        if not os.path.exists(src.root):
            raise NotFoundError(f"source directory {src.root} does not exist")
        if not os.path.isdir(src.root):
            raise ConfigError(f"source {src.root} is a file, not a directory")
    if isinstance(dst, LocalSide) and os.path.exists(dst.root) and not os.path.isdir(dst.root):
        raise ConfigError(f"destination {dst.root} is a file, not a directory")


def check_overlap(src: Side, dst: Side) -> None:
    """A prefix synced into itself (two S3 sides on one store; the engines must be open)."""
    if isinstance(src, S3Side) and isinstance(dst, S3Side):
        same_store = src.engine is dst.engine or _endpoint(src) == _endpoint(dst)
        if (
            same_store
            and src.bucket == dst.bucket
            and (src.prefix.startswith(dst.prefix) or dst.prefix.startswith(src.prefix))
        ):
            raise ConfigError(
                f"source {src} and destination {dst} overlap; sync into a prefix outside the source"
            )


#: Stores whose flat listing is in directory order, not S3's key order (measured: SeaweedFS 4.x).
TREE_ORDER_STORES = frozenset({"seaweedfs"})


async def preflight(side: Side, *, probe: bool = False) -> Side:
    """One listing page per S3 side, so a bad bucket, credential or endpoint fails before any
    copy; a page out of S3's key order (or a store known to list so) switches the side to a
    directory-by-directory listing. ``probe``: learn which write conditions the store honours
    (an unknown store is probed once)."""
    if not isinstance(side, S3Side):
        return side
    page = await s3_layer(side.engine).list_objects_v2(
        side.bucket, Prefix=side.prefix, MaxKeys=1000
    )
    if probe:
        await conds.prepare(side.engine, side.bucket)
    keys = [str(item["Key"]) for item in page.get("Contents", [])]
    if side.engine.store.name in TREE_ORDER_STORES or not in_s3_order(keys):
        return dataclasses.replace(side, tree=True)
    return side


def check_options(compare: object, concurrency: object, delete: object, dry_run: object) -> None:
    if compare not in COMPARE_MODES:
        raise ConfigError(f"compare must be one of {', '.join(COMPARE_MODES)}, not {compare!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be a positive int, not {concurrency!r}")
    if not isinstance(delete, bool) or not isinstance(dry_run, bool):
        raise ConfigError("delete and dry_run must be True or False")


def job_record(
    src: Side, dst: Side, delete: bool, compare: str, filters: Filters
) -> dict[str, Any]:
    """What a manifest records of a job (a resume must be the same job)."""
    return {
        "source": str(src),
        "destination": str(dst),
        "delete": delete,
        "compare": compare,
        "filters": [list(rule) for rule in filters.rules],
    }


async def sync(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    engine: Engine | None = None,
    source_engine: Engine | None = None,
    delete: bool = False,
    dry_run: bool = False,
    compare: Compare = "checksum",
    filters: Sequence[tuple[str, str]] = (),
    concurrency: int = 16,
    checkpoint: str | os.PathLike[str] | None = None,
    conditional: bool = True,
    on_event: EventCallback | None = None,
    on_progress: ProgressCallback | None = None,
    count_total: bool = False,
) -> SyncResult:
    """Make ``destination`` hold what ``source`` holds; return the counts.

    Each side is a local directory or ``s3://bucket/prefix``. ``engine``
    serves the S3 side(s); ``source_engine`` the source when it is another
    store (s3 → s3 through this process; on one engine it is a server-side
    copy). Both sides are listed as sorted streams and merge-joined, so memory
    does not grow with the number of objects.

    ``compare``: ``"checksum"`` (default: size, then the strongest identity
    both sides offer, see :mod:`streamx.bulk.sides`; reads local files whose
    size matches), ``"size-mtime"`` (size, and the source not newer), or
    ``"size"``. ``delete`` removes destination keys the source lacks;
    ``dry_run`` reports without changing anything. ``filters``:
    ``[("exclude", "*.tmp"), ("include", "keep/*.tmp")]``, the last match wins.
    ``concurrency`` objects move at once, under the engines' memory budgets.
    ``checkpoint=PATH`` records finished work (see :mod:`streamx.bulk.manifest`).
    ``conditional``: write with ``IfNoneMatch``/``IfMatch`` where the destination
    store honours them (see :mod:`streamx.bulk.conditions`); ``False``: never.
    ``on_event`` gets a :class:`SyncEvent` per copy, update, delete or failure;
    ``on_progress`` a :class:`SyncProgress` (with ``count_total`` the source is
    listed a second time, concurrently, for the totals).

    One object's failure is counted and the others go on; a failed listing,
    an out-of-order listing or a cancellation stops the sync (the manifest,
    if any, is saved first).
    """
    check_options(compare, concurrency, delete, dry_run)
    rules = Filters(filters)
    if engine is not None and source_engine is None:
        source_engine = engine
    src = parse_side(source, source_engine, "source")
    dst = parse_side(destination, engine, "destination")
    check_sides(src, dst, dry_run=dry_run)
    if checkpoint is not None and dry_run:
        raise ConfigError("checkpoint records finished work; a dry run does none")
    if not isinstance(conditional, bool):
        raise ConfigError("conditional must be True or False")
    manifest = None
    marks: dict[str, str | None] = {}
    if checkpoint is not None:
        manifest = Manifest(checkpoint, job_record(src, dst, delete, compare, rules))
        marks = manifest.load()
    src = await preflight(src)
    dst = await preflight(dst, probe=conditional and not dry_run)
    if isinstance(dst, LocalSide) and not dry_run:
        os.makedirs(dst.root, exist_ok=True)
    executor = LocalExecutor(
        src,
        dst,
        compare=compare,
        delete=delete,
        dry_run=dry_run,
        filters=rules,
        concurrency=concurrency,
        conditional=conditional,
        on_event=on_event,
        on_progress=on_progress,
        manifest=manifest,
    )
    mark = manifest.shard("", marks.get("")) if manifest is not None else Watermark()
    try:
        async with task_group() as tg:
            if count_total and on_progress is not None:
                tg.start_soon(executor.count_source, mark.value, None)
            await executor.run_shard(mark, None)
            tg.cancel_scope.cancel()
    except BaseException:
        if manifest is not None:
            with anyio.CancelScope(shield=True):
                await manifest.save()
        raise
    if manifest is not None:
        if executor.counts.failed:
            await manifest.save()
        else:
            manifest.remove()
    return SyncResult.from_counts(executor.counts, dry_run)
