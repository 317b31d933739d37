"""The `frigo` command: one entry point for every component."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from frigo.admin import devices_app, pki_app, retailers_app, tokens_app
from frigo.evaluate import eval_app
from shared.mqtt import MqttSettings

if TYPE_CHECKING:
    from edge.settings import EdgeSettings
    from simulator.scenario import Scenario
    from simulator.world import DayReport

app = typer.Typer(
    help="Frigo: open-source software for smart fridges. Run `frigo demo` to see the whole loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
contract_app = typer.Typer(help="The wire contract between fridges and cloud.", no_args_is_help=True)
app.add_typer(contract_app, name="contract")
app.add_typer(devices_app, name="devices")
app.add_typer(pki_app, name="pki")
app.add_typer(retailers_app, name="retailers")
app.add_typer(tokens_app, name="tokens")
app.add_typer(eval_app, name="eval")


class Protocol(StrEnum):
    """MQTT protocol versions."""

    V5 = "5"
    V311 = "3.1.1"


MqttHost = Annotated[str | None, typer.Option(help="MQTT broker host [default: from settings, 127.0.0.1]")]
MqttPort = Annotated[int | None, typer.Option(help="MQTT broker port [default: from settings, 1883]")]
MqttProtocol = Annotated[
    Protocol | None, typer.Option(help="MQTT version; the embedded broker needs 3.1.1 [default: 5]")
]
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Send the MQTT password to a broker on another host even without TLS (a network you "
        "trust) [setting: mqtt.insecure]",
    ),
]


def _mqtt(base: MqttSettings, host: str | None, port: int | None, protocol: Protocol | None) -> MqttSettings:
    update: dict[str, object] = {}
    if host is not None:
        update["host"] = host
    if port is not None:
        update["port"] = port
    if protocol is not None:
        update["protocol"] = protocol.value
    return base.model_copy(update=update)


def _stop_on_signals() -> threading.Event:
    """Return an event set by SIGINT or SIGTERM, which then stop the command as its own end would.

    No KeyboardInterrupt is raised: a command stops where it chooses, after draining, and exits 0.
    Child processes ignore both signals (Ctrl-C reaches the whole process group): the command stops
    them.
    """
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@app.callback()
def _configure(
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "WARNING",
) -> None:
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@app.command()
def demo(
    fridges: Annotated[int, typer.Option(min=1, max=50, help="Virtual fridges to run.")] = 3,
    duration: Annotated[
        float | None, typer.Option(min=1, help="Stop after this many seconds [default: run until Ctrl-C]")
    ] = None,
    rate: Annotated[float, typer.Option(min=0.01, max=100, help="Scans per second per fridge.")] = 2.0,
    mqtt_port: Annotated[int, typer.Option(help="Embedded broker port (a free one if busy).")] = 1884,
    http_port: Annotated[int, typer.Option(help="API port (a free one if busy).")] = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the databases here [default: a temp dir]")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the virtual households.")] = 1,
) -> None:
    """Run the whole system on embedded defaults: broker, cloud on SQLite, virtual fridges."""
    stop = _stop_on_signals()  # first: a Ctrl-C while it starts stops it cleanly too
    from frigo.demo import run_demo

    run_demo(
        fridges=fridges,
        duration=duration,
        rate=rate,
        mqtt_port=mqtt_port,
        http_port=http_port,
        data_dir=data_dir,
        seed=seed,
        stop=stop,
    )


@app.command()
def broker(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 1884,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Authenticate devices provisioned in this cloud database (`frigo devices provision`) "
            "and enforce the fleet's ACLs [default: anonymous, no ACLs, loopback addresses only]"
        ),
    ] = None,
    cloud_user: Annotated[
        str | None, typer.Option(help="The cloud's MQTT username (with --database-url).")
    ] = None,
    cloud_password_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the cloud user's password.")
    ] = None,
) -> None:
    """Run the embedded MQTT broker (amqtt, MQTT 3.1.1) until Ctrl-C or SIGTERM."""
    from cloud.mqtt.broker import EmbeddedBroker
    from shared.mqtt import is_loopback

    if (cloud_user is None) != (cloud_password_env is None):
        raise typer.BadParameter("give both --cloud-user and --cloud-password-env, or neither")
    if cloud_user is not None and database_url is None:
        raise typer.BadParameter("a cloud user needs --database-url (authentication on)")
    if database_url is None and not is_loopback(host):
        # Anonymous and without ACLs, anyone who reaches the port could publish as any fridge.
        raise typer.BadParameter(
            f"{host} is reachable from other machines, and without --database-url the broker lets "
            "anyone publish as any fridge and read everything: give --database-url (the cloud "
            "database where `frigo devices provision` registered the fridges) so each device logs in "
            "with its own secret, or listen on 127.0.0.1",
            param_hint="--host",
        )
    engine = None
    auth = None
    if database_url is not None:
        from cloud.db.engine import create_db_engine, create_schema
        from cloud.mqtt.auth import BrokerAuth

        cloud_users: dict[str, str] = {}
        if cloud_user is not None and cloud_password_env is not None:
            password = os.environ.get(cloud_password_env, "")
            if not password:
                raise typer.BadParameter(
                    f"${cloud_password_env} is unset or empty", param_hint="--cloud-password-env"
                )
            cloud_users[cloud_user] = password
        engine = create_db_engine(database_url)
        create_schema(engine)
        auth = BrokerAuth(engine, cloud_users)
    stop = _stop_on_signals()
    embedded = EmbeddedBroker(host, port, auth=auth)
    embedded.start()
    try:
        mode = "devices authenticated, ACLs enforced" if auth is not None else "anonymous, no ACLs"
        typer.echo(f"embedded MQTT broker listening on {host}:{port} (MQTT 3.1.1, {mode}); Ctrl-C stops it")
        stop.wait()
    finally:
        embedded.stop()
        if engine is not None:
            engine.dispose()
    typer.echo("embedded MQTT broker stopped")


cloud_app = typer.Typer(invoke_without_command=True, no_args_is_help=False, rich_markup_mode="markdown")
app.add_typer(cloud_app, name="cloud")


@cloud_app.callback(invoke_without_command=True)
def cloud(
    ctx: typer.Context,
    database_url: Annotated[
        str | None, typer.Option(help="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    ] = None,
    mqtt_host: MqttHost = None,
    mqtt_port: MqttPort = None,
    mqtt_protocol: MqttProtocol = None,
    insecure: Insecure = False,
    http_host: Annotated[str | None, typer.Option(help="API address [default: 127.0.0.1]")] = None,
    http_port: Annotated[int | None, typer.Option(help="API port [default: 8000]")] = None,
) -> None:
    """Run a cloud worker (without a subcommand): ingest the fleet's events and serve the API, until
    Ctrl-C or SIGTERM; or `migrate` the database.

    Every option can also come from the environment: FRIGO_CLOUD_DATABASE_URL, FRIGO_CLOUD_MQTT__HOST,
    FRIGO_CLOUD_SHARED_GROUP (several workers sharing the stream), FRIGO_CLOUD_CLIENT_ID (unique per
    worker), FRIGO_CLOUD_LOG_FORMAT=json (one JSON object per log line), ...
    """
    from cloud.settings import CloudSettings

    settings = CloudSettings()
    mqtt = _mqtt(settings.mqtt, mqtt_host, mqtt_port, mqtt_protocol)
    if insecure:
        mqtt = mqtt.model_copy(update={"insecure": True})
    update: dict[str, object] = {"mqtt": mqtt}
    for key, value in (("database_url", database_url), ("http_host", http_host), ("http_port", http_port)):
        if value is not None:
            update[key] = value
    settings = CloudSettings.model_validate(settings.model_dump() | update)
    ctx.obj = settings
    if settings.log_format == "json":
        from cloud.logs import configure_logging

        configure_logging(logging.getLogger().level, json=True)
    if ctx.invoked_subcommand is not None:
        return
    from cloud.service import CloudService
    from shared.errors import InsecureTransport

    stop = _stop_on_signals()
    try:
        service = CloudService(settings)
    except InsecureTransport as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        service.start()
        typer.echo(f"cloud worker running; API docs at {service.url}/docs")
        stop.wait()
    finally:
        service.stop()  # commits and acknowledges what it holds, then disconnects
    stats = service.ingestor.stats
    typer.echo(f"cloud worker stopped: {stats.stored} events stored, {stats.duplicates} duplicates dropped")


@cloud_app.command("migrate")
def cloud_migrate(ctx: typer.Context) -> None:
    """Bring the database schema up to date (workers also do it when they start)."""
    from cloud.db import migrate
    from cloud.db.engine import create_db_engine

    engine = create_db_engine(ctx.obj.database_url)
    try:
        before = migrate.upgrade(engine)
        after = migrate.current(engine)
    finally:
        engine.dispose()
    if before == after:
        typer.echo(f"database already at revision {after}")
    else:
        typer.echo(f"database migrated from {before or 'empty'} to {after}")


edge_app = typer.Typer(invoke_without_command=True, no_args_is_help=False, rich_markup_mode="markdown")
app.add_typer(edge_app, name="edge")


@edge_app.callback(invoke_without_command=True)
def edge(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="TOML settings file [env: FRIGO_EDGE_CONFIG]")] = None,
    device_id: Annotated[
        str | None, typer.Option(help="This fridge's id [env: FRIGO_EDGE_DEVICE_ID]")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Local database folder [env: FRIGO_EDGE_DATA_DIR]")
    ] = None,
    mqtt_host: MqttHost = None,
    mqtt_port: MqttPort = None,
    mqtt_protocol: MqttProtocol = None,
    insecure: Insecure = False,
    drain_timeout: Annotated[
        float | None,
        typer.Option(help="At end of input, wait at most this long for acks [default: no limit]"),
    ] = None,
) -> None:
    """Run the fridge agent (without a subcommand), or inspect it (status, offers, answer, calibrate).

    With the default sensors.scanner = "stdin", standard input is the scanner, one line per action:
    CODE or +CODE puts one unit in; -CODE takes one out; "open CODE"; "discard CODE REASON" (expired,
    spoiled or other); "move CODE LOCATION" (fridge, freezer or door). CODE is a GTIN-8/12/13/14 with
    its check digit. Each recorded event prints "ok seq=N ..."; at end of input the agent waits until
    the cloud has acknowledged every event.

    Settings come from --config (see deploy/frigo-edge.toml), then FRIGO_EDGE_* variables, then these
    options. The data folder belongs to the device that first started on it: `adopt` or `reset` hands
    it over to another.
    """
    mqtt: dict[str, object] = {k: v for k, v in (("host", mqtt_host), ("port", mqtt_port)) if v is not None}
    if mqtt_protocol is not None:
        mqtt["protocol"] = mqtt_protocol.value
    if insecure:
        mqtt["insecure"] = True
    ctx.obj = {"config": config, "device_id": device_id, "data_dir": data_dir, "mqtt": mqtt or None}
    if ctx.invoked_subcommand is not None:
        return  # subcommands load the settings themselves, so their --help works without any
    from edge.service import run

    raise typer.Exit(run(_edge_settings(ctx), drain_timeout))


def _edge_settings(ctx: typer.Context) -> EdgeSettings:
    """Load the edge settings from the options given to `frigo edge`, or exit with a clear error."""
    from edge.errors import ConfigError
    from edge.settings import load_settings

    options = dict(ctx.obj)
    try:
        return load_settings(options.pop("config"), **options)
    except ConfigError as exc:
        typer.echo(f"error: {exc}\n(set --device-id or FRIGO_EDGE_DEVICE_ID, or pass --config)", err=True)
        raise typer.Exit(2) from None


@contextmanager
def _edge_database(settings: EdgeSettings, *, record: bool) -> Iterator[sqlite3.Connection]:
    """Open the agent's database for a subcommand, or exit 2 if the folder is another device's.

    ``record``: a subcommand that records events makes a folder without an owner the device's, as
    the agent's first start would; one that only reads leaves it without.
    """
    from edge.database import open_database
    from edge.datafolder import claim
    from edge.errors import ForeignDataFolder
    from shared.clock import SystemClock

    conn = open_database(settings.db_path)
    try:
        try:
            claim(conn, settings.data_dir, settings.device_id, SystemClock().now(), record=record)
        except ForeignDataFolder as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        yield conn
    finally:
        conn.close()


@edge_app.command("status")
def edge_status(ctx: typer.Context) -> None:
    """Show the fridge's inventory, alerts, outbox and connection, from its local database."""
    from rich.console import Console
    from rich.table import Table

    from edge.agent import read_status
    from edge.errors import ForeignDataFolder

    try:
        status = read_status(_edge_settings(ctx))
    except ForeignDataFolder as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    console = Console()
    console.print(
        f"[bold]{status.device_id}[/]: {'connected' if status.connected else 'not connected'}; "
        f"outbox {status.outbox_depth} of {status.outbox_capacity} ({status.pressure}"
        + (f", {status.dropped_events} events dropped" if status.dropped_events else "")
        + f"); {status.offers} offers",
        soft_wrap=True,
    )
    lots = Table(title="Inventory")
    for column in ("lot", "product", "quantity", "where", "best before", "opened"):
        lots.add_column(column)
    for lot, label in status.lots:
        lots.add_row(
            str(lot.id),
            label,
            f"{lot.quantity:g} {lot.unit}",
            lot.location,
            str(lot.best_before or "-"),
            lot.opened_at.date().isoformat() if lot.opened_at else "-",
        )
    console.print(lots)
    alerts = Table(title="Alerts")
    for column in ("since", "kind", "detail"):
        alerts.add_column(column)
    for kind, _subject, detail, since in status.alerts:
        alerts.add_row(since[:16].replace("T", " "), kind, detail)
    console.print(alerts)
    if status.expected:
        expected = Table(title="Expected deliveries")
        for column in ("order", "product", "received"):
            expected.add_column(column)
        for order_id, code, quantity, received in status.expected:
            expected.add_row(order_id[:8], code, f"{received} of {quantity}")
        console.print(expected)
    if status.unknown_codes:
        console.print(
            f"Unknown products (waiting for the cloud's catalog): {', '.join(status.unknown_codes)}"
        )


