"""The edge agent: sensors in, inventory and outbox updated durably, events out to the cloud."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TextIO

from pydantic import ValidationError

from edge.consent import ConsentSettings
from edge.consumption import Consumed, ConsumptionConfig, ShelfTracker, Unmatched
from edge.database import open_database, transaction
from edge.datafolder import claim
from edge.errors import EdgeError, ForeignDataFolder, SensorError
from edge.inventory import Lot
from edge.recorder import Recorder
from edge.rules import Alert, LotView, Rules, RulesConfig
from edge.scangrammar import parse_scan
from edge.sensors.base import Door, Scanner, Shelf, Thermometer
from edge.settings import EdgeSettings, RulesSettings
from edge.uplink import Uplink
from shared.clock import Clock, SystemClock
from shared.errors import BrokerRefused
from shared.messages import (
    CatalogUpdated,
    Command,
    ConfigDesired,
    Event,
    ItemAdded,
    ItemConsumed,
    ItemOpened,
    OfferSent,
    OrderUpdated,
    TelemetryReported,
    WipeRequested,
)
from shared.mqtt import check_transport

log = logging.getLogger(__name__)

# How often `wait_drained` looks at the outbox.
DRAIN_POLL_S = 0.05
# Rules are evaluated this often: expiry moves by days and the door limit is minutes, so ten
# seconds loses nothing and keeps an idle Pi quiet.
RULES_INTERVAL_S = 10.0
# Desired-configuration keys a device accepts from the cloud.
CONFIGURABLE = frozenset({"consent", "rules", "telemetry_interval_s"})


@dataclass
class Sensors:
    """The sensors a fridge has; any may be missing."""

    scanner: Scanner | None = None
    door: Door | None = None
    thermometers: Sequence[Thermometer] = ()
    shelves: Sequence[Shelf] = ()


@dataclass(frozen=True)
class Status:
    """What `frigo edge status` shows."""

    device_id: str
    connected: bool
    outbox_depth: int
    outbox_capacity: int
    pressure: str
    dropped_events: int
    lots: list[tuple[Lot, str]]
    alerts: list[tuple[str, str, str, str]]
    offers: int
    expected: list[tuple[str, str, int, int]]
    unknown_codes: list[str] = field(default_factory=list)


def _rules_config(settings: RulesSettings) -> RulesConfig:
    return RulesConfig(
        expiring_within_days=settings.expiring_within_days,
        max_temperature_c=settings.max_temperature_c,
        temperature_grace=timedelta(seconds=settings.temperature_grace_s),
        door_open_limit=timedelta(seconds=settings.door_open_limit_s),
    )


class Agent:
    """One fridge's agent; usable as a context manager that starts and stops it."""

    def __init__(
        self,
        settings: EdgeSettings,
        clock: Clock | None = None,
        sensors: Sensors | None = None,
        *,
        on_refused: Callable[[BrokerRefused], None] | None = None,
    ) -> None:
        """Open the data folder and set up the uplink; nothing connects before :meth:`start`.

        Raise :class:`InsecureTransport` for a password that would cross the network in clear
        text, and :class:`ForeignDataFolder` for a data folder of another device. ``on_refused``
        is called, on the MQTT thread, when the broker refuses the connection for a reason no
        retry changes (a protocol it does not speak, bad credentials); the uplink stops trying.
        """
        check_transport(settings.mqtt)
        self.settings = settings
        self._clock = clock or SystemClock()
        self.sensors = sensors or Sensors()
        self._conn = open_database(settings.db_path, power_safe=settings.power_safe)
        try:
            claim(self._conn, settings.data_dir, settings.device_id, self._clock.now())
        except ForeignDataFolder:
            self._conn.close()
            raise
        self._lock = threading.RLock()  # one writer at a time on this agent's connection
        self.recorder = Recorder(
            self._conn,
            settings.device_id,
            self._clock,
            consent=settings.consent,
            capacity=settings.outbox_capacity,
        )
        self._rules_settings = settings.rules
        self.rules = Rules(_rules_config(settings.rules))
        self.tracker = ShelfTracker(
            ConsumptionConfig(return_window=timedelta(seconds=settings.sensors.return_window_s))
        )
        self._telemetry_interval_s = settings.telemetry_interval_s
        self.uplink = Uplink(
            device_id=settings.device_id,
            mqtt_settings=settings.mqtt,
            db_path=settings.db_path,
            power_safe=settings.power_safe,
            clock=self._clock,
            resend_after_s=settings.resend_after_s,
            window=settings.window,
            linger_s=settings.linger_s,
            on_command=self.handle_command,
            on_config=self.apply_config,
            on_refused=on_refused,
        )
        self._temperatures: dict[str, float] = {}
        self._door_open: bool | None = None
        self._started_at = self._clock.now()
        self._next_temperature: datetime | None = None
        self._next_rules: datetime | None = None
        self._next_telemetry: datetime | None = None
        self._was_connected: bool | None = None
        self._inherited: set[tuple[str, str]] | None = None  # alerts raised before a restart
        self._views: tuple[int, list[LotView]] | None = None  # (total_changes, the lots) last read
        self._stop = threading.Event()
        self._left = 0  # events left in the outbox when the agent stopped
        stored = self.recorder.remote_config()
        if stored is not None and (error := self._configure(json.loads(stored))) is not None:
            log.warning("ignoring the stored remote configuration: %s", error)
        self._threads: list[threading.Thread] = []

    @property
    def device_id(self) -> str:
        """Return this fridge's device id."""
        return self.settings.device_id

    # lifecycle --------------------------------------------------------------------------------

    def start(self, *, poll: bool = True) -> None:
        """Connect, start sending the outbox, and read the sensors (unless ``poll`` is False)."""
        self.uplink.start()
        if poll:
            self._spawn(self._poll_loop, "sensors")
        if self.sensors.scanner is not None:
            self._spawn(self._scanner_loop, "scanner")

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=f"{name}-{self.device_id}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, flush_s: float = 0.0) -> int:
        """Stop reading sensors, disconnect and close the database; nothing recorded is lost.

        A scan or sensor reading under way is recorded first. When connected, wait up to
        ``flush_s`` for the cloud to acknowledge what waits in the outbox. Return how many events
        are left there for the next start.
        """
        if self._stop.is_set():
            return self._left
        self._stop.set()
        if self.sensors.scanner is not None:
            self.sensors.scanner.close()
        for thread in self._threads:
            thread.join(5)
        if flush_s > 0 and self.uplink.connected:
            self.uplink.notify()
            self.wait_drained(flush_s)
        self.uplink.stop()
        self._was_connected = None
        self._note_connection(connected=False)
        self._left = self.outbox_depth()
        self._conn.close()
        return self._left

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    # what people and sensors do -----------------------------------------------------------------

    def scan(self, line: str) -> list[Event]:
        """Record one scanner line; return the events it produced (none for a blank line)."""
        action = parse_scan(line)
        if action is None:
            return []
        with self._lock:
            events = self.recorder.apply(action)
            for event in events:
                if isinstance(event, ItemAdded):
                    product = self.recorder.inventory.product(event.code)
                    self.tracker.scanned_in(event.lot_id, event.code, product.unit_grams, self._clock.now())
                elif isinstance(event, ItemOpened):
                    self.tracker.opened(event.lot_id, self._clock.now())
        self.uplink.notify()
        return events

    def poll_once(self) -> None:
        """Read every sensor once, apply the rules that are due, and keep telemetry; one poll."""
        now = self._clock.now()
        door_open = self.sensors.door.is_open() if self.sensors.door is not None else None
        if door_open is not None:
            self.rules.door(door_open, now)
            self._door_open = door_open
        if self.sensors.thermometers and (self._next_temperature is None or now >= self._next_temperature):
            self._next_temperature = now + timedelta(seconds=self.settings.sensors.temperature_interval_s)
            for probe in self.sensors.thermometers:
                try:
                    celsius = probe.read_celsius()
                except SensorError as exc:
                    log.warning("%s", exc)
                    continue
                self._temperatures[probe.sensor_id] = celsius
                self.rules.temperature(probe.sensor_id, celsius, now)
        decisions = []
        for shelf in self.sensors.shelves:
            try:
                decisions += self.tracker.weight(shelf.shelf_id, shelf.read_grams(), now)
            except SensorError as exc:
                log.warning("%s", exc)
        decisions += self.tracker.tick(now)
        with self._lock:
            for decision in decisions:
                if isinstance(decision, Consumed):
                    self._consume_weight(decision)
                elif isinstance(decision, Unmatched):
                    log.info(
                        "shelf %s changed by %.0f g; no lot explains it",
                        decision.shelf_id,
                        decision.delta_grams,
                    )
            if self._next_rules is None or now >= self._next_rules or decisions:
                self._next_rules = now + timedelta(seconds=RULES_INTERVAL_S)
                self._apply_rules(now)
            if self._next_telemetry is None or now >= self._next_telemetry:
                self._next_telemetry = now + timedelta(seconds=self._telemetry_interval_s)
                self._keep_telemetry(now)
            self.recorder.check_recovered()
            self._note_connection()
        self.uplink.notify()

    def _consume_weight(self, decision: Consumed) -> None:
        lot = self.recorder.inventory.lot(decision.lot_id)
        if lot is None:
            return
        product = self.recorder.inventory.product(lot.code)
        if lot.unit == "unit":
            if not product.unit_grams:
                log.info("lot %d lost %.0f g, but its unit weight is unknown", lot.id, decision.grams)
                return
            quantity = decision.grams / product.unit_grams
        else:
            quantity = decision.grams  # grams, or millilitres at about 1 g/ml
        self.recorder.consume_lot(lot.id, quantity)

    def _apply_rules(self, now: datetime) -> None:
        result = self.rules.evaluate(self._lot_views(), now)
        raised: tuple[Alert, ...] = result.raised
        cleared: tuple[Alert, ...] = result.cleared
        if self._inherited is None:
            # After a restart the rules start afresh; the alerts stored before are inherited.
            self._inherited = {(kind, subject) for kind, subject, _d, _s in self.recorder.active_alerts()}
            raised, cleared = result.active, ()
        active = {(alert.kind, alert.subject) for alert in result.active}
        for alert in cleared:
            self.recorder.alert_cleared(alert.kind, alert.subject)
        for alert in raised:
            if (alert.kind, alert.subject) in self._inherited:
                continue  # still holds since before the restart: already raised
            self.recorder.alert_raised(
                alert.kind, alert.subject, alert.detail, alert.since, alert.perishable_codes
            )
        for key in list(self._inherited):
            if key in active:
                self._inherited.discard(key)  # the rules track it now, and will clear it
            elif self._no_longer_holds(*key):
                self._inherited.discard(key)
                self.recorder.alert_cleared(*key)  # type: ignore[arg-type]

    def _lot_views(self) -> list[LotView]:
        """Return the lots as the rules see them, read again only after the database changed."""
        # Rules run every few seconds and lots change a few times a day: reading every lot and its
        # product each time was most of an idle Pi's work. This connection makes every change.
        changes = self._conn.total_changes
        if self._views is not None and self._views[0] == changes:
            return self._views[1]
        views = [
            LotView(
                lot_id=lot.id,
                code=lot.code,
                name=name,
                quantity=lot.quantity,
                unit=lot.unit,
                location=lot.location,
                best_before=lot.best_before,
                perishable=perishable,
            )
            for lot, name, perishable in self.recorder.inventory.lots_described()
        ]
        self._views = (changes, views)
        return views

    def _no_longer_holds(self, kind: str, subject: str) -> bool:
        """Say whether an alert inherited from before a restart is known to be over.

        Date alerts are re-derived at once; door and temperature episodes need the current reading
        (an open door may have been open for minutes already), so they end only on evidence.
        """
        if kind == "door_open":
            return self._door_open is False
        if kind == "temperature_high":
            reading = self._temperatures.get(subject.removeprefix("probe:"))
            return reading is not None and reading <= self._rules_settings.max_temperature_c
        return True

    def _keep_telemetry(self, now: datetime) -> None:
        self.recorder.telemetry_sample(
            TelemetryReported(
                device_id=self.device_id,
                occurred_at=now,
                outbox_depth=self.recorder.outbox.depth(),
                uptime_s=max((now - self._started_at).total_seconds(), 0.0),
                temperatures_c=dict(self._temperatures),
                door_open=self._door_open,
            )
        )

    def _note_connection(self, connected: bool | None = None) -> None:
        """Keep the connection state in the database, for `frigo edge status` in another process."""
        connected = self.uplink.connected if connected is None else connected
        if connected != self._was_connected:
            self._was_connected = connected
            with transaction(self._conn):
                self._conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('connected', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (int(connected),),
                )

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except EdgeError:
                log.exception("sensor poll failed; trying again")
            self._stop.wait(self.settings.sensors.poll_interval_s)

    def _scanner_loop(self) -> None:
        assert self.sensors.scanner is not None
        for line in self.sensors.scanner.lines():
            if self._stop.is_set():
                break  # stopping: no new input
            try:
                self.scan(line)
            except (EdgeError, LookupError) as exc:
                log.warning("scan %r: %s", line, exc)

    # what the cloud sends ---------------------------------------------------------------------

    def handle_command(self, command: Command) -> None:
        """Act on a command from the cloud (called on the MQTT thread)."""
        now = self._clock.now()
        with self._lock:
            if isinstance(command, OfferSent):
                with transaction(self._conn):
                    self.recorder.offers.store(command, now)
            elif isinstance(command, OrderUpdated):
                with transaction(self._conn):
                    self.recorder.orders.update(command, now)
            elif isinstance(command, CatalogUpdated):
                with transaction(self._conn):
                    for info in command.products:
                        self.recorder.inventory.learn(info)
            elif isinstance(command, WipeRequested):
                self.recorder.wipe(command.request_id)
                self._temperatures.clear()
                log.warning("local data wiped at the cloud's request %s", command.request_id)
        self.uplink.notify()

    def apply_config(self, desired: ConfigDesired) -> None:
        """Apply a desired configuration once per version and report the outcome."""
        with self._lock:
            if desired.version <= self.recorder.applied_config_version():
                return
            error = self._configure(desired.settings)
            self.recorder.config_applied(desired.version, error, json.dumps(self._remote_settings()))
        self.uplink.notify()

    def _remote_settings(self) -> dict[str, Any]:
        """Return the effective remotely configurable settings, to re-apply after a restart."""
        return {
            "consent": {"share": sorted(self.recorder.consent.share)},
            "rules": self._rules_settings.model_dump(),
            "telemetry_interval_s": self._telemetry_interval_s,
        }

    def _configure(self, values: dict[str, Any]) -> str | None:
        unknown = set(values) - CONFIGURABLE
        if unknown:
            return f"settings not configurable remotely: {', '.join(sorted(unknown))}"
        try:
            # A partial update changes only the keys it names.
            consent = ConsentSettings.model_validate(
                {**self.recorder.consent.model_dump(), **values.get("consent", {})}
            )
            rules = RulesSettings.model_validate(
                {**self._rules_settings.model_dump(), **values.get("rules", {})}
            )
            interval = float(values.get("telemetry_interval_s", self._telemetry_interval_s))
            if interval <= 0:
                raise ValueError("telemetry_interval_s must be above 0")
        except (ValidationError, ValueError, TypeError) as exc:
            return str(exc)[:1000]
        self.recorder.consent = consent
        self._rules_settings = rules
        self.rules.configure(_rules_config(rules))
        self._telemetry_interval_s = interval
        return None

    # what the household sees ------------------------------------------------------------------

    def answer_offer(self, offer_id: Any, answer: str) -> None:
        """Accept or dismiss an offer; the answer goes to the cloud."""
        with self._lock:
            self.recorder.answer_offer(offer_id, answer)
        self.uplink.notify()

    def answer_order(self, order_id: Any, answer: str) -> None:
        """Approve, cancel or skip a basket or an order, or decide on substitutions; to the cloud."""
        with self._lock:
            self.recorder.answer_order(order_id, answer)
        self.uplink.notify()

    def change_consent(self, recipient: str, purpose: str, action: str) -> None:
        """Grant or withdraw a company's consent for a purpose; the change goes to the cloud."""
        with self._lock:
            self.recorder.change_consent(recipient, purpose, action)
        self.uplink.notify()

    def order_status(self, order_id: Any) -> str | None:
        """Return the status this fridge last heard for an order or basket; None if unknown."""
        with self._lock:
            return self.recorder.orders.status(order_id)

    def inventory(self) -> dict[str, float]:
        """Return what the fridge holds, by product code."""
        with self._lock:
            return self.recorder.inventory.snapshot()

    def quantity(self, code: str) -> float:
        """Return how much of ``code`` the fridge holds."""
        with self._lock:
            return self.recorder.inventory.quantity(code)

    def outbox_depth(self) -> int:
        """Return how many events still wait for the cloud's acknowledgement."""
        with self._lock:
            return self.recorder.outbox.depth()

    def wait_drained(self, timeout: float | None = None, stop: threading.Event | None = None) -> bool:
        """Wait until the cloud has acknowledged every event.

        Return False if ``timeout`` ran out or ``stop`` was set first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.outbox_depth() > 0:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if stop is not None and stop.is_set():
                return False
            time.sleep(DRAIN_POLL_S)
        return True


def read_status(settings: EdgeSettings) -> Status:
    """Read the agent's state from its database (the agent may be running in another process)."""
    conn = open_database(settings.db_path)
    try:
        claim(conn, settings.data_dir, settings.device_id, SystemClock().now(), record=False)
        recorder = Recorder(conn, settings.device_id, SystemClock(), capacity=settings.outbox_capacity)
        level, dropped, _ = recorder.pressure()
        lots = [(lot, recorder.inventory.product(lot.code).label) for lot in recorder.inventory.lots()]
        connected = conn.execute("SELECT value FROM meta WHERE key = 'connected'").fetchone()
        return Status(
            device_id=settings.device_id,
            connected=bool(connected and connected[0]),
            outbox_depth=recorder.outbox.depth(),
            outbox_capacity=settings.outbox_capacity,
            pressure=level,
            dropped_events=dropped,
            lots=lots,
            alerts=recorder.active_alerts(),
            offers=len(recorder.offers.current(SystemClock().now())),
            expected=recorder.orders.expected(),
            unknown_codes=recorder.inventory.unknown_codes(),
        )
    finally:
        conn.close()


