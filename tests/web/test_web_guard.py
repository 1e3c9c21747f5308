"""streamx.web._guard's pure parts: upload tokens, the CSRF checks, the new settings."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import streamx
from streamx.web import UploadSettings, WebError, allow_all
from streamx.web._guard import (
    BodyLimits,
    UploadTokenError,
    UploadTokens,
    check_json_request,
    guard_body,
    origin_allowed,
    stream_method_allowed,
)

pytestmark = pytest.mark.unit  # pure logic: no server


def test_upload_tokens_bind_bucket_key_and_identity() -> None:
    tokens = UploadTokens("a secret of at least sixteen bytes")
    ids = {"bucket": "b", "key": "users/bob/k", "identity": "users/bob/"}
    token = tokens.issue("abc.DEF-123", **ids)
    assert token.startswith("abc.DEF-123.")
    assert tokens.open(token, **ids) == "abc.DEF-123"  # ids with dots survive
    assert UploadTokens("a secret of at least sixteen bytes").open(token, **ids) == "abc.DEF-123"
    for changed in ({"key": "users/bob/other"}, {"identity": "users/eve/"}, {"bucket": "c"}):
        with pytest.raises(UploadTokenError):
            tokens.open(token, **{**ids, **changed})
    for forged in ("abc.DEF-123", token[:-1] + ("A" if token[-1] != "A" else "B"), ".x", "é" * 30):
        with pytest.raises(UploadTokenError):
            tokens.open(forged, **ids)
    with pytest.raises(UploadTokenError):  # another process's default secret
        UploadTokens().open(UploadTokens("another secret, sixteen+").issue("x", **ids), **ids)


def test_csrf_checks() -> None:
    check_json_request("POST", "application/json; charset=utf-8", 10)
    check_json_request("POST", "application/merge-patch+json", 10)
    check_json_request("DELETE", None, None)
    check_json_request("GET", "text/plain", None)
    for method, kind, length in (
        ("POST", "text/plain", 10),
        ("POST", None, None),
        ("POST", "application/x-www-form-urlencoded", 3),
        ("DELETE", "text/plain", 5),
    ):
        with pytest.raises(WebError) as err:
            check_json_request(method, kind, length)
        assert err.value.status == 415
    assert stream_method_allowed("PUT", None)
    assert stream_method_allowed("POST", "application/octet-stream")
    for kind in (None, "", "text/plain;charset=x", "Multipart/Form-Data; boundary=a"):
        assert not stream_method_allowed("POST", kind), kind
    own = "127.0.0.1:8000"
    assert origin_allowed(None, own, ())
    assert origin_allowed("http://127.0.0.1:8000", own, ())
    assert not origin_allowed("http://127.0.0.1:8001", own, ())
    assert not origin_allowed("https://evil.example", own, ())
    assert not origin_allowed("null", own, ())
    assert origin_allowed("https://App.example", own, ("https://app.example",))
    assert origin_allowed("https://evil.example", own, ("*",))


def test_new_settings_are_validated() -> None:
    engine = streamx.Engine(endpoint_url="http://127.0.0.1:1")
    base: dict[str, Any] = {"bucket": "b", "engine": engine, "authorize": allow_all}
    settings = UploadSettings(**base, allowed_origins=["https://a.example:8443"])  # type: ignore[arg-type]
    assert settings.allowed_origins == ("https://a.example:8443",)
    assert "secret" not in repr(UploadSettings(**base, upload_secret="0123456789abcdef-secret"))
    for bad in (
        {"upload_secret": "short"},
        {"upload_secret": 12345},
        {"identity": "users/"},
        {"body_read_timeout": 0},
        {"body_read_timeout": float("nan")},
        {"body_min_rate": -1},
        {"body_min_rate": 1.5},
        {"body_timeout": -3},
        {"allowed_origins": "https://a.example"},
        {"allowed_origins": ("a.example",)},
        {"allowed_origins": ("https://a.example/path",)},
    ):
        with pytest.raises(streamx.ConfigError):
            UploadSettings(**base, **bad)


@pytest.mark.anyio
async def test_guard_body_passes_a_body_within_the_limits() -> None:
    async def chunks() -> Any:
        for _ in range(3):
            await anyio.sleep(0.01)
            yield b"x" * 1000

    got = [c async for c in guard_body(chunks(), BodyLimits(read_timeout=5, min_rate=1))]
    assert got == [b"x" * 1000] * 3
