"""A vector store whose every call is a client span (`qdrant <method>`), used only while
tracing is on (see common.tracing): the store the factory opens is wrapped, or not."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, cast

from common import tracing
from vectorstore.points import Hit, SearchQuery
from vectorstore.store import VectorStore


class TracedStore:
    """Forwards to `store`; coroutine methods run inside a span, built once per name."""

    def __init__(self, store: VectorStore, engine: str) -> None:
        self._store = store
        self._attributes = {"db.system": "qdrant", "ragway.vector_engine": engine}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if not inspect.iscoroutinefunction(target):
            return target
        span_name, attributes = f"qdrant {name}", self._attributes

        @functools.wraps(target)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            with tracing.span(span_name, tracing.CLIENT, attributes):
                return await target(*args, **kwargs)

        self.__dict__[name] = traced  # found without __getattr__ from now on
        return traced

    def thread_search(self) -> Callable[[Sequence[SearchQuery]], list[list[Hit]]] | None:
        search = self._store.thread_search()
        if search is None:
            return None
        attributes = self._attributes

        def traced(queries: Sequence[SearchQuery]) -> list[list[Hit]]:
            # run in a worker thread whose context was copied from the caller's
            with tracing.span("qdrant search_many", tracing.CLIENT, attributes):
                return search(queries)

        return traced


def traced(store: VectorStore, engine: str) -> VectorStore:
    return cast(VectorStore, TracedStore(store, engine))
