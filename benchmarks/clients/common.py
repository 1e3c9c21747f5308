"""What every client script shares (stdlib only: the peers run in their own venv).

A client script runs ONE measured transfer in its own process and prints one
JSON line on stdout: ``{"ok": true, "bytes": ..., "seconds": ..., "cpu_seconds": ...}``
(``seconds``/``cpu_seconds`` cover the transfer only, not the interpreter's
start-up and imports; the harness adds the whole process's figures from
``wait4``), ``{"unsupported": "why"}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

MiB = 1024 * 1024
CHUNK = MiB  # the generator / writer chunk size of every stream scenario

SCENARIOS = (
    "upload_file",
    "upload_stream",
    "upload_writer",
    "download_file",
    "download_stream",
    "many_small",
    "concurrent",
    "budget",
)


class Unsupported(Exception):
    """The client has no way to do this scenario."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True, choices=SCENARIOS)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--bucket", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--size", type=int, required=True, help="bytes per object")
    p.add_argument("--count", type=int, default=1, help="objects (many_small, concurrent)")
    p.add_argument("--part-size", type=int, default=8 * MiB)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--file", help="the source file of upload_file")
    p.add_argument("--out", help="the target file of download_file")
    p.add_argument("--budget", type=int, default=0, help="process-wide memory budget (bytes)")
    return p.parse_args()


_BLOCK = os.urandom(CHUNK)


def chunks(size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """A non-seekable generator of ``size`` bytes in ``chunk``-sized bytes objects.

    It yields the same immutable block again and again, so producing the data
    costs nothing and every client pays only for what it does with it.
    """
    sent = 0
    while sent < size:
        n = min(chunk, size - sent)
        yield _BLOCK if n == chunk else _BLOCK[:n]
        sent += n


class StreamReader:
    """A non-seekable file object over a generator (what ``upload_fileobj`` needs)."""

    def __init__(self, it: Iterator[bytes]) -> None:
        self._it = it
        self._buf = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            out = self._buf + b"".join(self._it)
            self._buf = b""
            return out
        while len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


class AsyncStreamReader:
    """The same, with ``async read`` (for aioboto3's ``upload_fileobj``)."""

    def __init__(self, it: Iterator[bytes]) -> None:
        self._sync = StreamReader(it)

    async def read(self, n: int = -1) -> bytes:
        return self._sync.read(n)


class NullSink:
    """A non-seekable byte sink that counts what it is given."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, data: Any) -> int:
        n = len(data)
        self.count += n
        return n

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def quiet_logs() -> None:
    """Benchmarks measure transfers, not log formatting."""
    import logging

    logging.disable(logging.WARNING)
    try:
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    except ImportError:
        pass


def report(result: dict[str, Any]) -> None:
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


class Clock:
    """The transfer's clock: ``measure`` starts it; a client restarts it after its set-up.

    So that creating a client (which loads botocore's service model, ~0.3 CPU-s)
    is not counted as transfer time for one client and not for another.
    """

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self.cpu0, self.t0 = cpu_now(), time.perf_counter()


CLOCK = Clock()


def measure(run: Callable[[], int], note: str = "") -> None:
    """Run ``run`` (returns the bytes transferred), time it, print the result line."""
    try:
        CLOCK.start()
        nbytes = run()
        seconds = time.perf_counter() - CLOCK.t0
        cpu = cpu_now() - CLOCK.cpu0
        report({"ok": True, "bytes": nbytes, "seconds": seconds, "cpu_seconds": cpu, "note": note})
    except Unsupported as exc:
        report({"unsupported": str(exc)})
    except BaseException as exc:  # the harness records every failure as such
        tb = traceback.format_exc(limit=6)
        report(
            {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500], "traceback": tb[-2000:]}
        )
        sys.stdout.flush()
        os._exit(3)
