"""The only package that speaks to S3.

- ``_session.py``: sessions (per event loop) and the client's configuration;
- ``_build.py``: an engine's client, and which part sender it gets;
- ``_client.py``: :class:`S3`, the calls streamx makes;
- ``_translate.py``: botocore/aiohttp errors into the streamx tree;
- ``_args.py``: the put-argument model (names, conditions, value checks);
- ``_sender.py``: the one-method part sender and aiobotocore's implementation;
- ``_threaded.py``: the worker-thread implementation;
- ``_pool.py``: its connections, urllib3's pools configured as botocore configures its own.
"""

from __future__ import annotations

from ._args import (
    CONDITIONS,
    check_conditions,
    check_put_args,
    split_conditions,
    upload_param_names,
)
from ._build import borrowed_s3, open_s3
from ._client import S3
from ._sender import AiobotocoreSender, BufferBody, PartRequest, PartSender, RangeRead
from ._session import service_model, session_for
from ._threaded import ThreadSender
from ._translate import _DENIED, _NOT_FOUND, map_errors, translate

__all__ = [
    "CONDITIONS",
    "S3",
    "_DENIED",
    "_NOT_FOUND",
    "AiobotocoreSender",
    "BufferBody",
    "PartRequest",
    "PartSender",
    "RangeRead",
    "ThreadSender",
    "borrowed_s3",
    "check_conditions",
    "check_put_args",
    "map_errors",
    "open_s3",
    "service_model",
    "session_for",
    "split_conditions",
    "translate",
    "upload_param_names",
]
