"""The actor's half of an object split across actors: read one byte range, upload it as a part.

The driver (:mod:`streamx.bulk.split`) owns the multipart upload; an actor gets
a part task — the key, the UploadId, the part number and the byte range, and
nothing else — reads those bytes from the source itself (a range of the local
file, or one ranged GET pinned to the ETag the listing showed) and sends them
with ``engine.multipart.upload_part``, with their checksum. Only the part's
number, ETag and checksum go back: object bytes never travel through Ray.

Memory: the part's bytes, taken from the actor's memory budget before they are
read (the actor runs at most its ``concurrency`` parts and objects at once).
"""

from __future__ import annotations

from typing import Any

import anyio

from .._api.base import retry_policy, s3_layer
from .._checksum import compute
from .._errors import ObjectChangedError, PreconditionFailedError, SourceError
from ..download.response import parse_content_range
from .entries import clean_etag
from .sides import LocalSide, S3Side, Side

#: A part task on the wire: (key, upload id, part number, start, end, the source's ETag to
#: pin its GET to, the checksum algorithm, the object's listed size); ``[start, end)`` are
#: the source's bytes.
PartTask = tuple[str, str, int, int, int, str | None, str | None, int]
#: A part's outcome: (part number, ETag, base64 checksum, error); ``error`` is ``None`` when
#: the part went up.
PartDone = tuple[int, str | None, str | None, str | None]


async def send_part(src: Side, dst: S3Side, task: PartTask) -> PartDone:
    """Read the task's range from ``src`` and upload it as its part of the upload at ``dst``."""
    key, upload_id, number, start, end, pin, algorithm, size = task
    engine = dst.engine
    held = await engine.memory_budget.acquire(end - start)
    try:
        data = await read_range(src, key, start, end, pin, size)
        checksum: tuple[str, str] | None = None
        if algorithm is not None:  # hashed off the loop (a SHA256 of a part takes milliseconds)
            checksum = (algorithm, (await anyio.to_thread.run_sync(compute, algorithm, data)).b64)
        etag = await engine.multipart.upload_part(
            dst.bucket, dst.key(key), upload_id, number, data, checksum=checksum
        )
    finally:
        engine.memory_budget.release(held)
    return number, etag, None if checksum is None else checksum[1], None


async def read_range(
    src: Side, key: str, start: int, end: int, pin: str | None, size: int
) -> bytes:
    """The bytes ``[start, end)`` of the source's ``key``: all of them, or an error (a file
    that shrank, an object replaced since it was listed)."""
    if isinstance(src, LocalSide):
        path = src.path(key)

        def read() -> bytes:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(end - start)

        data = await anyio.to_thread.run_sync(read)
        if len(data) != end - start:
            raise SourceError(f"{path} is shorter than when it was listed (it changed meanwhile)")
        return data
    params: dict[str, Any] = {"Range": f"bytes={start}-{end - 1}"}
    if pin is not None:
        params["IfMatch"] = f'"{pin}"'

    async def get() -> bytes:
        response = await s3_layer(src.engine).get_object_bytes(src.bucket, src.key(key), **params)
        # If-Match is not enough: some stores ignore it on GET (rclone serve s3), and a part
        # of another version would be completed into the object; the answer's ETag says
        # which version these bytes are of (as the download fetcher checks every range)
        got = clean_etag(str(response.get("ETag", "")))
        if pin is not None and got is not None and got != pin:
            raise ObjectChangedError(
                f"{src}{key} was replaced since it was listed (ETag {got}, listed {pin})",
                bucket=src.bucket,
                key=src.key(key),
            )
        total = parse_content_range(response)[1]
        if total is not None and total != size:
            raise ObjectChangedError(
                f"{src}{key} is {total} bytes, {size} when it was listed",
                bucket=src.bucket,
                key=src.key(key),
            )
        body: bytes = response["Body"]
        return body

    try:
        data = await retry_policy(src.engine).call(get)
    except PreconditionFailedError as exc:
        raise ObjectChangedError(
            f"{src}{key} was replaced since it was listed (it no longer has ETag {pin})",
            bucket=src.bucket,
            key=src.key(key),
        ) from exc
    if len(data) != end - start:
        raise ObjectChangedError(
            f"{src}{key} is shorter than when it was listed", bucket=src.bucket, key=src.key(key)
        )
    return data
