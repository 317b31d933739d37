"""The consent ledger over HTTP, on SQLite and PostgreSQL: granted, listed, replaced, expired and
withdrawn in one call; withdrawing ordering stops the orders; every grant traceable in time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import Session

from cloud.commerce import consents
from cloud.db.tables import HOUSEHOLDS, Household
from cloud.identity.retailers import create_retailer
from cloud.service import CloudService
from shared.clock import ManualClock
from shared.gtin import make_gtin13
from tests.support.auth import bearer
from tests.support.cloud import DATABASES, cloud_worker, database

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
MILK = make_gtin13("400000000501")


CLOCK = ManualClock(NOW)


@pytest.fixture(scope="module", params=DATABASES)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudService]:
    with (
        database(request.param, tmp_path_factory.mktemp("consents")) as url,
        cloud_worker(url, CLOCK, "consents") as started,
    ):
        yield started


@pytest.fixture
def cloud(service: CloudService) -> Iterator[CloudService]:
    """The module's service, its clock back at NOW, and the HTTP clients of the test closed after it."""
    CLOCK.advance(timedelta(days=1))  # each test starts on a day of its own
    yield service
    while OPEN:
        OPEN.pop().close()


OPEN: list[httpx.Client] = []


def setup(cloud: CloudService) -> tuple[httpx.Client, httpx.Client, str, str]:
    """Return (household client, retailer client, household id, retailer id), all new."""
    household = f"hh-{uuid.uuid4().hex[:8]}"
    with Session(cloud.engine) as session:
        session.add(Household(id=household, name="Test home", created_at=NOW))
        session.commit()
        retailer, key = create_retailer(session, f"Shop {uuid.uuid4().hex[:8]}", NOW)
        session.commit()
        retailer_id = retailer.id
    home = httpx.Client(base_url=cloud.url, timeout=30, headers=bearer(cloud.engine, "household", household))
    shop = httpx.Client(base_url=cloud.url, timeout=30, headers={"Authorization": f"Bearer {key}"})
    OPEN.extend((home, shop))
    item = {"gtin": MILK, "name": "Milk", "price": 1.2, "currency": "EUR", "pack_size": 1}
    assert shop.put("/retailer/catalog", json={"items": [item]}).status_code == 200
    return home, shop, household, retailer_id


def test_no_consent_by_default_then_granted_listed_and_withdrawn_in_one_call(cloud: CloudService) -> None:
    home, _shop, household, retailer = setup(cloud)
    start = CLOCK.now()
    assert home.get(f"/households/{household}/consents").json() == []
    granted = home.post(
        f"/households/{household}/consents", json={"recipient": retailer, "purpose": "offers"}
    )
    assert granted.status_code == 201, granted.text
    body: dict[str, Any] = granted.json()
    assert (body["purpose"], body["recipient"], body["active"], body["channel"]) == (
        "offers",
        retailer,
        True,
        "api",
    )
    assert body["data_categories"] == ["consumption", "inventory"]
    assert body["text_version"] == consents.CURRENT_TEXT["offers"]
    with cloud.engine.connect() as connection:
        assert consents.is_active(connection, household, retailer, "offers", start)
        assert not consents.is_active(connection, household, retailer, "analytics", start)

    CLOCK.advance(timedelta(hours=1))
    withdrawn = home.post(
        f"/households/{household}/consents/withdraw", json={"recipient": retailer, "purpose": "offers"}
    )
    assert withdrawn.status_code == 200
    (gone,) = withdrawn.json()
    assert (gone["id"], gone["active"]) == (body["id"], False)
    assert gone["withdrawn_at"] is not None
    with cloud.engine.connect() as connection:
        assert not consents.is_active(connection, household, retailer, "offers", CLOCK.now())
        # The ledger keeps the grant: it held before it was withdrawn, not after.
        assert consents.was_active(connection, body["id"], household, start + timedelta(minutes=30))
        assert not consents.was_active(connection, body["id"], household, CLOCK.now())
    assert home.get(f"/households/{household}/consents", params={"active": "true"}).json() == []
    assert len(home.get(f"/households/{household}/consents").json()) == 1
    # Withdrawing again finds nothing active.
    again = home.post(
        f"/households/{household}/consents/withdraw", json={"recipient": retailer, "purpose": "offers"}
    )
    assert again.json() == []


