"""The Ollama pass-through: an HTTP request for the inference-proxy to forward as is.

The gateway subscribes to `stream_inbox` first, then asks on OLLAMA_PROXY. The proxy
replies with the backend's status and content type once the backend answered, then
publishes the body bytes to the inbox as they arrive (binary-safe, unchanged), and
last an end message (framed as `contracts.streams` says) with an
`OllamaProxyEnd` body. The gateway publishes on `OLLAMA_CANCEL.subject_for(stream_id)`
when its client goes away.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from contracts.auth import Principal

# Which Ollama API paths each role may use (Open WebUI's split)
USER_PATHS = frozenset(
    {
        "api/tags",
        "api/version",
        "api/show",
        "api/generate",
        "api/chat",
        "api/embed",
        "api/embeddings",
        # Ollama's OpenAI-compatible routes (Open WebUI forwards them too)
        "v1/models",
        "v1/chat/completions",
        "v1/completions",
        "v1/embeddings",
    }
)
ADMIN_PATHS = frozenset(
    {"api/ps", "api/pull", "api/push", "api/create", "api/copy", "api/delete", "api/blobs"}
)

# The paths that run a model: counted against limits and recorded in the usage ledger
# (the value is the ledger's `kind`); the proxy reports their tokens in OllamaProxyEnd
METERED_PATHS: dict[str, Literal["chat", "embedding"]] = {
    "api/generate": "chat",
    "api/chat": "chat",
    "api/embed": "embedding",
    "api/embeddings": "embedding",
    "v1/chat/completions": "chat",
    "v1/completions": "chat",
    "v1/embeddings": "embedding",
}

# A blob is named by its digest only: no other segment can ride along (`../`, a URL).
BLOB_PATH = re.compile(r"api/blobs/sha256[:-][0-9a-fA-F]{64}")

Method = Literal["GET", "HEAD", "POST", "DELETE"]


def path_level(path: str) -> Literal["user", "admin"] | None:
    """Who may call `path` (e.g. `api/tags`, `api/blobs/sha256:…`); None: not forwarded."""
    if path in USER_PATHS:
        return "user"
    if path in ADMIN_PATHS or BLOB_PATH.fullmatch(path):
        return "admin"
    return None


class OllamaProxyRequest(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    method: Method
    path: str  # without the /ollama prefix and the url_idx suffix: "api/chat"
    url_idx: int | None = None
    query: str = ""
    content_type: str = ""
    body: bytes = b""
    stream_inbox: str
    stream_id: str


class OllamaProxyAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The backend's status line and content type; the body follows on the inbox."""

    status: int
    content_type: str = ""


class OllamaProxyEnd(msgspec.Struct, frozen=True, kw_only=True):
    size: int = 0
    error: str | None = None
    # tokens the reply reported (Ollama's `prompt_eval_count`/`eval_count`, or an OpenAI
    # `usage`), as {"prompt_tokens", "completion_tokens"}; None when it reported none
    usage: dict[str, int] | None = None
    backend: int | None = None  # the Ollama backend's index that answered
