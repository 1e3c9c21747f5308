"""Faults injected at the network level (tests/faultproxy.py) between the engine and a real server.

Every scenario ends with the stored object's SHA-256 equal to the source's,
or with a clear streamx error; and, through the ``bucket`` fixture, with no
multipart upload left behind. Retries never really sleep: the pipeline's
RetryPolicy gets a recording sleep (:class:`faultproxy.Sleeps`).
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from conftest import read_object
from faultproxy import Fault, FaultProxy, Sleeps

import streamx
from streamx._s3 import ThreadSender
from streamx.testing import capture_logs

MiB = 1024 * 1024
PART = 5 * MiB
DATA = random.Random(4).randbytes(5 * PART + 1234)  # 6 parts, the last one short
N_PARTS = 6
CFG = streamx.TransferConfig(part_size=PART, queue_size=3, multipart_threshold=PART)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["direct", "aiobotocore"])
async def pengine(
    request: pytest.FixtureRequest, server: Any, proxy: FaultProxy, sleeps: Sleeps
) -> AsyncIterator[streamx.Engine]:
    """Every fault test runs over both part transports: streamx's own connections
    (streamx/_s3/_threaded.py, the default) and aiobotocore's (``direct_parts=False``)."""
    direct = request.param == "direct"
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    retry = streamx.RetryPolicy(sleep=sleeps)  # recorded, never really waited
    async with streamx.Engine(**args, direct_parts=direct, retry=retry) as eng:
        assert isinstance(eng._s3_layer.sender, ThreadSender) == direct
        yield eng


def attempts(proxy: FaultProxy) -> dict[int, int]:
    counts: dict[int, int] = {}
    for r in proxy.sent("UploadPart"):
        assert r.part_number is not None
        counts[r.part_number] = counts.get(r.part_number, 0) + 1
    return counts


async def assert_absent(engine: streamx.Engine, bucket: str, key: str) -> None:
    with pytest.raises(Exception) as info:
        await engine.client.head_object(Bucket=bucket, Key=key)
    assert "404" in str(info.value) or "Not Found" in str(info.value)


@pytest.mark.anyio
async def test_a_fifth_of_parts_fail_once(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, sleeps: Sleeps
) -> None:
    """2 of 10 parts fail once, one at the connection, one with a 5xx: retried, bytes intact."""
    data = random.Random(10).randbytes(9 * PART + 4321)
    n_parts = 10
    rng = random.Random(20)
    connection = [
        Fault("reset", at=MiB),  # connection reset mid-body
        Fault("reset", phase="response"),  # the server stored the part; the answer is lost
        Fault("truncate", phase="response"),
    ]
    status = [
        Fault("status", status=503, code="SlowDown"),
        Fault("status", status=500, code="InternalError"),
        Fault("status", status=502, code="BadGateway"),
        Fault("status", status=504, code="GatewayTimeout"),
    ]
    failing = rng.sample(range(1, n_parts + 1), 2)
    for part, fault in zip(failing, [rng.choice(connection), rng.choice(status)], strict=True):
        fault.op, fault.query = "UploadPart", {"partNumber": str(part)}
        proxy.add(fault)
    events: list[streamx.ProgressEvent] = []

    with capture_logs() as logs:
        result = await pengine.upload(bucket, "fifth", data, config=CFG, on_progress=events.append)

    assert sha(await read_object(engine, bucket, "fifth")) == sha(data)
    assert result.part_count == n_parts and result.size == len(data)
    sent = attempts(proxy)
    assert all(sent[n] >= 2 for n in failing)
    assert all(sent[n] == 1 for n in range(1, n_parts + 1) if n not in failing)
    # aiohttp itself resends an idempotent request once when a *reused* connection
    # breaks before the answer; every other retry is streamx's, and counted
    retried = [e["part_number"] for e in logs if e["event"] == "upload.part.retry"]
    assert failing[1] in retried and set(retried) <= set(failing)  # a 5xx is always streamx's
    assert len(sleeps.delays) == len(retried)
    final = events[-1]
    assert final.final and final.bytes_done == len(data)
    assert final.bytes_retried == sum(min(PART, len(data) - (n - 1) * PART) for n in retried)


