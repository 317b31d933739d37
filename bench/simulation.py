"""A scenario's wall time: households on real fridges, a real Mosquitto and a cloud worker.

Runs ``frigo sim run``'s code (``simulator.runner.run_scenario``) against a Mosquitto of its own
(rather than the embedded amqtt broker) and prints the run's summary figures as one JSON object.

    .venv/bin/python -m bench.simulation [--scenario quarter-100] [--days N] [--households N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from simulator.runner import run_scenario
from simulator.scenario import load_scenario
from tests.support.services import Mosquitto, mosquitto_binary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="quarter-100")
    parser.add_argument("--days", type=int)
    parser.add_argument("--households", type=int)
    args = parser.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    scenario = load_scenario(args.scenario)
    update = {k: v for k, v in (("days", args.days), ("households", args.households)) if v is not None}
    scenario = scenario.model_copy(update=update)
    with tempfile.TemporaryDirectory(prefix="frigo-bench-sim-") as tmp:
        (Path(tmp) / "mosquitto").mkdir()
        broker = Mosquitto(binary, Path(tmp) / "mosquitto")
        broker.start()
        try:
            summary = run_scenario(scenario, Path(tmp) / "report", mqtt=broker.mqtt())
        finally:
            broker.stop()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "commit": commit,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "scenario": scenario.name,
                "households": scenario.households,
                "days": scenario.days,
                "wall_seconds": summary["wall_seconds"],
                "actions": summary["actions"],
                "events_recorded": summary["events_recorded"],
                "events_stored": summary["events_stored"],
                "actions_refused": summary["actions_refused"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
