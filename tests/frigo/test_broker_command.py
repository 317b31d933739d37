"""`frigo broker` never runs without authentication where other machines can reach it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from frigo.cli import app
from shared.mqtt import is_loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "fridges.example.org", ""])
def test_broker_refuses_a_reachable_address_without_authentication(host: str) -> None:
    done = CliRunner().invoke(app, ["broker", "--host", host, "--port", "1"])

    assert done.exit_code == 2
    said = " ".join(done.output.replace("│", " ").split())  # the error panel wraps lines in a box
    assert "--database-url" in said
    assert "frigo devices provision" in said
    assert "listening" not in said, "the broker never started"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example.org", False),
        ("", False),
    ],
)
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
