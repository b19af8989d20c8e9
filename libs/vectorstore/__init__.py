"""One small async interface over two real Qdrant engines.

`EdgeStore` runs Qdrant's engine in-process (the embedded default); `ServerStore` talks
to a Qdrant server. `open_store` picks one from configuration.
"""

from vectorstore.factory import open_store
from vectorstore.points import ChunkPoint, Fusion, Hit, SearchMode, SearchQuery, point_id
from vectorstore.store import VectorStore

__all__ = [
    "ChunkPoint",
    "Fusion",
    "Hit",
    "SearchMode",
    "SearchQuery",
    "VectorStore",
    "open_store",
    "point_id",
]