def describe(event: Event, quantity_now: float) -> str:
    """Return the one-line confirmation printed for a recorded event."""
    if isinstance(event, ItemAdded):
        return f"ok seq={event.seq} +{event.quantity:g} {event.code} (now {quantity_now:g})"
    if isinstance(event, ItemConsumed):
        return f"ok seq={event.seq} -{event.quantity:g} {event.code} (now {quantity_now:g})"
    return f"ok seq={event.seq} {event.type}"


def run_stdin(
    agent: Agent,
    lines: Iterable[str] | None = None,
    out: TextIO | None = None,
    drain_timeout: float | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Feed scanner lines to a started agent until end of input, then wait for the cloud's acks.

    Return 0 when everything recorded was acknowledged, 1 when ``drain_timeout`` ran out first.
    Once ``stop`` is set, take no further line and return 0 without waiting: the caller reports.
    """
    lines = sys.stdin if lines is None else lines
    out = sys.stdout if out is None else out
    for line in lines:
        if stop is not None and stop.is_set():
            return 0
        try:
            events = agent.scan(line)
        except EdgeError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            continue
        for event in events:
            code = getattr(event, "code", None)
            print(describe(event, agent.quantity(code) if code else 0), file=out, flush=True)
        if not events and line.strip() and not line.lstrip().startswith("#"):
            print(
                "ok: recorded here; nothing sent (consent, or a full outbox: see `frigo edge status`)",
                file=out,
                flush=True,
            )
    if stop is not None and stop.is_set():
        return 0
    depth = agent.outbox_depth()
    if depth:
        print(
            f"input ended; waiting for the cloud to acknowledge {depth} events", file=sys.stderr, flush=True
        )
    if not agent.wait_drained(drain_timeout, stop):
        if stop is not None and stop.is_set():
            return 0
        print(
            f"gave up waiting: {agent.outbox_depth()} events stay in the outbox and go out on the next start",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0
