"""The auth endpoints: one method per subject, msgspec Structs in and out.

Authorization (who may call what) is the gateway's job; these just do the operation.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid

import msgspec
from structlog.typing import FilteringBoundLogger

from auth.errors import bad_credentials, conflict, rate_limited, signup_closed
from auth.named_keys import NamedKeyStore
from auth.passwords import Passwords
from auth.ratelimit import AttemptLimiter, Limit, TooManyAttempts
from auth.settings import Settings
from auth.store import UserRecord, UserStore, now
from auth.tokens import TokenIssuer
from auth.validation import MAX_PASSWORD_LENGTH, check_password, clean_email, clean_name
from common.bus import Bus
from common.errors import invalid, not_found, unauthorized
from common.service import ServiceHost
from contracts import subjects
from contracts.auth import (
    AddUserRequest,
    ApiKeyReply,
    AuthEvent,
    JwtParams,
    JwtParamsRequest,
    KeyResolveRequest,
    Ok,
    PasswordChangeRequest,
    Principal,
    Role,
    Session,
    SigninRequest,
    SignupRequest,
    UpdateRoleRequest,
    User,
    UserDetail,
    UserRef,
    UsersList,
    UsersListRequest,
)

API_KEY_PREFIX = "sk-"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_hex(16)


def hash_api_key(key: str) -> str:
    # API keys are 128 random bits, so a fast hash is enough: nobody can brute-force the
    # preimage, and resolving a key on every request must stay cheap (unlike passwords).
    return hashlib.sha256(key.encode()).hexdigest()


def key_hint(key: str) -> str:
    return f"{key[:7]}...{key[-4:]}"


class AuthHandlers:
    def __init__(
        self,
        *,
        settings: Settings,
        store: UserStore,
        passwords: Passwords,
        tokens: TokenIssuer,
        limiter: AttemptLimiter,
        signups: AttemptLimiter,
        bus: Bus,
        log: FilteringBoundLogger,
        named_keys: NamedKeyStore | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._named_keys = named_keys
        self._passwords = passwords
        self._tokens = tokens
        self._limiter = limiter
        self._signups = signups
        self._bus = bus
        self._log = log

    async def serve(self, host: ServiceHost) -> None:
        """Answer every auth endpoint on `host`."""
        await host.serve(subjects.AUTH_SIGNUP, self.signup)
        await host.serve(subjects.AUTH_SIGNIN, self.signin)
        await host.serve(subjects.AUTH_USER_ADD, self.add_user)
        await host.serve(subjects.AUTH_PASSWORD_UPDATE, self.change_password)
        await host.serve(subjects.AUTH_SIGNOUT, self.signout)
        await host.serve(subjects.AUTH_JWT_PARAMS, self.jwt_params)
        await host.serve(subjects.AUTH_USER_GET, self.get_user)
        await host.serve(subjects.AUTH_USERS_LIST, self.list_users)
        await host.serve(subjects.AUTH_USER_UPDATE_ROLE, self.update_role)
        await host.serve(subjects.AUTH_USER_DELETE, self.delete_user)
        await host.serve(subjects.AUTH_KEY_CREATE, self.create_key)
        await host.serve(subjects.AUTH_KEY_GET, self.get_key)
        await host.serve(subjects.AUTH_KEY_DELETE, self.delete_key)
        await host.serve(subjects.AUTH_KEY_RESOLVE, self.resolve_key)

    # --- sessions --------------------------------------------------------------------

    async def signup(self, request: SignupRequest) -> Session:
        """Self sign-up: the first user becomes admin; later ones need sign-up to be open."""
        if not self._settings.enable_signup and await self._store.has_first_user():
            raise signup_closed()
        name = clean_name(request.name)
        email = clean_email(request.email)
        check_password(request.password, self._settings.password_min_length)
        limit = Limit(self._settings.signup_max_per_address)
        try:  # before the hash: a refused sign-up costs no argon2 work
            await self._signups.acquire([(f"signup:{request.client_addr}", limit)])
        except TooManyAttempts as exc:
            self._log.warning("signup_rate_limited", client_addr=request.client_addr)
            raise rate_limited(f"Too many sign-ups; try again in {exc.seconds} s") from None
        record = await self._create(
            name, email, request.password, self._settings.default_user_role, first_admin=True
        )
        self._log.info("user_signed_up", user_id=record.id, role=record.role)
        return self._session(record)

    async def add_user(self, request: AddUserRequest) -> Session:
        """An admin adds a user with the role they chose (the gateway checks the admin)."""
        name = clean_name(request.name)
        email = clean_email(request.email)
        check_password(request.password, self._settings.password_min_length)
        record = await self._create(name, email, request.password, request.role)
        self._log.info("user_added", user_id=record.id, role=record.role)
        return self._session(record)

    async def _create(
        self, name: str, email: str, password: str, role: Role, *, first_admin: bool = False
    ) -> UserRecord:
        """Store a new user; with `first_admin`, the very first user ever becomes admin."""
        password_hash = await self._passwords.hash(password)
        user_id = str(uuid.uuid4())
        if not await self._store.claim_email(email, user_id):
            raise conflict("This email is already registered")
        first = False
        try:
            first = first_admin and await self._store.claim_first_user(user_id)
            if first_admin and not first and not self._settings.enable_signup:
                raise signup_closed()  # another sign-up took the admin claim meanwhile
            created_ns = time.time_ns()
            created = created_ns // 1_000_000_000
            record = UserRecord(
                id=user_id,
                email=email,
                name=name,
                role="admin" if first else role,
                password_hash=password_hash,
                created_at=created,
                updated_at=created,
                last_active_at=created,
                created_ns=created_ns,
            )
            await self._store.insert(record)
        except BaseException:
            await self._store.release_email(email, user_id)
            if first:
                await self._store.release_first_user(user_id)
            raise
        return record

    async def signin(self, request: SigninRequest) -> Session:
        email = request.email.strip().lower()
        address = request.client_addr
        # Counted per email *and* address: an attacker's failures slow the attacker's
        # address down, never the owner signing in from theirs.
        pair = f"signin:{email}|{address}"
        keys = [(pair, self._signin_limit(self._settings.signin_max_failures))]
        if address:
            limit = self._signin_limit(self._settings.signin_max_failures_per_address)
            keys.append((f"addr:{address}", limit))
        try:
            stamp = await self._limiter.acquire(keys)
        except TooManyAttempts as exc:
            self._log.warning("signin_rate_limited", client_addr=address)
            raise rate_limited(
                f"Too many failed sign-in attempts; try again in {exc.seconds} s"
            ) from None
        record = await self._store.find_by_email(email)
        password = request.password[: MAX_PASSWORD_LENGTH + 1]
        if not await self._passwords.verify(record.password_hash if record else None, password):
            self._log.info(
                "signin_failed",
                reason="bad_password" if record else "unknown_email",
                user_id=record.id if record else None,
                client_addr=address,
            )
            raise bad_credentials()
        assert record is not None
        await self._limiter.reset(pair)
        for key, _ in keys[1:]:
            await self._limiter.release(key, stamp)
        record = await self._touch(record, request.password)
        self._log.info("user_signed_in", user_id=record.id)
        return self._session(record)

    async def change_password(self, request: PasswordChangeRequest) -> Ok:
        """Check the current password, store the new one, end every earlier session."""
        found = await self._store.get(request.user_id)
        if found is None:
            raise not_found("User not found")
        record = found[0]
        key = f"password:{record.id}"  # a stolen session must not guess the password here
        try:
            stamp = await self._limiter.acquire(
                [(key, self._signin_limit(self._settings.signin_max_failures))]
            )
        except TooManyAttempts as exc:
            raise rate_limited(f"Too many wrong passwords; try again in {exc.seconds} s") from None
        password = request.password[: MAX_PASSWORD_LENGTH + 1]
        if not await self._passwords.verify(record.password_hash, password):
            raise invalid("Incorrect password")
        await self._limiter.release(key, stamp)
        check_password(request.new_password, self._settings.password_min_length)
        new_hash = await self._passwords.hash(request.new_password)
        _, after = await self._store.change(
            record.id,
            lambda r: msgspec.structs.replace(
                r, password_hash=new_hash, session_stamp=r.session_stamp + 1, updated_at=now()
            ),
        )
        self._log.info("password_changed", user_id=after.id)
        await self._publish(AuthEvent(kind="user_updated", user_id=after.id))
        return Ok()

    async def signout(self, ref: UserRef) -> Ok:
        """End every session (JWT) the user holds; API keys stay valid."""
        _, after = await self._store.change(
            ref.user_id,
            lambda r: msgspec.structs.replace(r, session_stamp=r.session_stamp + 1),
        )
        self._log.info("user_signed_out", user_id=after.id)
        await self._publish(AuthEvent(kind="user_updated", user_id=after.id))
        return Ok()

    def _signin_limit(self, allowed: int) -> Limit:
        return Limit(allowed, backoff_seconds=self._settings.signin_backoff_seconds)

    async def jwt_params(self, _: JwtParamsRequest) -> JwtParams:
        return self._tokens.params

    def _session(self, record: UserRecord) -> Session:
        token, expires_at = self._tokens.issue(record.id, record.session_stamp)
        return Session(
            token=token,
            expires_at=expires_at,
            id=record.id,
            email=record.email,
            name=record.name,
            role=record.role,
            profile_image_url=record.profile_image_url,
        )

    async def _touch(self, record: UserRecord, password: str) -> UserRecord:
        """Note the sign-in time, and upgrade the hash if the cost settings went up."""
        new_hash = record.password_hash
        if self._passwords.needs_rehash(record.password_hash):
            new_hash = await self._passwords.hash(password)
        try:
            _, after = await self._store.change(
                record.id,
                lambda r: msgspec.structs.replace(
                    r,
                    last_active_at=now(),
                    password_hash=new_hash
                    if r.password_hash == record.password_hash
                    else r.password_hash,
                ),
            )
        except Exception:
            self._log.warning("last_active_update_failed", user_id=record.id)
            return record
        return after

    # --- users -----------------------------------------------------------------------

    async def get_user(self, ref: UserRef) -> UserDetail:
        found = await self._store.get(ref.user_id)
        if found is None:
            raise not_found("User not found")
        return found[0].detail()

    async def list_users(self, _: UsersListRequest) -> UsersList:
        records = await self._store.all()
        records.sort(key=lambda r: (r.created_at, r.created_ns, r.id))
        return UsersList(users=[r.public() for r in records])

    async def update_role(self, request: UpdateRoleRequest) -> User:
        before, after = await self._store.change(
            request.user_id,
            lambda r: msgspec.structs.replace(r, role=request.role, updated_at=now()),
        )
        self._log.info("user_role_updated", user_id=after.id, old=before.role, new=after.role)
        await self._publish(AuthEvent(kind="user_updated", user_id=after.id))
        return after.public()

    async def delete_user(self, ref: UserRef) -> Ok:
        record = await self._store.remove(ref.user_id)
        named = await self._named_keys.of_user(record.id) if self._named_keys else []
        for key in named:  # they resolve to nobody now; their records go too
            assert self._named_keys is not None
            await self._named_keys.remove(key)
        self._log.info("user_deleted", user_id=record.id, named_keys=len(named))
        await self._publish(AuthEvent(kind="user_deleted", user_id=record.id))
        return Ok()

    # --- API keys --------------------------------------------------------------------

    async def create_key(self, ref: UserRef) -> ApiKeyReply:
        key = new_api_key()
        replaced = await self._store.set_api_key(ref.user_id, hash_api_key(key), key_hint(key))
        self._log.info("api_key_created", user_id=ref.user_id, replaced=bool(replaced))
        if replaced:
            await self._publish(
                AuthEvent(kind="key_revoked", user_id=ref.user_id, key_hash=replaced)
            )
        return ApiKeyReply(api_key=key)

    async def get_key(self, ref: UserRef) -> ApiKeyReply:
        found = await self._store.get(ref.user_id)
        if found is None or not found[0].api_key_hint:
            raise not_found("No API key")
        return ApiKeyReply(api_key=found[0].api_key_hint)

    async def delete_key(self, ref: UserRef) -> Ok:
        found = await self._store.get(ref.user_id)
        if found is None or not found[0].api_key_hash:
            raise not_found("No API key")
        removed = await self._store.clear_api_key(ref.user_id)
        if not removed:
            raise not_found("No API key")
        self._log.info("api_key_revoked", user_id=ref.user_id)
        await self._publish(AuthEvent(kind="key_revoked", user_id=ref.user_id, key_hash=removed))
        return Ok()

    async def resolve_key(self, request: KeyResolveRequest) -> Principal:
        record = await self._store.user_for_key(request.key_hash)
        if record is not None:
            return record.principal()
        named = None
        if self._named_keys is not None:
            named = await self._named_keys.for_hash(request.key_hash)
        if named is None:
            raise unauthorized("Invalid API key")
        if named.expired(time.time()):
            raise unauthorized("API key expired")
        found = await self._store.get(named.user_id)
        if found is None:
            raise unauthorized("Invalid API key")
        return msgspec.structs.replace(found[0].principal(), key=named.grant())

    async def _publish(self, event: AuthEvent) -> None:
        await self._bus.publish(subjects.AUTH_EVENTS, event)
