"""The resumable job manifest (``checkpoint=PATH``): one watermark per shard, O(1) in size.

Work is handed out in key order and finishes out of order. :class:`Watermark`
keeps the keys (or, on Ray, the batches) started but not yet known finished,
and moves the watermark over the longest run of finished ones: every key up
to it is done. A resume lists each shard from after its watermark, so an
interrupted sync of millions of objects does not redo what it finished.

After a failure the watermark of that shard stops moving (and stops keeping
keys, so memory stays bounded): a resume re-checks from the first failed key
on, and what was copied after it compares equal and is skipped.

The file is JSON, written atomically (``checkpoint.atomic_write``) at most
every ``interval`` seconds and when the job stops; it names the job's source,
destination and options, and a different job refuses it
(:class:`~streamx.CheckpointError`). A sync that finishes without failures
removes it.

On Ray, an object split across the actors (:mod:`.split`) has its multipart
upload recorded here from CreateMultipartUpload (saved at once) to its Complete
or abort: a driver killed in between cannot abort it, and a resume aborts the
uploads the manifest still names (:attr:`Manifest.left`) before it starts.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from .._errors import CheckpointError
from .._jsonstore import atomic_write

VERSION = 1


class Watermark:
    """Keys started in increasing order, finished in any order; ``value`` = all done up to it."""

    def __init__(self, value: str | None = None) -> None:
        self.value = value
        self.failed = False
        self._pending: deque[list[Any]] = deque()  # [key, done]
        self._index: dict[str, list[Any]] = {}

    def start(self, key: str) -> None:
        if self.failed:
            return
        item = [key, False]
        self._pending.append(item)
        self._index[key] = item

    def finish(self, key: str, ok: bool = True) -> None:
        if self.failed:
            return
        if not ok:
            self.failed = True
            self._pending.clear()
            self._index.clear()
            return
        item = self._index.pop(key, None)
        if item is None:
            return
        item[1] = True
        while self._pending and self._pending[0][1]:
            self.value = self._pending.popleft()[0]

    @property
    def pending(self) -> int:
        return len(self._pending)


class Manifest:
    """The watermarks of a job's shards, saved to PATH."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        job: dict[str, Any],
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.job = job
        self.interval = interval
        self._clock = clock
        self._last = clock()
        self.marks: dict[str, Watermark] = {}
        #: multipart uploads of split objects now open: UploadId -> (bucket, key)
        self.uploads: dict[str, tuple[str, str]] = {}
        #: uploads an earlier run left open (:meth:`load`): the resume aborts them
        self.left: list[tuple[str, str, str]] = []
        self._saving = anyio.Lock()

    def load(self) -> dict[str, str | None]:
        """Watermarks recorded by an earlier run of the same job (``{}`` if none)."""
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CheckpointError(f"cannot read sync manifest {self.path}: {exc}") from exc
        try:
            data = json.loads(text)
            if data.get("version") != VERSION or data.get("kind") != "sync":
                raise ValueError("not a sync manifest")
            recorded = data["job"]
            marks = {str(k): (None if v is None else str(v)) for k, v in data["shards"].items()}
            left = [(str(b), str(k), str(u)) for b, k, u in data.get("uploads", [])]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(
                f"{self.path} is not a streamx sync manifest ({exc}); remove it to start over"
            ) from exc
        if recorded != self.job:
            raise CheckpointError(
                f"{self.path} records another sync ({recorded.get('source')} -> "
                f"{recorded.get('destination')} with other options); remove it to start over"
            )
        self.left = left
        return marks

    def shard(self, name: str, value: str | None) -> Watermark:
        mark = Watermark(value)
        self.marks[name] = mark
        return mark

    def to_json(self) -> str:
        shards = {name: mark.value for name, mark in self.marks.items()}
        uploads = [[b, k, u] for b, k, u in self.left] + [
            [b, k, u] for u, (b, k) in self.uploads.items()
        ]
        return json.dumps(
            {"version": VERSION, "kind": "sync", "job": self.job, "shards": shards}
            | ({"uploads": uploads} if uploads else {})
        )

    async def opened(self, bucket: str, key: str, upload_id: str) -> None:
        """A split object's upload exists: recorded, and saved now (a driver killed from
        here on leaves it for the resume to abort)."""
        self.uploads[upload_id] = (bucket, key)
        await self.save()

    def closed(self, upload_id: str) -> None:
        """Completed or aborted: no longer the resume's to abort (saved with the next save)."""
        self.uploads.pop(upload_id, None)

    async def maybe_save(self) -> None:
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            await self.save()

    async def save(self) -> None:
        async with self._saving:  # one at a time: an older snapshot never lands last
            await anyio.to_thread.run_sync(atomic_write, self.path, self.to_json())

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
