"""What only Open WebUI's UI (and ragway) put in a chat request, taken out before an
OpenAI-compatible backend sees it: api.openai.com answers 400 to any field it does not
know ("Unrecognized request argument supplied").

The set is Open WebUI 0.12.4's own: the fields `main.py` (`chat_completion`) and
`utils/middleware.py` (`process_chat_payload`) pop before calling a backend. `params`
is the UI's per-chat settings: as Open WebUI does (`apply_model_params_to_body_openai`),
its OpenAI parameters fill the request where the request did not set them, the rest goes.
"""

from __future__ import annotations

from typing import Any

import msgspec

UI_ONLY_FIELDS = frozenset(
    {
        # ragway's and Open WebUI's RAG, chat and tools fields
        "files",
        "chat_id",
        "tool_ids",
        # main.py chat_completion
        "model_item",
        "background_tasks",
        "parent_id",
        "parent_message",
        "user_message",
        "new_chat",
        "message_ids",
        "id",
        "chat_variables",
        "tool_servers",
        "automation_id",
        "assistant_message_id",
        "regeneration_message_id",
        "session_id",
        "folder_id",
        "filter_ids",
        # utils/middleware.py process_chat_payload
        "regeneration_prompt",
        "variables",
        "features",
        "terminal_id",
        "skill_ids",
        "params",
    }
)
# utils/payload.py apply_model_params_to_body_openai: what `params` may set
OPENAI_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "frequency_penalty",
    "presence_penalty",
    "reasoning_effort",
    "seed",
    "stop",
    "logit_bias",
    "response_format",
)
# the fields of an OpenAI chat message; the UI adds its own (files, timestamps, ids...)
MESSAGE_FIELDS = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "audio", "function_call"}
)

_decode = msgspec.json.decode
_encode = msgspec.json.encode


def strip_ui_fields(body: dict[str, msgspec.Raw]) -> None:
    """Leave in `body` (top-level fields, raw JSON values) only what a backend may see."""
    params = body.get("params")
    for field in UI_ONLY_FIELDS.intersection(body):
        del body[field]
    if params is not None:
        _apply_params(body, params)
    messages = body.get("messages")
    if messages is not None:
        cleaned = _clean_messages(_decode(messages))
        if cleaned is not None:
            body["messages"] = msgspec.Raw(_encode(cleaned))


def _apply_params(body: dict[str, msgspec.Raw], raw: msgspec.Raw) -> None:
    params = _decode(raw)
    if not isinstance(params, dict):
        return
    for key in OPENAI_PARAMS:
        if key in params and params[key] is not None and key not in body:
            body[key] = msgspec.Raw(_encode(params[key]))


def _clean_messages(messages: Any) -> list[Any] | None:
    """The messages without the UI's own keys; None when none had any (keep the bytes)."""
    if not isinstance(messages, list):
        return None
    changed = False
    cleaned: list[Any] = []
    for message in messages:
        if isinstance(message, dict) and not MESSAGE_FIELDS.issuperset(message):
            message = {k: v for k, v in message.items() if k in MESSAGE_FIELDS}
            changed = True
        cleaned.append(message)
    return cleaned if changed else None
