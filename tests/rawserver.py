"""Raw TCP servers on 127.0.0.1 for tests that need an HTTP peer misbehaving in a precise way
(an answer before the body is read, a body held back, a stall), and a counter of the worker
threads inside one of the thread sender's functions."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def serving(handler: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP server running ``handler`` in a thread per connection; yields its URL and
    closes the listening socket after the block."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                handler(conn)
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    host, port = srv.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        srv.close()


def read_head(conn: socket.socket) -> bytes:
    """A request's head (and whatever of its body came with it); ``b""`` if the client left."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        buf += chunk
    return buf


def threads_in(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """A list that holds one entry per thread inside ``module.name`` at any moment."""
    active: list[int] = []
    real = getattr(module, name)

    def counted(*args: Any) -> Any:
        active.append(1)
        try:
            return real(*args)
        finally:
            active.pop()

    monkeypatch.setattr(module, name, counted)
    return active