@edge_app.command("offers")
def edge_offers(ctx: typer.Context) -> None:
    """List the offers the cloud sent, with why each was made."""
    from edge.offers import Offers
    from shared.clock import SystemClock

    with _edge_database(_edge_settings(ctx), record=False) as conn:
        offers = Offers(conn).current(SystemClock().now())
    if not offers:
        typer.echo("no current offers")
    for stored in offers:
        offer = stored.offer
        answer = f" [{stored.answer}]" if stored.answer else ""
        typer.echo(f"{offer.offer_id}  {offer.title}{answer}\n    {offer.body}\n    why: {offer.explanation}")


class Answer(StrEnum):
    """How the household answers an offer."""

    ACCEPT = "accept"
    DISMISS = "dismiss"
    NOT_THIS_CATEGORY = "not-this-category"


OFFER_ANSWERS = {
    Answer.ACCEPT: "accepted",
    Answer.DISMISS: "dismissed",
    Answer.NOT_THIS_CATEGORY: "not_this_category",
}


@edge_app.command("answer")
def edge_answer(
    ctx: typer.Context,
    offer_id: Annotated[str, typer.Argument(help="The offer's id, from `frigo edge offers`.")],
    answer: Annotated[Answer, typer.Argument(help="accept, dismiss or not-this-category")],
) -> None:
    """Accept or dismiss an offer, or turn its category off; the answer goes to the cloud with the
    next events."""
    import uuid

    from edge.recorder import Recorder
    from shared.clock import SystemClock

    settings = _edge_settings(ctx)
    with _edge_database(settings, record=True) as conn:
        try:
            recorder = Recorder(conn, settings.device_id, SystemClock(), consent=settings.consent)
            recorder.answer_offer(uuid.UUID(offer_id), OFFER_ANSWERS[answer])
        except (LookupError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"offer {offer_id}: {OFFER_ANSWERS[answer]}")


