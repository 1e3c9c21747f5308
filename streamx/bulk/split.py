"""Objects split across actors (the Ray executor): the driver owns the upload, actors send parts.

::

    driver: an object of split_threshold bytes or more
              ─▶ CreateMultipartUpload (the checksum algorithm; conditions kept for Complete)
              ─▶ part tasks: key, UploadId, part number, byte range (nothing else)
    actors:      read the range from the source, UploadPart with its checksum (parts.py)
              ◀─ part number, ETag, checksum
    driver:   every part back ─▶ CompleteMultipartUpload (IfNoneMatch / IfMatch, the
              FULL_OBJECT checksum) ─▶ an event and the manifest, like any other object

Why: a whole object is one actor's, so one 50 GiB file keeps one actor (and
its node's bandwidth) busy long after the others have finished; its parts
spread over every actor instead. Parts are the engine's ``part_size``, grown
(whole MiB) so that the object fits in 10,000 parts.

A part task whose actor dies is sent again to the next free actor (another one
where the pool has one; :meth:`~streamx.bulk.ray_driver.Driver.call`). A part
that fails otherwise (its retries spent, the source gone or replaced since it
was listed; a local file that changed by the time every part is back) fails the object: the parts still running are cancelled (their Ray
tasks too) and the upload is aborted — shielded, retried, time-boxed
(``engine.multipart.discard``) — and so is it when the sync is cancelled, so no
multipart upload is left behind. A lost conditional write (412 at Complete) is
that key's failure, never an overwrite.

Not split: a local destination (nothing to assemble), a server-side copy (s3 →
s3 on one engine: no byte passes through an actor anyway), an object of one part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .._checksum import combine, from_b64, param_name, supports_full_object
from .._concurrency import FirstFailure
from .._errors import ConfigError, NotFoundError, ObjectChangedError, SourceError
from .._limits import MIN_PART_SIZE, MiB, PartPlan
from .._stores import adapt
from ..copy import carried_args
from .actor import EventTuple, pack_action
from .conditions import write_conditions
from .entries import clean_etag
from .execute import describe
from .manifest import Manifest
from .parts import PartDone, PartTask
from .plan import Action
from .sides import LocalSide, S3Side, Side

#: The default ``split_threshold``: objects of this size or more go as parts over the actors.
SPLIT_THRESHOLD = 256 * MiB


class TaskFailed(Exception):
    """A task the actors could not do; its message is the object's error as reported."""


def check_split_threshold(value: object) -> int | None:
    """``None`` (never split) or an int of bytes, at least S3's 5 MiB part minimum."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_PART_SIZE:
        raise ConfigError(
            "split_threshold must be an int of bytes of at least 5 MiB (S3's smallest part), "
            f"or None to never split an object, not {value!r}"
        )
    return value


def part_ranges(size: int, part_size: int, max_object_size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each part: ``part_size`` bytes, grown so at most 10,000 parts."""
    base = PartPlan.for_known_size(size, part_size, max_object_size=max_object_size).base
    return [(start, min(start + base, size)) for start in range(0, size, base)]


def completion(
    done: list[PartDone], ranges: list[tuple[int, int]], algorithm: str | None
) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
    """CompleteMultipartUpload's parts (each with its checksum, as ``engine.upload`` lists
    them) and, for a CRC, the whole object's FULL_OBJECT checksum, combined from the parts'."""
    parts: list[dict[str, Any]] = [{"PartNumber": n, "ETag": etag} for n, etag, _, _ in done]
    if algorithm is None:
        return parts, None
    values = [str(value) for _, _, value, _ in done]
    for part, value in zip(parts, values, strict=True):
        part[param_name(algorithm)] = value
    if not supports_full_object(algorithm):  # SHA256: COMPOSITE, the store derives it
        return parts, None
    sums = [from_b64(algorithm, v, b - a) for v, (a, b) in zip(values, ranges, strict=True)]
    return parts, (algorithm, combine(sums).b64)


async def abort_left(engine: Any, manifest: Manifest) -> None:
    """Abort the split objects' uploads an earlier driver left open (killed between Create
    and Complete: its manifest names them), before the resume starts; one completed or
    aborted since is gone already (NoSuchUpload)."""
    for bucket, key, upload_id in manifest.left:
        with contextlib.suppress(NotFoundError):
            await engine.multipart.abort(bucket, key, upload_id)
    manifest.left = []
    await manifest.save()


#: ``take()`` a free actor slot; ``call(actor, method, *args)`` runs ``method`` on it (owning
#: the slot; raises :class:`TaskFailed` when actors keep dying under it).
Take = Callable[[], Awaitable[Any]]
Call = Callable[..., Awaitable[Any]]


