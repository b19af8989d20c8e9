"""A `MetadataFilter` as each engine's payload filter, and the payload indexes it wants.

Conditions address the upload's metadata, stored in every chunk's payload under
`FILE_METADATA`, so a condition on `year` is one on `file_metadata.year`. Both engines
get the same translation (Qdrant's own semantics, which `catalog.metadata_match`
follows for file records).

Each filtered key gets a payload index of the kind its condition tests (the first time
a filter uses it), so Qdrant's query planner can count how many chunks pass: with a
selective filter it then scores the passing chunks exactly instead of walking an HNSW
graph that may hold few of them (k results must come back when k chunks match).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import qdrant_edge as qe
from qdrant_client import models

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


# --- the embedded engine ----------------------------------------------------------------

EDGE_SCHEMA: dict[IndexKind, qe.PayloadSchemaType] = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "datetime": qe.PayloadSchemaType.Datetime,
}


def _edge_condition(condition: Condition) -> qe.FieldCondition:
    key = payload_path(condition.key)
    if condition.eq is not None:
        return qe.FieldCondition(key=key, match=qe.MatchValue(condition.eq))
    if condition.in_ is not None:
        values: Any = list(condition.in_)
        return qe.FieldCondition(key=key, match=qe.MatchAny(any=values))
    bounds = condition.range
    assert bounds is not None
    range_: Any
    if bounds.on_dates:
        range_ = qe.RangeDateTime(
            gt=_text(bounds.gt), gte=_text(bounds.gte), lt=_text(bounds.lt), lte=_text(bounds.lte)
        )
    else:
        range_ = qe.RangeFloat(
            gt=_number(bounds.gt),
            gte=_number(bounds.gte),
            lt=_number(bounds.lt),
            lte=_number(bounds.lte),
        )
    return qe.FieldCondition(key=key, range=range_)


def edge_filter(filter_: MetadataFilter) -> qe.Filter:
    def each(conditions: list[Condition]) -> list[qe.ConditionType] | None:
        return [_edge_condition(c) for c in conditions] or None

    return qe.Filter(
        must=each(filter_.must), should=each(filter_.should), must_not=each(filter_.must_not)
    )


# --- a Qdrant server (qdrant-client) ----------------------------------------------------

SERVER_SCHEMA: dict[IndexKind, models.PayloadSchemaType] = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "datetime": models.PayloadSchemaType.DATETIME,
}


def _server_condition(condition: Condition) -> models.FieldCondition:
    key = payload_path(condition.key)
    if condition.eq is not None:
        return models.FieldCondition(key=key, match=models.MatchValue(value=condition.eq))
    if condition.in_ is not None:
        values: Any = list(condition.in_)
        return models.FieldCondition(key=key, match=models.MatchAny(any=values))
    bounds = condition.range
    assert bounds is not None
    range_: models.Range | models.DatetimeRange
    if bounds.on_dates:
        range_ = models.DatetimeRange(
            gt=_when(bounds.gt), gte=_when(bounds.gte), lt=_when(bounds.lt), lte=_when(bounds.lte)
        )
    else:
        range_ = models.Range(
            gt=_number(bounds.gt),
            gte=_number(bounds.gte),
            lt=_number(bounds.lt),
            lte=_number(bounds.lte),
        )
    return models.FieldCondition(key=key, range=range_)


def server_filter(filter_: MetadataFilter) -> models.Filter:
    def each(conditions: list[Condition]) -> list[models.Condition] | None:
        return [_server_condition(c) for c in conditions] or None

    return models.Filter(
        must=each(filter_.must), should=each(filter_.should), must_not=each(filter_.must_not)
    )


def _when(bound: float | str | None) -> dt.datetime | None:
    """An ISO 8601 bound as an aware datetime (naive: UTC)."""
    if bound is None:
        return None
    parsed = parse_datetime(str(bound))
    assert parsed is not None  # checked when the filter was decoded
    return parsed


def _text(bound: float | str | None) -> str | None:
    """An ISO 8601 bound in RFC 3339 form, which the embedded engine parses."""
    when = _when(bound)
    return None if when is None else when.isoformat()


def _number(bound: float | str | None) -> float | None:
    return None if bound is None else float(bound)
