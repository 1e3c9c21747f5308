"""The S3 layer's part-sender seam, driven by small fake senders (no server).

httpcore's tests/test_cancellations.py style: the fakes stand in for the
transport so that stalls, cancellation and error translation are checked
fast and exactly; the real senders are checked against real servers in
tests/s3/test_direct.py and tests/test_faults.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import botocore.exceptions as bexc
import pytest

import streamx
from streamx._s3 import S3, PartRequest

pytestmark = [pytest.mark.unit, pytest.mark.anyio]


class FakeSender:
    """Runs ``behaviour`` for each request and records what it was given."""

    def __init__(self, behaviour: Callable[[PartRequest], Awaitable[dict[str, Any]]]) -> None:
        self.behaviour = behaviour
        self.requests: list[PartRequest] = []
        self.cancelled = 0
        self.closed = False

    async def send(self, request: PartRequest) -> dict[str, Any]:
        self.requests.append(request)
        try:
            return await self.behaviour(request)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise

    def close(self) -> None:
        self.closed = True


async def ok(request: PartRequest) -> dict[str, Any]:
    request.progress()
    return {"ETag": '"e"'}


async def test_a_part_goes_to_the_sender_as_the_callers_memory() -> None:
    sender = FakeSender(ok)
    s3 = S3(client=None, sender=sender)
    data = bytearray(b"x" * 1000)
    response = await s3.upload_part("b", "k", "u", 7, data, ChecksumCRC32C="AAAAAA==")
    assert response == {"ETag": '"e"'}
    (request,) = sender.requests
    assert request.operation == "UploadPart"
    assert dict(request.params) == {
        "Bucket": "b",
        "Key": "k",
        "UploadId": "u",
        "PartNumber": 7,
        "ChecksumCRC32C": "AAAAAA==",
    }
    assert request.body.obj is data  # a view, not a copy


async def test_a_put_with_a_body_in_memory_goes_to_the_sender() -> None:
    sender = FakeSender(ok)
    s3 = S3(client=None, sender=sender)
    await s3.put_object("b", "k", b"abc", ContentType="text/plain")
    (request,) = sender.requests
    assert request.operation == "PutObject"
    assert dict(request.params) == {"Bucket": "b", "Key": "k", "ContentType": "text/plain"}
    assert bytes(request.body) == b"abc"


async def test_a_sender_that_stops_moving_bytes_is_cut_as_a_stall() -> None:
    async def stall(request: PartRequest) -> dict[str, Any]:
        request.progress()  # the first byte moved, then nothing
        await anyio.sleep_forever()
        raise AssertionError

    sender = FakeSender(stall)
    s3 = S3(client=None, sender=sender)
    with pytest.raises(streamx.NetworkError, match=r"no progress for stall_timeout=0\.05") as info:
        await s3.upload_part("b", "k", "u", 3, b"x" * 10, stall_timeout=0.05)
    assert info.value.part_number == 3 and info.value.upload_id == "u"
    assert sender.cancelled == 1


async def test_the_stall_clock_starts_with_the_first_byte() -> None:
    """A request waiting for a connection (no byte moved yet) is queued, not stalled."""

    async def queued_then_quick(request: PartRequest) -> dict[str, Any]:
        await anyio.sleep(0.3)  # six stall timeouts before the first byte
        for _ in range(3):
            request.progress()
            await anyio.lowlevel.checkpoint()
        return {"ETag": '"e"'}

    s3 = S3(client=None, sender=FakeSender(queued_then_quick))
    assert await s3.upload_part("b", "k", "u", 1, b"x", stall_timeout=0.05) == {"ETag": '"e"'}


async def test_an_outer_cancel_is_not_reported_as_a_stall() -> None:
    async def slow(request: PartRequest) -> dict[str, Any]:
        request.progress()
        await anyio.sleep_forever()
        raise AssertionError

    sender = FakeSender(slow)
    s3 = S3(client=None, sender=sender)
    with anyio.move_on_after(0.05) as scope:
        await s3.upload_part("b", "k", "u", 1, b"x", stall_timeout=30)
    assert scope.cancelled_caught and sender.cancelled == 1


@pytest.mark.parametrize(
    ("raised", "expected", "code"),
    [
        (
            bexc.ClientError(
                {
                    "Error": {"Code": "SlowDown", "Message": "busy"},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "UploadPart",
            ),
            streamx.ServiceUnavailableError,
            "SlowDown",
        ),
        (
            bexc.ClientError(
                {"Error": {"Code": "NoSuchUpload"}, "ResponseMetadata": {"HTTPStatusCode": 404}},
                "UploadPart",
            ),
            streamx.NotFoundError,
            "NoSuchUpload",
        ),
        (
            bexc.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            streamx.NetworkError,
            None,
        ),
        (bexc.HTTPClientError(error=ValueError("secret-ish text")), streamx.NetworkError, None),
    ],
)
async def test_a_senders_errors_are_translated_with_the_parts_context(
    raised: Exception, expected: type[streamx.StreamxError], code: str | None
) -> None:
    async def fail(request: PartRequest) -> dict[str, Any]:
        raise raised

    s3 = S3(client=None, sender=FakeSender(fail))
    with pytest.raises(expected) as info:
        await s3.upload_part("b", "k", "u", 2, b"x")
    assert info.value.part_number == 2 and info.value.__cause__ is raised
    if code is not None:
        assert getattr(info.value, "code", None) == code
    assert "secret-ish" not in str(info.value)  # an underlying error's text is not repeated
