"""The framework-neutral core of streamx.web: checks, settings, error mapping, and the
service's handlers called directly (against the real servers, without HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import list_uploads
from web_harness import overwrite_for

import streamx
from streamx._errors import AccessDeniedError, NotFoundError, S3Error, SourceError
from streamx.testing import capture_logs
from streamx.web import AccessRequest, UploadService, UploadSettings, WebError, allow_all
from streamx.web._core import (
    Call,
    check_content_type,
    check_key,
    check_metadata,
    check_part_number,
    check_parts,
    check_size,
    find_cause,
    read_json,
    web_error_for,
)

# streamx's own logic, not the store's: two of the three servers suffice (tests/conftest.py)
pytestmark = pytest.mark.servers("moto", "rclone")

MiB = 1024 * 1024


@pytest.mark.unit
@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd",
        "u/a/../../b",
        "u/a/./b",
        "/u/a",
        "u/a/",
        "u//a",
        "",
        "u/a\nb",
        "u/a\\..\\b",
        "u/" + "x" * 1100,
        "u/\udc80",
    ],
)
def test_bad_keys_are_400(key: str) -> None:
    with pytest.raises(WebError) as err:
        check_key(key, "u/")
    assert err.value.status == 400


@pytest.mark.unit
def test_key_prefix() -> None:
    assert check_key("users/7/a/b.txt", "users/7/") == "users/7/a/b.txt"
    assert check_key("ünïcode/ok.txt", "") == "ünïcode/ok.txt"
    with pytest.raises(WebError) as err:
        check_key("users/70/a", "users/7/")
    assert err.value.status == 403
    with pytest.raises(WebError) as err:
        check_key(7, "")
    assert err.value.status == 400


@pytest.mark.unit
@pytest.mark.parametrize("value", [0, 10_001, -1, "0", "10001", "1.5", 1.0, True, None, "", "٣"])
def test_bad_part_numbers(value: Any) -> None:
    with pytest.raises(WebError) as err:
        check_part_number(value)
    assert err.value.status == 400


@pytest.mark.unit
def test_part_numbers() -> None:
    assert check_part_number(1) == 1
    assert check_part_number("10000") == 10_000
    # part n needs (n-1) parts of at least 5 MiB before it
    assert check_part_number(3, max_size=10 * MiB) == 3
    with pytest.raises(WebError) as err:
        check_part_number(4, max_size=10 * MiB)
    assert err.value.status == 413


@pytest.mark.unit
def test_parts_list() -> None:
    ok = [{"PartNumber": 1, "ETag": '"a"'}, {"PartNumber": 3, "ETag": "b"}]
    assert check_parts(ok) == ok
    for bad in (
        [],
        None,
        [{"PartNumber": 2, "ETag": "a"}, {"PartNumber": 1, "ETag": "b"}],
        [{"PartNumber": 1, "ETag": "a"}, {"PartNumber": 1, "ETag": "a"}],
        [{"PartNumber": 1}],
        [{"PartNumber": 0, "ETag": "a"}],
        ["x"],
    ):
        with pytest.raises(WebError):
            check_parts(bad)


@pytest.mark.unit
def test_sizes_types_metadata() -> None:
    assert check_size(None, 10) is None
    assert check_size("10", 10) == 10
    with pytest.raises(WebError) as err:
        check_size(11, 10)
    assert err.value.status == 413
    with pytest.raises(WebError):
        check_size(None, 10, required=True)
    with pytest.raises(WebError):
        check_size(-1, 10)
    assert check_content_type(None) == "application/octet-stream"
    with pytest.raises(WebError):
        check_content_type("text/plain\r\nX-Evil: 1")
    assert check_metadata({"a-b_c": "v"}) == {"a-b_c": "v"}
    assert check_metadata({"a": 1, "b": None}) == {"a": "1"}
    for bad in ({"a b": "v"}, {"é": "v"}, {"a": "x" * 2048}, ["a"]):
        with pytest.raises(WebError):
            check_metadata(bad)


@pytest.mark.unit
def test_settings_validate() -> None:
    engine = streamx.Engine(endpoint_url="http://127.0.0.1:1")
    base: dict[str, Any] = {"bucket": "b", "engine": engine, "authorize": allow_all}
    UploadSettings(**base)
    for bad in (
        {"bucket": "a/b"},
        {"engine": "nope"},
        {"authorize": None},
        {"prefix": "users"},  # must end with '/'
        {"prefix": "a//"},
        {"url_lifetime": 0},
        {"url_lifetime": 8 * 24 * 3600},
        {"url_lifetime": 1.5},
        {"max_size": -1},
        {"max_size": 6 * 1024**4},
        {"websocket_idle_timeout": 0},
    ):
        with pytest.raises(streamx.ConfigError):
            UploadSettings(**{**base, **bad})


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.unit
@pytest.mark.anyio
async def test_read_json() -> None:
    assert await read_json(_chunks(b'{"a"', b": 1}"), None) == {"a": 1}
    assert await read_json(_chunks(), None) == {}
    for body in (b"[1]", b"{nope", b"\xff"):
        with pytest.raises(WebError) as err:
            await read_json(_chunks(body), None)
        assert err.value.status == 400
    with pytest.raises(WebError) as err:
        await read_json(_chunks(b" " * (3 * MiB)), None)
    assert err.value.status == 413


@pytest.mark.unit
def test_error_mapping_and_causes() -> None:
    assert web_error_for(NotFoundError("x", code="NoSuchUpload")).status == 404
    assert web_error_for(AccessDeniedError("x", code="AccessDenied")).status == 502
    assert web_error_for(S3Error("x", code="InvalidPart", status=400)).status == 400
    assert web_error_for(streamx.ConfigError("bad")).status == 400
    inner = WebError(413, "too big")
    try:
        try:
            raise inner
        except WebError as exc:
            raise SourceError("reading failed") from exc
    except SourceError as outer:
        assert find_cause(outer, WebError) is inner
        assert find_cause(outer, KeyError) is None


# -- the service, called directly -------------------------------------------------------------


def _service(engine: streamx.Engine, bucket: str, **overrides: Any) -> UploadService:
    seen: list[AccessRequest] = []

    def authorize(access: AccessRequest) -> bool:
        seen.append(access)
        return access.request.get("user") == "ann"

    settings = UploadSettings(
        bucket=bucket,
        engine=engine,
        authorize=authorize,
        prefix=lambda request: f"u/{request['user']}/",
        **overrides,
    )
    service = UploadService(settings)
    service.seen = seen  # type: ignore[attr-defined]
    return service


@pytest.mark.anyio
async def test_presigned_urls_never_reach_the_log(
    engine: streamx.Engine, bucket: str, server: Any
) -> None:
    service = _service(engine, bucket, overwrite=overwrite_for(server))
    request = {"user": "ann"}
    with capture_logs() as logs:
        init = await service.handle("multipart_init", Call(request, {}, {}, {"key": "u/ann/k"}))
        body = {"key": "u/ann/k", "upload_id": init["upload_id"], "part_number": 2}
        signed = await service.handle("multipart_part_url", Call(request, {}, {}, body))
        got = await service.handle("presign_get", Call(request, {"key": "u/ann/k"}, {}))
        await service.handle("multipart_abort", Call(request, {}, body))
    assert "X-Amz-Signature=" in signed["url"] and "X-Amz-Signature=" in got["url"]
    assert "X-Amz-Credential" in signed["url"]
    text = repr(logs)
    assert "X-Amz-Signature" not in text and "Signature=" not in text
    assert signed["url"].split("?")[1] not in text
    assert any(entry.get("part_number") == 2 for entry in logs)  # logged, but without the URL
    assert [a.action for a in service.seen] == [  # type: ignore[attr-defined]
        "multipart.create",
        "multipart.sign",
        "download",
        "multipart.abort",
    ]
    assert await list_uploads(engine, bucket) == []


@pytest.mark.anyio
async def test_hook_refusal_and_missing_upload(
    engine: streamx.Engine, bucket: str, server: Any
) -> None:
    service = _service(engine, bucket, overwrite=overwrite_for(server))
    with pytest.raises(WebError) as err:
        await service.handle("multipart_init", Call({"user": "bob"}, {}, {}, {"key": "u/bob/k"}))
    assert err.value.status == 403 and "may not create" in err.value.message
    query = {"key": "u/ann/k", "upload_id": "no-such-upload"}
    with pytest.raises(WebError) as err:  # not a token this server issued: refused before S3
        await service.handle("multipart_parts", Call({"user": "ann"}, {}, query))
    assert err.value.status == 403 and err.value.code == "upload_mismatch"
    token = await service.issue({"user": "ann"}, "u/ann/k", "no-such-upload")
    with pytest.raises(WebError) as err:  # a genuine token for an upload S3 does not know
        await service.handle(
            "multipart_parts", Call({"user": "ann"}, {}, {**query, "upload_id": token})
        )
    assert err.value.status == 404
