"""A Mosquitto process of one's own: on a free loopback port, with a generated configuration.

The simulator runs its scenarios on one (broker restarts included), and the tests and benchmarks
start one each, so that nothing depends on a broker's state left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.mqtt import MqttSettings


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s") from None
            time.sleep(0.02)


def mosquitto_binary() -> str | None:
    """Return the path of the mosquitto binary, if installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


@dataclass
class Mosquitto:
    """A Mosquitto process of the test's own, with a generated config on a free port."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    listener_options: list[str] = field(default_factory=list)  # e.g. TLS files, right after `listener`
    anonymous: bool = True
    password_file: Path | None = None
    acl_file: Path | None = None
    # 0 is no limit, which the default of 1000 per client is not (it silently drops messages for a
    # subscriber that falls behind). But Mosquitto 2.0.11 with 0 also disconnects a client after
    # a QoS 1 publish the ACL denies: tests of ACLs set a large number instead.
    max_queued_messages: int = 0
    # Keep sessions, subscriptions and queued messages across a clean restart, as in production.
    persistence: bool = False

    def config(self) -> str:
        """Return the broker's configuration text.

        With authentication it has the settings README's sample ``mosquitto.conf`` asks for: the
        username as client id on the listener (an anonymous client has no username to use) and a
        packet size limit.
        """
        from cloud.identity.devices import LISTENER_OPTIONS, MAX_PACKET_BYTES  # the cloud's own values

        return "\n".join(
            [
                # As root, Mosquitto drops to the `mosquitto` user, which cannot read the test's
                # private files (pytest's tmp dirs are 0700): keep root for this throwaway broker.
                *(["user root"] if os.geteuid() == 0 else []),
                f"listener {self.port} 127.0.0.1",
                *self.listener_options,
                *([] if self.anonymous else LISTENER_OPTIONS),
                f"max_packet_size {MAX_PACKET_BYTES}",
                f"allow_anonymous {'true' if self.anonymous else 'false'}",
                *([f"password_file {self.password_file}"] if self.password_file else []),
                *([f"acl_file {self.acl_file}"] if self.acl_file else []),
                f"max_queued_messages {self.max_queued_messages}",
                *(
                    ["persistence true", f"persistence_location {self.directory}/"]
                    if self.persistence
                    else ["persistence false"]
                ),
                f"log_dest file {self.directory / 'mosquitto.log'}",
                "log_type error",
                "log_type warning",
                "",
            ]
        )

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        conf = self.directory / "mosquitto.conf"
        conf.write_text(self.config())
        self.process = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the broker with ``sig`` (SIGKILL to simulate a crash) and wait for it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def reload(self) -> None:
        """Make the broker reread its password and ACL files (SIGHUP), as `systemctl reload` does."""
        assert self.process is not None, "the broker is not running"
        self.process.send_signal(signal.SIGHUP)

    def restart(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop and start again on the same port."""
        self.stop(sig)
        self.start()

    def mqtt(self, protocol: str = "5") -> MqttSettings:
        """Return client settings for this broker."""
        return MqttSettings.model_validate({"host": "127.0.0.1", "port": self.port, "protocol": protocol})
