"""The example app's page (examples/app.py + streamx/web/static) in a real headless Chromium.

The app runs as users run it, ``python examples/app.py``, in a child process: once with its
own local rclone (the credentials it prints are the ones we check the objects with), once
against moto behind a fault proxy, with the bucket CORS rule that ``--set-cors`` puts. The
page is opened from both http://127.0.0.1:PORT and http://localhost:PORT.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from faultproxy import Fault, FaultProxy

from streamx.testing import MotoServer, free_port

from .harness import (
    ROOT,
    LoopThread,
    object_sha256,
    s3_client,
    until,
    uploads_left,
    wait_for,
    write_file,
)

# one worker runs every browser test (pytest-xdist, --dist loadgroup): one Chromium, one bundle
pytestmark = pytest.mark.xdist_group("browser")

MiB = 1024 * 1024
APP = ROOT / "examples" / "app.py"
PARALLEL = 4  # the page's workers (streamx/web/static/multipart.js)
PART = 8 * MiB  # the page's part size


@dataclass
class RunningApp:
    port: int
    bucket: str
    proc: subprocess.Popen[str]
    printed: list[str] = field(default_factory=list)

    def origins(self) -> list[str]:
        return [f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(extra or {}))
    return env


@contextmanager
def example_app(args: list[str], env: dict[str, str] | None = None) -> Iterator[RunningApp]:
    """``python examples/app.py ARGS`` until it serves the page; SIGTERM afterwards."""
    port = free_port()
    bucket = f"page-{port}"
    proc = subprocess.Popen(
        [sys.executable, str(APP), "--port", str(port), "--bucket", bucket, *args],
        cwd=ROOT,
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    app = RunningApp(port, bucket, proc)
    drain: threading.Thread | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the app prints its banner, then uvicorn says it runs
            app.printed.append(line.rstrip())
            if "Uvicorn running" in line:
                break
        else:
            raise AssertionError("the example app exited:\n" + "\n".join(app.printed))
        # keep reading its log, so that a full pipe never blocks the app
        drain = threading.Thread(target=app.printed.extend, args=(proc.stdout,), daemon=True)
        drain.start()
        yield app
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            # killed, so that no running app leaks into the worker's next test (as a
            # ResourceWarning there); the failure is this test's, with the app's log
            proc.kill()
            proc.wait()
            raise AssertionError(
                "the example app did not stop within 20 s of SIGTERM:\n"
                + "\n".join(app.printed[-40:])
            )
        finally:
            if drain is not None:
                drain.join(10)  # the app is gone: its end of the pipe is closed
            if proc.stdout is not None:
                proc.stdout.close()


def printed_credentials(app: RunningApp) -> dict[str, str]:
    """The local S3 server's endpoint and keys, as the app printed them for its user."""
    text = "\n".join(app.printed)
    endpoint = re.search(r"local S3 \(rclone serve s3\) at (http://\S+),", text)
    keys = re.search(r"access key (\S+)\s+secret key (\S+)\s+region (\S+)", text)
    assert endpoint and keys, f"no endpoint and credentials printed:\n{text}"
    return {
        "endpoint_url": endpoint.group(1),
        "aws_access_key_id": keys.group(1),
        "aws_secret_access_key": keys.group(2),
        "region_name": keys.group(3),
    }


def open_page(browser: Any, origin: str) -> str:
    """Open the page, wait for its session; the key prefix it was given."""
    browser.get(origin + "/")
    who = wait_for(
        browser,
        "document.getElementById('who').textContent.includes('signed in as') && "
        "document.getElementById('who').textContent",
    )
    prefix = re.search(r"your files go under (\S+)$", who)
    assert prefix, who
    # record every value the progress text takes
    browser.execute_script(
        """
        window.progress = [];
        const pct = document.getElementById('pct');
        new MutationObserver(() => progress.push(pct.textContent))
            .observe(pct, {childList: true, characterData: true, subtree: true});
        """
    )
    return prefix.group(1)


