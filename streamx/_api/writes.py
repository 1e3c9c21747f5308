"""The upload verbs of :class:`streamx.Engine`: upload, open_writer, abort_stale_uploads."""

from __future__ import annotations

import datetime
import os
from collections.abc import AsyncIterator
from typing import Any

from .._config import TransferConfig, resolve_config
from .._errors import ConfigError
from .._events import ProgressCallback
from .._results import UploadResult
from ..maintenance import StaleUpload
from ..upload.call import check_size_limit, check_token, check_upload, start_pipeline
from ..upload.pipeline import UploadPipeline
from ..upload.resume import MemoryCheckpoint, ResumeToken
from ..upload.source import UploadSource, open_source
from ..upload.writer import WriterContext, open_writer
from .base import EngineBase


class WriteAPI(EngineBase):
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
        uploads only what is missing (see :mod:`streamx.upload.checkpoint`). A
        checkpoint that does not match raises :class:`CheckpointError`;
        ``restart=True`` aborts the recorded upload and starts over.

        ``resume=token`` continues the upload a suspended writer left (see
        :mod:`streamx.upload.resume`): ``source`` is the whole object; a file path
        is read from ``token.bytes_done``, anything else is read through and its
        bytes up to there checked against the token. On failure the upload is kept.
        """
        from ..upload.checkpoint import fingerprint, open_checkpoint

        file = open_checkpoint(checkpoint, restart)
        token = check_token(resume, bucket, key)
        if token is not None and file is not None:
            raise ConfigError("pass checkpoint= or resume=, not both")
        call = check_upload(
            bucket,
            key,
            resolve_config(config, self.config),
            self.store,
            put_args,
            size,
            on_progress,
        )
        pipeline = start_pipeline(
            self._context(call.config),
            call,
            open_source(source),
            self.store,
            self._store_resolver(bucket, "upload", call.put_args),
        )
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
        cfg = resolve_config(config, self.config)
        call = check_upload(bucket, key, cfg, self.store, put_args, size, on_progress)
        check_size_limit(call.size, self.store, bucket, key)
        self._s3_layer  # noqa: B018 - an engine that is not open is refused here, not in the block
        token = check_token(resume, bucket, key)

        def make(chunks: AsyncIterator[bytes]) -> UploadPipeline:
            # checked again: a probe in between may have changed the store
            now = check_upload(bucket, key, cfg, self.store, put_args, size, on_progress)
            pipeline = start_pipeline(
                self._context(now.config),
                now,
                open_source(chunks),
                self.store,
                self._store_resolver(bucket, "upload", now.put_args),
            )
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
        from ..maintenance import abort_stale_uploads

        return await abort_stale_uploads(
            self._s3_layer, bucket, prefix, older_than=older_than, dry_run=dry_run
        )