class Splitter:
    """The driver's half: which objects to split, and each one's upload from Create to
    Complete (or abort)."""

    def __init__(
        self,
        src: Side,
        dst: Side,
        threshold: int | None,
        *,
        conditional: bool,
        take: Take,
        call: Call,
        manifest: Manifest | None = None,
    ) -> None:
        self.src, self.dst = src, dst
        server_side = (
            isinstance(src, S3Side) and isinstance(dst, S3Side) and src.engine is dst.engine
        )
        self.threshold = None if server_side or not isinstance(dst, S3Side) else threshold
        self.conditional = conditional
        self._take, self._call = take, call
        self.manifest = manifest

    def wants(self, action: Action) -> bool:
        """Whether ``action`` writes an object to split (many parts of an S3 destination)."""
        s, d = action.src, action.dst
        return (
            self.threshold is not None
            and isinstance(self.dst, S3Side)
            and action.kind != "delete"
            and s is not None
            and s.error is None
            and (d is None or d.error is None)
            and s.size >= self.threshold
            and s.size > self.dst.engine.config.part_size
        )

    async def run(self, action: Action) -> EventTuple:
        """The object's event: copied by parts, skipped (a ``check`` an actor found the same),
        or failed (with its error). Cancellation propagates, after the abort."""
        key, size = action.key, action.size
        kind = action.kind
        try:
            if kind == "check":  # the comparison reads the source: an actor's work
                same = await self._call(await self._take(), "same", pack_action(action), key=key)
                if same is not False:
                    return ("skip", key, size, None) if same is True else ("fail", key, size, same)
                kind = "update"
            await self._copy(action)
        except TaskFailed as exc:
            return "fail", key, size, str(exc)
        except Exception as exc:
            return "fail", key, size, describe(exc)
        return kind, key, size, None

    async def _copy(self, action: Action) -> None:
        src, dst, key, listed = self.src, self.dst, action.key, action.src
        assert isinstance(dst, S3Side) and listed is not None
        engine = dst.engine
        cfg = adapt(engine.config, engine.store)  # what engine.upload would send this store
        algorithm = cfg.checksum_algorithm if cfg.checksum == "when_supported" else None
        if engine.store.checksums == {}:  # kept by no algorithm (rclone): sending costs its CPU
            algorithm = None
        ranges = part_ranges(listed.size, cfg.part_size, engine.store.max_object_size)
        conditions = (  # as a whole object's write would carry them, at Complete
            write_conditions(engine, action.dst, copy=False, size=listed.size, split=True)
            if self.conditional
            else {}
        )
        put_args, pin = await self._carried(key, listed.etag)
        bucket, dst_key, multipart = dst.bucket, dst.key(key), engine.multipart
        await multipart.preflight(bucket, dst_key, conditions)  # a lost race fails before a part
        with anyio.CancelScope(shield=True):  # an UploadId, once S3 has made one, is never lost
            upload_id = await multipart.create(
                bucket, dst_key, checksum_algorithm=algorithm, **put_args
            )
        try:
            if self.manifest is not None:  # a killed driver's upload: the resume aborts it
                with anyio.CancelScope(shield=True):
                    await self.manifest.opened(bucket, dst_key, upload_id)
            done = await self._parts(
                [
                    (key, upload_id, n, a, b, pin, algorithm, listed.size)
                    for n, (a, b) in enumerate(ranges, 1)
                ]
            )
            parts, checksum = completion(done, ranges, algorithm)
            if isinstance(src, LocalSide):  # its parts were read at different times
                now = await src.stat(key)
                if now is None or (now.size, now.mtime) != (listed.size, listed.mtime):
                    raise SourceError(f"{src.path(key)} changed while it was copied")
            await multipart.complete(
                bucket, dst_key, upload_id, parts, checksum=checksum, **conditions
            )
        except BaseException as exc:  # a failed part, a lost race, a cancellation
            await multipart.discard(bucket, dst_key, upload_id, cause=exc, what="sync.split")
            raise
        finally:
            if self.manifest is not None:
                self.manifest.closed(upload_id)

    async def _carried(self, key: str, etag: str | None) -> tuple[dict[str, Any], str | None]:
        """An S3 source's content type and metadata (one HEAD), as ``copy_to`` carries them,
        and the ETag every part's GET is pinned to (the listed one; the HEAD's if the listing
        had none); an object replaced since it was listed fails here."""
        src = self.src
        if not isinstance(src, S3Side):
            return {}, None
        info = await src.engine.head(src.bucket, src.key(key))
        if etag is not None and clean_etag(info.etag) != etag:
            raise ObjectChangedError(
                f"{src}{key} was replaced since it was listed", bucket=src.bucket, key=src.key(key)
            )
        return carried_args(info, {}), etag or clean_etag(info.etag)

    async def _parts(self, tasks: list[PartTask]) -> list[PartDone]:
        """Every part task on the next free actor; the first failure cancels the rest."""
        done: dict[int, PartDone] = {}
        first = FirstFailure()

        async def one(actor: Any, task: PartTask) -> None:
            result: PartDone = await self._call(actor, "part", task, key=task[0], part=task[2])
            if result[3] is not None:
                raise TaskFailed(result[3])
            done[result[0]] = result

        async with anyio.create_task_group() as tg:
            for task in tasks:
                actor = await self._take()
                tg.start_soon(first.run, tg.cancel_scope, one, actor, task)
        first.raise_if_failed()
        return [done[n] for n in sorted(done)]
