"""Metadata filters: one typed grammar for an upload's `metadata` (files, collections, search).

    {"must": [{"key": "year", "range": {"gte": 2020}},
              {"key": "lang", "in": ["en", "de"]}],
     "must_not": [{"key": "draft", "eq": true}]}

`must`: every condition holds; `should`: at least one does (when any is given);
`must_not`: none does. A condition names a `key` of the metadata (`a.b` reaches into a
nested object) and exactly one test: `eq` (a string or an integer), `in` (strings
or integers, all of one kind), or `range` (`gt`, `gte`, `lt`, `lte`: all numbers, or all
ISO 8601 dates/datetimes, where one without an offset is UTC). A metadata value that is
a list matches when any of its elements does; a missing key never matches (so it passes
`must_not`). The same filter is applied inside the vector search (a Qdrant payload
filter) and to file records (`catalog.metadata_match`), with the same meaning.

Unknown fields are refused (unlike other wire types): a mistyped operator must be an
error, not a filter that silently lets everything through. Booleans are refused: the
embedded engine (qdrant-edge 0.9) turns `true` into the integer 1 and so never matches a
stored boolean; store flags as strings or 0/1 to filter on them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

MAX_CONDITIONS = 32
MAX_IN_VALUES = 256
KEY_PATTERN = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"

Key = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=KEY_PATTERN)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # the engines' payload integers
Bound = float | Text


def parse_datetime(value: str) -> dt.datetime | None:
    """An ISO 8601 date or datetime as an aware datetime (naive: UTC); None if not one."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


class Range(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    gt: Bound | None = None
    gte: Bound | None = None
    lt: Bound | None = None
    lte: Bound | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.gt, self.gte, self.lt, self.lte) if v is not None]
        if not given:
            raise ValueError("a range needs at least one of gt, gte, lt, lte")
        texts = [v for v in given if isinstance(v, str)]
        if texts and len(texts) != len(given):
            raise ValueError("a range's bounds must be all numbers or all dates")
        for text in texts:
            if parse_datetime(text) is None:
                raise ValueError(f"{text!r} is not an ISO 8601 date or datetime")

    @property
    def on_dates(self) -> bool:
        return any(isinstance(v, str) for v in (self.gt, self.gte, self.lt, self.lte))


class Condition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: Key
    eq: Text | Int | None = None
    in_: (
        Annotated[list[Text | Int], msgspec.Meta(min_length=1, max_length=MAX_IN_VALUES)] | None
    ) = msgspec.field(default=None, name="in")
    range: Range | None = None

    def __post_init__(self) -> None:
        tests = sum(test is not None for test in (self.eq, self.in_, self.range))
        if tests != 1:
            raise ValueError(f"condition on {self.key!r} needs exactly one of eq, in, range")
        if self.in_ is not None:
            kinds = {type(v) for v in self.in_}
            if len(kinds) > 1:
                raise ValueError(f"`in` on {self.key!r} takes strings or integers, not both")


Conditions = Annotated[list[Condition], msgspec.Meta(max_length=MAX_CONDITIONS)]


class MetadataFilter(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    must: Conditions = []
    should: Conditions = []
    must_not: Conditions = []

    def __post_init__(self) -> None:
        if len(self.must) + len(self.should) + len(self.must_not) > MAX_CONDITIONS:
            raise ValueError(f"a filter holds at most {MAX_CONDITIONS} conditions")

    def is_empty(self) -> bool:
        return not (self.must or self.should or self.must_not)