class OrderAnswer(StrEnum):
    """How the household answers a basket or an order."""

    APPROVE = "approve"
    CANCEL = "cancel"
    SKIP = "skip"
    ACCEPT_SUBSTITUTIONS = "accept_substitutions"
    REJECT_SUBSTITUTIONS = "reject_substitutions"


@edge_app.command("orders")
def edge_orders(ctx: typer.Context) -> None:
    """List the baskets and orders the cloud told this fridge of, newest first."""
    from edge.orders import Orders

    with _edge_database(_edge_settings(ctx), record=False) as conn:
        listed = Orders(conn).listed()
    if not listed:
        typer.echo("no orders")
    for order_id, status, lines in listed:
        typer.echo(f"{order_id}  {status}\n    {lines or '(no lines)'}")


@edge_app.command("order")
def edge_order(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The basket's or order's id, from `frigo edge orders`.")],
    answer: Annotated[
        OrderAnswer,
        typer.Argument(
            help="approve, cancel or skip a basket; cancel an order; accept or reject substitutions"
        ),
    ],
) -> None:
    """Answer a basket or an order on the fridge; the answer goes to the cloud with the next events."""
    import uuid

    from edge.recorder import Recorder
    from shared.clock import SystemClock

    settings = _edge_settings(ctx)
    with _edge_database(settings, record=True) as conn:
        try:
            recorder = Recorder(conn, settings.device_id, SystemClock(), consent=settings.consent)
            recorder.answer_order(uuid.UUID(order_id), answer.value)
        except (LookupError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"order {order_id}: {answer.value}")


