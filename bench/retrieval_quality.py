"""Retrieval quality of dense, sparse (BM25) and hybrid search on labelled BEIR sets.

    .venv/bin/python bench/retrieval_quality.py [--datasets msmarco,arcd] [--fp32]
                                                [--latency-points 10000]

Each document becomes one "file", chunked (~1000 characters, 100 overlap), embedded with
the offline `Embedder` and stored in the embedded `EdgeStore`; every query searches all
files (top 10 chunks, deduplicated to documents in rank order) and is scored with nDCG@10
(graded gains) and recall@10 capped at min(10, #relevant). Queries without judgements
are skipped. Reference (Open WebUI 0.12.4 on this machine, same data, all-MiniLM-L6-v2,
1000/100 chunks, top-k 10): msmarco nDCG@10 0.798, arcd 0.034.

For now this drives the libraries directly; it will go through the upload API later.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import harness  # type: ignore[import-not-found]  # bench/harness.py, beside this script
import msgspec

from common.parent_death import tied_to_parent
from common.runner import run_stoppable
from embedding.embedder import Embedder
from embedding.settings import EmbedderSettings
from vectorstore import ChunkPoint, SearchMode, SearchQuery
from vectorstore.edge import EdgeStore

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")
K = 10


class Dataset(msgspec.Struct):
    name: str
    docs: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load(root: Path) -> Dataset:
    docs = {}
    # Split on "\n" only: some texts contain U+2028, which str.splitlines would cut at.
    for line in (root / "corpus.jsonl").read_text(encoding="utf-8").split("\n"):
        if line.strip():
            row = json.loads(line)
            docs[row["_id"]] = "\n".join(filter(None, [row.get("title", ""), row["text"]]))
    queries = {}
    for line in (root / "queries.jsonl").read_text(encoding="utf-8").split("\n"):
        if line.strip():
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in (root / "qrels" / "test.tsv").read_text(encoding="utf-8").split("\n"):
        parts = line.strip().split("\t")
        if len(parts) == 3 and parts[2].lstrip("-").isdigit() and int(parts[2]) > 0:
            qrels[parts[0]][parts[1]] = int(parts[2])
    return Dataset(root.name, docs, {q: t for q, t in queries.items() if q in qrels}, qrels)


def chunk(text: str, size: int = 1000, overlap: int = 100) -> list[str]:
    """A plain stand-in for the ingestion chunker: cut at whitespace near `size`."""
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            space = text.rfind(" ", start + size // 2, end)
            end = space if space > 0 else end
        pieces.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return [p for p in pieces if p]


def ndcg(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:K]))
    ideal = sorted(relevant.values(), reverse=True)[:K]
    idcg = sum(gain / math.log2(i + 2) for i, gain in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall(ranked: list[str], relevant: dict[str, int]) -> float:
    return len(set(ranked[:K]) & set(relevant)) / min(K, len(relevant))


def first_seen(file_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(file_ids))


async def ingest(
    data: Dataset, embedder: Embedder, store: EdgeStore
) -> tuple[dict[str, float], list[ChunkPoint]]:
    chunks = [
        (doc_id, i, piece)
        for doc_id, text in data.docs.items()
        for i, piece in enumerate(chunk(text))
    ]
    texts = [c[2] for c in chunks]
    started = time.perf_counter()
    dense = await asyncio.to_thread(embedder.embed_documents, texts)
    dense_s = time.perf_counter() - started
    started = time.perf_counter()
    sparse = await asyncio.to_thread(embedder.sparse_documents, texts)
    sparse_s = time.perf_counter() - started
    points = [
        ChunkPoint(file_id=d, chunk_index=i, text=t, dense=v, sparse=s, payload={"name": d})
        for (d, i, t), v, s in zip(chunks, dense, sparse, strict=True)
    ]
    started = time.perf_counter()
    for at in range(0, len(points), 512):
        await store.upsert(points[at : at + 512])
    await store.optimize()
    store_s = time.perf_counter() - started
    stats = {
        "docs": len(data.docs),
        "chunks": len(chunks),
        "dense_docs_per_s": len(data.docs) / dense_s,
        "dense_chunks_per_s": len(chunks) / dense_s,
        "sparse_chunks_per_s": len(chunks) / sparse_s,
        "upsert_and_index_s": store_s,
    }
    return stats, points


async def evaluate(data: Dataset, embedder: Embedder, store: EdgeStore) -> dict[str, dict]:
    scope = list(data.docs)
    results: dict[str, dict] = {}
    for mode in MODES:
        ndcgs, recalls, latencies = [], [], []
        for query_id, text in data.queries.items():
            dense = embedder.embed_query(text)
            sparse = embedder.sparse_query(text)
            started = time.perf_counter()
            hits = await store.search(
                SearchQuery(file_ids=scope, dense=dense, sparse=sparse, limit=K, mode=mode)
            )
            latencies.append(time.perf_counter() - started)
            ranked = first_seen([hit.file_id for hit in hits])
            ndcgs.append(ndcg(ranked, data.qrels[query_id]))
            recalls.append(recall(ranked, data.qrels[query_id]))
        results[mode] = {
            "ndcg@10": statistics.fmean(ndcgs),
            "recall@10": statistics.fmean(recalls),
            "p50_ms": statistics.median(latencies) * 1000,
        }
    return results


async def latency_at(
    points: int, data: Dataset, originals: list[ChunkPoint], embedder: Embedder, store: EdgeStore
) -> None:
    """Copy the stored chunks under new file ids until the store holds `points`, then time."""
    base = await store.count()
    copy = 0
    while await store.count() < points:
        copy += 1
        batch = [
            msgspec.structs.replace(point, file_id=f"{point.file_id}~{copy}") for point in originals
        ]
        for at in range(0, len(batch), 512):
            await store.upsert(batch[at : at + 512])
    await store.optimize()
    total = await store.count()
    all_files = sorted({f"{d}~{c}" for d in data.docs for c in range(1, copy + 1)} | set(data.docs))
    print(f"\nsearch latency at {total} points ({base} originals + {copy} copies), edge store:")
    queries = list(data.queries.values())
    for scope_name, scope in [("all files", all_files), ("10 files", all_files[:10])]:
        for mode in MODES:
            latencies = []
            for text in queries:
                q = SearchQuery(
                    file_ids=scope,
                    dense=embedder.embed_query(text),
                    sparse=embedder.sparse_query(text),
                    limit=K,
                    mode=mode,
                )
                started = time.perf_counter()
                await store.search(q)
                latencies.append((time.perf_counter() - started) * 1000)
            latencies.sort()
            print(
                f"  {scope_name:>9} {mode:>6}: p50 {statistics.median(latencies):6.2f} ms"
                f"  p95 {latencies[int(len(latencies) * 0.95) - 1]:6.2f} ms"
            )
    started = time.perf_counter()
    for text in queries:
        embedder.embed_query(text)
        embedder.sparse_query(text)
    print(
        f"  query embedding (dense + sparse): "
        f"{(time.perf_counter() - started) / len(queries) * 1000:.2f} ms per query"
    )


# --- through the real system ----------------------------------------------------------------


async def extra_worker(stack: Any, environ: dict[str, str]) -> asyncio.subprocess.Process:
    """A second ingestion worker process on the stack's NATS (workers share one queue),
    with the same model settings as the stack's."""
    env = harness.clean_environ(
        RAGWAY_NATS_URL=f"nats://127.0.0.1:{stack.settings.nats_port}",
        RAGWAY_CACHE_DIR=stack.settings.cache_dir,
        RAGWAY_LOG_LEVEL="warning",
        **environ,
    )
    return await asyncio.create_subprocess_exec(
        *tied_to_parent([sys.executable, "-m", "ingestion"]),  # none left if we are killed
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )


