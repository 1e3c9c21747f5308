"""A GET's body left on its connection and read by worker threads a piece at a time.

The thread sender's streamed GET (``engine.download()``, reads of a whole object):
what aiobotocore's ``StreamingBody`` offers (``await read(n)``, ``close()``), with the
body read by a worker thread from urllib3's response (``read1``: what one receive
brought, at most ``n`` bytes) instead of aiohttp's reader on the event loop. Why:
through aiohttp every 64 KiB of a download costs the loop a ``data_received`` and a
``StreamReader`` step; 64 concurrent ``download()`` streams spent most of the loop's time
there (py-spy).

Connections: a stream holds its connection from its answer until it is closed, so the
streams get their own urllib3 pools (:class:`._pool.PartPool`) and at most
``max_pool_connections`` streams are open at once (:class:`Streams`: others wait for one
to close, as aiohttp's connector makes them wait): urllib3 never has more connections
than its pool keeps (it would discard them, with a warning). A read given up on
(cancelled) goes on in its thread; :meth:`StreamBody.close` shuts the connection down
(``shutdown``), which ends such a read at once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import botocore.exceptions as bexc
import urllib3

from . import _handoff as handoff
from ._pool import Answer, PartPool


class Streams:
    """The streams' pools and the limit on open streams (one connection each)."""

    def __init__(self, pool: PartPool, limit: int) -> None:
        self.pool = pool
        self._open = anyio.Semaphore(limit)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._open.acquire()

    def release(self) -> None:
        """From any thread (a stream may be closed by the garbage collector)."""
        loop = self._loop
        if loop is None:  # pragma: no cover - released before any acquire
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._open.release()
            return
        try:
            loop.call_soon_threadsafe(self._open.release)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


class StreamBody:
    """A 2xx answer's body on its connection (see the module docstring)."""

    def __init__(
        self,
        response: urllib3.BaseHTTPResponse,
        streams: Streams,
        where: tuple[str, str, int | None],
        executor: ThreadPoolExecutor,
    ) -> None:
        self._response = response
        self._streams = streams
        self._where = where
        self._executor = executor
        self._closed = False

    async def read(self, amt: int | None = None) -> bytes:
        """Up to ``amt`` bytes (all the rest without it); ``b""`` at the end."""
        if self._closed:
            raise ValueError("read from a closed body")
        data: bytes = await handoff.in_thread(self._executor, self._read, amt)
        return data

    def _read(self, amt: int | None) -> bytes:
        with self._streams.pool.mapped(*self._where):
            if amt is None or amt < 0:
                return self._response.read()
            return self._response.read1(amt)

    def close(self) -> None:
        """Give the connection back (kept alive if the body was read to its end, else shut
        down and dropped) and the stream's place to the next one. Idempotent."""
        if self._closed:
            return
        self._closed = True
        response = self._response
        try:
            # read to its end, urllib3 has given the connection back already (kept alive)
            if response.connection is not None:  # not read to its end (or a read still runs)
                handoff.discard(response)
        finally:
            self._streams.release()


def open_response(
    pool: PartPool, request: tuple[Any, ...], call: handoff.Call, held: list[Any]
) -> tuple[Answer | None, urllib3.BaseHTTPResponse | None]:
    """In the worker thread: :func:`._handoff.open_body`, a 2xx response also put in
    ``held`` so that a caller that gave up can drop it (:func:`drop`)."""
    if not call.begin():
        raise bexc.HTTPClientError(error=handoff.Cancelled())
    try:
        failed, response = handoff.open_body(pool, request)
        if response is not None:
            held.append(response)
        return failed, response
    finally:
        call.end()


def drop(held: list[Any]) -> None:
    """Close the responses a thread opened for a caller that gave up on them."""
    for response in held:
        handoff.discard(response)


__all__ = ["StreamBody", "Streams", "drop", "open_response"]
