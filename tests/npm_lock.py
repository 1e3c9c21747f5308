"""One ``npm ci`` at a time per package directory, across pytest-xdist workers.

Two workers that both find ``node_modules`` missing would otherwise run ``npm ci`` in the same
directory at once (each deletes what the other writes), or one would start ``node`` on the half
tree the other is installing. The lock is an ``flock`` on the directory's committed
``package-lock.json``: no extra file, released when the process dies.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def npm_lock(js_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the install lock of ``js_dir``: check for, and install, its packages inside."""
    with open(os.path.join(js_dir, "package-lock.json"), "rb") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
