"""Bad arguments fail before any request, with a streamx error that names them.

Header injection: a CR/LF in a put argument would end the header early on
streamx's own part transport (streamx/_s3/_threaded.py hands header lines to the
socket). Every case runs through tests/faultproxy.py in front of a real
server (moto and rclone) and over both transports; the proxy records every
request, so "nothing reached the server" is checked, not assumed.
"""

from __future__ import annotations

import email.header
import math
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from conftest import read_object
from faultproxy import FaultProxy

import streamx
from streamx._limits import TiB
from streamx._s3 import PartRequest, ThreadSender

# streamx's own logic, not the store's: two of the three servers suffice (tests/conftest.py)
pytestmark = pytest.mark.servers("moto", "rclone")

MiB = 1024 * 1024
PART = 5 * MiB
SMALL = b"small body"
BIG = random.Random(11).randbytes(2 * PART + 7)  # multipart with the config below
CFG = streamx.TransferConfig(part_size=PART, queue_size=2, multipart_threshold=PART)
INJECTION = "x\r\nX-Injected: yes"


@pytest.fixture(params=["direct", "aiobotocore"])
async def pengine(
    request: pytest.FixtureRequest, server: Any, proxy: FaultProxy
) -> AsyncIterator[streamx.Engine]:
    direct = request.param == "direct"
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    async with streamx.Engine(**args, direct_parts=direct) as eng:
        assert isinstance(eng._s3_layer.sender, ThreadSender) == direct
        yield eng


def injected(proxy: FaultProxy) -> list[str]:
    """Every header the server could have been sent that carries the injection."""
    return [
        f"{k}: {v}"
        for r in proxy.requests
        for k, v in r.headers.items()
        if "injected" in k or "injected" in v.lower()
    ]


HEADER_CASES = [
    ("ContentType", {"ContentType": INJECTION}),
    ("ContentDisposition", {"ContentDisposition": f'attachment; filename="{INJECTION}"'}),
    ("CacheControl", {"CacheControl": INJECTION}),
    ("ContentEncoding", {"ContentEncoding": INJECTION}),
    ("ContentLanguage", {"ContentLanguage": "en\nX-Injected: yes"}),
    ("Tagging", {"Tagging": "a=b\r\n\r\nGET / HTTP/1.1"}),
    ("Metadata", {"Metadata": {"user": INJECTION}}),
    ("Metadata", {"Metadata": {"a\r\nX-Injected": "yes"}}),
    ("Metadata", {"Metadata": {"nul": "a\x00b"}}),
]


@pytest.mark.anyio
@pytest.mark.servers("rclone")  # refused before any request: the store never sees it
@pytest.mark.parametrize("size", ["small", "multipart"])
@pytest.mark.parametrize(("name", "args"), HEADER_CASES, ids=[repr(c[1]) for c in HEADER_CASES])
async def test_header_injection_is_refused_before_any_request(
    pengine: streamx.Engine,
    engine: streamx.Engine,
    bucket: str,
    proxy: FaultProxy,
    name: str,
    args: dict[str, Any],
    size: str,
) -> None:
    data = SMALL if size == "small" else BIG
    with pytest.raises(streamx.ConfigError, match=name):
        await pengine.upload(bucket, "victim", data, config=CFG, **args)
    with pytest.raises(streamx.ConfigError, match=name):
        async with pengine.open_writer(bucket, "victim", config=CFG, **args) as writer:
            await writer.write(data)
    assert proxy.requests == []
    with pytest.raises(streamx.NotFoundError):
        await engine.head(bucket, "victim")


