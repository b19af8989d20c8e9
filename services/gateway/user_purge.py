"""What deleting a user removes, owner by owner.

auth removes the account and its API key (and tells every gateway, which drops the
user's cached principal); retrieval removes the user's files — records, uploaded bytes,
extracted text, vectors, links from other users' collections — and the collections the
user owned (USER_DATA_PURGE); the gateway removes the user's chats and the model presets
the user created (it owns both). Group memberships live on the user's record and go
with it. Plugins are the admins' and stay.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from contracts import subjects
from contracts.auth import Principal
from contracts.files import UserDataPurge
from gateway.routes_chats import CHATS
from gateway.state import BUS, PRESETS, SETTINGS

log = structlog.get_logger()


async def purge_user_data(app: web.Application, admin: Principal, user_id: str) -> int:
    """Remove what `user_id` owned outside auth; returns how many things went."""
    purged = await app[BUS].call(
        subjects.USER_DATA_PURGE,
        UserDataPurge(principal=admin, user_id=user_id),
        # one request for every file of the user: allow far more than one request's time
        timeout=app[SETTINGS].request_timeout_seconds * 6,
    )
    chats = await app[CHATS].delete_all(user_id)
    presets = app[PRESETS].store
    owned = [preset for preset in presets.all() if preset.user_id == user_id]
    for preset in owned:
        await presets.delete(preset.id)
    log.info(
        "user_data_purged",
        user_id=user_id,
        files=purged.files,
        collections=purged.collections,
        chats=chats,
        presets=len(owned),
    )
    return purged.files + purged.collections + chats + len(owned)
