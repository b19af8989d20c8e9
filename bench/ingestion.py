"""Ingestion throughput: chunks/s through the whole pipeline vs. the Embedder alone.

    .venv/bin/python bench/ingestion.py [--files 8] [--chars 40000] [--workers 1,2]
                                        [--fp32] [--one-file]

Builds files from real text (msmarco passages, `../shared/datasets`), then for each worker
count: starts that many `python -m ingestion` processes (one embedding thread each, the
default) against a real nats-server and the real retrieval service (in this process: the
store's one writer), stores the files in the catalog, publishes their jobs at once and
times job → `completed` for all of them. The baseline embeds the very same chunks (dense
+ BM25, the worker's batch size) with the `Embedder` alone in this process, with as many
onnxruntime threads as there are workers. The ratio says what the pipeline (blob fetch,
extraction, chunking, NATS, vector writes, record updates) costs on top of embedding.
With `--one-file` the same text is one file (its dense ranges are jobs of their own, so
the workers share it). Each worker's CPU seconds per chunk (utime + stime from /proc) and
the ratio of N workers to one worker are printed too.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file's name shadows the `ingestion` package when run as a script: drop its folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import msgspec  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402

from catalog.files import FileCatalog, blob_name, now  # noqa: E402
from catalog.jobs import ensure_stream  # noqa: E402
from common.logging import configure_logging  # noqa: E402
from common.nats_conn import connect_nats  # noqa: E402
from common.parent_death import tied_to_parent  # noqa: E402
from common.runner import run_stoppable  # noqa: E402
from contracts.files import FileData, FileMeta, FileRecord, IngestJob  # noqa: E402
from embedding.embedder import Embedder  # noqa: E402
from embedding.settings import service_embedder  # noqa: E402
from ingestion.documents import Chunk  # noqa: E402
from ingestion.pipeline import process_file  # noqa: E402
from ingestion.settings import Settings as IngestionSettings  # noqa: E402
from retrieval.app import serve as serve_retrieval  # noqa: E402
from retrieval.settings import Settings as RetrievalSettings  # noqa: E402
from stack.nats_server import NatsServer, NatsServerConfig, free_port  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "msmarco" / "corpus.jsonl"


def build_files(count: int, chars: int) -> list[str]:
    """`count` texts of about `chars` characters each, passages as paragraphs."""
    passages = (json.loads(line)["text"] for line in CORPUS.open(encoding="utf-8"))
    files: list[str] = []
    for _ in range(count):
        parts: list[str] = []
        size = 0
        while size < chars:
            parts.append(next(passages))
            size += len(parts[-1]) + 2
        files.append("\n\n".join(parts))
    return files


def chunks_of(texts: list[str], settings: IngestionSettings) -> list[Chunk]:
    chunks: list[Chunk] = []
    for text in texts:
        processed = process_file(
            text.encode(),
            "bench.txt",
            "text/plain",
            limits=settings.extraction_limits(),
            chunking=settings.chunking(),
        )
        chunks.extend(processed.chunks)
    return chunks


def loadavg() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} on {os.cpu_count()} CPUs"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def embed_alone(chunks: list[Chunk], settings: IngestionSettings, threads: int) -> float:
    """Seconds the Embedder takes for these chunks, batch by batch as a worker does."""
    embedder = Embedder(msgspec.structs.replace(settings.embedding, threads=threads))
    embedder.embed_documents(["warm up"])
    texts = [chunk.text for chunk in chunks]
    size = settings.embedding.batch_size
    started = time.perf_counter()
    for start in range(0, len(texts), size):
        batch = texts[start : start + size]
        embedder.embed_documents(batch)
        embedder.sparse_documents(batch)
    return time.perf_counter() - started


_drains: set[asyncio.Task[None]] = set()


async def start_workers(count: int, env: dict[str, str]) -> list[asyncio.subprocess.Process]:
    procs = []
    for _ in range(count):
        proc = await asyncio.create_subprocess_exec(
            *tied_to_parent([sys.executable, "-m", "ingestion"]),  # none left if we are killed
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
    for proc in procs:  # ready when it logs that it is consuming
        assert proc.stderr is not None
        async for line in proc.stderr:
            if b"ingestion_worker_started" in line:
                break
        else:
            raise SystemExit("a worker exited during startup")
        task = asyncio.create_task(_drain(proc.stderr))  # a full pipe would block the worker
        _drains.add(task)
        task.add_done_callback(_drains.discard)
    return procs


async def _drain(stream: asyncio.StreamReader) -> None:
    async for _ in stream:
        pass


async def store_files(catalog: FileCatalog, texts: list[str], tag: str) -> list[FileRecord]:
    records = []
    for n, text in enumerate(texts):
        # A tag line makes every run's content unique, so no run reuses another's vectors.
        blob = f"{tag} {n}\n\n{text}".encode()
        stamp = now()
        record = FileRecord(
            id=str(uuid.uuid4()),
            user_id="u-bench",
            hash=hashlib.sha256(blob).hexdigest(),
            filename=f"{tag}-{n}.txt",
            data=FileData(status="pending"),
            meta=FileMeta(name=f"{tag}-{n}.txt", content_type="text/plain", size=len(blob)),
            created_at=stamp,
            updated_at=stamp,
        )
        await catalog.blobs.put_bytes(blob_name(record.id), blob)
        await catalog.create(record)
        records.append(record)
    return records


async def run_jobs(
    js: JetStreamContext,
    catalog: FileCatalog,
    settings: IngestionSettings,
    records: list[FileRecord],
) -> tuple[float, int]:
    """Publish every job at once; seconds until all are completed, and the chunks written."""
    started = time.perf_counter()
    for record in records:
        job = IngestJob(file_id=record.id, request_id=uuid.uuid4().hex)
        await js.publish(settings.ingest_subject, msgspec.json.encode(job))
    pending = {record.id for record in records}
    chunks = 0
    while pending:
        for file_id in list(pending):
            current = await catalog.require(file_id)
            if current.data.status == "failed":
                raise SystemExit(f"{file_id} failed: {current.data.error}")
            if current.data.status == "completed":
                pending.discard(file_id)
                chunks += current.data.chunks_total
        await asyncio.sleep(0.05)
    return time.perf_counter() - started, chunks


async def bench(args: argparse.Namespace) -> None:
    texts = build_files(args.files, args.chars)
    if args.one_file:
        texts = ["\n\n".join(texts)]
    worker_counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(
            NatsServerConfig(
                port=free_port(), monitor_port=free_port(), store_dir=Path(tmp, "nats")
            )
        )
        await server.astart()
        try:
            embedding = msgspec.structs.replace(service_embedder(), quantized=args.quantized)
            base = IngestionSettings(
                nats_url=server.url, bucket_prefix="bench", embedding=embedding
            )
            chunks = chunks_of(texts, base)
            print(
                f"{len(texts)} files, {sum(map(len, texts)):,} characters, {len(chunks)} chunks "
                f"(size {base.chunk_size}, overlap {base.chunk_overlap}); "
                f"model quantized={args.quantized}; {os.cpu_count()} CPUs"
            )
            retrieval_settings = RetrievalSettings(
                nats_url=server.url,
                bucket_prefix="bench",
                data_dir=str(Path(tmp, "data")),
                log_level="warning",
                embedding=embedding,
            )
            async with (
                serve_retrieval(retrieval_settings),
                connect_nats([server.url], name="bench") as nc,
            ):
                js = nc.jetstream()
                catalog = await FileCatalog.open(js, "bench")
                await ensure_stream(js, base.ingest_stream, base.ingest_subject, 1)
                rates: dict[int, float] = {}
                # what else takes the cores the workers need, per chunk
                assert server.process is not None
                others = {"retrieval+bench": os.getpid(), "nats-server": server.process.pid}
                for count in worker_counts:
                    rates[count] = await measure(
                        count, texts, chunks, base, server.url, js, catalog, args, others
                    )
                for count, rate in rates.items():
                    if count != 1 and 1 in rates:
                        print(
                            f"{count} workers / 1 worker = {rate / rates[1]:.2f}x "
                            f"(target 1.7x) | {loadavg()}"
                        )
        finally:
            await server.astop()


async def measure(
    count: int,
    texts: list[str],
    chunks: list[Chunk],
    base: IngestionSettings,
    url: str,
    js: JetStreamContext,
    catalog: FileCatalog,
    args: argparse.Namespace,
    others: dict[str, int],
) -> float:
    alone = await asyncio.to_thread(embed_alone, chunks, base, count)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGWAY_")}
    env |= {
        "RAGWAY_NATS_URL": url,
        "RAGWAY_BUCKET_PREFIX": "bench",
        "RAGWAY_LOG_LEVEL": "info",
        "RAGWAY_EMBEDDING_QUANTIZED": str(args.quantized).lower(),
        "HF_HUB_OFFLINE": "1",
    }
    procs = await start_workers(count, env)
    try:
        warm = await store_files(catalog, ["Warm-up text. " * 20] * count, f"warm{count}")
        await run_jobs(js, catalog, base, warm)
        records = await store_files(catalog, texts, f"run{count}")
        cpu_before = [cpu_seconds(proc.pid) for proc in procs]
        others_before = {name: cpu_seconds(pid) for name, pid in others.items()}
        seconds, written = await run_jobs(js, catalog, base, records)
        cpu = [cpu_seconds(proc.pid) - at for proc, at in zip(procs, cpu_before, strict=True)]
        others_cpu = {n: cpu_seconds(pid) - others_before[n] for n, pid in others.items()}
    finally:
        for proc in procs:
            proc.terminate()
        await asyncio.gather(*(proc.wait() for proc in procs))
    pipeline_rate = written / seconds
    alone_rate = len(chunks) / alone
    print(
        f"workers={count}: pipeline {written} chunks in {seconds:.2f} s = {pipeline_rate:.1f} "
        f"chunks/s; Embedder alone ({count} thread{'s' if count > 1 else ''}) "
        f"{alone_rate:.1f} chunks/s; ratio pipeline/embedder = {pipeline_rate / alone_rate:.2f}"
        f" | worker CPU {' + '.join(f'{c:.1f}' for c in cpu)} s = "
        f"{sum(cpu) / written * 1000:.0f} CPU-ms per chunk; busy "
        f"{', '.join(f'{c / seconds:.0%}' for c in cpu)} of the wall time | "
        + ", ".join(f"{n} {c / written * 1000:.1f}" for n, c in others_cpu.items())
        + f" CPU-ms per chunk | {loadavg()}",
        flush=True,
    )
    return pipeline_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--chars", type=int, default=40_000, help="characters per file")
    parser.add_argument("--workers", default="1,2", help="worker process counts to measure")
    parser.add_argument(
        "--fp32", dest="quantized", action="store_false", help="the fp32 model (default: int8)"
    )
    parser.add_argument(
        "--one-file", action="store_true", help="all the text as one file (shared by workers)"
    )
    args = parser.parse_args()
    configure_logging("warning")
    run_stoppable(bench(args))


if __name__ == "__main__":
    main()
