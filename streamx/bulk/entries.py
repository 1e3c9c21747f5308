"""Both sides of a sync as sorted streams of :class:`Entry`, in S3's key order.

S3 lists keys in UTF-8 byte order, which for valid strings is Python's
``str`` order (code points). A local tree is walked in that same order, not
in directory order: a directory ``a`` holds keys ``a/…``, which sort after
``a-b`` and ``a.b`` (``-`` and ``.`` are below ``/``) and before ``a0``. So the
entries of one directory are sorted by name, a subdirectory's name counted
with its trailing ``/``, and each subdirectory is walked where it sorts.

Memory: one directory's entries per level of the walk, one listing page
(1,000 keys) per S3 side; never the whole tree. A store that lists in
directory order instead (SeaweedFS: ``a/…`` before ``a-b``) is walked like a
local tree, one ``Delimiter="/"`` listing per directory (:func:`walk_s3`);
memory is then one directory level.

Both streams take a key range ``(after, until]`` of relative keys: a resume
starts after the manifest's watermark, and a shard of a fleet sync covers one
range.
"""

from __future__ import annotations

import itertools
import os
import stat as stat_mod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio

from .._s3 import S3


@dataclass(frozen=True, slots=True)
class Entry:
    """One object or file: its key relative to the synced root, size, time and identities.

    ``etag`` has no quotes. ``checksums`` are the algorithms a listing says
    the object has (the values need a HEAD). ``error`` marks an entry that
    cannot be synced (a file name that is not UTF-8, a key that cannot be a
    local path); it is reported as a failure.
    """

    key: str
    size: int
    mtime: float
    etag: str | None = None
    checksums: tuple[str, ...] = ()
    error: str | None = None


def in_range(key: str, after: str | None, until: str | None) -> bool:
    return (after is None or key > after) and (until is None or key <= until)


def _scan(path: str) -> list[tuple[str, str, bool, os.stat_result]]:
    """(sort name, name, is directory, stat) of a directory's entries, sorted as S3 keys."""
    found = []
    with os.scandir(path) as it:
        for item in it:
            try:
                st = item.stat()  # follows symlinks
            except OSError:  # a dangling symlink or a file that just vanished
                continue
            if stat_mod.S_ISDIR(st.st_mode):
                found.append((item.name + "/", item.name, True, st))
            elif stat_mod.S_ISREG(st.st_mode):
                found.append((item.name, item.name, False, st))
    found.sort(key=lambda t: t[0])
    return found


def _skip_dir(prefix: str, after: str | None, until: str | None) -> bool:
    """True when no key under ``prefix`` (ending in ``/``) can lie in ``(after, until]``."""
    if until is not None and prefix > until:
        return True
    # every key under prefix is < prefix[:-1] + "0" ("0" follows "/")
    return after is not None and not after.startswith(prefix) and after > prefix


async def walk_local(
    root: str, *, after: str | None = None, until: str | None = None
) -> AsyncIterator[Entry]:
    """Regular files under ``root`` (symlinks followed, loops cut) in S3 key order."""
    root_st = await anyio.to_thread.run_sync(os.stat, root)
    seen: set[tuple[int, int]] = {(root_st.st_dev, root_st.st_ino)}

    async def visit(path: str, prefix: str) -> AsyncIterator[Entry]:
        for sort_name, name, is_dir, st in await anyio.to_thread.run_sync(_scan, path):
            rel = prefix + sort_name
            if is_dir:
                ident = (st.st_dev, st.st_ino)
                if ident in seen or _skip_dir(rel, after, until):
                    continue
                seen.add(ident)
                async for entry in visit(os.path.join(path, name), rel):
                    yield entry
                seen.discard(ident)
                continue
            if until is not None and rel > until:
                return
            if not in_range(rel, after, until):
                continue
            error = None
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                error = "the file name is not valid UTF-8, so it cannot be an S3 key"
            yield Entry(rel, st.st_size, st.st_mtime, error=error)

    async for entry in visit(root, ""):
        yield entry


def entry_from_listing(rel: str, item: dict[str, Any]) -> Entry:
    modified = item.get("LastModified")
    return Entry(
        key=rel,
        size=int(item.get("Size", 0)),
        mtime=modified.timestamp() if modified is not None else 0.0,
        etag=clean_etag(item.get("ETag")),
        checksums=tuple(item.get("ChecksumAlgorithm") or ()),
    )


def clean_etag(etag: object) -> str | None:
    return str(etag).strip('"') if etag else None


async def list_s3(
    s3: S3,
    bucket: str,
    prefix: str,
    *,
    after: str | None = None,
    until: str | None = None,
    page_size: int = 1000,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(relative key, raw listing entry) under ``prefix``, a page at a time."""
    params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": page_size}
    if after is not None:
        params["StartAfter"] = prefix + after
    while True:
        response = await s3.list_objects_v2(bucket, **params)
        for item in response.get("Contents", []):
            key = str(item["Key"])
            if not key.startswith(prefix):
                continue
            rel = key[len(prefix) :]
            if until is not None and rel > until:
                return
            if after is not None and rel <= after:
                continue
            yield rel, item
        token = response.get("NextContinuationToken")
        if not response.get("IsTruncated") or not token:
            return
        params.pop("StartAfter", None)
        params["ContinuationToken"] = token


def in_s3_order(keys: list[str]) -> bool:
    return all(a < b for a, b in itertools.pairwise(keys))


async def walk_s3(
    s3: S3, bucket: str, prefix: str, *, after: str | None = None, until: str | None = None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """As :func:`list_s3`, for stores whose flat listing is not in key order."""

    async def level(rel_dir: str) -> list[tuple[str, dict[str, Any] | None]]:
        items: list[tuple[str, dict[str, Any] | None]] = []
        params: dict[str, Any] = {"Prefix": prefix + rel_dir, "Delimiter": "/", "MaxKeys": 1000}
        while True:
            response = await s3.list_objects_v2(bucket, **params)
            for item in response.get("Contents", []):
                items.append((str(item["Key"])[len(prefix) :], item))
            for common in response.get("CommonPrefixes", []):
                items.append((str(common["Prefix"])[len(prefix) :], None))
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                break
            params["ContinuationToken"] = token
        items.sort(key=lambda t: t[0])  # "a/" sorts where S3 puts the keys under it
        return items

    async def visit(rel_dir: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        for rel, item in await level(rel_dir):
            if item is None:
                if rel != rel_dir and not _skip_dir(rel, after, until):
                    async for found in visit(rel):
                        yield found
            elif in_range(rel, after, until):
                yield rel, item

    async for found in visit(""):
        yield found
