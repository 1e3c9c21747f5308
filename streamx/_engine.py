"""Engine: the async context manager that owns (or borrows) the aiobotocore client.

A thin facade: this module builds and closes the client; the verbs live in
:mod:`streamx._api` (one module per group), and each checks its arguments in
the module of its stage, then hands the work to that stage's pipeline with one
:class:`~streamx._context.TransferContext`.
"""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import anyio

from ._api.multipart import DriveAPI
from ._api.objects import ObjectAPI
from ._api.reads import ReadAPI
from ._api.writes import WriteAPI
from ._budget import MemoryBudget, default_memory_budget
from ._config import TransferConfig, resolve_config
from ._errors import ConfigError, ConfigTypeError, UsageError
from ._events import Progress, ProgressCallback
from ._objects import CopyResult
from ._ratelimit import RateLimit
from ._retry import RetryPolicy
from ._s3 import S3, borrowed_s3, check_put_args, open_s3
from ._stores import StoreProfile, detect
from ._stores import profile as store_profile
from ._validate import check_bucket_key, check_budget, check_client_args

#: Largest connection pool accepted (each connection is a socket and a thread at most).
MAX_POOL_CONNECTIONS = 10_000


class Engine(WriteAPI, ReadAPI, ObjectAPI, DriveAPI):
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
    worker threads over urllib3's connection pools (set up as botocore sets up
    its own), signed on the event loop by awscrt's SigV4 signer with botocore's
    credentials (streamx/_s3/_threaded.py; TLS, CA bundle, client certificate,
    proxies and timeouts as the client's own).
    ``None`` (the default) and ``True`` use it for the engine's own client;
    ``False`` sends every part through aiobotocore, as does a ``client=``
    passed in (``True`` with ``client=`` is a :class:`ConfigError`).

    ``rate_limit``: a :class:`RateLimit` (shareable by engines) meters every
    request and its bytes; parts then go through aiobotocore.

    ``retry``: a :class:`RetryPolicy` whose backoff, sleep and jitter every
    transfer's retries use (each with its ``TransferConfig.max_attempts``); tests
    pass one with a recording sleep so that no test really waits.

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
        retry: RetryPolicy | None = None,
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
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a streamx.RetryPolicy or None, not {retry!r}")
        # every transfer retries with this policy's backoff, sleep and jitter, and the
        # max_attempts of its TransferConfig (the test seam: a recording, non-waiting sleep)
        self._retry = retry or RetryPolicy()
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
        from .copy import carried_args, copy_result

        if not isinstance(other, Engine):
            raise ConfigTypeError(f"other must be an Engine, not {type(other).__name__}")
        dst_key = src_key if dst_key is None else dst_key
        check_bucket_key(src_bucket, src_key)
        check_bucket_key(dst_bucket, dst_key)
        cfg = resolve_config(config, other.config)
        args = check_put_args(put_args)
        Progress(on_progress, interval=cfg.progress_interval)  # validates the callback
        async with self.download(src_bucket, src_key) as stream:
            result = await other.upload(
                dst_bucket,
                dst_key,
                stream,
                config=cfg,
                on_progress=on_progress,
                size=stream.size,
                **carried_args(stream.info, args),
            )
        return copy_result(result)
