"""Domain errors the auth service raises beyond the common ones."""

from __future__ import annotations

from common.errors import RagwayError, forbidden, unauthorized

BAD_CREDENTIALS = "Incorrect email or password"  # one message: never reveal which part was wrong


def bad_credentials() -> RagwayError:
    return unauthorized(BAD_CREDENTIALS)


def conflict(detail: str) -> RagwayError:
    return RagwayError("conflict", detail)


def rate_limited(detail: str) -> RagwayError:
    return RagwayError("rate_limited", detail)


def signup_closed() -> RagwayError:
    return forbidden("Sign-up is disabled; ask an administrator to add your account")
