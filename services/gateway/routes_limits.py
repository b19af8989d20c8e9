"""Gateway controls over HTTP: limits (admins) and the usage ledger (everyone, own rows).

`POST /api/v1/limits` sets or replaces the limit of one target (its id is
`<scope>.<target>`), `GET` lists them, `DELETE /api/v1/limits/{id}` removes one.
`GET /api/v1/usage?from=&to=&group_by=user|key|model|day|backend` sums the ledger: a user's own
records; an admin's view is everyone's (or one user's with `user_id=`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import get_args

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from common.errors import RagwayError, invalid, not_found
from gateway.bodies import json_value, parse, read_body
from gateway.ledger import GroupBy, Ledger, summarize
from gateway.limiter import Limiter
from gateway.limits import Limit, LimitForm, limit_key
from gateway.state import METER, Access, principal_of

_decode_limit = msgspec.json.Decoder(Limit).decode
_encode = msgspec.json.Encoder().encode
DAY_SECONDS = 86_400


def _limiter(request: web.Request) -> Limiter:
    limiter = request.app[METER].limiter
    if limiter is None:
        raise RagwayError("unavailable", "Limits are switched off (RAGWAY_LIMITS_ENABLED)")
    return limiter


def _ledger(request: web.Request) -> Ledger:
    ledger = request.app[METER].ledger
    if ledger is None:
        raise RagwayError("unavailable", "The usage ledger is switched off (RAGWAY_USAGE_LEDGER)")
    return ledger


async def set_limit(request: web.Request) -> web.Response:
    book = _limiter(request).book
    form = parse(await read_body(request), LimitForm)
    key = limit_key(form.scope, form.id)
    limit = Limit(
        limit_id=key,
        scope=form.scope,
        id=form.id,
        rpm=form.rpm,
        tpm=form.tpm,
        concurrent=form.concurrent,
        budget=form.budget,
        updated_at=int(time.time()),
    )
    if not limit.values():
        raise invalid("A limit needs at least one of rpm, tpm, concurrent, budget")
    await book.bucket.put(key, _encode(limit))
    book.by_key[key] = limit  # this gateway at once; the others as the bucket tells them
    return json_value(limit)


async def list_limits(request: web.Request) -> web.Response:
    values = await _limiter(request).book.bucket.latest()
    limits = sorted((_decode_limit(v) for v in values.values()), key=lambda x: x.limit_id)
    return json_value(limits)


async def delete_limit(request: web.Request) -> web.Response:
    book = _limiter(request).book
    limit_id = request.match_info["limit_id"]
    scope, _, target = limit_id.partition(".")
    try:
        msgspec.convert({"scope": scope, "id": target}, LimitForm)
    except msgspec.ValidationError:
        raise not_found("Limit not found") from None
    if await book.bucket.get(limit_id) is None:
        raise not_found("Limit not found")
    await book.bucket.delete(limit_id)
    book.by_key.pop(limit_id, None)
    return json_value(True)


def _instant(text: str | None, default: float, name: str) -> float:
    """Epoch seconds, or an ISO 8601 date or date-time (UTC unless it says otherwise)."""
    if text is None or text == "":
        return default
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"`{name}` must be epoch seconds or an ISO 8601 date") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


async def usage(request: web.Request) -> web.Response:
    ledger = _ledger(request)
    principal = principal_of(request)
    query = request.query
    group_by = query.get("group_by", "day")
    if group_by not in get_args(GroupBy):
        raise invalid("`group_by` must be one of user, key, model, day, backend")
    now = time.time()
    until = _instant(query.get("to"), now + 1, "to")
    since = _instant(query.get("from"), until - 30 * DAY_SECONDS, "from")
    if since >= until:
        raise invalid("`from` must be before `to`")
    user_id: str | None = principal.id
    if principal.role == "admin":
        user_id = query.get("user_id") or None
    elif query.get("user_id") not in (None, principal.id):
        raise RagwayError("forbidden", "Only administrators may read another user's usage")
    records = await ledger.read(since, until, user_id)
    rows = []
    for row in summarize(records, group_by):  # type: ignore[arg-type]  # checked above
        fields = msgspec.structs.asdict(row)
        fields[group_by] = fields.pop("group")
        rows.append(fields)
    return json_value({"rows": rows, "from": since, "to": until, "group_by": group_by})


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    table: list[tuple[str, str, str, Handler, Access]] = [
        ("POST", "/api/v1/limits", "limits_set", set_limit, "admin"),
        ("GET", "/api/v1/limits", "limits_list", list_limits, "admin"),
        ("DELETE", "/api/v1/limits/{limit_id}", "limits_delete", delete_limit, "admin"),
        ("GET", "/api/v1/usage", "usage", usage, "user"),
    ]
    for method, path, name, handler, level in table:
        app.router.add_route(method, path, handler, name=name)
        access[name] = level
