"""Listing one user's files and chats when that user has 10,000 of each (and other users
20,000 more files): a page through the per-user index against reading the bucket.

    .venv/bin/python bench/listing_latency.py [--files 10000] [--others 20000] [--runs 20]

A real nats-server (JetStream on a temp dir), the same `FileCatalog` and `ChatStore` the
gateway uses. Timed: one page of 50 files (`page_for`: the owner index's keys, then 50
record reads in one pipelined pass), the whole list (`list_for`, what the bare `GET
/api/v1/files/` reads), one page of 60 chats, the whole chat list, and a chat search
by a word of the messages (each chat has a question and an answer, ~150 characters).
Baselines in the same run: what a listing cost before the index, one pass over the whole
files bucket filtered to the user (`list_all`), and the whole list read one `get` per
record (what `list_for` did before `Bucket.get_many`).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness import loadavg, median, write_results

from catalog.chats import ChatStore
from catalog.files import FileCatalog, now
from common.logging import configure_logging
from common.nats_conn import connect_nats
from contracts.files import FileData, FileMeta, FileRecord
from stack.nats_server import NatsServer, NatsServerConfig, free_port

USER = "bench-user"
WRITE_CONCURRENCY = 256


def a_record(user_id: str, n: int) -> FileRecord:
    stamp = now() - n
    return FileRecord(
        id=str(uuid.uuid4()),
        user_id=user_id,
        hash=uuid.uuid4().hex,
        filename=f"file-{n}.md",
        data=FileData(status="completed", chunks_done=3, chunks_total=3),
        meta=FileMeta(name=f"file-{n}.md", content_type="text/markdown", size=1000 + n),
        created_at=stamp,
        updated_at=stamp,
    )


async def in_batches(calls: list[Callable[[], Awaitable[Any]]]) -> None:
    for start in range(0, len(calls), WRITE_CONCURRENCY):
        await asyncio.gather(*(call() for call in calls[start : start + WRITE_CONCURRENCY]))


async def timed(runs: int, work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Median milliseconds of `runs` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = await work()
        times.append((time.perf_counter() - started) * 1000)
    return median(times), result


async def measure(files: int, others: int, runs: int, store_dir: Path) -> dict[str, Any]:
    server = NatsServer(
        NatsServerConfig(port=free_port(), monitor_port=free_port(), store_dir=store_dir)
    )
    await server.astart()
    try:
        async with connect_nats([server.url], name="bench-listing") as nc:
            js = nc.jetstream(timeout=30)
            catalog = await FileCatalog.open(js, "bench")
            chats = await ChatStore.open(js, "bench")
            print(f"writing {files} files and chats for one user, {others} files of others...")
            await in_batches(
                [lambda n=n: catalog.create(a_record(USER, n)) for n in range(files)]
                + [
                    lambda n=n: catalog.create(a_record(f"other{n % 100}", n))
                    for n in range(others)
                ]
                + [lambda n=n: chats.create(USER, a_chat(n)) for n in range(files)]
            )

            async def old_files_listing() -> list[FileRecord]:
                records = [r for r in await catalog.list_all() if r.user_id == USER]
                records.sort(key=lambda r: r.created_at, reverse=True)
                return records

            async def old_whole_list() -> list[FileRecord]:
                ids = [r.id for r in await catalog.list_for(USER)]  # the index's order
                found: list[FileRecord] = []
                for start in range(0, len(ids), 256):  # as get_many read them before
                    batch = ids[start : start + 256]
                    found += [r for r in await asyncio.gather(*map(catalog.get, batch)) if r]
                return found

            figures: dict[str, Any] = {"files": files, "others": others, "runs": runs}
            checks = {
                "files_page_ms": (lambda: catalog.page_for(USER, 0, 50)),
                "files_last_page_ms": (lambda: catalog.page_for(USER, files - 50, 50)),
                "files_all_ms": (lambda: catalog.list_for(USER)),
                "files_all_one_get_each_ms": old_whole_list,
                "files_bucket_scan_ms": old_files_listing,
                "chats_page_ms": (lambda: chats.list(USER, page=1)),
                "chats_all_ms": (lambda: chats.list(USER)),
                "chats_search_ms": (lambda: chats.search(USER, "heron 99")),
                "chats_search_words_ms": (lambda: chats.search(USER, "reeds 1234")),
            }
            for name, work in checks.items():
                few = runs if name.endswith(("page_ms", "search_ms")) else max(runs // 4, 3)
                figures[name], result = await timed(few, work)
                size = len(result[0]) if isinstance(result, tuple) else len(result)
                print(f"  {name:<22} {figures[name]:9.1f} ms  ({size} items)")
            page, total = await catalog.page_for(USER, 0, 50)
            assert len(page) == 50 and total == files, (len(page), total)
            return figures
    finally:
        await server.astop()


def a_chat(n: int) -> dict[str, Any]:
    """A short chat as Open WebUI's UI stores it: a question and an answer."""
    question = f"Where does heron {n} nest when the water is high?"
    answer = f"Heron {n} nests in tall reeds near the shore, about a metre above the water."
    return {
        "title": f"chat {n}",
        "history": {
            "currentId": "a",
            "messages": {
                "q": {"id": "q", "role": "user", "content": question, "childrenIds": ["a"]},
                "a": {"id": "a", "parentId": "q", "role": "assistant", "content": answer},
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--others", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    configure_logging(level="warning", json=True)
    print(f"listing latency ({loadavg()})")
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(measure(args.files, args.others, args.runs, Path(tmp)))
    ratio = figures["files_bucket_scan_ms"] / figures["files_page_ms"]
    print(
        f"a page of files: {figures['files_page_ms']:.1f} ms, {ratio:.0f}x faster than the "
        f"bucket scan listings used ({figures['files_bucket_scan_ms']:.0f} ms); a page of "
        f"chats {figures['chats_page_ms']:.1f} ms (all {figures['chats_all_ms']:.0f} ms)"
    )
    print(
        f"the whole list of {args.files} files: {figures['files_all_ms']:.0f} ms "
        f"(one get per record: {figures['files_all_one_get_each_ms']:.0f} ms); a search of "
        f"{args.files} chats by message text: {figures['chats_search_ms']:.0f} ms"
    )
    figures["load"] = loadavg()
    write_results("listing_latency", figures)


if __name__ == "__main__":
    main()
