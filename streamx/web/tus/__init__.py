"""tus 1.0.0 resumable uploads into S3, for any tus client (tus-js-client, Uppy, tuspy, TUSKit).

::

    from streamx.web import UploadSettings
    from streamx.web.tus import TusOptions
    from streamx.web.tus.fastapi import tus_router      # or streamx.web.tus.aiohttp

    app.include_router(tus_router(settings, TusOptions(expiration=86400)), prefix="/api/tus")

The state of every upload lives in the bucket (see :mod:`streamx.web.tus._state`),
so a restarted server or another replica continues it. Extensions: creation,
creation-with-upload, creation-defer-length, termination, expiration, checksum
(sha1, sha256, md5), concatenation (see :mod:`streamx.web.tus._concat`).
``UploadSettings(overwrite=False)`` (the default) holds here too: creation answers 409
for a key that is taken, and the write that makes the object carries ``If-None-Match``.
"""

from ._protocol import TUS_VERSION, TusError, TusKeyMaker, TusOptions, TusRequest, TusResponse
from ._service import TusService
from ._sweep import ExpiredUpload, sweep_expired

__all__ = [
    "TUS_VERSION",
    "ExpiredUpload",
    "TusError",
    "TusKeyMaker",
    "TusOptions",
    "TusRequest",
    "TusResponse",
    "TusService",
    "sweep_expired",
]
