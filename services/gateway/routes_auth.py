"""Open WebUI's auth and user routes, answered by the auth service over NATS."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from common.codec import encode
from common.errors import RagwayError, forbidden, invalid, not_found
from contracts import subjects
from contracts.auth import (
    AddUserRequest,
    ApiKeyReply,
    NamedKeyCreate,
    NamedKeyCreated,
    NamedKeyForm,
    NamedKeyRef,
    NamedKeys,
    NamedKeysRequest,
    PasswordChangeRequest,
    Role,
    SigninRequest,
    SignupRequest,
    UpdateRoleRequest,
    UserRef,
    UsersListRequest,
)
from contracts.endpoint import Endpoint
from gateway.bodies import TRUE, json_bytes, json_value, parse, read_body
from gateway.client_addr import client_address, trusted_networks
from gateway.state import BUS, IDENTITY, SETTINGS, Access, principal_of
from gateway.user_purge import purge_user_data


class RoleForm(msgspec.Struct, kw_only=True):
    """Open WebUI's user update form; ragway changes only the role through it."""

    role: Role


async def _call(request: web.Request, endpoint: Endpoint[Any, Any], payload: bytes) -> bytes:
    """The auth service's reply bytes, relayed as they came."""
    app = request.app
    return await app[BUS].call_raw(endpoint, payload, timeout=app[SETTINGS].request_timeout_seconds)


class PasswordForm(msgspec.Struct, kw_only=True):
    """Open WebUI's UpdatePasswordForm."""

    password: str
    new_password: str


def _address(request: web.Request) -> str:
    return client_address(
        request.remote,
        request.headers.get("X-Forwarded-For"),
        request.app[SETTINGS].trusted_proxies,
    )


async def _creating(request: web.Request, endpoint: Endpoint[Any, Any], payload: bytes) -> bytes:
    try:
        return await _call(request, endpoint, payload)
    except RagwayError as exc:
        if exc.code == "conflict":  # Open WebUI answers 400 for a taken email
            raise invalid(exc.detail) from None
        raise


async def sign_up(request: web.Request) -> bytes:
    """Auth's session reply (JSON bytes) for the sign-up form in the request body
    (sign-ups are limited per client address)."""
    form = parse(await read_body(request), SignupRequest)
    form = msgspec.structs.replace(form, client_addr=_address(request))
    return await _creating(request, subjects.AUTH_SIGNUP, encode(form))


async def sign_in(request: web.Request) -> bytes:
    """Auth's session reply (JSON bytes) for the sign-in form in the request body."""
    form = parse(await read_body(request), SigninRequest)
    form = msgspec.structs.replace(form, client_addr=_address(request))
    return await _call(request, subjects.AUTH_SIGNIN, encode(form))


async def signup(request: web.Request) -> web.Response:
    return json_bytes(await sign_up(request))


async def signin(request: web.Request) -> web.Response:
    return json_bytes(await sign_in(request))


async def add_user(request: web.Request) -> web.Response:
    body = await read_body(request)
    parse(body, AddUserRequest)  # validate here; auth gets the bytes as sent
    return json_bytes(await _creating(request, subjects.AUTH_USER_ADD, body))


def _account_owner(request: web.Request) -> str:
    """The caller, changing its own account; a scoped API key may not (it is a narrower
    credential than the account it belongs to)."""
    principal = principal_of(request)
    if principal.key is not None and principal.key.scoped:
        raise forbidden("A scoped API key may not change the account")
    return principal.id


async def update_password(request: web.Request) -> web.Response:
    me = _account_owner(request)
    form = parse(await read_body(request), PasswordForm)
    change = PasswordChangeRequest(
        user_id=me, password=form.password, new_password=form.new_password
    )
    await _call(request, subjects.AUTH_PASSWORD_UPDATE, encode(change))
    request.app[IDENTITY].cache.drop_user(me)  # auth also tells every other gateway
    return json_bytes(TRUE)


async def signout(request: web.Request) -> web.Response:
    """End every session (JWT) of the caller, on every gateway; API keys stay valid."""
    me = _account_owner(request)
    await _call(request, subjects.AUTH_SIGNOUT, encode(UserRef(user_id=me)))
    request.app[IDENTITY].cache.drop_user(me)
    return json_value({"status": True})


async def current_user(request: web.Request) -> web.Response:
    principal = principal_of(request)
    return json_value(
        {
            "id": principal.id,
            "email": principal.email,
            "name": principal.name,
            "role": principal.role,
            "profile_image_url": "/user.png",
        }
    )


async def create_api_key(request: web.Request) -> web.Response:
    me = UserRef(user_id=principal_of(request).id)
    reply = await _call(request, subjects.AUTH_KEY_CREATE, encode(me))
    # The previous key is replaced: forget it here at once (auth also announces it).
    request.app[IDENTITY].cache.drop_user(me.user_id)
    parse(reply, ApiKeyReply)
    return json_bytes(reply)


async def get_api_key(request: web.Request) -> web.Response:
    me = UserRef(user_id=principal_of(request).id)
    return json_bytes(await _call(request, subjects.AUTH_KEY_GET, encode(me)))


