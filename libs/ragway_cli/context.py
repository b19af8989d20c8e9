"""What every command shares: the resolved connection, consoles, and running async work."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from ragway_cli.client import Api
from ragway_cli.config import (
    Connection,
    StoredConfig,
    config_path,
    load_config,
    resolve,
    save_config,
)
from ragway_cli.errors import CliError

T = TypeVar("T")


@dataclass
class Context:
    url_option: str | None
    config_file: Path

    @property
    def stored(self) -> StoredConfig:
        return load_config(self.config_file)

    def save(self, config: StoredConfig) -> None:
        save_config(self.config_file, config)

    @property
    def connection(self) -> Connection:
        return resolve(self.url_option, os.environ, self.stored)

    @property
    def out(self) -> Console:
        # Built per use so output follows the current sys.stdout (test runners swap it).
        return Console(highlight=False, soft_wrap=True)

    @property
    def err(self) -> Console:
        return Console(stderr=True, highlight=False, soft_wrap=True)

    def run(self, work: Callable[[Api], Awaitable[T]], *, credential: str | None = None) -> T:
        """Run `work` with an Api on the resolved URL and credential, in a fresh event loop."""
        connection = self.connection

        async def main() -> T:
            async with Api(
                connection.url, connection.credential if credential is None else credential
            ) as api:
                return await work(api)

        try:
            return asyncio.run(main())
        except (CliError, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if os.environ.get("RAGWAY_DEBUG"):
                raise
            raise CliError(
                f"Unexpected {type(exc).__name__}: {exc} (RAGWAY_DEBUG=1 shows more)"
            ) from None


def make_context(url_option: str | None) -> Context:
    return Context(url_option=url_option, config_file=config_path())


pass_context = click.make_pass_decorator(Context)


def json_out(value: Any) -> None:
    """Machine-readable output for scripts (`--json`)."""
    import json

    click.echo(json.dumps(value, indent=2, ensure_ascii=False))
