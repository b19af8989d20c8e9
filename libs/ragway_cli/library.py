"""Commands over what the server holds: models, files, knowledge collections."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ragway_cli.client import Api
from ragway_cli.context import Context, json_out, pass_context
from ragway_cli.format import size, status, when
from ragway_cli.resources import (
    create_knowledge,
    items_of,
    knowledge_id,
    list_knowledge,
)

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.command()
@JSON_OPTION
@pass_context
def models(ctx: Context, as_json: bool) -> None:
    """List the models you can chat with."""
    found = items_of(ctx.run(lambda api: api.call("GET", "/api/models")))
    if as_json:
        json_out(found)
        return
    table = Table("id", "name", "owned by")
    for model in found:
        table.add_row(
            escape(str(model.get("id"))), escape(str(model.get("name", ""))), model.get("owned_by")
        )
    ctx.out.print(table)


@click.group()
def files() -> None:
    """Your uploaded files."""


@files.command("ls")
@JSON_OPTION
@pass_context
def files_ls(ctx: Context, as_json: bool) -> None:
    """List your files with their processing status."""
    found = items_of(ctx.run(lambda api: api.call("GET", "/api/v1/files/")))
    if as_json:
        json_out(found)
        return
    table = Table("id", "name", "size", "status", "created")
    for record in found:
        meta = record.get("meta") or {}
        data = record.get("data") or {}
        table.add_row(
            str(record.get("id")),
            escape(str(meta.get("name") or record.get("filename") or "")),
            size(meta.get("size")),
            status(str(data.get("status", ""))),
            when(record.get("created_at")),
        )
    ctx.out.print(table)


@files.command("rm")
@click.argument("file_ids", nargs=-1, required=True)
@pass_context
def files_rm(ctx: Context, file_ids: tuple[str, ...]) -> None:
    """Delete files (their vectors and knowledge links go too)."""

    async def remove(api: Api) -> None:
        for file_id in file_ids:
            await api.call("DELETE", f"/api/v1/files/{file_id}")

    ctx.run(remove)
    ctx.out.print(f"Deleted {len(file_ids)} file(s).")


@click.group()
def knowledge() -> None:
    """Knowledge collections."""


@knowledge.command("ls")
@JSON_OPTION
@pass_context
def knowledge_ls(ctx: Context, as_json: bool) -> None:
    """List the collections you can read."""
    found = ctx.run(list_knowledge)
    if as_json:
        json_out(found)
        return
    table = Table("id", "name", "files", "access", "updated")
    for item in found:
        table.add_row(
            str(item.get("id")),
            escape(str(item.get("name"))),
            str(len(_file_ids(item))),
            _access(item.get("access_control")),
            when(item.get("updated_at")),
        )
    ctx.out.print(table)


def _file_ids(item: dict[str, Any]) -> list[Any]:
    data = item.get("data") or {}
    ids = data.get("file_ids")
    if isinstance(ids, list):
        return ids
    return list(item.get("files") or [])


def _access(value: Any) -> str:
    if value is None:
        return "public"
    grants = [g for g in value.values() if isinstance(g, dict)] if isinstance(value, dict) else []
    named = any(ids for grant in grants for ids in grant.values() if ids)
    return "shared" if named else "private"


@knowledge.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the collection is about.")
@click.option("--public", is_flag=True, help="Readable by every user (default: only you).")
@JSON_OPTION
@pass_context
def knowledge_create(
    ctx: Context, name: str, description: str, public: bool, as_json: bool
) -> None:
    """Create a collection; prints its id."""
    created = ctx.run(lambda api: create_knowledge(api, name, description, public))
    if as_json:
        json_out(created)
        return
    click.echo(created["id"])


@knowledge.command("rm")
@click.argument("names_or_ids", nargs=-1, required=True)
@pass_context
def knowledge_rm(ctx: Context, names_or_ids: tuple[str, ...]) -> None:
    """Delete collections (by id or name); their files stay."""

    async def remove(api: Api) -> None:
        for name_or_id in names_or_ids:
            found = await knowledge_id(api, name_or_id)
            await api.call("DELETE", f"/api/v1/knowledge/{found}/delete")

    ctx.run(remove)
    ctx.out.print(f"Deleted {len(names_or_ids)} collection(s).")
