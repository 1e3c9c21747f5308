"""Shared by the tus tests: server processes (tests/tus_app.py), the Node client, S3 checks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from npm_lock import npm_lock

from streamx._stores import PROFILES, UNKNOWN
from streamx.testing import free_port
from streamx.web._overwrite import COMPLETE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JS_DIR = os.path.join(ROOT, "tests", "tus_js")
MiB = 1024 * 1024


def s3_client(server: Any) -> Any:
    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client("s3", config=config, **server.engine_args())


def new_bucket(server: Any) -> str:
    name = f"tus-{uuid.uuid4().hex[:12]}"
    s3_client(server).create_bucket(Bucket=name)
    return name


def bucket_keys(server: Any, bucket: str) -> list[str]:
    pages = s3_client(server).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def multipart_uploads(server: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        return list(s3_client(server).list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    except s3_client(server).exceptions.NoSuchUpload:  # rclone, for a bucket that never had one
        return []


def sha256_object(server: Any, bucket: str, key: str) -> str:
    body = s3_client(server).get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(MiB), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def random_file(path: str, size: int) -> str:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n
    return path


class TusServer:
    """``tests/tus_app.py`` in its own process; ``url`` is the tus endpoint."""

    def __init__(
        self,
        server: Any,
        bucket: str,
        framework: str,
        *,
        port: int | None = None,
        options: dict[str, Any] | None = None,
        max_size: int | None = None,
        overwrite: bool | None = None,
    ) -> None:
        """``overwrite``: ``UploadSettings.overwrite``; by default refused where the store
        honours ``If-None-Match`` (moto, SeaweedFS), allowed where it cannot be refused
        (rclone serve s3, whose routes would otherwise answer 500 overwrite_unenforceable)."""
        self.port = port or free_port()
        if overwrite is None:
            profile = PROFILES.get(getattr(server, "store", None) or "", UNKNOWN)
            overwrite = profile.honours(COMPLETE) is not True
        cfg: dict[str, Any] = {
            "framework": framework,
            "port": self.port,
            "bucket": bucket,
            "engine": server.engine_args(),
            "options": {"lock_timeout": 3.0, **(options or {})},
            "overwrite": overwrite,
        }
        if max_size is not None:
            cfg["max_size"] = max_size
        self.cfg = cfg
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}/api/tus/"

    def start(self) -> TusServer:
        env = {**os.environ, "PYTHONPATH": ROOT}
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "tus_app.py"), json.dumps(self.cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert self.proc.poll() is None, "the tus server process exited"
                assert time.monotonic() < deadline, "the tus server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def running(*servers: TusServer) -> Iterator[None]:
    try:
        for s in servers:
            s.start()
        yield
    finally:
        for s in servers:
            s.stop()


def node_ready() -> str:
    """The path of ``node``, with tus-js-client installed from the committed lock file.

    Fails (never skips) with the command to run when Node or npm is missing.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise AssertionError(
            "the tus-js-client tests need Node.js and npm: apt-get install nodejs npm"
        )
    with npm_lock(JS_DIR):  # another xdist worker may be installing them right now
        if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "tus-js-client")):
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise AssertionError(f"npm ci in {JS_DIR} failed:\n{done.stderr[-2000:]}")
    return node


def run_js(options: dict[str, Any], timeout: float = 120) -> list[dict[str, Any]]:
    """Run tests/tus_js/upload.mjs; its JSON events."""
    node = node_ready()
    done = subprocess.run(
        [node, os.path.join(JS_DIR, "upload.mjs"), json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert events, f"tus-js-client printed nothing; stderr:\n{done.stderr[-2000:]}"
    return events


def start_js(options: dict[str, Any]) -> subprocess.Popen[str]:
    node = node_ready()
    return subprocess.Popen(
        [node, os.path.join(JS_DIR, "upload.mjs"), json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
