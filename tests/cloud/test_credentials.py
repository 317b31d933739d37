"""Credentials with a life cycle: operators list and revoke tokens and retailers' keys through the
API (/admin/...) and the command line (frigo tokens, frigo retailers), by prefix only; a revoked or
expired credential gets 401 at its next request. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import Session
from typer.testing import CliRunner

from cloud.api.schemas.admin import RetailerKeyPublic, TokenPublic
from cloud.db.tables import ACCESS_TOKENS, RETAILER_KEYS
from cloud.identity.retailers import create_retailer, new_key
from cloud.identity.tokens import Role, issue_token, token_hash
from cloud.service import CloudService
from frigo.cli import app
from shared.clock import ManualClock
from tests.support.cloud import DATABASES, cloud_worker, database
from tests.support.factories import added, msg

# The worker's clock starts at the real time: the command line issues and revokes at it.
START = datetime.now(UTC)
HOUSEHOLD = "hh-fridge-a"


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CloudService, ManualClock, str]]:
    clock = ManualClock(START)

    def enrol(service: CloudService) -> None:
        service.ingestor.process([msg(added("fridge-a", 1))])

    with (
        database(request.param, tmp_path_factory.mktemp("credentials")) as url,
        cloud_worker(url, clock, "credentials", prepare=enrol) as service,
    ):
        yield service, clock, url


@pytest.fixture
def cloud(world: tuple[CloudService, ManualClock, str]) -> CloudService:
    return world[0]


def token(cloud: CloudService, role: Role = "household", *, lifetime: timedelta | None = None) -> str:
    with Session(cloud.engine) as session:
        household = HOUSEHOLD if role == "household" else None
        issued = issue_token(session, role, household, START, lifetime=lifetime)
        session.commit()
    return issued


def token_id(cloud: CloudService, secret: str) -> int:
    with cloud.engine.connect() as connection:
        found = connection.execute(
            select(ACCESS_TOKENS.c.id).where(ACCESS_TOKENS.c.token_hash == token_hash(secret))
        ).scalar_one()
    return int(found)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_operators_list_tokens_by_prefix_and_revoke_them(cloud: CloudService) -> None:
    operator, household = token(cloud, "admin"), token(cloud)
    mine = token_id(cloud, household)
    with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(operator)) as api:
        listed = api.get("/admin/tokens", params={"household_id": HOUSEHOLD})
        assert listed.status_code == 200
        (shown,) = [t for t in listed.json() if t["id"] == mine]
        assert shown["prefix"] == household[:12]
        assert (shown["role"], shown["household_id"], shown["state"]) == ("household", HOUSEHOLD, "live")
        assert household not in listed.text
        assert token_hash(household) not in listed.text
        assert all(t["household_id"] == HOUSEHOLD for t in listed.json())
        assert api.get(f"/households/{HOUSEHOLD}/inventory", headers=bearer(household)).status_code == 200

        revoked = api.post(f"/admin/tokens/{mine}/revoke")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["state"] == "revoked"
        assert api.get(f"/households/{HOUSEHOLD}/inventory", headers=bearer(household)).status_code == 401
        again = api.post(f"/admin/tokens/{mine}/revoke")
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # revoking twice changes nothing
        states = {t["id"]: t["state"] for t in api.get("/admin/tokens", params={"state": "revoked"}).json()}
        assert states[mine] == "revoked"
        assert set(states.values()) == {"revoked"}

        assert api.post("/admin/tokens/999999/revoke").status_code == 404
        own = api.post(f"/admin/tokens/{token_id(cloud, operator)}/revoke")
        assert own.status_code == 409
        assert "frigo tokens revoke" in own.json()["detail"]
        # Households see none of it.
        other = token(cloud)
        assert api.get("/admin/tokens", headers=bearer(other)).status_code == 403
        assert api.post(f"/admin/tokens/{mine}/revoke", headers=bearer(other)).status_code == 403
        assert api.get("/admin/tokens", headers={"Authorization": ""}).status_code == 401


def test_operators_list_retailer_keys_by_prefix_and_revoke_them(cloud: CloudService) -> None:
    operator = token(cloud, "admin")
    with Session(cloud.engine) as session:
        retailer, first = create_retailer(session, "Corner Shop", START)
        second = new_key(session, retailer.id, START, lifetime=timedelta(days=7))
        session.commit()
    with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(operator)) as api:
        listed = api.get("/admin/retailers/corner-shop/keys")
        assert listed.status_code == 200
        keys = listed.json()
        assert [k["prefix"] for k in keys] == [first[:12], second[:12]]
        assert [k["state"] for k in keys] == ["live", "live"]
        for secret in (first, second, token_hash(first), token_hash(second)):
            assert secret not in listed.text
        expires = datetime.fromisoformat(keys[1]["expires_at"])
        assert expires - START == timedelta(days=7)
        assert api.get("/retailer/orders", headers=bearer(first)).status_code == 200

        revoked = api.post(f"/admin/retailers/corner-shop/keys/{keys[0]['id']}/revoke")
        assert revoked.status_code == 200
        assert revoked.json()["state"] == "revoked"
        assert api.get("/retailer/orders", headers=bearer(first)).status_code == 401
        assert api.get("/retailer/orders", headers=bearer(second)).status_code == 200  # the other key lives
        assert api.get("/admin/retailers/nobody/keys").status_code == 404
        assert api.post(f"/admin/retailers/nobody/keys/{keys[1]['id']}/revoke").status_code == 404


def test_an_expired_token_or_key_gets_401(world: tuple[CloudService, ManualClock, str]) -> None:
    cloud, clock, _ = world
    household = token(cloud, lifetime=timedelta(days=1))
    with Session(cloud.engine) as session:
        retailer, _ = create_retailer(session, "Day Shop", START)
        key = new_key(session, retailer.id, START, lifetime=timedelta(days=1))
        session.commit()
    with httpx.Client(base_url=cloud.url, timeout=10) as api:
        assert api.get(f"/households/{HOUSEHOLD}/inventory", headers=bearer(household)).status_code == 200
        assert api.get("/retailer/orders", headers=bearer(key)).status_code == 200
        clock.advance(timedelta(days=1))
        assert api.get(f"/households/{HOUSEHOLD}/inventory", headers=bearer(household)).status_code == 401
        assert api.get("/retailer/orders", headers=bearer(key)).status_code == 401


def test_the_command_line_lists_and_revokes_tokens(world: tuple[CloudService, ManualClock, str]) -> None:
    cloud, _, url = world
    runner = CliRunner()
    issued = runner.invoke(app, ["tokens", "household", HOUSEHOLD, "--days", "30", "--database-url", url])
    assert issued.exit_code == 0, issued.output
    secret = issued.stdout.strip()
    assert secret.startswith("frh_")
    mine = token_id(cloud, secret)
    with cloud.engine.connect() as connection:
        created, expires = connection.execute(
            select(ACCESS_TOKENS.c.created_at, ACCESS_TOKENS.c.expires_at).where(ACCESS_TOKENS.c.id == mine)
        ).one()
    assert expires - created == timedelta(days=30)

    listed = runner.invoke(app, ["tokens", "list", "--household", HOUSEHOLD, "--database-url", url])
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "ROLE", "HOUSEHOLD", "PREFIX", "CREATED", "EXPIRES", "REVOKED", "STATE"]
    (row,) = [r for r in rows if r.split()[0] == str(mine)]
    assert row.split()[1:4] == ["household", HOUSEHOLD, f"{secret[:12]}…"]
    assert row.split()[-1] == "live"
    assert secret not in listed.stdout

    with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(secret)) as api:
        assert api.get(f"/households/{HOUSEHOLD}/inventory").status_code == 200
        revoked = runner.invoke(app, ["tokens", "revoke", str(mine), "--database-url", url])
        assert revoked.exit_code == 0, revoked.output
        assert f"token {mine} ({secret[:12]}…, {HOUSEHOLD}) revoked at" in revoked.stdout
        assert api.get(f"/households/{HOUSEHOLD}/inventory").status_code == 401
    listed = runner.invoke(app, ["tokens", "list", "--database-url", url])
    (row,) = [r for r in listed.stdout.splitlines() if r.split()[0] == str(mine)]
    assert row.split()[-1] == "revoked"
    unknown = runner.invoke(app, ["tokens", "revoke", "999999", "--database-url", url])
    assert unknown.exit_code == 2
    assert "frigo tokens list" in unknown.output
    assert runner.invoke(app, ["tokens", "admin", "--days", "0", "--database-url", url]).exit_code == 2


def test_the_command_line_lists_and_revokes_retailer_keys(
    world: tuple[CloudService, ManualClock, str],
) -> None:
    cloud, _, url = world
    runner = CliRunner()
    created = runner.invoke(app, ["retailers", "create", "Green Grocer", "--database-url", url])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    more = runner.invoke(app, ["retailers", "key", "green-grocer", "--days", "7", "--database-url", url])
    assert more.exit_code == 0, more.output
    with cloud.engine.connect() as connection:
        ids = {
            prefix: int(key_id)
            for key_id, prefix in connection.execute(
                select(RETAILER_KEYS.c.id, RETAILER_KEYS.c.prefix).where(
                    RETAILER_KEYS.c.retailer_id == "green-grocer"
                )
            )
        }
    listed = runner.invoke(app, ["retailers", "keys", "green-grocer", "--database-url", url])
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "PREFIX", "CREATED", "EXPIRES", "REVOKED", "STATE"]
    assert [r.split()[1] for r in rows] == [f"{key[:12]}…", f"{more.stdout.strip()[:12]}…"]
    assert [r.split()[-1] for r in rows] == ["live", "live"]
    assert key not in listed.stdout

    with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(key)) as api:
        assert api.get("/retailer/orders").status_code == 200
        revoked = runner.invoke(
            app, ["retailers", "revoke-key", "green-grocer", str(ids[key[:12]]), "--database-url", url]
        )
        assert revoked.exit_code == 0, revoked.output
        assert f"({key[:12]}…) of green-grocer revoked at" in revoked.stdout
        assert api.get("/retailer/orders").status_code == 401
    listed = runner.invoke(app, ["retailers", "keys", "green-grocer", "--database-url", url])
    assert [r.split()[-1] for r in listed.stdout.splitlines()[1:]] == ["revoked", "live"]
    summary = runner.invoke(app, ["retailers", "list", "--database-url", url])
    assert "revoked since" in summary.stdout
    wrong = runner.invoke(app, ["retailers", "revoke-key", "nobody", "1", "--database-url", url])
    assert wrong.exit_code == 2
    assert runner.invoke(app, ["retailers", "keys", "nobody", "--database-url", url]).exit_code == 2


def test_the_api_models_of_credentials_have_no_field_for_a_secret() -> None:
    for model in (TokenPublic, RetailerKeyPublic):
        assert not {"token", "key", "token_hash", "key_hash", "secret"} & set(model.model_fields)
