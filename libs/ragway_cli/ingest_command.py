"""The `ragway ingest` command: options, the run, and the summary table."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ragway_cli.context import Context, pass_context
from ragway_cli.errors import CliError
from ragway_cli.format import size, status
from ragway_cli.ingest import Entry, IngestOptions, ingest


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--knowledge", help="Add the files to this collection (name or id; made if missing).")
@click.option(
    "--glob", "glob", default="*", show_default=True, help="Files to take in directories."
)
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--no-wait", is_flag=True, help="Do not wait for processing to finish.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for processing.")
@pass_context
def ingest_command(
    ctx: Context,
    paths: tuple[Path, ...],
    knowledge: str | None,
    glob: str,
    concurrency: int,
    no_wait: bool,
    timeout: float,
) -> None:
    """Upload files and directory trees, follow their processing, summarise.

    Re-running is safe: content the server already has is not uploaded again.
    """
    options = IngestOptions(
        knowledge=knowledge, glob=glob, concurrency=concurrency, wait=not no_wait, timeout_s=timeout
    )
    entries = ctx.run(lambda api: ingest(api, list(paths), options, ctx.err))
    ctx.out.print(summary(entries))
    failed = [entry for entry in entries if entry.outcome == "failed"]
    counts = f"{len(entries) - len(failed)} ok, {len(failed)} failed"
    if failed:
        raise CliError(f"{counts}: see the table above")
    ctx.out.print(counts)


def summary(entries: list[Entry]) -> Table:
    table = Table("file", "size", "result", "id", "detail", title="ragway ingest")
    for entry in entries:
        table.add_row(
            escape(str(entry.path)),
            size(entry.size),
            status(entry.outcome),
            entry.file_id,
            escape(entry.reason or entry.action),
        )
    return table
