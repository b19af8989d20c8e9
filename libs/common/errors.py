"""Domain errors that cross NATS as a code and a description.

Only the gateway knows HTTP: it maps these codes to statuses in one place.
"""

from __future__ import annotations

from typing import Literal

ErrorCode = Literal[
    "invalid",  # the request is malformed or breaks a rule (400/422)
    "unauthorized",  # no valid credential (401)
    "forbidden",  # authenticated but not allowed (403)
    "not_found",  # absent, or not yours (404: never reveal existence)
    "conflict",  # clashes with existing state (409)
    "too_large",  # over a configured size limit (413)
    "unsupported",  # a content type we do not handle (415)
    "rate_limited",  # too many attempts (429)
    "over_quota",  # the user's storage quota is used up (507)
    "internal",  # our bug; details stay in the logs (500)
    "bad_gateway",  # a model backend failed or is unreachable (502)
    "unavailable",  # a ragway capability is down (503)
    "timeout",  # a backend or service did not answer in time (504)
]

ERROR_CODES: frozenset[str] = frozenset(ErrorCode.__args__)  # type: ignore[attr-defined]


class RagwayError(Exception):
    """An error with a stable code and a message a person can act on."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code: ErrorCode = code
        self.detail = detail

    def __repr__(self) -> str:
        return f"RagwayError({self.code!r}, {self.detail!r})"


def invalid(detail: str) -> RagwayError:
    return RagwayError("invalid", detail)


def not_found(detail: str = "Not found") -> RagwayError:
    return RagwayError("not_found", detail)


def forbidden(detail: str = "You are not allowed to do this") -> RagwayError:
    return RagwayError("forbidden", detail)


def unauthorized(detail: str = "Not authenticated") -> RagwayError:
    return RagwayError("unauthorized", detail)
