"""A `MetadataFilter` tested against one metadata object, as Qdrant tests a payload.

File listings (records in KV) use this; searches send the same filter to the vector
store (`vectorstore.filters`). The semantics are Qdrant's: a list value matches when
any element does, integers never equal floats or booleans, a missing key matches no
condition, and datetimes without an offset are UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from contracts.filters import Condition, MetadataFilter, Range, parse_datetime


def matches(filter_: MetadataFilter | None, metadata: dict[str, Any]) -> bool:
    """Whether `metadata` passes `filter_` (None or an empty filter: always)."""
    if filter_ is None:
        return True
    if not all(holds(c, metadata) for c in filter_.must):
        return False
    if filter_.should and not any(holds(c, metadata) for c in filter_.should):
        return False
    return not any(holds(c, metadata) for c in filter_.must_not)


def holds(condition: Condition, metadata: dict[str, Any]) -> bool:
    values = _values_at(metadata, condition.key)
    if condition.eq is not None:
        return any(_same(value, condition.eq) for value in values)
    if condition.in_ is not None:
        wanted = condition.in_
        return any(_same(value, w) for value in values for w in wanted)
    assert condition.range is not None
    return any(_in_range(value, condition.range) for value in values)


def _values_at(metadata: dict[str, Any], key: str) -> list[Any]:
    """The values at a dotted path; a list at the end counts as its elements."""
    node: Any = metadata
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return []
        node = node[part]
    return list(node) if isinstance(node, list) else [node]


def _same(value: Any, wanted: str | int) -> bool:
    return type(value) is type(wanted) and value == wanted


def _in_range(value: Any, bounds: Range) -> bool:
    point: float | dt.datetime | None
    if bounds.on_dates:
        point = parse_datetime(value) if isinstance(value, str) else None
        convert: Any = _as_datetime
    else:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        point = float(value) if is_number else None
        convert = float
    if point is None:
        return False
    return (
        (bounds.gt is None or point > convert(bounds.gt))
        and (bounds.gte is None or point >= convert(bounds.gte))
        and (bounds.lt is None or point < convert(bounds.lt))
        and (bounds.lte is None or point <= convert(bounds.lte))
    )


def _as_datetime(bound: float | str) -> dt.datetime:
    parsed = parse_datetime(str(bound))
    assert parsed is not None  # checked when the filter was decoded
    return parsed
