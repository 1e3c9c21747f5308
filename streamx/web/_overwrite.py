"""``UploadSettings.overwrite``: whether a browser's upload may replace an existing object.

With ``overwrite=False`` (the default) the store itself refuses to replace an object:
every write carries S3's ``If-None-Match: *``, which the store evaluates where the object
appears (AWS: PutObject, CompleteMultipartUpload, CopyObject; never on
CreateMultipartUpload or UploadPart, which take no condition):

* the stream and WebSocket routes pass ``IfNoneMatch="*"`` to ``Engine.upload`` (on the
  single PUT or on Complete);
* multipart complete, on the presigned contract and on Uppy's routes, sends it on
  CompleteMultipartUpload;
* the presigned single PUT has it signed into the URL, as object_store does for its
  conditional puts: the route's answer lists ``"If-None-Match": "*"`` among the
  ``headers`` the client must send, and a PUT without it fails the signature (403);
* POST form uploads (Uppy's ``/s3/params``) cannot carry it: S3's POST Object takes no
  condition (not among the conditional-write operations of
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html; measured
  here, SeaweedFS refuses a policy naming ``$if-none-match`` as an unknown condition key
  and moto ignores the field and overwrites). The route answers 403
  ``post_upload_refused``: send such files as multipart uploads (Uppy:
  ``shouldUseMultipart: () => true``), or allow overwrites.

Fail fast: before a write starts (multipart init, Uppy's create, the presigned PUT, the
stream route, the WebSocket open message) one HeadObject answers 409 for a key that is
already taken, before the client sends a byte. The store's check at the write decides:
its 412 is answered 409 ``object_exists``, a 409 ConditionalRequestConflict (another
conditional write won) 409 ``write_conflict``; the existing object is untouched, and a
multipart upload that can no longer complete is aborted.

**A store that ignores the condition** (``rclone serve s3`` overwrites on a conditional
PUT or Complete; the store profile says so, an unknown endpoint is probed once with
``Engine.probe``): every write route answers 500 ``overwrite_unenforceable`` and logs
``web.overwrite_unenforceable`` until the application sets ``overwrite=True`` (or moves
to a store that honours conditions). A best-effort HeadObject instead would promise what
it cannot keep: two uploads of one key both pass it, and a presigned URL or POST form
can be replayed for its whole lifetime after the check — so the setting is refused rather
than silently weakened.
"""

from __future__ import annotations

from typing import Any

from .._errors import ConditionalConflictError, PreconditionFailedError
from .._log import log
from ._base import ServiceBase
from ._errors import WebError, web_error_for

PUT = "PutObject:IfNoneMatch"
COMPLETE = "CompleteMultipartUpload:IfNoneMatch"
EITHER = (PUT, COMPLETE)  # an Engine.upload: a single PUT or a multipart upload
NO_OVERWRITE: dict[str, Any] = {"IfNoneMatch": "*"}


async def write_conditions(service: ServiceBase, points: tuple[str, ...]) -> dict[str, Any]:
    """The conditions a write relying on ``points`` carries: none when overwrites are
    allowed; ``IfNoneMatch="*"`` when the store honours it (an unknown store is probed
    first); a 500 when the store is known to ignore it."""
    if service.settings.overwrite:
        return {}
    engine = service.engine
    store = engine.store
    if any(store.honours(point) is None for point in points):
        store = await engine.probe(service.bucket)
    ignored = [point for point in points if store.honours(point) is not True]
    if ignored:
        log.error("web.overwrite_unenforceable", store=store.name, points=ignored)
        raise WebError(
            500,
            f"this server is set to refuse overwrites (UploadSettings(overwrite=False), the "
            f"default), but {store.title} ignores If-None-Match: an upload would silently "
            "replace an existing object. Set UploadSettings(overwrite=True) to accept "
            "overwrites on this store, or use a store that honours conditional writes",
            "overwrite_unenforceable",
        )
    return dict(NO_OVERWRITE)


async def refuse_taken_key(
    service: ServiceBase, key: str, points: tuple[str, ...]
) -> dict[str, Any]:
    """:func:`write_conditions`, then one HeadObject: a key that is already taken raises
    :class:`~streamx.PreconditionFailedError` (answered 409) before the client sends a byte.
    Silent if the HEAD cannot tell; the store's check at the write decides anyway."""
    conditions = await write_conditions(service, points)
    await service.engine.multipart.preflight(service.bucket, key, conditions)
    return conditions


def refuse_post() -> WebError:
    """The answer of ``/s3/params`` while overwrites are refused."""
    return WebError(
        403,
        "this server does not let uploads replace objects, and a POST form upload cannot be "
        "made conditional on S3: send the file as a multipart upload (Uppy: "
        "shouldUseMultipart: () => true)",
        "post_upload_refused",
    )


async def complete_unless_taken(
    service: ServiceBase, key: str, upload_id: str, parts: list[dict[str, Any]]
) -> dict[str, Any]:
    """CompleteMultipartUpload with the write conditions. When they fail the upload can
    never complete, so it is aborted (shielded, retried, time-boxed) and the answer is 409."""
    conditions = await write_conditions(service, (COMPLETE,))
    multipart = service.engine.multipart
    try:
        return await multipart.complete(service.bucket, key, upload_id, parts, **conditions)
    except (PreconditionFailedError, ConditionalConflictError) as exc:
        await multipart.discard(
            service.bucket,
            key,
            upload_id,
            cause=exc,
            what="web.multipart",
            config=service.settings.transfer_config,
        )
        error = web_error_for(exc.add_context(key=key))
        raise WebError(409, f"{error.message}; the upload was aborted", error.code) from exc
