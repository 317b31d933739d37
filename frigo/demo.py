"""`frigo demo`: the whole loop in one process on embedded defaults.

An embedded MQTT broker (amqtt), the cloud on SQLite, and a fleet of virtual fridges running the
real edge agent; a live summary until Ctrl-C or the end of ``duration``.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cloud.mqtt.broker import EmbeddedBroker
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared.mqtt import MqttSettings
from simulator.fleet import Fleet

# How often the summary refreshes.
REFRESH_S = 1.0
# The operator token the demo issues, in its data folder.
ADMIN_TOKEN_FILE = "admin-token"


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


def _summary(client: httpx.Client, rate: float, elapsed: float) -> Group:
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
) -> None:
    """Run broker, cloud and fleet until Ctrl-C or ``duration`` seconds; then stop cleanly."""
    console = console or Console()
    host = "127.0.0.1"
    with ExitStack() as stack, _data_dir(data_dir) as directory:
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
        _show_live(console, cloud.url, cloud, duration, token)
        console.print("Stopping: the fridges deliver what they recorded...")
        fleet.stop_scanning()
        drained = fleet.wait_drained(timeout=15)
        stats = cloud.ingestor.stats
        console.print(
            f"Done: {fleet.scans} scans, {stats.stored} events stored, {stats.duplicates} duplicates "
            f"dropped, {stats.rejected_total} rejected; "
            + ("every event acknowledged." if drained else "some events stay in the fridges' outboxes."),
            soft_wrap=True,
        )


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


def _show_live(console: Console, url: str, cloud: CloudService, duration: float | None, token: str) -> None:
    started = time.monotonic()
    last_stored, last_time = 0, started
    with httpx.Client(base_url=url, timeout=5, headers={"Authorization": f"Bearer {token}"}) as client:
        live = Live(console=console, auto_refresh=False) if console.is_terminal else None
        try:
            if live is not None:
                live.start()
            ticks = 0
            while duration is None or time.monotonic() - started < duration:
                time.sleep(REFRESH_S)
                ticks += 1
                now = time.monotonic()
                stored = cloud.ingestor.stats.stored
                rate = (stored - last_stored) / (now - last_time)
                last_stored, last_time = stored, now
                view = _summary(client, rate, now - started)
                if live is not None:
                    live.update(view, refresh=True)
                elif ticks % 5 == 0:  # not a terminal: a summary every 5 s
                    console.print(view)
        except KeyboardInterrupt:
            pass
        finally:
            if live is not None:
                live.stop()
