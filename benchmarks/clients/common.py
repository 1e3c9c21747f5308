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
    "download_stream",  # to a non-seekable discard sink (streamx: download_to)
    "download_iter",  # one streamed GET iterated by the caller (streamx: download())
    "download_concurrent",  # --count concurrent streamed downloads of --size
    "many_small",
    "concurrent",
    "concurrent_async",  # --count uploads, each from an async generator of --chunk chunks
    "slow",  # --count uploads from slow async producers (--chunk every --delay seconds)
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
    p.add_argument("--chunk", type=int, default=CHUNK, help="chunk size of async producers")
    p.add_argument(
        "--delay", type=float, default=0.0, help="seconds between a slow producer's chunks"
    )
    p.add_argument(
        "--fresh-chunks",
        action="store_true",
        help="slow producers yield a new bytes object per chunk (a request body's reads), "
        "not one shared block",
    )
    p.add_argument(
        "--defaults",
        action="store_true",
        help="the library's own defaults (part size, concurrency, memory), not --part-size etc.",
    )
    p.add_argument(
        "--mode",
        choices=("once", "first", "steady"),
        default="once",
        help="once: one transfer, client set-up untimed; first: one transfer timed from "
        "before the client is created; steady: --repeat transfers timed after 2 warm-ups "
        "in one long-lived client",
    )
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    CLOCK.mode = args.mode
    return args


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

    mode = "once"

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self.cpu0, self.t0 = cpu_now(), time.perf_counter()

    def after_setup(self) -> None:
        """The client exists: restart the clock, unless set-up is part of what is timed."""
        if self.mode != "first":
            self.start()


def repeat_steady(transfer: Callable[[], int], repeat: int) -> int:
    """Two warm-up transfers, then ``repeat`` timed ones (the steady state of a long-lived client)."""
    for _ in range(2):
        transfer()
    CLOCK.start()
    return sum(transfer() for _ in range(repeat))


async def repeat_steady_async(transfer: Callable[[], Any], repeat: int) -> int:
    """:func:`repeat_steady` for an async ``transfer``."""
    for _ in range(2):
        await transfer()
    CLOCK.start()
    total = 0
    for _ in range(repeat):
        total += await transfer()
    return total


async def slow_chunks(size: int, chunk: int, delay: float, fresh: bool = False) -> Any:
    """An async generator of ``size`` bytes in ``chunk``-byte pieces, ``delay`` s apart.

    With ``delay`` 0 it still yields to the event loop between chunks, as a
    request body does. ``fresh``: every chunk a new bytes object (a copy), as a
    request body's reads are; else one shared block, which costs a client that
    keeps every chunk until its object is sent no memory at all.
    """
    import asyncio

    sent = 0
    block = _BLOCK[:chunk] if chunk <= len(_BLOCK) else bytes(chunk)
    while sent < size:
        n = min(chunk, size - sent)
        piece = block if n == chunk else block[:n]
        yield bytes(bytearray(piece)) if fresh else piece
        sent += n
        await asyncio.sleep(delay)


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
