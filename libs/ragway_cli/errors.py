"""The one error the CLI shows: a single line on stderr and a non-zero exit code."""

from __future__ import annotations

import sys
from typing import IO, Any

import click

EXIT_FAILED = 1


class CliError(click.ClickException):
    """A failure the user can act on; shown as one line, never as a traceback."""

    exit_code = EXIT_FAILED

    def show(self, file: IO[Any] | None = None) -> None:
        stream = file if file is not None else sys.stderr
        stream.write(f"Error: {self.message}\n")
        stream.flush()


def http_error(status: int, detail: str, url: str) -> CliError:
    """The message for an HTTP error reply, phrased for what the user can do about it."""
    if status == 401:
        return CliError("Not authenticated: check RAGWAY_API_KEY (or run `ragway login`)")
    if status == 403:
        return CliError(f"Not allowed: {detail or 'your role may not do this'}")
    if status == 404:
        return CliError(f"Not found: {detail or url}")
    if status == 415:
        return CliError(f"Unsupported: {detail}")
    if status == 413:
        return CliError(f"Too large: {detail}")
    if status == 429:
        return CliError(f"Too many requests: {detail or 'try again later'}")
    if status >= 500:
        return CliError(f"ragway failed ({status}): {detail or 'server error'}")
    return CliError(f"Rejected ({status}): {detail or 'bad request'}")
