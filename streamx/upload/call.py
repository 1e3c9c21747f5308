"""An upload call checked before any request, and the pipeline it then starts.

:func:`check_upload` validates the arguments of ``Engine.upload`` and
``Engine.open_writer`` (the writer's before its block opens) without
building anything; :func:`start_pipeline` wires the checked call, its source
and the engine's :class:`~streamx._context.TransferContext` into an
:class:`~streamx.upload.pipeline.UploadPipeline`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._config import TransferConfig
from .._context import TransferContext
from .._errors import ConfigError
from .._events import Progress, ProgressCallback
from .._limits import format_size
from .._s3 import check_put_args
from .._stores import StoreProfile, adapt
from .._validate import check_bucket_key
from .pipeline import UploadPipeline
from .resume import ResumeToken
from .source import Source


@dataclass(frozen=True)
class UploadCall:
    """The checked arguments of one upload; ``config`` is adapted to the store."""

    bucket: str
    key: str
    config: TransferConfig
    put_args: dict[str, Any]
    size: int | None
    on_progress: ProgressCallback | None


def check_upload(
    bucket: str,
    key: str,
    config: TransferConfig,
    store: StoreProfile,
    put_args: dict[str, Any],
    size: object,
    on_progress: ProgressCallback | None,
) -> UploadCall:
    """Every argument of an upload, before any request (a :class:`ConfigError` naming it)."""
    check_bucket_key(bucket, key)
    cfg = adapt(config, store)
    args = check_put_args(put_args)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ConfigError(f"size must be a non-negative int, not {size!r}")
    Progress(on_progress, interval=cfg.progress_interval)  # validates the callback
    return UploadCall(bucket, key, cfg, args, size, on_progress)


def check_size_limit(size: int | None, store: StoreProfile, bucket: str, key: str) -> None:
    """An object of ``size`` bytes fits the store's object limit."""
    if size is not None and size > store.max_object_size:
        raise ConfigError(
            f"{format_size(size)} is over {store.title}'s "
            f"{format_size(store.max_object_size)} object limit",
            bucket=bucket,
            key=key,
        )


def check_token(token: object, bucket: str, key: str) -> ResumeToken | None:
    """``resume=``: a :class:`ResumeToken` for this bucket and key, or ``None``."""
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


def start_pipeline(
    ctx: TransferContext,
    call: UploadCall,
    source: Source,
    store: StoreProfile,
    resolve_store: Callable[[], Awaitable[StoreProfile]] | None,
) -> UploadPipeline:
    """The pipeline of a checked call (``ctx.config`` is ``call.config``)."""
    size = source.size if source.size is not None else call.size
    check_size_limit(size, store, call.bucket, call.key)
    return UploadPipeline(
        ctx,
        call.bucket,
        call.key,
        source,
        progress=ctx.progress(call.on_progress),
        put_args=call.put_args,
        size_hint=call.size,
        store=store,
        resolve_store=resolve_store,
    )
