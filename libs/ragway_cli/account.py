"""Commands about who you are: login/logout/whoami, API keys, users (admin)."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ragway_cli.client import Api
from ragway_cli.config import StoredConfig
from ragway_cli.context import Context, json_out, pass_context
from ragway_cli.errors import CliError
from ragway_cli.format import when
from ragway_cli.resources import items_of

ROLES = ("admin", "user", "pending")


@click.command()
@click.option("--email", help="Account email (asked when missing).")
@click.option("--password", envvar="RAGWAY_PASSWORD", help="Password (asked when missing).")
@click.option("--api-key", help="Store this existing API key instead of signing in.")
@click.option("--new-key", is_flag=True, help="Create a new API key, replacing the account's.")
@pass_context
def login(
    ctx: Context, email: str | None, password: str | None, api_key: str | None, new_key: bool
) -> None:
    """Sign in and store an API key in the user config dir (0600)."""
    url = ctx.connection.url
    if api_key:
        me = ctx.run(lambda api: api.call("GET", "/api/v1/auths/", credential=api_key))
        _store(ctx, StoredConfig(url=url, api_key=api_key))
        _logged_in(ctx, url, me, "API key stored")
        return
    email = email or click.prompt("Email")
    password = password or click.prompt("Password", hide_input=True)

    async def sign_in(api: Api) -> tuple[dict[str, Any], str]:
        session = await api.call(
            "POST", "/api/v1/auths/signin", json={"email": email, "password": password}
        )
        token = str(session["token"])
        if new_key or await _has_no_key(api, token):
            created = await api.call("POST", "/api/v1/auths/api_key", credential=token)
            return session, str(created["api_key"])
        return session, ""

    session, key = ctx.run(sign_in, credential="")
    if key:
        _store(ctx, StoredConfig(url=url, api_key=key))
        _logged_in(ctx, url, session, "new API key created and stored")
        return
    expires = int(session.get("expires_at") or 0)
    _store(ctx, StoredConfig(url=url, token=str(session["token"]), token_expires_at=expires))
    _logged_in(ctx, url, session, f"session token stored, valid until {when(expires)}")
    ctx.err.print(
        "Your account already has an API key, which is shown only once. Run "
        "`ragway login --api-key KEY` to store it, or `ragway login --new-key` to replace it."
    )


async def _has_no_key(api: Api, token: str) -> bool:
    try:
        await api.call("GET", "/api/v1/auths/api_key", credential=token)
    except CliError as exc:
        if exc.message.startswith("Not found"):
            return True
        raise
    return False


def _store(ctx: Context, config: StoredConfig) -> None:
    ctx.save(config)


def _logged_in(ctx: Context, url: str, me: dict[str, Any], what: str) -> None:
    ctx.out.print(
        f"Logged in to {escape(url)} as {escape(str(me.get('email')))} ({me.get('role')}): "
        f"{what} in {escape(str(ctx.config_file))}"
    )


@click.command()
@pass_context
def logout(ctx: Context) -> None:
    """Forget the stored credential."""
    stored = ctx.stored
    ctx.save(StoredConfig(url=stored.url))
    ctx.out.print("Stored credential removed.")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def whoami(ctx: Context, as_json: bool) -> None:
    """Show the signed-in user."""
    me = ctx.run(lambda api: api.call("GET", "/api/v1/auths/"))
    if as_json:
        json_out(me)
        return
    ctx.out.print(
        f"{escape(str(me['email']))} ({me['role']}) id {me['id']} at {ctx.connection.url}"
    )


@click.group()
def keys() -> None:
    """Your API key: create (replaces the old one) or revoke."""


@keys.command("create")
@click.option("--save", is_flag=True, help="Also store it as the CLI's credential.")
@pass_context
def keys_create(ctx: Context, save: bool) -> None:
    """Create an API key (shown once; the previous key stops working)."""
    created = ctx.run(lambda api: api.call("POST", "/api/v1/auths/api_key"))
    key = str(created["api_key"])
    if save:
        ctx.save(StoredConfig(url=ctx.connection.url, api_key=key))
    click.echo(key)


@keys.command("revoke")
@pass_context
def keys_revoke(ctx: Context) -> None:
    """Revoke your API key at once."""
    connection = ctx.connection
    ctx.run(lambda api: api.call("DELETE", "/api/v1/auths/api_key"))
    stored = ctx.stored
    if stored.api_key and stored.api_key == connection.credential:
        ctx.save(StoredConfig(url=stored.url))
    ctx.out.print("API key revoked.")


@click.group()
def users() -> None:
    """Users of this ragway (admins only)."""


@users.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def users_ls(ctx: Context, as_json: bool) -> None:
    """List users."""
    found = items_of(ctx.run(lambda api: api.call("GET", "/api/v1/users/")), "users")
    if as_json:
        json_out(found)
        return
    table = Table("id", "email", "name", "role")
    for user in found:
        table.add_row(
            str(user.get("id")),
            escape(str(user.get("email"))),
            escape(str(user.get("name"))),
            str(user.get("role")),
        )
    ctx.out.print(table)


@users.command("role")
@click.argument("user")
@click.argument("role", type=click.Choice(ROLES))
@pass_context
def users_role(ctx: Context, user: str, role: str) -> None:
    """Set USER's (id or email) role."""

    async def change(api: Api) -> dict[str, Any]:
        listed = items_of(await api.call("GET", "/api/v1/users/"), "users")
        match = [u for u in listed if user in (u.get("id"), u.get("email"))]
        if not match:
            raise CliError(f"Not found: no user with id or email {user!r}")
        user_id = match[0]["id"]
        updated = await api.call("POST", f"/api/v1/users/{user_id}/update", json={"role": role})
        return updated if isinstance(updated, dict) else {"id": user_id, "role": role}

    updated = ctx.run(change)
    ctx.out.print(f"{escape(str(updated.get('email', user)))} is now {updated.get('role', role)}")
