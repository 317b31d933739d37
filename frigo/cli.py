"""The `frigo` command: one entry point for every component."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from shared.mqtt import MqttSettings

app = typer.Typer(
    help="Frigo: open-source software for smart fridges. Run `frigo demo` to see the whole loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
contract_app = typer.Typer(help="The wire contract between fridges and cloud.", no_args_is_help=True)
app.add_typer(contract_app, name="contract")


class Protocol(StrEnum):
    """MQTT protocol versions."""

    V5 = "5"
    V311 = "3.1.1"


MqttHost = Annotated[str | None, typer.Option(help="MQTT broker host [default: from settings, 127.0.0.1]")]
MqttPort = Annotated[int | None, typer.Option(help="MQTT broker port [default: from settings, 1883]")]
MqttProtocol = Annotated[
    Protocol | None, typer.Option(help="MQTT version; the embedded broker needs 3.1.1 [default: 5]")
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
    """Return an event set by SIGINT or SIGTERM."""
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
    from frigo.demo import run_demo

    run_demo(
        fridges=fridges,
        duration=duration,
        rate=rate,
        mqtt_port=mqtt_port,
        http_port=http_port,
        data_dir=data_dir,
        seed=seed,
    )


@app.command()
def broker(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 1884,
) -> None:
    """Run the embedded MQTT broker (amqtt, MQTT 3.1.1) until Ctrl-C or SIGTERM."""
    from cloud.broker import EmbeddedBroker

    stop = _stop_on_signals()
    embedded = EmbeddedBroker(host, port)
    embedded.start()
    typer.echo(f"embedded MQTT broker listening on {host}:{port} (MQTT 3.1.1); Ctrl-C stops it")
    stop.wait()
    embedded.stop()


@app.command()
def cloud(
    database_url: Annotated[
        str | None, typer.Option(help="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    ] = None,
    mqtt_host: MqttHost = None,
    mqtt_port: MqttPort = None,
    mqtt_protocol: MqttProtocol = None,
    http_host: Annotated[str | None, typer.Option(help="API address [default: 127.0.0.1]")] = None,
    http_port: Annotated[int | None, typer.Option(help="API port [default: 8000]")] = None,
) -> None:
    """Run a cloud worker: ingest the fleet's events and serve the API, until Ctrl-C or SIGTERM.

    Every option can also come from the environment: FRIGO_CLOUD_DATABASE_URL, FRIGO_CLOUD_MQTT__HOST, ...
    """
    from cloud.service import CloudService
    from cloud.settings import CloudSettings

    settings = CloudSettings()
    update: dict[str, object] = {"mqtt": _mqtt(settings.mqtt, mqtt_host, mqtt_port, mqtt_protocol)}
    for key, value in (("database_url", database_url), ("http_host", http_host), ("http_port", http_port)):
        if value is not None:
            update[key] = value
    settings = CloudSettings.model_validate(settings.model_dump() | update)
    stop = _stop_on_signals()
    service = CloudService(settings)
    service.start()
    typer.echo(f"cloud worker running; API docs at {service.url}/docs")
    stop.wait()
    service.stop()


@app.command()
def edge(
    device_id: Annotated[
        str | None, typer.Option(help="This fridge's id [env: FRIGO_EDGE_DEVICE_ID]")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Local database folder [env: FRIGO_EDGE_DATA_DIR]")
    ] = None,
    mqtt_host: MqttHost = None,
    mqtt_port: MqttPort = None,
    mqtt_protocol: MqttProtocol = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(help="At end of input, wait at most this long for acks [default: no limit]"),
    ] = None,
) -> None:
    """Run the fridge agent, reading barcode-scanner lines from standard input.

    One line per scan: CODE or +CODE puts one unit in, -CODE takes one out (CODE: 1-48 letters or
    digits). Blank lines and lines starting with # are ignored. Each recorded scan prints
    "ok seq=N ..."; at end of input the agent waits until the cloud has acknowledged every event.
    """
    from pydantic import ValidationError

    from edge.agent import Agent, run_stdin
    from edge.errors import EdgeError
    from edge.settings import EdgeSettings

    overrides: dict[str, object] = {}
    if device_id is not None:
        overrides["device_id"] = device_id
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        settings = EdgeSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        typer.echo(
            f"error: invalid edge settings (set --device-id or FRIGO_EDGE_DEVICE_ID):\n{exc}", err=True
        )
        raise typer.Exit(2) from None
    settings = settings.model_copy(update={"mqtt": _mqtt(settings.mqtt, mqtt_host, mqtt_port, mqtt_protocol)})

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        agent = Agent(settings)
    except EdgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    agent.start()
    code = 0
    try:
        code = run_stdin(agent, drain_timeout=drain_timeout)
    except KeyboardInterrupt:
        typer.echo(f"stopping; {agent.outbox_depth()} events wait in the outbox for the next start", err=True)
    finally:
        agent.stop()
    raise typer.Exit(code)


@app.command()
def sim(
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
    """Run virtual fridges (the real edge agent with a simulated scanner) against a broker."""
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
