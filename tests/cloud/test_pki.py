"""The broker's private CA: certificates parse, name their hosts and verify, with openssl too."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
import typer
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from cloud.errors import ConfigurationError
from cloud.mqtt.pki import CaFiles, ServerFiles, make_ca, make_server_cert
from frigo.admin import pki_app
from tests.support.services import require_tool

HOSTS = ["broker.example", "127.0.0.1", "::1", "localhost"]


@pytest.fixture
def ca(tmp_path: Path) -> CaFiles:
    return make_ca(tmp_path / "ca", "Test CA", days=30)


@pytest.fixture
def server(ca: CaFiles, tmp_path: Path) -> ServerFiles:
    return make_server_cert(ca.cert.parent, tmp_path / "server", HOSTS, days=10)


def openssl_verify(ca: Path, cert: Path, *options: str) -> subprocess.CompletedProcess[str]:
    openssl = require_tool("openssl")
    return subprocess.run(
        [openssl, "verify", "-CAfile", str(ca), *options, str(cert)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_server_certificate_names_every_host_and_is_for_servers_only(
    ca: CaFiles, server: ServerFiles
) -> None:
    cert = x509.load_pem_x509_certificate(server.cert.read_bytes())
    root = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.issuer == root.subject
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert 9 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 10
    cert.verify_directly_issued_by(root)


def test_private_keys_are_readable_by_their_owner_only(ca: CaFiles, server: ServerFiles) -> None:
    for key in (ca.key, server.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(server.cert.stat().st_mode) == 0o644
    assert server.ca_cert == ca.cert


def test_openssl_verifies_the_chain_and_the_host_names(
    ca: CaFiles, server: ServerFiles, tmp_path: Path
) -> None:
    assert openssl_verify(ca.cert, server.cert).returncode == 0
    assert openssl_verify(ca.cert, server.cert, "-verify_ip", "127.0.0.1").returncode == 0
    assert openssl_verify(ca.cert, server.cert, "-verify_hostname", "broker.example").returncode == 0
    assert openssl_verify(ca.cert, server.cert, "-verify_hostname", "evil.example").returncode != 0
    assert openssl_verify(ca.cert, server.cert, "-verify_ip", "10.0.0.1").returncode != 0
    stranger = make_ca(tmp_path / "stranger", "Another CA", days=30)
    assert openssl_verify(stranger.cert, server.cert).returncode != 0


def test_a_tls_client_trusting_the_ca_completes_a_handshake(ca: CaFiles, server: ServerFiles) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server.cert, server.key)
    client_context = ssl.create_default_context(cafile=str(ca.cert))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            with server_context.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(b"hello")

        thread = threading.Thread(target=serve)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(5) == b"hello"
        thread.join(10)


def test_an_existing_ca_is_never_replaced(ca: CaFiles) -> None:
    before = ca.cert.read_bytes()
    with pytest.raises(FileExistsError):
        make_ca(ca.cert.parent, "Again", days=30)
    assert ca.cert.read_bytes() == before


@pytest.mark.parametrize("hosts", [[], ["not a host"], ["bad/name"]])
def test_a_server_certificate_needs_valid_host_names(ca: CaFiles, tmp_path: Path, hosts: list[str]) -> None:
    with pytest.raises(ConfigurationError):
        make_server_cert(ca.cert.parent, tmp_path / "server", hosts, days=10)
    assert not (tmp_path / "server" / "server.key").exists()


def test_pki_init_makes_the_files_once_and_prints_mosquittos_listener(tmp_path: Path) -> None:
    runner = CliRunner()
    frigo = typer.Typer()  # mounted as the main command mounts it: `frigo pki init`
    frigo.add_typer(pki_app, name="pki")
    directory = tmp_path / "pki"
    done = runner.invoke(
        frigo, ["pki", "init", "--dir", str(directory), "--host", "127.0.0.1", "--host", "mqtt.example"]
    )
    assert done.exit_code == 0, done.output
    assert f"certfile {directory / 'server.pem'}" in done.stdout
    assert f"keyfile {directory / 'server.key'}" in done.stdout
    assert f"cafile {directory / 'ca.pem'}" in done.stdout
    assert "listener 8883" in done.stdout
    ca_before = (directory / "ca.pem").read_bytes()
    server_before = (directory / "server.pem").read_bytes()
    assert (
        openssl_verify(directory / "ca.pem", directory / "server.pem", "-verify_ip", "127.0.0.1").returncode
        == 0
    )

    again = runner.invoke(frigo, ["pki", "init", "--dir", str(directory), "--host", "127.0.0.1"])
    assert again.exit_code == 0, again.output
    assert "existing CA" in again.stdout
    assert (directory / "ca.pem").read_bytes() == ca_before
    assert (directory / "server.pem").read_bytes() != server_before
