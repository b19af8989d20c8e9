"""Where retrieval quality goes: the same chunks, vectors and store as the service, then
(1) the engine's dense ranking against exact brute-force cosine over the same vectors, and
(2) fusion rules replayed over each query's dense and BM25 candidates.

    .venv/bin/python bench/retrieval_lab.py [--datasets msmarco,arcd,msmarco-docs]
        [--model all-minilm-l6-v2] [--fp32] [--queries 0]

Chunks come from the ingestion chunker (1000/100 characters), dense vectors from the
service's `Embedder`, BM25 from the engine (IDF at query time) in an `EdgeStore` left
unoptimized as the retrieval service leaves it; each query's candidates are the top 40
chunks of each side (what the service fetches for k=10), scored like
bench/retrieval_quality.py (top 10 chunks, deduplicated to documents in rank order).
`msmarco-docs` groups msmarco's passages five by five into 1,000 multi-chunk documents (a
document is as relevant as its best passage): the shared sets have short documents only.
Vectors are kept in `~/.cache/ragway/lab/` between runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ingestion.py would shadow the `ingestion` package: this folder goes last
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from retrieval_quality import DATASETS, Dataset, first_seen, load, ndcg  # noqa: E402

from common.runner import run_stoppable  # noqa: E402
from embedding.embedder import Embedder  # noqa: E402
from embedding.settings import EmbedderSettings  # noqa: E402
from embedding.vectors import SparseVector  # noqa: E402
from ingestion.chunking import ChunkingOptions, chunk_text  # noqa: E402
from ingestion.documents import ExtractedText  # noqa: E402
from retrieval.fusion import Candidate, FusionRule, fuse  # noqa: E402
from vectorstore import ChunkPoint, SearchQuery  # noqa: E402
from vectorstore.edge import EdgeStore  # noqa: E402

K = 10
CANDIDATES = 40
CACHE = Path("~/.cache/ragway/lab").expanduser()

Ranked = list[tuple[str, float]]  # (chunk id "doc#index", score), best first


def grouped(data: Dataset, size: int = 5, seed: int = 7) -> Dataset:
    """Passages grouped into documents of `size`; a document's grade is its best passage's."""
    ids = sorted(data.docs)
    random.Random(seed).shuffle(ids)
    docs: dict[str, str] = {}
    owner: dict[str, str] = {}
    for start in range(0, len(ids), size):
        group = ids[start : start + size]
        doc_id = f"group{start // size}"
        docs[doc_id] = "\n\n".join(data.docs[p] for p in group)
        owner.update(dict.fromkeys(group, doc_id))
    qrels: dict[str, dict[str, int]] = {}
    for query_id, judged in data.qrels.items():
        merged: dict[str, int] = defaultdict(int)
        for passage, grade in judged.items():
            if passage in owner:
                merged[owner[passage]] = max(merged[owner[passage]], grade)
        qrels[query_id] = dict(merged)
    return Dataset(f"{data.name}-docs", docs, data.queries, qrels)


def chunked(data: Dataset) -> list[tuple[str, int, str]]:
    options = ChunkingOptions()
    return [
        (doc_id, chunk.index, chunk.text)
        for doc_id, text in data.docs.items()
        for chunk in chunk_text(ExtractedText(text=text, kind="text"), options)
    ]


def cached_vectors(key: str, texts: list[str], embed: Callable[[list[str]], Any]) -> np.ndarray:
    digest = hashlib.sha256("\x00".join([key, *texts]).encode()).hexdigest()[:16]
    path = CACHE / f"{key}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    started = time.perf_counter()
    vectors = np.asarray(embed(texts), dtype=np.float32)
    print(f"  embedded {len(texts)} texts in {time.perf_counter() - started:.0f} s", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


async def candidates(
    data: Dataset, embedder: Embedder, model_key: str, limit: int | None
) -> dict[str, dict[str, Ranked]]:
    """Per query: the engine's dense, exact dense and BM25 candidates."""
    chunks = chunked(data)
    texts = [text for _, _, text in chunks]
    dense = cached_vectors(f"{data.name}-{model_key}-docs", texts, embedder.embed_documents)
    queries = list(data.queries.items())[: limit or None]
    qvecs = cached_vectors(
        f"{data.name}-{model_key}-queries",
        [text for _, text in queries],
        lambda ts: [embedder.embed_query(t) for t in ts],
    )
    sparse = embedder.sparse_documents(texts)
    out: dict[str, dict[str, Ranked]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore(Path(tmp) / "lab", search_threads=1)
        await store.ensure_collection(dense.shape[1])
        points = [
            ChunkPoint(
                file_id=doc_id,
                chunk_index=index,
                text=text,
                dense=vector.tolist(),
                sparse=terms,
                payload={"collections": ["lab"]},
            )
            for (doc_id, index, text), vector, terms in zip(chunks, dense, sparse, strict=True)
        ]
        for at in range(0, len(points), 1000):
            await store.upsert(points[at : at + 1000])
        for (query_id, text), qvec in zip(queries, qvecs, strict=True):
            terms = embedder.sparse_query(text)
            found: dict[str, Ranked] = {}
            for mode in ("dense", "sparse"):
                hits = await store.search(
                    SearchQuery(
                        collection="lab",
                        dense=qvec.tolist(),
                        sparse=terms if terms.indices else SparseVector(indices=[], values=[]),
                        limit=CANDIDATES,
                        mode=mode,
                    )
                )
                found[mode] = [(f"{h.file_id}#{h.chunk_index}", h.score) for h in hits]
            scores = dense @ qvec
            best = np.argsort(-scores)[:CANDIDATES]
            found["exact"] = [(f"{chunks[i][0]}#{chunks[i][1]}", float(scores[i])) for i in best]
            found["terms"] = [(str(len(terms.indices)), 0.0)]
            out[query_id] = found
        await store.close()
    return out


def score(ranked: list[str], relevant: dict[str, int]) -> float:
    return ndcg(first_seen([chunk.split("#", 1)[0] for chunk in ranked])[:K], relevant)


def as_candidates(ranked: Ranked) -> list[Candidate]:
    return [Candidate(key=key, score=value) for key, value in ranked]


def evaluate(
    data: Dataset, lists: dict[str, dict[str, Ranked]], rules: dict[str, FusionRule | None]
) -> dict[str, float]:
    results: dict[str, list[float]] = defaultdict(list)
    overlap = []
    for query_id, found in lists.items():
        relevant = data.qrels[query_id]
        for side in ("dense", "exact", "sparse"):
            results[side].append(score([c for c, _ in found[side][:K]], relevant))
        engine = {c for c, _ in found["dense"][:K]}
        overlap.append(len(engine & {c for c, _ in found["exact"][:K]}) / K)
        for name, rule in rules.items():
            if rule is None:
                continue
            fused = fuse(
                as_candidates(found["dense"]),
                as_candidates(found["sparse"]),
                K,
                rule,
                query_terms=int(found["terms"][0][0]),
            )
            results[name].append(score([c.key for c in fused.hits], relevant))
    summary = {name: statistics.fmean(values) for name, values in results.items()}
    summary["engine_vs_exact_overlap@10"] = statistics.fmean(overlap)
    return summary


RULES: dict[str, FusionRule | None] = {
    "rrf60": FusionRule(kind="rrf"),
    "trust": FusionRule(),  # the service's default
    "trust_no_agreement": FusionRule(agreement_top=0),
    "trust_one_term_enough": FusionRule(min_terms=1),
    "trust_gain_1": FusionRule(agreement_gain=1.0),
    "trust_gain_3": FusionRule(agreement_gain=3.0),
}


async def main(args: argparse.Namespace) -> None:
    settings = EmbedderSettings(model=args.model, quantized=not args.fp32, threads=1)
    embedder = await asyncio.to_thread(Embedder, settings)
    model_key = f"{args.model}-{'fp32' if args.fp32 else 'int8'}"
    for name in args.datasets.split(","):
        base = name.removesuffix("-docs")
        data = load(Path(args.root) / base)
        if name.endswith("-docs"):
            data = grouped(data)
        kept = CACHE / f"{name}-{model_key}-{args.queries}-lists.json"
        if kept.is_file():
            lists = json.loads(kept.read_text())
        else:
            lists = await candidates(data, embedder, model_key, args.queries)
            kept.write_text(json.dumps(lists))
        summary = evaluate(data, lists, RULES)
        print(
            f"{name} ({len(lists)} queries, {model_key}): "
            + ", ".join(f"{key} {value:.3f}" for key, value in summary.items()),
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--datasets", default="msmarco,arcd,msmarco-docs")
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--fp32", action="store_true")
    parser.add_argument("--root", default=str(DATASETS), help="the labelled sets' folder")
    parser.add_argument("--queries", type=int, default=0, help="first N queries only (0: all)")
    run_stoppable(main(parser.parse_args()))
