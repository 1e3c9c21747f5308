"""The S3 layer's part-sender seam, driven by small fake senders (no server).

httpcore's tests/test_cancellations.py style: the fakes stand in for the
transport so that stalls, cancellation and error translation are checked
fast and exactly; the real senders are checked against real servers in
tests/s3/test_direct.py and tests/test_faults.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.lowlevel
import botocore.exceptions as bexc
import pytest
from botocore.awsrequest import HTTPHeaders
from botocore.parsers import create_parser

import streamx
from streamx._s3 import S3, PartRequest, ThreadSender
from streamx._s3._operation import Operation
from streamx._s3._session import HttpSettings, service_model

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


# ---------------------------------------------------------------- the thread sender's logic


def stub_client() -> Any:
    """What the thread sender reads of a client before its first request: the S3 model and
    the region it signs for."""
    return SimpleNamespace(meta=SimpleNamespace(service_model=service_model(), region_name=None))


async def test_the_attempts_time_limit_reaches_the_sender() -> None:
    sender = FakeSender(ok)
    s3 = S3(client=None, sender=sender)
    await s3.upload_part("b", "k", "u", 1, b"x", stall_timeout=30, time_limit=7.5)
    await s3.put_object("b", "k", b"x", time_limit=2.0)
    assert [(r.stall_timeout, r.time_limit) for r in sender.requests] == [(30, 7.5), (None, 2.0)]


@pytest.mark.parametrize(
    ("stall", "limit", "longest"),
    [(None, None, 60.0), (None, 2.0, 3.0), (1.5, 30.0, 2.5), (30.0, 1.0, 2.0), (None, 300.0, 60.0)],
)
async def test_a_thread_never_blocks_much_longer_than_its_request_may_take(
    stall: float | None, limit: float | None, longest: float
) -> None:
    """The socket timeouts of a request's thread: the client's (10 s connect, 60 s read),
    capped at the stall timeout or the attempt's time limit (part_timeout) plus a second,
    so that a request given up on does not keep its caller waiting for the thread."""
    settings = HttpSettings(True, None, (10.0, 60.0), 4, None, None, None)
    sender = ThreadSender(
        stub_client(),
        settings=settings,
        credentials=("a", "b", None),
        sign_payload=None,
        fallback=FakeSender(ok),
    )
    try:
        request = PartRequest("UploadPart", {}, memoryview(b""), lambda: None, stall, limit)
        timeout, blocking = sender._timeouts(request)
        assert blocking == longest
        assert sender._timeouts(request)[0] is timeout  # one Timeout per value
    finally:
        sender.close()


ANSWER_HEADERS = {
    "ETag": '"0123abcd"',
    "x-amz-checksum-crc32c": "AAAAAA==",
    "X-Amz-Server-Side-Encryption": "AES256",
    "x-amz-server-side-encryption-bucket-key-enabled": "TRUE",
    "x-amz-object-size": "1048576",
    "x-amz-version-id": "v1",
    "x-amz-request-id": "REQ1",
    "x-amz-id-2": "HOST2",
    "Server": "sink",
    "Content-Length": "0",
}


@pytest.mark.parametrize("operation", ["UploadPart", "PutObject"])
@pytest.mark.parametrize(
    "headers",
    [ANSWER_HEADERS, {"ETag": '"e"'}, {"ETag": '"e"', "x-amzn-RequestId": "R"}],
    ids=["every-kind", "etag-only", "amzn-request-id"],
)
def test_a_2xx_answer_reads_as_botocores_parser_reads_it(
    operation: str, headers: dict[str, str]
) -> None:
    """The thread sender reads a 2xx answer's headers itself (no shape dispatch per header):
    the same dict botocore's REST-XML parser makes, strings, booleans and longs typed."""
    op = Operation(stub_client(), operation)
    assert op.answers
    botocore_headers = HTTPHeaders()
    for name, value in headers.items():
        botocore_headers[name] = value
    expected = create_parser("rest-xml").parse(
        {"headers": botocore_headers, "status_code": 200, "body": b""}, op.model.output_shape
    )
    assert op.answer(200, botocore_headers) == expected


async def test_the_thread_hand_off_returns_raises_and_refuses_after_close() -> None:
    """The thread sender's hand-off (``_handoff.in_thread``): a result and an error come back as they
    are; a job still queued when the engine closes its executor, and one submitted after,
    raise UsageError (not a bare CancelledError or RuntimeError)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from streamx._s3._handoff import in_thread

    executor = ThreadPoolExecutor(1)
    assert await in_thread(executor, sum, [1, 2]) == 3
    with pytest.raises(ZeroDivisionError):
        await in_thread(executor, divmod, 1, 0)
    gate = threading.Event()
    outcomes: dict[str, BaseException | bool] = {}

    async def run(name: str, fn: Callable[..., Any], *args: Any) -> None:
        try:
            outcomes[name] = await in_thread(executor, fn, *args)
        except BaseException as exc:
            outcomes[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "busy", gate.wait, 10)
        tg.start_soon(run, "queued", gate.wait, 10)
        await anyio.sleep(0.2)
        executor.shutdown(wait=False, cancel_futures=True)  # what ThreadSender.close() does
        await anyio.sleep(0.2)
        gate.set()
    assert outcomes["busy"] is True  # the running one finishes
    assert isinstance(outcomes["queued"], streamx.UsageError)
    with pytest.raises(streamx.UsageError, match="closed"):
        await in_thread(executor, sum, [1])


async def test_a_cancelled_hand_off_never_runs_its_job() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from streamx._s3._handoff import in_thread

    executor = ThreadPoolExecutor(1)
    gate = threading.Event()
    ran: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(in_thread, executor, gate.wait, 10)
        await anyio.sleep(0.1)
        with anyio.move_on_after(0.2):  # cancelled while queued behind the busy thread
            await in_thread(executor, ran.append, 1)
        gate.set()
    executor.shutdown(wait=True)
    assert ran == []
