"""The store probe (streamx/_probe.py) rides out throttling: 503/SlowDown injected by the fault
proxy in front of a real moto server is retried, never read as "the store ignores conditions"."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import drop_bucket, list_uploads
from faultproxy import Fault, FaultProxy, Sleeps

import streamx
from streamx._retry import RetryPolicy

pytestmark = pytest.mark.anyio

#: every operation the probe sends, each throttled once
PROBE_OPS = (
    "PutObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "CopyObject",
    "DeleteObjects",
    "AbortMultipartUpload",
)


@pytest.fixture
async def through_proxy(
    moto_server: Any, sleeps: Sleeps
) -> AsyncIterator[tuple[streamx.Engine, FaultProxy, str]]:
    """An engine through the fault proxy, with the recording sleep in its retry policy."""
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args, retry=RetryPolicy(sleep=sleeps)) as eng:
            bucket = f"t-{uuid.uuid4().hex[:12]}"
            await eng.client.create_bucket(Bucket=bucket)
            yield eng, proxy, bucket
            assert [o async for o in eng.list(bucket)] == []  # the scratch key is gone
            assert await list_uploads(eng, bucket) == []
            await drop_bucket(eng, bucket)


async def test_probe_retries_slowdown_and_finds_what_moto_honours(
    through_proxy: tuple[streamx.Engine, FaultProxy, str], sleeps: Sleeps
) -> None:
    """Engine.probe (what sync's preflight and a conditional write call) uses the engine's
    retry policy for every request."""
    eng, proxy, bucket = through_proxy
    expected = streamx.Engine(store="moto").store.conditions
    proxy.add(*(Fault("status", op=op, status=503, code="SlowDown") for op in PROBE_OPS))
    found = await eng.probe(bucket)
    assert dict(found.conditions) == dict(expected)
    assert found.checksum_headers is True
    throttled = {r.op for r in proxy.requests if r.status == 503}
    assert throttled == set(PROBE_OPS)
    assert len(sleeps.delays) == len(PROBE_OPS)  # one backoff per throttled request


async def test_lasting_throttling_fails_the_probe_instead_of_guessing(
    through_proxy: tuple[streamx.Engine, FaultProxy, str],
) -> None:
    eng, proxy, bucket = through_proxy
    proxy.add(Fault("status", op="CopyObject", status=503, code="SlowDown", times=None))
    with pytest.raises(streamx.ServiceUnavailableError):
        await eng.probe(bucket)
    assert len(proxy.sent("CopyObject")) == eng.config.max_attempts
    assert not eng.store.probed