def upload(browser: Any, path: Path) -> tuple[str, str, str]:
    """Pick ``path`` and press Upload; (final state, error text, log text)."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.ID, "go").click()
    state = wait_for(
        browser,
        "['done', 'failed'].includes(document.body.dataset.state) && document.body.dataset.state",
    )
    error = browser.find_element(By.ID, "error")
    return (
        state,
        error.text if error.is_displayed() else "",
        browser.find_element(By.ID, "log").text,
    )


def check_progress(browser: Any) -> None:
    values = [float(v.split()[0]) for v in browser.execute_script("return window.progress")]
    assert values and values[-1] == 100.0, values
    assert values == sorted(values), f"the bar went backwards: {values}"
    assert any(0 < v < 100 for v in values), f"no progress between 0 and 100 %: {values}"


def test_example_page_on_its_local_rclone(browser: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    digest = write_file(big, 2 * PART + 12345, seed=1)  # 3 parts
    too_big = tmp_path / "too-big.bin"
    with open(too_big, "wb") as f:
        f.truncate(26 * MiB)  # sparse: only its declared size is ever used
    with example_app(["--max-size", "25MiB"]) as app:
        client = s3_client(printed_credentials(app))
        # rclone ignores If-None-Match: the app allows overwrites on it, and says so
        assert any("overwrites allowed" in line for line in app.printed), app.printed
        for origin in app.origins():
            prefix = open_page(browser, origin)
            state, error, log = upload(browser, big)
            assert (state, error) == ("done", ""), log
            check_progress(browser)
            assert object_sha256(client, app.bucket, prefix + "big.bin") == digest
            link = browser.execute_script("return document.querySelector('#log a').href")
            assert "download big.bin" in log and sha256(httpx.get(link).content) == digest

        # past 78 GiB the parts grow so that 10,000 of them hold the file
        sizes = browser.execute_async_script(
            "const done = arguments[0];"
            "import('/static/multipart.js').then((m) => done("
            "  [0, 1, 80 * 2 ** 30, 5 * 2 ** 40].map(m.partSizeFor)));"
        )
        assert sizes == [PART, PART, 9 * MiB, 525 * MiB]

        # an init refused with 413 is shown on the page, nothing is created
        prefix = open_page(browser, app.origins()[0])
        state, error, log = upload(browser, too_big)
        assert state == "failed", log
        assert "413" in error and "over this server's 25 MiB limit" in error, error
        assert uploads_left(client, app.bucket) == []

        # the module docstring's curl lines: sign in by name, stream a body under the prefix
        with httpx.Client(base_url=app.origins()[0], timeout=60) as http:
            anonymous = http.put("/api/uploads/stream/uploads/alice/a.bin", content=b"x")
            assert anonymous.status_code == 401, anonymous.text
            signed = http.post("/api/session", json={"user": "alice"})
            assert signed.json() == {"user": "alice", "prefix": "uploads/alice/"}
            body = os.urandom(3 * MiB)
            put = http.put("/api/uploads/stream/uploads/alice/a.bin", content=body)
            assert put.status_code == 200, put.text
            assert object_sha256(client, app.bucket, "uploads/alice/a.bin") == sha256(body)
            other = http.put("/api/uploads/stream/uploads/bob/a.bin", content=b"x")
            assert other.status_code == 403, other.text


def test_example_page_cors_rule_and_first_failure(
    browser: Any, loop: LoopThread, moto_server: MotoServer, tmp_path: Path
) -> None:
    proxy = FaultProxy(moto_server.endpoint_url)
    loop.run(proxy.__aenter__())
    try:
        env = {**moto_server.env(), "AWS_ENDPOINT_URL": proxy.url}
        client = s3_client(moto_server.engine_args())
        with example_app([], env) as app:
            # the README's command: the bucket CORS rule for both origins of the page
            done = subprocess.run(
                [sys.executable, str(APP), "--set-cors", "--bucket", app.bucket,
                 "--port", str(app.port)],
                env=_env(env), cwd=ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            rules = client.get_bucket_cors(Bucket=app.bucket)["CORSRules"]
            assert sorted(rules[0]["AllowedOrigins"]) == sorted(app.origins())

            small = tmp_path / "small.bin"
            digest = write_file(small, PART + 1, seed=2)
            for origin in app.origins():
                prefix = open_page(browser, origin)
                state, error, log = upload(browser, small)
                assert (state, error) == ("done", ""), log
                assert object_sha256(client, app.bucket, prefix + "small.bin") == digest

            # against a store that honours If-None-Match the app keeps the default
            # overwrite=False: another small.bin under the same user is refused at init
            assert any("no overwrites (409)" in line for line in app.printed), app.printed
            (tmp_path / "again").mkdir()
            write_file(tmp_path / "again" / "small.bin", 1234, seed=5)
            state, error, log = upload(browser, tmp_path / "again" / "small.bin")
            assert state == "failed", log
            assert "409" in error and "already exists" in error, error
            assert object_sha256(client, app.bucket, prefix + "small.bin") == digest
            assert uploads_left(client, app.bucket) == []

            # a rule that does not expose ETag: the page has the server list the parts
            rule = {**rules[0], "ExposeHeaders": []}
            client.put_bucket_cors(Bucket=app.bucket, CORSConfiguration={"CORSRules": [rule]})
            hidden = tmp_path / "hidden-etag.bin"
            digest = write_file(hidden, PART + 2, seed=4)
            prefix = open_page(browser, app.origins()[0])
            state, error, log = upload(browser, hidden)
            assert (state, error) == ("done", ""), log
            assert "does not expose ETag: the server lists the parts" in log
            assert object_sha256(client, app.bucket, prefix + "hidden-etag.bin") == digest

            # part 1 fails; every other part PUT hangs until the page stops it: the page
            # must stop all its workers (or it would wait forever), then abort the upload
            proxy.requests.clear()
            proxy.add(
                Fault("status", op="UploadPart", where=lambda r: r.part_number == 1, status=500),
                Fault("stall", op="UploadPart", phase="request", times=None),
            )
            five = tmp_path / "five-parts.bin"
            write_file(five, 4 * PART + 1, seed=3)
            open_page(browser, app.origins()[1])
            state, error, log = upload(browser, five)
            assert state == "failed", log
            assert "part 1" in error, error
            assert "aborted: no part is left" in log, log
            sent = {r.part_number for r in proxy.sent("UploadPart")}
            assert 1 in sent and max(sent) <= PARALLEL, sent  # no new part after the failure
            until(lambda: uploads_left(client, app.bucket) == [], what="no upload left")
    finally:
        loop.run(proxy.__aexit__(None, None, None))
