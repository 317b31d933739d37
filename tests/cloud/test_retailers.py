"""Retailer accounts: keys shown once and stored hashed, scoped to their retailer; catalog upserts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import Session
from typer.testing import CliRunner

from cloud.db.tables import RETAILER_KEYS
from cloud.identity.retailers import RetailerError, create_retailer, key_hash, new_key, slug
from cloud.service import CloudService
from cloud.settings import CloudSettings
from frigo.cli import app
from shared import gtin
from shared.clock import ManualClock
from shared.mqtt import MqttSettings
from tests.support.services import free_port

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def product(n: int, price: float = 1.5) -> dict[str, object]:
    body = f"20{n:010d}"
    return {
        "gtin": body + str(gtin.check_digit(body)),
        "name": f"Product {n}",
        "price": price,
        "currency": "EUR",
        "pack_size": 500,
        "unit": "g",
    }


@pytest.fixture
def cloud(database_url: str) -> Iterator[CloudService]:
    settings = CloudSettings(
        database_url=database_url,
        mqtt=MqttSettings(host="127.0.0.1", port=free_port()),  # no broker needed for the API
        http_port=0,
        client_id=f"retailers-test-{uuid.uuid4().hex[:8]}",
        planning=False,
    )
    service = CloudService(settings, ManualClock(NOW))
    service.start()
    try:
        yield service
    finally:
        service.stop()


def keys(cloud: CloudService) -> tuple[str, str]:
    with Session(cloud.engine) as session:
        _, fresh = create_retailer(session, "Fresh Foods", NOW)
        _, corner = create_retailer(session, "Corner Shop", NOW)
        session.commit()
    return fresh, corner


def test_a_key_is_shown_once_and_only_its_hash_is_kept(cloud: CloudService) -> None:
    fresh, _corner = keys(cloud)
    with cloud.engine.connect() as connection:
        stored = connection.execute(select(RETAILER_KEYS.c.prefix, RETAILER_KEYS.c.key_hash)).all()
    assert fresh.startswith("frk_")
    assert len(fresh) > 40
    assert all(fresh not in (prefix, hashed) for prefix, hashed in stored)
    assert key_hash(fresh) in {hashed for _prefix, hashed in stored}


def test_the_catalog_is_upserted_in_bulk_and_scoped_to_the_key(cloud: CloudService) -> None:
    fresh, corner = keys(cloud)
    with httpx.Client(base_url=cloud.url, timeout=30) as client:
        first = client.put(
            "/retailer/catalog",
            json={"items": [product(n) for n in range(10_000)]},
            headers={"Authorization": f"Bearer {fresh}"},
        )
        again = client.put(
            "/retailer/catalog",
            json={"items": [product(0, price=2.25), product(10_000)]},
            headers={"Authorization": f"Bearer {fresh}"},
        )
        mine = client.get("/retailer/catalog?limit=2", headers={"Authorization": f"Bearer {fresh}"})
        theirs = client.get("/retailer/catalog", headers={"Authorization": f"Bearer {corner}"})
        anonymous = client.get("/retailer/catalog")
        forged = client.get("/retailer/catalog", headers={"Authorization": "Bearer frk_not-a-key"})
        bad = client.put(
            "/retailer/catalog",
            json={"items": [{**product(1), "gtin": "2000000000001"}]},
            headers={"Authorization": f"Bearer {fresh}"},
        )
        too_many = client.put(
            "/retailer/catalog",
            json={"items": [product(n) for n in range(10_001)]},
            headers={"Authorization": f"Bearer {fresh}"},
        )

    assert first.status_code == 200
    assert first.json() == {"retailer_id": "fresh-foods", "upserted": 10_000, "products": 10_000}
    assert again.json()["products"] == 10_001  # one updated, one new
    assert [item["price"] for item in mine.json()] == [2.25, 1.5]
    assert theirs.json() == []  # the corner shop's key sees the corner shop's catalog only
    assert anonymous.status_code == 401
    assert forged.status_code == 401
    assert "Authorization: Bearer" in anonymous.json()["detail"]
    assert bad.status_code == 422
    assert "check digit" in bad.text
    assert too_many.status_code == 422


def test_names_ids_and_more_keys() -> None:
    assert slug("  Fresh Foods & Co. ") == "fresh-foods-co"
    with pytest.raises(RetailerError, match="letters or digits"):
        slug("!!!")


def test_the_command_line_creates_a_retailer_and_its_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["cloud", "--database-url", url, "migrate"]).exit_code == 0
    created = runner.invoke(app, ["retailers", "create", "Fresh Foods", "--database-url", url])
    twice = runner.invoke(app, ["retailers", "create", "Fresh Foods", "--database-url", url])
    more = runner.invoke(app, ["retailers", "key", "fresh-foods", "--database-url", url])
    listed = runner.invoke(app, ["retailers", "list", "--database-url", url])

    assert created.exit_code == 0, created.output
    assert "retailer fresh-foods (Fresh Foods) created" in created.output
    assert "frk_" in created.output
    assert twice.exit_code == 2
    assert "exists already" in twice.output
    assert more.exit_code == 0
    assert more.output.strip().startswith("frk_")
    assert listed.output.count("live") == 2


def test_a_key_for_an_unknown_retailer_is_refused(cloud: CloudService) -> None:
    with Session(cloud.engine) as session, pytest.raises(RetailerError, match="no retailer"):
        new_key(session, "nobody", NOW)
