"""Session JWTs (HS256) and the one secret every auth instance and gateway shares."""

from __future__ import annotations

import secrets
import time
import uuid

import jwt
from structlog.typing import FilteringBoundLogger

from catalog.buckets import Bucket
from contracts.auth import JwtParams

ALGORITHM = "HS256"
SECRET_KEY = "jwt_secret"
SESSION_STAMP_CLAIM = "session_stamp"  # Open WebUI's claim name for the same idea


async def load_jwt_secret(meta: Bucket, configured: str, log: FilteringBoundLogger) -> str:
    """The configured secret, else the one kept in KV, else a new one stored there.

    `create` is atomic, so when instances start together exactly one secret wins and the
    others read it back.
    """
    if configured:
        log.info("jwt_secret_ready", source="settings")
        return configured
    candidate = secrets.token_urlsafe(48)
    if not await meta.claim(SECRET_KEY, candidate.encode()):
        log.info("jwt_secret_ready", source="kv")
        entry = await meta.kv.get(SECRET_KEY)
        return (entry.value or b"").decode()
    log.info("jwt_secret_ready", source="generated")
    return candidate


class TokenIssuer:
    """Signs session tokens; gateways verify them with `params`."""

    def __init__(self, secret: str, lifetime_seconds: int) -> None:
        self._secret = secret
        self._lifetime = lifetime_seconds
        self.params = JwtParams(secret=secret, algorithm=ALGORITHM)

    def issue(self, user_id: str, session_stamp: int = 0) -> tuple[str, int]:
        """A token for `user_id` and its expiry (epoch seconds).

        `session_stamp` is the user's at issue time: gateways refuse the token once the
        user's stamp moved on (a password change, a sign-out).
        """
        issued_at = int(time.time())
        expires_at = issued_at + self._lifetime
        claims = {
            "sub": user_id,
            "iat": issued_at,
            "exp": expires_at,
            "jti": uuid.uuid4().hex,
            SESSION_STAMP_CLAIM: session_stamp,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_at
