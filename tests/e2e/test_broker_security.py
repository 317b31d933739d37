"""Broker security with provisioned credentials: a real Mosquitto with the files from
``cloud.identity.devices.write_mosquitto_files``, and the embedded amqtt broker with ``cloud.mqtt.auth``.

A device may publish only as itself and read only what is meant for it; the cloud user reads every
device's uplink and writes every device's downlink; connections without a valid, unrevoked
credential, and plaintext on the TLS port, are refused; no device can knock the cloud or another
device off by connecting under its client id, with README's sample ``mosquitto.conf`` too.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db.engine import create_db_engine, create_schema
from cloud.identity import devices
from cloud.mqtt.auth import BrokerAuth
from cloud.mqtt.broker import EmbeddedBroker
from cloud.mqtt.pki import make_ca, make_server_cert
from shared import topics
from shared.mqtt import release
from tests.support.services import Mosquitto, free_port, require_mosquitto

A, B, C = "fridge-a", "fridge-b", "fridge-c"
CLOUD = "frigo-cloud"
# How long a client waits for what it expects; nothing waits this long unless something is wrong.
WAIT_S = 15.0
# Forged messages device A sends to device B's topics: enough to catch a rule that lets some through.
FORGED = {"mosquitto": 1000, "amqtt": 200}
# How long to keep watching for a message that must not come, once a later one has arrived.
SETTLE_S = 1.0
# Not 0 (no limit): Mosquitto 2.0.11 with 0 disconnects a client after a QoS 1 publish the ACL denies.
MAX_QUEUED = 1_000_000
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class SecuredBroker:
    """A running broker that knows devices A, B and C and the cloud user, and nothing else."""

    kind: str
    port: int
    protocol: int
    engine: Engine
    secrets: dict[str, str]
    cloud_password: str
    make_known: Callable[[], None]  # tell the broker about changed credentials
    mosquitto: Mosquitto | None = None

    def password(self, username: str) -> str:
        return self.cloud_password if username == CLOUD else self.secrets[username]

    def revoke(self, device_id: str) -> None:
        with Session(self.engine) as session:
            devices.revoke(session, device_id)
        self.make_known()


@dataclass
class Probe:
    """An MQTT client that records what happens to it."""

    broker: SecuredBroker
    client_id: str
    username: str | None = None
    password: str | None = None
    port: int | None = None
    tls_ca: Path | None = None
    will: tuple[str, bytes] | None = None
    persistent: bool = False
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    connack: ReasonCode | None = None
    disconnects: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._answered = threading.Event()
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._subscribed = threading.Condition(self._lock)
        if self.broker.protocol == 5:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
            )
        else:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=not self.persistent,
            )
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        if self.tls_ca is not None:
            self.client.tls_set(ca_certs=str(self.tls_ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if self.will is not None:
            self.client.will_set(*self.will, qos=1, retain=True)
        self.client.reconnect_delay_set(60, 60)  # one attempt is what a test looks at
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def connect(self, timeout: float = WAIT_S) -> bool:
        """Connect; return whether the broker accepted (False if it refused or never answered)."""
        try:
            if self.broker.protocol == 5:
                properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                properties.SessionExpiryInterval = 3600 if self.persistent else 0
                self.client.connect(
                    "127.0.0.1",
                    self.port or self.broker.port,
                    clean_start=not self.persistent,
                    properties=properties,
                )
            else:
                self.client.connect("127.0.0.1", self.port or self.broker.port)
        except (OSError, ssl.SSLError):
            return False
        self.client.loop_start()
        self._answered.wait(timeout)
        return self._connected.is_set()

    def subscribe(self, *filters: str) -> list[ReasonCode]:
        """Subscribe with QoS 1 and return the broker's answer for each filter."""
        result, mid = self.client.subscribe([(f, 1) for f in filters])
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        with self._subscribed:
            assert self._subscribed.wait_for(lambda: mid in self._subacks, WAIT_S), "no SUBACK"
            return self._subacks[mid]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def wait_for(self, payload: bytes, timeout: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if any(p == payload for _, p in self.messages):
                    return True
            time.sleep(0.01)
        return False

    def received(self, predicate: Callable[[str, bytes], bool]) -> list[tuple[str, bytes]]:
        with self._lock:
            return [(t, p) for t, p in self.messages if predicate(t, p)]

    def wait_disconnected(self, timeout: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout
        while self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.client.is_connected()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT, as a crashed device would (the will goes out)."""
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        # paho closes its sockets only when the client is collected, perhaps in a later test whose
        # warnings check then fails: close them here (shared.mqtt.release says why).
        release(self.client)

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        if self.connack is None:
            self.connack = reason
        if not reason.is_failure:
            self._connected.set()
        self._answered.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, _r: object, _p: object) -> None:
        self.disconnects += 1
        self._answered.set()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, codes: list[ReasonCode], _p: object
    ) -> None:
        with self._subscribed:
            self._subacks[mid] = codes
            self._subscribed.notify_all()


@pytest.fixture
def probes() -> Iterator[Callable[..., Probe]]:
    """Make probes; every one is closed at the end of the test."""
    made: list[Probe] = []

    def make(broker: SecuredBroker, client_id: str, **options: object) -> Probe:
        probe = Probe(broker, client_id, **options)  # type: ignore[arg-type]
        made.append(probe)
        return probe

    yield make
    for probe in made:
        probe.close()


def login(make: Callable[..., Probe], broker: SecuredBroker, username: str, **options: object) -> Probe:
    """Return a connected probe logged in as ``username`` with its own credential."""
    client_id = options.pop("client_id", username)
    probe = make(broker, client_id, username=username, password=broker.password(username), **options)
    assert probe.connect(), f"{username} could not connect: {probe.connack}"
    return probe


def provisioned_database(directory: Path) -> tuple[Engine, dict[str, str]]:
    engine = create_db_engine(f"sqlite:///{directory / 'cloud.db'}")
    create_schema(engine)
    with Session(engine) as session:
        issued = {device: devices.provision(session, device) for device in (A, B, C)}
    return engine, issued


def start_mosquitto(directory: Path, engine: Engine, cloud_password: str, **options: object) -> Mosquitto:
    """Start a Mosquitto that knows only the provisioned devices and the cloud user."""
    passwd, acl = directory / "passwd", directory / "acl"
    with Session(engine) as session:
        devices.write_mosquitto_files(session, passwd, acl, {CLOUD: cloud_password})
    broker = Mosquitto(
        require_mosquitto(),
        directory,
        anonymous=False,
        password_file=passwd,
        acl_file=acl,
        max_queued_messages=MAX_QUEUED,
        **options,  # type: ignore[arg-type]
    )
    broker.start()
    return broker


@pytest.fixture(params=[pytest.param("mosquitto", marks=pytest.mark.mosquitto), "amqtt"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecuredBroker]:
    """Mosquitto with the written password and ACL files, then the embedded broker with BrokerAuth."""
    engine, issued = provisioned_database(tmp_path)
    cloud_password = secrets.token_urlsafe(24)
    if request.param == "mosquitto":
        mosquitto = start_mosquitto(tmp_path, engine, cloud_password)

        def rewrite_and_reload() -> None:
            with Session(engine) as session:
                devices.write_mosquitto_files(session, tmp_path / "passwd", tmp_path / "acl")
            mosquitto.reload()

        try:
            yield SecuredBroker(
                "mosquitto", mosquitto.port, 5, engine, issued, cloud_password, rewrite_and_reload, mosquitto
            )
        finally:
            mosquitto.stop()
            engine.dispose()
        return
    port = free_port()
    embedded = EmbeddedBroker("127.0.0.1", port, auth=BrokerAuth(engine, {CLOUD: cloud_password}))
    embedded.start()
    try:
        # The embedded broker reads the database at every connection: nothing to reload.
        yield SecuredBroker("amqtt", port, 4, engine, issued, cloud_password, lambda: None)
    finally:
        embedded.stop()
        engine.dispose()


def is_b(topic: str, _payload: bytes = b"") -> bool:
    return topics.parse(topic).device_id == B


def test_a_device_can_neither_speak_for_nor_listen_to_another(
    secured: SecuredBroker, probes: Callable[..., Probe]
) -> None:
    forged = FORGED[secured.kind]
    cloud = login(probes, secured, CLOUD)
    uplink = [topics.all_devices(channel) for channel in topics.DEVICE_TO_CLOUD]
    assert not any(code.is_failure for code in cloud.subscribe(*uplink))
    b = login(probes, secured, B)
    assert not any(code.is_failure for code in b.subscribe(topics.commands(B), topics.desired_config(B)))
    # Retained and waiting for device B before device A subscribes.
    cloud.publish(topics.desired_config(B), b"config-for-b", retain=True).wait_for_publish(WAIT_S)
    assert b.wait_for(b"config-for-b")

    a = login(probes, secured, A)
    everything = a.subscribe(f"{topics.PREFIX}/+/#")
    own = a.subscribe(topics.commands(A))
    assert not own[0].is_failure
    if secured.kind == "amqtt":
        assert everything[0].is_failure, "the embedded broker refuses a filter wider than the ACL"

    sent = []
    b_channels = [topics.device_topic(B, channel) for channel in topics.Channel]
    for n in range(forged):
        sent.append(a.publish(b_channels[n % len(b_channels)], b"forged-%d" % n))
        if n % 10 == 0:  # meanwhile, B and the cloud go about their business
            b.publish(topics.events(B), b"genuine-%d" % n)
            cloud.publish(topics.commands(B), b"command-%d" % n)
    for info in sent:
        info.wait_for_publish(WAIT_S)
    # Barriers: each subscriber gets these after anything published before them.
    b.publish(topics.events(B), b"b-done").wait_for_publish(WAIT_S)
    cloud.publish(topics.commands(B), b"cloud-done").wait_for_publish(WAIT_S)
    cloud.publish(topics.commands(A), b"for-a").wait_for_publish(WAIT_S)
    assert cloud.wait_for(b"b-done")
    assert b.wait_for(b"cloud-done")
    assert a.wait_for(b"for-a"), "device A receives what is meant for it"

    def is_forged(_topic: str, payload: bytes) -> bool:
        return payload.startswith(b"forged-")

    assert cloud.received(is_forged) == []
    assert b.received(is_forged) == []
    assert a.received(is_b) == [], "device A read device B's messages"
    genuine = len(range(0, forged, 10))
    assert len(cloud.received(lambda _t, p: p.startswith(b"genuine-"))) == genuine
    assert len(b.received(lambda _t, p: p.startswith(b"command-"))) == genuine
    assert {t for t, _ in cloud.received(lambda t, p: True)} == {topics.events(B)}
    # (Mosquitto sends one copy per matching subscription, and A has two that match.)
    assert set(a.received(lambda t, p: True)) == {(topics.commands(A), b"for-a")}
    assert a.connack is not None
    assert not a.connack.is_failure
    assert a.client.is_connected()


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (None, None),
        (A, "not-the-secret"),
        (A, ""),
        ("fridge-unknown", "anything"),
        (A, "secret-of-b"),
        (CLOUD, "not-the-cloud-password"),
        (CLOUD, "secret-of-a"),
    ],
    ids=["anonymous", "wrong-password", "empty-password", "unknown-device", "another-devices-secret",
         "wrong-cloud-password", "cloud-with-a-device-secret"],
)  # fmt: skip
def test_a_connection_without_its_own_valid_credential_is_refused(
    secured: SecuredBroker, probes: Callable[..., Probe], username: str | None, password: str | None
) -> None:
    if password == "secret-of-b":
        password = secured.secrets[B]
    elif password == "secret-of-a":
        password = secured.secrets[A]
    probe = probes(secured, username or "anonymous", username=username, password=password)
    assert not probe.connect()
    assert probe.connack is not None, "the broker answers"
    assert probe.connack.is_failure
    assert probe.connack.getName() in {"Not authorized", "Bad user name or password"}


def test_a_revoked_device_is_refused(secured: SecuredBroker, probes: Callable[..., Probe]) -> None:
    before = login(probes, secured, C)
    secured.revoke(C)
    if secured.mosquitto is not None:
        # Mosquitto drops connected clients whose credential the reload removed.
        assert before.wait_disconnected(), "Mosquitto kept the revoked device connected"
    after = probes(secured, C, username=C, password=secured.secrets[C])
    assert not after.connect()
    assert after.connack is not None
    assert after.connack.is_failure
    # The others, the cloud user included, still get in after the rewrite and reload.
    login(probes, secured, A, client_id=A)
    login(probes, secured, CLOUD, client_id="cloud-after-revocation")


def test_a_last_will_on_another_devices_topic_never_reaches_the_cloud(
    secured: SecuredBroker, probes: Callable[..., Probe]
) -> None:
    cloud = login(probes, secured, CLOUD)
    cloud.subscribe(topics.all_devices(topics.Channel.AVAILABILITY))
    honest = login(probes, secured, B, will=(topics.availability(B), b"honest will"))
    forger = probes(
        secured, A, username=A, password=secured.secrets[A], will=(topics.availability(B), b"forged will")
    )
    if forger.connect():  # Mosquitto admits it and drops the will when it is due; amqtt refuses it
        forger.drop()
        assert forger.wait_disconnected()
    honest.drop()
    assert cloud.wait_for(b"honest will"), "the honest device's will arrives"
    assert not cloud.wait_for(b"forged will", SETTLE_S)


def test_a_refused_connection_under_a_devices_client_id_does_not_disturb_it(
    secured: SecuredBroker, probes: Callable[..., Probe]
) -> None:
    cloud = login(probes, secured, CLOUD)
    cloud.subscribe(topics.all_devices(topics.Channel.AVAILABILITY))
    b = login(probes, secured, B, persistent=True, will=(topics.availability(B), b"honest will"))
    b.subscribe(topics.commands(B))
    intruder = probes(
        secured, B, username=B, password="guessed", will=(topics.availability(B), b"planted will")
    )
    assert not intruder.connect()
    cloud.publish(topics.commands(B), b"still-for-b").wait_for_publish(WAIT_S)
    assert b.wait_for(b"still-for-b"), "the device keeps its connection and its subscription"
    assert b.disconnects == 0
    b.drop()
    assert cloud.wait_for(b"honest will")
    assert not cloud.wait_for(b"planted will", SETTLE_S)


def test_taking_over_another_devices_session_yields_none_of_its_messages(
    secured: SecuredBroker, probes: Callable[..., Probe]
) -> None:
    cloud = login(probes, secured, CLOUD)
    b = login(probes, secured, B, persistent=True)
    b.subscribe(topics.commands(B))
    b.close()
    cloud.publish(topics.commands(B), b"queued-for-b").wait_for_publish(WAIT_S)
    thief = probes(secured, B, username=A, password=secured.secrets[A], persistent=True)
    # Mosquitto admits it under its own username as client id; the embedded broker refuses it.
    if thief.connect():
        assert secured.kind == "mosquitto"
        thief.subscribe(topics.commands(A))
        cloud.publish(topics.commands(A), b"barrier").wait_for_publish(WAIT_S)
        assert thief.wait_for(b"barrier")
        assert thief.received(is_b) == []
    # Either way the real device still finds its session and the command queued in it.
    again = login(probes, secured, B, persistent=True)
    assert again.wait_for(b"queued-for-b")


def test_no_device_takes_the_clouds_or_another_devices_connection_over(
    secured: SecuredBroker, probes: Callable[..., Probe]
) -> None:
    assert_no_takeover(secured, probes)


class ReadmeMosquitto(Mosquitto):
    """A Mosquitto with README's sample ``mosquitto.conf``, its directory and port changed."""

    def config(self) -> str:
        """Return README's sample configuration for this broker's directory and port."""
        block = re.search(r"```\n# mosquitto\.conf\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
        assert block is not None, "README has a ``` block starting with '# mosquitto.conf'"
        assert "listener 1883 " in block[1]
        sample = block[1].replace("/var/lib/frigo-mqtt/", f"{self.directory}/")
        return "\n".join(
            [
                # As root, Mosquitto would drop to the `mosquitto` user, which cannot read tmp_path.
                *(["user root"] if os.geteuid() == 0 else []),
                sample.replace("listener 1883 ", f"listener {self.port} "),
                f"log_dest file {self.directory / 'mosquitto.log'}",
                "",
            ]
        )


@pytest.mark.mosquitto
def test_readmes_mosquitto_conf_stops_a_takeover_of_the_cloud_or_a_device(
    tmp_path: Path, probes: Callable[..., Probe]
) -> None:
    engine, issued = provisioned_database(tmp_path)
    cloud_password = secrets.token_urlsafe(24)
    with Session(engine) as session:
        devices.write_mosquitto_files(session, tmp_path / "passwd", tmp_path / "acl", {CLOUD: cloud_password})
    mosquitto = ReadmeMosquitto(require_mosquitto(), tmp_path)
    mosquitto.start()
    try:
        broker = SecuredBroker(
            "mosquitto", mosquitto.port, 5, engine, issued, cloud_password, lambda: None, mosquitto
        )
        assert_no_takeover(broker, probes)
    finally:
        mosquitto.stop()
        engine.dispose()


class MosquittoWithoutClientIdBinding(Mosquitto):
    """The tests' Mosquitto with authentication but without ``use_username_as_clientid``."""

    def config(self) -> str:
        """Return the usual configuration less the option."""
        return super().config().replace("use_username_as_clientid true\n", "")


@pytest.mark.mosquitto
def test_without_use_username_as_clientid_a_device_knocks_the_cloud_off(
    tmp_path: Path, probes: Callable[..., Probe]
) -> None:
    # Why the configuration needs the option: without it the takeover works.
    engine, issued = provisioned_database(tmp_path)
    cloud_password = secrets.token_urlsafe(24)
    with Session(engine) as session:
        devices.write_mosquitto_files(session, tmp_path / "passwd", tmp_path / "acl", {CLOUD: cloud_password})
    mosquitto = MosquittoWithoutClientIdBinding(
        require_mosquitto(),
        tmp_path,
        anonymous=False,
        password_file=tmp_path / "passwd",
        acl_file=tmp_path / "acl",
        max_queued_messages=MAX_QUEUED,
    )
    assert "use_username_as_clientid" not in mosquitto.config()
    mosquitto.start()
    try:
        broker = SecuredBroker(
            "mosquitto", mosquitto.port, 5, engine, issued, cloud_password, lambda: None, mosquitto
        )
        cloud = login(probes, broker, CLOUD, client_id=CLOUD)
        intruder = probes(broker, CLOUD, username=A, password=issued[A])
        assert intruder.connect()
        assert cloud.wait_disconnected(), "the device took the cloud's connection over"
    finally:
        mosquitto.stop()
        engine.dispose()


def assert_no_takeover(broker: SecuredBroker, probes: Callable[..., Probe]) -> None:
    """Device A connects with the cloud's and with device B's client id, with its own valid
    credential: the cloud and B stay connected, keep their sessions and keep receiving."""
    cloud = login(probes, broker, CLOUD, client_id=CLOUD, persistent=True)
    assert not any(code.is_failure for code in cloud.subscribe(topics.all_devices(topics.Channel.EVENTS)))
    b = login(probes, broker, B, persistent=True)
    assert not b.subscribe(topics.commands(B))[0].is_failure
    for stolen in (CLOUD, B):
        intruder = probes(broker, stolen, username=A, password=broker.secrets[A], persistent=True)
        # Mosquitto admits it under its username as client id; the embedded broker refuses it.
        if intruder.connect():
            assert broker.kind == "mosquitto"
            intruder.publish(topics.events(A), b"a-as-%s" % stolen.encode()).wait_for_publish(WAIT_S)
            assert cloud.wait_for(b"a-as-%s" % stolen.encode()), "A speaks as itself, under its own id"
    b.publish(topics.events(B), b"b-after").wait_for_publish(WAIT_S)
    cloud.publish(topics.commands(B), b"cloud-after").wait_for_publish(WAIT_S)
    assert cloud.wait_for(b"b-after"), "the cloud keeps receiving"
    assert b.wait_for(b"cloud-after"), "device B keeps receiving"
    assert (cloud.disconnects, b.disconnects) == (0, 0)
    assert cloud.client.is_connected()
    assert b.client.is_connected()


def test_the_cloud_can_clear_a_retained_message_a_device_left_on_its_stream(
    secured: SecuredBroker, probes: Callable[..., Probe]
) -> None:
    a = login(probes, secured, A)
    for topic in (topics.events(A), topics.telemetry(A)):
        a.publish(topic, b"left-behind", retain=True).wait_for_publish(WAIT_S)
    cloud = login(probes, secured, CLOUD)
    cloud.subscribe(topics.all_devices(topics.Channel.EVENTS), topics.all_devices(topics.Channel.TELEMETRY))
    assert cloud.wait_for(b"left-behind")
    for topic in (topics.events(A), topics.telemetry(A)):
        cloud.publish(topic, b"", retain=True).wait_for_publish(WAIT_S)
    a.publish(topics.events(A), b"barrier").wait_for_publish(WAIT_S)
    assert cloud.wait_for(b"barrier")
    cloud.close()  # Mosquitto would hand a second connection of the cloud user its client id
    late = login(probes, secured, CLOUD, client_id="cloud-late")
    late.subscribe(topics.all_devices(topics.Channel.EVENTS), topics.all_devices(topics.Channel.TELEMETRY))
    a.publish(topics.events(A), b"late-barrier").wait_for_publish(WAIT_S)
    assert late.wait_for(b"late-barrier")
    assert late.received(lambda _t, p: p == b"left-behind") == [], "the retained messages are gone"


@pytest.mark.mosquitto
def test_plaintext_on_the_tls_port_is_refused(tmp_path: Path, probes: Callable[..., Probe]) -> None:
    engine, issued = provisioned_database(tmp_path)
    cloud_password = secrets.token_urlsafe(24)
    ca = make_ca(tmp_path / "pki", "test CA", days=2)
    server = make_server_cert(tmp_path / "pki", tmp_path / "pki", ["127.0.0.1"], days=2)
    mosquitto = start_mosquitto(
        tmp_path,
        engine,
        cloud_password,
        listener_options=[f"cafile {ca.cert}", f"certfile {server.cert}", f"keyfile {server.key}"],
    )
    try:
        broker = SecuredBroker("mosquitto", mosquitto.port, 5, engine, issued, cloud_password, lambda: None)
        over_tls = probes(broker, A, username=A, password=issued[A], tls_ca=ca.cert)
        assert over_tls.connect(), f"a device over TLS is admitted: {over_tls.connack}"
        plaintext = probes(broker, "plain-a", username=A, password=issued[A])
        assert not plaintext.connect(5)
        assert plaintext.connack is None, "no CONNACK is ever sent in the clear"
        # And a client that trusts another CA does not trust this broker.
        stranger_ca = make_ca(tmp_path / "stranger", "another CA", days=2)
        context = ssl.create_default_context(cafile=str(stranger_ca.cert))
        with (
            socket.create_connection(("127.0.0.1", mosquitto.port), timeout=WAIT_S) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            context.wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        mosquitto.stop()
        engine.dispose()


# The embedded broker's rules, decision by decision: those of the Mosquitto ACL file, except that a
# subscription wider than what may be read is refused outright (Mosquitto grants it and filters).
_DEVICE_RULES = [
    ("publish", topics.events(A), True),
    ("publish", topics.telemetry(A), True),
    ("publish", topics.availability(A), True),
    ("publish", topics.commands(A), False),
    ("publish", topics.desired_config(A), False),
    ("publish", topics.events(B), False),
    ("publish", topics.events(A) + "/more", False),
    ("publish", "$SYS/broker/clients", False),
    ("subscribe", topics.commands(A), True),
    ("subscribe", topics.desired_config(A), True),
    ("subscribe", f"$share/group/{topics.commands(A)}", True),
    ("subscribe", f"{topics.PREFIX}/{A}/#", False),
    ("subscribe", f"{topics.PREFIX}/{A}/+", False),
    ("subscribe", topics.all_devices(topics.Channel.COMMANDS), False),
    ("subscribe", topics.commands(B), False),
    ("subscribe", "#", False),
    ("subscribe", "$share//" + topics.commands(A), False),
    ("subscribe", "$share/group", False),
    ("receive", topics.commands(A), True),
    ("receive", topics.desired_config(A), True),
    ("receive", topics.commands(B), False),
    ("receive", topics.events(A), False),
]
_CLOUD_RULES = [
    ("publish", topics.commands(B), True),
    ("publish", topics.desired_config(A), True),
    # Device streams too: only to clear a retained message a device left there.
    ("publish", topics.events(B), True),
    ("publish", topics.telemetry(B), True),
    ("publish", topics.availability(B), False),
    ("publish", f"{topics.PREFIX}/{A}", False),
    ("subscribe", topics.all_devices(topics.Channel.EVENTS), True),
    ("subscribe", topics.all_devices(topics.Channel.TELEMETRY), True),
    ("subscribe", topics.events(B), True),
    ("subscribe", topics.shared_subscription("workers", topics.all_devices(topics.Channel.EVENTS)), True),
    ("subscribe", f"{topics.PREFIX}/+/#", False),
    ("subscribe", topics.all_devices(topics.Channel.COMMANDS), False),
    ("subscribe", "#", False),
    ("receive", topics.availability(B), True),
    ("receive", topics.commands(B), False),
]


@pytest.mark.parametrize(
    ("username", "action", "topic", "allowed"),
    [(A, *rule) for rule in _DEVICE_RULES] + [(CLOUD, *rule) for rule in _CLOUD_RULES],
)
def test_the_embedded_brokers_acl_decisions(
    tmp_path: Path, username: str, action: str, topic: str, allowed: bool
) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'unused.db'}")
    auth = BrokerAuth(engine, {CLOUD: "unused"})
    check = {"publish": auth.may_publish, "subscribe": auth.may_subscribe, "receive": auth.may_receive}
    assert check[action](username, topic) is allowed
    assert check[action](None, topic) is False, "nobody without a username may do anything"
    engine.dispose()
