"""The object verbs of :class:`streamx.Engine`: delete_many and the server-side copy."""

from __future__ import annotations

from typing import Any

from .._config import TransferConfig, resolve_config
from .._events import Progress, ProgressCallback
from .._objects import CopyResult, DeleteResult
from .._stores import check_conditions, unknown_points
from .._validate import check_bucket, check_bucket_key
from .base import EngineBase


class ObjectAPI(EngineBase):
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
        from ..delete import check_concurrency, check_keys, delete_many

        check_bucket(bucket)
        check_keys(keys)
        n = check_concurrency(self.config.queue_size if concurrency is None else concurrency)

        async def on_conditional() -> None:
            points = ["DeleteObjects:ETag"]
            if unknown_points(self.store, points):
                await self.probe(bucket)
            check_conditions(self.store, points)

        return await delete_many(
            self._context(), bucket, keys, concurrency=n, on_conditional=on_conditional
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
        from ..copy import Copier, check_copy_args

        check_bucket_key(src_bucket, src_key)
        check_bucket_key(dst_bucket, dst_key)
        cfg = resolve_config(config, self.config)
        args = check_copy_args(put_args)
        Progress(on_progress, interval=cfg.progress_interval)  # validates the callback
        await self._store_for(dst_bucket, "copy", args)
        ctx = self._context(cfg)
        copier = Copier(
            ctx,
            src_bucket,
            src_key,
            dst_bucket,
            dst_key,
            put_args=args,
            progress=ctx.progress(on_progress),
            store=self.store,
        )
        return await copier.run()
