"""`/api/version` and `/api/config` as Open WebUI 0.12.4 answers them, public and secret-free."""

from __future__ import annotations

import pytest

from tests.conformance import shapes
from tests.support.stack import JWT_SECRET, Stack

pytestmark = pytest.mark.conformance


async def test_version_answers_without_credentials_in_open_webuis_shape(stack: Stack) -> None:
    status, reply = await stack.call("GET", "/api/version")
    assert status == 200, reply
    assert shapes.missing(shapes.VERSION, reply) == set()
    major, minor, _patch = (int(part) for part in reply["version"].split("."))
    assert (major, minor) >= (0, 7), "0.7+ clients expect {items,total} pages"


async def test_config_lists_features_and_limits_and_no_secret(stack: Stack) -> None:
    status, reply = await stack.call("GET", "/api/config")
    assert status == 200, reply
    assert shapes.missing(shapes.CONFIG, reply) == set()
    assert shapes.missing(shapes.CONFIG_FEATURES, reply["features"]) == set()
    assert reply["features"]["enable_api_keys"] is True
    assert reply["features"]["enable_websocket"] is False
    assert reply["file"]["max_size"] >= 1
    text = str(reply)
    assert JWT_SECRET not in text
    assert "sk-" not in text and "nats://" not in text
