"""`/api/embeddings` and `/api/v1/embeddings` answer in the shape Open WebUI 0.12.4 relays
(OpenAI's `CreateEmbeddingResponse`, which routers/openai.py forwards unchanged and
utils/response.py builds from an Ollama answer), for ragway's own model and a backend's."""

from __future__ import annotations

import pytest

from tests.conformance import shapes
from tests.support.stack import Account, Stack

pytestmark = [pytest.mark.conformance, pytest.mark.usefixtures("rag")]


@pytest.mark.parametrize("path", ["/api/embeddings", "/api/v1/embeddings"])
@pytest.mark.parametrize("model", ["all-minilm-l6-v2", "gpt-fake", "llama3.2:latest"])
@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_embeddings_reply_in_open_webuis_shape(
    stack: Stack, user: Account, path: str, model: str, encoding: str
) -> None:
    status, reply = await stack.call(
        "POST",
        path,
        headers=user.key_auth,
        json={"model": model, "input": ["first text", "second text"], "encoding_format": encoding},
    )
    assert status == 200, reply
    assert shapes.missing(shapes.EMBEDDINGS, reply) == set()
    assert reply["object"] == "list" and reply["model"] == model
    assert shapes.missing(shapes.EMBEDDING_USAGE, reply["usage"]) == set()
    assert len(reply["data"]) == 2
    for index, item in enumerate(reply["data"]):
        assert shapes.missing(shapes.EMBEDDING, item) == set()
        assert (item["object"], item["index"]) == ("embedding", index)
        kind = str if encoding == "base64" else list
        assert isinstance(item["embedding"], kind)
