"""The official `openai` Python SDK against ragway's `/api`: replies, streams, typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import openai
import pytest

from tests.fakes.ollama_fake import OllamaFake, embedding_of
from tests.fakes.openai_fake import OpenAIFake
from tests.gateway.rag_helpers import form
from tests.support.live import OLLAMA_MODEL, OPENAI_MODEL, Account, Stack

QUESTION = [{"role": "user", "content": "why is the sky blue?"}]
EMBEDDING_MODEL = "all-minilm-l6-v2"  # ragway's own (the retrieval service runs it)


@pytest.fixture
async def client(stack: Stack, user: Account) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=f"{stack.url}/api", api_key=user.api_key, max_retries=0)
    yield sdk
    await sdk.close()


async def test_models_list_parses_every_backend_model(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    owned = {model.id: model.owned_by for model in page.data}
    assert owned[OPENAI_MODEL] == "openai" and owned[OLLAMA_MODEL] == "ollama"


@pytest.mark.parametrize("model", [OPENAI_MODEL, OLLAMA_MODEL])
async def test_a_completion_parses_into_the_sdk_types(
    client: openai.AsyncOpenAI, model: str
) -> None:
    completion = await client.chat.completions.create(model=model, messages=QUESTION)
    assert completion.object == "chat.completion" and completion.id
    assert completion.model == model
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: why is the sky blue?"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0


@pytest.mark.parametrize("model", [OPENAI_MODEL, OLLAMA_MODEL])
async def test_a_stream_parses_chunk_by_chunk_with_usage_at_the_end(
    client: openai.AsyncOpenAI, model: str
) -> None:
    stream = await client.chat.completions.create(
        model=model, messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert len({chunk.id for chunk in chunks}) == 1
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert deltas[0].role == "assistant"
    assert "".join(delta.content or "" for delta in deltas) == "Echo: why is the sky blue?"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert usage and usage[-1].completion_tokens > 0


async def test_a_wrong_key_raises_authentication_error_401(client: openai.AsyncOpenAI) -> None:
    wrong = client.with_options(api_key="sk-" + "0" * 32)
    with pytest.raises(openai.AuthenticationError) as raised:
        await wrong.chat.completions.create(model=OPENAI_MODEL, messages=QUESTION)
    assert raised.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        await wrong.models.list()


async def test_an_unknown_model_raises_not_found_error_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert raised.value.status_code == 404
    assert raised.value.body == {"detail": "Model not found"}


async def test_an_invalid_request_raises_bad_request_error_400(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(
            model=OPENAI_MODEL,
            messages=QUESTION,
            extra_body={"messages": "not a list"},
        )
    assert raised.value.status_code == 400
    assert isinstance(raised.value.body, dict) and "messages" in raised.value.body["detail"]


async def test_a_backend_failure_mid_stream_raises_api_error_not_a_hang(
    client: openai.AsyncOpenAI, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    backend_fakes[0].fail_after_chunks = 2
    stream = await client.chat.completions.create(
        model=OPENAI_MODEL, messages=QUESTION, stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_files_in_extra_body_give_a_rag_answer_with_sources(
    ragway: Stack, client: openai.AsyncOpenAI, user: Account
) -> None:
    text = b"# Tides\n\nThe harbour master logs the tides of the north quay every hour.\n"
    status, record = await ragway.call(
        "POST", "/api/v1/files/", headers=user.key_auth, data=form(text, "tides.md")
    )
    assert status == 200, record
    completion = await client.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "Who logs the tides?"}],
        extra_body={"files": [{"type": "file", "id": record["id"]}]},
    )
    assert "harbour master logs the tides" in (completion.choices[0].message.content or "")
    extra = completion.model_extra or {}
    [source] = extra["sources"]
    assert source["source"]["id"] == record["id"]
    assert source["metadata"][0]["name"] == "tides.md"


async def test_embeddings_create_parses_ragways_own_model_in_base64_and_float(
    ragway: Stack, client: openai.AsyncOpenAI
) -> None:
    texts = ["The harbour master logs the tides.", "Bread needs flour and yeast."]
    # the SDK asks for base64 unless told otherwise, and decodes it itself
    raw = await client.embeddings.with_raw_response.create(model=EMBEDDING_MODEL, input=texts)
    assert isinstance(msgspec.json.decode(raw.content)["data"][0]["embedding"], str)
    default = raw.parse()
    floats = await client.embeddings.create(
        model=EMBEDDING_MODEL, input=texts, encoding_format="float"
    )
    assert default.model == floats.model == EMBEDDING_MODEL
    assert [item.index for item in default.data] == [0, 1]
    assert len(default.data[0].embedding) == 384
    for packed, plain in zip(default.data, floats.data, strict=True):
        assert packed.embedding == pytest.approx(plain.embedding, abs=1e-7)
    assert default.usage.prompt_tokens == floats.usage.prompt_tokens > len(texts)
    one = await client.embeddings.create(model=EMBEDDING_MODEL, input=texts[1])
    assert one.data[0].embedding == pytest.approx(floats.data[1].embedding, abs=1e-7)


async def test_embeddings_create_reaches_a_backends_model_and_refuses_with_sdk_errors(
    ragway: Stack, client: openai.AsyncOpenAI
) -> None:
    forwarded = await client.embeddings.create(model=OPENAI_MODEL, input="two words")
    assert forwarded.data[0].embedding == pytest.approx(embedding_of("two words"), abs=1e-6)
    with pytest.raises(openai.BadRequestError) as shortened:
        await client.embeddings.create(model=EMBEDDING_MODEL, input="x", dimensions=64)
    assert "384 dimensions" in str(shortened.value.body)
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="no-such-model", input="x")