@pytest.mark.anyio
async def test_every_part_fails_twice_then_succeeds(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, sleeps: Sleeps
) -> None:
    for n in range(1, N_PARTS + 1):
        proxy.add(Fault("status", op="UploadPart", query={"partNumber": str(n)}, code="SlowDown"))
        proxy.add(
            Fault(
                "status",
                op="UploadPart",
                query={"partNumber": str(n)},
                status=500,
                code="InternalError",
            )
        )
    cfg = streamx.TransferConfig(part_size=PART, queue_size=3, max_attempts=3)

    await pengine.upload(bucket, "twice", DATA, config=cfg)

    assert sha(await read_object(engine, bucket, "twice")) == sha(DATA)
    assert attempts(proxy) == dict.fromkeys(range(1, N_PARTS + 1), 3)
    # equal jitter: after failed attempt n the delay is within [cap/2, cap], cap = 0.5 * 2^(n-1)
    assert len(sleeps.delays) == 2 * N_PARTS
    assert all(0.25 <= d <= 1.0 for d in sleeps.delays)


@pytest.mark.anyio
async def test_a_single_put_is_retried_too(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, sleeps: Sleeps
) -> None:
    small = DATA[: PART - 1]
    proxy.add(Fault("status", op="PutObject", code="SlowDown"))
    proxy.add(Fault("stall", op="PutObject", at=1000))
    # long enough for a disk-backed server to store 5 MiB and answer on a busy machine
    # (SeaweedFS took over 0.3 s here); the stalled attempt waits this long
    cfg = streamx.TransferConfig(part_size=PART, stall_timeout=1.5)

    result = await pengine.upload(bucket, "put", small, config=cfg)

    assert result.upload_id is None and await read_object(engine, bucket, "put") == small
    assert len(proxy.sent("PutObject")) == 3 and len(sleeps.delays) == 2


@pytest.mark.anyio
async def test_attempts_run_out(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    proxy.add(Fault("status", op="UploadPart", query={"partNumber": "2"}, times=None))
    cfg = streamx.TransferConfig(part_size=PART, queue_size=2, max_attempts=4)

    with pytest.raises(streamx.ServiceUnavailableError) as info:
        await pengine.upload(bucket, "gives-up", DATA, config=cfg)

    err = info.value
    assert err.code == "SlowDown" and err.part_number == 2 and err.upload_id
    assert "after 4 attempts" in str(err)
    assert attempts(proxy)[2] == 4
    assert proxy.sent("AbortMultipartUpload")
    await assert_absent(engine, bucket, "gives-up")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (403, "AccessDenied", streamx.AccessDeniedError),
        (404, "NoSuchUpload", streamx.NotFoundError),
        (404, "NoSuchBucket", streamx.NotFoundError),
        (400, "EntityTooSmall", streamx.S3Error),
        (400, "InvalidPart", streamx.S3Error),
        (501, "NotImplemented", streamx.S3Error),
    ],
)
async def test_one_part_fails_for_good(
    pengine: streamx.Engine,
    engine: streamx.Engine,
    bucket: str,
    proxy: FaultProxy,
    status: int,
    code: str,
    error: type[Exception],
) -> None:
    """Non-retryable answers fail at once: one attempt, the upload aborted, the error in context."""
    proxy.add(Fault("status", op="UploadPart", query={"partNumber": "3"}, status=status, code=code))

    with pytest.raises(error) as info:
        await pengine.upload(bucket, "for-good", DATA, config=CFG)

    err = info.value
    assert isinstance(err, streamx.S3Error) and err.code == code and err.status == status
    assert err.part_number == 3 and err.bucket == bucket and err.key == "for-good"
    assert err.upload_id and "attempts" not in str(err)
    assert attempts(proxy)[3] == 1
    assert proxy.sent("AbortMultipartUpload") and not proxy.sent("CompleteMultipartUpload")
    await assert_absent(engine, bucket, "for-good")


