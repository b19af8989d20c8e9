"""schemathesis against the gateway's own `/openapi.json`: every operation, positive and
negative inputs, as an admin with an API key. No 5xx, and no response that breaks the
schema the document gives for it.

Bounded for CI: a few derandomized examples per operation and mode (the same inputs every
run), no shrinking, no example database. Hypothesis runs in a worker thread because the
gateway serves from this test's event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.stack import RagServices, Stack

pytestmark = pytest.mark.security

EXAMPLES = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 6}
# A documentation address (RFC 5737), only ever a header value: the second gateway trusts
# 127.0.0.1 as a proxy, so sign-in failures count against this address, not the others'.
FUZZER_ADDRESS = "198.51.100.7"
# They would revoke or replace the very key the run authenticates with.
SKIPPED = {"create_api_key_post", "delete_api_key_delete"}
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    status_code_conformance,
]


def fuzz(base_url: str, document: dict[str, Any], key: str) -> tuple[list[str], int]:
    """Run every operation; the failures (one line each, with a curl to reproduce)."""
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": FUZZER_ADDRESS}
    failures: list[str] = []
    operations = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.definition.raw.get("operationId") in SKIPPED:
                continue
            operations += 1
            for mode, examples in EXAMPLES.items():

                @settings(
                    max_examples=examples,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def check(case: Any) -> None:
                    response = case.call(
                        base_url=base_url, session=session, headers=headers, timeout=20
                    )
                    case.validate_response(response, checks=CHECKS, headers=headers)

                try:
                    check()
                except Unsatisfiable:  # nothing to make negative (no parameters, no body)
                    pass
                except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                    failures.append(f"{operation.label} ({mode}): {_summary(exc)}")
    return failures, operations


def _summary(exc: BaseException) -> str:
    """The failure's own lines, without the long schema dumps."""
    lines = str(exc).splitlines()
    if isinstance(exc, BaseExceptionGroup):
        lines = [line for e in exc.exceptions for line in str(e).splitlines()[:3]]
    return " | ".join(line.strip() for line in lines if line.strip())[:600]


async def test_no_operation_answers_5xx_or_breaks_its_own_schema(
    stack: Stack, second: Stack, rag: RagServices
) -> None:
    fuzzer = await stack.with_key(await stack.signup(role="admin"))
    status, document = await second.call("GET", "/openapi.json")
    assert status == 200
    started = time.monotonic()
    failures, operations = await asyncio.to_thread(fuzz, second.url, document, fuzzer.api_key)
    assert not failures, "\n\n".join(failures)
    assert operations >= 40
    assert time.monotonic() - started < 120
    # the run's admin (and its key) survived it
    status, _ = await second.call("GET", "/api/v1/auths/", headers=fuzzer.key_auth)
    assert status == 200
