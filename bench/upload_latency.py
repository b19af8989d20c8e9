"""Uploads through the gateway: how soon a 1 MB text file is searchable, and how much the
gateway's memory grows while a 200 MB file streams in.

    .venv/bin/python bench/upload_latency.py [--text-mb 1] [--big-mb 200] [--runs 1]

ragway runs as real processes (`Stack`, every service, one ingestion worker); the gateway
is its own process and its VmRSS is read from /proc while the big upload runs. Two times
after the upload returned: keyword-searchable (a BM25 query through
`/api/v1/retrieval/query/doc`, sent at once, returns the chunk holding a marker from the
very END of the file) and completed (every chunk has its dense vector; a hybrid query then
finds the marker too). Baselines in the same run, on the very same chunks, one thread:
BM25 alone for the first, the Embedder alone (dense + BM25, the worker's batch size;
timed on a sample and scaled) for the second; and the gateway's RSS before the upload.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ingestion.py shadows the `ingestion` package for scripts run from bench/.
# So the package is imported first, and bench/ comes back only for `harness`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
import ingestion.pipeline  # noqa: E402, F401

sys.path.append(str(Path(__file__).resolve().parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
from harness import Ragway, loadavg, median, ragway, write_results  # noqa: E402

from common.logging import configure_logging  # noqa: E402
from common.runner import run_stoppable  # noqa: E402
from embedding.embedder import Embedder  # noqa: E402
from ingestion.pipeline import process_file  # noqa: E402
from ingestion.settings import Settings as IngestionSettings  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "msmarco" / "corpus.jsonl"
MIB = 1024 * 1024


def marker(run: int) -> str:
    return f"quokkaharbour{run}"


def text_of(size: int, run: int) -> str:
    """About `size` bytes of real passages (msmarco), a different start for each run
    (wrapping around the corpus), under a line that makes each file's content unique and
    over a last line with a marker word found nowhere else."""
    with CORPUS.open(encoding="utf-8") as lines:
        passages = [json.loads(line)["text"] for line in lines]
    parts = [f"Benchmark upload {run}."]
    total = 0
    at = run * 2000
    while total < size:
        parts.append(passages[at % len(passages)])
        total += len(parts[-1].encode()) + 2
        at += 1
    parts.append(f"The closing marker of this upload is {marker(run)}.")
    return "\n\n".join(parts)


def embed_alone(text: str, sample: int = 320) -> tuple[int, float, float]:
    """Chunks of `text` as the worker cuts them, the seconds BM25 alone takes for all of
    them, and the Embedder's (dense + BM25) seconds for them (timed on the first `sample`
    chunks, scaled to all: this baseline would otherwise cost as long as the measurement
    itself)."""
    settings = IngestionSettings()
    processed = process_file(
        text.encode(),
        "bench.txt",
        "text/plain",
        limits=settings.extraction_limits(),
        chunking=settings.chunking(),
    )
    texts = [chunk.text for chunk in processed.chunks]
    timed = texts[:sample]
    embedder = Embedder(settings.embedding)
    embedder.embed_documents(["warm up"])
    embedder.sparse_documents(["warm up"])
    started = time.perf_counter()
    embedder.sparse_documents(texts)
    bm25 = time.perf_counter() - started
    started = time.perf_counter()
    for at in range(0, len(timed), settings.embedding.batch_size):
        batch = timed[at : at + settings.embedding.batch_size]
        embedder.embed_documents(batch)
        embedder.sparse_documents(batch)
    return len(texts), bm25, (time.perf_counter() - started) * len(texts) / len(timed)


async def upload(http: aiohttp.ClientSession, rw: Ragway, name: str, body: Any, kind: str) -> str:
    form = aiohttp.FormData()
    form.add_field("file", body, filename=name, content_type=kind)
    async with http.post(f"{rw.url}/api/v1/files/", data=form, headers=rw.headers) as reply:
        if reply.status != 200:
            raise RuntimeError(f"upload {reply.status}: {await reply.text()}")
        return str((await reply.json())["id"])


async def finds(
    http: aiohttp.ClientSession, rw: Ragway, file_id: str, word: str, mode: str
) -> bool:
    """A query through the API; the retrieval service waits (up to RAG_WAIT) for the file
    to be searchable in this mode, so one request right after the upload is enough."""
    query = {"collection_name": file_id, "query": word, "k": 4, "mode": mode}
    async with http.post(
        f"{rw.url}/api/v1/retrieval/query/doc", json=query, headers=rw.headers
    ) as reply:
        found = await reply.json()
    if reply.status != 200:
        raise RuntimeError(f"query {reply.status}: {found}")
    return any(word in document for document in found["documents"][0])


async def searchable_after(
    http: aiohttp.ClientSession, rw: Ragway, text: str, word: str
) -> dict[str, Any]:
    started = time.perf_counter()
    file_id = await upload(http, rw, "one-mb.txt", text.encode(), "text/plain")
    uploaded = time.perf_counter() - started
    returned = time.perf_counter()
    for _ in range(100):  # a query waits for the file itself: this loop rarely turns
        if await finds(http, rw, file_id, word, "sparse"):
            break
    else:
        raise RuntimeError("the file never became keyword-searchable")
    keyword = time.perf_counter() - returned
    while True:
        async with http.get(f"{rw.url}/api/v1/files/{file_id}", headers=rw.headers) as reply:
            data = (await reply.json())["data"]
        if data["status"] == "failed":
            raise RuntimeError(f"ingestion failed: {data}")
        if data["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    completed = time.perf_counter() - returned
    if not await finds(http, rw, file_id, word, "hybrid"):
        raise RuntimeError("the completed file does not find its last line")
    return {
        "upload_s": uploaded,
        "keyword_s": keyword,
        "completed_s": completed,
        "chunks": data.get("chunks_total", 0),
        "file_id": file_id,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def big_upload_rss(http: aiohttp.ClientSession, rw: Ragway, size_mb: int) -> dict[str, Any]:
    pid = rw.pid_of("gateway")
    with tempfile.NamedTemporaryFile(suffix=".dat") as blob:
        block = bytes(range(256)) * 4096  # 1 MiB that no extractor takes for text
        for _ in range(size_mb):
            blob.write(block)
        blob.flush()
        before = rss_mb(pid)
        peak = before
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_mb(pid))
                await asyncio.sleep(0.01)

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        with open(blob.name, "rb") as body:  # noqa: ASYNC230 - aiohttp reads it in a thread
            file_id = await upload(http, rw, "big.dat", body, "application/octet-stream")
        seconds = time.perf_counter() - started
        done.set()
        await sampler
        after = rss_mb(pid)
    async with http.delete(f"{rw.url}/api/v1/files/{file_id}", headers=rw.headers) as reply:
        await reply.read()
    return {
        "size_mb": size_mb,
        "seconds": seconds,
        "rss_before_mb": before,
        "rss_peak_mb": peak,
        "rss_after_mb": after,
        "growth_mb": peak - before,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"args": vars(args)}
    environ = {
        "RAGWAY_FILE_MAX_SIZE_MB": str(args.big_mb + 50),
        "RAGWAY_MAX_BODY_MB": str(args.big_mb + 50),
        "OPENAI_API_BASE_URLS": "http://127.0.0.1:9/v1",  # no model needed, no local LLM
    }
    texts = [text_of(int(args.text_mb * MIB), run) for run in range(args.runs)]
    chunks, bm25_alone, alone = await asyncio.to_thread(embed_alone, texts[0])
    async with (
        ragway(services="auth,inference_proxy,ingestion,retrieval", **environ) as rw,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http,
    ):
        await searchable_after(http, rw, "Warm-up text. " * 50 + "warmupword", "warmupword")
        runs = [
            await searchable_after(http, rw, text, marker(run)) for run, text in enumerate(texts)
        ]
        keyword = median([r["keyword_s"] for r in runs])
        completed = median([r["completed_s"] for r in runs])
        result["searchable"] = {
            "runs": runs,
            "keyword_median_s": keyword,
            "completed_median_s": completed,
            "bm25_alone_s": bm25_alone,
            "embed_alone_s": alone,
            "embed_chunks": chunks,
            "load": loadavg(),
        }
        print(
            f"{args.text_mb:g} MB text ({runs[0]['chunks']} chunks, median of {len(runs)}; "
            f"upload {median([r['upload_s'] for r in runs]) * 1000:.0f} ms):\n"
            f"  keyword-searchable (BM25 query finds the last line) {keyword:.2f} s after the "
            f"upload returned | baseline BM25 alone {bm25_alone:.2f} s, ratio "
            f"{keyword / bm25_alone:.1f} | target <= 3 s {'ok' if keyword <= 3 else 'MISSED'}\n"
            f"  completed (every chunk has its dense vector) {completed:.2f} s | baseline "
            f"Embedder alone {alone:.2f} s for {chunks} chunks, ratio {completed / alone:.2f}"
            f" | {loadavg()}",
            flush=True,
        )
        big = await big_upload_rss(http, rw, args.big_mb)
        result["big_upload"] = {**big, "load": loadavg()}
        print(
            f"{args.big_mb} MB upload in {big['seconds']:.1f} s "
            f"({args.big_mb / big['seconds']:.0f} MB/s): gateway RSS {big['rss_before_mb']:.0f}"
            f" -> peak {big['rss_peak_mb']:.0f} MB, growth {big['growth_mb']:.1f} MB "
            f"(target <= 50 MB {'ok' if big['growth_mb'] <= 50 else 'MISSED'}) | {loadavg()}",
            flush=True,
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--text-mb", type=float, default=1.0)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    configure_logging("warning")
    result = run_stoppable(bench(args))
    print(f"figures kept in {write_results('upload_latency', result)}")


if __name__ == "__main__":
    main()
