"""A service reaches a nats-server that requires TLS, verifying it with the CA it is
given (`RAGWAY_NATS_CA_FILE`, as the k8s Deployments have it), and no client that cannot
verify the server's certificate gets in: a real nats-server with a certificate made here."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.nats_conn import connect_nats
from common.settings import NatsAuth, ServiceSettings, load_settings
from stack.nats_permissions import OPERATOR
from stack.nats_server import NatsServer, NatsServerConfig, free_port
from stack.nats_users import authorization_block, load_or_create_users

pytestmark = pytest.mark.security


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1: (ca, cert, key)."""
    new_key = ["-newkey", "rsa:2048", "-nodes"]
    _openssl("req", "-x509", *new_key, "-days", "2", "-keyout", "ca.key", "-out", "ca.crt",
             "-subj", "/CN=ragway test CA", cwd=directory)  # fmt: skip
    _openssl("req", *new_key, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=directory)  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
             cwd=directory)  # fmt: skip
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


class TlsNats:
    def __init__(self, server: NatsServer, users: dict[str, NatsAuth], ca: Path) -> None:
        self.server, self.users, self.ca = server, users, ca


@pytest.fixture(scope="module")
async def tls_nats(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TlsNats]:
    store = tmp_path_factory.mktemp("natstls")
    ca, cert, key = make_certificates(store)
    users = load_or_create_users(store)
    operator = users[OPERATOR]
    server = NatsServer(
        NatsServerConfig(
            port=free_port(),
            store_dir=store / "nats",
            authorization=authorization_block(users, "ragway"),
            login=NatsAuth(user=operator.user, password=operator.password, ca_file=str(ca)),
            tls_cert_file=str(cert),
            tls_key_file=str(key),
        )
    )
    await server.astart()
    yield TlsNats(server, users, ca)
    await server.astop()


async def test_a_service_given_the_ca_connects_over_tls_and_works(tls_nats: TlsNats) -> None:
    gateway = tls_nats.users["gateway"]
    settings = load_settings(
        ServiceSettings,
        {
            "RAGWAY_NATS_URL": tls_nats.server.url.replace("nats://", "tls://"),
            "RAGWAY_NATS_USER": gateway.user,
            "RAGWAY_NATS_PASSWORD": gateway.password,
            "RAGWAY_NATS_CA_FILE": str(tls_nats.ca),
        },
    )
    async with connect_nats(settings.nats_servers(), "tls-test", auth=settings.nats_auth()) as nc:
        assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
        # a request and its reply, as the gateway's own user, over the TLS connection
        info = await nc.jetstream(timeout=5).account_info()
        assert info.limits is not None


async def _info(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    host, port = url.removeprefix("nats://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    return reader, writer, await asyncio.wait_for(reader.readline(), 5)


async def test_a_client_that_cannot_verify_the_server_or_skips_tls_is_refused(
    tls_nats: TlsNats,
) -> None:
    """Raw sockets (nats-py does not close cleanly after a failed handshake)."""
    reader, writer, info = await _info(tls_nats.server.url)
    try:
        assert b'"tls_required":true' in info
        # the system's CAs do not know this server's CA: the handshake fails
        with pytest.raises(ssl.SSLCertVerificationError):
            await writer.start_tls(ssl.create_default_context(), server_hostname="127.0.0.1")
    finally:
        writer.close()
    # a client that goes on in plain text (credentials and all) is turned away
    gateway = tls_nats.users["gateway"]
    reader, writer, _ = await _info(tls_nats.server.url)
    try:
        login = {"user": gateway.user, "pass": gateway.password, "verbose": False}
        writer.write(b"CONNECT " + json.dumps(login).encode() + b"\r\nPING\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 5)
        assert b"PONG" not in answer
    finally:
        writer.close()
    # and the CA it was given lets the handshake through
    reader, writer, _ = await _info(tls_nats.server.url)
    try:
        trusted = ssl.create_default_context(cafile=str(tls_nats.ca))
        await writer.start_tls(trusted, server_hostname="127.0.0.1")
    finally:
        writer.close()
