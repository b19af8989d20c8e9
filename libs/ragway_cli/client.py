"""A small async HTTP client for ragway's API: JSON calls, SSE streams, clear errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp

from ragway_cli.errors import CliError, http_error

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0


def _detail(body: Any, text: str) -> str:
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if detail is not None:
            return json.dumps(detail)
    return text.strip()[:300]


class Api:
    """One aiohttp session against one ragway; use as `async with Api(url, credential)`."""

    def __init__(self, url: str, credential: str = "") -> None:
        self.url = url.rstrip("/")
        self.credential = credential
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        timeout = aiohttp.ClientTimeout(
            total=None, connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S
        )
        self._session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use Api as an async context manager"
        return self._session

    def headers(self, credential: str | None = None) -> dict[str, str]:
        token = self.credential if credential is None else credential
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def call(
        self, method: str, path: str, *, credential: str | None = None, **kw: Any
    ) -> Any:
        """A JSON request; the decoded JSON reply, or CliError for an error status."""
        try:
            async with self.session.request(
                method, self.url + path, headers=self.headers(credential), **kw
            ) as reply:
                text = await reply.text()
                body = _json_or_none(text)
                if reply.status >= 400:
                    raise http_error(reply.status, _detail(body, text), path)
                return body
        except aiohttp.ClientConnectionError as exc:
            raise CliError(f"Cannot reach ragway at {self.url}: {_reason(exc)}") from None
        except TimeoutError:
            raise CliError(f"ragway at {self.url} did not answer in time ({path})") from None

    async def events(
        self, method: str, path: str, *, credential: str | None = None, **kw: Any
    ) -> AsyncIterator[Any]:
        """The `data:` payloads of an SSE reply, JSON-decoded; stops at `[DONE]`."""
        try:
            async with self.session.request(
                method, self.url + path, headers=self.headers(credential), **kw
            ) as reply:
                if reply.status >= 400:
                    text = await reply.text()
                    raise http_error(reply.status, _detail(_json_or_none(text), text), path)
                if not reply.content_type.startswith("text/event-stream"):
                    # a server that ignores `stream` answers one JSON document
                    yield await reply.json(content_type=None)
                    return
                async for raw in reply.content:
                    line = raw.decode("utf-8", errors="replace").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    yield json.loads(data)
        except aiohttp.ClientConnectionError as exc:
            raise CliError(f"Cannot reach ragway at {self.url}: {_reason(exc)}") from None
        except TimeoutError:
            raise CliError(f"ragway at {self.url} stopped sending ({path})") from None


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "os_error", None) or exc.__cause__ or exc
    return str(getattr(cause, "strerror", None) or cause) or type(exc).__name__