def test_a_new_grant_replaces_the_active_one_and_the_ledger_keeps_both(cloud: CloudService) -> None:
    home, _shop, household, retailer = setup(cloud)
    first = home.post(
        f"/households/{household}/consents",
        json={"recipient": retailer, "purpose": "analytics", "text_version": "analytics-2026-01"},
    ).json()
    second = home.post(
        f"/households/{household}/consents",
        json={"recipient": retailer, "purpose": "analytics", "data_categories": ["purchases", "inventory"]},
    ).json()
    ledger = home.get(f"/households/{household}/consents").json()
    assert {g["id"]: g["active"] for g in ledger} == {first["id"]: False, second["id"]: True}
    assert second["data_categories"] == ["inventory", "purchases"]
    assert first["text_version"] == "analytics-2026-01"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"recipient": "no-such-shop", "purpose": "offers"}, "no recipient 'no-such-shop'"),
        ({"purpose": "offers", "expires_at": "2026-11-29T00:00:00Z"}, "must expire in the future"),
    ],
)
def test_a_consent_that_cannot_be_is_refused_with_the_reason(
    cloud: CloudService, body: dict[str, Any], detail: str
) -> None:
    home, _shop, household, retailer = setup(cloud)
    response = home.post(f"/households/{household}/consents", json={"recipient": retailer, **body})
    assert response.status_code == 422
    assert detail in response.json()["detail"]
    bad_purpose = home.post(
        f"/households/{household}/consents", json={"recipient": retailer, "purpose": "ads"}
    )
    assert bad_purpose.status_code == 422


def test_a_consent_ends_when_it_expires(cloud: CloudService) -> None:
    home, _shop, household, retailer = setup(cloud)
    start = CLOCK.now()
    until = start + timedelta(days=30)
    granted = home.post(
        f"/households/{household}/consents",
        json={"recipient": retailer, "purpose": "offers", "expires_at": until.isoformat()},
    ).json()
    with cloud.engine.connect() as connection:
        assert consents.is_active(connection, household, retailer, "offers", until - timedelta(seconds=1))
        assert not consents.is_active(connection, household, retailer, "offers", until)
        assert consents.was_active(connection, granted["id"], household, start)
        assert not consents.was_active(connection, granted["id"], household, until + timedelta(days=1))
        assert (household, retailer) in consents.active_pairs(connection, "offers", start)
        assert (household, retailer) not in consents.active_pairs(connection, "offers", until)


def test_choosing_a_retailer_consents_to_ordering_and_withdrawing_it_stops_the_orders(
    cloud: CloudService,
) -> None:
    home, shop, household, retailer = setup(cloud)
    assert home.put(f"/households/{household}/retailer", json={"retailer_id": retailer}).status_code == 200
    (ordering,) = home.get(f"/households/{household}/consents", params={"active": "true"}).json()
    assert (ordering["purpose"], ordering["data_categories"]) == ("ordering", ["orders"])
    placed = home.post(f"/households/{household}/orders", json={"lines": [{"gtin": MILK, "quantity": 1}]})
    assert placed.status_code == 201
    shipped = home.post(
        f"/households/{household}/orders", json={"lines": [{"gtin": MILK, "quantity": 2}]}
    ).json()
    for step in ("accepted", "picking", "dispatched"):
        assert shop.post(f"/retailer/orders/{shipped['id']}/events", json={"type": step}).status_code == 200

    withdrawn = home.post(
        f"/households/{household}/consents/withdraw", json={"recipient": retailer, "purpose": "ordering"}
    )
    assert len(withdrawn.json()) == 1
    # The open order is cancelled; the one on the van is not (it is on its way).
    order = home.get(f"/households/{household}/orders/{placed.json()['id']}").json()
    assert order["status"] == "cancelled"
    assert "withdrew its consent" in order["history"][-1]["detail"]
    assert home.get(f"/households/{household}/orders/{shipped['id']}").json()["status"] == "dispatched"
    # No new order goes there, and the household has no retailer now.
    assert home.get(f"/households/{household}/retailer").json()["retailer_id"] is None
    with cloud.engine.begin() as connection:
        connection.execute(
            update(HOUSEHOLDS).where(HOUSEHOLDS.c.id == household).values(retailer_id=retailer)
        )
    refused = home.post(f"/households/{household}/orders", json={"lines": [{"gtin": MILK, "quantity": 1}]})
    assert refused.status_code == 422
    assert "has not consented to ordering" in refused.json()["detail"]


def test_another_household_cannot_read_or_change_the_consents(cloud: CloudService) -> None:
    home, _shop, household, retailer = setup(cloud)
    other, _other_shop, _other_household, _ = setup(cloud)
    home.post(f"/households/{household}/consents", json={"recipient": retailer, "purpose": "offers"})
    assert other.get(f"/households/{household}/consents").status_code == 403
    withdraw = other.post(
        f"/households/{household}/consents/withdraw", json={"recipient": retailer, "purpose": "offers"}
    )
    assert withdraw.status_code == 403
    assert home.get(f"/households/{household}/consents", params={"active": "true"}).json()[0]["active"]
