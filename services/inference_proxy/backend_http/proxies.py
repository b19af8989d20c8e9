"""Outbound HTTP proxies, taken from the environment the way aiohttp's `trust_env` does
(and so Open WebUI, which sets it): `HTTP_PROXY` for http:// backends, `HTTPS_PROXY` for
https:// ones (upper or lower case, as `urllib.request.getproxies` reads them), a host
matching `NO_PROXY` goes direct (`urllib.request.proxy_bypass_environment`: suffix
matches, `*`, an optional port). Only http:// proxy URLs are used; an https:// or socks
proxy is ignored with a warning, as aiohttp does. Credentials in the proxy URL become a
`Proxy-Authorization: Basic` header. Loopback backends are not exempt unless NO_PROXY
says so (aiohttp's rule; the launcher adds its local llama-server to NO_PROXY).
"""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

import structlog

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str  # the Proxy-Authorization value, or ""


def proxies_from_env() -> dict[str, str]:
    """The proxy settings of this process's environment (`http`, `https`, `no` keys)."""
    return {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https", "no")}


class ProxyTable:
    """Which proxy, if any, carries a request to a backend."""

    __slots__ = ("_by_scheme", "_settings")

    def __init__(self, settings: Mapping[str, str]) -> None:
        self._settings = dict(settings)
        self._by_scheme: dict[str, Proxy] = {}
        for scheme in ("http", "https"):
            url = settings.get(scheme)
            if url:
                proxy = _parse(url)
                if proxy is not None:
                    self._by_scheme[scheme] = proxy

    def __bool__(self) -> bool:
        return bool(self._by_scheme)

    def for_target(self, scheme: str, host: str) -> Proxy | None:
        proxy = self._by_scheme.get(scheme)
        if proxy is None or proxy_bypass_environment(host, self._settings):
            return None
        return proxy


def _parse(url: str) -> Proxy | None:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "http" or not parts.hostname or port == -1:
        # aiohttp: "HTTPS proxies ... are not supported, ignoring"
        log.warning("proxy_ignored", scheme=parts.scheme, host=parts.hostname)
        return None
    authorization = ""
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode("latin-1")).decode("ascii")
    return Proxy(parts.hostname, port or 80, authorization)