class ConsentAction(StrEnum):
    """What the household does with a company's consent."""

    GRANT = "grant"
    WITHDRAW = "withdraw"


class ConsentPurpose(StrEnum):
    """What a company may use the household's data for."""

    ORDERING = "ordering"
    OFFERS = "offers"
    ANALYTICS = "analytics"


@edge_app.command("consent")
def edge_consent(
    ctx: typer.Context,
    action: Annotated[ConsentAction, typer.Argument(help="grant or withdraw")],
    recipient: Annotated[str, typer.Argument(help="The company: a retailer's id, e.g. fresh-foods.")],
    purpose: Annotated[ConsentPurpose, typer.Argument(help="ordering, offers or analytics")],
) -> None:
    """Grant or withdraw a company's consent to use the household's data for a purpose; the cloud
    applies it when the event arrives (withdrawing stops the offers, or the orders, at once)."""
    from edge.recorder import Recorder
    from shared.clock import SystemClock

    settings = _edge_settings(ctx)
    with _edge_database(settings, record=True) as conn:
        try:
            recorder = Recorder(conn, settings.device_id, SystemClock(), consent=settings.consent)
            recorder.change_consent(recipient, purpose.value, action.value)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"consent of {recipient} for {purpose.value}: {action.value}")


@edge_app.command("calibrate")
def edge_calibrate(
    ctx: typer.Context,
    shelf_id: Annotated[str, typer.Argument(help="The shelf to calibrate, as named in sensors.shelves.")],
    known_grams: Annotated[
        float, typer.Option(min=1, help="Weight of the reference load you will use.")
    ] = 1000,
) -> None:
    """Calibrate a weight shelf: tare it empty, then weigh a known load."""
    from edge.calibration import CalibrationStore, calibrate
    from edge.errors import EdgeError
    from edge.sensors.weight import Hx711Shelf

    settings = _edge_settings(ctx)
    shelf = next((s for s in settings.sensors.shelves if s.shelf_id == shelf_id), None)
    if shelf is None:
        known = ", ".join(s.shelf_id for s in settings.sensors.shelves) or "none configured"
        typer.echo(f"error: no shelf {shelf_id!r} in the settings (shelves: {known})", err=True)
        raise typer.Exit(2)
    try:
        device = Hx711Shelf(shelf.shelf_id, shelf.dout_pin, shelf.sck_pin, scale=1.0, offset=0.0)
        try:
            result = calibrate(device.read_raw, known_grams, typer.echo, input)
        finally:
            device.close()
        CalibrationStore.in_data_dir(settings.data_dir).save(shelf_id, result)
    except EdgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"shelf {shelf_id} calibrated: offset {result.offset:.1f}, scale {result.scale:.4f} counts/g")