async def ingest_via_api(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], data: Dataset, concurrency: int
) -> tuple[str, dict[str, str], float]:
    """Upload every document as a file, add all to one collection, wait until completed."""
    gate = asyncio.Semaphore(concurrency)
    file_doc: dict[str, str] = {}

    async def upload(doc_id: str, text: str) -> None:
        async with gate:
            form = aiohttp.FormData()
            form.add_field(
                "file", text.encode(), filename=f"{doc_id}.txt", content_type="text/plain"
            )
            async with http.post(f"{url}/api/v1/files/", data=form, headers=headers) as reply:
                reply.raise_for_status()
                file_doc[(await reply.json())["id"]] = doc_id

    async def completed(file_id: str) -> None:
        while True:
            async with http.get(f"{url}/api/v1/files/{file_id}", headers=headers) as reply:
                reply.raise_for_status()
                status = (await reply.json())["data"]["status"]
            if status == "completed":
                return
            if status == "failed":
                raise RuntimeError(f"file {file_id} ({file_doc[file_id]}) failed")
            await asyncio.sleep(0.5)

    started = time.perf_counter()
    await asyncio.gather(*(upload(d, t) for d, t in data.docs.items()))
    async with http.post(
        f"{url}/api/v1/knowledge/create",
        json={"name": data.name, "description": "bench", "access_control": None},
        headers=headers,
    ) as reply:
        reply.raise_for_status()
        knowledge_id = (await reply.json())["id"]
    for file_id in file_doc:
        async with http.post(
            f"{url}/api/v1/knowledge/{knowledge_id}/file/add",
            json={"file_id": file_id},
            headers=headers,
        ) as reply:
            reply.raise_for_status()
    await asyncio.gather(*(completed(f) for f in file_doc))
    return knowledge_id, file_doc, time.perf_counter() - started


async def evaluate_via_api(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    data: Dataset,
    knowledge_id: str,
    file_doc: dict[str, str],
) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for mode in MODES:
        ndcgs, recalls = [], []
        for query_id, text in data.queries.items():
            body = {"collection_names": [knowledge_id], "query": text, "k": K, "mode": mode}
            async with http.post(
                f"{url}/api/v1/retrieval/query/collection", json=body, headers=headers
            ) as reply:
                reply.raise_for_status()
                metadatas = (await reply.json())["metadatas"][0]
            ranked = first_seen([file_doc.get(m["file_id"], "") for m in metadatas])
            ndcgs.append(ndcg(ranked, data.qrels[query_id]))
            recalls.append(recall(ranked, data.qrels[query_id]))
        results[mode] = {"ndcg@10": statistics.fmean(ndcgs), "recall@10": statistics.fmean(recalls)}
    return results


