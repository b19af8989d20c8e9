"""Workspace models ("presets") in JetStream KV (`<prefix>_presets`), owned by the gateway.

Every gateway mirrors the bucket in memory, so telling a preset's id from a backend
model's costs a dict lookup, and a completion by a plain model id pays nothing for
presets existing. Whatever decides access (a completion, a read, a change) reads the
entry itself from the bucket: a grant revoked or a preset deleted on one gateway holds
on every gateway at once, not after the mirror catches up.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import msgspec
from nats.js import JetStreamContext

from catalog.buckets import Bucket
from catalog.mirror import Mirror
from common.errors import RagwayError
from contracts.presets import Preset

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Preset).decode


def now() -> int:
    return int(time.time())


def key_of(preset_id: str) -> str:
    """Model ids may hold characters KV keys cannot (`llama3.2:latest`, spaces are not)."""
    return hashlib.sha256(preset_id.encode()).hexdigest()


class PresetStore:
    def __init__(self, bucket: Bucket, mirror: Mirror[Preset]) -> None:
        self._bucket = bucket
        self._mirror = mirror

    @classmethod
    async def open(cls, js: JetStreamContext, prefix: str, replicas: int = 1) -> PresetStore:
        bucket = await Bucket.open(js, f"{prefix}_presets", replicas)
        mirror = Mirror(bucket, _decode)
        await mirror.start()
        return cls(bucket, mirror)

    async def aclose(self) -> None:
        await self._mirror.aclose()

    def known(self, preset_id: str) -> bool:
        """Whether `preset_id` names a preset as far as this gateway has seen (no I/O)."""
        return bool(self._mirror.items) and key_of(preset_id) in self._mirror.items

    def all(self) -> list[Preset]:
        """Every preset as mirrored (listings; milliseconds behind the bucket at most)."""
        return list(self._mirror.items.values())

    async def get(self, preset_id: str) -> Preset | None:
        """The preset as stored now."""
        value = await self._bucket.get(key_of(preset_id))
        return None if value is None else _decode(value)

    async def create(self, preset: Preset) -> bool:
        """False when a preset with that id exists."""
        if not await self._bucket.claim(key_of(preset.id), _encode(preset)):
            return False
        self._mirror.items[key_of(preset.id)] = preset  # read-your-writes here
        return True

    async def update(self, preset_id: str, change: Callable[[Preset], Preset]) -> Preset | None:
        """Apply `change` with compare-and-set (it may raise); None when there is none."""
        busy = RagwayError("conflict", "The model changed concurrently; try again")
        changed = await self._bucket.update(key_of(preset_id), _decode, change, busy)
        if changed is None:
            return None
        self._mirror.items[key_of(preset_id)] = changed[1]
        return changed[1]

    async def delete(self, preset_id: str) -> None:
        await self._bucket.purge(key_of(preset_id))
        self._mirror.items.pop(key_of(preset_id), None)
