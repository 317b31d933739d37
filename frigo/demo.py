"""`frigo demo`: the whole loop in one process on embedded defaults.

An embedded MQTT broker (amqtt), the cloud on SQLite, and a fleet of virtual fridges running the
real edge agent; a live summary until Ctrl-C, SIGTERM or the end of ``duration``. Stopping, the
fridges deliver what they recorded, the cloud commits and acknowledges it, and the temporary data
folder (the operator's token in it) is removed.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine, func, select

from cloud.db.tables import DEVICES, EVENTS
from cloud.mqtt.broker import EmbeddedBroker
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared.mqtt import MqttSettings
from simulator.fleet import Fleet

# How often the summary refreshes.
REFRESH_S = 1.0
# The operator token the demo issues, in its data folder.
ADMIN_TOKEN_FILE = "admin-token"
# How long stopping waits for the cloud to acknowledge what the fridges recorded.
DRAIN_TIMEOUT_S = 15.0


def port_or_free(host: str, preferred: int) -> int:
    """Return ``preferred`` if it can be bound on ``host``, else a free port the OS picks."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError(f"no free port on {host}")


@contextmanager
def _data_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="frigo-demo-") as tmp:
        yield Path(tmp)


def _other_devices(engine: Engine, fridges: frozenset[str]) -> tuple[int, int]:
    """Return how many events the cloud stored from devices not among ``fridges``, and how many
    such devices it enrolled (anyone reaching the broker may publish as a made-up device)."""
    with engine.connect() as connection:
        events = connection.execute(
            select(func.count()).select_from(EVENTS).where(EVENTS.c.device_id.not_in(fridges))
        ).scalar_one()
        devices = connection.execute(
            select(func.count()).select_from(DEVICES).where(DEVICES.c.id.not_in(fridges))
        ).scalar_one()
    return int(events), int(devices)


def _others_line(events: int, devices: int) -> str:
    return (
        f"other devices: {events} event{'' if events == 1 else 's'} from {devices} "
        f"device{'' if devices == 1 else 's'} (not the demo's fridges)"
    )


def _summary(
    client: httpx.Client, rate: float, elapsed: float, fridges: frozenset[str], others: tuple[int, int]
) -> Group:
    stats = client.get("/stats").json()
    header = Text.assemble(
        ("events/s ", "bold"),
        f"{rate:7.1f}   ",
        ("stored ", "bold"),
        f"{stats['stored']}   ",
        ("duplicates ", "bold"),
        f"{stats['duplicates']}   ",
        ("rejected ", "bold"),
        f"{sum(stats['rejected'].values())}   ",
        ("running ", "bold"),
        f"{elapsed:.0f} s",
    )
    table = Table(title="Inventory per household (from the cloud's API)", expand=False)
    table.add_column("household")
    table.add_column("fridge")
    table.add_column("events", justify="right")
    table.add_column("items", justify="right")
    table.add_column("top products (code × quantity)")
    for household in client.get("/households").json():
        if not any(d["id"] in fridges for d in household["devices"]):
            continue  # counted apart, on the line below the table
        inventory = client.get(f"/households/{household['id']}/inventory").json()
        items = sorted(inventory["items"], key=lambda i: -i["quantity"])
        top = ", ".join(f"{i['code']}×{i['quantity']}" for i in items[:3])
        devices = ", ".join(
            f"{d['id']} ({'online' if d['online'] else 'offline'})" for d in household["devices"]
        )
        table.add_row(
            household["id"],
            devices,
            str(inventory["event_count"]),
            str(sum(i["quantity"] for i in items)),
            top,
        )
    if others[1]:
        return Group(header, table, Text(_others_line(*others)))
    return Group(header, table)