SetAsideUnsent = Annotated[
    bool,
    typer.Option(
        "--set-aside-unsent",
        help="Go ahead although the previous device has events the cloud has not acknowledged: they "
        "move, with the rest of its data, to a copy of the folder that sends them when started.",
    ),
]


@edge_app.command("adopt")
def edge_adopt(ctx: typer.Context, set_aside_unsent: SetAsideUnsent = False) -> None:
    """Hand the data folder over to --device-id, keeping the food in the fridge.

    The previous device's unsent events, telemetry, offers, orders, alerts, remote configuration and
    sequence counter move to a copy of the folder under `set-aside/`, which sends its events as that
    device when an agent starts on it; nothing is deleted. Refused while the previous device has
    unacknowledged events, unless --set-aside-unsent. Stop the agent first.
    """
    _hand_over(ctx, keep_food=True, set_aside_unsent=set_aside_unsent)


@edge_app.command("reset")
def edge_reset(ctx: typer.Context, set_aside_unsent: SetAsideUnsent = False) -> None:
    """Start the data folder empty for --device-id, keeping only the shelves' calibration.

    The food and the previous device's data move to a copy of the folder under `set-aside/`, which
    sends that device's unsent events when an agent starts on it; nothing is deleted. Under the
    folder's own device only the food goes: its unsent events and numbering stay. Refused while
    another device's events are unacknowledged, unless --set-aside-unsent. Stop the agent first.
    """
    _hand_over(ctx, keep_food=False, set_aside_unsent=set_aside_unsent)


