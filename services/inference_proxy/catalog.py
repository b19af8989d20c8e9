"""The model list: every backend asked concurrently, merged like Open WebUI, cached."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import structlog

from common.codec import encode
from common.errors import RagwayError
from contracts.embeddings import EmbeddingModel
from contracts.models import Model, ModelsReply
from inference_proxy.backend_http import BackendHTTPError, BackendPool
from inference_proxy.settings import Backend

log = structlog.get_logger()


class _OpenAIModels(msgspec.Struct):
    data: list[dict[str, Any]] = []


class _OllamaTags(msgspec.Struct):
    models: list[dict[str, Any]] = []


@dataclass(frozen=True, slots=True)
class Route:
    """Where a model can be served: candidate backends of one kind."""

    model: str
    backends: tuple[Backend, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    models: list[Model]
    routes: dict[str, Route]
    encoded: bytes  # the ModelsReply JSON, encoded once per refresh
    fetched_at: float
    # embedding models ragway serves itself (retrieval's), by id; listed after the rest
    local_embeddings: dict[str, EmbeddingModel] = field(default_factory=dict)


class HealthReport(Protocol):
    """Told when a backend fails its model-list fetch (the catalog's health check)."""

    def failed(self, backend: Backend, reason: str) -> None: ...


# ragway's own embedding models, from the service that runs them ([] when it is away)
LocalModels = Callable[[], Awaitable[list[EmbeddingModel]]]


async def _no_local_models() -> list[EmbeddingModel]:
    return []


class ModelCatalog:
    """Fetches model lists; concurrent callers share one fetch in flight."""

    def __init__(
        self,
        pool: BackendPool,
        openai: list[Backend],
        ollama: list[Backend],
        *,
        cache_seconds: float,
        fetch_timeout: float,
        local_models: LocalModels = _no_local_models,
        health: HealthReport | None = None,
    ) -> None:
        self._pool = pool
        self._health = health
        self._local_models = local_models
        self._openai = openai
        self._ollama = ollama
        self._cache_seconds = cache_seconds
        self._fetch_timeout = fetch_timeout  # connecting, the answer and its whole body
        self._snapshot: Snapshot | None = None
        self._inflight: asyncio.Future[Snapshot] | None = None

    async def snapshot(self, *, refresh: bool = False, max_age: float | None = None) -> Snapshot:
        """The cached list, or a fresh one when asked or when older than the cache time."""
        age_limit = self._cache_seconds if max_age is None else max_age
        current = self._snapshot
        fresh = current is not None and time.monotonic() - current.fetched_at < age_limit
        if not refresh and fresh and current is not None:
            return current
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch_all())
            self._inflight.add_done_callback(self._fetched)
        return await asyncio.shield(self._inflight)

    def _fetched(self, future: asyncio.Future[Snapshot]) -> None:
        self._inflight = None
        if not future.cancelled() and future.exception() is None:
            self._snapshot = future.result()

    async def route(self, model_id: str) -> Route | None:
        """Where `model_id` lives; one refresh when it is unknown (it may be new)."""
        snapshot = await self.snapshot()
        found = snapshot.routes.get(model_id)
        if found is None and time.monotonic() - snapshot.fetched_at > 1.0:
            found = (await self.snapshot(refresh=True)).routes.get(model_id)
        return found

    async def embedding_route(self, model_id: str) -> Route | EmbeddingModel | None:
        """Where embeddings by `model_id` come from: a backend, or ragway's own model."""
        snapshot = await self.snapshot()
        found = snapshot.routes.get(model_id) or snapshot.local_embeddings.get(model_id)
        if found is None and time.monotonic() - snapshot.fetched_at > 1.0:
            snapshot = await self.snapshot(refresh=True)
            found = snapshot.routes.get(model_id) or snapshot.local_embeddings.get(model_id)
        return found

    async def _fetch_all(self) -> Snapshot:
        openai_lists, ollama_lists, local = await asyncio.gather(
            asyncio.gather(*(self._fetch_openai(b) for b in self._openai)),
            asyncio.gather(*(self._fetch_ollama(b) for b in self._ollama)),
            self._fetch_local(),
        )
        now = int(time.time())
        models: list[Model] = []
        routes: dict[str, Route] = {}
        for backend, entries in zip(self._openai, openai_lists, strict=True):
            for entry in entries:
                model_id = entry.get("id")
                if not isinstance(model_id, str):
                    continue
                if model_id in routes:  # served by several: listed once, balanced over all
                    found = routes[model_id]
                    if backend not in found.backends:
                        routes[model_id] = Route(model_id, (*found.backends, backend))
                    continue
                routes[model_id] = Route(model_id, (backend,))
                models.append(
                    Model(
                        id=model_id,
                        name=str(entry.get("name") or model_id),
                        object="model",
                        created=_int(entry.get("created"), now),
                        owned_by="openai",
                        openai=entry,
                        urlIdx=backend.idx,
                        connection_type="external",
                    )
                )
        merged: dict[str, dict[str, Any]] = {}
        hosts: dict[str, list[Backend]] = {}
        for backend, entries in zip(self._ollama, ollama_lists, strict=True):
            for entry in entries:
                model_id = entry.get("model") or entry.get("name")
                if not isinstance(model_id, str):
                    continue
                if model_id in merged:
                    merged[model_id]["urls"].append(backend.idx)
                    hosts[model_id].append(backend)
                else:
                    merged[model_id] = {**entry, "urls": [backend.idx]}
                    hosts[model_id] = [backend]
        for model_id, entry in merged.items():
            if model_id in routes:
                continue
            routes[model_id] = Route(model_id, tuple(hosts[model_id]))
            models.append(
                Model(
                    id=model_id,
                    name=str(entry.get("name") or model_id),
                    object="model",
                    created=now,
                    owned_by="ollama",
                    ollama=entry,
                    connection_type="local",
                )
            )
        # a backend's model of the same name is the one served
        local_embeddings = {m.id: m for m in local if m.id not in routes}
        models += [
            Model(
                id=m.id,
                name=m.id,
                object="model",
                created=now,
                owned_by="openai",  # served in OpenAI's embeddings shape
                connection_type="local",
                embedding=m.info,
            )
            for m in local_embeddings.values()
        ]
        return Snapshot(
            models,
            routes,
            encode(ModelsReply(data=models)),
            time.monotonic(),
            local_embeddings,
        )

    async def _fetch_local(self) -> list[EmbeddingModel]:
        try:
            async with asyncio.timeout(self._fetch_timeout):
                return await self._local_models()
        except RagwayError as exc:  # a listing without them beats no listing
            # `unavailable`: no retrieval service runs (a deployment may leave it out)
            level = log.debug if exc.code == "unavailable" else log.warning
            level("local_models_failed", error=exc.detail)
        except TimeoutError:
            log.warning("local_models_failed", error="timeout")
        return []

    async def _fetch_openai(self, backend: Backend) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
        body = await self._get(backend, f"{backend.base_url}/models", headers)
        if body is None:
            return []
        try:
            return msgspec.json.decode(body, type=_OpenAIModels).data
        except msgspec.DecodeError:
            log.warning("backend_models_malformed", backend=backend.host)
            return []

    async def _fetch_ollama(self, backend: Backend) -> list[dict[str, Any]]:
        body = await self._get(backend, f"{backend.base_url}/api/tags", {})
        if body is None:
            return []
        try:
            return msgspec.json.decode(body, type=_OllamaTags).models
        except msgspec.DecodeError:
            log.warning("backend_models_malformed", backend=backend.host)
            return []

    async def _get(self, backend: Backend, url: str, headers: dict[str, str]) -> bytes | None:
        try:
            async with asyncio.timeout(self._fetch_timeout):
                response = await self._pool.request("GET", url, b"", headers)
                try:
                    body = await response.read()
                finally:
                    response.release()  # closes instead when the body did not end
        except (BackendHTTPError, TimeoutError) as exc:
            log.warning(
                "backend_models_failed",
                backend=backend.host,
                kind=backend.kind,
                error=type(exc).__name__,
            )
            if self._health is not None:
                self._health.failed(backend, f"model list: {type(exc).__name__}")
            return None
        if response.status != 200:
            log.warning(
                "backend_models_failed",
                backend=backend.host,
                kind=backend.kind,
                status=response.status,
            )
            if self._health is not None and response.status >= 500:
                self._health.failed(backend, f"model list: HTTP {response.status}")
            return None
        return body


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
