"""Credentials and signatures never reach an error or a log line.

rclone checks SigV4 signatures, so a wrong secret is refused there. The proxy
sees each request's Authorization header, which gives the test the real
signatures to look for.
"""

from __future__ import annotations

import io
import logging
import random
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from faultproxy import Fault, FaultProxy

import streamx
from streamx.testing import capture_logs

MiB = 1024 * 1024
PART = 5 * MiB
DATA = random.Random(3).randbytes(2 * PART + 99)
WRONG_SECRET = "wrong-secret-Zq8RkW3vLp0XnT7yB4uE"
CFG = streamx.TransferConfig(part_size=PART, queue_size=2, multipart_threshold=PART)


def signatures(proxy: FaultProxy) -> set[str]:
    found = set()
    for request in proxy.requests:
        match = re.search(r"Signature=([0-9a-f]{64})", request.headers.get("authorization", ""))
        if match:
            found.add(match.group(1))
    return found


def texts(exc: BaseException) -> Iterator[str]:
    """Everything an error shows: str, repr, args, attributes, along its whole cause chain."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield str(e)
        yield repr(e)
        yield repr(e.args)
        yield repr(vars(e)) if hasattr(e, "__dict__") else ""
        todo += [e.__cause__, e.__context__]


@pytest.mark.anyio
async def test_wrong_secret_is_access_denied_without_secret_or_signature(
    rclone_server: Any,
) -> None:
    async with FaultProxy(rclone_server.endpoint_url) as proxy:
        args = {
            **rclone_server.engine_args(),
            "endpoint_url": proxy.url,
            "aws_secret_access_key": WRONG_SECRET,
        }
        async with streamx.Engine(**args) as eng:
            for source in (b"small", DATA):  # one PutObject, one multipart upload
                with pytest.raises(streamx.AccessDeniedError) as info:
                    await eng.upload("any-bucket", "k", source, config=CFG)
                err = info.value
                assert isinstance(err, PermissionError) and err.status == 403
                assert err.bucket == "any-bucket" and err.key == "k"
                sigs = signatures(proxy)
                assert sigs  # the requests were signed, so there is something to leak
                for text in texts(err):
                    assert WRONG_SECRET not in text
                    assert not any(sig in text for sig in sigs), text
        assert WRONG_SECRET not in repr(eng)


@pytest.mark.anyio
async def test_logs_of_whole_uploads_hold_no_secret(rclone_server: Any) -> None:
    """A run with retries, a failure and an abort, logged twice: captured, and printed by a handler."""
    secret = rclone_server.secret_key

    async def run(proxy: FaultProxy) -> None:
        bucket = f"log-{uuid.uuid4().hex[:12]}"
        args = {**rclone_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            await eng.client.create_bucket(Bucket=bucket)
            proxy.add(Fault("status", op="UploadPart", query={"partNumber": "2"}, code="SlowDown"))
            proxy.add(Fault("reset", op="UploadPart", query={"partNumber": "3"}, at=10))
            await eng.upload(bucket, "ok", DATA, config=CFG)
            proxy.add(Fault("status", op="UploadPart", status=403, code="AccessDenied"))
            with pytest.raises(streamx.AccessDeniedError):
                await eng.upload(bucket, "denied", DATA, config=CFG)
        bad = {
            **rclone_server.engine_args(),
            "endpoint_url": proxy.url,
            "aws_secret_access_key": secret[::-1],
        }
        async with streamx.Engine(**bad) as eng:
            with pytest.raises(streamx.AccessDeniedError):
                await eng.upload(bucket, "bad", DATA, config=CFG)

    with capture_logs() as logs:
        async with FaultProxy(rclone_server.endpoint_url) as proxy:
            await run(proxy)
    events = {e["event"] for e in logs}
    assert {"upload.start", "upload.part.retry", "upload.complete", "upload.aborted"} <= events
    captured = repr(logs)
    sigs = signatures(proxy)
    assert sigs and secret not in captured and secret[::-1] not in captured
    assert not any(sig in captured for sig in sigs)

    # what a user's logging.basicConfig(level=DEBUG) would print, through the stdlib logger
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("streamx")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        async with FaultProxy(rclone_server.endpoint_url) as proxy:
            await run(proxy)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    printed = stream.getvalue()
    assert "upload.part.retry" in printed and "upload.aborted" in printed
    assert secret not in printed and secret[::-1] not in printed
    assert not any(sig in printed for sig in signatures(proxy))
