"""The retrieval service's configuration: safe embedded defaults, decoded once in __main__."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from common.placeholders import refuse_placeholder
from common.settings import Name, Positive, ServiceSettings
from embedding.settings import EmbedderSettings, service_embedder


class Settings(ServiceSettings, kw_only=True):
    """KV buckets `<prefix>_knowledge`, `<prefix>_files`, ..."""

    # the embedded store (Qdrant's engine in-process) lives in `<data_dir>/qdrant`
    data_dir: str = "./data"
    # set: use this Qdrant server instead of the embedded engine (same code path)
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    collection: Name = "ragway_chunks"
    # threads of the embedded engine's search pool (it reads segments in parallel). Every
    # query is filtered to a few files: one thread answers it with 0.17 ms of CPU where the
    # default pool (one per core) spends 0.42 ms on hand-offs (100k chunks here). 0: leave
    # the stored shard's pool as it is (the engine's default for a new one).
    vector_search_threads: Annotated[int, msgspec.Meta(ge=0)] = 1
    # the embedding model (see libs/embedding), read from the same variables as ingestion's;
    # queries are a few tokens: one thread each lets concurrent queries use the cores
    embedding: EmbedderSettings = msgspec.field(default_factory=service_embedder)
    # hybrid search: how dense and BM25 candidates are fused: `trust` (retrieval/fusion.py)
    # weighs BM25 per query by how much its top candidates agree with dense's, less for
    # one- or two-term queries; `rrf` and `dbsf` are the engine's own fusions (figures:
    # bench/RESULTS.md)
    hybrid_fusion: Literal["trust", "rrf", "dbsf"] = "trust"
    # Unicode scripts the dense model was trained on (comma-separated); a hybrid query
    # written mostly in other scripts runs on BM25 alone. Empty: always fuse. `model`: the
    # scripts the model's catalog entry names (MiniLM: latin; multilingual-e5-small: all).
    dense_scripts: str = "model"
    # an external reranker (retrieval/rerank.py): the endpoint's full URL (empty: none),
    # its protocol (`tei`: text-embeddings-inference; `infinity`: Infinity, Cohere, Jina),
    # a bearer key, a model name (sent with `infinity`), how many fused candidates of each
    # searched item it scores, and how long it may take before the fused order is kept
    reranker_url: str = ""
    reranker_protocol: Literal["tei", "infinity"] = "tei"
    reranker_api_key: str = ""
    reranker_model: str = ""
    reranker_top_n: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    reranker_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
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

    def check(self) -> None:
        refuse_placeholder("RAGWAY_QDRANT_API_KEY", self.qdrant_api_key)
        refuse_placeholder("RAGWAY_RERANKER_API_KEY", self.reranker_api_key)

    def edge_path(self) -> Path:
        return Path(self.data_dir).expanduser() / "qdrant"
