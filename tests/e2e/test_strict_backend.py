"""Open WebUI's UI sends fields of its own with every completion; a strict upstream
(api.openai.com answers 400 to an unknown field) must never see them through ragway."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OPENAI_CHAT_FIELDS, OpenAIFake
from tests.support.stack import Account, Stack

# a completion as Open WebUI 0.12.4's UI posts it (fields from its main.py and middleware)
UI_BODY: dict[str, Any] = {
    "model": "gpt-fake",
    "messages": [
        {"role": "user", "content": "hello there", "timestamp": 1700000000, "files": []},
    ],
    "params": {"temperature": 0.3, "system": "be brief", "stream_response": True},
    "features": {"web_search": False, "image_generation": False, "code_interpreter": False},
    "variables": {"{{USER_NAME}}": "Ada"},
    "model_item": {"id": "gpt-fake", "name": "gpt-fake", "owned_by": "openai"},
    "session_id": "sess-1",
    "chat_id": None,
    "id": "msg-assistant-1",
    "parent_id": "msg-user-1",
    "parent_message": {"id": "msg-user-1", "role": "user", "content": "hello there"},
    "user_message": {"id": "msg-user-1", "role": "user", "content": "hello there"},
    "background_tasks": {"title_generation": True, "tags_generation": True},
    "tool_servers": [],
    "filter_ids": [],
    "folder_id": None,
    "message_ids": None,
    "regeneration_prompt": None,
    "skill_ids": [],
    "terminal_id": None,
}


@pytest.fixture
def strict(backend_fakes: tuple[OpenAIFake, OllamaFake]) -> OpenAIFake:
    openai_fake, _ = backend_fakes
    openai_fake.strict = True
    return openai_fake


async def test_the_strict_fake_refuses_what_the_ui_sends_as_openai_does(
    stack: Stack, strict: OpenAIFake
) -> None:
    auth = {"Authorization": f"Bearer {strict.api_key}"}
    url = strict.base_url + "/chat/completions"
    async with stack.http.post(url, json=UI_BODY, headers=auth) as reply:
        assert reply.status == 400
        assert "Unrecognized request argument" in (await reply.json())["error"]["message"]
    plain = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi", "files": []}]}
    async with stack.http.post(url, json=plain, headers=auth) as reply:
        assert reply.status == 400  # a message field OpenAI does not know


async def test_a_ui_shaped_completion_reaches_a_strict_backend_clean(
    stack: Stack, user: Account, strict: OpenAIFake
) -> None:
    for stream in (False, True):
        async with stack.http.post(
            stack.url + "/api/chat/completions",
            headers=user.key_auth,
            json={**UI_BODY, "stream": stream},
        ) as reply:
            text = await reply.text()
            assert reply.status == 200, text
            assert "error" not in text, text
        assert strict.last_fields <= OPENAI_CHAT_FIELDS
        assert "temperature" in strict.last_fields  # `params` became request parameters