@pytest.mark.anyio
async def test_the_direct_sender_itself_never_writes_cr_lf(
    server: Any, engine: streamx.Engine, bucket: str, proxy: FaultProxy
) -> None:
    """Below the put-argument checks: the part sender refuses too (defence in depth)."""
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    async with streamx.Engine(**args, direct_parts=True) as eng:
        sender = eng._s3_layer.sender
        assert isinstance(sender, ThreadSender)
        for params in ({"ContentType": INJECTION}, {"Metadata": {"m": INJECTION}}):
            request = PartRequest(
                "PutObject",
                {"Bucket": bucket, "Key": "victim", **params},
                memoryview(b"data"),
                lambda: None,
            )
            assert sender.can_send(request)  # its own path, not the fallback's
            with pytest.raises(streamx.ConfigError, match="control character"):
                await sender.send(request)
    assert injected(proxy) == [] and proxy.sent("PutObject") == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"Metadata": {"a": 1}}, "Metadata\\['a'\\] must be a str, not int"),
        ({"Metadata": {1: "a"}}, "not a valid header name"),
        ({"Metadata": {"caf\u00e9": "x"}}, "not a valid header name"),
        ({"Metadata": {"with space": "x"}}, "not a valid header name"),
        ({"Metadata": {"": "x"}}, "not a valid header name"),
        ({"Metadata": {"s": "\ud800"}}, "UTF-8"),
        ({"Metadata": "a=b"}, "must be a dict"),
        ({"ContentType": 5}, "ContentType must be a str"),
        ({"ContentDisposition": 'attachment; filename="caf\u00e9.txt"'}, "filename\\*=UTF-8"),
        ({"CacheControl": "max-age=\u00e9"}, "non-ASCII"),
        ({"BucketKeyEnabled": "yes"}, "BucketKeyEnabled must be True or False"),
        ({"Expires": "soon\r\n"}, "Expires"),
    ],
)
async def test_bad_put_values_are_config_errors(
    moto_server: Any, args: dict[str, Any], message: str
) -> None:
    async with FaultProxy(moto_server.endpoint_url) as proxy:
        eng_args = {**moto_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**eng_args) as eng:
            with pytest.raises(streamx.ConfigError, match=message):
                await eng.upload("b-values", "k", SMALL, **args)
            with pytest.raises(streamx.ConfigError, match=message):
                await eng.copy("b-values", "k", "b-values", "k2", **args)
        assert proxy.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("size", ["small", "multipart"])
async def test_non_ascii_metadata_is_rfc2047_encoded(
    pengine: streamx.Engine,
    engine: streamx.Engine,
    bucket: str,
    proxy: FaultProxy,
    size: str,
) -> None:
    """S3 decodes RFC 2047 metadata before storing it (and encodes it on HEAD/GET)."""
    data = SMALL if size == "small" else BIG
    value = "caf\u00e9 \u2603 \U0001f680"
    await pengine.upload(
        bucket, "meta", data, config=CFG, Metadata={"name": value, "plain": "ascii"}
    )
    creating = [r for r in proxy.requests if r.op in ("PutObject", "CreateMultipartUpload")]
    assert len(creating) == 1
    sent = creating[0].headers["x-amz-meta-name"]
    assert sent.isascii() and sent.startswith("=?UTF-8?B?")
    assert creating[0].headers["x-amz-meta-plain"] == "ascii"
    info = await engine.head(bucket, "meta")
    stored = info.metadata["name"]
    # moto and rclone keep the encoded word as sent; AWS decodes it and re-encodes it on HEAD
    decoded = email.header.make_header(email.header.decode_header(stored))
    assert str(decoded) == value
    assert await read_object(engine, bucket, "meta") == data


class _NotAClient:
    """A stand-in client with a stable repr (an ``object()``'s repr holds its address, and
    the test ids must be equal in every pytest-xdist worker)."""

    def __repr__(self) -> str:
        return "<not a client>"


NOT_A_CLIENT = _NotAClient()

