"""The read verbs of :class:`streamx.Engine`: download, download_file, download_to,
get_range, get_ranges, head, list."""

from __future__ import annotations

import os
from typing import Any

from .._config import TransferConfig, resolve_config
from .._events import Progress, ProgressCallback
from .._objects import DownloadResult, ObjectInfo
from .._validate import check_bucket, check_bucket_key, check_local_path
from ..download.pipeline import DownloadPipeline
from ..download.stream import DownloadStream, check_chunk_size
from ..listing import Listing, check_list_args
from .base import EngineBase


class ReadAPI(EngineBase):
    def download(
        self,
        bucket: str,
        key: str,
        *,
        range: tuple[int, int | None] | None = None,
        chunk_size: int | None = None,
    ) -> DownloadStream:
        """Stream an object (or a byte ``range`` of it) as an async iterator of chunks.

        ``async with engine.download(b, k) as stream: async for chunk in stream: ...``
        (``async for`` directly also works). One GET: constant memory whatever
        the size, time to first byte one request. The connection is released
        however the loop ends (``break``, an exception, cancellation). A
        dropped connection is resumed from the next missing byte, pinned to
        the ETag first seen. ``range`` is a half-open ``(start, end)`` read
        like a slice (``(-n, None)`` is the last ``n`` bytes). Chunks have
        exactly ``chunk_size`` bytes (but the last), or whatever arrives (at
        most 1 MiB) when ``chunk_size`` is ``None``. After the first chunk
        (or ``async with``), ``stream.size``, ``stream.etag`` and
        ``stream.info`` describe the object.
        """
        from ..download.planner import check_spec

        check_bucket_key(bucket, key)
        spec = None if range is None else check_spec(range)
        check_chunk_size(chunk_size)
        return DownloadStream(self._context(), bucket, key, spec, chunk_size=chunk_size)

    def _download_pipeline(
        self,
        bucket: str,
        key: str,
        config: TransferConfig | None,
        on_progress: ProgressCallback | None,
    ) -> DownloadPipeline:
        check_bucket_key(bucket, key)
        cfg = resolve_config(config, self.config)
        Progress(on_progress, interval=cfg.progress_interval)  # validates the callback
        ctx = self._context(cfg)
        return DownloadPipeline(ctx, bucket, key, progress=ctx.progress(on_progress))

    async def download_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        *,
        config: TransferConfig | None = None,
        on_progress: ProgressCallback | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        restart: bool = False,
    ) -> DownloadResult:
        """Download to ``path`` with ``queue_size`` parallel ranged GETs of ``part_size``.

        Ranges are written at their offsets into a temporary file next to
        ``path``, renamed over it only when complete; on failure or
        cancellation no partial file is left. Memory: at most
        ``part_size * queue_size`` bytes of ranges in flight. Every range is
        pinned to the ETag of the first answer: an object replaced mid-way
        raises :class:`streamx.ObjectChangedError`. The file is checked
        against the object's stored full-object checksum when the store
        reports one (:class:`streamx.ChecksumError` on a mismatch, and no
        file); see :mod:`streamx.download.verify`.

        ``checkpoint=PATH`` makes the download resumable after a crash: each
        range written is recorded in PATH, the temporary file is kept on
        failure, and the same call with the same PATH fetches only the
        missing ranges, pinned to the recorded ETag (see
        :mod:`streamx.download.checkpoint`). An object that changed since
        raises :class:`streamx.CheckpointError` (also an
        ``ObjectChangedError``); ``restart=True`` discards the recorded
        download and starts over.
        """
        from ..download.checkpoint import open_download_checkpoint
        from ..download.sink import FileSink
        from ..download.to_file import to_file

        pipeline = self._download_pipeline(bucket, key, config, on_progress)
        local = check_local_path(path)
        file = open_download_checkpoint(checkpoint, restart)
        return await to_file(pipeline, FileSink(local), file, restart=restart)

    async def download_to(
        self,
        bucket: str,
        key: str,
        sink: Any,
        *,
        config: TransferConfig | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> DownloadResult:
        """Parallel download delivered in order to any writer (a pipe, an HTTP response).

        ``sink``: an object with a sync or async ``write(data)``, an
        ``asyncio.StreamWriter`` (drained after each write), an anyio byte
        stream, or a callable. Ranges are fetched ``queue_size`` at a time and
        reordered in a bounded window (memory: ``part_size * queue_size * 2``);
        a sink that raises stops the download and its exception propagates.
        """
        from ..download.sink import open_sink
        from ..download.to_sink import to_sink

        pipeline = self._download_pipeline(bucket, key, config, on_progress)
        return await to_sink(pipeline, open_sink(sink))

    async def get_range(self, bucket: str, key: str, start: int, end: int | None) -> bytes:
        """The bytes ``[start, end)`` of an object, like ``data[start:end]``, in one GET.

        ``(-n, None)`` is the last ``n`` bytes. An inverted range raises
        ``ValueError`` before any request; one reaching past the object
        raises ``ValueError`` once the server has said how long it is.
        """
        async with self.download(bucket, key, range=(start, end)) as stream:
            return await stream.read_all()

    async def get_ranges(
        self,
        bucket: str,
        key: str,
        ranges: Any,
        *,
        config: TransferConfig | None = None,
        coalesce_gap: int | None = None,
    ) -> list[bytes]:
        """The bytes of each half-open ``(start, end)`` range, in the order asked.

        Ranges closer than ``coalesce_gap`` (default 1 MiB) are fetched by one
        request, long ones in ``part_size`` pieces, ``queue_size`` at a time;
        all are pinned to one ETag. One HEAD learns the size first, so
        out-of-bounds or inverted ranges raise ``ValueError`` before any GET.
        """
        from ..download.ranges import check_ranges, get_ranges

        check_bucket_key(bucket, key)
        specs, gap = check_ranges(ranges, coalesce_gap)
        cfg = resolve_config(config, self.config)
        if not specs:
            return []
        return await get_ranges(self._context(cfg), bucket, key, specs, coalesce_gap=gap)

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        """Size, ETag, last modified, content type and metadata of an object.

        A missing object raises :class:`streamx.NotFoundError` (a ``FileNotFoundError``).
        """
        check_bucket_key(bucket, key)
        response = await self._s3_layer.head_object(bucket, key)
        return ObjectInfo.from_head(key, response)

    def list(
        self,
        bucket: str,
        prefix: str = "",
        *,
        delimiter: str | None = None,
        start_after: str | None = None,
        page_size: int = 1000,
    ) -> Listing:
        """A lazy async iterator of :class:`streamx.ObjectInfo` under ``prefix``.

        Pages (``page_size`` keys, at most 1,000) are fetched as they are
        consumed: stopping early stops paginating, and memory holds one page.
        With a ``delimiter`` common prefixes come as entries with
        ``is_prefix=True``; ``listing.pages()`` yields whole pages.
        """
        check_bucket(bucket)
        check_list_args(prefix, delimiter, start_after, page_size)
        return Listing(
            self._s3_layer,
            bucket,
            prefix,
            delimiter=delimiter,
            start_after=start_after,
            page_size=page_size,
        )
