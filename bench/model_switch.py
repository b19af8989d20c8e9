"""Switch the embedding model of a running deployment, through the whole stack.

1. ragway (auth, ingestion, retrieval, gateway as processes) with model A; every document
   of a labelled set but a few uploaded through `POST /api/v1/files/` into one knowledge
   collection; nDCG@10 of its queries through `/api/v1/retrieval/query/collection`.
2. The stack stopped and started again on the same data with model B: retrieval builds
   B's collection from the stored chunks in the background. Meanwhile the queries run
   again and again (each must answer), and the held-back documents are uploaded (the
   ingestion workers now embed with B).
3. After the swap (KV `<prefix>_vector_index`, key `active`): nDCG@10 again, and every
   file's chunks in the store (`ragway.vectors.stored`): none missing.

    .venv/bin/python bench/model_switch.py                       # arcd, MiniLM int8 -> e5
    .venv/bin/python bench/model_switch.py --model-b all-minilm-l6-v2 --fp32-b
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import harness  # type: ignore[import-not-found]  # bench/harness.py, beside this script
import msgspec
import nats
import retrieval_quality as rq  # type: ignore[import-not-found]

from common.bus import Bus
from common.runner import run_stoppable
from common.settings import default_cache_dir
from contracts import subjects
from contracts.retrieval import FileVectorsRef, StoredChunks
from stack.launcher import Stack
from stack.nats_server import free_port
from stack.settings import StackSettings

HELD_BACK = 5


def stack_env(model: str, quantized: bool) -> dict[str, str]:
    return harness.clean_environ(
        RAGWAY_HEALTH_SERVICES="auth,ingestion,retrieval",
        RAGWAY_EMBEDDING_MODEL=model,
        RAGWAY_EMBEDDING_QUANTIZED=str(quantized).lower(),
    )


async def ndcg_round(
    http: aiohttp.ClientSession,
    system: harness.Ragway,
    data: rq.Dataset,
    knowledge_id: str,
    file_doc: dict[str, str],
) -> tuple[float, int]:
    """Hybrid nDCG@10 over every query, and how many queries failed (no answer)."""
    scores, failed = [], 0
    for query_id, text in data.queries.items():
        body = {"collection_names": [knowledge_id], "query": text, "k": rq.K, "mode": "hybrid"}
        async with http.post(
            f"{system.url}/api/v1/retrieval/query/collection", json=body, headers=system.headers
        ) as reply:
            if reply.status != 200:
                failed += 1
                continue
            metadatas = (await reply.json())["metadatas"][0]
        ranked = rq.first_seen([file_doc.get(m["file_id"], "") for m in metadatas])
        scores.append(rq.ndcg(ranked, data.qrels[query_id]))
    return (statistics.fmean(scores) if scores else 0.0), failed


async def upload_into(
    http: aiohttp.ClientSession,
    system: harness.Ragway,
    knowledge_id: str,
    docs: dict[str, str],
    file_doc: dict[str, str],
) -> None:
    for doc_id, text in docs.items():
        form = aiohttp.FormData()
        form.add_field("file", text.encode(), filename=f"{doc_id}.txt", content_type="text/plain")
        async with http.post(
            f"{system.url}/api/v1/files/", data=form, headers=system.headers
        ) as reply:
            reply.raise_for_status()
            file_id = (await reply.json())["id"]
        file_doc[file_id] = doc_id
        async with http.post(
            f"{system.url}/api/v1/knowledge/{knowledge_id}/file/add",
            json={"file_id": file_id},
            headers=system.headers,
        ) as reply:
            reply.raise_for_status()


async def active_model(js: nats.js.JetStreamContext) -> tuple[str, str]:
    """(active model, progress of the build) from the service's KV records."""
    kv = await js.key_value("ragway_vector_index")
    active = msgspec.json.decode((await kv.get("active")).value or b"{}")
    try:
        building = msgspec.json.decode((await kv.get("building")).value or b"{}")
        progress = f"{building.get('files_done')}/{building.get('files_total')} files"
    except nats.js.errors.KeyNotFoundError:
        progress = "-"
    return str(active.get("model", "")), progress


