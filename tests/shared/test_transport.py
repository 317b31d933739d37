"""The MQTT transport: no password in clear text to another host, and refusals that end the attempts.

``check_transport`` is checked on its own and through `frigo edge` and `frigo cloud`, run as
processes. ``run_network_loop`` meets real brokers: the embedded amqtt broker, which speaks only
MQTT 3.1.1; a Mosquitto that refuses a bad password; a server that hangs up on CONNECT without an
answer (amqtt's behaviour before it learnt to refuse MQTT 5); and a port where nothing listens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from cloud.mqtt.pki import make_ca, make_server_cert
from shared.errors import BrokerRefused, InsecureTransport
from shared.mqtt import Backoff, MqttSettings, check_transport, create_client, run_network_loop
from tests.support.hangup import hanging_up_server
from tests.support.services import Mosquitto, free_port, require_mosquitto, require_tool

SECRET = SecretStr("s3cret-for-this-test")
# Long enough for any refusal below (they come in well under 3 s); a test fails rather than hangs.
REFUSAL_WAIT_S = 10.0


# check_transport --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]", "::ffff:127.0.0.1"]
)
def test_a_password_to_this_machine_needs_no_tls(host: str) -> None:
    check_transport(MqttSettings(host=host, username="kitchen", password=SECRET))


@pytest.mark.parametrize(
    "host", ["mqtt.example.org", "192.168.1.10", "10.0.0.2", "::ffff:192.168.1.1", "0.0.0.0", "fe80::1"]
)
def test_a_password_in_clear_text_to_another_host_is_refused(host: str) -> None:
    settings = MqttSettings(host=host, port=1883, username="kitchen", password=SECRET)

    with pytest.raises(InsecureTransport) as refused:
        check_transport(settings)

    message = str(refused.value)
    assert f"refusing to send the MQTT password of 'kitchen' to {host}:1883 without TLS" in message
    assert "cross the network in clear text" in message
    assert "Set mqtt.tls_ca_file to the broker's CA file to turn TLS on" in message
    assert "pass --insecure (setting mqtt.insecure = true)" in message
    assert SECRET.get_secret_value() not in message


def test_tls_makes_a_remote_password_fine(tmp_path: Path) -> None:
    check_transport(MqttSettings(host="mqtt.example.org", password=SECRET, tls_ca_file=tmp_path / "ca.pem"))


def test_insecure_makes_a_remote_password_in_clear_text_fine() -> None:
    check_transport(MqttSettings(host="mqtt.example.org", password=SECRET, insecure=True))


@pytest.mark.parametrize("password", [None, ""])
def test_no_password_sends_no_secret(password: str | None) -> None:
    secret = None if password is None else SecretStr(password)
    check_transport(MqttSettings(host="mqtt.example.org", username="kitchen", password=secret))


def frigo(*args: str, cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run `python -m frigo ARGS` with ``env`` as its only FRIGO_* variables."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FRIGO_")} | env
    return subprocess.run(
        [sys.executable, "-m", "frigo", *args],
        cwd=cwd,
        env=environ | {"COLUMNS": "200", "NO_COLOR": "1"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_frigo_edge_refuses_a_password_in_clear_text_to_another_host(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = frigo(
        *("edge", "--device-id", "kitchen", "--data-dir", str(data), "--mqtt-host", "mqtt.example.org"),
        cwd=tmp_path,
        env={"FRIGO_EDGE_MQTT__PASSWORD": SECRET.get_secret_value()},
        stdin="+4006381333931\n",
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: refusing to send the MQTT password to mqtt.example.org:1883 without TLS: it "
        "would cross the network in clear text, readable by anyone on the way. Set mqtt.tls_ca_file to "
        "the broker's CA file to turn TLS on, or, on a network you trust, pass --insecure (setting "
        "mqtt.insecure = true)"
    ]
    assert not data.exists()  # refused before anything was recorded


@pytest.mark.parametrize(
    ("option", "env"),
    [
        pytest.param(["--insecure"], {}, id="option"),
        pytest.param([], {"FRIGO_EDGE_MQTT__INSECURE": "true"}, id="environment"),
    ],
)
def test_frigo_edge_insecure_lets_the_password_through(
    tmp_path: Path, option: list[str], env: dict[str, str]
) -> None:
    # 0.0.0.0 is not a loopback address, but on Linux connecting to it reaches this machine, where
    # nothing listens on the port: the agent starts, is refused at once, and ends with its input.
    result = frigo(
        *("edge", "--device-id", "kitchen", "--data-dir", str(tmp_path / "data")),
        *("--mqtt-host", "0.0.0.0", "--mqtt-port", str(free_port()), *option),
        cwd=tmp_path,
        env={"FRIGO_EDGE_MQTT__PASSWORD": SECRET.get_secret_value(), **env},
    )

    assert (result.returncode, result.stderr) == (0, "")


def test_frigo_cloud_refuses_a_password_in_clear_text_to_another_host(tmp_path: Path) -> None:
    database = tmp_path / "cloud.db"
    result = frigo(
        *("cloud", "--database-url", f"sqlite:///{database}", "--mqtt-host", "10.1.2.3", "--http-port", "0"),
        cwd=tmp_path,
        env={"FRIGO_CLOUD_MQTT__USERNAME": "frigo-cloud", "FRIGO_CLOUD_MQTT__PASSWORD": "cloud-secret"},
    )

    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: refusing to send the MQTT password of 'frigo-cloud' to 10.1.2.3:1883 without TLS"
    )
    assert "pass --insecure" in result.stderr
    assert "Traceback" not in result.stderr
    assert not database.exists()  # refused before the worker touched anything


def test_frigo_cloud_has_an_insecure_option(tmp_path: Path) -> None:
    result = frigo("cloud", "--help", cwd=tmp_path, env={})

    assert result.returncode == 0
    assert "--insecure" in result.stdout


# run_network_loop's refusals ------------------------------------------------------------------


@contextmanager
def network_loop(settings: MqttSettings, client_id: str = "kitchen") -> Iterator[list[BrokerRefused]]:
    """Run the network loop on its own thread; yield the refusals it hands over."""
    refusals: list[BrokerRefused] = []
    refused = threading.Event()

    def on_refused(error: BrokerRefused) -> None:
        refusals.append(error)
        refused.set()

    client, properties = create_client(settings, client_id, persistent=True)
    client.on_connect = lambda *_args: None
    stop = threading.Event()
    thread = threading.Thread(
        target=run_network_loop,
        args=(client, settings, properties),
        kwargs={"persistent": True, "stop": stop, "on_refused": on_refused, "backoff": Backoff(0.2, 1)},
        daemon=True,
    )
    thread.start()
    try:
        yield refusals
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def wait_for(refusals: list[BrokerRefused], timeout: float = REFUSAL_WAIT_S) -> BrokerRefused:
    deadline = time.monotonic() + timeout
    while not refusals:
        assert time.monotonic() < deadline, "no refusal"
        time.sleep(0.01)
    return refusals[0]


def test_mqtt_5_to_the_embedded_broker_is_refused_for_its_protocol(amqtt_broker: MqttSettings) -> None:
    settings = amqtt_broker.model_copy(update={"protocol": "5"})
    started = time.monotonic()

    with network_loop(settings) as refusals:
        refusal = wait_for(refusals)

    assert time.monotonic() - started < 3
    assert refusal.kind == "protocol"
    assert str(refusal).startswith(f"the broker at 127.0.0.1:{settings.port} does not speak MQTT 5 (")
    assert 'use --mqtt-protocol 3.1.1 (setting mqtt.protocol = "3.1.1"' in str(refusal)
    assert len(refusals) == 1


def test_a_broker_hanging_up_on_mqtt_5_without_an_answer_is_taken_for_one_without_it() -> None:
    with hanging_up_server() as (port, received):
        settings = MqttSettings(port=port, protocol="5")
        started = time.monotonic()
        with network_loop(settings) as refusals:
            refusal = wait_for(refusals)
        elapsed = time.monotonic() - started

    assert elapsed < 3
    assert refusal.kind == "protocol"
    assert "it closed the connection 2 times right after CONNECT, without an answer" in str(refusal)
    assert "use --mqtt-protocol 3.1.1" in str(refusal)
    # Two MQTT 5 CONNECTs, then the TLS handshake that tells a TLS port apart, which this is not.
    assert len(received) == 3
    assert all(packet[0] == 0x10 and b"MQTT\x05" in packet for packet in received[:2])
    assert received[2][0] == 0x16  # a TLS handshake record


def test_a_broker_hanging_up_on_mqtt_3_is_a_network_error_tried_again() -> None:
    with (
        hanging_up_server() as (port, received),
        network_loop(MqttSettings(port=port, protocol="3.1.1")) as refusals,
    ):
        time.sleep(2)
        assert refusals == []
    assert len(received) >= 3  # it kept trying


@pytest.mark.mosquitto
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_plain_mqtt_to_a_tls_port_is_told_to_turn_tls_on(tmp_path: Path, protocol: str) -> None:
    # A TLS port hangs up on plain MQTT just as a broker without MQTT 5 may: the handshake tells.
    ca = make_ca(tmp_path, "frigo-test-ca", days=2)
    server = make_server_cert(tmp_path, tmp_path, ["127.0.0.1"], days=2)
    broker = Mosquitto(
        require_mosquitto(),
        tmp_path,
        listener_options=[f"cafile {ca.cert}", f"certfile {server.cert}", f"keyfile {server.key}"],
    )
    broker.start()
    try:
        with network_loop(broker.mqtt(protocol)) as refusals:
            refusal = wait_for(refusals)
    finally:
        broker.stop()

    assert refusal.kind == "tls"
    assert str(refusal) == (
        f"the broker at 127.0.0.1:{broker.port} expects TLS (it closed the connection 2 times right after "
        "CONNECT, without an answer, and answers a TLS handshake); set mqtt.tls_ca_file to the broker's CA "
        "file to turn TLS on"
    )


def test_a_broker_that_is_down_is_tried_again_and_never_refused() -> None:
    port = free_port()
    with network_loop(MqttSettings(port=port)) as refusals:
        time.sleep(2)
    assert refusals == []


def test_a_bad_password_is_refused_for_its_login(tmp_path: Path) -> None:
    passwords = tmp_path / "passwd"
    tool = require_tool("mosquitto_passwd")
    subprocess.run([tool, "-b", "-c", str(passwords), "kitchen", "right"], check=True, timeout=30)
    broker = Mosquitto(require_mosquitto(), tmp_path, anonymous=False, password_file=passwords)
    broker.start()
    try:
        for protocol in ("5", "3.1.1"):
            settings = broker.mqtt(protocol).model_copy(
                update={"username": "kitchen", "password": SecretStr("wrong")}
            )
            with network_loop(settings) as refusals:
                refusal = wait_for(refusals)
            assert refusal.kind == "login", protocol
            assert str(refusal).startswith(
                f"the broker at 127.0.0.1:{broker.port} refused the login of 'kitchen': it refused the "
                "CONNECT: "
            )
            assert "check mqtt.username and mqtt.password" in str(refusal)
    finally:
        broker.stop()


def test_without_a_refusal_handler_a_refusal_is_logged_and_tried_again(
    amqtt_broker: MqttSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = amqtt_broker.model_copy(update={"protocol": "5"})
    client, properties = create_client(settings, "kitchen", persistent=False)
    stop = threading.Event()
    thread = threading.Thread(
        target=run_network_loop,
        args=(client, settings, properties),
        kwargs={"persistent": False, "stop": stop, "backoff": Backoff(0.1, 0.2)},
        daemon=True,
    )
    thread.start()
    time.sleep(1.0)
    stop.set()
    thread.join(10)

    refusals = [r for r in caplog.records if "does not speak MQTT 5" in r.getMessage()]
    assert len(refusals) >= 2, "tried once and gave up"
