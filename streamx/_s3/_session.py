"""Sessions and clients: how streamx builds its aiobotocore client.

Sessions are cached per event loop and per profile: a session's credential
objects hold ``asyncio`` locks, which belong to one loop, so two ``anyio.run``
calls in one process (a script, a test suite, a thread running its own loop)
must not share them. Every session shares one botocore data loader, so the S3
model (about 50 ms to parse) is parsed once per process.

The client's HTTP settings as botocore resolved them (``verify`` from
``AWS_CA_BUNDLE``/the config file, proxies from the config or the
environment, ``client_cert``, timeouts, socket options) are captured through
aiobotocore's public ``AioConfig(http_session_cls=...)`` hook: the class is
constructed by the client with exactly those arguments, which
:class:`HttpSettings` keeps for streamx's worker-thread part sender, so that
its connections verify, proxy and time out as the client's own do.
"""

from __future__ import annotations

import asyncio
import datetime
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str | None, Any]] = (
    weakref.WeakKeyDictionary()
)


@lru_cache(maxsize=1)
def _loader() -> Any:
    """The process's botocore data loader (``botocore.loaders.create_loader()``'s, without
    the first client's scan of every service directory: :mod:`._loader`)."""
    from ._loader import ServiceLoader

    return ServiceLoader()


def session_for(profile: str | None) -> Any:
    """The aiobotocore session of this event loop for ``profile``."""
    from aiobotocore.session import AioSession

    sessions = _SESSIONS.setdefault(asyncio.get_running_loop(), {})
    if profile not in sessions:
        session = AioSession(profile=profile) if profile else AioSession()
        session.register_component("data_loader", _loader())
        factory = session.get_component("response_parser_factory")
        factory.set_parser_defaults(timestamp_parser=_timestamp)
        sessions[profile] = session
    return sessions[profile]


def _timestamp(value: Any) -> Any:
    """ISO 8601 timestamps (one per listing entry) without dateutil: 1,000-key pages parse
    about 3x faster (``sync``'s no-change re-run is mostly listing); anything else as botocore."""
    if isinstance(value, str) and value.endswith("Z") and "T" in value:
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
    from botocore.utils import parse_timestamp

    return parse_timestamp(value)


@lru_cache(maxsize=1)
def service_model() -> Any:
    """botocore's S3 service model (no session, no loop needed)."""
    from botocore.model import ServiceModel

    return ServiceModel(_loader().load_service_model("s3", "service-2"), service_name="s3")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The arguments botocore gave the client's HTTP session (see the module docstring)."""

    verify: bool | str
    proxies: dict[str, str] | None
    timeout: tuple[float, float]
    max_pool_connections: int
    socket_options: list[Any] | None
    client_cert: str | tuple[str, str] | None
    proxies_config: dict[str, Any] | None


def recording_session_cls(box: list[HttpSettings]) -> type:
    """aiobotocore's default HTTP session class, noting its arguments in ``box``."""
    from aiobotocore.httpsession import AIOHTTPSession

    class _Recording(AIOHTTPSession):  # type: ignore[misc]
        def __init__(
            self,
            verify: bool | str = True,
            proxies: dict[str, str] | None = None,
            timeout: Any = None,
            max_pool_connections: int = 10,
            socket_options: list[Any] | None = None,
            client_cert: str | tuple[str, str] | None = None,
            proxies_config: dict[str, Any] | None = None,
            connector_args: dict[str, Any] | None = None,
        ) -> None:
            if not isinstance(timeout, tuple):
                timeout = (timeout, timeout) if timeout is not None else (60.0, 60.0)
            box.append(
                HttpSettings(
                    verify=verify,
                    proxies=dict(proxies) if proxies else None,
                    timeout=(float(timeout[0]), float(timeout[1])),
                    max_pool_connections=max_pool_connections,
                    socket_options=socket_options,
                    client_cert=client_cert,
                    proxies_config=proxies_config,
                )
            )
            super().__init__(
                verify=verify,
                proxies=proxies,
                timeout=timeout,
                max_pool_connections=max_pool_connections,
                socket_options=socket_options,
                client_cert=client_cert,
                proxies_config=proxies_config,
                connector_args=connector_args,
            )

    return _Recording


def client_config(
    *, sign_payload: bool, addressing_style: str | None, pool: int, box: list[HttpSettings]
) -> Any:
    """The AioConfig of every client streamx creates."""
    from aiobotocore.config import AioConfig

    s3_config: dict[str, Any] = {"payload_signing_enabled": sign_payload}
    if addressing_style:
        s3_config["addressing_style"] = addressing_style
    return AioConfig(
        max_pool_connections=pool,
        signature_version="s3v4",  # presigned URLs too (botocore presigns SigV2 by default)
        s3=s3_config,
        # streamx computes and checks its own checksums (once, in the producer);
        # botocore's defaults since 1.36 break several S3-compatible stores.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # streamx retries every request itself (per part, with jitter); one
        # botocore attempt keeps attempts from multiplying.
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        http_session_cls=recording_session_cls(box),
    )
