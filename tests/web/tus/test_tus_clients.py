"""The tus server with real tus clients: tus-js-client under Node (tests/tus_js, npm) and tuspy
(PyPI), against both adapters, on moto and rclone; server processes killed, restarted and
doubled. Every test ends with the object's SHA-256 and a bucket holding nothing else."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tus_helpers import (
    ROOT,
    MiB,
    TusServer,
    bucket_keys,
    multipart_uploads,
    new_bucket,
    random_file,
    run_js,
    running,
    sha256_file,
    sha256_object,
    start_js,
)
from tusclient import client as tuspy

# tus is streamx's protocol, not the store's: moto with FastAPI, rclone with aiohttp (conftest.py)
pytestmark = pytest.mark.diagonal("s3server", "framework")

H = {"Tus-Resumable": "1.0.0"}
RETRIES = [100, 300, 500, 1000, 1000, 2000, 2000, 3000, 3000, 5000, 5000]


@pytest.fixture(params=["moto", "rclone"])
def s3server(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(params=["fastapi", "aiohttp"])
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bucket(s3server: Any) -> Iterator[str]:
    name = new_bucket(s3server)
    yield name
    assert multipart_uploads(s3server, name) == [], "a multipart upload was left behind"


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def only_the_object(s3server: Any, bucket: str, key: str, path: str) -> None:
    assert bucket_keys(s3server, bucket) == [key], "helper objects were left behind"
    assert sha256_object(s3server, bucket, key) == sha256_file(path)


def head_offset(url: str, user: str) -> int:
    r = httpx.head(url, headers={**H, "X-User": user}, timeout=30)
    assert r.status_code == 200, r.status_code
    return int(r.headers["upload-offset"])


def test_js_chunks_and_one_patch(s3server: Any, bucket: str, framework: str, tmp_path: Any) -> None:
    """tus-js-client: 1 MiB chunks, then a whole file in one PATCH (its default)."""
    path = random_file(str(tmp_path / "a.bin"), 13 * MiB + 11)
    with running(tus := TusServer(s3server, bucket, framework)):
        base = {"endpoint": tus.url, "path": path, "headers": {"X-User": "ann"}}
        chunked = run_js({**base, "chunkSize": MiB, "metadata": {"filename": "a.bin"}})
        assert chunked[-1]["event"] == "success", chunked[-1]
        assert sum(e["event"] == "chunk" for e in chunked) == 14
        whole = run_js(base)
        assert whole[-1]["event"] == "success", whole[-1]
        assert sum(e["event"] == "chunk" for e in whole) == 1
    keys = [f"users/ann/{upload_id(e[-1]['url'])}" for e in (chunked, whole)]
    assert bucket_keys(s3server, bucket) == sorted(keys)
    for key in keys:
        assert sha256_object(s3server, bucket, key) == sha256_file(path)


def test_js_creation_with_upload_and_deferred_length(
    s3server: Any, bucket: str, framework: str, tmp_path: Any
) -> None:
    path = random_file(str(tmp_path / "b.bin"), 7 * MiB + 5)
    with running(tus := TusServer(s3server, bucket, framework)):
        base = {
            "endpoint": tus.url,
            "path": path,
            "headers": {"X-User": "bo"},
            "chunkSize": 2 * MiB,
        }
        with_data = run_js({**base, "uploadDataDuringCreation": True})
        deferred = run_js({**base, "uploadLengthDeferred": True, "asStream": True})
    keys = []
    for events in (with_data, deferred):
        assert events[-1]["event"] == "success", events[-1]
        keys.append(f"users/bo/{upload_id(events[-1]['url'])}")
    assert bucket_keys(s3server, bucket) == sorted(keys)
    for key in keys:
        assert sha256_object(s3server, bucket, key) == sha256_file(path)


def test_js_interrupted_mid_patch_resumes_from_head(
    s3server: Any, bucket: str, framework: str, tmp_path: Any
) -> None:
    """The client drops its PATCH after 9 MiB of 64; the server keeps what arrived; a new client
    process resumes from HEAD's offset."""
    size = 64 * MiB + 3  # far more than the socket buffers hold: the abort lands mid-body
    path = random_file(str(tmp_path / "c.bin"), size)
    with running(tus := TusServer(s3server, bucket, framework)):
        base = {"endpoint": tus.url, "path": path, "headers": {"X-User": "cy"}}
        first = run_js({**base, "abortAfter": 9 * MiB})
        assert first[-1]["event"] == "aborted", first[-1]
        url = first[-1]["url"]
        deadline = time.monotonic() + 30
        while (offset := head_offset(url, "cy")) == 0:  # the server may still be saving
            assert time.monotonic() < deadline, "nothing of the dropped PATCH was kept"
            time.sleep(0.1)
        assert 0 < offset < size
        second = run_js({**base, "uploadUrl": url, "retryDelays": RETRIES})
        assert second[-1]["event"] == "success", second[-1]
    only_the_object(s3server, bucket, f"users/cy/{upload_id(url)}", path)