@pytest.mark.anyio
async def test_a_failing_abort_is_retried(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    """An abort answered 500 (moto does so when it races an in-flight part) is sent again."""
    proxy.add(
        Fault("status", op="UploadPart", query={"partNumber": "2"}, status=403, code="AccessDenied")
    )
    proxy.add(Fault("status", op="AbortMultipartUpload", status=500, code="InternalError"))

    with pytest.raises(streamx.AccessDeniedError):
        await pengine.upload(bucket, "abort", DATA, config=CFG)

    # the injected 500, then resent until it succeeds (moto itself may answer another 500
    # while a cancelled part it already received is still being stored)
    statuses = [r.status for r in proxy.sent("AbortMultipartUpload")]
    assert statuses[0] == 500 and statuses[-1] == 204, statuses
    assert set(statuses[:-1]) == {500}


@pytest.mark.anyio
async def test_server_stalls_and_part_timeout_retries(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    """The server takes part 2 and never answers: part_timeout ends the attempt, a retry succeeds."""
    proxy.add(Fault("stall", phase="response", op="UploadPart", query={"partNumber": "2"}))
    cfg = streamx.TransferConfig(part_size=PART, queue_size=3, part_timeout=1.0, stall_timeout=None)

    await pengine.upload(bucket, "stalled", DATA, config=cfg)

    assert sha(await read_object(engine, bucket, "stalled")) == sha(DATA)
    # the stalled attempt and at least one retry: the stall never answers, so the upload
    # completed only because part_timeout ended it. Not `== 2`: on a loaded machine (the
    # suite runs in parallel workers) a retry may also need more than 1 s and be cut again
    assert attempts(proxy)[2] >= 2


@pytest.mark.anyio
@pytest.mark.parametrize("phase", ["request", "response"])
async def test_stall_detector_retries_a_part_that_stops_moving(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy, phase: str
) -> None:
    """No byte moves for stall_timeout (mid-body, or no answer): cancelled and retried.

    part_timeout is far away (60 s), so only the stall detector can end the attempt.
    """
    proxy.add(Fault("stall", phase=phase, op="UploadPart", query={"partNumber": "2"}, at=MiB))
    # long enough for a disk-backed server (SeaweedFS) to store a 5 MiB part and answer on
    # a busy machine: only the stalled attempt may be cut
    cfg = streamx.TransferConfig(part_size=PART, queue_size=3, part_timeout=60, stall_timeout=1.5)

    with anyio.fail_after(30):  # a hang would otherwise only end at the suite's timeout
        await pengine.upload(bucket, "stall-" + phase, DATA, config=cfg)

    assert sha(await read_object(engine, bucket, "stall-" + phase)) == sha(DATA)
    assert attempts(proxy)[2] == 2


@pytest.mark.anyio
async def test_stall_detector_gives_up_with_a_clear_error(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    proxy.add(Fault("stall", op="UploadPart", query={"partNumber": "1"}, at=0, times=None))
    cfg = streamx.TransferConfig(part_size=PART, queue_size=2, max_attempts=2, stall_timeout=0.3)

    with pytest.raises(streamx.NetworkError, match=r"stall_timeout=0\.3") as info:
        await pengine.upload(bucket, "stuck", DATA, config=cfg)

    assert info.value.part_number == 1 and "after 2 attempts" in str(info.value)
    await assert_absent(engine, bucket, "stuck")


@pytest.mark.anyio
async def test_source_raises_while_parts_are_being_retried(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    proxy.add(Fault("status", op="UploadPart", times=None, code="SlowDown"))

    def source() -> Iterator[bytes]:
        yield DATA[: 2 * PART]
        raise OSError("the disk went away")

    with pytest.raises(streamx.SourceError, match="the disk went away") as info:
        await pengine.upload(bucket, "src", source(), config=CFG)

    assert isinstance(info.value.__cause__, OSError) and info.value.upload_id
    assert proxy.sent("AbortMultipartUpload")
    await assert_absent(engine, bucket, "src")


# ---------------------------------------------------------------- bad input, before any request


def closed_file() -> io.BytesIO:
    f = io.BytesIO(b"data")
    f.close()
    return f


BAD_CALLS: list[tuple[str, dict[str, Any], type[Exception]]] = [
    ("bucket int", {"bucket": 7}, ValueError),
    ("bucket empty", {"bucket": ""}, ValueError),
    ("key None", {"key": None}, ValueError),
    ("key bytes", {"key": b"k"}, ValueError),
    ("key 1025 bytes", {"key": "é" * 512 + "x"}, ValueError),
    ("key lone surrogate", {"key": "a\udc80b"}, ValueError),
    ("source int", {"source": 12345}, TypeError),
    ("source dict", {"source": {"a": b"b"}}, TypeError),
    ("source text file", {"source": io.StringIO("text")}, TypeError),
    ("source closed file", {"source": closed_file()}, ValueError),
    ("source missing path", {"source": "/nonexistent/streamx/file"}, FileNotFoundError),
    ("size negative", {"size": -1}, ValueError),
    ("size bool", {"size": True}, ValueError),
    ("size str", {"size": "10"}, ValueError),
    ("size absurd", {"source": iter([b"x"]), "size": 2**63}, streamx.StreamxError),
    ("config wrong type", {"config": {"part_size": PART}}, ValueError),
    ("on_progress not callable", {"on_progress": 5}, ValueError),
    ("unknown put arg", {"Colour": "blue"}, ValueError),
    ("managed put arg", {"UploadId": "x"}, ValueError),
    ("checkpoint int", {"checkpoint": 5}, ValueError),
    ("restart without checkpoint", {"restart": True}, ValueError),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("case", "override", "error"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
async def test_bad_input_fails_before_any_request(
    moto_server: Any, case: str, override: dict[str, Any], error: type[Exception]
) -> None:
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng:
            call = {"bucket": "b-bad", "key": "k", "source": b"data", **override}
            with pytest.raises(error):
                await eng.upload(call.pop("bucket"), call.pop("key"), call.pop("source"), **call)
        assert proxy.requests == []


@pytest.mark.unit
@pytest.mark.parametrize(
    "bad",
    [
        {"part_size": -1},
        {"part_size": 2**80},
        {"queue_size": 0},
        {"queue_size": 10**9},
        {"max_attempts": 0},
        {"part_timeout": -1},
        {"stall_timeout": 0},
        {"stall_timeout": -5},
        {"stall_timeout": "60"},
        {"stall_timeout": True},
        {"checksum": "sometimes"},
        {"checksum_algorithm": "MD5"},
    ],
)
def test_bad_config_values(bad: dict[str, Any]) -> None:
    with pytest.raises(streamx.ConfigError):
        streamx.TransferConfig(**bad)


@pytest.mark.anyio
async def test_source_yielding_str_leaves_nothing(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    with pytest.raises(streamx.SourceTypeError, match="encode"):
        await pengine.upload(bucket, "str", iter(["text, not bytes"]), config=CFG)
    assert not proxy.sent("UploadPart") and not proxy.sent("PutObject")


ODD_KEYS = [
    "e\u0301t\u00e9",  # combining accent next to a precomposed one (NFD and NFC in one key)
    "\u00e9t\u00e9",  # the same text in NFC: must stay a different key
    "emoji/\U0001f680\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "rtl/\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "space and +&=?#%;,@$ !",
    "\u4e2d\u6587/\u65e5\u672c\u8a9e/\ud55c\uad6d\uc5b4",
    "zero\u200bwidth\ufeffbom",
]


@pytest.mark.anyio
async def test_odd_unicode_keys_round_trip(
    pengine: streamx.Engine, engine: streamx.Engine, bucket: str
) -> None:
    for i, key in enumerate(ODD_KEYS):
        await pengine.upload(bucket, key, f"body {i}".encode())
    for i, key in enumerate(ODD_KEYS):
        assert await read_object(engine, bucket, key) == f"body {i}".encode()
    long_key = "/".join(["\u00fc" * 120] * 4) + "/"
    long_key += "k" * (1024 - len(long_key.encode()))
    assert len(long_key.encode()) == 1024
    await pengine.upload(bucket, long_key, DATA[: PART + 1], config=CFG)  # multipart, too
    assert sha(await read_object(engine, bucket, long_key)) == sha(DATA[: PART + 1])


@pytest.mark.anyio
async def test_the_proxy_corrupts_and_truncates_responses(
    pengine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    """The response faults the download tests rely on do what they say."""
    body = DATA[:100_000]
    await pengine.upload(bucket, "r", body)

    async def get(**kwargs: Any) -> bytes:
        response = await pengine.client.get_object(Bucket=bucket, Key="r", **kwargs)
        async with response["Body"] as stream:  # released also when the read fails
            return bytes(await stream.read())

    proxy.add(Fault("corrupt", phase="response", op="GetObject", at=70_000))
    got = await get()
    assert len(got) == len(body) and got != body
    assert [i for i in range(len(body)) if got[i] != body[i]] == [70_000]

    proxy.add(Fault("truncate", phase="response", op="GetObject", at=50_000))
    with pytest.raises(Exception) as info:
        await get(Range="bytes=0-99999")
    assert not isinstance(info.value, AssertionError)

    proxy.add(Fault("reset", phase="response", op="GetObject", at=10_000))
    with pytest.raises(Exception) as info:
        await get()
    assert not isinstance(info.value, AssertionError)
    assert [r.fault for r in proxy.sent("GetObject")] == ["corrupt", "truncate", "reset"]
