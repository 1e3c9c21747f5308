"""EngineBase: what every verb of an open Engine needs (see :mod:`streamx._api`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import anyio

from .._budget import MemoryBudget
from .._config import TransferConfig, resolve_config
from .._context import TransferContext
from .._errors import UsageError
from .._ratelimit import RateLimit
from .._retry import RetryPolicy
from .._s3 import S3, split_conditions
from .._stores import StoreProfile, check_conditions, condition_points, unknown_points
from .._validate import check_bucket


class EngineBase:
    """The state an Engine's verbs share; :class:`streamx.Engine` sets it up."""

    config: TransferConfig
    memory_budget: MemoryBudget
    rate_limit: RateLimit | None
    store: StoreProfile
    _retry: RetryPolicy
    _probe_lock: anyio.Lock
    _stack: AsyncExitStack | None
    _s3: S3 | None

    @property
    def _s3_layer(self) -> S3:
        """The S3 layer of the open engine (private: the verbs and the tests use it)."""
        if self._s3 is None:
            raise UsageError(
                "the Engine is not open: use it inside 'async with Engine(...) as engine:'"
            )
        return self._s3

    @property
    def client(self) -> Any:
        """The aiobotocore S3 client (for calls streamx does not wrap)."""
        return self._s3_layer.client

    def _context(self, config: TransferConfig | None = None) -> TransferContext:
        """The context of one call: ``config`` (checked; ``None``: the engine's), the
        engine's S3 layer and shared budget, and its retry policy with
        ``config.max_attempts`` attempts."""
        cfg = resolve_config(config, self.config)
        return TransferContext(
            s3=self._s3_layer,
            config=cfg,
            budget=self.memory_budget,
            retry=dataclasses.replace(self._retry, max_attempts=cfg.max_attempts),
        )

    async def probe(self, bucket: str) -> StoreProfile:
        """Find out which conditional writes this store honours and whether it takes
        checksum headers, with one scratch key (``.streamx-probe-…``, deleted again).

        About 15 small requests, once per engine: the result becomes ``engine.store``.
        A conditional write (``IfNoneMatch``/``IfMatch``) on a store whose answer is not
        known runs it first, so that a store that ignores conditions is refused before
        any byte is sent instead of silently overwriting.
        """
        from .._probe import probe

        check_bucket(bucket)
        async with self._probe_lock:  # concurrent conditional writes probe once
            if not self.store.probed:
                retry = self._context().retry  # the engine's policy (503/SlowDown retried)
                self.store = await probe(self._s3_layer, bucket, self.store, retry)
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

    def _store_resolver(
        self, bucket: str, operation: str, args: dict[str, Any]
    ) -> Callable[[], Awaitable[StoreProfile]] | None:
        """For a call with write conditions: the probe its pipeline runs when it starts."""
        if not split_conditions(args)[1]:
            return None
        return partial(self._store_for, bucket, operation, args)


def s3_layer(engine: EngineBase) -> S3:
    """The S3 layer of an open engine, for streamx's own packages above the engine that
    speak S3 request by request (the sync's listings and HEADs, the tus server's state
    objects and parts). Not public API: applications use the Engine's verbs,
    ``engine.multipart``, ``engine.presign_url`` and ``engine.client``."""
    return engine._s3_layer


def retry_policy(engine: EngineBase) -> RetryPolicy:
    """The engine's retry policy (``Engine(retry=...)``, with ``config.max_attempts``), for
    the same packages' requests outside the engine's verbs (the sync's small GETs and part
    reads), so they retry as every verb does."""
    return engine._context().retry
