"""ragway's chunker against a re-implementation of LangChain's RecursiveCharacterTextSplitter
(what Open WebUI 0.12.4 chunks with: 1000/100, separators \\n\\n, \\n, space, "", each
kept at the start of the next piece) on msmarco-docs (bench/retrieval_lab.py): dense
nDCG@10 by exact cosine with the int8 MiniLM, and distinct documents in the top 10.

    .venv/bin/python bench/chunking_compare.py [DATASETS_DIR]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import retrieval_lab as lab  # first: it puts this folder after the packages on sys.path
from retrieval_quality import load

from embedding.embedder import Embedder
from embedding.settings import EmbedderSettings

SIZE, OVERLAP = 1000, 100


def merge(splits, sep):
    docs, cur, total = [], [], 0
    for d in splits:
        n = len(d)
        if total + n + (len(sep) if cur else 0) > SIZE and cur:
            doc = sep.join(cur).strip()
            if doc:
                docs.append(doc)
            while total > OVERLAP or (total + n + (len(sep) if cur else 0) > SIZE and total > 0):
                total -= len(cur[0]) + (len(sep) if len(cur) > 1 else 0)
                cur.pop(0)
        cur.append(d)
        total += n + (len(sep) if len(cur) > 1 else 0)
    doc = sep.join(cur).strip()
    if doc:
        docs.append(doc)
    return docs


def split(text, seps=("\n\n", "\n", " ", "")):
    sep, rest = seps[-1], ()
    for i, s in enumerate(seps):
        if s == "" or s in text:
            sep, rest = s, seps[i + 1 :]
            break
    if sep:
        parts = text.split(sep)
        pieces = [parts[0]] + [sep + p for p in parts[1:]]  # keep_separator="start"
    else:
        pieces = list(text)
    out, good = [], []
    for p in pieces:
        if len(p) < SIZE:
            good.append(p)
        else:
            if good:
                out += merge(good, "")
                good = []
            out += split(p, rest) if rest else [p]
    if good:
        out += merge(good, "")
    return out


data = lab.grouped(load(Path(sys.argv[1] if len(sys.argv) > 1 else lab.DATASETS) / "msmarco"))
ours = lab.chunked(data)
theirs = [(d, i, t) for d, text in data.docs.items() for i, t in enumerate(split(text))]
for label, ch in (("ragway", ours), ("langchain-like", theirs)):
    print(
        label,
        "chunks",
        len(ch),
        "mean len",
        round(statistics.fmean(len(t) for _, _, t in ch)),
        flush=True,
    )
emb = Embedder(EmbedderSettings(quantized=True, threads=1))
qs = list(data.queries.items())
Q = np.asarray([emb.embed_query(t) for _, t in qs], dtype=np.float32)
for label, ch in (("ragway", ours), ("langchain-like", theirs)):
    P = lab.cached_vectors(
        f"msmarco-docs-{label}-split", [t for _, _, t in ch], emb.embed_documents
    )
    scores, distinct = [], []
    for (qid, _), q in zip(qs, Q, strict=False):
        top = np.argsort(-(P @ q))[:10]
        ranked = [f"{ch[i][0]}#{ch[i][1]}" for i in top]
        scores.append(lab.score(ranked, data.qrels[qid]))
        distinct.append(len({ch[i][0] for i in top}))
    print(
        f"{label}: dense nDCG@10 {statistics.fmean(scores):.3f}, distinct documents"
        f" in the top 10 chunks {statistics.fmean(distinct):.2f}",
        flush=True,
    )
