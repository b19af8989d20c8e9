"""A `MetadataFilter` as the embedded engine's payload filter (see `vectorstore.filters`)."""

from __future__ import annotations

from typing import Any

import qdrant_edge as qe

from contracts.filters import Condition, MetadataFilter
from vectorstore.filters import IndexKind, bound_number, bound_text, payload_path

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
            gt=bound_text(bounds.gt),
            gte=bound_text(bounds.gte),
            lt=bound_text(bounds.lt),
            lte=bound_text(bounds.lte),
        )
    else:
        range_ = qe.RangeFloat(
            gt=bound_number(bounds.gt),
            gte=bound_number(bounds.gte),
            lt=bound_number(bounds.lt),
            lte=bound_number(bounds.lte),
        )
    return qe.FieldCondition(key=key, range=range_)


def edge_filter(filter_: MetadataFilter) -> qe.Filter:
    def each(conditions: list[Condition]) -> list[qe.ConditionType] | None:
        return [_edge_condition(c) for c in conditions] or None

    return qe.Filter(
        must=each(filter_.must), should=each(filter_.should), must_not=each(filter_.must_not)
    )