def test_js_server_killed_and_restarted(
    s3server: Any, bucket: str, framework: str, tmp_path: Any
) -> None:
    """SIGKILL the server mid-upload, start a new process on the same port: the client
    retries, finds the offset with HEAD and finishes; the dead process's lock expires."""
    size = 40 * MiB + 9
    path = random_file(str(tmp_path / "d.bin"), size)
    tus = TusServer(s3server, bucket, framework).start()
    client = None
    try:
        client = start_js(
            {
                "endpoint": tus.url,
                "path": path,
                "headers": {"X-User": "di"},
                "chunkSize": MiB,
                "retryDelays": RETRIES,
            }
        )
        url = None
        assert client.stdout is not None
        for line in client.stdout:  # the upload URL comes with the first chunk
            if '"chunk"' in line:
                url = line.split('"url":"')[1].split('"')[0]
                break
        assert url is not None, "tus-js-client reported no chunk"
        while head_offset(url, "di") < 6 * MiB:
            time.sleep(0.02)
        tus.kill()
        killed_at = head_offset_or_none(url)
        assert killed_at is None  # the server is really gone
        tus = TusServer(s3server, bucket, framework, port=tus.port).start()
        out, err = client.communicate(timeout=150)
        assert '"success"' in out, out[-1000:] + err[-2000:]
    finally:
        tus.stop()
        if client is not None and client.poll() is None:
            client.kill()
    only_the_object(s3server, bucket, f"users/di/{upload_id(url)}", path)


def head_offset_or_none(url: str) -> int | None:
    try:
        r = httpx.head(url, headers={**H, "X-User": "di"}, timeout=5)
    except httpx.TransportError:
        return None
    return int(r.headers["upload-offset"])


def test_js_terminate_and_refusals(s3server: Any, bucket: str, tmp_path: Any) -> None:
    path = random_file(str(tmp_path / "e.bin"), 12 * MiB)
    with running(tus := TusServer(s3server, bucket, "fastapi")):
        base = {"endpoint": tus.url, "path": path}
        gone = run_js(
            {
                **base,
                "headers": {"X-User": "ed"},
                "chunkSize": MiB,
                "abortAfter": 7 * MiB,
                "terminate": 1,
            }
        )
        assert gone[-1]["event"] == "aborted"
        assert httpx.head(gone[-1]["url"], headers={**H, "X-User": "ed"}).status_code == 404
        refused = run_js(base)  # no X-User: the prefix hook answers 401
        assert refused[-1]["event"] == "error" and refused[-1]["status"] == 401
        outside = run_js(
            {**base, "headers": {"X-User": "ed"}, "metadata": {"objectKey": "users/fay/x"}}
        )
        assert outside[-1]["event"] == "error" and outside[-1]["status"] == 403
        private = run_js(
            {**base, "headers": {"X-User": "ed"}, "metadata": {"objectKey": "users/ed/private/x"}}
        )
        assert private[-1]["event"] == "error" and private[-1]["status"] == 403
    assert bucket_keys(s3server, bucket) == []


def test_tuspy_checksums_and_two_servers(
    s3server: Any, bucket: str, framework: str, tmp_path: Any
) -> None:
    """tuspy (with Upload-Checksum: sha1 on every chunk) starts on one server process and
    finishes on another sharing the bucket; another user cannot touch the upload."""
    path = random_file(str(tmp_path / "f.bin"), 17 * MiB + 1)
    a = TusServer(s3server, bucket, framework)
    b = TusServer(s3server, bucket, "aiohttp" if framework == "fastapi" else "fastapi")
    # tuspy never closes a file it opened from a path: each uploader gets a stream we close
    with running(a, b), open(path, "rb") as f1, open(path, "rb") as f2, open(path, "rb") as f3:
        first = tuspy.TusClient(a.url, headers={"X-User": "gil"}).uploader(
            file_stream=f1, chunk_size=3 * MiB, upload_checksum=True, metadata={"filename": "f.bin"}
        )
        for _ in range(3):
            first.upload_chunk()
        url = first.url
        assert url is not None and head_offset(url, "gil") == 9 * MiB
        other_url = b.url + upload_id(url)
        stranger = tuspy.TusClient(b.url, headers={"X-User": "mal"})
        with pytest.raises(Exception, match="404"):
            stranger.uploader(file_stream=f2, url=other_url, chunk_size=MiB).upload()
        second = tuspy.TusClient(b.url, headers={"X-User": "gil"}).uploader(
            file_stream=f3, url=other_url, chunk_size=4 * MiB, upload_checksum=True
        )
        assert second.offset == 9 * MiB
        second.upload()
    only_the_object(s3server, bucket, f"users/gil/{upload_id(url)}", path)


