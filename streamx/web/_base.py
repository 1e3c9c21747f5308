"""ServiceBase: who may do what, for every route of the web core.

The application's hooks (prefix, identity, authorize) run through
:func:`run_hook`, so whatever they do the client gets JSON; upload tokens bind
an S3 upload id to the key and the caller that created it; :meth:`ServiceBase.handle`
turns the streamx errors of S3 calls into WebErrors (no URL, no credential in them).
The routes themselves are :class:`streamx.web.UploadService`'s; the write
conditions (:mod:`._overwrite`) and streamed bodies (:mod:`._stream`) need only this base.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._engine import Engine
from .._errors import ConfigError, StreamxError
from .._log import log
from ._core import (
    AccessRequest,
    Call,
    UploadSettings,
    WebError,
    check_key,
    check_prefix,
    check_upload_id,
    maybe_await,
    web_error_for,
)
from ._guard import UploadTokenError, UploadTokens


async def run_hook(name: str, hook: Callable[..., Any], *args: Any) -> Any:
    """Call one of the application's hooks; whatever happens the client gets JSON.

    A :class:`WebError` it raises is the answer; a ``LookupError`` (a header or cookie
    that an anonymous request lacks: ``request.headers['x-user']``) is a 401; any other
    failure is the server's own, a 500 that names the hook and is logged.
    """
    try:
        return await maybe_await(hook(*args))
    except WebError:
        raise
    except LookupError as exc:
        log.info("web.hook.lookup_failed", hook=name, error=type(exc).__name__)
        raise WebError(401, "this request does not say who you are; log in first") from None
    except Exception as exc:
        log.error("web.hook.failed", hook=name, error=type(exc).__name__)
        raise WebError(500, f"the server's {name} hook failed", "hook_failed") from exc


class ServiceBase:
    """The settings, the engine, and the checks every route makes before acting."""

    def __init__(self, settings: UploadSettings) -> None:
        if not isinstance(settings, UploadSettings):
            raise ConfigError("settings must be a streamx.web.UploadSettings")
        self.settings = settings
        self.bucket = settings.bucket
        self.max_size = settings.max_size
        self.tokens = UploadTokens(settings.upload_secret)

    @property
    def engine(self) -> Engine:
        engine = self.settings.engine
        return engine if isinstance(engine, Engine) else engine()

    async def prefix_for(self, request: Any) -> str:
        prefix = self.settings.prefix
        if isinstance(prefix, str):
            return prefix
        try:
            return check_prefix(await run_hook("prefix", prefix, request))
        except ConfigError as exc:
            raise WebError(500, f"the server's prefix hook is misconfigured: {exc}") from None

    async def identity_for(self, request: Any) -> str:
        """Who the caller is, as bound into upload tokens: the identity hook, else the prefix."""
        hook = self.settings.identity
        if hook is None:
            return await self.prefix_for(request)
        identity = await run_hook("identity", hook, request)
        if not isinstance(identity, str):
            raise WebError(500, "the server's identity hook must return a str")
        return identity

    async def authorize(
        self, request: Any, action: str, key: object, upload_id: str | None = None
    ) -> str:
        """The checked key, once the prefix and the application's hook allow ``action``."""
        checked = check_key(key, await self.prefix_for(request))
        access = AccessRequest(request, action, checked, upload_id)
        if not await run_hook("authorize", self.settings.authorize, access):
            raise WebError(403, f"you may not {action.split('.')[-1]} {checked!r}")
        return checked

    async def open_upload(
        self, request: Any, action: str, key: object, token: object
    ) -> tuple[str, str, str]:
        """``(key, S3 upload id, token)`` for a route that acts on an upload: the token must
        have been issued by :meth:`issue` for this key and this caller (else 403, before
        anything reaches S3), then the hook decides with the S3 upload id."""
        token = check_upload_id(token)
        checked = check_key(key, await self.prefix_for(request))
        try:
            upload_id = self.tokens.open(
                token, bucket=self.bucket, key=checked, identity=await self.identity_for(request)
            )
        except UploadTokenError as exc:
            log.warning("web.upload_token.refused", key=checked, action=action, reason=str(exc))
            raise WebError(
                403,
                f"this upload id was not issued to you for key {checked[:200]!r}: send the "
                "upload id and key that creating the upload answered",
                "upload_mismatch",
            ) from None
        return await self.authorize(request, action, checked, upload_id), upload_id, token

    async def issue(self, request: Any, key: str, upload_id: str) -> str:
        """The upload token that stands for ``upload_id`` in every answer to the client."""
        identity = await self.identity_for(request)
        return self.tokens.issue(upload_id, bucket=self.bucket, key=key, identity=identity)

    async def handle(self, handler: str, call: Call) -> Any:
        """Run one route; every failure comes back as a :class:`WebError`."""
        try:
            return await getattr(self, handler)(call)
        except WebError:
            raise
        except StreamxError as exc:
            error = web_error_for(exc)
            log.warning(
                "web.storage_error",
                route=handler,
                status=error.status,
                error=type(exc).__name__,
                code=getattr(exc, "code", None),
                key=exc.key,
                upload_id=exc.upload_id,
            )
            raise error from exc