def _hand_over(ctx: typer.Context, *, keep_food: bool, set_aside_unsent: bool) -> None:
    from edge.datafolder import hand_over
    from edge.errors import EdgeError
    from shared.clock import SystemClock

    settings = _edge_settings(ctx)
    try:
        done = hand_over(
            settings, SystemClock().now(), keep_food=keep_food, set_aside_unsent=set_aside_unsent
        )
    except EdgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in done.report():
        typer.echo(line)


sim_app = typer.Typer(invoke_without_command=True, no_args_is_help=False, rich_markup_mode="markdown")
app.add_typer(sim_app, name="sim")


@sim_app.callback(invoke_without_command=True)
def sim(
    ctx: typer.Context,
    fridges: Annotated[int, typer.Option(min=1, max=1000, help="Virtual fridges to run.")] = 3,
    rate: Annotated[float, typer.Option(min=0.01, max=1000, help="Scans per second per fridge.")] = 1.0,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Scan for this many seconds [default: until Ctrl-C]")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the virtual households.")] = 1,
    data_dir: Annotated[Path, typer.Option(help="Where the fridges keep their databases.")] = Path(
        "frigo-sim-data"
    ),
    mqtt_host: MqttHost = None,
    mqtt_port: MqttPort = None,
    mqtt_protocol: MqttProtocol = None,
) -> None:
    """Run virtual fridges (the real edge agent with a simulated scanner) against a broker, until
    Ctrl-C; or `run` a scenario of households on a virtual clock (`frigo sim run --help`).
    """
    if ctx.invoked_subcommand is not None:
        return
    from simulator.fleet import Fleet

    mqtt = _mqtt(MqttSettings(), mqtt_host, mqtt_port, mqtt_protocol)
    stop = _stop_on_signals()
    fleet = Fleet(fridges, mqtt, data_dir, rate=rate, seed=seed)
    fleet.start()
    typer.echo(f"{fridges} virtual fridges scanning against {mqtt.host}:{mqtt.port}; Ctrl-C stops them")
    stop.wait(duration)
    fleet.stop_scanning()
    drained = fleet.wait_drained(timeout=30)
    depth = sum(a.outbox_depth() for a in fleet.agents)
    fleet.stop()
    typer.echo(f"{fleet.scans} scans recorded; {depth} events still wait for the cloud's ack")
    raise typer.Exit(0 if drained else 1)


def _scenario_keys() -> str:
    from simulator.scenario import describe_keys

    return "**Scenario keys** (TOML; see simulator/scenario.py):\n\n" + describe_keys()


