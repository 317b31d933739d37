"""Who may call what: every household-scoped route, found in the OpenAPI spec, refuses another
household's token, so a new route is covered without editing this test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from cloud.identity.tokens import AccessError, issue_token
from cloud.service import CloudService
from shared.clock import ManualClock
from tests.support.auth import bearer
from tests.support.cloud import DATABASES, cloud_worker, database
from tests.support.factories import added, msg

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
# Bodies for the routes that take one; a route whose body is missing here gets {} (and must still
# refuse the wrong household before it looks at the body).
BODIES: dict[str, Any] = {"/households/{household_id}/planning": {"mode": "suggest"}}


@pytest.fixture(scope="module", params=DATABASES)
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudService]:
    def enrol(service: CloudService) -> None:
        service.ingestor.process([msg(added("fridge-a", 1)), msg(added("fridge-b", 1))])

    with (
        database(request.param, tmp_path_factory.mktemp("access")) as url,
        cloud_worker(url, ManualClock(NOW), "access", prepare=enrol) as service,
    ):
        yield service


def household_routes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (method, path) of every route under /households/{household_id}."""
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/households/{household_id}")
        for method in operations
    ]


def call(
    client: httpx.Client, method: str, path: str, household: str, headers: dict[str, str]
) -> httpx.Response:
    url = (
        path.replace("{household_id}", household)
        .replace("{order_id}", "some-order")
        .replace("{offer_id}", "some-offer")
    )
    body = BODIES.get(path, {}) if method in ("POST", "PUT") else None
    return client.request(method, url, json=body, headers=headers)


def test_another_households_token_opens_none_of_its_routes(cloud: CloudService) -> None:
    mine, theirs = (
        bearer(cloud.engine, "household", "hh-fridge-a"),
        bearer(cloud.engine, "household", "hh-fridge-b"),
    )
    with httpx.Client(base_url=cloud.url, timeout=10) as client:
        routes = household_routes(client.get("/openapi.json").json())
        assert len(routes) >= 8
        for method, path in routes:
            other = call(client, method, path, "hh-fridge-a", theirs)
            anonymous = call(client, method, path, "hh-fridge-a", {})
            assert other.status_code in (403, 404), (method, path, other.status_code)
            assert anonymous.status_code == 401, (method, path)
            if method == "DELETE":
                continue  # the household's own DELETE erases it: tests/cloud/test_privacy.py
            own = call(client, method, path, "hh-fridge-a", mine)
            assert own.status_code not in (401, 403), (method, path, own.status_code, own.text)


def test_the_households_list_and_the_admin_routes_need_an_operator(cloud: CloudService) -> None:
    household, admin = bearer(cloud.engine, "household", "hh-fridge-a"), bearer(cloud.engine)
    with httpx.Client(base_url=cloud.url, timeout=10) as client:
        for path in ("/households", "/admin/dead-letters"):
            assert client.get(path, headers=household).status_code == 403
            assert client.get(path).status_code == 401
            assert client.get(path, headers=admin).status_code == 200
        assert client.get("/households/hh-fridge-b/inventory", headers=admin).status_code == 200
        assert client.get("/healthz").status_code == 200  # operations stay open
        forged = {"Authorization": "Bearer fra_not-a-token"}
        assert client.get("/households", headers=forged).status_code == 401


def test_tokens_are_issued_for_known_households_only(cloud: CloudService) -> None:
    with Session(cloud.engine) as session:
        with pytest.raises(AccessError, match="no household"):
            issue_token(session, "household", "hh-nobody", NOW)
        with pytest.raises(AccessError, match="every household"):
            issue_token(session, "admin", "hh-fridge-a", NOW)
