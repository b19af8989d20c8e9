"""The ingestion service's counters for /metrics (see common.metrics): files finished by
status, chunks embedded (chunks/s is its rate), jobs by outcome."""

from __future__ import annotations

from collections.abc import Mapping

from common.metrics import Family, counter
from ingestion.vectors import EmbeddingStats
from ingestion.worker import WorkerStats


def ingest_families(
    files: Mapping[str, int], embedding: EmbeddingStats, jobs: WorkerStats
) -> list[Family]:
    return [
        counter(
            "ragway_ingest_files",
            "Files this instance finished, by status (completed, failed)",
            (({"status": status}, n) for status, n in files.items()),
        ),
        counter(
            "ragway_ingest_chunks",
            "Chunks this instance embedded (`copied`: vectors reused from identical files)",
            [
                ({"how": "embedded"}, embedding.chunks_embedded),
                ({"how": "copied"}, embedding.chunks_copied),
            ],
        ),
        counter(
            "ragway_ingest_embed_seconds",
            "Time spent computing embeddings",
            [({}, embedding.embed_seconds)],
        ),
        counter(
            "ragway_ingest_jobs",
            "Queue jobs this instance settled, by outcome",
            [
                ({"outcome": "completed"}, jobs.completed),
                ({"outcome": "failed"}, jobs.failed),
                ({"outcome": "skipped"}, jobs.skipped),
                ({"outcome": "retried"}, jobs.retried),
            ],
        ),
    ]