def limited(data: Dataset, limit: int, queries: int = 0) -> Dataset:
    """The first `queries` judged queries (0: all); every document judged for them, then
    others up to `limit` documents in all (0: all)."""
    if queries > 0:
        kept = [q for q in data.queries if data.qrels.get(q)][:queries]
        data = Dataset(
            data.name,
            data.docs,
            {q: data.queries[q] for q in kept},
            {q: data.qrels[q] for q in kept},
        )
    if limit <= 0 or limit >= len(data.docs):
        return data
    judged = {doc for rels in data.qrels.values() for doc in rels if doc in data.docs}
    keep = list(judged) + [d for d in data.docs if d not in judged][: max(0, limit - len(judged))]
    return Dataset(data.name, {d: data.docs[d] for d in keep}, data.queries, data.qrels)


async def run_via_api(args: argparse.Namespace) -> None:
    environ = {
        "RAGWAY_EMBEDDING_MODEL": args.model,
        "RAGWAY_EMBEDDING_QUANTIZED": str(args.quantized).lower(),
    }
    print(f"model {args.model} ({'int8' if args.quantized else 'fp32'} where it applies)")
    async with harness.ragway(services="auth,ingestion,retrieval", **environ) as system:
        workers = [await extra_worker(system.stack, environ) for _ in range(args.workers - 1)]
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
                for name in args.datasets.split(","):
                    data = limited(
                        load(Path(args.root) / name), args.limit_docs, args.limit_queries
                    )
                    knowledge_id, file_doc, seconds = await ingest_via_api(
                        http, system.url, system.headers, data, args.concurrency
                    )
                    print(
                        f"\n{name} (API, {args.workers} workers): {len(data.docs)} files ingested"
                        f" in {seconds:.1f} s = {len(data.docs) / seconds:.1f} docs/s;"
                        f" {len(data.queries)} judged queries"
                    )
                    scores = await evaluate_via_api(
                        http, system.url, system.headers, data, knowledge_id, file_doc
                    )
                    for mode, r in scores.items():
                        print(
                            f"  {mode:>6}: nDCG@10 {r['ndcg@10']:.3f}"
                            f"  recall@10 {r['recall@10']:.3f}"
                        )
        finally:
            for worker in workers:
                worker.terminate()
                await worker.wait()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="msmarco,arcd")
    parser.add_argument("--root", default=str(DATASETS), help="the labelled sets' folder")
    parser.add_argument(
        "--fp32", dest="quantized", action="store_false", help="the fp32 model (default: int8)"
    )
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--latency-points",
        type=int,
        default=0,
        help="after msmarco, grow the store to this many points and time search",
    )
    parser.add_argument(
        "--via",
        choices=["api", "library"],
        default="api",
        help="api: the real system over HTTP; library: Embedder + EdgeStore in-process (fast)",
    )
    parser.add_argument(
        "--limit-docs", type=int, default=0, help="api: at most N docs (judged kept)"
    )
    parser.add_argument(
        "--limit-queries", type=int, default=0, help="api: the first N judged queries only"
    )
    parser.add_argument("--workers", type=int, default=2, help="api: ingestion worker processes")
    parser.add_argument("--concurrency", type=int, default=8, help="api: uploads in flight")
    args = parser.parse_args()
    if args.via == "api":
        await run_via_api(args)
        return 0
    embedder = Embedder(
        EmbedderSettings(model=args.model, quantized=args.quantized, threads=args.threads)
    )
    print(f"model {embedder.model_name} ({embedder.dimension}-d)")
    for name in args.datasets.split(","):
        data = load(Path(args.root) / name)
        with tempfile.TemporaryDirectory() as tmp:
            store = EdgeStore(Path(tmp) / "shard")
            await store.ensure_collection(embedder.dimension)
            try:
                stats, points = await ingest(data, embedder, store)
                print(
                    f"\n{name}: {stats['docs']} docs -> {stats['chunks']} chunks;"
                    f" dense {stats['dense_docs_per_s']:.1f} docs/s"
                    f" ({stats['dense_chunks_per_s']:.1f} chunks/s);"
                    f" BM25 {stats['sparse_chunks_per_s']:.0f} chunks/s;"
                    f" upsert+index {stats['upsert_and_index_s']:.2f} s;"
                    f" {len(data.queries)} judged queries"
                )
                for mode, r in (await evaluate(data, embedder, store)).items():
                    print(
                        f"  {mode:>6}: nDCG@10 {r['ndcg@10']:.3f}  recall@10 {r['recall@10']:.3f}"
                        f"  search p50 {r['p50_ms']:.2f} ms"
                    )
                if args.latency_points and name == "msmarco":
                    await latency_at(args.latency_points, data, points, embedder, store)
            finally:
                await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_stoppable(main()))
