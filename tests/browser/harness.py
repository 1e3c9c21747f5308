"""What the browser tests share: a real headless Chromium, servers on a background loop, S3 checks.

The browser is Debian's ``chromium`` driven through Debian's ``chromium-driver`` by
Selenium: the two packages come in matching versions from one repository, so nothing is
downloaded at run time (Selenium Manager is never asked: both paths are given). Missing
pieces fail the test with the command that installs them (``make browser-deps``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from npm_lock import npm_lock

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = Path(__file__).resolve().parent / "js"
UPPY_JS = JS_DIR / "dist" / "uppy.js"
UPPY_CSS = JS_DIR / "dist" / "uppy.css"
CHROMIUM = os.environ.get("STREAMX_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STREAMX_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = (
    "run `make browser-deps` (as root it runs `apt-get install -y chromium chromium-driver`; "
    "then `npm ci && npm run build` in tests/browser/js)"
)


def need(condition: bool, what: str) -> None:
    """Fail loudly, with the command to run, when a piece of the browser stack is missing."""
    if not condition:
        pytest.fail(f"{what} is missing: {INSTALL_HINT}", pytrace=False)


def build_uppy() -> None:
    """Install the pinned Uppy 6 packages (npm ci) and bundle them, unless done already."""
    with npm_lock(JS_DIR):  # another xdist worker may be building it right now
        _build_uppy()


def _build_uppy() -> None:
    sources = [JS_DIR / "package-lock.json", JS_DIR / "uppy-entry.js", JS_DIR / "uppy.css"]
    newest = max(p.stat().st_mtime for p in sources)
    if UPPY_JS.exists() and UPPY_CSS.exists() and UPPY_JS.stat().st_mtime >= newest:
        return
    npm = shutil.which("npm")
    need(npm is not None, "npm (Node.js)")
    assert npm is not None
    installed = JS_DIR / "node_modules" / ".package-lock.json"
    lock = JS_DIR / "package-lock.json"
    for cmd in ([npm, "ci", "--no-audit", "--no-fund"], [npm, "run", "build"]):
        if (
            cmd[1] == "ci"
            and installed.exists()
            and installed.stat().st_mtime >= lock.stat().st_mtime
        ):
            continue
        done = subprocess.run(cmd, cwd=JS_DIR, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(
                f"`{' '.join(cmd[1:])}` in {JS_DIR} failed:\n{done.stdout}{done.stderr}\n"
                + INSTALL_HINT,
                pytrace=False,
            )


def start_chromium() -> Any:
    """A headless Chromium under Selenium, or a loud failure saying what to install."""
    need(Path(CHROMIUM).exists(), f"Chromium ({CHROMIUM})")
    need(Path(CHROMEDRIVER).exists(), f"ChromeDriver ({CHROMEDRIVER})")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[test]'", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--window-size=1200,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def wait_for(driver: Any, script: str, timeout: float = 90) -> Any:
    """Poll ``script`` (a JS expression) in the page until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(str(e.get("message")) for e in driver.get_log("browser"))
            raise AssertionError(f"the page never got {script!r}; its console:\n{logs}")
        time.sleep(0.1)


def write_file(path: Path, size: int, seed: int) -> str:
    """Write ``size`` deterministic, incompressible bytes; their SHA-256."""
    digest = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * (1 << 15)  # 1 MiB
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = block[: min(left, len(block))]
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


class LoopThread:
    """An asyncio loop on a daemon thread: the servers under test live on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def serve_fastapi(loop: LoopThread, app: Any, port: int) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1:port (lifespan included)."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)

    async def start() -> asyncio.Future[None]:
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        return task

    task = loop.run(start())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:

        async def stop() -> None:
            server.should_exit = True
            await task

        loop.run(stop())


@contextmanager
def serve_aiohttp(loop: LoopThread, app: Any, port: int) -> Iterator[str]:
    """Serve an aiohttp ``web.Application`` on 127.0.0.1:port."""
    from aiohttp import web

    runner = web.AppRunner(app)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    loop.run(start())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.run(runner.cleanup())


def s3_client(engine_args: dict[str, Any]) -> Any:
    """A plain botocore client for checking what the browser stored."""
    import botocore.config
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=engine_args["endpoint_url"],
        aws_access_key_id=engine_args["aws_access_key_id"],
        aws_secret_access_key=engine_args["aws_secret_access_key"],
        region_name=engine_args.get("region_name", "us-east-1"),
        config=botocore.config.Config(response_checksum_validation="when_required"),
    )


def object_sha256(client: Any, bucket: str, key: str) -> str:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def uploads_left(client: Any, bucket: str) -> list[tuple[str, str]]:
    """The bucket's unfinished multipart uploads (rclone answers NoSuchUpload for none)."""
    try:
        listing = client.list_multipart_uploads(Bucket=bucket)
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return []
        raise
    return [(u["Key"], u["UploadId"]) for u in listing.get("Uploads", [])]


def keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def until(check: Callable[[], T], timeout: float = 30, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy (servers finish on their own time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or check}")
        time.sleep(0.05)
