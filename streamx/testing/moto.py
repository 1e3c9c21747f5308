"""moto's S3 server on loopback, in a thread or a subprocess (``moto[server]``)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from ._base import Server, free_port, terminate, wait_for_port


class MotoServer(Server):
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
        wait_for_port(self.port, 30)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


class MotoSubprocessServer(Server):
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
        wait_for_port(self.port, 60, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None
