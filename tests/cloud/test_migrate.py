"""Schema migrations: the revisions build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlmodel import SQLModel

from cloud.db import migrate
from cloud.db.engine import create_db_engine

TABLES = {
    "households",
    "devices",
    "events",
    "dead_letters",
    "planned_orders",
    "planned_order_lines",
    "retailers",
    "retailer_keys",
    "catalog_items",
    "access_tokens",
    "web_sessions",
    "delivery_slots",
    "orders",
    "order_lines",
    "order_history",
    "idempotency_keys",
    "webhook_endpoints",
    "webhook_deliveries",
    "device_commands",
    "event_cursors",
    "consents",
    "offers",
    "offer_suppressions",
    "campaigns",
    "campaign_assignments",
    "erasures",
    "alembic_version",
}


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def test_migrating_an_empty_database_builds_the_models_schema(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert migrate.current(engine) is None
        migrate.upgrade(engine)

        assert migrate.current(engine) == migrate.head()
        assert set(inspect(engine).get_table_names()) == TABLES
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_migrating_again_changes_nothing_and_keeps_the_data(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO households (id, name, created_at) VALUES ('h1', 'Home', CURRENT_TIMESTAMP)")
            )
        migrate.upgrade(engine)

        with engine.connect() as connection:
            assert connection.execute(text("SELECT name FROM households")).scalars().all() == ["Home"]
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()


def test_downgrading_to_base_removes_every_table(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(migrate.MIGRATIONS))
            config.attributes["connection"] = connection
            command.downgrade(config, "base")

        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        assert migrate.current(engine) is None
    finally:
        engine.dispose()


def test_a_database_made_before_migrations_is_adopted_with_its_rows(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        # What workers made with create_all before migrations: revision 0001's tables, unversioned.
        migrate.upgrade(engine, "0001")
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE alembic_version"))
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO households (id, name, created_at) VALUES ('h1', 'Home', CURRENT_TIMESTAMP)")
            )

        migrate.upgrade(engine)

        assert migrate.current(engine) == migrate.head()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM households")).scalar_one() == 1
    finally:
        engine.dispose()


def test_workers_starting_together_migrate_once(database_url: str, tmp_path: Path) -> None:
    runs = [_frigo_cloud_migrate(database_url, tmp_path) for _ in range(4)]
    results = [run.communicate(timeout=120) for run in runs]

    assert [run.returncode for run in runs] == [0] * 4, [err for _, err in results]
    reports = sorted(out.strip() for out, _ in results)
    assert reports == [f"database already at revision {migrate.head()}"] * 3 + [
        f"database migrated from empty to {migrate.head()}"
    ]
    engine = create_db_engine(database_url)
    try:
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_threads_of_one_process_take_turns(database_url: str) -> None:
    engines = [create_db_engine(database_url) for _ in range(3)]
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        try:
            migrate.upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert migrate.current(engines[0]) == migrate.head()
    finally:
        for engine in engines:
            engine.dispose()


def _frigo_cloud_migrate(database_url: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRIGO_")}
    env["FRIGO_CLOUD_DATABASE_URL"] = database_url
    return subprocess.Popen(
        [sys.executable, "-m", "frigo", "cloud", "migrate"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_frigo_cloud_migrate_reports_what_it_did(database_url: str, tmp_path: Path) -> None:
    first = _frigo_cloud_migrate(database_url, tmp_path)
    first_out, first_err = first.communicate(timeout=120)
    second = _frigo_cloud_migrate(database_url, tmp_path)
    second_out, second_err = second.communicate(timeout=120)

    assert first.returncode == 0, first_err
    assert first_out.strip() == f"database migrated from empty to {migrate.head()}"
    assert second.returncode == 0, second_err
    assert second_out.strip() == f"database already at revision {migrate.head()}"


def test_0009_gives_old_credentials_an_end_and_old_deliveries_their_owner(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        migrate.upgrade(engine, "0008")
        order = '{"id":"o-1","household_id":"hh-a_b","status":"created"}'
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO households (id, name, created_at) "
                    "VALUES ('hh-a_b', 'Home', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO access_tokens (role, household_id, prefix, token_hash, created_at) "
                    "VALUES ('household', 'hh-a_b', 'frh_x', 'h1', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO retailers (id, name, created_at) VALUES ('shop', 'Shop', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO webhook_endpoints (id, retailer_id, url, secret, created_at) "
                    "VALUES ('e-1', 'shop', 'https://shop.example/hook', 's', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload, status, "
                    "attempts, created_at) "
                    "VALUES ('msg_1', 'e-1', 'order.created', :payload, 'pending', 0, CURRENT_TIMESTAMP)"
                ),
                {
                    "payload": '{"type":"order.created","timestamp":"2026-12-01T00:00:00Z","data":'
                    + order
                    + "}"
                },
            )
        migrate.upgrade(engine)

        with engine.connect() as connection:
            owners = connection.execute(text("SELECT household_id, order_id FROM webhook_deliveries")).all()
            ends = connection.execute(text("SELECT expires_at FROM access_tokens")).scalars().all()
        assert [tuple(row) for row in owners] == [("hh-a_b", "o-1")]
        assert len(ends) == 1
        assert ends[0] is not None
    finally:
        engine.dispose()
