"""The retrieval service's domain errors, phrased for the person who will read them."""

from __future__ import annotations

from common.errors import RagwayError


def file_not_found(file_id: str) -> RagwayError:
    return RagwayError("not_found", f"File {file_id} not found")


def knowledge_not_found(knowledge_id: str) -> RagwayError:
    return RagwayError("not_found", f"Knowledge {knowledge_id} not found")


def knowledge_read_only(knowledge_id: str) -> RagwayError:
    return RagwayError("forbidden", f"You may read knowledge {knowledge_id} but not change it")


def file_failed(name: str, file_id: str, reason: str | None) -> RagwayError:
    why = reason or "it could not be processed"
    return RagwayError("invalid", f"File {name!r} ({file_id}) failed to process: {why}")


def file_not_ready(name: str, file_id: str, waited: float) -> RagwayError:
    # conflict (HTTP 409): the file exists but is not in a state that can be searched yet
    return RagwayError(
        "conflict",
        f"File {name!r} ({file_id}) is still being processed after {waited:g} s; try again shortly",
    )
