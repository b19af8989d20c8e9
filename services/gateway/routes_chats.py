"""Open WebUI's chat routes over the chat store in JetStream KV (`catalog.chats`).

The gateway owns chats (no NATS hop): it is the HTTP surface and it already holds what a
completion appends (the request, the final content, usage and sources). Every lookup is
keyed by the caller's id, so another user's chat is a 404; admins get no exception here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from catalog.chats import ChatStore
from contracts.chats import ChatForm
from gateway.bodies import TRUE, json_bytes, json_value, parse, read_body
from gateway.paging import page_of, required_text
from gateway.state import BUS, SETTINGS, Access, add_route_table, principal_of

# opened at startup (cleanup_ctx); also used by routes_chat to append completions
CHATS = web.AppKey("chats", ChatStore)


async def create_chat(request: web.Request) -> web.Response:
    form = parse(await read_body(request), ChatForm)
    record = await request.app[CHATS].create(principal_of(request).id, form.chat, form.folder_id)
    return json_value(record)


async def list_chats(request: web.Request) -> web.Response:
    summaries = await request.app[CHATS].list(principal_of(request).id, page_of(request))
    return json_value(summaries)


async def search_chats(request: web.Request) -> web.Response:
    """Chats whose title or messages hold `?text=` (any case; whole query first, then
    each word), newest first, 60 per `?page=` (1), each with its `snippet`."""
    text = required_text(request, "text")
    found = await request.app[CHATS].search(principal_of(request).id, text, page_of(request) or 1)
    return json_value(found)


async def get_chat(request: web.Request) -> web.Response:
    record = await request.app[CHATS].get(principal_of(request).id, request.match_info["chat_id"])
    return json_value(record)


async def update_chat(request: web.Request) -> web.Response:
    form = parse(await read_body(request), ChatForm)
    record = await request.app[CHATS].merge(
        principal_of(request).id, request.match_info["chat_id"], form.chat
    )
    return json_value(record)


async def delete_chat(request: web.Request) -> web.Response:
    await request.app[CHATS].delete(principal_of(request).id, request.match_info["chat_id"])
    return json_bytes(TRUE)


async def _chat_store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    js = app[BUS].nc.jetstream(timeout=settings.request_timeout_seconds)
    app[CHATS] = await ChatStore.open(js, settings.bucket_prefix, settings.kv_replicas)
    yield


ROUTES = (
    ("POST", "/api/v1/chats/new", "chats_new", create_chat),
    ("GET", "/api/v1/chats/", "chats_list", list_chats),
    ("GET", "/api/v1/chats", "chats_list_bare", list_chats),
    ("GET", "/api/v1/chats/list", "chats_list_alias", list_chats),
    ("GET", "/api/v1/chats/search", "chats_search", search_chats),
    ("GET", "/api/v1/chats/{chat_id}", "chats_get", get_chat),
    ("POST", "/api/v1/chats/{chat_id}", "chats_update", update_chat),
    ("DELETE", "/api/v1/chats/{chat_id}", "chats_delete", delete_chat),
)


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    add_route_table(app, access, ROUTES, "user")
    app.cleanup_ctx.append(_chat_store)
