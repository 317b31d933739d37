"""Load mode at scale: N fridge connections from one process against Mosquitto (issue 5, item 7).

The same run as ``frigo sim run load-10k`` (see ``simulator/load/run.py``), with its knobs as
options, printing one JSON object for docs/BENCHMARKS.md.

    .venv/bin/python -m bench.load_swarm [--devices 10000] [--rate 2000] [--duration 60]
        [--connect-rate 1000] [--cloud] [--progress]
"""

from __future__ import annotations

import argparse
import json
import sys

from simulator.errors import ScenarioError
from simulator.load.run import run_load
from simulator.load.settings import LoadSettings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2000, help="events/s for the whole swarm")
    parser.add_argument("--duration", type=float, default=60, help="seconds of sending, ramp included")
    parser.add_argument("--connect-rate", type=float, default=1000, help="new connections per second")
    parser.add_argument("--cloud", action="store_true", help="run a cloud worker that stores and acks")
    parser.add_argument("--progress", action="store_true", help="live display on stderr")
    args = parser.parse_args()
    settings = LoadSettings(
        devices=args.devices,
        rate=args.rate,
        duration_s=args.duration,
        connect_rate=args.connect_rate,
        cloud=args.cloud,
    )
    try:
        results = run_load(settings, progress=args.progress)
    except ScenarioError as exc:
        sys.exit(str(exc))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
