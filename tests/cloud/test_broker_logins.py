"""What logins cost the embedded broker (cloud/mqtt/auth.py): bounded, whoever sends them.

A real :class:`EmbeddedBroker` with :class:`BrokerAuth` and a provisioned device: a flood of
parallel CONNECTs with a wrong secret leaves it answering (a valid client gets in within seconds;
the CONNECTs past MAX_PENDING_CHECKS are refused at once as "server unavailable", logged once), and
a username that names no device costs no argon2 check, yet is refused no sooner than a wrong secret.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db.engine import create_db_engine, create_schema
from cloud.identity import devices
from cloud.mqtt import auth
from cloud.mqtt.auth import BrokerAuth, Verdict
from cloud.mqtt.broker import EmbeddedBroker
from simulator.load.packets import connect_packet
from tests.support.connack import connack
from tests.support.services import free_port

DEVICE = "fridge-a"
CLOUD, CLOUD_PASSWORD = "cloud-1", "cloud-password-for-this-test"
# MQTT 3.1.1 CONNACK return codes, as a raw CONNACK carries them...
ACCEPTED, SERVER_UNAVAILABLE, NOT_AUTHORIZED = 0, 3, 5
# ... and as paho reports them (MQTT 5 reason codes).
PAHO_SERVER_UNAVAILABLE, PAHO_NOT_AUTHORIZED = 0x88, 0x87
FLOOD = 200
# The bar: a valid client connects within a few seconds of a flood.
VALID_WITHIN_S = 5.0


@dataclass
class Secured:
    port: int
    secret: str
    auth: BrokerAuth


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = create_db_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    create_schema(made)
    yield made
    made.dispose()


@pytest.fixture
def secured(engine: Engine) -> Iterator[Secured]:
    with Session(engine) as session:
        secret = devices.provision(session, DEVICE)
    broker_auth = BrokerAuth(engine, {CLOUD: CLOUD_PASSWORD})
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port, auth=broker_auth)
    broker.start()
    try:
        yield Secured(port, secret, broker_auth)
    finally:
        broker.stop()


@pytest.fixture
def argon2_checks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Count the argon2 checks (every thread's), as the times they were made."""
    made: list[float] = []
    lock = threading.Lock()
    verify = PasswordHasher.verify

    def counted(self: PasswordHasher, hashed: str | bytes, password: str | bytes) -> Any:
        with lock:
            made.append(time.monotonic())
        return verify(self, hashed, password)

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    return made


