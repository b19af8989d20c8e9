"""argon2id password hashes, computed off the event loop and bounded in number."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    """Hash and verify passwords in worker threads, at most `concurrency` at a time.

    Each hash costs `memory_kib` of RAM and a core for a noticeable time, so a burst of
    sign-ins queues here instead of exhausting memory or starving the event loop.
    """

    def __init__(self, hasher: PasswordHasher, concurrency: int) -> None:
        self._hasher = hasher
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy_hash = ""

    async def start(self) -> None:
        """Prepare the hash verified for unknown emails, so they take as long as known ones."""
        self._dummy_hash = await self.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether `password` matches; with no stored hash, spend the same time and say no."""
        target = stored_hash if stored_hash is not None else self._dummy_hash
        async with self._slots:
            matched = await asyncio.to_thread(self._verify, target, password)
        return matched and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with weaker parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return False

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
