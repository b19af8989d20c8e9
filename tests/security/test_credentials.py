"""Credentials across gateway instances: what one gateway revokes, every other refuses on
its very next request, however warm its cache; forged JWTs are refused by every instance.

(tests/e2e/test_auth_flow.py covers the single-gateway cases; these add the second one.)
"""

from __future__ import annotations

import time
import warnings

import jwt
import jwt.warnings
import pytest

from tests.support.stack import JWT_SECRET, PASSWORD, Account, RagServices, Stack

pytestmark = pytest.mark.security

ME = "/api/v1/auths/"


async def _warm(gateways: tuple[Stack, ...], *credentials: dict[str, str]) -> None:
    """Each gateway resolves (and caches) each credential once."""
    for gateway in gateways:
        for headers in credentials:
            status, body = await gateway.call("GET", ME, headers=headers)
            assert status == 200, body


async def test_a_key_revoked_on_one_gateway_is_refused_by_the_other_at_once(
    stack: Stack, second: Stack, user: Account
) -> None:
    await _warm((stack, second), user.key_auth, user.jwt_auth)
    status, _ = await stack.call("DELETE", "/api/v1/auths/api_key", headers=user.jwt_auth)
    assert status == 200
    assert await second.call("GET", ME, headers=user.key_auth) == (
        401,
        {"detail": "Invalid API key"},
    )
    # the user's JWT was not revoked with the key
    assert (await second.call("GET", ME, headers=user.jwt_auth))[0] == 200


async def test_a_key_replaced_on_one_gateway_stops_working_on_the_other(
    stack: Stack, second: Stack, user: Account
) -> None:
    old = dict(user.key_auth)
    await _warm((stack, second), old)
    await stack.with_key(user)
    assert (await second.call("GET", ME, headers=old))[0] == 401
    assert (await second.call("GET", ME, headers=user.key_auth))[0] == 200


async def test_a_user_deleted_on_one_gateway_is_refused_by_the_other_at_once(
    stack: Stack, second: Stack, rag: RagServices, admin: Account, user: Account
) -> None:
    await _warm((stack, second), user.key_auth, user.jwt_auth)
    status, _ = await stack.call("DELETE", f"/api/v1/users/{user.id}", headers=admin.jwt_auth)
    assert status == 200
    for headers in (user.key_auth, user.jwt_auth):
        status, body = await second.call("GET", "/api/models", headers=headers)
        assert status == 401, body


async def test_a_demotion_on_one_gateway_applies_on_the_other_at_once(
    stack: Stack, second: Stack, admin: Account, user: Account
) -> None:
    await _warm((stack, second), user.key_auth)
    status, _ = await stack.call(
        "POST", f"/api/v1/users/{user.id}/update", headers=admin.jwt_auth, json={"role": "pending"}
    )
    assert status == 200
    status, body = await second.call("GET", "/api/models", headers=user.key_auth)
    assert status == 403, body


def _token(claims: dict[str, object], secret: str | None = JWT_SECRET, alg: str = "HS256") -> str:
    with warnings.catch_warnings():  # the real secret is short for HS512: that is the point
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm=alg)


async def test_expired_tampered_and_unsigned_jwts_are_refused_by_the_second_gateway(
    second: Stack, user: Account
) -> None:
    await _warm((second,), user.jwt_auth)
    now = int(time.time())
    header, payload, signature = user.token.split(".")
    someone_else = _token({"sub": "someone-else", "exp": now + 60}).split(".")[1]
    unsigned_header = _token({"sub": user.id, "exp": now + 60}, None, "none").split(".")[0]
    rejected = {
        "expired": _token({"sub": user.id, "exp": now - 5}),
        "payload swapped": f"{header}.{someone_else}.{signature}",
        "signature cut": f"{header}.{payload}.",
        "alg none": _token({"sub": user.id, "exp": now + 60}, None, "none"),
        "alg none, valid signature kept": f"{unsigned_header}.{payload}.{signature}",
        "foreign secret": _token({"sub": user.id, "exp": now + 60}, "other-" + "y" * 40),
        "other HMAC alg": _token({"sub": user.id, "exp": now + 60}, JWT_SECRET, "HS512"),
        "no expiry": _token({"sub": user.id}),
        "no subject": _token({"exp": now + 60}),
    }
    for why, token in rejected.items():
        status, body = await second.call("GET", ME, headers={"Authorization": f"Bearer {token}"})
        assert status == 401, why
        assert body["detail"] in ("Invalid token", "Token expired"), (why, body)
    # the genuine token still works: the refusals were about the tokens
    assert (await second.call("GET", ME, headers=user.jwt_auth))[0] == 200