def run_demo(
    *,
    fridges: int = 3,
    duration: float | None = None,
    rate: float = 2.0,
    mqtt_port: int = 1884,
    http_port: int = 8000,
    data_dir: Path | None = None,
    seed: int = 1,
    console: Console | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run broker, cloud and fleet until ``stop`` is set (by SIGINT or SIGTERM in `frigo demo`),
    Ctrl-C or ``duration`` seconds; then drain, stop cleanly and print the final count."""
    console = console or Console()
    stop = stop or threading.Event()
    host = "127.0.0.1"
    # The folder is entered first so that it goes last: the cloud and the fridges write in it
    # until they have stopped.
    with _data_dir(data_dir) as directory, ExitStack() as stack:
        port = port_or_free(host, mqtt_port)
        if port != mqtt_port:
            console.print(f"[yellow]port {mqtt_port} is busy; the embedded broker uses {port}[/]")
        broker = EmbeddedBroker(host, port)
        broker.start()
        stack.callback(broker.stop)
        # amqtt speaks MQTT 3.1.1 only.
        mqtt = MqttSettings(host=host, port=port, protocol="3.1.1")

        api_port = port_or_free(host, http_port)
        if api_port != http_port:
            console.print(f"[yellow]port {http_port} is busy; the API uses {api_port}[/]")
        cloud = CloudService(
            CloudSettings(
                database_url=f"sqlite:///{directory / 'cloud.db'}",
                mqtt=mqtt,
                http_host=host,
                http_port=api_port,
                # The demo's broker is anonymous: its virtual fridges enrol with their first event.
                auto_enroll=True,
            )
        )
        cloud.start()
        stack.callback(cloud.stop)
        # An operator's token for the demo's own view and for people trying the API: kept in a
        # file readable by its owner only, as a password would be.
        token = _admin_token(cloud, directory / ADMIN_TOKEN_FILE)

        fleet = Fleet(fridges, mqtt, directory / "fridges", rate=rate, seed=seed)
        fleet.start()
        stack.callback(fleet.stop)

        console.print(f"Embedded MQTT broker on {host}:{port} (MQTT 3.1.1)")
        console.print(f"Cloud API on {cloud.url} — API docs: [bold]{cloud.url}/docs[/]", soft_wrap=True)
        console.print(
            f"An operator's API token is in {directory / ADMIN_TOKEN_FILE}: "
            f'curl -H "Authorization: Bearer $(cat {directory / ADMIN_TOKEN_FILE})" {cloud.url}/households',
            soft_wrap=True,
        )
        console.print(f"{fridges} virtual fridges scanning {rate:g} times/s each; data in {directory}")
        console.print("Press Ctrl-C to stop." if duration is None else f"Running for {duration:g} s.")
        ours = frozenset(agent.device_id for agent in fleet.agents)
        _show_live(console, cloud, duration, token, stop, ours)
        console.print("Stopping: the fridges deliver what they recorded...")
        fleet.stop_scanning()
        drained = fleet.wait_drained(timeout=DRAIN_TIMEOUT_S)
        stack.close()  # the fleet, the cloud (it commits what it holds) and the broker stop
        stats = cloud.ingestor.stats
        others = _other_devices(cloud.engine, ours)
        console.print(
            f"Done: {fleet.scans} scans, {stats.stored} events stored, {stats.duplicates} duplicates "
            f"dropped, {stats.rejected_total} rejected; "
            + ("every event acknowledged." if drained else "some events stay in the fridges' outboxes."),
            soft_wrap=True,
        )
        if others[1]:
            console.print(_others_line(*others), soft_wrap=True)
        cloud.engine.dispose()


def _admin_token(cloud: CloudService, path: Path) -> str:
    """Issue an operator's token and write it to ``path`` (mode 600); return it."""
    from datetime import UTC, datetime

    from sqlmodel import Session

    from cloud.identity.tokens import issue_token
    from shared.files import replace_file

    with Session(cloud.engine) as session:
        token = issue_token(session, "admin", None, datetime.now(UTC))
        session.commit()
    path.touch(mode=0o600)  # replace_file keeps an existing file's mode: never readable by others
    replace_file(path, token + "\n")
    return token


def _show_live(
    console: Console,
    cloud: CloudService,
    duration: float | None,
    token: str,
    stop: threading.Event,
    fridges: frozenset[str],
) -> None:
    """Show the summary every REFRESH_S until ``stop`` is set, Ctrl-C or ``duration`` seconds."""
    started = time.monotonic()
    last_stored, last_time = 0, started
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=cloud.url, timeout=5, headers=headers) as client:
        live = Live(console=console, auto_refresh=False) if console.is_terminal else None
        try:
            if live is not None:
                live.start()
            ticks = 0
            while duration is None or time.monotonic() - started < duration:
                left = REFRESH_S if duration is None else duration - (time.monotonic() - started)
                if stop.wait(min(REFRESH_S, max(left, 0))):
                    break
                ticks += 1
                now = time.monotonic()
                stored = cloud.ingestor.stats.stored
                rate = (stored - last_stored) / (now - last_time)
                last_stored, last_time = stored, now
                view = _summary(client, rate, now - started, fridges, _other_devices(cloud.engine, fridges))
                if live is not None:
                    live.update(view, refresh=True)
                elif ticks % 5 == 0:  # not a terminal: a summary every 5 s
                    console.print(view)
        except KeyboardInterrupt:
            pass  # run_demo called without signal handlers (from Python): Ctrl-C ends the view
        finally:
            if live is not None:
                live.stop()
