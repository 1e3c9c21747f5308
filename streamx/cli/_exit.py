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
import re
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


#: the library's advice, said in the command line's words
_CLI_WORDING = [
    ("pass restart=True to overwrite it", "add --restart to overwrite it"),
    ("pass restart=True to start over", "add --restart to start over"),
    ("pass restart=True", "add --restart"),
    ("restart=True needs checkpoint=PATH", "--restart needs --checkpoint"),
    ("or pass them to Engine()", "or pass --profile"),
    ("pass size= with the expected length", "pass --expected-size"),
    ("use a larger part_size", "use a larger --part-size"),
    (
        "TransferConfig(checksum='when_required') (or checksum='off') for it",
        "--checksum when_required (or --checksum off) for it",
    ),
]

#: S3 error codes that mean the credentials themselves were refused
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "NoCredentials",
        "InvalidClientTokenId",
    }
)


#: TransferConfig fields that the command line sets with a flag
_FIELD_FLAGS = {"part_size": "--part-size", "queue_size": "--concurrency"}


def cli_wording(message: str) -> str:
    """A library message in the command line's terms (flags instead of keyword arguments)."""
    for library, cli in _CLI_WORDING:
        message = message.replace(library, cli)
    return re.sub(
        r"(?<![-\w])(part_size|queue_size)\b", lambda m: _FIELD_FLAGS[m.group(1)], message
    )


def _with_hint(message: str, hint: str) -> str:
    message = " ".join(cli_wording(message).split())  # one line, whatever the server answered
    if any(flag in message for flag in re.findall(r"--[a-z-]+", hint)):
        hint = ""  # the message already gives that advice
    return f"{message}; {hint}" if hint else message


def _s3_message(exc: StreamxError) -> str | None:
    """Plain words for the S3 errors a user meets first, naming the code for a search."""
    code = getattr(exc, "code", "")
    if code == "NoSuchBucket" and exc.bucket:
        return (
            f"bucket {exc.bucket!r} does not exist (NoSuchBucket); check its name "
            "('streamx ls' lists your buckets)"
        )
    if code in ("NoSuchKey", "NotFound", "404") and exc.bucket and exc.key is not None:
        folder = exc.key.rsplit("/", 1)[0] + "/" if "/" in exc.key else ""
        return (
            f"s3://{exc.bucket}/{exc.key} does not exist ({code}); "
            f"'streamx ls s3://{exc.bucket}/{folder}' shows what is there"
        )
    if code in CREDENTIAL_CODES:
        return (
            f"the server refused the credentials ({code}); check AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or --profile"
        )
    return None


def stops_everything(exc: BaseException) -> bool:
    """A failure no other file of a recursive copy can escape: a missing bucket, bad credentials."""
    code = getattr(exc, "code", "")
    return isinstance(exc, StreamxError) and (code == "NoSuchBucket" or code in CREDENTIAL_CODES)


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
                plain = _s3_message(exc)
                if plain is not None:
                    return Failure(code, plain)
                if isinstance(exc, NotFoundError) and exc.bucket is None:
                    hint = ""  # not something in a bucket (a sync's missing local directory)
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
        return Failure(EXIT_USAGE, cli_wording(str(exc)))
    return Failure(
        EXIT_ERROR,
        f"internal error: {type(exc).__name__}: {exc}; rerun with --debug and report it",
    )
