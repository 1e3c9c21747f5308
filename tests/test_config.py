"""TransferConfig and Engine arguments are checked before any request."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest

import streamx
from streamx._limits import MiB
from streamx.testing import free_port


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"part_size": 1 * MiB}, "below S3's 5 MiB minimum"),
        ({"part_size": 6 * 1024**3}, "above S3's 5 GiB maximum"),
        ({"part_size": "8MiB"}, "must be an int"),
        ({"queue_size": 0}, "at least 1"),
        ({"queue_size": 5000}, "absurd"),
        ({"high_water_mark": -1}, "must not be negative"),
        ({"multipart_threshold": -5}, "must not be negative"),
        ({"multipart_threshold": 6 * 1024**3}, "single-PUT limit"),
        ({"checksum": "sometimes"}, "checksum must be one of"),
        ({"checksum_algorithm": "MD5"}, "checksum_algorithm must be one of"),
        ({"max_attempts": 0}, "at least 1"),
        ({"abort_timeout": -1}, "non-negative"),
        ({"equal_parts": "yes"}, "True or False"),
    ],
)
def test_bad_config_is_a_value_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(streamx.ConfigError, match=message) as info:
        streamx.TransferConfig(**kwargs)
    assert isinstance(info.value, ValueError)


@pytest.mark.unit
def test_config_is_frozen_and_keyword_only() -> None:
    cfg = streamx.TransferConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.part_size = 16 * MiB  # type: ignore[misc]
    with pytest.raises(TypeError):
        streamx.TransferConfig(8 * MiB)  # type: ignore[misc]
    assert cfg.part_size == 8 * MiB and cfg.queue_size == 8


def test_memory_budget_rejects_nonsense() -> None:
    for bad in (0, -1, 1.5, "1GiB", True):
        with pytest.raises(streamx.ConfigError):
            streamx.MemoryBudget(bad)  # type: ignore[arg-type]


def _closed_file() -> io.BytesIO:
    f = io.BytesIO(b"abc")
    f.close()
    return f


@pytest.mark.unit
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("bucket", "key", "source", "extra", "error"),
    [
        ("", "k", b"x", {}, streamx.ConfigError),
        ("b", "", b"x", {}, streamx.ConfigError),
        ("b", None, b"x", {}, streamx.ConfigError),
        ("b/c", "k", b"x", {}, streamx.ConfigError),
        ("b", "k" * 1025, b"x", {}, streamx.ConfigError),
        ("b", "é" * 513, b"x", {}, streamx.ConfigError),  # 1,026 bytes in UTF-8
        ("b", "\udc80", b"x", {}, streamx.ConfigError),
        ("b", "k", 42, {}, TypeError),
        ("b", "k", "definitely/not/a/file", {}, FileNotFoundError),
        ("b", "k", _closed_file(), {}, ValueError),
        ("b", "k", b"x", {"ContentTyp": "text/plain"}, streamx.ConfigError),
        ("b", "k", b"x", {"UploadId": "x"}, streamx.ConfigError),
        ("b", "k", b"x", {"config": "fast"}, streamx.ConfigError),
        ("b", "k", b"x", {"size": -1}, streamx.ConfigError),
        ("b", "k", b"x", {"on_progress": 3}, streamx.ConfigError),
    ],
)
async def test_bad_arguments_fail_before_any_request(
    bucket: Any, key: Any, source: Any, extra: dict[str, Any], error: type[Exception]
) -> None:
    # Nothing listens on this port: a request would raise NetworkError, not the error expected.
    async with streamx.Engine(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        region_name="us-east-1",
    ) as engine:
        with pytest.raises(error):
            await engine.upload(bucket, key, source, **extra)
        if not isinstance(source, int | str | io.BytesIO):
            with pytest.raises(error):
                async with engine.open_writer(bucket, key, **extra):
                    pytest.fail("the writer must not open")


@pytest.mark.unit
def test_engine_outside_async_with() -> None:
    engine = streamx.Engine()
    with pytest.raises(RuntimeError, match="async with"):
        engine.client  # noqa: B018


@pytest.mark.unit
def test_engine_repr_hides_credentials() -> None:
    engine = streamx.Engine(aws_access_key_id="AKIDSECRET", aws_secret_access_key="s3cr3t")
    assert "s3cr3t" not in repr(engine) and "AKIDSECRET" not in repr(engine)
