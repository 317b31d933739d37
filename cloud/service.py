"""One cloud worker: the database, ingestion, the MQTT subscription and the HTTP API together."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from cloud.api.limits import RateLimits
from cloud.api.metrics import create_registry
from cloud.app import create_app
from cloud.db.engine import create_db_engine, create_schema
from cloud.dispatcher import Dispatcher
from cloud.ingest.ingestor import Ingestor
from cloud.ingest.writer import WriterConfig, WriterProcess
from cloud.mqtt.subscriber import Subscriber
from cloud.outbox.lane import WebhookLane
from cloud.scheduler import PlanningSchedule
from cloud.settings import CloudSettings
from shared.clock import Clock, SystemClock
from shared.messages import EventsAcknowledged
from shared.mqtt import check_transport

log = logging.getLogger(__name__)

# How long a stopping worker waits for the broker to take the acknowledgements of its last batches;
# one not taken is harmless (the device sends its events again), so this only bounds the wait.
ACK_DRAIN_S = 5.0


class CloudService:
    """Start and stop a whole worker in this process (threads, not subprocesses)."""

    def __init__(
        self, settings: CloudSettings, clock: Clock | None = None, *, serve_http: bool = True
    ) -> None:
        check_transport(settings.mqtt)  # first: a password in clear text refused leaves nothing to undo
        self.settings = settings
        self.engine = create_db_engine(settings.database_url)
        create_schema(self.engine)
        self.subscriber = Subscriber(
            settings.mqtt, settings.client_id, self._submit, shared_group=settings.shared_group
        )
        self.ingestor = Ingestor(
            self.engine,
            self._acknowledge,
            clock or SystemClock(),
            batch_size=settings.batch_size,
            batch_interval_s=settings.batch_interval_s,
            auto_enroll=settings.auto_enroll,
            max_dead_letters=settings.max_dead_letters,
            writer=self._writer(settings),
        )
        # A registry of this worker's own: workers started in one process do not share metrics.
        self.registry = create_registry(self.ingestor, self._broker_connected)
        self.app = create_app(
            self.engine,
            self.ingestor.stats,
            self._broker_connected,
            registry=self.registry,
            clock=clock,
            allow_private_webhooks=settings.webhook_allow_private,
            assume_https=settings.assume_https,
            rate_limits=RateLimits(
                household=settings.rate_limit_household,
                operator=settings.rate_limit_operator,
                retailer=settings.rate_limit_retailer,
                address=settings.rate_limit_address,
            ),
        )
        self.dispatcher = Dispatcher(
            self.engine,
            clock or SystemClock(),
            self.subscriber.publish_command,
        )
        # Webhooks wait on retailers' servers: on threads of their own, so no fridge waits for them.
        self.webhooks = WebhookLane(
            self.engine, clock or SystemClock(), allow_private=settings.webhook_allow_private
        )
        self.planning = PlanningSchedule(self.engine, clock or SystemClock(), settings.planning_interval_s)
        self._serve_http = serve_http
        self._server: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        # False from the start of stop(): what arrives then is left to the devices to send again.
        self._taking = True
        self.left_to_devices = 0  # messages that arrived while stopping, not ingested

    @staticmethod
    def _writer(settings: CloudSettings) -> WriterProcess | None:
        """Return the writer process, unless settings or an in-memory database rule it out."""
        in_memory = settings.database_url in ("sqlite://", "sqlite:///:memory:")
        if not settings.writer_process or in_memory:
            return None
        return WriterProcess(
            WriterConfig(
                database_url=settings.database_url,
                auto_enroll=settings.auto_enroll,
                max_dead_letters=settings.max_dead_letters,
                log_level=logging.getLogger().getEffectiveLevel(),
                log_json=settings.log_format == "json",
            )
        )

    def _acknowledge(self, ack: EventsAcknowledged) -> None:
        self.subscriber.acknowledge(ack)
        if self.settings.planning:
            self.planning.note_events(ack.device_id)

    def _submit(self, topic: str, payload: bytes, retained: bool) -> None:
        if not self._taking:
            # Stopping: the queue must drain. A device keeps its events until acknowledged and a
            # retained availability comes again with the next subscription: nothing is lost.
            self.left_to_devices += 1
            return
        self.ingestor.submit(topic, payload, retained)

    def _broker_connected(self) -> bool:
        return self.subscriber.connected

    @property
    def http_port(self) -> int:
        """Return the port the API listens on (the real one when settings asked for 0)."""
        if self._server is not None and self._server.servers:
            sockets = self._server.servers[0].sockets
            if sockets:
                return int(sockets[0].getsockname()[1])
        return self.settings.http_port

    @property
    def url(self) -> str:
        """Return the API's base URL."""
        return f"http://{self.settings.http_host}:{self.http_port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start ingesting and serving; return once the API answers or raise TimeoutError."""
        self._taking = True
        self.ingestor.start()
        self.subscriber.start()
        self.dispatcher.start()
        self.webhooks.start()
        if self.settings.planning:
            self.planning.start()
        if self._serve_http:
            config = uvicorn.Config(
                self.app,
                host=self.settings.http_host,
                port=self.settings.http_port,
                log_level="warning",
                # In JSON, uvicorn's records go through the root logger's JSON handler like ours.
                log_config=None if self.settings.log_format == "json" else LOGGING_CONFIG,
                lifespan="off",
            )
            self._server = uvicorn.Server(config)
            self._http_thread = threading.Thread(target=self._server.run, name="http", daemon=True)
            self._http_thread.start()
            deadline = time.monotonic() + timeout
            while not self._server.started:
                if not self._http_thread.is_alive() or time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the API did not start on {self.settings.http_host}:{self.settings.http_port}; "
                        "is the port in use? Set FRIGO_CLOUD_HTTP_PORT"
                    )
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop taking messages and requests, commit and acknowledge what is buffered, disconnect.

        The order matters: the ingest queue drains through the writer while the database is open
        and the broker connected (its acknowledgements go out through the subscriber); only then do
        the subscriber and the database go.
        """
        self._taking = False
        if self._server is not None and self._http_thread is not None:
            self.app.state.web_closing.set()  # the dashboard's event streams end
            self._server.should_exit = True
            self._http_thread.join(10)
        self.ingestor.stop()
        self.planning.stop()
        self.dispatcher.stop()
        self.webhooks.stop()  # waits for the deliveries in flight: each ends by its deadline
        self._wait_acks_sent(ACK_DRAIN_S)
        self.subscriber.stop()
        self.engine.dispose()
        if self.left_to_devices:
            log.info("left %d messages that came while stopping to their devices", self.left_to_devices)

    def _wait_acks_sent(self, timeout: float) -> None:
        """Wait until the broker has taken every acknowledgement published, or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while self.subscriber.unsent_acks and self.subscriber.connected and time.monotonic() < deadline:
            time.sleep(0.02)
