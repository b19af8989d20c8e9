"""The retrieval service's configuration: safe embedded defaults, decoded once in __main__."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from common.settings import default_cache_dir

Positive = Annotated[int, msgspec.Meta(ge=1)]


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    nats_url: str = "nats://127.0.0.1:4222"  # comma-separated for a cluster
    log_level: str = "info"
    # KV buckets are `<prefix>_knowledge`, `<prefix>_files`, ...; tests isolate by it
    bucket_prefix: Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z0-9_-]+$")] = "ragway"
    kv_replicas: Positive = 1  # 3 on a NATS cluster
    # requests this process handles at once; one more is answered `unavailable` (503) at once
    max_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 512
    # the embedded store (Qdrant's engine in-process) lives in `<data_dir>/qdrant`
    data_dir: str = "./data"
    # set: use this Qdrant server instead of the embedded engine (same code path)
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    collection: Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z0-9_-]+$")] = "ragway_chunks"
    # threads of the embedded engine's search pool (it reads segments in parallel). Every
    # query is filtered to a few files: one thread answers it with 0.17 ms of CPU where the
    # default pool (one per core) spends 0.42 ms on hand-offs (100k chunks here). 0: leave
    # the stored shard's pool as it is (the engine's default for a new one).
    vector_search_threads: Annotated[int, msgspec.Meta(ge=0)] = 1
    # embedding model (see libs/embedding): where exported models live and which one
    cache_dir: str = msgspec.field(default_factory=default_cache_dir)
    embedding_model: str = "all-minilm-l6-v2"
    embedding_model_dir: str = ""
    # int8 (MatMul-only, per channel): ~1.6x faster than fp32, msmarco nDCG@10 -0.006
    embedding_quantized: bool = True
    # onnxruntime threads per query embedding: queries are a few tokens, and one thread each
    # lets concurrent queries use the cores instead of fighting over them (0: all cores)
    embedding_threads: Annotated[int, msgspec.Meta(ge=0)] = 1
    bm25_language: str = "english"
    bm25_stopwords: str = "english,arabic"
    # hybrid search: how dense and BM25 candidates are fused (see bench/retrieval_quality.py)
    hybrid_fusion: Literal["rrf", "dbsf"] = "rrf"
    # Unicode scripts the dense model was trained on (comma-separated); a hybrid query
    # written mostly in other scripts runs on BM25 alone. Empty: always fuse (set it empty,
    # or to the model's scripts, for a multilingual model).
    dense_scripts: str = "latin"
    default_k: Positive = 4  # used when a query asks for k <= 0
    max_k: Positive = 100
    # the longest a query may wait for files that are still being ingested
    max_wait_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    # query vectors kept for repeated questions (dense + BM25 of a query text; 0: none)
    query_cache_size: Annotated[int, msgspec.Meta(ge=0)] = 256
    # searches and vector writes run in threads: this bounds how many at once
    store_concurrency: Positive = 4
    # the embeddings API (`/api/embeddings` with ragway's own model): batches embedded at
    # once (each takes a core while it runs), and the most one batch may hold
    embedding_api_concurrency: Positive = 1
    embedding_api_max_batch: Positive = 256
    embedding_api_max_batch_chars: Positive = 1_000_000

    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    def edge_path(self) -> Path:
        return Path(self.data_dir).expanduser() / "qdrant"
