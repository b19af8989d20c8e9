"""auth service messages: users, sessions, API keys, and the events gateways cache by."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Role = Literal["admin", "user", "pending"]


class KeyGrant(msgspec.Struct, frozen=True, kw_only=True):
    """The named API key a caller used: its id, expiry and scope.

    `models` / `collections`: the only ones the key may use; None: whatever its user may.
    """

    id: str
    expires_at: int | None = None
    models: tuple[str, ...] | None = None
    collections: tuple[str, ...] | None = None

    @property
    def scoped(self) -> bool:
        return self.models is not None or self.collections is not None


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: what every other service needs to know about a user."""

    id: str
    email: str
    name: str
    role: Role
    # the groups the user is a member of: grants to a group reach its members
    group_ids: tuple[str, ...] = ()
    # set when the caller used a named API key (None: a session or the user's own key)
    key: KeyGrant | None = None
    # bumped by a password change or a sign-out: JWTs that carry an older one are refused
    session_stamp: int = 0


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    name: str
    role: Role
    created_at: int
    updated_at: int
    last_active_at: int = 0
    profile_image_url: str = "/user.png"
    group_ids: tuple[str, ...] = ()


class SignupRequest(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    email: str
    password: str
    client_addr: str = ""  # set by the gateway: sign-ups are limited per address


class AddUserRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An admin adds a user (Open WebUI's AddUserForm): sign-up need not be open."""

    name: str
    email: str
    password: str
    role: Role = "pending"
    profile_image_url: str = "/user.png"


class PasswordChangeRequest(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    password: str  # the current one
    new_password: str


class SigninRequest(msgspec.Struct, frozen=True, kw_only=True):
    email: str
    password: str
    client_addr: str = ""


class Session(msgspec.Struct, frozen=True, kw_only=True):
    """The signup/signin reply, shaped as Open WebUI's."""

    token: str
    token_type: str = "Bearer"
    expires_at: int
    id: str
    email: str
    name: str
    role: Role
    profile_image_url: str = "/user.png"


class JwtParamsRequest(msgspec.Struct, frozen=True, kw_only=True):
    pass


class JwtParams(msgspec.Struct, frozen=True, kw_only=True):
    """What a gateway needs to verify JWTs locally, without a round trip per request."""

    secret: str
    algorithm: str = "HS256"


class UserRef(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str


class UserDetail(User, frozen=True, kw_only=True):
    """AUTH_USER_GET's reply: the user, and what a gateway checks a JWT against."""

    session_stamp: int = 0


class UsersListRequest(msgspec.Struct, frozen=True, kw_only=True):
    pass


class UsersList(msgspec.Struct, frozen=True, kw_only=True):
    users: list[User]


class UpdateRoleRequest(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    role: Role


class KeyResolveRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Look up an API key by its SHA-256 hex digest: the raw key never crosses the bus."""

    key_hash: str


class ApiKeyReply(msgspec.Struct, frozen=True, kw_only=True):
    """`api_key` is the full key once, when created; afterwards a masked hint."""

    api_key: str


class Ok(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool = True


class AuthEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Published on AUTH_EVENTS whenever cached principals or keys become stale."""

    kind: Literal["user_updated", "user_deleted", "key_revoked"]
    user_id: str
    key_hash: str = ""


# --- named API keys (ragway's own: several per user, each with a name, expiry and scope)

KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
ScopeId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Scope = Annotated[list[ScopeId], msgspec.Meta(max_length=256)]


class NamedKeyForm(msgspec.Struct, kw_only=True):
    """HTTP body of `POST /api/v1/auths/api_keys` (the gateway refuses unknown fields:
    a misspelt `models` must not make an unscoped key)."""

    name: KeyName
    expires_at: int | None = None  # epoch seconds
    models: Scope | None = None
    collections: Scope | None = None


class NamedKeyCreate(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    form: NamedKeyForm


class NamedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A named key's record as its owner sees it: never the secret, only a hint."""

    id: str
    name: str
    key_hint: str
    created_at: int
    expires_at: int | None = None
    models: list[str] | None = None
    collections: list[str] | None = None


class NamedKeyCreated(msgspec.Struct, frozen=True, kw_only=True):
    """The reply to a create: the record's fields and `api_key`, the secret, this once."""

    id: str
    name: str
    api_key: str
    key_hint: str
    created_at: int
    expires_at: int | None = None
    models: list[str] | None = None
    collections: list[str] | None = None


class NamedKeysRequest(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str


class NamedKeys(msgspec.Struct, frozen=True, kw_only=True):
    keys: list[NamedKey]


class NamedKeyRef(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    key_id: str
