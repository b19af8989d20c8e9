"""The `ragway` command: a client of a running ragway (RAGWAY_URL, RAGWAY_API_KEY)."""

from __future__ import annotations

import click

from ragway_cli import account, library
from ragway_cli.chat import chat
from ragway_cli.context import make_context
from ragway_cli.ingest_command import ingest_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="RAGWAY_URL",
    help="ragway's base URL [env RAGWAY_URL; default: stored by login, else http://127.0.0.1:3000]",
)
@click.version_option(package_name="ragway", prog_name="ragway")
@click.pass_context
def app(click_ctx: click.Context, url: str | None) -> None:
    """Talk to a running ragway: ingest files, chat with them, manage the server.

    Credentials: RAGWAY_API_KEY, or the key `ragway login` stored.
    """
    click_ctx.obj = make_context(url)


for command in (
    account.login,
    account.logout,
    account.whoami,
    account.keys,
    account.users,
    library.models,
    library.files,
    library.knowledge,
    chat,
    ingest_command,
):
    app.add_command(command)


def main() -> None:
    app(prog_name="ragway")