async def _answer(port: int, username: str, password: str, client_id: str) -> tuple[int, float]:
    """Send one CONNECT; return the CONNACK's return code (-1: none) and how long it took."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(connect_packet(client_id, username, password, keepalive_s=30))
        await writer.drain()
        connack_packet = await asyncio.wait_for(reader.readexactly(4), 30)
        return connack_packet[3], time.monotonic() - started
    except (asyncio.IncompleteReadError, ConnectionError):
        return -1, time.monotonic() - started
    finally:
        writer.close()
        await writer.wait_closed()


def answers(port: int, logins: list[tuple[str, str, str]]) -> list[tuple[int, float]]:
    """Send every (username, password, client id) CONNECT at once; return their answers in order."""

    async def every() -> list[tuple[int, float]]:
        return list(await asyncio.gather(*(_answer(port, *login) for login in logins)))

    return asyncio.run(every())


def test_a_flood_of_bad_logins_leaves_the_broker_answering(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cloud.mqtt.auth")
    flood: list[list[tuple[int, float]]] = []
    sender = threading.Thread(
        target=lambda: flood.append(answers(secured.port, [(DEVICE, "wrong", DEVICE)] * FLOOD))
    )
    sender.start()
    try:
        time.sleep(0.3)  # the flood is in: its checks fill the queue
        started = time.monotonic()
        codes = []
        while time.monotonic() - started < VALID_WITHIN_S:
            codes.append(
                connack(secured.port, DEVICE, secured.secret, client_id=DEVICE, protocol=mqtt.MQTTv311)
            )
            if codes[-1] == ACCEPTED:
                break
            assert codes[-1] == PAHO_SERVER_UNAVAILABLE, codes  # busy, never "not authorized"
            time.sleep(0.2)  # a client's reconnect delay
        took = time.monotonic() - started
    finally:
        sender.join(60)
    assert codes[-1] == ACCEPTED, f"the valid client was refused {len(codes)} times in {took:.1f} s"

    (flooded,) = flood
    refused = [code for code, _ in flooded]
    assert set(refused) <= {SERVER_UNAVAILABLE, NOT_AUTHORIZED}, refused
    # Past the bound, refused at once without a check; the bound's worth were checked and refused.
    busy = [seconds for code, seconds in flooded if code == SERVER_UNAVAILABLE]
    assert len(busy) >= FLOOD - 2 * auth.MAX_PENDING_CHECKS, refused
    assert refused.count(NOT_AUTHORIZED) >= auth.MAX_PENDING_CHECKS // 2, refused
    checked = [seconds for code, seconds in flooded if code == NOT_AUTHORIZED]
    # Not waiting for a check: sooner than the checked ones (on 2 shared cores the argon2 threads
    # slow the broker's loop too, so no absolute bound holds).
    assert statistics.median(busy) < statistics.median(checked), (sorted(busy), sorted(checked))
    warnings = [r for r in caplog.records if "server unavailable" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per BUSY_LOG_INTERVAL_S


def test_a_username_that_names_no_device_costs_no_argon2_check(
    secured: Secured, argon2_checks: list[float]
) -> None:
    wrong = connack(secured.port, DEVICE, "wrong", client_id=DEVICE, protocol=mqtt.MQTTv311)
    assert wrong == PAHO_NOT_AUTHORIZED
    checks_before = len(argon2_checks)  # the wrong secret's, and the one measuring a check at start
    for batch in range(5):  # within MAX_PENDING_CHECKS at once: their lookups are bounded too
        logins = [(f"ghost-{batch}-{n}", "any", f"ghost-{batch}-{n}") for n in range(10)]
        assert [code for code, _ in answers(secured.port, logins)] == [NOT_AUTHORIZED] * 10
    assert len(argon2_checks) == checks_before


def test_a_username_that_names_no_device_is_refused_no_sooner_than_a_wrong_secret(
    secured: Secured,
) -> None:
    def refusal_s(username: str) -> float:
        ((code, seconds),) = answers(secured.port, [(username, "wrong", username)])
        assert code == NOT_AUTHORIZED
        return seconds

    refusal_s("ghost")  # waits for the broker's measure of a check, taken as it started
    wrong_secret = statistics.median(refusal_s(DEVICE) for _ in range(5))
    no_device = statistics.median(refusal_s("ghost") for _ in range(5))
    # Equal up to the machine's noise; "no sooner" is what hides which devices exist.
    assert no_device >= 0.5 * wrong_secret, (no_device, wrong_secret)


def test_the_check_itself_spends_no_argon2_on_an_unknown_device(
    engine: Engine, argon2_checks: list[float]
) -> None:
    with Session(engine) as session:
        secret = devices.provision(session, DEVICE)
        devices.provision(session, "fridge-revoked")
        devices.revoke(session, "fridge-revoked")
    broker_auth = BrokerAuth(engine, {CLOUD: CLOUD_PASSWORD})
    assert broker_auth.check("ghost", "any", "ghost", None) is Verdict.NO_SUCH_DEVICE
    assert broker_auth.check("fridge-revoked", "any", "fridge-revoked", None) is Verdict.NO_SUCH_DEVICE
    assert not argon2_checks
    assert broker_auth.check(DEVICE, "wrong", DEVICE, None) is Verdict.REFUSED
    assert broker_auth.check(DEVICE, secret, DEVICE, None) is Verdict.ADMITTED
    assert len(argon2_checks) == 2
    assert broker_auth.check(CLOUD, CLOUD_PASSWORD, "cloud-worker", None) is Verdict.ADMITTED
    assert broker_auth.check(CLOUD, CLOUD_PASSWORD, DEVICE, None) is Verdict.REFUSED  # a device's client id
    assert broker_auth.check(None, None, "anyone", None) is Verdict.REFUSED
