"""The swarm's live display on a terminal: connected devices, events/s, acknowledgements and errors."""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.live import Live
from rich.table import Table

from simulator.load.swarm import Swarm, SwarmStats


def progress_table(stats: SwarmStats, events_per_s: float) -> Table:
    """Return a one-row table of the swarm's state for a live display."""
    table = Table(title=f"Swarm: {stats.devices} devices, {stats.elapsed_s:.0f} s", expand=False)
    for column in ("connected", "events/s", "published", "PUBACK'd", "cloud acks", "skipped", "errors"):
        table.add_column(column, justify="right")
    errors = ", ".join(f"{kind} {n}" for kind, n in sorted(stats.errors.items())) or "0"
    table.add_row(
        f"{stats.connected:,}",
        f"{events_per_s:,.0f}",
        f"{stats.published:,}",
        f"{stats.pubacked:,}",
        f"{stats.acked:,}",
        f"{stats.skipped:,}",
        errors,
    )
    return table


async def show_progress(swarm: Swarm, console: Console, refresh_s: float = 0.5) -> None:
    """Show the swarm's connected devices, events/s and errors live until it is done."""
    last = swarm.snapshot()
    with Live(progress_table(last, 0.0), console=console, auto_refresh=False) as live:
        while not swarm.done:
            await asyncio.sleep(refresh_s)
            now = swarm.snapshot()
            interval = now.elapsed_s - last.elapsed_s
            rate = (now.published - last.published) / interval if interval > 0 else 0.0
            live.update(progress_table(now, rate), refresh=True)
            last = now
