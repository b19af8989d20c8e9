"""Connecting to NATS the same way in every service: reconnect forever, log the changes."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypedDict

import nats
import structlog
from nats.aio.client import Client

from common.settings import NatsAuth

log = structlog.get_logger()


def inbox_prefix(user: str) -> str:
    """The prefix of `user`'s reply subjects; the server lets only `user` subscribe there."""
    return f"_INBOX_{user}"


class LoginOptions(TypedDict, total=False):
    user: str
    password: str
    inbox_prefix: str


def login_options(auth: NatsAuth | None) -> LoginOptions:
    """`nats.connect` options that log in as `auth`'s user with its own inbox prefix
    (none for no user: a server without authorization)."""
    if auth is None or not auth.user:
        return {}
    return {"user": auth.user, "password": auth.password, "inbox_prefix": inbox_prefix(auth.user)}


def tls_context(auth: NatsAuth | None) -> ssl.SSLContext | None:
    """The context that verifies the servers against `auth.ca_file`; None: nats-py's own
    (the system's CAs, for tls:// URLs or a server that requires TLS)."""
    if auth is None or not auth.ca_file:
        return None
    return ssl.create_default_context(cafile=auth.ca_file)


@asynccontextmanager
async def connect_nats(
    servers: list[str],
    name: str,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    auth: NatsAuth | None = None,
) -> AsyncIterator[Client]:
    """A connection that keeps reconnecting while the server is away, drained on exit.

    With `auth`, it logs in as that user and takes its replies under `_INBOX_<user>`, the
    only inbox the server lets that user subscribe to (see stack.nats_permissions).
    """

    closing = False

    async def disconnected() -> None:
        if closing:
            log.debug("nats_disconnected", client=name)
        else:
            log.warning("nats_disconnected", client=name)

    async def reconnected() -> None:
        log.info("nats_reconnected", client=name)
        if on_reconnect is not None:
            await on_reconnect()

    async def error(exc: Exception) -> None:
        log.warning("nats_error", client=name, error=str(exc))

    nc = await nats.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        ping_interval=10,
        max_outstanding_pings=3,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
        allow_reconnect=True,
        tls=tls_context(auth),
        **login_options(auth),
    )
    try:
        yield nc
    finally:
        closing = True
        if nc.is_connected:
            try:
                await nc.drain()
            except Exception:
                await nc.close()
        else:
            await nc.close()
