"""The thread sender's connections: urllib3's pools, configured as botocore configures its own.

Why not botocore's ``URLLib3Session.send``: it wraps every request in an
``AWSPreparedRequest`` and every answer in an ``AWSResponse`` (email-parsed
header objects, URL re-parsing, a pool looked up from the URL), about 0.1-0.2 ms
of Python per request, which is most of what a small object costs the sending
thread. Here the worker thread calls urllib3's public ``HTTPConnectionPool.urlopen``
on the pool for the object's host, with no retry and no redirect.

What stays botocore's: the pools are built with the arguments ``URLLib3Session``
gives urllib3 (:class:`._session.HttpSettings`, captured from the client's own
session: timeouts, pool size, socket options, client certificate, block size),
the TLS context is botocore's ``create_urllib3_context`` with ``verify`` / the CA
bundle applied as botocore applies them (``get_cert_path``), proxies come from
botocore's ``ProxyConfiguration`` (the proxy URL, its ``Proxy-Authorization``,
the proxy's own CA bundle and client certificate, forwarding for https), and a
failure raises the botocore exception ``URLLib3Session.send`` raises for it, so
:mod:`._translate` maps it the same way.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import botocore.exceptions as bexc
import urllib3
from botocore.httpsession import (
    BUFFER_SIZE,
    ProxyConfiguration,
    create_urllib3_context,
    get_cert_path,
    mask_proxy_url,
)
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.retry import Retry

from .._errors import StreamxError
from ._session import HttpSettings

_NO_RETRY = Retry(total=False, redirect=False, raise_on_redirect=False)


class Answer:
    """An answer read whole: status, headers (case-insensitive), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class PartPool:
    """urllib3 pools for one client's HTTP settings (see the module docstring)."""

    def __init__(self, settings: HttpSettings) -> None:
        self._settings = settings
        self._proxy = ProxyConfiguration(
            proxies=settings.proxies, proxies_settings=settings.proxies_config
        )
        cert_file: str | None = None
        key_file: str | None = None
        if isinstance(settings.client_cert, str):
            cert_file = settings.client_cert
        elif isinstance(settings.client_cert, tuple):
            cert_file, key_file = settings.client_cert
        connect, read = settings.timeout
        # URLLib3Session._get_pool_manager_kwargs, and _setup_ssl_cert's verify per pool
        self._kwargs: dict[str, Any] = {
            "timeout": urllib3.Timeout(connect=connect, read=read),
            "maxsize": settings.max_pool_connections,
            "ssl_context": create_urllib3_context(),
            "socket_options": settings.socket_options or [],
            "cert_file": cert_file,
            "key_file": key_file,
            "cert_reqs": "CERT_REQUIRED" if settings.verify else "CERT_NONE",
            "ca_certs": get_cert_path(settings.verify) if settings.verify else None,
        }
        if BUFFER_SIZE:
            self._kwargs["blocksize"] = BUFFER_SIZE
        self._manager = urllib3.PoolManager(**self._kwargs)
        self._proxies: dict[str, urllib3.ProxyManager] = {}
        self._timeouts: dict[tuple[float, float], urllib3.Timeout] = {}
        self._pools: dict[tuple[str, str, int | None], Any] = {}
        self._routes: dict[tuple[str, str, int | None], tuple[str | None, bool]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            proxies, self._proxies = self._proxies, {}
            self._pools.clear()
        self._manager.clear()
        for manager in proxies.values():
            manager.clear()

    def timeout(self, connect: float, read: float) -> urllib3.Timeout:
        with self._lock:
            found = self._timeouts.get((connect, read))
            if found is None:
                if len(self._timeouts) > 64:
                    self._timeouts.clear()
                found = self._timeouts[(connect, read)] = urllib3.Timeout(
                    connect=connect, read=read
                )
            return found

    def _pool_for(
        self, scheme: str, host: str, port: int | None, proxy_url: str | None, fresh: bool = False
    ) -> Any:
        """The manager's pool for this origin, kept here: looking it up costs ~40 µs."""
        key = (scheme, host, port)
        pool = None if fresh else self._pools.get(key)
        if pool is None:
            manager = self._manager if proxy_url is None else self._proxy_manager(proxy_url)
            pool = manager.connection_from_host(host, port, scheme)
            with self._lock:
                if len(self._pools) > 64:
                    self._pools.clear()
                self._pools[key] = pool
        return pool

    def route(self, scheme: str, host: str, port: int | None) -> tuple[str | None, bool]:
        """The proxy URL for ``scheme`` (None: direct), and whether the request line then
        carries the absolute URL (a plain-http request, or https forwarded by the proxy)."""
        key = (scheme, host, port)
        found = self._routes.get(key)
        if found is None:
            if len(self._routes) > 1024:
                self._routes.clear()
            found = self._routes[key] = self._route(scheme, host)
        return found

    def _route(self, scheme: str, host: str) -> tuple[str | None, bool]:
        proxy_url = self._proxy.proxy_url_for(f"{scheme}://{host}")
        if proxy_url is None:
            return None, False
        forwarding = bool(self._proxy.settings.get("proxy_use_forwarding_for_https"))
        absolute = scheme == "http" or (forwarding and proxy_url.startswith("https:"))
        return proxy_url, absolute

    def _proxy_manager(self, proxy_url: str) -> urllib3.ProxyManager:
        with self._lock:
            manager = self._proxies.get(proxy_url)
            if manager is None:
                kwargs = dict(self._kwargs)
                kwargs["proxy_headers"] = self._proxy.proxy_headers_for(proxy_url)
                context = self._proxy_context(proxy_url)
                if context is not None:
                    kwargs["proxy_ssl_context"] = context
                forwarding = self._proxy.settings.get("proxy_use_forwarding_for_https")
                if forwarding is not None:
                    kwargs["use_forwarding_for_https"] = forwarding
                manager = self._proxies[proxy_url] = urllib3.proxy_from_url(proxy_url, **kwargs)
            return manager

    def _proxy_context(self, proxy_url: str) -> Any:
        """The proxy's own TLS context, as URLLib3Session._setup_proxy_ssl_context builds it."""
        settings = self._proxy.settings
        ca_bundle, cert = settings.get("proxy_ca_bundle"), settings.get("proxy_client_cert")
        if ca_bundle is None and cert is None:
            return None
        context = create_urllib3_context()
        try:
            host = urllib3.util.parse_url(proxy_url).host or ""
            if not _is_ip(host):
                context.check_hostname = True
            if ca_bundle is not None:
                context.load_verify_locations(cafile=ca_bundle)
            if isinstance(cert, tuple):
                context.load_cert_chain(cert[0], keyfile=cert[1])
            elif isinstance(cert, str):
                context.load_cert_chain(cert)
        except (OSError, SSLError, LocationParseError) as exc:
            raise bexc.InvalidProxiesConfigError(error=exc) from exc
        return context

    def open(
        self,
        scheme: str,
        host: str,
        port: int | None,
        target: str,
        headers: Mapping[str, str],
        body: Iterable[Any] | None,
        timeout: urllib3.Timeout,
        method: str = "PUT",
        *,
        preload: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """``method`` (``PUT``, ``POST``, or ``GET`` with no body) ``target`` (the path and
        query) on ``scheme://host:port``: urllib3's answer, its body read whole with
        ``preload`` (a GET's body cut short by the connection raises, as botocore's length
        check does), else left to read under :meth:`mapped`. Raises what
        ``URLLib3Session.send`` raises."""
        proxy_url, absolute = self.route(scheme, host, port)
        with self.mapped(scheme, host, port):
            pool = self._pool_for(scheme, host, port, proxy_url)
            kwargs: dict[str, Any] = {
                "body": body,
                "headers": headers,
                "retries": _NO_RETRY,
                "redirect": False,
                "assert_same_host": False,
                "timeout": timeout,
                "preload_content": preload,
                "decode_content": False,
                "enforce_content_length": method == "GET",
            }
            url = _endpoint(scheme, host, port) + target if absolute else target
            response: urllib3.BaseHTTPResponse
            try:
                response = pool.urlopen(method, url, **kwargs)
            except ClosedPoolError:  # its manager let it go (more hosts than it keeps)
                pool = self._pool_for(scheme, host, port, proxy_url, fresh=True)
                response = pool.urlopen(method, url, **kwargs)  # nothing was sent before
            return response

    @contextmanager
    def mapped(self, scheme: str, host: str, port: int | None) -> Iterator[None]:
        """urllib3's exceptions as the botocore exceptions ``URLLib3Session.send`` raises
        for them, so :mod:`._translate` maps them the same way."""
        endpoint = _endpoint(scheme, host, port)
        try:
            yield
        except SSLError as exc:
            raise bexc.SSLError(endpoint_url=endpoint, error=exc) from None
        except (NewConnectionError, socket.gaierror) as exc:
            raise bexc.EndpointConnectionError(endpoint_url=endpoint, error=exc) from None
        except ProxyError as exc:
            proxy_url = self.route(scheme, host, port)[0]
            proxy = mask_proxy_url(proxy_url) if proxy_url else ""
            raise bexc.ProxyConnectionError(proxy_url=proxy, error=exc) from None
        except ConnectTimeoutError as exc:
            raise bexc.ConnectTimeoutError(endpoint_url=endpoint, error=exc) from None
        except ReadTimeoutError as exc:
            raise bexc.ReadTimeoutError(endpoint_url=endpoint, error=exc) from None
        except ProtocolError as exc:
            raise bexc.ConnectionClosedError(error=exc, endpoint_url=endpoint) from None
        except (bexc.BotoCoreError, StreamxError):
            raise
        except Exception as exc:
            raise bexc.HTTPClientError(error=exc) from None


def _endpoint(scheme: str, host: str, port: int | None) -> str:
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.strip("[]"))
    except OSError:
        return False
    return True


__all__ = ["Answer", "PartPool"]