async def delete_api_key(request: web.Request) -> web.Response:
    me = UserRef(user_id=principal_of(request).id)
    await _call(request, subjects.AUTH_KEY_DELETE, encode(me))
    request.app[IDENTITY].cache.drop_user(me.user_id)
    return json_bytes(TRUE)


class StrictNamedKeyForm(NamedKeyForm, forbid_unknown_fields=True):
    """A misspelt scope field is an error here, never an unscoped key."""


def _key_owner(request: web.Request) -> str:
    """Whose named keys these are; a scoped key may not make or drop keys (it could
    otherwise mint itself a wider one)."""
    principal = principal_of(request)
    if principal.key is not None and principal.key.scoped:
        raise forbidden("A scoped API key may not manage API keys")
    return principal.id


async def create_named_key(request: web.Request) -> web.Response:
    owner = _key_owner(request)
    form = parse(await read_body(request), StrictNamedKeyForm)
    message = NamedKeyCreate(user_id=owner, form=form)
    reply = await _call(request, subjects.AUTH_NAMED_KEY_CREATE, encode(message))
    parse(reply, NamedKeyCreated)
    return json_bytes(reply)


async def list_named_keys(request: web.Request) -> web.Response:
    message = NamedKeysRequest(user_id=principal_of(request).id)
    reply = await _call(request, subjects.AUTH_NAMED_KEYS_LIST, encode(message))
    return json_value(parse(reply, NamedKeys).keys)


async def delete_named_key(request: web.Request) -> web.Response:
    ref = NamedKeyRef(user_id=_key_owner(request), key_id=request.match_info["key_id"])
    await _call(request, subjects.AUTH_NAMED_KEY_DELETE, encode(ref))
    # auth announces the revocation to every gateway; this one forgets the user's keys
    # now, so the caller's very next request with it is refused here too
    request.app[IDENTITY].cache.drop_user(ref.user_id)
    return json_bytes(TRUE)


async def list_users(request: web.Request) -> web.Response:
    reply = await request.app[BUS].call(
        subjects.AUTH_USERS_LIST,
        UsersListRequest(),
        timeout=request.app[SETTINGS].request_timeout_seconds,
    )
    users = reply.users
    return json_value({"users": users, "total": len(users)})


async def update_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    form = parse(await read_body(request), RoleForm)
    reply = await _call(
        request,
        subjects.AUTH_USER_UPDATE_ROLE,
        encode(UpdateRoleRequest(user_id=user_id, role=form.role)),
    )
    request.app[IDENTITY].cache.drop_user(user_id)
    return json_bytes(reply)


async def delete_user(request: web.Request) -> web.Response:
    """Delete the account, then everything it owned (see `purge_user_data`).

    Repeating it after a partial failure finishes the purge: a user already gone is 404
    only when nothing of theirs was left either.
    """
    admin = principal_of(request)
    user_id = request.match_info["user_id"]
    if user_id == admin.id:
        raise forbidden("You cannot delete your own account")
    existed = True
    try:
        await _call(request, subjects.AUTH_USER_DELETE, encode(UserRef(user_id=user_id)))
    except RagwayError as exc:
        if exc.code != "not_found":
            raise
        existed = False
    request.app[IDENTITY].cache.drop_user(user_id)
    purged = await purge_user_data(request.app, admin, user_id)
    if not existed and not purged:
        raise not_found("User not found")
    return json_bytes(TRUE)


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    trusted_networks(app[SETTINGS].trusted_proxies)  # a malformed setting fails at startup
    table: list[tuple[str, str, str, Handler, Access]] = [
        ("POST", "/api/v1/auths/signup", "signup", signup, "public"),
        ("POST", "/api/v1/auths/signin", "signin", signin, "public"),
        ("GET", "/api/v1/auths/", "current_user", current_user, "any"),
        # a pending user may change its password and sign out, as in Open WebUI
        ("POST", "/api/v1/auths/update/password", "update_password", update_password, "any"),
        ("GET", "/api/v1/auths/signout", "signout", signout, "any"),
        ("POST", "/api/v1/auths/signout", "signout_post", signout, "any"),
        ("POST", "/api/v1/auths/add", "add_user", add_user, "admin"),
        ("POST", "/api/v1/auths/api_key", "create_api_key", create_api_key, "user"),
        ("GET", "/api/v1/auths/api_key", "get_api_key", get_api_key, "user"),
        ("DELETE", "/api/v1/auths/api_key", "delete_api_key", delete_api_key, "user"),
        ("POST", "/api/v1/auths/api_keys", "create_named_key", create_named_key, "user"),
        ("GET", "/api/v1/auths/api_keys", "list_named_keys", list_named_keys, "user"),
        ("DELETE", "/api/v1/auths/api_keys/{key_id}", "delete_named_key", delete_named_key, "user"),
        ("GET", "/api/v1/users/", "list_users", list_users, "admin"),
        ("POST", "/api/v1/users/{user_id}/update", "update_user", update_user, "admin"),
        ("DELETE", "/api/v1/users/{user_id}", "delete_user", delete_user, "admin"),
    ]
    for method, path, name, handler, level in table:
        app.router.add_route(method, path, handler, name=name)
        access[name] = level
