"""The exception tree. Every error streamx raises is a :class:`StreamxError`.

::

    StreamxError                     root; carries bucket, key, upload_id, part_number
    ├── ConfigError (ValueError)     bad arguments or configuration, raised before any request
    │   └── ConfigTypeError (TypeError)  an argument of the wrong type (a str where keys go ...)
    ├── UsageError (RuntimeError)    the API used out of order (an Engine or a writer outside
    │                                its ``async with`` block, an Engine entered twice)
    ├── LocalFileError (OSError)     a local file could not be read or written (missing, a
    │                                directory, no permission, disk full); ``errno``,
    │                                ``strerror`` and ``filename`` as on the OSError, and also
    │                                a FileNotFoundError, IsADirectoryError, NotADirectoryError
    │                                or PermissionError when the OSError was one
    ├── SourceError                  the source raised while being read (cause chained)
    │   └── SourceTypeError (TypeError)   the source yielded something that is not bytes-like
    ├── PartLimitError               the stream cannot fit in S3's 10,000 parts
    ├── ChecksumError                bytes on the wire differ from the bytes read
    │   └── CompletedChecksumError   the completed object's checksum was wrong (it was deleted)
    ├── ObjectChangedError           the object changed during a ranged download
    ├── CheckpointError              a resume checkpoint does not match this transfer
    │   └── ObjectChangedSinceCheckpoint (also ObjectChangedError)   the recorded version is gone
    ├── InvalidRangeError (ValueError)   a byte range reaches outside the object (known once
    │                                the server has said how long it is)
    ├── SyncOrderError               a listing came back out of S3's key order; the sync stopped
    ├── NetworkError (ConnectionError)   connection refused, reset or timed out
    └── S3Error                      the server answered with an error; has ``code``, ``status``
        ├── NotFoundError (FileNotFoundError)   NoSuchKey, NoSuchBucket, NoSuchUpload, 404
        ├── AccessDeniedError (PermissionError) 403, bad credentials or signature
        ├── PreconditionFailedError             412: IfNoneMatch / IfMatch did not hold
        ├── ConditionalConflictError            409: a concurrent conditional write won
        └── ServiceUnavailableError             500/502/503/504, SlowDown

Messages never contain credentials or presigned signatures: errors are built
from the S3 error code and message only, never from request headers or URLs
with query strings.
"""

from __future__ import annotations

from typing import Any


