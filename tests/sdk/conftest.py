"""The SDK and snippet tests run against a live ragway (see tests/cli/live.py)."""

from tests.cli.live import cli, ragway  # noqa: F401  (fixtures)
from tests.e2e.conftest import (  # noqa: F401  (fixtures)
    _reset_fakes,
    admin,
    backend_fakes,
    nats_url,
    stack,
    user,
)