@sim_app.command("run", epilog=_scenario_keys())
def sim_run(
    scenario: Annotated[
        str,
        typer.Argument(
            help="A built-in scenario (week-in-a-household, demo, chaos, quarter-100, load-10k) or a "
            ".toml file."
        ),
    ],
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    days: Annotated[int | None, typer.Option(min=1, max=3650, help="Override the scenario's days.")] = None,
    households: Annotated[
        int | None, typer.Option(min=1, max=10_000, help="Override the scenario's households.")
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Virtual seconds per wall second, e.g. 3600 for an hour a second [default: as fast as "
            "the machine goes]",
        ),
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option(help="Where to write the report [default: ./frigo-sim-runs/SCENARIO-SEED]")
    ] = None,
    mqtt_host: MqttHost = None,
    mqtt_port: MqttPort = None,
    mqtt_protocol: MqttProtocol = None,
) -> None:
    """Run a scenario: households live their days with real fridges on a virtual clock, and a cloud
    worker stores what the fridges send.

    Without `--mqtt-host`/`--mqtt-port` it starts its own broker (Mosquitto if installed, else
    the embedded one) and a cloud on SQLite in the report folder. The report folder gets
    `summary.json` (households, actions, events recorded and stored, faults injected, packs bought,
    eaten, wasted and missing per household, the retailer's orders), `truth.csv` (what each
    household really ate, bought and wasted each day, per product), `orders.csv` and `plots/`
    (stock, stockouts, waste, orders, offers as PNG).

    A scenario with a `[load]` table (`load-10k`) runs a swarm of device connections instead, with
    a live display, and writes its figures to `summary.json`.
    """
    from simulator.errors import ScenarioError
    from simulator.scenario import load_scenario

    try:
        chosen = load_scenario(scenario)
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc), param_hint="SCENARIO") from None
    update = {k: v for k, v in (("seed", seed), ("days", days), ("households", households)) if v is not None}
    chosen = chosen.model_copy(update=update)
    folder = report_dir or Path("frigo-sim-runs") / f"{chosen.name}-{chosen.seed}"
    if chosen.load is not None:
        _run_load(chosen, folder)
    mqtt = None
    if mqtt_host is not None or mqtt_port is not None:
        mqtt = _mqtt(MqttSettings(), mqtt_host, mqtt_port, mqtt_protocol)
    _run_households(chosen, folder, mqtt, speed)


def _run_load(chosen: Scenario, folder: Path) -> NoReturn:
    """Run a load scenario's swarm with a live display; exit 1 on errors or devices left out."""
    from simulator.errors import ScenarioError
    from simulator.runner import run_load_scenario

    assert chosen.load is not None
    try:
        figures = run_load_scenario(chosen, folder, progress=True)
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc), param_hint="SCENARIO") from None
    errors = sum(figures["errors"].values())
    typer.echo(
        f"{figures['connected_max']:,} devices connected at most, {figures['published']:,} events sent "
        f"({figures['events_per_s_sent_after_ramp']} a second after the ramp), {errors} errors, "
        f"{figures['rss_mb_peak']} MB resident at most; report in {folder}"
    )
    raise typer.Exit(1 if errors or figures["connected_max"] < chosen.load.devices else 0)


def _run_households(chosen: Scenario, folder: Path, mqtt: MqttSettings | None, speed: float | None) -> None:
    """Run a scenario's households with a progress bar; exit 1 if an event was lost or doubled."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.errors import ScenarioError
    from simulator.runner import run_scenario

    events = 0
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days · {task.fields[events]} events"),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task(chosen.name, total=chosen.days, events=0)

        def on_day(day: DayReport) -> None:
            nonlocal events
            events += day.events
            progress.update(task, advance=1, events=events)

        try:
            summary = run_scenario(chosen, folder, mqtt=mqtt, speed=speed, on_day=on_day)
        except ScenarioError as exc:
            raise typer.BadParameter(str(exc), param_hint="SCENARIO") from None
    typer.echo(
        f"{chosen.households} household(s), {chosen.days} day(s) in {summary['wall_seconds']} s: "
        f"{summary['actions']} actions, {summary['events_recorded']} events recorded, "
        f"{summary['events_stored']} stored by the cloud, {summary['actions_refused']} refused; "
        f"report in {folder}"
    )
    # A refused scan is the fridge's inventory disagreeing with the household's (the weight shelf
    # guesses wrong now and then): reported, not a failure. A lost or doubled event is one.
    if summary["events_stored"] != summary["events_recorded"]:
        raise typer.Exit(1)


@contract_app.command("export")
def contract_export(
    directory: Annotated[Path, typer.Argument(help="Where to write the schema files.")] = Path(
        "docs/contract"
    ),
) -> None:
    """Write the JSON Schema of every payload to DIRECTORY."""
    from shared.contract import export

    for path in export(directory):
        typer.echo(f"wrote {path}")


def main() -> None:
    """Run the command line."""
    app()
