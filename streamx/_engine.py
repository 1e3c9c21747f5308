"""Engine: the async context manager that owns (or borrows) the aiobotocore client.

A thin facade: each method validates its arguments, then hands the work to
the pipeline module of its verb (``upload/``, ``download/``, ...).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from types import TracebackType
from typing import Any

import anyio

from ._budget import MemoryBudget, default_memory_budget
from ._config import TransferConfig
from ._errors import ConfigError, UsageError
from ._events import Progress, ProgressCallback
from ._objects import CopyResult, DeleteResult, DownloadResult, ObjectInfo
from ._ratelimit import RateLimit
from ._results import UploadResult
from ._s3 import S3, borrowed_s3, check_put_args, open_s3, split_conditions
from ._stores import (
    StoreProfile,
    adapt,
    check_conditions,
    condition_points,
    detect,
    unknown_points,
)
from ._stores import profile as store_profile
from ._validate import check_bucket_key, check_budget, check_client_args, check_local_path
from .download.fetcher import DownloadStream
from .listing import Listing
from .maintenance import StaleUpload
from .upload.pipeline import UploadPipeline
from .upload.resume import MemoryCheckpoint, ResumeToken
from .upload.source import UploadSource, open_source
from .upload.writer import WriterContext, open_writer

#: Largest connection pool accepted (each connection is a socket and a thread at most).
MAX_POOL_CONNECTIONS = 10_000


class Engine:
    """Streams bytes into and out of S3-compatible storage.

    ``async with Engine() as engine: await engine.upload("bucket", "key", source)``

    With ``client=`` (an aiobotocore S3 client the caller already has) the
    engine uses it and does not close it; its own botocore configuration
    (retries, checksums, signing) then applies as the caller set it. Otherwise
    the engine creates and owns a client, reading the standard ``AWS_*``
    environment variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_PROFILE`` ...) for
    whatever is not given.

    ``config`` is the default :class:`TransferConfig` for every transfer;
    ``memory_budget`` (a :class:`MemoryBudget` or a number of bytes) caps the
    bytes held by all transfers of this engine together (pass the same
    ``MemoryBudget`` to several engines to share it process-wide). By default
    (``None``) every engine has one of ``min(128 MiB, RAM / 8)``, at least
    ``config.memory_bound`` (see :func:`streamx._budget.default_memory_budget`):
    a lone transfer gets its whole window, and a server taking 64 or 1,000
    uploads at once holds that much, not a window per upload. Pass a larger
    number to let many concurrent transfers hold more.

    ``sign_payload``: over plain http botocore SHA-256-signs every request
    body (about 0.6 CPU-s per GiB). With ``None`` (the default) streamx sends
    ``UNSIGNED-PAYLOAD`` when it sends its own checksum with the part (the
    checksum header is itself signed, so the body stays protected) and signs
    otherwise; ``True``/``False`` force it.

    ``direct_parts``: UploadPart (and small PutObject) bodies are sent from
    worker threads through botocore's urllib3 session, signed on the event
    loop by botocore's SigV4 signer (streamx/_s3/_threaded.py; TLS, CA
    bundle, client certificate, proxies and timeouts as the client's own).
    ``None`` (the default) and ``True`` use it for the engine's own client;
    ``False`` sends every part through aiobotocore, as does a ``client=``
    passed in (``True`` with ``client=`` is a :class:`ConfigError`).

    ``rate_limit``: a :class:`RateLimit` (shareable by engines) meters every
    request and its bytes; parts then go through aiobotocore.

    ``store``: the kind of store (``"aws"``, ``"minio"``, ``"r2"``, ``"b2"``, ``"gcs"``,
    ``"wasabi"``, ``"ceph"``, ``"seaweedfs"``, ``"rclone"``, ``"moto"``, or a
    :class:`streamx.StoreProfile`); by default detected from the endpoint's host name
    (no endpoint: AWS). Its profile sets the size limit, the checksum algorithm and
    headers, equal parts, and which conditional writes are honoured; see
    :meth:`probe` for an unknown endpoint.

    Every argument is checked here, before any request, and a bad one is a
    :class:`ConfigError` naming it: ``endpoint_url`` must be ``http://`` or
    ``https://`` with a host (``'127.0.0.1:9000'`` is refused with "add
    http://"; so is a bad ``AWS_ENDPOINT_URL``), ``region_name`` a region
    name, the keys non-empty strings given together, ``profile`` one in the
    AWS config files, ``addressing_style`` ``'auto'``, ``'virtual'`` or
    ``'path'``, ``max_pool_connections`` 1 to 10,000, ``memory_budget`` at
    most 1 TiB; ``client=`` excludes the connection arguments (configure the
    client instead). An Engine is entered once at a time: ``async with`` on
    an open engine raises :class:`UsageError` (create a second Engine).
    """

    def __init__(
        self,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile: str | None = None,
        config: TransferConfig | None = None,
        memory_budget: MemoryBudget | int | None = None,
        sign_payload: bool | None = None,
        max_pool_connections: int | None = None,
        addressing_style: str | None = None,
        direct_parts: bool | None = None,
        rate_limit: RateLimit | None = None,
        store: str | StoreProfile | None = None,
    ) -> None:
        if config is not None and not isinstance(config, TransferConfig):
            raise ConfigError(f"config must be a TransferConfig, not {type(config).__name__}")
        self.config = config or TransferConfig()
        self.memory_budget = check_budget(memory_budget) or MemoryBudget(
            default_memory_budget(self.config.memory_bound)
        )
        check_client_args(
            client,
            endpoint_url=endpoint_url,
            region_name=region_name,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            profile=profile,
            addressing_style=addressing_style,
        )
        if sign_payload is not None and not isinstance(sign_payload, bool):
            raise ConfigError(f"sign_payload must be True, False or None, not {sign_payload!r}")
        if max_pool_connections is not None and (
            isinstance(max_pool_connections, bool)
            or not isinstance(max_pool_connections, int)
            or not 1 <= max_pool_connections <= MAX_POOL_CONNECTIONS
        ):
            raise ConfigError(
                f"max_pool_connections must be an int from 1 to {MAX_POOL_CONNECTIONS:,}, "
                f"not {max_pool_connections!r}"
            )
        self._given_client = client
        self._client_args = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
        }
        self._profile = profile
        self._sign_payload = sign_payload
        self._max_pool = max_pool_connections
        self._addressing_style = addressing_style
        if direct_parts is not None and not isinstance(direct_parts, bool):
            raise ConfigError("direct_parts must be True, False or None")
        if direct_parts and client is not None:
            raise ConfigError(
                "direct_parts=True needs the engine's own client (its TLS, proxy and "
                "credential settings are taken as botocore resolves them when the engine "
                "creates it); a client= passed in sends parts through aiobotocore"
            )
        self._direct_parts = direct_parts
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise ConfigError("rate_limit must be a streamx.RateLimit or None")
        # metered through botocore's events, so parts go through botocore too
        self.rate_limit = rate_limit
        self._store_given = store is not None
        self._probe_lock = anyio.Lock()
        if store is None:
            self.store = detect(endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))
        else:
            self.store = store if isinstance(store, StoreProfile) else store_profile(store)
        self._stack: AsyncExitStack | None = None
        self._s3: S3 | None = None

    def __repr__(self) -> str:  # never shows credentials
        endpoint = self._client_args["endpoint_url"] or os.environ.get("AWS_ENDPOINT_URL", "")
        return f"Engine(endpoint_url={endpoint!r})"

    async def __aenter__(self) -> Engine:
        if self._stack is not None:
            # entering again would replace the client, and the inner block's exit would
            # close it under the outer block
            raise UsageError(
                "this Engine is already open: 'async with engine:' was entered twice; use the "
                "engine of the outer block, or create a second Engine(...) for a second block"
            )
        self._stack = AsyncExitStack()
        if self._given_client is not None:
            if not self._store_given:
                self.store = detect(getattr(self._given_client.meta, "endpoint_url", None))
            if self.rate_limit is not None:
                self.rate_limit.attach(self._given_client)
            self._s3 = borrowed_s3(self._given_client)
            return self
        sign = self._sign_payload
        if sign is None:
            sign = self.config.checksum != "when_supported"
        try:
            self._s3 = await open_s3(
                self._stack,
                profile=self._profile,
                client_args=self._client_args,
                sign_payload=sign,
                addressing_style=self._addressing_style,
                pool=self._max_pool or max(10, 2 * self.config.queue_size),
                # metered through botocore's events, so parts go through botocore too
                threads=self._direct_parts is not False and self.rate_limit is None,
            )
        except BaseException:
            await self._stack.aclose()
            self._stack = None
            raise
        client = self._s3.client
        if not self._store_given:  # the endpoint botocore resolved (AWS_ENDPOINT_URL_S3, config)
            self.store = detect(getattr(client.meta, "endpoint_url", None))
        if self.rate_limit is not None:
            self.rate_limit.attach(client)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack, self._s3 = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def s3(self) -> S3:
        if self._s3 is None:
            raise UsageError(
                "the Engine is not open: use it inside 'async with Engine(...) as engine:'"
            )
        return self._s3

    @property
    def client(self) -> Any:
        """The aiobotocore S3 client (for calls streamx does not wrap)."""
        return self.s3.client

    async def probe(self, bucket: str) -> StoreProfile:
        """Find out which conditional writes this store honours and whether it takes
        checksum headers, with one scratch key (``.streamx-probe-…``, deleted again).

        About 15 small requests, once per engine: the result becomes ``engine.store``.
        A conditional write (``IfNoneMatch``/``IfMatch``) on a store whose answer is not
        known runs it first, so that a store that ignores conditions is refused before
        any byte is sent instead of silently overwriting.
        """
        from ._probe import probe

        check_bucket_key(bucket, "x")
        async with self._probe_lock:  # concurrent conditional writes probe once
            if not self.store.probed:
                self.store = await probe(self.s3, bucket, self.store)
        return self.store

    async def _store_for(self, bucket: str, operation: str, args: Any) -> StoreProfile:
        """The store, probed first if a condition in ``args`` may be ignored there
        (see :meth:`probe`); a condition ignored on every path is refused here."""
        _, conditions = split_conditions(args)
        if unknown_points(self.store, condition_points(operation, conditions)):
            await self.probe(bucket)
        paths = [condition_points(operation, conditions, multipart=m) for m in (False, True)]
        if all(any(self.store.honours(p) is False for p in path) for path in paths):
            check_conditions(self.store, [p for path in paths for p in path])  # refused either way
        return self.store

    def _config(self, config: TransferConfig | None) -> TransferConfig:
        if config is None:
            return self.config
        if not isinstance(config, TransferConfig):
            raise ConfigError(f"config must be a TransferConfig, not {type(config).__name__}")
        return config

    def _pipeline(
        self,
        bucket: str,
        key: str,
        source: Any,
        config: TransferConfig | None,
        on_progress: ProgressCallback | None,
        put_args: dict[str, Any],
        size: int | None,
    ) -> UploadPipeline:
        check_bucket_key(bucket, key)
        cfg = adapt(self._config(config), self.store)
        args = check_put_args(put_args)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ConfigError(f"size must be a non-negative int, not {size!r}")
        progress = Progress(on_progress, interval=cfg.progress_interval)
        s3 = self.s3
        return UploadPipeline(
            s3,
            bucket,
            key,
            open_source(source),
            cfg,
            progress=progress,
            put_args=args,
            shared_budget=self.memory_budget,
            size_hint=size,
            store=self.store,
            # conditions: the store must be known to honour them (probed when the run starts)
            resolve_store=partial(self._store_for, bucket, "upload", args)
            if split_conditions(args)[1]
            else None,
        )

    async def upload(
        self,
        bucket: str,
        key: str,
        source: UploadSource,
        *,
        config: TransferConfig | None = None,
        on_progress: ProgressCallback | None = None,
        size: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        restart: bool = False,
        resume: ResumeToken | None = None,
        **put_args: Any,
    ) -> UploadResult:
        """Upload ``source`` to ``s3://bucket/key`` and return what S3 stored.

        ``source``: bytes-like, a path, a (sync or async) binary file object,
        an ``asyncio.StreamReader`` or anyio byte stream, or a (sync or async)
        iterable of bytes-like chunks. ``size`` is the expected length of a
        stream whose length is not known up front (it sizes the parts).
        ``put_args`` pass through to S3 (``ContentType``, ``Metadata``,
        ``ServerSideEncryption``, ``StorageClass``, ``Tagging`` ...), and so do
        the write conditions ``IfNoneMatch="*"`` and ``IfMatch=etag``: sent on
        the PutObject or the CompleteMultipartUpload; a failed one raises
        :class:`streamx.PreconditionFailedError` and writes nothing (see
        :meth:`probe` for stores that ignore conditions).

        Below ``multipart_threshold`` one PutObject is sent; above it a
        multipart upload. On any failure or cancellation the multipart upload
        is aborted (unless ``config.leave_parts_on_error``: parts left behind
        cost storage until aborted; see ``abort_stale_uploads``).

        ``checkpoint=PATH`` makes the upload resumable after a crash: its state
        is recorded in PATH after each acknowledged part, the multipart upload
        is kept (not aborted) on failure, and the same call with the same PATH
        uploads only what is missing (see :mod:`streamx.checkpoint`). A
        checkpoint that does not match raises :class:`CheckpointError`;
        ``restart=True`` aborts the recorded upload and starts over.

        ``resume=token`` continues the upload a suspended writer left (see
        :mod:`streamx.upload.resume`): ``source`` is the whole object; a file path
        is read from ``token.bytes_done``, anything else is read through and its
        bytes up to there checked against the token. On failure the upload is kept.
        """
        from .checkpoint import fingerprint, open_checkpoint

        file = open_checkpoint(checkpoint, restart)
        token = _check_token(resume, bucket, key)
        if token is not None and file is not None:
            raise ConfigError("pass checkpoint= or resume=, not both")
        pipeline = self._pipeline(bucket, key, source, config, on_progress, put_args, size)
        pipeline.checkpoint, pipeline.restart = file, restart
        if token is not None:
            memory = MemoryCheckpoint(token)
            memory.keeps_upload = True
            memory.fingerprint = fingerprint(pipeline.source)
            pipeline.checkpoint = memory
        return await pipeline.run()

    def open_writer(
        self,
        bucket: str,
        key: str,
        *,
        config: TransferConfig | None = None,
        on_progress: ProgressCallback | None = None,
        size: int | None = None,
        resume: ResumeToken | None = None,
        **put_args: Any,
    ) -> WriterContext:
        """A writer for push-style sources; see :class:`streamx.UploadWriter`.

        ``async with engine.open_writer(bucket, key) as writer: await writer.write(data)``
        (it is an async context manager; its ``write`` without ``async with``
        raises :class:`streamx.UsageError` saying so). ``await
        writer.write(data)`` waits while the part window is full. Leaving the
        block normally completes the upload (``writer.result``); leaving it
        with an exception aborts it. ``await writer.suspend()`` keeps it and
        returns a :class:`ResumeToken`; ``resume=token`` (here or in another
        process) continues it: write the bytes from ``token.bytes_done``.
        Arguments are checked here, before the block and before any request.
        """
        self._pipeline(bucket, key, b"", config, on_progress, put_args, size)
        token = _check_token(resume, bucket, key)

        def make(chunks: AsyncIterator[bytes]) -> UploadPipeline:
            pipeline = self._pipeline(bucket, key, chunks, config, on_progress, put_args, size)
            pipeline.checkpoint = MemoryCheckpoint(token)  # records parts for suspend()
            if token is not None:
                pipeline.source_offset = token.bytes_done
            return pipeline

        return WriterContext(open_writer(make))

    async def abort_stale_uploads(
        self,
        bucket: str,
        prefix: str = "",
        *,
        older_than: datetime.timedelta | float,
        dry_run: bool = False,
    ) -> list[StaleUpload]:
        """Abort multipart uploads under ``prefix`` started more than ``older_than`` ago.

        ``older_than`` is a ``timedelta`` or a number of seconds. Returns the
        uploads aborted (with ``dry_run=True``: those that would be, and
        nothing changes). Unfinished uploads are billed as storage until
        aborted; see :mod:`streamx.maintenance` for how the age is measured.
        """
        from .maintenance import abort_stale_uploads

        return await abort_stale_uploads(
            self.s3, bucket, prefix, older_than=older_than, dry_run=dry_run
        )

    # -- the read side and the rest of the object API (download/, listing, delete, copy, migrate)

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
        from ._retry import RetryPolicy
        from .download.planner import check_spec

        check_bucket_key(bucket, key)
        spec = None if range is None else check_spec(range)
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ConfigError(f"chunk_size must be a positive int or None, not {chunk_size!r}")
        return DownloadStream(
            self.s3,
            bucket,
            key,
            spec,
            chunk_size=chunk_size,
            retry=RetryPolicy(max_attempts=self.config.max_attempts),
            verify=self.config.checksum != "off",
        )

    def _download_pipeline(
        self,
        bucket: str,
        key: str,
        config: TransferConfig | None,
        on_progress: ProgressCallback | None,
    ) -> Any:
        from .download.pipeline import DownloadPipeline

        check_bucket_key(bucket, key)
        cfg = self._config(config)
        progress = Progress(on_progress, interval=cfg.progress_interval)
        return DownloadPipeline(
            self.s3, bucket, key, cfg, progress=progress, shared_budget=self.memory_budget
        )

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
        from .download.checkpoint import open_download_checkpoint
        from .download.sink import FileSink

        pipeline = self._download_pipeline(bucket, key, config, on_progress)
        local = check_local_path(path)
        file = open_download_checkpoint(checkpoint, restart)
        sink = FileSink(local)
        result: DownloadResult = await pipeline.to_file(sink, file, restart=restart)
        return result

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
        from .download.sink import open_sink

        pipeline = self._download_pipeline(bucket, key, config, on_progress)
        ordered = open_sink(sink)
        result: DownloadResult = await pipeline.to_sink(ordered)
        return result

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
        from .download.pipeline import get_ranges
        from .download.planner import DEFAULT_COALESCE_GAP, check_spec

        check_bucket_key(bucket, key)
        if isinstance(ranges, str | bytes) or not hasattr(ranges, "__iter__"):
            raise TypeError("ranges must be an iterable of (start, end) pairs")
        specs = [check_spec(r) for r in ranges]
        gap = DEFAULT_COALESCE_GAP if coalesce_gap is None else coalesce_gap
        if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
            raise ConfigError(f"coalesce_gap must be a non-negative int, not {gap!r}")
        cfg = self._config(config)
        if not specs:
            return []
        return await get_ranges(self.s3, bucket, key, specs, cfg, coalesce_gap=gap)

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        """Size, ETag, last modified, content type and metadata of an object.

        A missing object raises :class:`streamx.NotFoundError` (a ``FileNotFoundError``).
        """
        check_bucket_key(bucket, key)
        response = await self.s3.head_object(bucket, key)
        return ObjectInfo.from_head(key, response)

    async def delete_many(
        self, bucket: str, keys: Any, *, concurrency: int | None = None
    ) -> DeleteResult:
        """Delete keys from any sync or async iterable in batches of 1,000, run concurrently.

        Returns every key deleted (S3 counts a missing key as deleted) and
        every per-key error; one key's failure does not stop the others.
        An item may be a ``(key, etag)`` pair: that key is deleted only if it
        still has that ETag (else its error has code ``PreconditionFailed``);
        on a store that ignores the condition this raises :class:`ConfigError`
        before the first conditional batch is sent.
        """
        from ._retry import RetryPolicy
        from .delete import check_keys, delete_many

        check_bucket_key(bucket, "x")
        check_keys(keys)
        n = self.config.queue_size if concurrency is None else concurrency
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"concurrency must be a positive int, not {n!r}")

        async def on_conditional() -> None:
            points = ["DeleteObjects:ETag"]
            if unknown_points(self.store, points):
                await self.probe(bucket)
            check_conditions(self.store, points)

        return await delete_many(
            self.s3,
            bucket,
            keys,
            concurrency=n,
            retry=RetryPolicy(max_attempts=self.config.max_attempts),
            on_conditional=on_conditional,
        )

    async def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        config: TransferConfig | None = None,
        on_progress: ProgressCallback | None = None,
        **put_args: Any,
    ) -> CopyResult:
        """Server-side copy: CopyObject up to ``copy_threshold`` (5 GiB), UploadPartCopy above.

        Above the threshold ``queue_size`` part copies of ``part_size`` run at
        once; the multipart upload is aborted on failure (an abandoned one is
        billed as storage). ``put_args`` (``ContentType``, ``Metadata``,
        ``StorageClass`` ...) apply to the copy; metadata and content headers
        are carried over from the source unless one of them is given.
        ``IfNoneMatch="*"`` / ``IfMatch=etag`` apply to the destination (on
        CopyObject, or on CompleteMultipartUpload after a pre-flight HEAD).
        """
        from .copy import Copier, check_copy_args

        check_bucket_key(src_bucket, src_key)
        check_bucket_key(dst_bucket, dst_key)
        cfg = self._config(config)
        args = check_copy_args(put_args)
        progress = Progress(on_progress, interval=cfg.progress_interval)
        await self._store_for(dst_bucket, "copy", args)
        copier = Copier(
            self.s3,
            src_bucket,
            src_key,
            dst_bucket,
            dst_key,
            cfg,
            put_args=args,
            progress=progress,
            store=self.store,
        )
        return await copier.run()

    async def copy_to(
        self,
        other: Engine,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str | None = None,
        *,
        config: TransferConfig | None = None,
        on_progress: ProgressCallback | None = None,
        **put_args: Any,
    ) -> CopyResult:
        """Copy an object from this engine's store to ``other``'s by streaming it through.

        The download feeds ``other``'s upload pipeline directly (memory as for
        an upload of a stream, ``config.memory_bound``); content type and
        metadata are carried over unless ``put_args`` set them. See also
        :func:`streamx.migrate_prefix`.
        """
        from .migrate import migrate_object

        if not isinstance(other, Engine):
            raise TypeError(f"other must be an Engine, not {type(other).__name__}")
        dst_key = src_key if dst_key is None else dst_key
        check_bucket_key(src_bucket, src_key)
        check_bucket_key(dst_bucket, dst_key)
        cfg = other._config(config)
        args = check_put_args(put_args)
        Progress(on_progress, interval=cfg.progress_interval)  # validates the callback
        return await migrate_object(
            self,
            src_bucket,
            src_key,
            other,
            dst_bucket,
            dst_key,
            config=cfg,
            on_progress=on_progress,
            put_args=args,
        )

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
        from .listing import check_list_args

        check_bucket_key(bucket, "x")
        check_list_args(prefix, delimiter, start_after, page_size)
        return Listing(
            self.s3,
            bucket,
            prefix,
            delimiter=delimiter,
            start_after=start_after,
            page_size=page_size,
        )


def _check_token(token: object, bucket: str, key: str) -> ResumeToken | None:
    if token is None:
        return None
    if not isinstance(token, ResumeToken):
        raise ConfigError(
            f"resume must be a ResumeToken (ResumeToken.from_json(text)), not {type(token).__name__}"
        )
    if (token.bucket, token.key) != (bucket, key):
        raise ConfigError(
            f"the resume token is for s3://{token.bucket}/{token.key}, not s3://{bucket}/{key}"
        )
    return token
