"""Sign-up, sign-in, API keys and roles through the gateway and the real auth service."""

from __future__ import annotations

import asyncio
import time

import jwt

from tests.support.stack import JWT_SECRET, PASSWORD, Account, RagServices, Stack


async def test_the_first_user_is_admin_and_later_ones_are_users(
    stack: Stack, admin: Account, user: Account
) -> None:
    assert admin.role == "admin"
    assert user.role == "user"
    status, me = await stack.call("GET", "/api/v1/auths/", headers=user.jwt_auth)
    assert status == 200
    assert {k: me[k] for k in ("id", "email", "role")} == {
        "id": user.id,
        "email": user.email,
        "role": "user",
    }


async def test_signin_returns_a_session_and_a_wrong_password_is_401(
    stack: Stack, user: Account
) -> None:
    status, session = await stack.call(
        "POST", "/api/v1/auths/signin", json={"email": user.email, "password": PASSWORD}
    )
    assert status == 200
    assert session["token_type"] == "Bearer"
    assert session["id"] == user.id
    assert session["expires_at"] > time.time()
    status, body = await stack.call(
        "POST", "/api/v1/auths/signin", json={"email": user.email, "password": "nope-nope-nope"}
    )
    assert status == 401
    assert body == {"detail": "Incorrect email or password"}


async def test_signing_up_twice_with_one_email_is_400(stack: Stack, user: Account) -> None:
    status, body = await stack.call(
        "POST",
        "/api/v1/auths/signup",
        json={"name": "Again", "email": user.email, "password": PASSWORD},
    )
    assert status == 400
    assert "already" in body["detail"]


async def test_an_api_key_works_and_stops_working_at_once_when_deleted(
    stack: Stack, user: Account
) -> None:
    status, me = await stack.call("GET", "/api/v1/auths/", headers=user.key_auth)
    assert (status, me["id"]) == (200, user.id)
    status, hint = await stack.call("GET", "/api/v1/auths/api_key", headers=user.jwt_auth)
    assert status == 200
    assert hint["api_key"] != user.api_key
    status, body = await stack.call("DELETE", "/api/v1/auths/api_key", headers=user.jwt_auth)
    assert (status, body) == (200, True)
    status, body = await stack.call("GET", "/api/v1/auths/", headers=user.key_auth)
    assert status == 401
    status, _ = await stack.call("GET", "/api/v1/auths/api_key", headers=user.jwt_auth)
    assert status == 404


async def test_a_replaced_api_key_is_rejected_and_the_new_one_accepted(
    stack: Stack, user: Account
) -> None:
    old_key = user.api_key
    status, _ = await stack.call("GET", "/api/v1/auths/", headers=user.key_auth)
    assert status == 200  # now cached in the gateway
    await stack.with_key(user)
    old = {"Authorization": f"Bearer {old_key}"}
    assert (await stack.call("GET", "/api/v1/auths/", headers=old))[0] == 401
    assert (await stack.call("GET", "/api/v1/auths/", headers=user.key_auth))[0] == 200


async def test_missing_garbage_and_unknown_credentials_are_401(stack: Stack) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Bearer sk-" + "0" * 32},
    ):
        status, body = await stack.call("GET", "/api/models", headers=headers)
        assert status == 401, headers
        assert set(body) == {"detail"}


def _token(user_id: str, exp: float, secret: str = JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode({"sub": user_id, "exp": int(exp)}, secret, algorithm=alg)


async def test_an_expired_jwt_is_401_token_expired(stack: Stack, user: Account) -> None:
    expired = _token(user.id, time.time() - 10)
    status, body = await stack.call(
        "GET", "/api/v1/auths/", headers={"Authorization": f"Bearer {expired}"}
    )
    assert (status, body) == (401, {"detail": "Token expired"})
    fresh = _token(user.id, time.time() + 60)
    status, _ = await stack.call(
        "GET", "/api/v1/auths/", headers={"Authorization": f"Bearer {fresh}"}
    )
    assert status == 200


async def test_tampered_foreign_and_unsigned_jwts_are_401(stack: Stack, user: Account) -> None:
    header, payload, signature = user.token.split(".")
    other = _token("someone-else", time.time() + 60).split(".")[1]
    forged_payload = f"{header}.{other}.{signature}"
    foreign = _token(user.id, time.time() + 60, secret="another-secret-" + "y" * 32)
    unsigned = jwt.encode({"sub": user.id, "exp": int(time.time()) + 60}, None, algorithm="none")
    for token in (forged_payload, foreign, unsigned, f"{header}.{payload}."):
        status, body = await stack.call(
            "GET", "/api/v1/auths/", headers={"Authorization": f"Bearer {token}"}
        )
        assert (status, body) == (401, {"detail": "Invalid token"}), token


async def test_a_pending_user_may_see_itself_and_nothing_else(stack: Stack) -> None:
    pending = await stack.signup(role="pending")
    status, me = await stack.call("GET", "/api/v1/auths/", headers=pending.jwt_auth)
    assert (status, me["role"]) == (200, "pending")
    for method, path in (("GET", "/api/models"), ("POST", "/api/v1/auths/api_key")):
        status, body = await stack.call(method, path, headers=pending.jwt_auth)
        assert status == 403, path
        assert "pending" in body["detail"]


async def test_users_routes_are_admin_only(stack: Stack, admin: Account, user: Account) -> None:
    for method, path, body in (
        ("GET", "/api/v1/users/", None),
        ("POST", f"/api/v1/users/{admin.id}/update", {"role": "user"}),
        ("DELETE", f"/api/v1/users/{admin.id}", None),
    ):
        status, reply = await stack.call(method, path, headers=user.key_auth, json=body)
        assert status == 403, path
        assert set(reply) == {"detail"}
    status, listing = await stack.call("GET", "/api/v1/users/", headers=admin.key_auth)
    assert status == 200
    assert {admin.id, user.id} <= {u["id"] for u in listing["users"]}


async def test_a_role_change_takes_effect_at_once_despite_the_cache(
    stack: Stack, admin: Account, user: Account
) -> None:
    assert (await stack.call("GET", "/api/models", headers=user.key_auth))[0] != 403
    status, updated = await stack.call(
        "POST", f"/api/v1/users/{user.id}/update", headers=admin.jwt_auth, json={"role": "pending"}
    )
    assert (status, updated["role"]) == (200, "pending")
    assert (await stack.call("GET", "/api/models", headers=user.key_auth))[0] == 403
    assert (await stack.call("GET", "/api/models", headers=user.jwt_auth))[0] == 403


async def test_a_deleted_user_is_locked_out_at_once(
    stack: Stack, rag: RagServices, admin: Account, user: Account
) -> None:
    assert (await stack.call("GET", "/api/v1/auths/", headers=user.key_auth))[0] == 200
    status, body = await stack.call("DELETE", f"/api/v1/users/{user.id}", headers=admin.jwt_auth)
    assert (status, body) == (200, True)
    assert (await stack.call("GET", "/api/v1/auths/", headers=user.key_auth))[0] == 401
    assert (await stack.call("GET", "/api/v1/auths/", headers=user.jwt_auth))[0] == 401


async def test_a_jwt_that_expires_after_first_use_is_then_rejected(
    stack: Stack, user: Account
) -> None:
    short = {"Authorization": f"Bearer {_token(user.id, time.time() + 1)}"}
    assert (await stack.call("GET", "/api/v1/auths/", headers=short))[0] == 200
    await asyncio.sleep(1.1)
    assert await stack.call("GET", "/api/v1/auths/", headers=short) == (
        401,
        {"detail": "Token expired"},
    )
