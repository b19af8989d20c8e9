"""A `MetadataFilter` as a Qdrant server's payload filter (see `vectorstore.filters`)."""

from __future__ import annotations

from typing import Any

from qdrant_client import models

from contracts.filters import Condition, MetadataFilter
from vectorstore.filters import IndexKind, bound_datetime, bound_number, payload_path

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
            gt=bound_datetime(bounds.gt),
            gte=bound_datetime(bounds.gte),
            lt=bound_datetime(bounds.lt),
            lte=bound_datetime(bounds.lte),
        )
    else:
        range_ = models.Range(
            gt=bound_number(bounds.gt),
            gte=bound_number(bounds.gte),
            lt=bound_number(bounds.lt),
            lte=bound_number(bounds.lte),
        )
    return models.FieldCondition(key=key, range=range_)


def server_filter(filter_: MetadataFilter) -> models.Filter:
    def each(conditions: list[Condition]) -> list[models.Condition] | None:
        return [_server_condition(c) for c in conditions] or None

    return models.Filter(
        must=each(filter_.must), should=each(filter_.should), must_not=each(filter_.must_not)
    )
