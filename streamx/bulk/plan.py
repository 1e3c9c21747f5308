"""The merge-join of two sorted streams, the filters, and the planner of actions.

:func:`merge` walks the source and destination streams side by side, like
the merge step of a merge sort: O(1) memory whatever their length. A key that
goes backwards on either side stops the sync with :class:`SyncOrderError`
rather than deleting or copying on a wrong reading.

:func:`decide` turns one pair into an :class:`Action`. When the sizes are
equal and the mode is ``checksum``, the pair becomes a ``check`` action whose
identity comparison (hashing a local file, a HEAD) runs later, concurrently,
in the executor.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from .._errors import ConfigError, SyncOrderError
from .entries import Entry

Compare = Literal["checksum", "size-mtime", "size"]
COMPARE_MODES: tuple[str, ...] = ("checksum", "size-mtime", "size")
Kind = Literal["copy", "update", "check", "delete"]

_END = object()


async def merge(
    src: AsyncIterator[Entry], dst: AsyncIterator[Entry]
) -> AsyncIterator[tuple[Entry | None, Entry | None]]:
    """Pairs ``(source, destination)`` by key; ``None`` where a side has no such key."""

    async def step(it: AsyncIterator[Entry], last: Entry | None, side: str) -> Entry | None:
        try:
            entry = await it.__anext__()
        except StopAsyncIteration:
            return None
        if last is not None and entry.key <= last.key:
            raise SyncOrderError(
                f"the {side} listing is not in key order ({entry.key!r} after {last.key!r}); "
                "nothing was deleted on that reading"
            )
        return entry

    s = await step(src, None, "source")
    d = await step(dst, None, "destination")
    while s is not None or d is not None:
        if d is None or (s is not None and s.key < d.key):
            assert s is not None
            yield s, None
            s = await step(src, s, "source")
        elif s is None or d.key < s.key:
            yield None, d
            d = await step(dst, d, "destination")
        else:
            yield s, d
            s, d = await step(src, s, "source"), await step(dst, d, "destination")


class Filters:
    """``--exclude``/``--include`` globs on relative keys; the last rule that matches wins.

    Every key is included unless a rule says otherwise (as ``aws s3 sync``).
    ``*`` also matches ``/``. An excluded key is neither copied nor deleted.
    """

    def __init__(self, rules: Sequence[tuple[str, str]] = ()) -> None:
        for kind, pattern in rules:
            if kind not in ("include", "exclude") or not isinstance(pattern, str) or not pattern:
                raise ConfigError(
                    f"a filter rule is ('include' or 'exclude', GLOB), not {(kind, pattern)!r}"
                )
        self.rules = tuple(rules)

    def __call__(self, key: str) -> bool:
        included = True
        for kind, pattern in self.rules:
            if fnmatch.fnmatchcase(key, pattern):
                included = kind == "include"
        return included


@dataclass(frozen=True, slots=True)
class Action:
    """What to do with one key: ``copy`` (absent at the destination), ``update``
    (replace), ``check`` (same size: compare identities, then update or skip),
    ``delete`` (only at the destination, with ``delete=True``)."""

    kind: Kind
    key: str
    src: Entry | None
    dst: Entry | None

    @property
    def size(self) -> int:
        return self.src.size if self.src is not None else 0


def newer(src: Entry, dst: Entry) -> bool:
    """Whether the source changed after the destination was written. Listings give whole
    seconds (``…T07:48:14.000Z``), so a file written in the same second as its upload counts
    as not newer."""
    return math.floor(src.mtime) > dst.mtime


def decide(
    src: Entry | None, dst: Entry | None, *, compare: Compare, delete: bool
) -> Action | None:
    """The action for one pair, or ``None`` when there is nothing to do."""
    if src is None:
        assert dst is not None
        return Action("delete", dst.key, None, dst) if delete else None
    if dst is None:
        return Action("copy", src.key, src, None)
    if src.size != dst.size:
        return Action("update", src.key, src, dst)
    if compare == "size":
        return None
    if compare == "size-mtime":
        return Action("update", src.key, src, dst) if newer(src, dst) else None
    if src.etag is not None and src.etag == dst.etag:
        return None  # same ETag on both sides (s3 → s3): the same bytes
    return Action("check", src.key, src, dst)
