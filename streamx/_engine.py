"""Engine: the async context manager that owns (or borrows) the aiobotocore client.

A thin facade: each method validates its arguments, then hands the work to
the pipeline module of its verb (``upload/``, ``download/``, ...).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any

from ._budget import MemoryBudget
from ._config import TransferConfig
from ._errors import ConfigError
from ._events import Progress, ProgressCallback
from ._limits import MAX_KEY_BYTES
from ._results import UploadResult
from ._s3 import S3, check_put_args
from .upload.pipeline import UploadPipeline
from .upload.source import UploadSource, open_source
from .upload.writer import UploadWriter, open_writer


def check_bucket_key(bucket: object, key: object) -> None:
    """Validate a bucket name and key before any request."""
    if not isinstance(bucket, str) or not bucket:
        raise ConfigError(f"bucket must be a non-empty str, not {bucket!r}")
    if "/" in bucket:
        raise ConfigError(f"bucket {bucket!r} contains '/'; pass the key separately")
    if not isinstance(key, str) or not key:
        raise ConfigError(f"key must be a non-empty str, not {key!r}")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"key {key!r} is not valid UTF-8 (lone surrogate?)") from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise ConfigError(
            f"key is {len(encoded)} bytes in UTF-8; S3 allows at most {MAX_KEY_BYTES}"
        )


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
    ``MemoryBudget`` to several engines to share it process-wide).

    ``sign_payload``: over plain http botocore SHA-256-signs every request
    body (about 0.6 CPU-s per GiB). With ``None`` (the default) streamx sends
    ``UNSIGNED-PAYLOAD`` when it sends its own checksum with the part (the
    checksum header is itself signed, so the body stays protected) and signs
    otherwise; ``True``/``False`` force it.
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
    ) -> None:
        if config is not None and not isinstance(config, TransferConfig):
            raise ConfigError(f"config must be a TransferConfig, not {type(config).__name__}")
        self.config = config or TransferConfig()
        if isinstance(memory_budget, int):
            memory_budget = MemoryBudget(memory_budget)
        if memory_budget is not None and not isinstance(memory_budget, MemoryBudget):
            raise ConfigError("memory_budget must be a MemoryBudget or a number of bytes")
        self.memory_budget = memory_budget
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
        self._stack: AsyncExitStack | None = None
        self._s3: S3 | None = None

    def __repr__(self) -> str:  # never shows credentials
        endpoint = self._client_args["endpoint_url"] or os.environ.get("AWS_ENDPOINT_URL", "")
        return f"Engine(endpoint_url={endpoint!r})"

    async def __aenter__(self) -> Engine:
        self._stack = AsyncExitStack()
        if self._given_client is not None:
            self._s3 = S3(self._given_client)
            return self
        from aiobotocore.config import AioConfig
        from aiobotocore.session import AioSession

        sign = self._sign_payload
        if sign is None:
            sign = self.config.checksum != "when_supported"
        s3_config: dict[str, Any] = {"payload_signing_enabled": sign}
        if self._addressing_style:
            s3_config["addressing_style"] = self._addressing_style
        pool = self._max_pool or max(10, 2 * self.config.queue_size)
        aio_config = AioConfig(
            max_pool_connections=pool,
            s3=s3_config,
            # streamx computes and checks its own checksums (once, in the producer);
            # botocore's defaults since 1.36 break several S3-compatible stores.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # streamx retries every request itself (per part, with jitter); one
            # botocore attempt keeps attempts from multiplying.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        session = AioSession(profile=self._profile) if self._profile else AioSession()
        args = {k: v for k, v in self._client_args.items() if v is not None}
        try:
            client = await self._stack.enter_async_context(
                session.create_client("s3", config=aio_config, **args)
            )
        except Exception as exc:
            await self._stack.aclose()
            from ._s3 import translate

            raise translate(exc, "creating the S3 client") from exc
        self._s3 = S3(client)
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
            raise RuntimeError("use the Engine inside 'async with Engine(...) as engine:'")
        return self._s3

    @property
    def client(self) -> Any:
        """The aiobotocore S3 client (for calls streamx does not wrap)."""
        return self.s3.client

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
        cfg = self._config(config)
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
        **put_args: Any,
    ) -> UploadResult:
        """Upload ``source`` to ``s3://bucket/key`` and return what S3 stored.

        ``source``: bytes-like, a path, a (sync or async) binary file object,
        an ``asyncio.StreamReader`` or anyio byte stream, or a (sync or async)
        iterable of bytes-like chunks. ``size`` is the expected length of a
        stream whose length is not known up front (it sizes the parts).
        ``put_args`` pass through to S3 (``ContentType``, ``Metadata``,
        ``ServerSideEncryption``, ``StorageClass``, ``Tagging`` ...).

        Below ``multipart_threshold`` one PutObject is sent; above it a
        multipart upload. On any failure or cancellation the multipart upload
        is aborted (unless ``config.leave_parts_on_error``: parts left behind
        cost storage until aborted; see ``abort_stale_uploads``).
        """
        pipeline = self._pipeline(bucket, key, source, config, on_progress, put_args, size)
        return await pipeline.run()

    @asynccontextmanager
    async def open_writer(
        self,
        bucket: str,
        key: str,
        *,
        config: TransferConfig | None = None,
        on_progress: ProgressCallback | None = None,
        size: int | None = None,
        **put_args: Any,
    ) -> AsyncIterator[UploadWriter]:
        """A writer for push-style sources; see :class:`streamx.UploadWriter`.

        ``await writer.write(data)`` waits while the part window is full.
        Leaving the block normally completes the upload (``writer.result``);
        leaving it with an exception aborts it.
        """
        # validate everything now, before the first write or request
        self._pipeline(bucket, key, b"", config, on_progress, put_args, size)

        def make(chunks: AsyncIterator[bytes]) -> UploadPipeline:
            return self._pipeline(bucket, key, chunks, config, on_progress, put_args, size)

        async with open_writer(make) as writer:
            yield writer