async def _sign_in(api: Stack, email: str, password: str) -> tuple[int, dict[str, str]]:
    status, session = await api.call(
        "POST", "/api/v1/auths/signin", json={"email": email, "password": password}
    )
    token = session.get("token", "") if status == 200 else ""
    return status, {"Authorization": f"Bearer {token}"}


async def test_a_password_change_ends_earlier_sessions_on_every_gateway(
    stack: Stack, second: Stack, user: Account
) -> None:
    status, other_session = await _sign_in(stack, user.email, PASSWORD)
    assert status == 200
    await _warm((stack, second), user.jwt_auth, other_session, user.key_auth)
    new_password = "a brand new passphrase"
    status, body = await stack.call(
        "POST",
        "/api/v1/auths/update/password",
        headers=user.jwt_auth,
        json={"password": PASSWORD, "new_password": new_password},
    )
    assert (status, body) == (200, True)
    for gateway in (second, stack):
        for headers in (user.jwt_auth, other_session):
            status, body = await gateway.call("GET", ME, headers=headers)
            assert status == 401 and "sign in again" in body["detail"], body
    assert (await second.call("GET", ME, headers=user.key_auth))[0] == 200  # keys stay
    assert (await _sign_in(second, user.email, PASSWORD))[0] == 401
    status, fresh = await _sign_in(second, user.email, new_password)
    assert status == 200
    assert (await stack.call("GET", ME, headers=fresh))[0] == 200


async def test_a_wrong_current_password_changes_nothing(stack: Stack, user: Account) -> None:
    status, body = await stack.call(
        "POST",
        "/api/v1/auths/update/password",
        headers=user.jwt_auth,
        json={"password": "not the password", "new_password": "whatever it is now"},
    )
    assert (status, body) == (400, {"detail": "Incorrect password"})
    assert (await stack.call("GET", ME, headers=user.jwt_auth))[0] == 200
    assert (await _sign_in(stack, user.email, PASSWORD))[0] == 200


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_sign_out_ends_every_session_of_the_user_on_every_gateway(
    stack: Stack, second: Stack, user: Account, method: str
) -> None:
    status, other_session = await _sign_in(second, user.email, PASSWORD)
    assert status == 200
    await _warm((stack, second), user.jwt_auth, other_session)
    status, body = await stack.call(method, "/api/v1/auths/signout", headers=user.jwt_auth)
    assert (status, body) == (200, {"status": True})
    for gateway in (second, stack):
        for headers in (user.jwt_auth, other_session):
            assert (await gateway.call("GET", ME, headers=headers))[0] == 401
    status, fresh = await _sign_in(stack, user.email, PASSWORD)
    assert status == 200
    assert (await second.call("GET", ME, headers=fresh))[0] == 200


async def test_a_scoped_key_may_not_change_the_password_or_end_the_sessions(
    stack: Stack, user: Account
) -> None:
    status, created = await stack.call(
        "POST",
        "/api/v1/auths/api_keys",
        headers=user.jwt_auth,
        json={"name": "narrow", "models": ["gpt-fake"]},
    )
    assert status == 200, created
    scoped = {"Authorization": f"Bearer {created['api_key']}"}
    assert (await stack.call("GET", ME, headers=scoped))[0] == 200
    for method, path, body in (
        ("GET", "/api/v1/auths/signout", None),
        ("POST", "/api/v1/auths/update/password", {"password": PASSWORD, "new_password": "x" * 12}),
    ):
        status, reply = await stack.call(method, path, headers=scoped, json=body)
        assert status == 403 and "scoped" in reply["detail"], (path, reply)
    assert (await stack.call("GET", ME, headers=user.jwt_auth))[0] == 200  # nothing ended
