"""Exit codes, and the one line on stderr that says what went wrong and what to do.

======  =====================================================================
code    meaning
======  =====================================================================
0       success
1       any other error (a bug: rerun with ``--debug`` and report it), or the
        ``cli`` extra is missing
2       usage: a bad option, argument or configuration (nothing was sent), or a
        ``--checkpoint`` that does not match this upload
3       not found: a bucket, key, local file or multipart upload
4       access denied: missing or wrong credentials, or not allowed
5       transfer failure: network, server error, checksum mismatch, the source
        failed, a local write failed
130     interrupted (Ctrl-C): the upload in progress was aborted first
141     stdout was closed early (``streamx cat … | head``)
143     terminated (SIGTERM): the upload in progress was aborted first
======  =====================================================================

Messages come from streamx's errors, which never contain credentials or
presigned signatures; the traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from .._errors import (
    AccessDeniedError,
    CheckpointError,
    ChecksumError,
    ConfigError,
    LocalFileError,
    NetworkError,
    NotFoundError,
    ObjectChangedError,
    PartLimitError,
    ServiceUnavailableError,
    SourceError,
    StreamxError,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_ACCESS_DENIED = 4
EXIT_TRANSFER = 5
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143


class UsageError(Exception):
    """A command line that cannot work (reported with exit code 2, before any request)."""


class StdoutClosed(Exception):
    """The reader of stdout went away (``streamx cat … | head``): exit quietly with 141.

    Not an ``OSError``, so nothing on the way (click included) mistakes it for
    a network or disk failure.
    """


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; the transfer was cancelled and cleaned up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass(frozen=True)
class Failure:
    code: int
    message: str


_HINTS: list[tuple[type[BaseException], int, str]] = [
    (ConfigError, EXIT_USAGE, ""),
    (
        NotFoundError,
        EXIT_NOT_FOUND,
        "check the bucket and key (streamx ls s3://BUCKET/ shows what exists)",
    ),
    (
        AccessDeniedError,
        EXIT_ACCESS_DENIED,
        "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --profile, and the bucket's permissions",
    ),
    (
        NetworkError,
        EXIT_TRANSFER,
        "check --endpoint-url (or AWS_ENDPOINT_URL) and that the server is reachable",
    ),
    (ServiceUnavailableError, EXIT_TRANSFER, "the server is overloaded or failing; retry later"),
    (ChecksumError, EXIT_TRANSFER, "the bytes were corrupted on the way; retry the transfer"),
    (
        ObjectChangedError,
        EXIT_TRANSFER,
        "the object was replaced meanwhile; retry to get the new one",
    ),
    (
        CheckpointError,
        EXIT_USAGE,
        "pass --restart to abort the recorded upload and start over",
    ),
    (PartLimitError, EXIT_TRANSFER, "pass --expected-size or a larger --part-size"),
    (SourceError, EXIT_TRANSFER, "the upload was aborted; nothing was stored"),
    (StreamxError, EXIT_TRANSFER, ""),
]


def _with_hint(message: str, hint: str) -> str:
    message = " ".join(message.split())  # one line, whatever the server answered
    return f"{message}; {hint}" if hint else message


def classify(exc: BaseException) -> Failure:
    """The exit code and one-line message for an exception."""
    if isinstance(exc, UsageError):
        return Failure(EXIT_USAGE, str(exc))
    if isinstance(exc, StreamxError) and not isinstance(exc, LocalFileError):
        # (a LocalFileError is also an OSError: the file checks below name it)
        cause = exc.__cause__
        if type(cause).__name__ == "ProfileNotFound":
            return Failure(EXIT_USAGE, _with_hint(str(exc), "check --profile / AWS_PROFILE"))
        for cls, code, hint in _HINTS:
            if isinstance(exc, cls):
                return Failure(code, _with_hint(str(exc), hint))
    if isinstance(exc, StdoutClosed):
        return Failure(EXIT_BROKEN_PIPE, "")
    if isinstance(exc, FileNotFoundError):
        return Failure(EXIT_NOT_FOUND, f"no such file or directory: {exc.filename or exc}")
    if isinstance(exc, PermissionError):
        return Failure(EXIT_ACCESS_DENIED, f"permission denied: {exc.filename or exc}")
    if isinstance(exc, IsADirectoryError):
        return Failure(EXIT_USAGE, f"{exc.filename} is a directory; add --recursive")
    if isinstance(exc, OSError):
        what = exc.strerror or type(exc).__name__
        where = f": {exc.filename}" if exc.filename else ""
        hint = "; free some space" if exc.errno == errno.ENOSPC else ""
        return Failure(EXIT_TRANSFER, f"{what}{where}{hint}")
    if isinstance(exc, TypeError | ValueError):
        # raised by streamx's own argument checks before any request
        return Failure(EXIT_USAGE, str(exc))
    return Failure(
        EXIT_ERROR,
        f"internal error: {type(exc).__name__}: {exc}; rerun with --debug and report it",
    )
