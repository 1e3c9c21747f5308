"""The two ends of a sync: a local directory or an S3 prefix, and what each can tell about a key.

Identity (see :func:`same_content`): size first (in the planner), then the
strongest identity both sides offer:

* s3 ↔ s3: equal ETags mean equal bytes; two single-part (MD5) ETags that
  differ mean different bytes; otherwise a FULL_OBJECT checksum both store
  (one HEAD each side, ``ChecksumMode=ENABLED``);
* local ↔ s3: a single-part ETag is the object's MD5, compared with the
  file's MD5 (one read of the file); a multipart object with a stored
  FULL_OBJECT checksum is compared with the file's checksum of that algorithm
  (one HEAD and one read);
* when neither applies (a multipart ETag without a stored checksum) the
  pair is equal when the destination is not older than the source.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .._api.base import retry_policy, s3_layer
from .._checksum import Running
from .._errors import ChecksumError, NotFoundError
from .entries import Entry, clean_etag, entry_from_listing, list_s3, walk_local, walk_s3
from .fileio import ThreadBatcher
from .plan import newer

if TYPE_CHECKING:
    from .._engine import Engine

_ALGORITHMS = ("CRC64NVME", "CRC32C", "CRC32", "SHA256")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1024 * 1024
SMALL_HASH = 1024 * 1024  # files up to this size are hashed in shared thread hops
_TEMP_SUFFIX = ".streamx-part"  # streamx's own temporary download files (download/sink.py)


def is_md5(etag: str | None) -> bool:
    return etag is not None and _MD5.match(etag) is not None


def safe_relative_path(rel_key: str) -> str | None:
    """A local relative path for a key, or ``None`` if it would escape the root (``../x``, ``a//b``)."""
    parts = rel_key.split("/")
    if not rel_key or any(p in ("", ".", "..") for p in parts):
        return None
    if any(os.sep in p or (os.altsep and os.altsep in p) or "\0" in p for p in parts):
        return None
    return os.path.join(*parts)


@dataclass(frozen=True)
class LocalSide:
    root: str
    #: small reads and hashes share thread hops (see :mod:`streamx.bulk.fileio`)
    files: ThreadBatcher = field(default_factory=ThreadBatcher, compare=False, repr=False)

    def __str__(self) -> str:
        return self.root

    def path(self, key: str) -> str:
        rel = safe_relative_path(key)
        if rel is None:
            raise ValueError(f"key {key!r} cannot be mapped safely onto a local path")
        return os.path.join(self.root, rel)

    async def entries(self, after: str | None, until: str | None) -> AsyncIterator[Entry]:
        if not await anyio.to_thread.run_sync(os.path.isdir, self.root):
            return  # a destination not made yet holds nothing (a dry run does not make it)
        async for entry in walk_local(self.root, after=after, until=until):
            name = entry.key.rpartition("/")[2]
            if name.startswith(".") and name.endswith(_TEMP_SUFFIX):
                continue
            yield entry

    async def stat(self, key: str) -> Entry | None:
        """The file's entry now, or ``None`` if it is absent."""
        try:
            st = await anyio.to_thread.run_sync(os.stat, self.path(key))
        except FileNotFoundError:
            return None
        return Entry(key, st.st_size, st.st_mtime)

    async def read_small(self, key: str) -> bytes:
        """The whole file (a small one: see ``execute.SMALL_FILE``), read in a shared thread hop."""
        path = self.path(key)

        def run() -> bytes:
            with open(path, "rb") as f:
                return f.read()

        return await self.files.run(run)

    async def digest(self, key: str, algorithm: str, size: int | None = None) -> str:
        """The file's MD5 (hex) or FULL_OBJECT checksum (base64) of ``algorithm``; a file of
        known ``size`` up to ``SMALL_HASH`` shares a thread hop with other small jobs."""
        path = self.path(key)

        def run() -> str:
            return file_digest(path, algorithm)

        if size is not None and size <= SMALL_HASH:
            return await self.files.run(run)
        return await anyio.to_thread.run_sync(run)


def file_digest(path: str, algorithm: str) -> str:
    """A file's MD5 (hex) or FULL_OBJECT checksum (base64) of ``algorithm`` (blocking)."""
    if algorithm == "MD5":
        md5 = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                md5.update(chunk)
        return md5.hexdigest()
    running = Running(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            running.update(chunk)
    return running.result().b64


@dataclass(frozen=True)
class S3Side:
    engine: Engine
    bucket: str
    prefix: str  # "" or ending in "/"
    tree: bool = False  # list directory by directory (a store that lists in directory order)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, rel: str) -> str:
        return self.prefix + rel

    async def entries(
        self, after: str | None, until: str | None, *, for_local: bool = False
    ) -> AsyncIterator[Entry]:
        lister = walk_s3 if self.tree else list_s3
        async for rel, item in lister(
            s3_layer(self.engine), self.bucket, self.prefix, after=after, until=until
        ):
            entry = entry_from_listing(rel, item)
            if for_local:
                if rel.endswith("/") and entry.size == 0:
                    continue  # a "folder" marker: directories are implied locally
                if safe_relative_path(rel) is None:
                    entry = Entry(
                        rel,
                        entry.size,
                        entry.mtime,
                        error="the key cannot be mapped safely onto a local path",
                    )
            yield entry

    async def stat(self, rel: str) -> Entry | None:
        """The object's entry now (one HEAD), or ``None`` if it is absent."""
        try:
            head = await s3_layer(self.engine).head_object(
                self.bucket, self.key(rel), ChecksumMode="ENABLED"
            )
        except NotFoundError:
            return None
        modified = head.get("LastModified")
        return Entry(
            rel,
            int(head.get("ContentLength", 0)),
            modified.timestamp() if modified is not None else 0.0,
            etag=clean_etag(head.get("ETag")),
            checksums=tuple(a for a in _ALGORITHMS if head.get(f"Checksum{a}")),
        )

    async def read_small(self, entry: Entry) -> tuple[bytes, dict[str, Any]]:
        """A small object's bytes (one GET pinned to the listed ETag, retried) and the
        ``ContentType``/``Metadata`` to carry over; a single-part object's bytes are checked
        against its MD5 ETag."""
        params = {"IfMatch": f'"{entry.etag}"'} if entry.etag else {}
        md5 = is_md5(entry.etag)  # hashed by the thread that read the bytes (see fetch)

        async def get() -> tuple[bytes, dict[str, Any], str | None]:
            r = await s3_layer(self.engine).get_object_bytes(
                self.bucket, self.key(entry.key), md5=md5, **params
            )
            carried: dict[str, Any] = {}
            if r.get("ContentType"):
                carried["ContentType"] = r["ContentType"]
            if r.get("Metadata"):
                carried["Metadata"] = dict(r["Metadata"])
            return r["Body"], carried, r.get("BodyMD5")

        data, carried, digest = await retry_policy(self.engine).call(get)
        if md5 and digest != entry.etag:
            raise ChecksumError(
                "the bytes read differ from the object's MD5 ETag",
                bucket=self.bucket,
                key=self.key(entry.key),
            )
        return data, carried

    async def stored_checksum(self, rel: str) -> tuple[str, str] | None:
        """(algorithm, base64 value) of the object's FULL_OBJECT checksum, if it stores one."""
        response: dict[str, Any] = await s3_layer(self.engine).head_object(
            self.bucket, self.key(rel), ChecksumMode="ENABLED"
        )
        if response.get("ChecksumType") not in (None, "FULL_OBJECT"):
            return None
        for algorithm in _ALGORITHMS:
            value = response.get(f"Checksum{algorithm}")
            if value and "-" not in str(value):
                if response.get("ChecksumType") is None and algorithm == "SHA256":
                    continue  # a single-part SHA256 is full-object only when said so
                return algorithm, str(value)
        return None


Side = LocalSide | S3Side


def not_older(src: Entry, dst: Entry) -> bool:
    return not newer(src, dst)


def md5_decides(src_side: Side, dst_side: Side, src: Entry, dst: Entry) -> LocalSide | None:
    """The local side, when comparing this pair takes only the local file's MD5 (the other side
    is S3 with a single-part ETag)."""
    if isinstance(src_side, LocalSide) and isinstance(dst_side, S3Side) and is_md5(dst.etag):
        return src_side
    if isinstance(src_side, S3Side) and isinstance(dst_side, LocalSide) and is_md5(src.etag):
        return dst_side
    return None


async def same_content(src_side: Side, dst_side: Side, src: Entry, dst: Entry) -> bool:
    """Whether two entries of equal size hold the same bytes (see the module docstring)."""
    if isinstance(src_side, S3Side) and isinstance(dst_side, S3Side):
        if src.etag and src.etag == dst.etag:
            return True
        if is_md5(src.etag) and is_md5(dst.etag):
            return False
        # a listing may not name the checksum a multipart object stores (SeaweedFS): ask
        if set(src.checksums) & set(dst.checksums) or not (src.checksums or dst.checksums):
            a = await src_side.stored_checksum(src.key)
            b = await dst_side.stored_checksum(dst.key)
            if a is not None and b is not None and a[0] == b[0]:
                return a[1] == b[1]
        return not_older(src, dst)
    if isinstance(src_side, LocalSide) and isinstance(dst_side, S3Side):
        local, remote, remote_side = src_side, dst, dst_side
    elif isinstance(src_side, S3Side) and isinstance(dst_side, LocalSide):
        local, remote, remote_side = dst_side, src, src_side
    else:  # pragma: no cover - local → local is refused up front
        return not_older(src, dst)
    if is_md5(remote.etag):
        return await local.digest(remote.key, "MD5", remote.size) == remote.etag
    if remote.checksums or remote.etag is None or "-" in remote.etag:  # multipart: ask
        stored = await remote_side.stored_checksum(remote.key)
        if stored is not None:
            return await local.digest(remote.key, stored[0], remote.size) == stored[1]
    return not_older(src, dst)
