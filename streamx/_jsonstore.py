"""The atomic JSON store behind the upload and download checkpoints (and the sync manifest).

A record is replaced atomically: write a temporary file in the same
directory, fsync it, rename it over PATH, fsync the directory, so a crash
leaves the old record or the new one, never a torn one. Saves that fall due
while one is running are coalesced into the next.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import anyio

from ._errors import CheckpointError, ConfigError, local_file_error


class JsonRecord(Protocol):
    def to_json(self) -> str: ...


R = TypeVar("R", bound=JsonRecord)


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a crash leaves the old file or the new, never half of one.

    Write a temporary file in the same directory, fsync it, rename it over
    ``path``, then fsync the directory so the rename itself is durable.
    """
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress_os():
            os.unlink(tmp)
        raise
    with suppress_os():
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class JsonFile(Generic[R]):
    """A JSON record at PATH: load, coalesced atomic save, remove (uploads and downloads)."""

    kind = "upload"
    hint = "pass restart=True to overwrite it"

    def __init__(self, path: str | os.PathLike[str], parse: Callable[[str], R]) -> None:
        self.path = Path(path)
        self.current: R | None = None
        self._parse = parse
        self._lock = anyio.Lock()
        self._version = 0
        self._saved = 0

    def load(self) -> R | None:
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc}") from exc
        try:
            return self._parse(text)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(
                f"{self.path} is not a streamx {self.kind} checkpoint ({exc}); {self.hint}"
            ) from exc

    async def save(self) -> None:
        """Write ``current`` (once for any number of changes made before the write starts)."""
        self._version += 1
        wanted = self._version
        async with self._lock:
            if self._saved >= wanted or self.current is None:
                return  # a write that started after our change has covered it
            version, text = self._version, self.current.to_json()
            try:
                await anyio.to_thread.run_sync(atomic_write, self.path, text)
            except OSError as exc:  # a full disk, a directory removed meanwhile
                raise local_file_error(exc, f"cannot write checkpoint {self.path}") from exc
            self._saved = version

    def remove(self) -> None:
        with suppress_os():
            self.path.unlink()


class suppress_os:
    """``with suppress_os():`` ignores an OSError (clean-up that may find nothing)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> bool:
        return exc_type is not None and issubclass(exc_type, OSError)


def check_path(path: object, restart: object) -> Path | None:
    """Validate a transfer's ``checkpoint=`` and ``restart=`` (before any request)."""
    if not isinstance(restart, bool):
        raise ConfigError(f"restart must be True or False, not {restart!r}")
    if path is None:
        if restart:
            raise ConfigError("restart=True needs checkpoint=PATH (it discards that checkpoint)")
        return None
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise ConfigError(f"checkpoint must be a file path (str or os.PathLike), not {path!r}")
    checked = Path(os.fspath(path))
    if checked.is_dir():
        raise ConfigError(f"checkpoint {checked} is a directory; give a file path")
    if not checked.parent.is_dir():
        raise ConfigError(f"the directory of checkpoint {checked} does not exist")
    return checked
