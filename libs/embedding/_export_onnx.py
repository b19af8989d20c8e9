"""Export a sentence-transformers model to ONNX. Runs ONLY inside the throwaway build venv.

`python -m embedding.build` starts this file with the build venv's interpreter (which has
torch, sentence-transformers, onnx and onnxruntime); ragway itself never imports it, so
torch stays out of the runtime. It prints one JSON object (the model manifest) on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
)

CHECK_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "How many people live in Paris?",
    "ما هي عاصمة المملكة العربية السعودية؟",
    "Qdrant is a vector database written in Rust. " * 30,
)


def source_dir(module: str, attribute: str) -> Path:
    """The directory with the sentence-transformers files that a registry package ships."""
    return Path(getattr(importlib.import_module(module), attribute))


def export(src: Path, out: Path, opset: int, max_length: int) -> dict[str, Any]:
    """Write `out/model.onnx` (token embeddings; pooling happens in fastembed)."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(src)).eval()
    names = ["input_ids", "attention_mask"]
    if getattr(model.config, "type_vocab_size", 0) > 1:
        names.append("token_type_ids")

    class TokenEmbeddings(torch.nn.Module):
        # Keyword arguments: the positional order of `forward` differs across versions.
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *inputs: Any) -> Any:
            kwargs = dict(zip(names, inputs, strict=True))
            return self.inner(**kwargs, return_dict=True).last_hidden_state

    dummy = tuple(torch.ones(2, 16, dtype=torch.long) for _ in names)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in names}
    dynamic["last_hidden_state"] = {0: "batch", 1: "sequence"}
    started = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(
            TokenEmbeddings().eval(),
            dummy,
            str(out / "model.onnx"),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    return {
        "inputs": names,
        "dim": int(model.config.hidden_size),
        "export_s": round(time.perf_counter() - started, 2),
        "max_length": max_length,
    }


def copy_tokenizer(src: Path, out: Path, max_length: int) -> list[str]:
    """Copy the tokenizer files; cap `model_max_length` at the model's trained length."""
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
            copied.append(name)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config["model_max_length"] = max_length
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
    return copied


def quantize(out: Path) -> None:
    """int8 weights for MatMul only, per channel.

    The default dynamic quantization also quantizes the Gather of the embedding table,
    which drops cosine to the fp32 vectors to ~0.9; MatMul-only keeps it ~0.99.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(out / "model.onnx"),
        str(out / "model_int8.onnx"),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
    )


def check(src: Path, out: Path, files: list[str], max_length: int) -> dict[str, float]:
    """Minimum cosine between the PyTorch reference and each ONNX file (mean pooled)."""
    import numpy as np
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    reference = SentenceTransformer(str(src), device="cpu")
    reference.max_seq_length = max_length
    expected = reference.encode(list(CHECK_TEXTS), normalize_embeddings=True)
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(list(CHECK_TEXTS))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    result = {}
    for name in files:
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        wanted = {i.name for i in session.get_inputs()}
        hidden = session.run(None, {k: v for k, v in feed.items() if k in wanted})[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        result[name] = round(float((pooled * expected).sum(1).min()), 4)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--module", required=True)
    parser.add_argument("--attribute", default="MODEL_DIR")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--quantize", action="store_true")
    args = parser.parse_args()
    src = source_dir(args.module, args.attribute)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = export(src, args.out, args.opset, args.max_length)
    manifest["tokenizer_files"] = copy_tokenizer(src, args.out, args.max_length)
    files = ["model.onnx"]
    if args.quantize:
        quantize(args.out)
        files.append("model_int8.onnx")
    manifest["cosine_vs_pytorch"] = check(src, args.out, files, args.max_length)
    manifest["files"] = files
    json.dump(manifest, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
