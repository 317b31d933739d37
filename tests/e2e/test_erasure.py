"""A household's data, exported and erased, through a real Mosquitto with device credentials: the
export holds every row, the erasure leaves no row naming the household outside the documented
retention, the fridge wipes itself, and its credential is then refused by the broker."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, String, Text, func, or_, select
from sqlmodel import Session, SQLModel

from cloud.commerce import consents, privacy
from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import (
    ACCESS_TOKENS,
    CONSENTS,
    DEVICES,
    ERASURES,
    EVENTS,
    ORDER_LINES,
    ORDERS,
)
from cloud.identity import devices
from cloud.identity.retailers import create_retailer
from cloud.service import CloudService
from cloud.settings import CloudSettings
from edge.agent import Agent
from edge.settings import EdgeSettings
from shared.gtin import make_gtin13
from shared.mqtt import MqttSettings
from tests.support.auth import bearer
from tests.support.connack import connack
from tests.support.services import Mosquitto, require_mosquitto

DEVICE = "fridge-gone"
HOUSEHOLD = f"hh-{DEVICE}"
CLOUD_USER = "frigo-cloud"
MILK, EGGS = make_gtin13("400000000801"), make_gtin13("400000000802")


def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout} s: {check}")
        time.sleep(0.05)
    return result


@pytest.mark.mosquitto
def test_export_is_complete_and_erasure_leaves_nothing_and_revokes_the_fridge(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    create_schema(engine)
    with Session(engine) as session:
        secret = devices.provision(session, DEVICE)
        devices.provision(session, "fridge-stays")
        retailer, key = create_retailer(session, "Corner Shop", privacy_now())
        session.commit()
        retailer_id = retailer.id
    cloud_password = secrets.token_urlsafe(24)
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    with Session(engine) as session:
        devices.write_mosquitto_files(session, passwd, acl, {CLOUD_USER: cloud_password})
    broker = Mosquitto(require_mosquitto(), tmp_path, anonymous=False, password_file=passwd, acl_file=acl)
    broker.start()
    try:
        erase_and_check(engine, broker, tmp_path, secret, cloud_password, retailer_id, key)
    finally:
        broker.stop()  # also when a check fails: a broker left running fails later tests' warnings
    engine.dispose()


def erase_and_check(
    engine: Engine,
    broker: Mosquitto,
    tmp_path: Path,
    secret: str,
    cloud_password: str,
    retailer_id: str,
    key: str,
) -> None:
    """Run the fridge and the cloud, export, erase, and check what is left."""
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    cloud = CloudService(
        CloudSettings(
            database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
            mqtt=MqttSettings.model_validate(
                {"host": "127.0.0.1", "port": broker.port, "username": CLOUD_USER, "password": cloud_password}
            ),
            client_id=CLOUD_USER,
            http_port=0,
            planning=False,
        )
    )
    agent = Agent(
        EdgeSettings(
            device_id=DEVICE,
            data_dir=tmp_path / "fridge",
            mqtt=MqttSettings.model_validate(
                {"host": "127.0.0.1", "port": broker.port, "username": DEVICE, "password": secret}
            ),
        )
    )
    stack = ExitStack()
    try:
        cloud.start()
        assert cloud.subscriber.wait_connected(15)
        agent.start()
        for line in (MILK, MILK, EGGS, f"-{MILK}"):
            assert agent.scan(line)
        assert agent.wait_drained(timeout=20)
        home = stack.enter_context(
            httpx.Client(base_url=cloud.url, timeout=30, headers=bearer(engine, "household", HOUSEHOLD))
        )
        shop = stack.enter_context(
            httpx.Client(base_url=cloud.url, timeout=30, headers={"Authorization": f"Bearer {key}"})
        )
        item = {
            "gtin": MILK,
            "name": "Milk",
            "price": 1.1,
            "currency": "EUR",
            "pack_size": 1,
            "category": "dairy",
        }
        assert shop.put("/retailer/catalog", json={"items": [item]}).status_code == 200
        assert (
            home.put(f"/households/{HOUSEHOLD}/retailer", json={"retailer_id": retailer_id}).status_code
            == 200
        )
        order = home.post(f"/households/{HOUSEHOLD}/orders", json={"lines": [{"gtin": MILK, "quantity": 2}]})
        assert order.status_code == 201
        with engine.begin() as connection:
            consents.grant(connection, HOUSEHOLD, retailer_id, "offers", privacy_now())

        # The export holds every row the database has of the household, counted independently.
        exported = home.get(f"/households/{HOUSEHOLD}/export").json()
        with engine.connect() as connection:
            expected = {
                "events": connection.execute(
                    select(func.count()).select_from(EVENTS).where(EVENTS.c.household_id == HOUSEHOLD)
                ).scalar_one(),
                "orders": connection.execute(
                    select(func.count()).select_from(ORDERS).where(ORDERS.c.household_id == HOUSEHOLD)
                ).scalar_one(),
                "order_lines": connection.execute(
                    select(func.count())
                    .select_from(ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id))
                    .where(ORDERS.c.household_id == HOUSEHOLD)
                ).scalar_one(),
                "consents": connection.execute(
                    select(func.count()).select_from(CONSENTS).where(CONSENTS.c.household_id == HOUSEHOLD)
                ).scalar_one(),
                "access_tokens": connection.execute(
                    select(func.count())
                    .select_from(ACCESS_TOKENS)
                    .where(ACCESS_TOKENS.c.household_id == HOUSEHOLD)
                ).scalar_one(),
                "devices": 1,
                "households": 1,
            }
            assert privacy.counts(connection, HOUSEHOLD) == exported["counts"]
        for table, count in expected.items():
            assert exported["counts"][table] == count, table
        assert exported["counts"]["events"] >= 4
        assert all("secret_hash" not in row for row in exported["tables"]["devices"])
        assert "token_hash" not in exported["tables"]["access_tokens"][0]
        report = home.get(f"/households/{HOUSEHOLD}/transparency").json()
        assert report["shared"][0]["recipient"] == retailer_id
        assert {c["purpose"] for c in report["consents"]} == {"ordering", "offers"}

        erased = home.delete(f"/households/{HOUSEHOLD}")
        assert erased.status_code == 202, erased.text
        assert set(erased.json()["kept"]) == set(privacy.RETENTION)
        # The token went with the household.
        assert home.get(f"/households/{HOUSEHOLD}/inventory").status_code == 401
        # The fridge wipes itself and confirms; the cloud then revokes its credential.
        eventually(lambda: not agent.inventory())
        with engine.connect() as connection:
            eventually(lambda: connection.execute(select(ERASURES.c.completed_at)).scalar() is not None)
            revoked = connection.execute(select(DEVICES.c.revoked_at).where(DEVICES.c.id == DEVICE)).scalar()
            assert revoked is not None
    finally:
        stack.close()
        agent.stop()
        cloud.stop()
    # The operator's files follow the database: the fridge's credential is refused from now on.
    with Session(engine) as session:
        devices.write_mosquitto_files(session, passwd, acl)
    broker.reload()
    eventually(lambda: connack(broker.port, DEVICE, secret) != 0)
    assert connack(broker.port, CLOUD_USER, cloud_password) == 0

    # No row names the household, but the documented retention (which names it "erased").
    with engine.connect() as connection:
        for stored in SQLModel.metadata.sorted_tables:
            columns = [c for c in stored.columns if isinstance(c.type, String | Text)]
            if not columns:
                continue
            mentions = or_(*(c.contains(HOUSEHOLD) for c in columns))
            found = connection.execute(select(func.count()).select_from(stored).where(mentions)).scalar_one()
            assert found == 0, f"{stored.name} still names {HOUSEHOLD}"
        assert (
            connection.execute(
                select(func.count()).select_from(ORDERS).where(ORDERS.c.household_id == privacy.ERASED)
            ).scalar_one()
            == 1
        )
        (record,) = connection.execute(select(ERASURES)).all()
        assert record.household_hash == privacy.household_hash(HOUSEHOLD)


def privacy_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
