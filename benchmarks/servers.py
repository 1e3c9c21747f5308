"""The servers a benchmark run talks to, each its own process on loopback.

- ``sink``: benchmarks/sink.py, reads and discards request bodies (uploads).
- ``source``: benchmarks/source.py, serves synthetic objects with sendfile (downloads).
- ``rclone``: ``rclone serve s3``, a real server that checks signatures and writes to disk.
- ``wan20`` / ``wan60``: a sink and a source, each behind benchmarks/wanproxy.py
  (1 Gbps, 20 or 60 ms round trip).

Every server answers ``endpoint(kind)`` (``"up"`` for uploads, ``"down"`` for
downloads) and ``cpu_seconds()`` (its processes' CPU so far).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WAN_MBPS = 1000.0


def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Process:
    """A helper script that prints ``READY <port>`` once it listens."""

    def __init__(self, python: str, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [python, str(HERE / script), "--port", "0", *args], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise RuntimeError(f"{script} did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Local:
    """Loopback helper servers: ``sink`` for uploads, ``source`` for downloads."""

    def __init__(self, name: str, python: str) -> None:
        self.name = name
        self.procs = [Process(python, "sink.py" if name == "sink" else "source.py")]
        self.url = self.procs[0].url

    def endpoint(self, kind: str) -> str:
        return self.url

    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds() for p in self.procs)

    def make_bucket(self, name: str) -> None:
        pass

    def clear(self, bucket: str) -> None:
        pass

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


class Wan(Local):
    """A sink and a source, each behind a latency/bandwidth proxy (the proxies' CPU not counted)."""

    def __init__(self, name: str, python: str, rtt_ms: float) -> None:
        self.name = name
        self.rtt_ms = rtt_ms
        sink, source = Process(python, "sink.py"), Process(python, "source.py")
        self.procs = [sink, source]
        proxy = ("--rtt-ms", str(rtt_ms), "--mbps", str(WAN_MBPS))
        self.up = Process(python, "wanproxy.py", "--upstream", f"127.0.0.1:{sink.port}", *proxy)
        self.down = Process(python, "wanproxy.py", "--upstream", f"127.0.0.1:{source.port}", *proxy)

    def endpoint(self, kind: str) -> str:
        return self.up.url if kind == "up" else self.down.url

    def stop(self) -> None:
        for p in (self.up, self.down, *self.procs):
            p.stop()


class Rclone:
    name = "rclone"

    def __init__(self, access: str, secret: str) -> None:
        from streamx.testing import RcloneServer

        self.server = RcloneServer()
        self.server.access_key, self.server.secret_key = access, secret
        self.server.start()
        self.data_dir = Path(self.server.data_dir)

    def endpoint(self, kind: str) -> str:
        return str(self.server.endpoint_url)

    def cpu_seconds(self) -> float:
        return float(self.server.cpu_seconds())

    def make_bucket(self, name: str) -> None:
        self.server.make_bucket(name)

    def clear(self, bucket: str) -> None:
        """Delete what the last run uploaded (keeps the disk from filling up)."""
        path = self.data_dir / bucket
        for child in path.iterdir() if path.exists() else []:
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    def stop(self) -> None:
        self.server.stop()


def start(name: str, python: str, access: str, secret: str) -> Any:
    if name in ("sink", "source"):
        return Local(name, python)
    if name.startswith("wan"):
        return Wan(name, python, float(name[3:]))
    if name == "rclone":
        return Rclone(access, secret)
    raise ValueError(f"unknown server {name!r}")
