"""Open WebUI's template variables in a preset's system prompt (`{{CURRENT_DATE}}`,
`{{USER_NAME}}`, ...), filled per request as its `prompt_template` does. Profile fields
ragway does not keep (bio, location, ...) read "Unknown", as in Open WebUI for a user
who left them empty."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from contracts.auth import Principal

UNKNOWN_PROFILE_FIELDS = (
    "{{USER_BIO}}",
    "{{USER_GENDER}}",
    "{{USER_BIRTH_DATE}}",
    "{{USER_AGE}}",
    "{{USER_LOCATION}}",
    "{{USER_LANGUAGE}}",
)


async def fill(
    template: str,
    principal: Principal,
    group_names: Callable[[], Awaitable[list[str]]],
    at: datetime | None = None,
) -> str:
    """`template` with every variable replaced; `group_names` is asked only when used."""
    if "{{" not in template:
        return template
    moment = at or datetime.now().astimezone()
    date, time = moment.strftime("%Y-%m-%d"), moment.strftime("%I:%M:%S %p")
    values = {
        "{{CURRENT_DATE}}": date,
        "{{CURRENT_TIME}}": time,
        "{{CURRENT_DATETIME}}": f"{date} {time}",
        "{{CURRENT_WEEKDAY}}": moment.strftime("%A"),
        "{{CURRENT_TIMEZONE}}": moment.tzname() or "UTC",
        "{{USER_NAME}}": principal.name,
        "{{USER_EMAIL}}": principal.email,
    }
    for variable, value in values.items():
        template = template.replace(variable, value)
    for variable in UNKNOWN_PROFILE_FIELDS:
        template = template.replace(variable, "Unknown")
    if "{{USER_GROUPS}}" in template:
        template = template.replace("{{USER_GROUPS}}", ", ".join(await group_names()))
    return template


def with_system_message(messages: list[dict[str, object]], content: str) -> list[dict[str, object]]:
    """The preset's system prompt first: in front of the request's own system message
    (one message, as Open WebUI does), or as a new first message."""
    if not content:
        return messages
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        existing = first.get("content")
        if isinstance(existing, list):
            first["content"] = [{"type": "text", "text": content}, *existing]
        else:
            first["content"] = f"{content}\n{existing or ''}".rstrip("\n")
        return [first, *messages[1:]]
    return [{"role": "system", "content": content}, *messages]
