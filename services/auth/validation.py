"""Checks on what people type at signup, with messages they can act on."""

from __future__ import annotations

import re

from common.errors import invalid

MAX_NAME_LENGTH = 255
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit for a forward path
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; this just bounds the work per request
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise invalid("Name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise invalid(f"Name must be at most {MAX_NAME_LENGTH} characters")
    return name


def clean_email(email: str) -> str:
    """The email as stored and compared: trimmed and lowercased."""
    email = email.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise invalid("Invalid email format")
    return email


def check_password(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise invalid(f"Password must be at least {min_length} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise invalid(f"Password must be at most {MAX_PASSWORD_LENGTH} characters")
