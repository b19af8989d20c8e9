"""A plugin is walled in: a REAL function uploaded through the API by the admin, called as
a chat model, probes the sandbox from the inside (issue 17, finding 2).

It must not read the proxy's environment (the proxy is this pytest process: its
/proc/<pid>/environ holds every test secret) nor see any process but its own, open a file
of the stack's data dir (the JetStream store), connect to NATS or any TCP address, fork
without bound, or leave a process behind by setsid(). With the admin's
RAGWAY_ALLOW_NETWORK valve on, it reaches a 127.0.0.1 server. The valve routes are
admin-only, validate values with the plugin's own Valves class (4xx naming the field,
never echoing the value) and hand the values to the plugin.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.nats import SecuredNats
from tests.support.sandbox import isolation_missing
from tests.support.stack import Account, Stack

pytestmark = [
    pytest.mark.security,
    pytest.mark.skipif(bool(isolation_missing()), reason=isolation_missing() or "-"),
]

# Every probe is one request: the last message names it and its arguments (JSON).
PROBE = """
import json, os, socket, subprocess, time
from pydantic import BaseModel, Field

def connect(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return "connected: " + sock.recv(16).decode()
    except OSError as exc:
        return "refused: " + type(exc).__name__

class Pipe:
    class Valves(BaseModel):
        GREETING: str = "hello"
        API_TOKEN: str = ""
        RETRIES: int = Field(default=1, ge=0, le=5)

    def __init__(self):
        self.valves = self.Valves()

    def pipe(self, body):
        ask = json.loads(body["messages"][-1]["content"])
        probe = ask["probe"]
        if probe == "valves":
            return json.dumps(self.valves.model_dump())
        if probe == "identity":
            return json.dumps({"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd()})
        if probe == "processes":
            pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            lines = []
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as file:
                        lines.append(file.read().replace(b"\\0", b" ").decode())
                except OSError:
                    pass
            try:
                with open(f"/proc/{ask['pid']}/environ", "rb") as file:
                    environ = "read: " + str(len(file.read()))
            except OSError as exc:
                environ = "refused: " + type(exc).__name__
            return json.dumps({"pids": pids, "commands": lines, "environ": environ})
        if probe == "file":
            found = {}
            for path in ask["paths"]:
                try:
                    with open(path, "rb") as file:
                        found[path] = "read: " + str(len(file.read(64)))
                except OSError as exc:
                    found[path] = "refused: " + type(exc).__name__
            return json.dumps(found)
        if probe == "connect":
            return json.dumps({str(port): connect(port) for port in ask["ports"]})
        if probe == "fork":
            children = 0
            error = ""
            try:
                while children < 10000:
                    if os.fork() == 0:
                        time.sleep(5)
                        os._exit(0)
                    children += 1
            except OSError as exc:
                error = type(exc).__name__
            return json.dumps({"children": children, "error": error})
        if probe == "setsid":
            child = subprocess.Popen(["sleep", ask["marker"]], start_new_session=True)
            try:
                os.setsid()  # the worker tries to leave its session too
            except OSError:
                pass  # it leads a session of its own already (bubblewrap's --new-session)
            time.sleep(0.2)
            return json.dumps({"child_alive": child.poll() is None, "sid": os.getsid(0)})
        return "unknown probe"
"""

CHAT = "/api/chat/completions"


async def ask(stack: Stack, account: Account, model: str, **probe: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": json.dumps(probe)}]}
    status, reply = await stack.call("POST", CHAT, headers=account.key_auth, json=body)
    assert status == 200, reply
    answer: dict[str, Any] = json.loads(reply["choices"][0]["message"]["content"])
    return answer


@pytest.fixture(scope="module")
async def probe(stack: Stack) -> AsyncIterator[str]:
    """The probing function, installed by the admin through the API."""
    admin = await stack.admin()
    plugin_id = f"probe_{uuid.uuid4().hex[:8]}"
    form = {"id": plugin_id, "name": "Sandbox probe", "content": PROBE}
    status, record = await stack.call(
        "POST", "/api/v1/functions/create", headers=admin.key_auth, json=form
    )
    assert status == 200, record
    yield record["id"]
    path = f"/api/v1/functions/id/{record['id']}/delete"
    await stack.call("DELETE", path, headers=admin.key_auth)


class Greeter:
    """A TCP server on a free loopback port that says hello to whoever connects."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"hello")
        await writer.drain()
        writer.close()


@pytest.fixture
async def greeter() -> AsyncIterator[Greeter]:
    server_side = Greeter()
    server = await asyncio.start_server(server_side.greet, "127.0.0.1", 0)
    server_side.port = server.sockets[0].getsockname()[1]
    async with server:
        yield server_side


async def set_valves(
    stack: Stack, account: Account, plugin_id: str, values: dict[str, Any], kind: str = "functions"
) -> tuple[int, Any]:
    return await stack.call(
        "POST",
        f"/api/v1/{kind}/id/{plugin_id}/valves/update",
        headers=account.key_auth,
        json=values,
    )


async def test_the_plugin_runs_as_nobody_and_sees_only_its_own_processes(
    stack: Stack, admin: Account, probe: str
) -> None:
    identity = await ask(stack, admin, probe, probe="identity")
    assert identity["uid"] == 65534 and identity["gid"] == 65534
    seen = await ask(stack, admin, probe, probe="processes", pid=os.getpid())
    # the pid namespace's init (bubblewrap) and the worker; never pytest (the proxy)
    assert len(seen["pids"]) <= 3, seen
    assert not [c for c in seen["commands"] if "pytest" in c or "nats-server" in c], seen
    assert seen["environ"].startswith("refused"), seen
    # and the proxy's environment really does hold something worth stealing
    assert _own_environ()


async def test_the_plugin_cannot_open_the_data_dir_or_host_files(
    stack: Stack, admin: Account, probe: str, stack_data_dir: Path
) -> None:
    stored = _files_in(stack_data_dir)[:3]
    assert stored, "the stack's JetStream store holds files"
    secret = _world_readable(stack_data_dir.parent / f"host-secret-{uuid.uuid4().hex}.txt")
    try:
        paths = [*stored, str(secret), "/etc/shadow", "/root/.bashrc"]
        found = await ask(stack, admin, probe, probe="file", paths=paths)
    finally:
        secret.unlink()
    assert all(result.startswith("refused") for result in found.values()), found


async def test_the_plugin_reaches_no_tcp_address_unless_the_network_valve_is_on(
    stack: Stack, admin: Account, probe: str, greeter: Greeter, stack_nats: SecuredNats
) -> None:
    nats_port = int(stack_nats.url.rsplit(":", 1)[1])
    gateway_port = int(stack.url.rsplit(":", 1)[1])
    ports = [nats_port, gateway_port, greeter.port]
    status, _ = await set_valves(stack, admin, probe, {})
    assert status == 200
    closed = await ask(stack, admin, probe, probe="connect", ports=ports)
    assert all(result.startswith("refused") for result in closed.values()), closed
    assert greeter.connections == 0

    status, stored = await set_valves(stack, admin, probe, {"RAGWAY_ALLOW_NETWORK": True})
    assert status == 200 and stored == {"RAGWAY_ALLOW_NETWORK": True}, stored
    try:
        opened = await ask(stack, admin, probe, probe="connect", ports=[greeter.port])
        assert opened == {str(greeter.port): "connected: hello"}
        assert greeter.connections == 1
    finally:
        status, _ = await set_valves(stack, admin, probe, {})
        assert status == 200
    closed = await ask(stack, admin, probe, probe="connect", ports=[greeter.port])
    assert closed[str(greeter.port)].startswith("refused")


async def test_a_fork_bomb_is_bounded_and_the_proxy_serves_on(
    stack: Stack, admin: Account, probe: str
) -> None:
    bomb = await ask(stack, admin, probe, probe="fork")
    assert 0 < bomb["children"] < 32 and bomb["error"] == "BlockingIOError", bomb
    assert (await ask(stack, admin, probe, probe="identity"))["uid"] == 65534


async def test_a_process_that_calls_setsid_does_not_outlive_its_call(
    stack: Stack, admin: Account, probe: str
) -> None:
    marker = f"{4000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**9:09d}"
    result = await ask(stack, admin, probe, probe="setsid", marker=marker)
    assert result["child_alive"], result
    assert await asyncio.to_thread(_gone_within, f"sleep {marker}", 10.0)


def _own_environ() -> bytes:
    return Path(f"/proc/{os.getpid()}/environ").read_bytes()


def _files_in(folder: Path) -> list[str]:
    return [str(path) for path in folder.rglob("*") if path.is_file()]


def _world_readable(path: Path) -> Path:
    """A file outside the data dir that any uid could read, were it mounted."""
    path.write_text("only the host may read this")
    os.chmod(path, 0o644)
    return path


def _gone_within(command: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _processes_running(command):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _processes_running(command: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if line.strip() == command:
                found.append(int(entry.name))
    return found


# --- valves -------------------------------------------------------------------------------


async def test_valves_are_for_admins_only(
    stack: Stack, admin: Account, user: Account, probe: str
) -> None:
    status, _ = await set_valves(stack, admin, probe, {"API_TOKEN": "tok-secret-1234"})
    assert status == 200
    base = f"/api/v1/functions/id/{probe}"
    for method, path, body in (
        ("GET", f"{base}/valves", None),
        ("GET", f"{base}/valves/spec", None),
        ("POST", f"{base}/valves/update", {"RAGWAY_ALLOW_NETWORK": True}),
    ):
        status, reply = await stack.call(method, path, headers=user.key_auth, json=body)
        assert status in (401, 403), (path, status, reply)
        assert "tok-secret-1234" not in json.dumps(reply)
    # the function record (admins) and listings (everyone) never carry valve values
    for headers in (admin.key_auth, user.key_auth):
        status, listed = await stack.call("GET", "/api/v1/functions/", headers=headers)
        assert status == 200 and "tok-secret-1234" not in json.dumps(listed)
    status, record = await stack.call("GET", base, headers=admin.key_auth)
    assert status == 200 and "tok-secret-1234" not in json.dumps(record)
    status, values = await stack.call("GET", f"{base}/valves", headers=admin.key_auth)
    assert status == 200 and values == {"API_TOKEN": "tok-secret-1234"}
    status, _ = await set_valves(stack, admin, probe, {})
    assert status == 200


async def test_the_spec_is_the_plugins_valves_schema_with_the_network_valve(
    stack: Stack, admin: Account, probe: str
) -> None:
    status, spec = await stack.call(
        "GET", f"/api/v1/functions/id/{probe}/valves/spec", headers=admin.key_auth
    )
    assert status == 200, spec
    properties = spec["properties"]
    assert properties["GREETING"]["default"] == "hello"
    assert properties["RETRIES"]["maximum"] == 5
    assert properties["RAGWAY_ALLOW_NETWORK"]["type"] == "boolean"


async def test_invalid_valves_are_a_400_naming_the_field_not_the_value(
    stack: Stack, admin: Account, probe: str
) -> None:
    for values, field in (
        ({"RETRIES": "many-secret-retries"}, "RETRIES"),
        ({"RETRIES": 99}, "RETRIES"),
        ({"GREETING": {"nested": "secret-greeting"}}, "GREETING"),
        ({"RAGWAY_ALLOW_NETWORK": "yes-secret"}, "RAGWAY_ALLOW_NETWORK"),
    ):
        status, reply = await set_valves(stack, admin, probe, values)
        assert status == 400, (values, reply)
        assert field in reply["detail"] and "secret" not in reply["detail"], reply
    status, reply = await stack.call(
        "POST", f"/api/v1/functions/id/{probe}/valves/update", headers=admin.key_auth, data=b"[1]"
    )
    assert status == 400 and "detail" in reply
    status, reply = await set_valves(stack, admin, "no_such_plugin", {"GREETING": "x"})
    assert status == 404, reply


async def test_valve_values_reach_the_plugin(stack: Stack, admin: Account, probe: str) -> None:
    assert (await ask(stack, admin, probe, probe="valves"))["GREETING"] == "hello"
    status, stored = await set_valves(
        stack, admin, probe, {"GREETING": "bonjour", "RETRIES": 3, "API_TOKEN": None}
    )
    assert status == 200 and stored == {"GREETING": "bonjour", "RETRIES": 3}, stored
    try:
        seen = await ask(stack, admin, probe, probe="valves")
        assert seen == {"GREETING": "bonjour", "API_TOKEN": "", "RETRIES": 3}
    finally:
        await set_valves(stack, admin, probe, {})
    assert (await ask(stack, admin, probe, probe="valves"))["GREETING"] == "hello"


TOOL = '''
from pydantic import BaseModel

class Tools:
    class Valves(BaseModel):
        UNITS: str = "metric"

    def __init__(self):
        self.valves = self.Valves()

    def units(self) -> str:
        """The unit system in use."""
        return self.valves.UNITS
'''


async def test_tools_have_the_same_admin_only_valves(
    stack: Stack, admin: Account, user: Account
) -> None:
    tool_id = f"units_{uuid.uuid4().hex[:8]}"
    form = {"id": tool_id, "name": "Units", "content": TOOL, "access_grants": []}
    status, record = await stack.call(
        "POST", "/api/v1/tools/create", headers=admin.key_auth, json=form
    )
    assert status == 200, record
    base = f"/api/v1/tools/id/{tool_id}"
    try:
        status, spec = await stack.call("GET", f"{base}/valves/spec", headers=admin.key_auth)
        assert status == 200 and spec["properties"]["UNITS"]["default"] == "metric", spec
        status, reply = await set_valves(stack, admin, tool_id, {"UNITS": 7}, kind="tools")
        assert status == 400 and "UNITS" in reply["detail"], reply
        status, stored = await set_valves(
            stack, admin, tool_id, {"UNITS": "imperial"}, kind="tools"
        )
        assert status == 200 and stored == {"UNITS": "imperial"}
        status, values = await stack.call("GET", f"{base}/valves", headers=admin.key_auth)
        assert status == 200 and values == {"UNITS": "imperial"}
        for method, path in (("GET", f"{base}/valves"), ("GET", f"{base}/valves/spec")):
            status, _ = await stack.call(method, path, headers=user.key_auth)
            assert status in (401, 403)
        status, _ = await set_valves(stack, user, tool_id, {"UNITS": "x"}, kind="tools")
        assert status in (401, 403)
    finally:
        await stack.call("DELETE", f"{base}/delete", headers=admin.key_auth)