ENGINE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"region_name": ""}, "region_name"),
    ({"region_name": "us east 1"}, "region_name"),
    ({"region_name": 5}, "region_name"),
    ({"aws_access_key_id": 1, "aws_secret_access_key": "s"}, "aws_access_key_id"),
    ({"aws_access_key_id": "a", "aws_secret_access_key": b"s"}, "aws_secret_access_key"),
    ({"aws_access_key_id": "a"}, "pass both"),
    ({"aws_access_key_id": "a\nb", "aws_secret_access_key": "s"}, "control"),
    ({"aws_session_token": "t"}, "aws_session_token"),
    ({"addressing_style": "weird"}, "addressing_style"),
    # a fixed name: the test ids must be equal in every pytest-xdist worker (no uuid here)
    ({"profile": "no-such-profile-5f0c3b1e9d2a4c7e"}, "profile"),
    ({"profile": ""}, "profile"),
    ({"endpoint_url": "ftp://x"}, "http:// or https://"),
    ({"endpoint_url": "127.0.0.1:9000"}, "add http://"),
    ({"endpoint_url": "localhost:9000"}, "add http://"),
    ({"endpoint_url": "http://"}, "no host"),
    ({"endpoint_url": "http://h:99999"}, "port"),
    ({"endpoint_url": "http://h\r\nx"}, "control"),
    ({"endpoint_url": 5}, "endpoint_url"),
    ({"sign_payload": "yes"}, "sign_payload"),
    ({"max_pool_connections": 0}, "max_pool_connections"),
    ({"max_pool_connections": True}, "max_pool_connections"),
    ({"max_pool_connections": 10**9}, "max_pool_connections"),
    ({"memory_budget": 2**70}, "memory_budget"),
    ({"memory_budget": 0}, "memory budget"),
    ({"memory_budget": "1GiB"}, "memory_budget"),
    ({"memory_budget": streamx.MemoryBudget(2**70)}, "memory_budget"),
    ({"client": NOT_A_CLIENT, "endpoint_url": "http://127.0.0.1:1"}, "client="),
    ({"direct_parts": "yes"}, "direct_parts"),
]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kwargs", "message"), ENGINE_CASES, ids=[repr(c[0]) for c in ENGINE_CASES]
)
def test_engine_arguments_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(streamx.ConfigError, match=message) as info:
        streamx.Engine(**kwargs)
    for secret in ("s", "t"):  # a credential is never echoed
        if kwargs.get("aws_secret_access_key") == secret:
            assert repr(secret) not in str(info.value)


@pytest.mark.unit
def test_a_bad_aws_endpoint_url_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:9000")
    with pytest.raises(streamx.ConfigError, match=r"AWS_ENDPOINT_URL.*add http://"):
        streamx.Engine()


@pytest.mark.unit
@pytest.mark.anyio
async def test_an_unknown_aws_profile_variable_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", f"nobody-{uuid.uuid4().hex}")
    with pytest.raises(streamx.ConfigError, match="profile"):
        async with streamx.Engine(endpoint_url="http://127.0.0.1:1"):
            pytest.fail("the engine must not open")


@pytest.mark.unit
@pytest.mark.parametrize(
    "bad",
    [
        {"part_timeout": math.nan},
        {"part_timeout": math.inf},
        {"abort_timeout": math.nan},
        {"abort_timeout": -math.inf},
        {"progress_interval": math.nan},
        {"progress_interval": math.inf},
        {"stall_timeout": math.nan},
        {"stall_timeout": math.inf},
        {"high_water_mark": 2**70},
        {"copy_threshold": 0},
        {"copy_threshold": MiB},
    ],
)
def test_transfer_config_refuses_nan_inf_and_absurd_sizes(bad: dict[str, Any]) -> None:
    with pytest.raises(streamx.ConfigError, match=next(iter(bad))):
        streamx.TransferConfig(**bad)


@pytest.mark.anyio
async def test_bad_calls_send_nothing(rclone_server: Any, tmp_path: Any) -> None:
    """Each call fails with a ConfigError and the proxy sees no request at all."""

    migrate: Any = streamx.migrate_prefix

    def stream() -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            yield b"x"

        return gen()

    async with FaultProxy(rclone_server.endpoint_url) as proxy:
        args = {**rclone_server.engine_args(), "endpoint_url": proxy.url}
        async with streamx.Engine(**args) as eng, streamx.Engine(**args) as other:
            calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                ("lone surrogate", lambda: eng.delete_many("b-bad", ["ok", "\ud800"])),
                ("key", lambda: eng.delete_many("b-bad", [""])),
                ("src must be an Engine", lambda: migrate(None, "b", "", other, "b2")),
                ("prefix", lambda: migrate(eng, "b-bad", None, other, "b2")),
                ("dst_bucket", lambda: migrate(eng, "b-bad", "p/", other, "")),
                ("path is empty", lambda: eng.download_file("b-bad", "k", "")),
                ("NUL", lambda: eng.download_file("b-bad", "k", str(tmp_path / "a\x00b"))),
                ("path must be a str", lambda: eng.download_file("b-bad", "k", 5)),
                ("object limit", lambda: eng.upload("b-bad", "k", stream(), size=6 * TiB)),
                ("NUL", lambda: eng.upload("b-bad", "k", "a\x00b")),
                ("bucket", lambda: eng.upload("b\nx", "k", b"x")),
            ]
            for message, call in calls:
                with pytest.raises(streamx.ConfigError, match=message):
                    await call()
        assert proxy.requests == []
