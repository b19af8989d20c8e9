"""Conformance tests run against the e2e stack (and the RAG services where they need them)."""

from tests.e2e.conftest import (  # noqa: F401  (fixtures)
    _reset_fakes,
    admin,
    backend_fakes,
    nats_url,
    rag,
    stack,
    user,
)
