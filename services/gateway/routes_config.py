"""`GET /api/version` and `GET /api/config`: what clients probe before signing in.

Both are public and carry no secret: the Open WebUI API generation ragway speaks (clients
pick list shapes by it), ragway's own version, and which features exist at all.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from gateway.bodies import json_value
from gateway.state import SETTINGS, Access

# The Open WebUI release whose HTTP API ragway answers (clients compare this `version`).
OPENWEBUI_API_VERSION = "0.12.4"
RAGWAY_VERSION = "0.1.0"
NAME = "ragway"


class VersionReply(msgspec.Struct, kw_only=True):
    """Open WebUI's `GET /api/version` (`{version, deployment_id}`), plus ragway's own."""

    version: str = OPENWEBUI_API_VERSION
    deployment_id: str | None = None
    ragway_version: str = RAGWAY_VERSION


class OAuthConfig(msgspec.Struct, kw_only=True):
    providers: dict[str, str] = {}
    auto_redirect: bool = False


class Features(msgspec.Struct, kw_only=True):
    """Open WebUI's `features` keys, true only where ragway serves the feature."""

    auth: bool = True
    auth_trusted_header: bool = False
    enable_ldap: bool = False
    enable_signup: bool = True
    enable_login_form: bool = True
    enable_websocket: bool = False
    enable_api_keys: bool = True
    enable_direct_connections: bool = False
    enable_plugins: bool = True
    enable_tools: bool = True
    enable_functions: bool = True
    enable_tool_servers: bool = False
    enable_folders: bool = False
    enable_channels: bool = False
    enable_notes: bool = False
    enable_web_search: bool = False
    enable_code_execution: bool = False
    enable_code_interpreter: bool = False
    enable_image_generation: bool = False
    enable_autocomplete_generation: bool = False
    enable_title_generation: bool = False
    enable_community_sharing: bool = False
    enable_message_rating: bool = False
    enable_user_webhooks: bool = False
    enable_admin_export: bool = False
    enable_admin_chat_access: bool = False
    # ragway's own: retrieval, embeddings and Ollama's API through the gateway
    enable_rag: bool = True
    enable_embeddings: bool = True
    enable_ollama_api: bool = True


class FileLimits(msgspec.Struct, kw_only=True):
    max_size: int
    max_count: int | None = None


class ConfigReply(msgspec.Struct, kw_only=True):
    """Open WebUI's `GET /api/config` as an anonymous caller sees it."""

    status: bool = True
    name: str = NAME
    version: str = OPENWEBUI_API_VERSION
    ragway_version: str = RAGWAY_VERSION
    default_locale: str = "en-US"
    oauth: OAuthConfig = msgspec.field(default_factory=OAuthConfig)
    features: Features = msgspec.field(default_factory=Features)
    file: FileLimits


_VERSION = msgspec.json.encode(VersionReply())


async def version(request: web.Request) -> web.Response:
    return web.Response(body=_VERSION, content_type="application/json")


async def config(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return json_value(ConfigReply(file=FileLimits(max_size=settings.file_max_size_mb)))


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    app.router.add_get("/api/version", version, name="api_version")
    app.router.add_get("/api/config", config, name="api_config")
    access["api_version"] = "public"
    access["api_config"] = "public"