async def run(args: argparse.Namespace) -> None:
    data = rq.load(Path(args.root) / args.dataset)
    held = dict(list(data.docs.items())[-HELD_BACK:])
    first = rq.Dataset(
        data.name, {d: t for d, t in data.docs.items() if d not in held}, data.queries, data.qrels
    )
    with tempfile.TemporaryDirectory(prefix="ragway-switch-") as tmp:
        settings = StackSettings(
            data_dir=str(Path(tmp, "data")),
            cache_dir=default_cache_dir(),
            port=free_port(),
            nats_port=free_port(),
            nats_monitor_port=free_port(),
            llm_port=free_port(),
            local_llm=False,
            services="auth,ingestion,retrieval",
            log_level="warning",
            stop_timeout_s=10.0,
        )
        timeout = aiohttp.ClientTimeout(total=120)
        stack = Stack(settings, stack_env(args.model_a, args.quantized_a))
        await stack.astart()
        try:
            token, key = await harness.admin_credentials(stack.url)
            system = harness.Ragway(stack, key, token)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                knowledge_id, file_doc, seconds = await rq.ingest_via_api(
                    http, system.url, system.headers, first, 8
                )
                before, _ = await ndcg_round(http, system, data, knowledge_id, file_doc)
            print(
                f"A = {args.model_a}: {len(first.docs)} files in {seconds:.1f} s;"
                f" hybrid nDCG@10 {before:.3f} ({len(data.queries)} queries)"
            )
        finally:
            await stack.astop()

        stack = Stack(settings, stack_env(args.model_b, args.quantized_b))
        started = time.perf_counter()
        await stack.astart()
        nc = await nats.connect(f"nats://127.0.0.1:{settings.nats_port}")
        try:
            system = harness.Ragway(stack, key, token)
            js = nc.jetstream()
            model_a, _ = await active_model(js)
            rounds: list[tuple[float, float, int, str]] = []
            async with aiohttp.ClientSession(timeout=timeout) as http:
                uploads = asyncio.ensure_future(
                    upload_into(http, system, knowledge_id, held, file_doc)
                )
                while True:
                    model, progress = await active_model(js)
                    if model != model_a:
                        break
                    score, failed = await ndcg_round(http, system, data, knowledge_id, file_doc)
                    rounds.append((time.perf_counter() - started, score, failed, progress))
                swapped = time.perf_counter() - started
                await uploads
                while True:  # the held-back uploads are ingested by B's workers
                    pending = 0
                    for file_id in file_doc:
                        async with http.get(
                            f"{system.url}/api/v1/files/{file_id}", headers=system.headers
                        ) as reply:
                            status = (await reply.json())["data"]["status"]
                        pending += status != "completed"
                    if not pending:
                        break
                    await asyncio.sleep(0.5)
                after, failed_after = await ndcg_round(http, system, data, knowledge_id, file_doc)
            missing = []
            bus = Bus(nc)
            for file_id in file_doc:
                stored: StoredChunks = await bus.call(
                    subjects.VECTORS_STORED, FileVectorsRef(file_id=file_id), timeout=10
                )
                if stored.count == 0:
                    missing.append(file_id)
        finally:
            await nc.close()
            await stack.astop()
    print(f"B = {args.model_b}: stack restarted; swapped in after {swapped:.1f} s")
    asked = len(rounds) * len(data.queries)
    failed = sum(r[2] for r in rounds)
    scores = [r[1] for r in rounds]
    print(
        f"  during the rebuild: {len(rounds)} rounds of every query, {asked - failed}/{asked}"
        f" answered; hybrid nDCG@10 {min(scores, default=0):.3f}-{max(scores, default=0):.3f}"
    )
    shown = -10.0
    for at, score, _, progress in rounds:  # about every 10 s
        if at - shown >= 10:
            shown = at
            print(f"    t={at:5.1f} s ({progress}): hybrid nDCG@10 {score:.3f}")
    print(
        f"  after the swap: hybrid nDCG@10 {after:.3f}"
        f" ({len(data.queries) - failed_after}/{len(data.queries)} answered);"
        f" {len(file_doc)} files ({HELD_BACK} uploaded during the rebuild),"
        f" {len(missing)} without chunks in the store"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="arcd")
    parser.add_argument("--root", default=str(rq.DATASETS))
    parser.add_argument("--model-a", default="all-minilm-l6-v2")
    parser.add_argument("--fp32-a", dest="quantized_a", action="store_false")
    parser.add_argument("--model-b", default="multilingual-e5-small")
    parser.add_argument("--fp32-b", dest="quantized_b", action="store_false")
    await run(parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(run_stoppable(main()))
