"""Logs name what happened and to whom, never a password, hash, key, token or secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from auth.settings import Settings
from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import (
    JwtParamsRequest,
    SigninRequest,
    UserRef,
)
from tests.auth.support import PASSWORD, call, running, signup


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """Let loggers made from here on log every level (the suite runs at warning)."""
    previous = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(wrapper_class=previous)


async def test_logs_carry_events_but_no_secrets(
    settings: Settings, bus: Bus, debug_logging: None
) -> None:
    with capture_logs() as logs:
        async with running(settings, bus):
            session = await signup(bus, "ada@example.com")
            ref = UserRef(user_id=session.id)
            await call(
                bus, subjects.AUTH_SIGNIN, SigninRequest(email="ada@example.com", password=PASSWORD)
            )
            with pytest.raises(RagwayError):
                await call(
                    bus,
                    subjects.AUTH_SIGNIN,
                    SigninRequest(email="ada@example.com", password="not-the-password"),
                )
            old_key = (await call(bus, subjects.AUTH_KEY_CREATE, ref)).api_key
            key = (await call(bus, subjects.AUTH_KEY_CREATE, ref)).api_key
            await call(bus, subjects.AUTH_KEY_DELETE, ref)
            secret = (await call(bus, subjects.AUTH_JWT_PARAMS, JwtParamsRequest())).secret

    events = [entry["event"] for entry in logs]
    for expected in ("user_signed_up", "user_signed_in", "signin_failed", "api_key_created"):
        assert expected in events
    signed_up = next(entry for entry in logs if entry["event"] == "user_signed_up")
    assert (signed_up["user_id"], signed_up["role"]) == (session.id, "admin")

    text = repr(logs)
    for secret_text in (PASSWORD, "not-the-password", session.token, old_key, key, secret):
        assert secret_text not in text
    for fragment in ("$argon2", old_key[3:], key[3:]):
        assert fragment not in text
