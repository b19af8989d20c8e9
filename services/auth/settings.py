"""The auth service's configuration: safe embedded defaults, decoded once in __main__."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from common.settings import Positive, ServiceSettings
from contracts.auth import Role

MIN_JWT_SECRET_LENGTH = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash


class Settings(ServiceSettings, kw_only=True):
    """KV buckets `<prefix>_users`, `<prefix>_user_emails`, ... (see auth.store)."""

    # Open WebUI's names work too, so an existing deployment keeps its secret and role policy
    aliases: ClassVar = {
        "jwt_secret": ("WEBUI_SECRET_KEY",),
        "default_user_role": ("DEFAULT_USER_ROLE",),
    }
    # empty: generate one on first start and keep it in KV for every instance
    jwt_secret: str = ""
    jwt_expires_seconds: Positive = 7 * 24 * 3600
    default_user_role: Role = "user"
    password_min_length: Positive = 8
    # failed sign-ins allowed per email and per client address within the window
    signin_max_failures: Positive = 5
    signin_failure_window_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    # argon2id cost: OWASP's baseline (19 MiB, 2 passes, 1 lane), ~0.1 s on one core here.
    # Raising it is safe: stored hashes are upgraded at the user's next sign-in.
    password_time_cost: Positive = 2
    password_memory_kib: Annotated[int, msgspec.Meta(ge=8)] = 19456
    password_parallelism: Positive = 1
    # hashes computed at once: each takes password_memory_kib of RAM and a core
    password_hash_concurrency: Positive = 2

    def check(self) -> None:
        """Reject what the type alone cannot express."""
        if self.jwt_secret and len(self.jwt_secret) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(
                f"jwt_secret must be at least {MIN_JWT_SECRET_LENGTH} characters "
                "(or empty, to have one generated and shared through NATS KV)"
            )
