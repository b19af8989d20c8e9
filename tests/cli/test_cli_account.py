"""`ragway` login, keys, users and errors against a live ragway."""

from __future__ import annotations

import json
import stat

from stack.nats_server import free_port
from tests.support.live import (
    OLLAMA_MODEL,
    OPENAI_MODEL,
    Account,
    Cli,
    Stack,
    ragway_command,
    run_process,
)
from tests.support.stack import PASSWORD

NOT_AUTHENTICATED = "Error: Not authenticated: check RAGWAY_API_KEY (or run `ragway login`)\n"


async def test_models_lists_the_models_of_every_backend(cli: Cli, user: Account) -> None:
    result = await cli("models", "--json", key=user.api_key)
    assert result.exit_code == 0, result.output
    owned = {model["id"]: model["owned_by"] for model in json.loads(result.stdout)}
    assert owned[OPENAI_MODEL] == "openai" and owned[OLLAMA_MODEL] == "ollama"
    table = await cli("models", key=user.api_key)
    assert table.exit_code == 0 and OPENAI_MODEL in table.stdout and OLLAMA_MODEL in table.stdout


async def test_a_wrong_key_is_one_line_on_stderr_and_a_non_zero_exit(cli: Cli) -> None:
    result = await cli("models", key="sk-" + "0" * 32)
    assert result.exit_code == 1
    assert result.stderr == NOT_AUTHENTICATED
    assert result.stdout == ""


async def test_no_credential_at_all_says_how_to_authenticate(cli: Cli) -> None:
    result = await cli("files", "ls")
    assert result.exit_code == 1 and result.stderr == NOT_AUTHENTICATED


async def test_an_unreachable_server_is_one_clear_line(cli: Cli, user: Account) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await cli("--url", url, "models", key=user.api_key)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: Cannot reach ragway at {url}")
    assert result.stderr.count("\n") == 1


async def test_the_installed_command_fails_without_a_traceback(stack: Stack) -> None:
    code, out, err = await run_process(
        [*ragway_command(), "models"],
        {
            "RAGWAY_URL": stack.url,
            "RAGWAY_API_KEY": "sk-" + "1" * 32,
            "RAGWAY_CONFIG_DIR": "/nonexistent",
        },
    )
    assert code == 1 and out == ""
    assert err == NOT_AUTHENTICATED


async def test_login_with_a_password_creates_a_key_and_stores_it_owner_only(
    cli: Cli, stack: Stack
) -> None:
    account = await stack.signup()  # no API key yet
    result = await cli("login", "--email", account.email, input=f"{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    stored = json.loads(cli.config_file.read_text())
    assert stored["api_key"].startswith("sk-") and stored["url"] == stack.url
    status, me = await stack.call(
        "GET", "/api/v1/auths/", headers={"Authorization": f"Bearer {stored['api_key']}"}
    )
    assert status == 200 and me["email"] == account.email
    whoami = await cli("whoami", "--json", RAGWAY_URL=None)  # URL and key from the config
    assert whoami.exit_code == 0, whoami.output
    assert json.loads(whoami.stdout)["email"] == account.email


async def test_login_keeps_an_existing_key_working_and_stores_a_session(
    cli: Cli, stack: Stack, user: Account
) -> None:
    result = await cli("login", "--email", user.email, "--password", PASSWORD)
    assert result.exit_code == 0, result.output
    assert "already has an API key" in result.stderr
    stored = json.loads(cli.config_file.read_text())
    assert "api_key" not in stored and stored["token"] and stored["token_expires_at"] > 0
    status, _ = await stack.call("GET", "/api/v1/auths/", headers=user.key_auth)
    assert status == 200
    whoami = await cli("whoami", "--json")
    assert whoami.exit_code == 0 and json.loads(whoami.stdout)["id"] == user.id


async def test_login_with_an_api_key_stores_it_only_when_it_works(cli: Cli, user: Account) -> None:
    bad = await cli("login", "--api-key", "sk-" + "2" * 32)
    assert bad.exit_code == 1 and bad.stderr == NOT_AUTHENTICATED
    assert not cli.config_file.exists()
    good = await cli("login", "--api-key", user.api_key)
    assert good.exit_code == 0, good.output
    assert json.loads(cli.config_file.read_text())["api_key"] == user.api_key
    logout = await cli("logout")
    assert logout.exit_code == 0
    assert "api_key" not in json.loads(cli.config_file.read_text())


async def test_a_wrong_password_is_reported_without_storing_anything(
    cli: Cli, user: Account
) -> None:
    result = await cli("login", "--email", user.email, "--password", "not the password")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert not cli.config_file.exists()


async def test_keys_create_replaces_the_key_and_revoke_stops_it(
    cli: Cli, stack: Stack, user: Account
) -> None:
    created = await cli("keys", "create", "--save", key=user.api_key)
    assert created.exit_code == 0, created.output
    new_key = created.stdout.strip()
    assert new_key.startswith("sk-") and new_key != user.api_key
    status, _ = await stack.call("GET", "/api/v1/auths/", headers=user.key_auth)
    assert status == 401
    revoked = await cli("keys", "revoke")  # with the stored new key
    assert revoked.exit_code == 0, revoked.output
    status, _ = await stack.call(
        "GET", "/api/v1/auths/", headers={"Authorization": f"Bearer {new_key}"}
    )
    assert status == 401
    assert "api_key" not in json.loads(cli.config_file.read_text())


async def test_users_commands_are_for_admins(
    cli: Cli, stack: Stack, admin: Account, user: Account
) -> None:
    refused = await cli("users", "ls", key=user.api_key)
    assert refused.exit_code == 1 and refused.stderr.startswith("Error: Not allowed")
    listed = await cli("users", "ls", "--json", key=admin.api_key)
    assert listed.exit_code == 0, listed.output
    assert user.email in {u["email"] for u in json.loads(listed.stdout)}
    target = await stack.signup()
    changed = await cli("users", "role", target.email, "pending", key=admin.api_key)
    assert changed.exit_code == 0, changed.output
    listed = await cli("users", "ls", "--json", key=admin.api_key)
    roles = {u["email"]: u["role"] for u in json.loads(listed.stdout)}
    assert roles[target.email] == "pending"
    unknown = await cli("users", "role", "nobody@example.test", "user", key=admin.api_key)
    assert unknown.exit_code == 1 and "nobody@example.test" in unknown.stderr
