"""Uploads and status polling over HTTP for the RAG end-to-end tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.support.stack import Account, Stack


async def upload(
    stack: Stack, account: Account, content: bytes, name: str, content_type: str | None = None
) -> dict[str, Any]:
    data = aiohttp.FormData()
    data.add_field("file", content, filename=name, content_type=content_type)
    status, record = await stack.call("POST", "/api/v1/files/", headers=account.key_auth, data=data)
    assert status == 200, record
    return dict(record)


async def settled(
    stack: Stack, account: Account, file_id: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Poll the status route until the file is completed or failed."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = await stack.call(
            "GET", f"/api/v1/files/{file_id}/process/status", headers=account.key_auth
        )
        assert status == 200, body
        if body["status"] in ("completed", "failed"):
            return dict(body)
        assert time.monotonic() < deadline, f"{file_id} still {body} after {timeout} s"
        await asyncio.sleep(0.05)


async def completed_upload(
    stack: Stack, account: Account, content: bytes, name: str
) -> dict[str, Any]:
    record = await upload(stack, account, content, name)
    state = await settled(stack, account, record["id"])
    assert state["status"] == "completed", state
    return record
