"""`/openapi.json` and `/docs`: only with env=dev, complete, generated from the types."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.app import GatewayHandle, Settings, build_app, serve
from gateway.openapi import ROUTE_DOCS, UNDOCUMENTED


@pytest.fixture
async def dev_gateway(nats_url: str) -> AsyncIterator[GatewayHandle]:
    async with serve(Settings(nats_url=nats_url, port=0, env="dev")) as handle:
        yield handle


def served_operations(handle: GatewayHandle) -> set[tuple[str, str]]:
    """(path, method) of every route the app serves, HEAD twins of GET routes aside."""
    operations = set()
    for route in handle.app.router.routes():
        resource = route.resource
        assert resource is not None
        if route.method == "HEAD" and any(r.method == "GET" for r in resource):
            continue
        operations.add((resource.canonical, route.method.lower()))
    return operations


async def test_every_served_route_is_in_the_document_and_documented(
    dev_gateway: GatewayHandle, http: aiohttp.ClientSession
) -> None:
    async with http.get(dev_gateway.url + "/openapi.json") as reply:
        assert reply.status == 200
        document = await reply.json()
    assert document["openapi"].startswith("3.")
    documented = {
        (path, method): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    served = served_operations(dev_gateway)
    assert len(served) > 50
    assert served == set(documented)
    undocumented = sorted(key for key, op in documented.items() if op["summary"] == UNDOCUMENTED)
    assert undocumented == []


async def test_request_bodies_are_the_schemas_of_the_validating_types(
    dev_gateway: GatewayHandle, http: aiohttp.ClientSession
) -> None:
    async with http.get(dev_gateway.url + "/openapi.json") as reply:
        document = await reply.json()
    schemas = document["components"]["schemas"]
    chat = document["paths"]["/api/chat/completions"]["post"]
    ref = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ChatCompletionRequest"
    completion = schemas["ChatCompletionRequest"]
    assert set(completion["required"]) == {"model", "messages"}
    assert completion["properties"]["temperature"]["anyOf"][0]["maximum"] == 2
    chats = document["paths"]["/api/v1/chats/{chat_id}"]
    assert chats["get"]["parameters"][0]["name"] == "chat_id"
    assert chats["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatForm"
    }
    assert document["paths"]["/api/v1/auths/signin"]["post"]["security"] == []
    assert "Administrators" in document["paths"]["/api/v1/users/"]["get"]["description"]
    # every $ref points at a schema that exists
    text = str(document)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in schemas


def test_the_route_table_names_only_routes_that_exist() -> None:
    """A renamed route must not leave a stale entry behind (it would document nothing)."""
    app = build_app(Settings(env="dev"), None, None)  # type: ignore[arg-type]  # not started
    names = {route.name or route.resource.name for route in app.router.routes()}  # type: ignore[union-attr]
    assert set(ROUTE_DOCS) <= names


async def test_the_docs_page_loads_its_assets_from_the_gateway(
    dev_gateway: GatewayHandle, http: aiohttp.ClientSession
) -> None:
    async with http.get(dev_gateway.url + "/docs") as reply:
        assert reply.status == 200
        assert reply.content_type == "text/html"
        page = await reply.text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(assets) >= 3
    for asset in assets:
        assert asset.startswith("/docs/static/"), asset  # no CDN, no other host
        async with http.get(dev_gateway.url + asset) as reply:
            assert reply.status == 200, asset
            body = await reply.read()
            assert body
    async with http.get(dev_gateway.url + "/docs/static/swagger-ui-bundle.js") as reply:
        assert reply.content_type == "application/javascript"
        assert len(await reply.read()) > 500_000
    async with http.get(dev_gateway.url + "/docs/static/..%2Fswagger_ui_bundle.py") as reply:
        assert reply.status == 404


async def test_docs_do_not_exist_outside_dev(
    gateway: GatewayHandle, http: aiohttp.ClientSession
) -> None:
    for path in ("/openapi.json", "/docs", "/docs/static/swagger-ui.css"):
        async with http.get(gateway.url + path) as reply:
            assert reply.status == 404, path
