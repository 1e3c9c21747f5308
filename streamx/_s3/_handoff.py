"""The worker threads' side of the thread sender (``_threaded.py``): the hand-off to a thread
and back, a request's life in its thread (abort at the next slice, wait for its end), the
body's slices, and the stall detector's signal from the thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import anyio
import anyio.to_thread
import botocore.exceptions as bexc

from .._errors import NetworkError, UsageError
from .._gathered import Gathered, hexdigest, pieces
from ._pool import Answer, PartPool
from ._sender import RangeRead

sniffio: Any
try:  # anyio asks sniffio which library runs, when sniffio is installed (else: asyncio)
    import sniffio
except ImportError:  # pragma: no cover
    sniffio = None

SOCKET_MARGIN = 1.0  # seconds the thread's socket timeouts exceed stall timeout / time limit


class Cancelled(Exception):
    """Raised in the sending thread at the next slice once the request was given up on."""


class Call:
    """One request in a worker thread; ``abort`` (from the loop) stops it at the next slice.

    ``running`` is held by the thread from :meth:`begin` to :meth:`end` (a lock, not an
    ``Event``: one C object per request instead of three Python ones), so the loop can
    wait for a thread it gave up on with :meth:`wait`.
    """

    __slots__ = ("_lock", "aborted", "running", "started")

    def __init__(self) -> None:
        self.aborted = False
        self.started = False
        self.running = threading.Lock()
        self._lock = threading.Lock()

    def begin(self) -> bool:
        """In the thread, first: false if the call was aborted before it started."""
        with self._lock:
            if self.aborted:
                return False
            self.running.acquire()
            self.started = True
            return True

    def end(self) -> None:
        self.running.release()

    def wait(self, timeout: float) -> None:
        """Until the thread has returned (or ``timeout`` seconds)."""
        if self.running.acquire(timeout=timeout):
            self.running.release()

    def abort(self) -> None:
        with self._lock:
            self.aborted = True


class Watch:
    """The stall detector's progress signal from a sending thread, without waking the loop.

    The thread only counts the slices it hands to the socket (:meth:`moved`); a timer on
    the loop looks every ``min(stall_timeout / 4, 0.5 s)`` and passes a change on to the
    detector. A request shorter than that costs the loop one timer and no wake-up (a
    ``call_soon_threadsafe`` per signal cost two per request). The detector never fires
    early (its clock restarts when the loop sees the change, after the bytes moved) and
    at most one interval late, still before the thread's socket timeout (``SOCKET_MARGIN``).
    """

    __slots__ = ("_context", "_every", "_handle", "_loop", "_progress", "_seen", "count")

    def __init__(self, progress: Callable[[], None], stall: float) -> None:
        self.count = 0  # written by the sending thread only
        self._seen = 0
        self._loop = asyncio.get_running_loop()
        # the callback runs outside any task: tell anyio (sniffio) which library runs it,
        # as anyio.run does and asyncio.run does not
        self._context = contextvars.copy_context()
        if sniffio is not None:
            self._context.run(sniffio.current_async_library_cvar.set, "asyncio")
        self._progress = progress
        self._every = min(stall / 4, SOCKET_MARGIN / 2)
        self._handle = self._loop.call_later(self._every, self._look, context=self._context)

    def moved(self) -> None:
        """In the thread: bytes went to the socket."""
        self.count += 1

    def _look(self) -> None:
        if self.count != self._seen:
            self._seen = self.count
            self._progress()
        self._handle = self._loop.call_later(self._every, self._look, context=self._context)

    def stop(self) -> None:
        self._handle.cancel()


def slices(
    body: memoryview | Gathered, call: Call, watch: Watch | None, size: int
) -> Iterator[memoryview]:
    """The body as slices of the part's memory, or of each of its gathered chunks (no
    copy), stopping once ``call`` is aborted."""
    for piece in pieces(body):
        view = piece if isinstance(piece, memoryview) else memoryview(piece)
        for start in range(0, len(view), size):
            if call.aborted:
                raise Cancelled
            if watch is not None:
                watch.moved()
            yield view[start : start + size]
    if watch is not None:
        watch.moved()  # the whole body is sent: the wait for the answer starts now


async def in_thread(executor: ThreadPoolExecutor, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in ``executor``; what ``loop.run_in_executor`` does at about half its
    cost to the loop (no asyncio future chained both ways to the executor's: one callback
    from the thread). Cancelled before the thread took it, it never runs."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    try:
        job = executor.submit(fn, *args)
    except RuntimeError:  # shut down: the engine was closed
        raise _closed() from None

    def done(job: Future[Any]) -> None:  # in the thread (or here, if already done)
        try:
            loop.call_soon_threadsafe(_settle, waiter, job)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    job.add_done_callback(done)
    try:
        return await waiter
    except BaseException:
        job.cancel()
        raise


async def run(
    executor: ThreadPoolExecutor,
    call: Call,
    watch: Watch | None,
    longest: float,
    fn: Any,
    *args: Any,
) -> Any:
    """``fn(*args)`` in a worker thread (:func:`in_thread`). Given up on (cancelled, a
    sibling's failure), the thread stops at its next slice or read, or when its socket times
    out (``longest``): the caller waits for it, so that no thread still sends a part when
    the upload is aborted nor writes into memory its owner has let go."""
    try:
        return await in_thread(executor, fn, *args)
    except BaseException:
        call.abort()
        if call.started:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(call.wait, longest + 1.0)
        raise
    finally:
        if watch is not None:
            watch.stop()


def _settle(waiter: asyncio.Future[Any], job: Future[Any]) -> None:
    if waiter.done():  # its task was cancelled (and cancelled the job)
        return
    if job.cancelled():  # not by its task: the engine closed while the job waited for a thread
        waiter.set_exception(_closed())
        return
    error = job.exception()
    if error is None:
        waiter.set_result(job.result())
    else:
        waiter.set_exception(error)


def _closed() -> UsageError:
    return UsageError("the engine was closed while this transfer was sending")


def exchange(pool: PartPool, request: tuple[Any, ...], call: Call) -> Answer:
    """In the worker thread: send ``request`` (``PartPool.open``'s arguments), read the
    answer whole."""
    if not call.begin():
        raise bexc.HTTPClientError(error=Cancelled())
    try:
        response = pool.open(*request)  # its body read whole (preload)
        return Answer(response.status, response.headers, response.data)
    finally:
        call.end()


def fetch_whole(
    pool: PartPool, request: tuple[Any, ...], call: Call, md5: bool
) -> tuple[Answer, str | None]:
    """In the worker thread: a GET read whole, and its body's MD5 if asked."""
    answer = exchange(pool, request, call)
    ok = md5 and 200 <= answer.status < 300
    return answer, hexdigest("md5", answer.body) if ok else None


_READ = 1024 * 1024  # most bytes read into a range's memory at a time (stall signal, abort)


def receive_into(
    pool: PartPool,
    request: tuple[Any, ...],
    call: Call,
    read: RangeRead,
    parse: Callable[[int, Mapping[str, str]], dict[str, Any]],
    watch: Watch | None,
) -> tuple[Answer | None, dict[str, Any] | None]:
    """In the worker thread: a GET whose 2xx body is read into the memory ``read.accept``
    gives, a receive at a time (the GIL let go while the socket fills urllib3's buffer).
    Returns ``(None, parsed)``, or ``(answer, None)`` for a non-2xx answer read whole (the
    error document). A body cut short raises :class:`NetworkError` (or the mapped urllib3
    error), ``read.received`` telling how far it got."""
    if not call.begin():
        raise bexc.HTTPClientError(error=Cancelled())
    try:
        failed, response = open_body(pool, request)
        if watch is not None:
            watch.moved()
        if response is None:
            return failed, None
        done = False
        try:
            parsed = parse(response.status, response.headers)
            view = read.accept(parsed)
            try:
                with pool.mapped(*request[:3]):
                    while (got := read.received) < len(view):
                        if call.aborted:
                            raise bexc.HTTPClientError(error=Cancelled())
                        # what one receive brought (read1): on a reset, every byte that
                        # arrived is counted, and the retry asks only for the rest
                        chunk = response.read1(min(len(view) - got, _READ))
                        if not chunk:
                            raise NetworkError(
                                f"the connection ended after byte {got} of {len(view)}"
                            )
                        view[got : got + len(chunk)] = chunk
                        read.received = got + len(chunk)
                        if watch is not None:
                            watch.moved()
            finally:
                view.release()
            done = True
            return None, parsed
        finally:
            if done:
                response.release_conn()
            else:  # bytes may be left unread on it: the connection cannot be reused
                discard(response)
    finally:
        call.end()


def open_body(pool: PartPool, request: tuple[Any, ...]) -> tuple[Answer | None, Any]:
    """In the worker thread: send the GET, read its head. A 2xx answer's body is left on the
    connection (``(None, response)``); any other answer (the error document) is read whole
    and its connection given back (``(answer, None)``)."""
    response = pool.open(*request, preload=False)
    if 200 <= response.status < 300:
        return None, response
    try:
        with pool.mapped(*request[:3]):
            body = response.read()
    finally:
        response.release_conn()
    return Answer(response.status, response.headers, body), None


def discard(response: Any) -> None:
    """Drop a response whose body was not read to its end: shut its connection down (which
    also ends a read still running in another thread) and give the pool its slot back."""
    if response.connection is not None:  # not yet given back by urllib3 (a broken read is)
        response.shutdown()
    response.close()
    response.release_conn()


__all__ = [
    "SOCKET_MARGIN",
    "Call",
    "Cancelled",
    "Watch",
    "discard",
    "exchange",
    "fetch_whole",
    "in_thread",
    "open_body",
    "receive_into",
    "run",
    "slices",
]
