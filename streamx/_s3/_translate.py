"""Error translation: botocore, aiohttp and socket errors become the streamx tree here.

Every S3 call goes through :func:`map_errors`, which turns botocore and aiohttp
exceptions into the streamx tree at this one boundary (as httpcore's
``map_exceptions`` does), with the transfer's context attached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import botocore.exceptions as bexc

from .._errors import (
    AccessDeniedError,
    ConditionalConflictError,
    ConfigError,
    NetworkError,
    NotFoundError,
    PreconditionFailedError,
    S3Error,
    ServiceUnavailableError,
    StreamxError,
)

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound", "404", "NoSuchVersion"}
_DENIED = {
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
    "403",
}
_UNAVAILABLE = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "OperationAborted",
}

_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    bexc.EndpointConnectionError,
    bexc.ConnectionClosedError,
    bexc.ConnectTimeoutError,
    bexc.ReadTimeoutError,
    bexc.HTTPClientError,
    bexc.ResponseStreamingError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    ConnectionError,
)


def _network_detail(exc: BaseException) -> str:
    """What went wrong on the connection, without a URL, header or signature.

    botocore's messages name only the endpoint, except a plain ``HTTPClientError`` and
    ``SSLError``, which embed the underlying error's text; aiohttp's may carry a URL. For
    those only exception types are named: the wrapper's and the root cause's (e.g.
    ``SSLError (SSLCertVerificationError)``).
    """
    if type(exc) is bexc.HTTPClientError or isinstance(exc, bexc.SSLError):
        inner: BaseException | None = getattr(exc, "kwargs", {}).get("error")
        seen = 0
        while inner is not None and seen < 8:  # to the root: urllib3 wraps the ssl error
            nxt = inner.__cause__ or inner.__context__
            if nxt is None:
                break
            inner, seen = nxt, seen + 1
        return f"{type(exc).__name__} ({type(inner or exc).__name__})"
    if isinstance(exc, bexc.BotoCoreError):
        return str(exc)
    return type(exc).__name__


def translate(exc: BaseException, operation: str, **context: Any) -> StreamxError:
    """A streamx error for ``exc`` (a botocore/aiohttp/OS error), cause not yet chained."""
    if isinstance(exc, StreamxError):
        return exc.add_context(**context)
    if isinstance(exc, bexc.ClientError):
        err = exc.response.get("Error", {}) or {}
        code = str(err.get("Code", "") or "")
        message = str(err.get("Message", "") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{operation} failed: {code or status}" + (f": {message}" if message else "")
        cls: type[S3Error]
        if code == "PreconditionFailed" or status == 412:
            cls = PreconditionFailedError
        elif code == "ConditionalRequestConflict":
            cls = ConditionalConflictError
        elif code in _NOT_FOUND or status == 404:
            cls = NotFoundError
        elif code in _DENIED or status == 403:
            cls = AccessDeniedError
        elif code in _UNAVAILABLE or (isinstance(status, int) and status >= 500):
            cls = ServiceUnavailableError
        else:
            cls = S3Error
        return cls(text, code=code, status=status, **context)
    if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
        return AccessDeniedError(
            f"{operation} failed: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or pass them to Engine()",
            code="NoCredentials",
            **context,
        )
    if isinstance(exc, _NETWORK_ERRORS) or isinstance(exc, bexc.SSLError):
        return NetworkError(f"{operation} failed: {_network_detail(exc)}", **context)
    if isinstance(exc, bexc.ProfileNotFound | bexc.InvalidRegionError | bexc.InvalidConfigError):
        # the settings (AWS_PROFILE, AWS_REGION, a config file) are wrong, not the store
        return ConfigError(f"{operation}: {exc}", **context)
    if isinstance(exc, bexc.ParamValidationError):
        return ConfigError(f"{operation}: {exc}", **context)
    if isinstance(exc, bexc.BotoCoreError):
        return S3Error(f"{operation} failed: {exc}", **context)
    raise exc


@contextmanager
def map_errors(operation: str, **context: Any) -> Iterator[None]:
    try:
        yield
    except StreamxError as exc:
        exc.add_context(**context)
        raise
    except (bexc.BotoCoreError, bexc.ClientError, *_NETWORK_ERRORS) as exc:
        raise translate(exc, operation, **context) from exc
