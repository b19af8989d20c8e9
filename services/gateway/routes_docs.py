"""`/openapi.json` and `/docs` (Swagger UI), served only when the gateway runs with
`env=dev` (`ENV=dev`); elsewhere the routes do not exist (404).

The Swagger UI assets come from the `swagger-ui-bundle` package and are served by the
gateway itself, so the page works offline and loads nothing from a CDN.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import swagger_ui_bundle
from aiohttp import web

from gateway.openapi import openapi_document
from gateway.state import SETTINGS, Access

STATIC = "/docs/static"
# the only bundle files the page needs: nothing else under the package is reachable
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "application/javascript",
    "favicon-32x32.png": "image/png",
}
INIT_JS = b"""window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true
});
"""
PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ragway API</title>
  <link rel="stylesheet" href="{STATIC}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{STATIC}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{STATIC}/swagger-ui-bundle.js"></script>
  <script src="{STATIC}/init.js"></script>
</body>
</html>
"""

# the encoded document, built on first use (every route is registered by then)
DOCUMENT = web.AppKey("openapi_document", dict[str, bytes])


async def openapi_json(request: web.Request) -> web.Response:
    cache = request.app[DOCUMENT]
    if "json" not in cache:
        cache["json"] = msgspec.json.encode(openapi_document(request.app))
    return web.Response(body=cache["json"], content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "init.js":
        return web.Response(body=INIT_JS, content_type="application/javascript")
    if name not in ASSETS:
        raise web.HTTPNotFound(reason="Not Found")
    response = web.FileResponse(Path(swagger_ui_bundle.swagger_ui_path) / name)
    response.content_type = ASSETS[name]
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    if app[SETTINGS].env != "dev":
        return
    app[DOCUMENT] = {}
    app.router.add_get("/openapi.json", openapi_json, name="openapi")
    app.router.add_get("/docs", docs_page, name="docs")
    app.router.add_get(STATIC + "/{name}", docs_asset, name="docs_static")
    for name in ("openapi", "docs", "docs_static"):
        access[name] = "public"