def test_two_servers_refuse_concurrent_patches(moto_server: Any, tmp_path: Any) -> None:
    """A PATCH on one server process while another process writes the same upload: 423
    (the lock object is created with If-None-Match, which moto honours; rclone ignores it)."""
    bucket = new_bucket(moto_server)
    a, b = TusServer(moto_server, bucket, "fastapi"), TusServer(moto_server, bucket, "aiohttp")
    data = os.urandom(8 * MiB)
    with running(a, b):
        headers = {**H, "X-User": "hal"}
        r = httpx.post(a.url, headers={**headers, "Upload-Length": str(len(data))})
        url_a = str(httpx.URL(a.url).join(r.headers["location"]))
        url_b = b.url + upload_id(url_a)
        patch = {**headers, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
        slow = SlowPatch(url_a, patch, data)
        try:
            while True:  # wait until A holds the lock (its lock object exists)
                if any(k.endswith(".lock") for k in bucket_keys(moto_server, bucket)):
                    break
                time.sleep(0.02)
            second = httpx.patch(url_b, content=data, headers=patch, timeout=30)
            assert second.status_code == 423, second.text
        finally:
            slow.finish()
        assert slow.status == 204
    assert bucket_keys(moto_server, bucket) == [f"users/hal/{upload_id(url_a)}"]
    assert multipart_uploads(moto_server, bucket) == []


def test_no_lock_object_where_the_store_ignores_conditions(rclone_server: Any) -> None:
    """``Engine(store="rclone")``: a lock object would lock nothing there, so a PATCH writes
    none (GET info, UploadPart, PUT info); a second PATCH to the same process still gets 423."""
    bucket = new_bucket(rclone_server)
    tus = TusServer(rclone_server, bucket, "aiohttp", options={"part_size": 5 * MiB})
    tus.cfg["engine"]["store"] = "rclone"
    data = os.urandom(12 * MiB)
    with running(tus):
        headers = {**H, "X-User": "ida"}
        r = httpx.post(tus.url, headers={**headers, "Upload-Length": str(len(data))})
        url = str(httpx.URL(tus.url).join(r.headers["location"]))
        patch = {**headers, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
        slow = SlowPatch(url, patch, data, first=6 * MiB)
        try:  # part 1 committed: the slow PATCH is mid-body, holding the upload
            while head_offset(url, "ida") == 0 and slow.thread.is_alive():
                time.sleep(0.05)
            second = httpx.patch(url, content=data, headers=patch, timeout=30)
            keys = bucket_keys(rclone_server, bucket)
        finally:
            slow.finish()
        assert second.status_code == 423, second.text
        assert slow.status == 204
        assert keys and not [k for k in keys if k.endswith(".lock")], keys
    assert bucket_keys(rclone_server, bucket) == [f"users/ida/{upload_id(url)}"]
    assert multipart_uploads(rclone_server, bucket) == []


class SlowPatch:
    """A PATCH whose body waits after its ``first`` bytes until ``finish()`` (a thread)."""

    def __init__(self, url: str, headers: dict[str, str], data: bytes, first: int = MiB) -> None:
        import threading

        self.go = threading.Event()
        self.status: int | None = None

        def body() -> Iterator[bytes]:
            yield data[:first]
            self.go.wait(60)
            yield data[first:]

        def run() -> None:
            self.status = httpx.patch(url, content=body(), headers=headers, timeout=60).status_code

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def finish(self) -> None:
        self.go.set()
        self.thread.join(60)


def test_example_app_serves_tus(rclone_server: Any, tmp_path: Any) -> None:
    """examples/app.py: /api/tus/ under the session authorization of its other routes, its page
    offers the bundled tus-js-client; the same library under Node uploads through it."""
    import sys
    import threading

    import uvicorn

    from streamx.testing import free_port

    sys.path.insert(0, ROOT)  # examples/ is not a package of the distribution
    from examples.app import build_app

    bucket = new_bucket(rclone_server)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = build_app(  # overwrite=True: rclone cannot refuse overwrites (as the app's main says)
        bucket=bucket,
        engine_args=rclone_server.engine_args(),
        max_size=1 << 30,
        origins=[base],
        overwrite=True,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
            time.sleep(0.05)
        page = httpx.get(base + "/").text
        assert "/static/tus.min.js" in page and 'value="tus"' in page
        assert "uploadTus" in httpx.get(base + "/static/app.js").text
        bundled = httpx.get(base + "/static/tus.min.js")
        assert bundled.status_code == 200 and "tus-js-client" in bundled.text[:300]
        session = httpx.get(base + "/api/session")
        prefix = session.json()["prefix"]
        cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
        path = random_file(str(tmp_path / "g.bin"), 9 * MiB + 1)
        opts = {"endpoint": base + "/api/tus/", "path": path, "chunkSize": 8 * MiB}
        refused = run_js(opts)  # no session cookie: the example's prefix hook answers 401
        assert refused[-1]["event"] == "error" and refused[-1]["status"] == 401
        outside = run_js({**opts, "headers": {"Cookie": cookie}, "metadata": {"key": "x/g.bin"}})
        assert outside[-1]["event"] == "error" and outside[-1]["status"] == 403
        events = run_js({**opts, "headers": {"Cookie": cookie}, "metadata": {"key": prefix + "g"}})
        assert events[-1]["event"] == "success", events[-1]
    finally:
        server.should_exit = True
        thread.join(15)
    only_the_object(rclone_server, bucket, prefix + "g", path)
