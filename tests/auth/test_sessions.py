"""Session tokens, the shared JWT secret, and the sign-in rate limit."""

from __future__ import annotations

import asyncio
import time

import jwt
import msgspec
import pytest

from auth.settings import Settings
from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import JwtParams, JwtParamsRequest, Session, SigninRequest
from tests.auth.support import PASSWORD, call, fast_settings, running, signup


async def jwt_params(bus: Bus) -> JwtParams:
    return await call(bus, subjects.AUTH_JWT_PARAMS, JwtParamsRequest())


async def signin(bus: Bus, email: str, password: str, client_addr: str = "") -> Session:
    request = SigninRequest(email=email, password=password, client_addr=client_addr)
    return await call(bus, subjects.AUTH_SIGNIN, request)


async def test_a_session_token_verifies_with_the_published_params(nats_url: str, bus: Bus) -> None:
    async with running(fast_settings(nats_url, jwt_expires_seconds=3600), bus):
        before = int(time.time())
        session = await signup(bus, "ada@example.com")
        params = await jwt_params(bus)
        claims = jwt.decode(session.token, params.secret, algorithms=[params.algorithm])
    assert params.algorithm == "HS256" and len(params.secret) >= 32
    assert claims["sub"] == session.id
    assert claims["exp"] == session.expires_at
    assert claims["exp"] - claims["iat"] == 3600
    assert before <= claims["iat"] <= int(time.time())
    assert len(claims["jti"]) == 32
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(session.token, "another-secret-" * 3, algorithms=["HS256"])


async def test_every_token_is_distinct(auth: object, bus: Bus) -> None:
    await signup(bus, "ada@example.com")
    tokens = {(await signin(bus, "ada@example.com", PASSWORD)).token for _ in range(3)}
    assert len(tokens) == 3


async def test_the_generated_secret_survives_a_restart_and_old_tokens_still_work(
    settings: Settings, bus: Bus
) -> None:
    async with running(settings, bus):
        session = await signup(bus, "ada@example.com")
        secret = (await jwt_params(bus)).secret
    async with running(settings, bus):
        assert (await jwt_params(bus)).secret == secret
        jwt.decode(session.token, secret, algorithms=["HS256"])
        again = await signin(bus, "ada@example.com", PASSWORD)
    assert (again.id, again.role) == (session.id, "admin")


async def test_instances_starting_together_agree_on_one_secret(
    settings: Settings, bus: Bus
) -> None:
    async with running(settings, bus), running(settings, bus):
        await asyncio.sleep(0.05)  # let the second instance's endpoints be seen everywhere
        # both instances share the queue group: 20 answers come from both of them
        answers = await asyncio.gather(*(jwt_params(bus) for _ in range(20)))
    assert len({a.secret for a in answers}) == 1


async def test_a_configured_secret_is_used_and_a_weak_one_refused(nats_url: str, bus: Bus) -> None:
    secret = "s" * 40
    async with running(fast_settings(nats_url, jwt_secret=secret), bus):
        session = await signup(bus, "ada@example.com")
        assert (await jwt_params(bus)).secret == secret
    assert jwt.decode(session.token, secret, algorithms=["HS256"])["sub"] == session.id

    with pytest.raises(ValueError, match="at least 32 characters"):
        async with running(fast_settings(nats_url, jwt_secret="t0p-s3cr3t"), bus):
            pass


async def test_repeated_failed_signins_for_one_email_from_one_address_back_off(
    nats_url: str, bus: Bus
) -> None:
    settings = fast_settings(nats_url, signin_max_failures=3, signin_backoff_seconds=60)
    async with running(settings, bus):
        await signup(bus, "ada@example.com")
        await signup(bus, "bob@example.com")
        codes = []
        for _ in range(4):
            with pytest.raises(RagwayError) as exc:
                await signin(bus, "ADA@example.com", "wrong-pass", client_addr="10.0.0.1")
            codes.append(exc.value.code)
        assert codes == ["unauthorized"] * 3 + ["rate_limited"]
        # from that address even the right password waits for the back-off ...
        with pytest.raises(RagwayError) as locked:
            await signin(bus, "ada@example.com", PASSWORD, client_addr="10.0.0.1")
        assert locked.value.code == "rate_limited"
        assert "try again in 60 s" in locked.value.detail
        # ... but the owner elsewhere, and other emails from there, are unaffected
        assert (await signin(bus, "ada@example.com", PASSWORD, client_addr="10.0.0.2")).role
        assert (await signin(bus, "bob@example.com", PASSWORD, client_addr="10.0.0.1")).role


async def test_failed_signins_from_one_address_are_rate_limited_across_emails(
    nats_url: str, bus: Bus
) -> None:
    async with running(fast_settings(nats_url, signin_max_failures_per_address=3), bus):
        await signup(bus, "ada@example.com")
        for i in range(3):
            with pytest.raises(RagwayError) as exc:
                await signin(bus, f"guess{i}@example.com", "wrong-pass", client_addr="10.0.0.9")
            assert exc.value.code == "unauthorized"
        with pytest.raises(RagwayError) as limited:
            await signin(bus, "ada@example.com", PASSWORD, client_addr="10.0.0.9")
        assert limited.value.code == "rate_limited"
        assert (await signin(bus, "ada@example.com", PASSWORD, client_addr="10.0.0.10")).role


async def test_successful_signins_do_not_count_against_the_limit(nats_url: str, bus: Bus) -> None:
    async with running(fast_settings(nats_url, signin_max_failures=2), bus):
        await signup(bus, "ada@example.com")
        for _ in range(5):
            await signin(bus, "ada@example.com", PASSWORD, client_addr="10.0.0.9")


async def test_concurrent_guesses_cannot_overshoot_the_limit(nats_url: str, bus: Bus) -> None:
    async with running(fast_settings(nats_url, signin_max_failures=3), bus):
        await signup(bus, "ada@example.com")
        results = await asyncio.gather(
            *(signin(bus, "ada@example.com", f"guess-{i}") for i in range(10)),
            return_exceptions=True,
        )
    codes = sorted(r.code for r in results if isinstance(r, RagwayError))
    assert codes == ["rate_limited"] * 7 + ["unauthorized"] * 3


def test_settings_from_the_environment_accept_open_webui_names() -> None:
    from common.settings import load_settings

    settings = load_settings(
        Settings,
        environ={
            "WEBUI_SECRET_KEY": "k" * 32,
            "RAGWAY_JWT_EXPIRES_SECONDS": "60",
            "ENABLE_SIGNUP": "false",
            "DEFAULT_USER_ROLE": "user",
        },
    )
    assert (settings.jwt_secret, settings.jwt_expires_seconds) == ("k" * 32, 60)
    assert (settings.enable_signup, settings.default_user_role) == (False, "user")
    assert load_settings(Settings, environ={}).default_user_role == "pending"
    assert load_settings(Settings, environ={"RAGWAY_ENABLE_SIGNUP": "0"}).enable_signup is False
    assert msgspec.structs.replace(settings, nats_url="nats://a:1, nats://b:2").nats_servers() == [
        "nats://a:1",
        "nats://b:2",
    ]
