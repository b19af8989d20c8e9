"""The auth service's configuration: safe embedded defaults, decoded once in __main__."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from common.placeholders import refuse_placeholder
from common.settings import Positive, ServiceSettings
from contracts.auth import Role

MIN_JWT_SECRET_LENGTH = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash


class Settings(ServiceSettings, kw_only=True):
    """KV buckets `<prefix>_users`, `<prefix>_user_emails`, ... (see auth.store)."""

    # Open WebUI's names work too, so an existing deployment keeps its secret and policy
    aliases: ClassVar = {
        "jwt_secret": ("WEBUI_SECRET_KEY",),
        "default_user_role": ("DEFAULT_USER_ROLE",),
        "enable_signup": ("ENABLE_SIGNUP",),
    }
    # empty: generate one on first start and keep it in KV for every instance
    jwt_secret: str = ""
    jwt_expires_seconds: Positive = 7 * 24 * 3600
    # Open WebUI's defaults: anyone may sign up, and waits as `pending` (signs in, may call
    # nothing else) until an admin activates them. The first user is always admin.
    enable_signup: bool = True
    default_user_role: Role = "pending"
    password_min_length: Positive = 8
    # Failed sign-ins per email from one client address, then a back-off that starts at
    # signin_backoff_seconds and doubles per further failure (capped at the window). The
    # owner signing in from elsewhere is never refused because someone else failed.
    signin_max_failures: Positive = 5
    # ... and per client address over every email (password spraying), same back-off
    signin_max_failures_per_address: Positive = 20
    signin_backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    signin_failure_window_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    # Self sign-ups per client address within the window (admins' `auths/add` is unlimited)
    signup_max_per_address: Positive = 10
    signup_window_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    # argon2id cost: OWASP's baseline (19 MiB, 2 passes, 1 lane), ~0.1 s on one core here.
    # Raising it is safe: stored hashes are upgraded at the user's next sign-in.
    password_time_cost: Positive = 2
    password_memory_kib: Annotated[int, msgspec.Meta(ge=8)] = 19456
    password_parallelism: Positive = 1
    # hashes computed at once: each takes password_memory_kib of RAM and a core
    password_hash_concurrency: Positive = 2

    def check(self) -> None:
        """Reject what the type alone cannot express."""
        refuse_placeholder("RAGWAY_JWT_SECRET", self.jwt_secret)
        if self.jwt_secret and len(self.jwt_secret) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(
                f"jwt_secret must be at least {MIN_JWT_SECRET_LENGTH} characters "
                "(or empty, to have one generated and shared through NATS KV)"
            )
