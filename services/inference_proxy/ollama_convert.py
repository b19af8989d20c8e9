"""OpenAI chat requests to Ollama `/api/chat`, and Ollama answers back to OpenAI shapes
(the fields Open WebUI's `convert_*_ollama_to_openai` produce, usage timings included)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import msgspec

# OpenAI request fields that become Ollama `options`
_OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "max_tokens": "num_predict",
    "max_completion_tokens": "num_predict",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}


def to_ollama_chat(body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """The `/api/chat` request for an OpenAI chat request."""
    options: dict[str, Any] = dict(body.get("options") or {})
    for openai_name, ollama_name in _OPTION_FIELDS.items():
        if body.get(openai_name) is not None:
            options[ollama_name] = body[openai_name]
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else stop
    request: dict[str, Any] = {
        "model": body["model"],
        "messages": [_message(m) for m in body.get("messages") or [] if isinstance(m, dict)],
        "stream": stream,
    }
    if options:
        request["options"] = options
    for passthrough in ("tools", "keep_alive", "format", "think"):
        if body.get(passthrough) is not None:
            request[passthrough] = body[passthrough]
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and "format" not in request:
        if response_format.get("type") == "json_object":
            request["format"] = "json"
        elif response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
            if schema:
                request["format"] = schema
    return request


def _message(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.get("role", "user")}
    content = message.get("content")
    images: list[str] = []
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                url = part.get("image_url", {})
                url = url.get("url", "") if isinstance(url, dict) else str(url)
                # Ollama takes bare base64; data URLs carry it after the comma
                images.append(url.split(",", 1)[1] if url.startswith("data:") else url)
        out["content"] = "\n".join(texts)
    else:
        out["content"] = content if isinstance(content, str) else ""
    if images:
        out["images"] = images
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        out["tool_calls"] = [_tool_call(call) for call in tool_calls if isinstance(call, dict)]
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    if message.get("name") and out["role"] == "tool":
        out["tool_name"] = message["name"]
    return out


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments else {}
        except ValueError:
            arguments = {}
    return {"function": {"name": function.get("name", ""), "arguments": arguments}}


def openai_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    converted = []
    for index, call in enumerate(calls):
        function = call.get("function") or {}
        converted.append(
            {
                "index": call.get("index", function.get("index", index)),
                "id": call.get("id") or f"call_{uuid.uuid4()}",
                "type": "function",
                "function": {
                    "name": function.get("name", ""),
                    "arguments": json.dumps(function.get("arguments", {})),
                },
            }
        )
    return converted


def ollama_usage(data: dict[str, Any]) -> dict[str, Any]:
    """Open WebUI's usage for an Ollama answer: OpenAI token counts plus Ollama timings."""
    prompt_tokens = int(data.get("prompt_eval_count") or 0)
    completion_tokens = int(data.get("eval_count") or 0)
    eval_duration = data.get("eval_duration") or 0
    prompt_eval_duration = data.get("prompt_eval_duration") or 0
    total_seconds = int(data.get("total_duration") or 0) // 1_000_000_000
    return {
        "input_tokens": prompt_tokens,
        "output_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "response_token/s": (
            round(completion_tokens / (eval_duration / 1_000_000_000), 2)
            if eval_duration > 0
            else "N/A"
        ),
        "prompt_token/s": (
            round(prompt_tokens / (prompt_eval_duration / 1_000_000_000), 2)
            if prompt_eval_duration > 0
            else "N/A"
        ),
        "total_duration": data.get("total_duration", 0),
        "load_duration": data.get("load_duration", 0),
        "prompt_eval_count": data.get("prompt_eval_count", 0),
        "prompt_eval_duration": prompt_eval_duration,
        "eval_count": data.get("eval_count", 0),
        "eval_duration": eval_duration,
        "approximate_total": (
            f"{total_seconds // 3600}h{(total_seconds % 3600) // 60}m{total_seconds % 60}s"
        ),
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def finish_reason(data: dict[str, Any], had_tool_calls: bool) -> str:
    if had_tool_calls:
        return "tool_calls"
    return "length" if data.get("done_reason") == "length" else "stop"


def completion_from_ollama(data: dict[str, Any], model: str) -> bytes:
    """An OpenAI `chat.completion` (JSON bytes) for a non-streamed Ollama answer."""
    message = data.get("message") or {}
    reply: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
    if message.get("thinking"):
        reply["reasoning_content"] = message["thinking"]
    calls = message.get("tool_calls")
    if calls:
        reply["tool_calls"] = openai_tool_calls(calls)
    return msgspec.json.encode(
        {
            "id": f"chatcmpl-{uuid.uuid4()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": data.get("model") or model,
            "choices": [
                {
                    "index": 0,
                    "message": reply,
                    "logprobs": None,
                    "finish_reason": finish_reason(data, bool(calls)),
                }
            ],
            "usage": ollama_usage(data),
        }
    )
