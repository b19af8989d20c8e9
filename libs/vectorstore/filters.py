"""A `MetadataFilter` as each engine's payload filter, and the payload indexes it wants.

Conditions address the upload's metadata, stored in every chunk's payload under
`FILE_METADATA`, so a condition on `year` is one on `file_metadata.year`. Both engines
get the same translation (Qdrant's own semantics, which `catalog.metadata_match`
follows for file records): `edge_filters` and `server_filters`, each importing only its
own engine's client (the embedded run never loads qdrant-client).

Each filtered key gets a payload index of the kind its condition tests (the first time
a filter uses it), so Qdrant's query planner can count how many chunks pass: with a
selective filter it then scores the passing chunks exactly instead of walking an HNSW
graph that may hold few of them (k results must come back when k chunks match).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from contracts.filters import Condition, MetadataFilter, parse_datetime
from vectorstore.points import FILE_METADATA

IndexKind = Literal["keyword", "integer", "float", "datetime"]


def payload_path(key: str) -> str:
    return f"{FILE_METADATA}.{key}"


def _kind(condition: Condition) -> IndexKind:
    if condition.range is not None:
        return "datetime" if condition.range.on_dates else "float"
    value = condition.eq if condition.eq is not None else (condition.in_ or [""])[0]
    return "integer" if isinstance(value, int) else "keyword"


def _conditions(filter_: MetadataFilter) -> list[Condition]:
    return [*filter_.must, *filter_.should, *filter_.must_not]


def wanted_indexes(filter_: MetadataFilter | None) -> dict[str, IndexKind]:
    """Payload path -> index kind for each key the filter tests (the first test wins)."""
    wanted: dict[str, IndexKind] = {}
    for condition in _conditions(filter_) if filter_ is not None else []:
        wanted.setdefault(payload_path(condition.key), _kind(condition))
    return wanted


def bound_datetime(bound: float | str | None) -> dt.datetime | None:
    """An ISO 8601 bound as an aware datetime (naive: UTC)."""
    if bound is None:
        return None
    parsed = parse_datetime(str(bound))
    assert parsed is not None  # checked when the filter was decoded
    return parsed


def bound_text(bound: float | str | None) -> str | None:
    """An ISO 8601 bound in RFC 3339 form, which the embedded engine parses."""
    when = bound_datetime(bound)
    return None if when is None else when.isoformat()


def bound_number(bound: float | str | None) -> float | None:
    return None if bound is None else float(bound)
