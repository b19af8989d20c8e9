"""Errors of the embedding library."""

from __future__ import annotations

from common.errors import RagwayError


def model_missing(path: str) -> RagwayError:
    """The exported model is not on disk: the setup step has not run."""
    return RagwayError(
        "unavailable", f"embedding model not found at {path}: run `python -m embedding.build`"
    )