class StreamxError(Exception):
    """Root of every streamx error.

    ``bucket``, ``key``, ``upload_id`` and ``part_number`` say where it
    happened (``None`` where not applicable); the cause is chained.
    """

    def __init__(
        self,
        message: str,
        *,
        bucket: str | None = None,
        key: str | None = None,
        upload_id: str | None = None,
        part_number: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.part_number = part_number

    def add_context(self, **context: Any) -> StreamxError:
        """Fill in context attributes that are still unset; returns self."""
        for name, value in context.items():
            if getattr(self, name, None) is None:
                setattr(self, name, value)
        return self

    def __str__(self) -> str:
        where = []
        if self.bucket is not None and self.key is not None:
            where.append(f"s3://{self.bucket}/{self.key}")
        elif self.bucket is not None:
            where.append(f"s3://{self.bucket}")
        if self.part_number is not None:
            where.append(f"part {self.part_number}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class ConfigError(StreamxError, ValueError):
    """An argument or setting is invalid; raised before any request is sent."""


class ConfigTypeError(ConfigError, TypeError):
    """An argument has the wrong type; a ``ConfigError`` that ``except TypeError`` also catches."""


class UsageError(StreamxError, RuntimeError):
    """The API was used out of order; the message says how to use it."""


class LocalFileError(StreamxError, OSError):
    """A local file (a source path, a download's destination, a checkpoint) failed.

    ``errno``, ``strerror`` and ``filename`` are those of the ``OSError``,
    which is chained as the cause. Build one with :func:`local_file_error`,
    which also makes it the matching builtin subclass (``FileNotFoundError``
    ...), so ``except FileNotFoundError`` keeps working.
    """


class LocalFileNotFoundError(LocalFileError, FileNotFoundError):
    pass


class LocalIsADirectoryError(LocalFileError, IsADirectoryError):
    pass


class LocalNotADirectoryError(LocalFileError, NotADirectoryError):
    pass


class LocalPermissionError(LocalFileError, PermissionError):
    pass


def local_file_error(exc: OSError, what: str, **context: Any) -> LocalFileError:
    """A :class:`LocalFileError` for ``exc`` (``raise local_file_error(exc, ...) from exc``).

    ``what`` says what streamx was doing ("reading the source file x").
    """
    cls: type[LocalFileError] = LocalFileError
    for builtin, ours in (
        (FileNotFoundError, LocalFileNotFoundError),
        (IsADirectoryError, LocalIsADirectoryError),
        (NotADirectoryError, LocalNotADirectoryError),
        (PermissionError, LocalPermissionError),
    ):
        if isinstance(exc, builtin):
            cls = ours
    reason = exc.strerror or str(exc) or type(exc).__name__
    error = cls(f"{what}: {reason}", **context)
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror, exc.filename
    return error


class SourceError(StreamxError):
    """Reading the source failed; the source's exception is the ``__cause__``."""


class SourceTypeError(SourceError, TypeError):
    """The source is not something streamx can read, or yielded a non-bytes chunk."""


class PartLimitError(StreamxError):
    """The stream does not fit in 10,000 parts of the configured sizes."""


class ChecksumError(StreamxError):
    """A checksum computed from the bytes differs from the one the server reports."""


class CompletedChecksumError(ChecksumError):
    """The upload completed, but the stored object's checksum is wrong (it was deleted)."""


class ObjectChangedError(StreamxError):
    """The object was replaced while it was being read (its ETag changed)."""


class CheckpointError(StreamxError):
    """A checkpoint file does not match this transfer, or its upload no longer exists."""


class ObjectChangedSinceCheckpoint(CheckpointError, ObjectChangedError):
    """The object is not the version the checkpoint recorded (another ETag or size)."""


class InvalidRangeError(StreamxError, ValueError):
    """A byte range reaches outside the object or runs backwards in it.

    Raised once the object's size is known (a HEAD, or the first GET's answer); a
    range that is wrong whatever the size is a :class:`ConfigError` before any request.
    """


class SyncOrderError(StreamxError):
    """A listing came back out of S3's key order; the sync stopped before acting on it."""


class NetworkError(StreamxError, ConnectionError):
    """The connection failed: refused, reset, closed early or timed out."""


class S3Error(StreamxError):
    """The server answered with an error. ``code`` is S3's error code, ``status`` the HTTP status."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None, **context: Any):
        super().__init__(message, **context)
        self.code = code
        self.status = status


class NotFoundError(S3Error, FileNotFoundError):
    """The bucket, key or multipart upload does not exist."""


class AccessDeniedError(S3Error, PermissionError):
    """The credentials are missing, wrong, or not allowed to do this."""


class PreconditionFailedError(S3Error):
    """A conditional write's condition did not hold (412, or 404 for ``IfMatch`` on a missing key).

    ``IfNoneMatch="*"``: the key already exists; ``IfMatch=etag``: the object is no
    longer that version. Nothing was written: the existing object is unchanged and
    the multipart upload (if any) was aborted. Never retried.
    """


class ConditionalConflictError(S3Error):
    """409 ConditionalRequestConflict: another conditional write to the key won the race.

    Nothing was written by this call. Read the object again (its new ETag) and decide
    whether to retry with ``IfMatch`` set to it.
    """


class ServiceUnavailableError(S3Error):
    """The server is overloaded or failing (5xx, SlowDown); usually worth a retry."""
