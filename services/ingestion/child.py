"""Run the text pipeline in a child process with a memory cap and a wall-clock limit.

Parsers (pypdf, python-docx/lxml, the CSV sniffer) run on whatever bytes users upload.
In a child, a hostile file can cost at most `memory_bytes` of address space (RLIMIT_AS)
and `timeout_seconds` of wall time, and whatever it does to the parser dies with the
child: the worker, its embedder and its other jobs are untouched.

Children fork from a forkserver that has imported the pipeline once (a fork of the
worker itself, with onnxruntime's threads, would be unsafe), so each file costs a fork,
not an interpreter start. The reply crosses a pipe as msgpack.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Literal

import msgspec

from ingestion.chunking import ChunkingOptions
from ingestion.documents import ProcessedFile
from ingestion.errors import ExtractionError, too_large, unreadable
from ingestion.extraction import ExtractionLimits

PRELOAD = ["ingestion.pipeline"]
# a peak address space this close to the cap means allocations were failing
_NEAR_CAP = 64 * 1024 * 1024


class ChildLimits(msgspec.Struct, frozen=True, kw_only=True):
    memory_bytes: int = 1024 * 1024 * 1024
    timeout_seconds: float = 120.0


class _Failure(msgspec.Struct, frozen=True, kw_only=True):
    code: Literal["invalid", "unsupported", "too_large"]
    reason: str


class _Reply(msgspec.Struct, frozen=True, kw_only=True):
    processed: ProcessedFile | None = None
    failure: _Failure | None = None


# sent by the child once the text is extracted, before it is chunked (never a valid reply)
EXTRACTED = b"extracted"
_encode = msgspec.msgpack.Encoder().encode
_decode_reply = msgspec.msgpack.Decoder(_Reply).decode


def _context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # only takes effect before the server starts
    return context


async def process_file_in_child(
    blob: bytes,
    filename: str,
    content_type: str,
    *,
    limits: ExtractionLimits,
    chunking: ChunkingOptions,
    child: ChildLimits,
    on_extracted: Callable[[], Awaitable[None]] | None = None,
) -> ProcessedFile:
    """`process_file` in a child; raises `ExtractionError` with a reason for the uploader,
    also when the child ran out of memory or time, or died.

    `on_extracted` is awaited once the text is extracted, while the child chunks it; what
    it raises stops the child and propagates.
    """
    context = _context()
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_run,
        args=(send, blob, filename, content_type, limits, chunking, child.memory_bytes),
        daemon=True,
    )
    try:
        await asyncio.to_thread(process.start)
        send.close()
        deadline = asyncio.get_running_loop().time() + child.timeout_seconds
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or not await asyncio.to_thread(receive.poll, left):
                raise too_large(
                    f"Reading the file took longer than {child.timeout_seconds:,.0f} s; "
                    "it was stopped"
                )
            try:
                message = await asyncio.to_thread(receive.recv_bytes)
            except EOFError:  # the child died without a word: killed, or crashed in C code
                raise _died(child) from None
            if message != EXTRACTED:
                break
            if on_extracted is not None:
                await on_extracted()
        reply = _decode_reply(message)
    finally:
        receive.close()
        if process.is_alive():
            process.kill()
        await asyncio.to_thread(process.join)
    if reply.failure is not None:
        raise ExtractionError(reply.failure.code, reply.failure.reason)
    assert reply.processed is not None
    return reply.processed


def _died(child: ChildLimits) -> ExtractionError:
    limit = child.memory_bytes / 2**20
    return unreadable(
        f"Reading the file failed (it may need more than the {limit:,.0f} MiB allowed); "
        "it was stopped"
    )


def _run(
    send: Connection,
    blob: bytes,
    filename: str,
    content_type: str,
    limits: ExtractionLimits,
    chunking: ChunkingOptions,
    memory_bytes: int,
) -> None:
    """The child: cap the address space, run the pipeline, send one reply."""
    from ingestion.pipeline import process_file

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        processed = process_file(
            blob,
            filename,
            content_type,
            limits=limits,
            chunking=chunking,
            on_extracted=lambda: send.send_bytes(EXTRACTED),
        )
        reply = _Reply(processed=processed)
    except Exception as exc:  # ExtractionError, MemoryError, a parser bug alike
        reply = _Reply(failure=_failure(exc, memory_bytes))
    del blob
    send.send_bytes(_encode(reply))
    send.close()


def _failure(exc: BaseException, memory_bytes: int) -> _Failure:
    """Why the pipeline failed, in the uploader's words.

    Parsers turn a failed allocation into many things (lxml: a syntax error, so
    "damaged"), so a failure with the address space near its cap is the cap's doing.
    A parser's bug on odd input is this file's fault too, never a transient one.
    """
    if isinstance(exc, MemoryError) or _peak_address_space() > memory_bytes - _NEAR_CAP:
        limit = memory_bytes / 2**20
        return _Failure(
            code="too_large",
            reason=f"Reading the file needs more than the {limit:,.0f} MiB allowed",
        )
    if isinstance(exc, ExtractionError):
        code = exc.code if exc.code in ("unsupported", "too_large") else "invalid"
        return _Failure(code=code, reason=exc.reason)
    return _Failure(
        code="invalid",
        reason=f"The file could not be read ({type(exc).__name__}); "
        "it may be damaged or not what its name says",
    )


def _peak_address_space() -> int:
    """This process's peak virtual size (VmPeak), in bytes; 0 when unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0
