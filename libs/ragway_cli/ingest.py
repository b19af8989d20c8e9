"""`ragway ingest`: upload a tree of files concurrently, follow their processing, report.

Safe to re-run: a local file whose sha256 equals the `hash` of one of the caller's files
on the server (not failed) is not uploaded again; it is only linked and waited for.
"""

from __future__ import annotations

import asyncio
import mimetypes
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ragway_cli.client import Api
from ragway_cli.errors import CliError
from ragway_cli.format import size
from ragway_cli.resources import create_knowledge, find_knowledge, items_of
from ragway_cli.walk import collect, sha256_of

UPLOAD_CHUNK = 256 * 1024
TERMINAL = ("completed", "failed")
POLL_INTERVAL_S = 0.5
STATUS_RANK = {"completed": 0, "processing": 1, "pending": 2}


@dataclass
class IngestOptions:
    knowledge: str | None = None
    glob: str = "*"
    concurrency: int = 4
    wait: bool = True
    timeout_s: float = 600.0


@dataclass
class Entry:
    """One local file and what became of it."""

    path: Path
    size: int
    sha256: str = ""
    file_id: str = ""
    action: str = ""  # "uploaded" | "already uploaded" | "same content as another path"
    outcome: str = ""  # "done" | "failed" | "uploaded" (not waited for)
    reason: str = ""


@dataclass
class _Document:
    """Every local path with the same content: uploaded and followed once."""

    sha256: str
    entries: list[Entry]
    existing: dict[str, Any] | None = None
    file_id: str = ""
    outcome: str = ""
    reason: str = ""
    action: str = ""

    def settle(self, outcome: str, reason: str = "") -> None:
        self.outcome, self.reason = outcome, reason


class _Bars:
    """Two live bars: bytes uploaded (and files), files processed."""

    def __init__(self, progress: Progress, upload_files: int, upload_bytes: int, wait: int) -> None:
        self.progress = progress
        self.upload_files, self.upload_bytes = upload_files, upload_bytes
        self.files_sent = self.bytes_sent = self.processed = 0
        self.process_total = wait
        self.running = 0
        self.upload = progress.add_task("Uploading", total=max(upload_bytes, 1), counts="")
        self.process = progress.add_task(
            "Processing", total=max(wait, 1), counts="", visible=wait > 0
        )
        if not upload_files:
            progress.update(self.upload, completed=1, description="Uploading (nothing new)")
        self._redraw()

    def sent(self, size: int) -> None:
        self.bytes_sent += size
        self.progress.advance(self.upload, size)
        self._redraw()

    def upload_done(self) -> None:
        self.files_sent += 1
        self._redraw()

    def processing_started(self) -> None:
        self.running += 1
        self._redraw()

    def processing_ended(self, started: bool = True) -> None:
        self.running -= 1 if started else 0
        self.processed += 1
        self.progress.advance(self.process)
        self._redraw()

    def _redraw(self) -> None:
        self.progress.update(
            self.upload,
            counts=f"{self.files_sent}/{self.upload_files} files, "
            f"{size(self.bytes_sent)} of {size(self.upload_bytes)}",
        )
        running = f", {self.running} running" if self.running else ""
        self.progress.update(
            self.process, counts=f"{self.processed}/{self.process_total} files{running}"
        )


