"""`python -m edge`: the agent as the Pi's service runs it, without the full command line.

Same behaviour and options as `frigo edge`; it skips the command-line framework to stay inside the
Pi's memory budget. `frigo edge --help` documents everything.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge.errors import ConfigError
from edge.service import run
from edge.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load settings and run the agent; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m edge", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file [env: FRIGO_EDGE_CONFIG]")
    parser.add_argument("--device-id", help="this fridge's id [env: FRIGO_EDGE_DEVICE_ID]")
    parser.add_argument("--data-dir", type=Path, help="local database folder [env: FRIGO_EDGE_DATA_DIR]")
    parser.add_argument("--mqtt-host")
    parser.add_argument("--mqtt-port", type=int)
    parser.add_argument("--mqtt-protocol", choices=["5", "3.1.1"])
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a password over plaintext MQTT to another host [env: FRIGO_EDGE_MQTT__INSECURE]",
    )
    parser.add_argument("--drain-timeout", type=float, help="at end of stdin, wait at most this for acks")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    mqtt: dict[str, object] = {
        k: v
        for k, v in (("host", args.mqtt_host), ("port", args.mqtt_port), ("protocol", args.mqtt_protocol))
        if v
    }
    if args.insecure:
        mqtt["insecure"] = True
    try:
        settings = load_settings(
            args.config, device_id=args.device_id, data_dir=args.data_dir, mqtt=mqtt or None
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(settings, args.drain_timeout)


if __name__ == "__main__":
    sys.exit(main())
