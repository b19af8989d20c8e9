"""What given modules log, whatever an earlier test did to structlog.

Module loggers (`log = structlog.get_logger()`) are cached on first use once
`configure_logging` ran, and the suite may have set a level that drops warnings, so
`structlog.testing.capture_logs` cannot be relied on across a whole run. Here each module's
`log` is replaced for the test by one that records every event at every level.
"""

from __future__ import annotations

import logging
from types import ModuleType

import pytest
import structlog
from structlog.testing import LogCapture


def module_logs(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> LogCapture:
    """Every event the modules log while the test runs (`.entries`, dicts with `event`)."""
    lines = LogCapture()
    for module in modules:
        logger = structlog.wrap_logger(
            None,
            processors=[lines],
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        )
        monkeypatch.setattr(module, "log", logger)
    return lines