def best_by_hash(files: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The caller's server files by content hash, the furthest along first; failed ones left out."""
    best: dict[str, dict[str, Any]] = {}
    for record in files:
        digest = record.get("hash")
        status = (record.get("data") or {}).get("status", "pending")
        if not digest or status not in STATUS_RANK:
            continue
        current = best.get(digest)
        if current is None or STATUS_RANK[status] < STATUS_RANK[_status(current)]:
            best[digest] = record
    return best


def _status(record: dict[str, Any]) -> str:
    return str((record.get("data") or {}).get("status", "pending"))


async def ingest(
    api: Api, paths: list[Path], options: IngestOptions, console: Console
) -> list[Entry]:
    """Upload, link and wait for every file; the entries in input order, each settled."""
    found = collect(paths, options.glob)
    if not found:
        raise CliError(f"No files matched {options.glob!r} under {', '.join(map(str, paths))}")
    entries = [Entry(path=path, size=path.stat().st_size) for path in found]
    hashing = asyncio.Semaphore(4)

    async def hash_entry(entry: Entry) -> None:
        async with hashing:
            entry.sha256 = await asyncio.to_thread(sha256_of, entry.path)

    await asyncio.gather(*(hash_entry(entry) for entry in entries))
    existing = best_by_hash(items_of(await api.call("GET", "/api/v1/files/")))
    knowledge_id = await _knowledge_for(api, options.knowledge, console)

    documents: dict[str, _Document] = {}
    for entry in entries:
        document = documents.setdefault(entry.sha256, _Document(entry.sha256, []))
        document.entries.append(entry)
    for document in documents.values():
        document.existing = existing.get(document.sha256)

    new = [d for d in documents.values() if d.existing is None]
    with Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bars = _Bars(
            progress,
            upload_files=len(new),
            upload_bytes=sum(d.entries[0].size for d in new),
            wait=len(documents) if options.wait else 0,
        )
        uploads = asyncio.Semaphore(max(options.concurrency, 1))
        follows = asyncio.Semaphore(max(options.concurrency * 4, 8))
        deadline = time.monotonic() + options.timeout_s
        await asyncio.gather(
            *(
                _handle(api, document, knowledge_id, options, bars, uploads, follows, deadline)
                for document in documents.values()
            )
        )
    for document in documents.values():
        for index, entry in enumerate(document.entries):
            entry.file_id = document.file_id
            entry.outcome, entry.reason = document.outcome, document.reason
            entry.action = document.action if index == 0 else "same content as another path"
    return entries


async def _knowledge_for(api: Api, name: str | None, console: Console) -> str | None:
    if not name:
        return None
    found = await find_knowledge(api, name)
    if found is not None:
        return str(found["id"])
    created = await create_knowledge(api, name)
    console.print(f"Created knowledge collection [bold]{name}[/] ({created['id']})")
    return str(created["id"])


async def _handle(
    api: Api,
    document: _Document,
    knowledge_id: str | None,
    options: IngestOptions,
    bars: _Bars,
    uploads: asyncio.Semaphore,
    follows: asyncio.Semaphore,
    deadline: float,
) -> None:
    """Upload (unless the server has it), link to the collection, wait for processing."""
    status = "pending"
    try:
        if document.existing is not None:
            document.file_id = str(document.existing["id"])
            document.action = "already uploaded"
            status = _status(document.existing)
        else:
            async with uploads:
                record = await upload_file(
                    api,
                    document.entries[0].path,
                    bars.sent,
                )
                bars.upload_done()
            document.file_id = str(record["id"])
            document.action = "uploaded"
        if knowledge_id is not None:
            await api.call(
                "POST",
                f"/api/v1/knowledge/{knowledge_id}/file/add",
                json={"file_id": document.file_id},
            )
    except CliError as exc:
        document.settle("failed", exc.message)
        if options.wait:
            bars.processing_ended(started=False)
        return
    if not options.wait:
        document.settle("uploaded")
        return
    bars.processing_started()
    try:
        if status in TERMINAL:
            final, error = status, ""
        else:
            async with follows:
                final, error = await wait_processed(api, document.file_id, deadline)
    except CliError as exc:
        final, error = "failed", exc.message
    finally:
        bars.processing_ended()
    if final == "completed":
        document.settle("done")
    elif final == "failed":
        document.settle("failed", error or "processing failed")
    else:
        document.settle("failed", f"still {final} after waiting {options.timeout_s:g} s")


async def upload_file(api: Api, path: Path, on_bytes: Callable[[int], None]) -> dict[str, Any]:
    """Stream one file as multipart field `file`; the server's file object."""
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(_read_chunks(path, on_bytes), {"Content-Type": content_type})
    part.set_content_disposition("form-data", name="file", filename=path.name)
    record = await api.call("POST", "/api/v1/files/", data=writer)
    if not isinstance(record, dict) or "id" not in record:
        raise CliError(f"ragway answered the upload of {path.name} without a file id")
    return record


async def _read_chunks(path: Path, on_bytes: Callable[[int], None]) -> AsyncIterator[bytes]:
    file = await asyncio.to_thread(path.open, "rb")
    try:
        while piece := await asyncio.to_thread(file.read, UPLOAD_CHUNK):
            on_bytes(len(piece))
            yield piece
    finally:
        file.close()


async def wait_processed(api: Api, file_id: str, deadline: float) -> tuple[str, str]:
    """(status, error) once the file is completed/failed, or its last status at the deadline.

    Follows the SSE status stream; when a stream ends early (the server bounds them) or the
    server cannot stream, asks for the status and waits again, polling if need be.
    """
    path = f"/api/v1/files/{file_id}/process/status"
    streaming = True
    status, error = "pending", ""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return status, error
        if streaming:
            try:
                async with asyncio.timeout(remaining):
                    async for event in api.events("GET", path, params={"stream": "true"}):
                        status, error = _status_event(event)
                        if status in TERMINAL:
                            return status, error
            except TimeoutError:
                return status, error
            except CliError as exc:
                if exc.message.startswith("Not found"):
                    raise
                streaming = False
        status, error = _status_event(await api.call("GET", path))
        if status in TERMINAL:
            return status, error
        pause = POLL_INTERVAL_S if not streaming else POLL_INTERVAL_S / 5
        await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))


def _status_event(event: Any) -> tuple[str, str]:
    if not isinstance(event, dict):
        return "pending", ""
    return str(event.get("status", "pending")), str(event.get("error") or "")
