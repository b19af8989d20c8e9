"""CPU per read of the proxy's backend client parser (inference_proxy.backend_http), fed
the bytes a streaming backend sends, without sockets: what `data_received` costs.

    .venv/bin/python bench/backend_parse.py [--events 200] [--rounds 200]

Whatever `inference_proxy.backend_http` is first on PYTHONPATH is measured, so the same
script compares two trees (e.g. PYTHONPATH=/work/main/libs:/work/main/services for the
hand-written parser): run both in one sitting. Cases: one SSE event per chunk per read
(llama-server's pace), eight chunks per read (a backend ahead of its reader), and a
whole small response (head + Content-Length body) per new response.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from inference_proxy.backend_http import BackendPool, BackendResponse

try:  # the layout after the httptools change
    from inference_proxy.backend_http.response import _Connection
except ImportError:  # the single-module client before it
    from inference_proxy.backend_http import _Connection  # type: ignore[attr-defined,no-redef]

EVENT = (
    b'data: {"id":"chatcmpl-0123456789","object":"chat.completion.chunk","created":1,'
    b'"model":"fast","choices":[{"index":0,"delta":{"content":"t1 "},"finish_reason":null}]}'
    b"\n\n"
)
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 GMT\r\nServer: llama.cpp\r\n\r\n"
)
JSON = b'{"object":"list","data":[{"id":"fast","object":"model","owned_by":"llamacpp"}]}'
SMALL = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    b"Keep-Alive: timeout=5, max=100\r\nServer: llama.cpp\r\n\r\n%s" % (len(JSON), JSON)
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def new_response(pool: Any) -> tuple[Any, Any]:
    conn = _Connection(("http", "127.0.0.1", 1))
    response = BackendResponse(conn, pool)
    conn.response = response
    return conn, response


def stream_reads(pool: Any, reads: list[bytes], rounds: int) -> float:
    """CPU µs per read: the head, then each read fed and its bytes taken."""
    total, count = 0, 0
    for _ in range(rounds):
        conn, response = new_response(pool)
        conn.data_received(HEAD)
        started = time.process_time_ns()
        for data in reads:
            conn.data_received(data)
            response.buffered()
        total += time.process_time_ns() - started
        count += len(reads)
        assert response.ended
    return total / count / 1000


def small_responses(pool: Any, rounds: int) -> float:
    """CPU µs per whole small response (a model list): parser made, head and body."""
    started = time.process_time_ns()
    for _ in range(rounds):
        conn, response = new_response(pool)
        conn.data_received(SMALL)
        assert response.ended and response.buffered() == JSON
    return (time.process_time_ns() - started) / rounds / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200, help="events per stream")
    parser.add_argument("--rounds", type=int, default=200, help="streams per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="measurements (median shown)")
    args = parser.parse_args()
    pool = BackendPool()
    one = [chunk(EVENT) for _ in range(args.events)]
    one[-1] += b"0\r\n\r\n"
    eight = [b"".join(one[i : i + 8]) for i in range(0, len(one), 8)]
    results = {
        "1 event per read (µs/read)": [
            stream_reads(pool, one, args.rounds) for _ in range(args.repeats)
        ],
        "8 events per read (µs/read)": [
            stream_reads(pool, eight, args.rounds) for _ in range(args.repeats)
        ],
        "small response (µs/response)": [
            small_responses(pool, args.rounds * 10) for _ in range(args.repeats)
        ],
    }
    module = BackendResponse.__module__
    print(f"parser: {module}")
    for name, values in results.items():
        print(f"  {name:32s} median {statistics.median(values):7.2f}  min {min(values):7.2f}")


if __name__ == "__main__":
    main()
