"""Metrics, health and readiness through a real uvicorn; the JSON log formatter.

Workers whose broker does not exist keep retrying in the background, so their /readyz says the
broker is down; the real-broker tests use a Mosquitto of their own.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cloud.api.metrics import CONTENT_TYPE, create_registry
from cloud.db.engine import create_db_engine, create_schema
from cloud.ingest.ingestor import Ingestor
from cloud.ingest.stats import BATCH_SIZE_BUCKETS, COMMIT_SECONDS_BUCKETS, RejectReason
from cloud.logs import JsonFormatter, configure_logging
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared import topics
from shared.clock import ManualClock
from shared.messages import EventsAcknowledged
from shared.mqtt import MqttSettings, release
from tests.conftest import CloudFactory
from tests.support.auth import bearer
from tests.support.factories import T0, added, msg
from tests.support.services import Mosquitto, free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Return every sample of a Prometheus exposition: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE  # the Prometheus text format
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def start_service(database_url: str, clock: ManualClock | None = None) -> CloudService:
    """A worker serving HTTP on a free port, with an MQTT port nobody listens on."""
    settings = CloudSettings(
        database_url=database_url,
        mqtt=MqttSettings(host="127.0.0.1", port=free_port()),
        http_port=0,
        client_id=f"frigo-obs-test-{uuid.uuid4().hex[:8]}",
        auto_enroll=True,
    )
    service = CloudService(settings, clock or ManualClock(T0))
    service.start()
    return service


@pytest.fixture
def service(database_url: str) -> Iterator[CloudService]:
    service = start_service(database_url)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def client(service: CloudService) -> Iterator[httpx.Client]:
    """A client with an operator's token: /metrics and /stats take one."""
    with httpx.Client(base_url=service.url, timeout=10, headers=bearer(service.engine)) as client:
        yield client


# A known batch: 3 new events, 1 copy inside the batch, 1 bad payload, 1 bad topic.
KNOWN_BATCH = [
    msg(added("fridge-1", 1)),
    msg(added("fridge-1", 2)),
    msg(added("fridge-2", 1)),
    msg(added("fridge-1", 1)),
    (topics.events("fridge-1"), b"not json"),
    ("elsewhere", b"{}"),
]


# --- /metrics ---------------------------------------------------------------------------------


def test_metrics_count_a_known_batch(service: CloudService, client: httpx.Client) -> None:
    before = scrape(client)
    assert value(before, "frigo_ingest_received_total") == 0
    assert value(before, "frigo_ingest_batch_size_count") == 0
    assert value(before, "frigo_broker_connected") == 0

    service.ingestor.process(KNOWN_BATCH)
    service.ingestor.process([msg(added("fridge-1", 2))])  # a redelivery, in a batch of its own

    samples = scrape(client)
    assert value(samples, "frigo_ingest_received_total") == 7
    assert value(samples, "frigo_ingest_stored_total") == 3
    assert value(samples, "frigo_ingest_duplicates_total") == 2
    assert {
        reason.value: value(samples, "frigo_ingest_rejected_total", reason=reason) for reason in RejectReason
    } == {
        "invalid_topic": 1,
        "invalid_payload": 1,
        "device_mismatch": 0,
        "unexpected_topic": 0,
        "unknown_device": 0,
        "seq_conflict": 0,
        "event_id_conflict": 0,
        "retained": 0,
    }
    assert value(samples, "frigo_ingest_batches_total") == 2
    assert value(samples, "frigo_dead_letters_total") == 2
    assert value(samples, "frigo_dead_letter_failures_total") == 0
    # Batch sizes 6 and 1: cumulative buckets.
    assert value(samples, "frigo_ingest_batch_size_count") == 2
    assert value(samples, "frigo_ingest_batch_size_sum") == 7
    assert value(samples, "frigo_ingest_batch_size_bucket", le="1.0") == 1
    assert value(samples, "frigo_ingest_batch_size_bucket", le="5.0") == 1
    assert value(samples, "frigo_ingest_batch_size_bucket", le="10.0") == 2
    assert value(samples, "frigo_ingest_batch_size_bucket", le="+Inf") == 2
    assert {
        le for (name, labels) in samples if name == "frigo_ingest_batch_size_bucket" for _, le in labels
    } == {
        *(repr(float(b)) for b in BATCH_SIZE_BUCKETS),
        "+Inf",
    }
    # Both batches committed: each has a commit time, within the buckets' range here.
    assert value(samples, "frigo_ingest_batch_commit_seconds_count") == 2
    assert 0 < value(samples, "frigo_ingest_batch_commit_seconds_sum") < 2
    assert value(samples, "frigo_ingest_batch_commit_seconds_bucket", le="2.0") == 2
    assert value(samples, "frigo_ingest_batch_commit_seconds_bucket", le="+Inf") == 2
    assert {
        le
        for (name, labels) in samples
        if name == "frigo_ingest_batch_commit_seconds_bucket"
        for _, le in labels
    } == {*(repr(b) for b in COMMIT_SECONDS_BUCKETS), "+Inf"}
    assert value(samples, "frigo_ingest_queue_depth") == 0
    assert value(samples, "frigo_ingest_lag_seconds") == 0
    assert value(samples, "frigo_broker_connected") == 0

    # /stats tells the same story: both read the same IngestStats.
    stats = client.get("/stats").json()
    assert (stats["received"], stats["stored"], stats["duplicates"], stats["batches"]) == (7, 3, 2, 2)
    assert stats["rejected"] == {"invalid_topic": 1, "invalid_payload": 1}
    assert stats["last_commit_ms"] / 1000 <= value(samples, "frigo_ingest_batch_commit_seconds_sum")


def test_queue_depth_and_lag_follow_what_waits(database_url: str) -> None:
    engine = create_db_engine(database_url)
    create_schema(engine)
    clock = ManualClock(T0)
    acks: list[EventsAcknowledged] = []
    ingestor = Ingestor(engine, acks.append, clock)
    registry = create_registry(ingestor, lambda: True, process=False)

    def metrics() -> Samples:
        return parse(generate_latest(registry).decode())

    try:
        assert (
            value(metrics(), "frigo_ingest_queue_depth"),
            value(metrics(), "frigo_ingest_lag_seconds"),
        ) == (0, 0)
        ingestor.submit(*msg(added("fridge-1", 1)))
        clock.advance(timedelta(seconds=5))
        ingestor.submit(*msg(added("fridge-1", 2)))
        ingestor.submit(*msg(added("fridge-1", 3)))
        clock.advance(timedelta(seconds=2))

        # Nothing consumes yet: three wait, the oldest for 7 s.
        samples = metrics()
        assert value(samples, "frigo_ingest_queue_depth") == 3
        assert value(samples, "frigo_ingest_lag_seconds") == 7
        assert value(samples, "frigo_ingest_received_total") == 0
        assert value(samples, "frigo_broker_connected") == 1

        ingestor.start()
        deadline = time.monotonic() + 10
        while value(metrics(), "frigo_ingest_queue_depth") and time.monotonic() < deadline:
            time.sleep(0.01)
        samples = metrics()
        assert value(samples, "frigo_ingest_queue_depth") == 0
        assert value(samples, "frigo_ingest_lag_seconds") == 0
        assert value(samples, "frigo_ingest_stored_total") == 3
        assert acks == [EventsAcknowledged(device_id="fridge-1", ranges=((1, 3),))]
    finally:
        ingestor.stop()
        engine.dispose()


def test_two_workers_in_one_process_keep_their_own_metrics(database_url: str, tmp_path: Path) -> None:
    first = start_service(database_url)
    second = start_service(f"sqlite:///{tmp_path / 'second.db'}")
    try:
        first.ingestor.process(KNOWN_BATCH)
        second.ingestor.process([msg(added("fridge-9", 1))])

        with httpx.Client(base_url=first.url, timeout=10, headers=bearer(first.engine)) as client:
            one = scrape(client)
        with httpx.Client(base_url=second.url, timeout=10, headers=bearer(second.engine)) as client:
            two = scrape(client)
    finally:
        second.stop()
        first.stop()

    assert first.registry is not second.registry
    assert (value(one, "frigo_ingest_received_total"), value(two, "frigo_ingest_received_total")) == (6, 1)
    assert (value(one, "frigo_ingest_stored_total"), value(two, "frigo_ingest_stored_total")) == (3, 1)
    assert (value(one, "frigo_dead_letters_total"), value(two, "frigo_dead_letters_total")) == (2, 0)
    # Nothing went to prometheus_client's global registry.
    assert b"frigo_" not in generate_latest(REGISTRY)


@pytest.mark.parametrize("path", ["/metrics", "/stats"])
def test_metrics_and_stats_take_an_operators_token(service: CloudService, path: str) -> None:
    with httpx.Client(base_url=service.url, timeout=10) as anyone:
        refused = anyone.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "frigo_" not in refused.text
        assert "received" not in refused.text
        service.ingestor.process([msg(added("fridge-h", 1))])
        household = bearer(service.engine, "household", "hh-fridge-h")
        assert anyone.get(path, headers=household).status_code == 403
        assert anyone.get(path, headers={"Authorization": "Bearer fra_not-a-token"}).status_code == 401
        # Prometheus' scrape config sends the token as a bearer header (README).
        assert anyone.get(path, headers=bearer(service.engine)).status_code == 200
        # The probes stay open: load balancers and orchestrators send no credentials.
        assert anyone.get("/healthz").status_code == 200
        assert anyone.get("/readyz").status_code in (200, 503)


# --- /healthz and /readyz ---------------------------------------------------------------------


def test_ready_needs_the_broker(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "ready": False,
        "database": {"ready": True, "detail": "the database answered SELECT 1"},
        "broker": {"ready": False, "detail": "not connected to the MQTT broker; reconnecting"},
    }


def test_ready_needs_the_database(service: CloudService, client: httpx.Client) -> None:
    unreachable = create_db_engine(f"postgresql+psycopg://frigo@127.0.0.1:{free_port()}/frigo")
    service.app.state.engine = unreachable
    try:
        response = client.get("/readyz")
    finally:
        service.app.state.engine = service.engine
        unreachable.dispose()

    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["database"] == {
        "ready": False,
        "detail": "the database did not answer SELECT 1 (OperationalError)",
    }
    assert body["broker"]["ready"] is False
    assert client.get("/healthz").status_code == 200


@pytest.mark.mosquitto
def test_ready_with_a_real_broker_and_messages_through_it(
    mosquitto: Mosquitto, database_url: str, start_cloud: CloudFactory
) -> None:
    cloud = start_cloud(mosquitto.mqtt(), database_url)
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fridge-obs", protocol=mqtt.MQTTv5)
    device.connect("127.0.0.1", mosquitto.port)
    device.loop_start()
    try:
        with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(cloud.engine)) as client:
            response = client.get("/readyz")
            assert response.status_code == 200
            assert response.json() == {
                "ready": True,
                "database": {"ready": True, "detail": "the database answered SELECT 1"},
                "broker": {"ready": True, "detail": "connected to the MQTT broker"},
            }

            device.publish(topics.events("fridge-obs"), b"\x00not an event", qos=1).wait_for_publish(5)
            device.publish(*msg(added("fridge-obs", 1)), qos=1).wait_for_publish(5)
            deadline = time.monotonic() + 10
            # Through its batch: stored, and counted out of the queue (the count follows the commit).
            while (cloud.ingestor.stats.stored < 1 or cloud.ingestor.queue_depth() > 0) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.02)

            samples = scrape(client)
            letters = client.get("/admin/dead-letters").json()
    finally:
        device.disconnect()
        device.loop_stop()
        release(device)

    assert value(samples, "frigo_broker_connected") == 1
    assert value(samples, "frigo_ingest_received_total") == 2
    assert value(samples, "frigo_ingest_stored_total") == 1
    assert value(samples, "frigo_ingest_rejected_total", reason="invalid_payload") == 1
    assert value(samples, "frigo_dead_letters_total") == 1
    assert value(samples, "frigo_ingest_queue_depth") == 0
    assert [(d["device_id"], d["reason"], d["payload"]) for d in letters] == [
        ("fridge-obs", "invalid_payload", "\x00not an event")
    ]


# --- JSON logs --------------------------------------------------------------------------------


def _json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_formatter_writes_one_object_per_line_with_extras() -> None:
    logger, stream = _json_logger(f"test.json.{uuid.uuid4().hex}")
    started = datetime.now().astimezone()

    logger.warning(
        "rejected message on %s\nsecond line",
        "t/1",
        extra={"topic": "t/1", "reason": "invalid_payload", "device_id": None, "at": T0, "level": "spoof"},
    )
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")

    assert len(stream.getvalue().splitlines()) == 2
    first, second = _lines(stream)
    ts = first.pop("ts")
    assert ts.endswith("Z")
    assert abs(datetime.fromisoformat(ts) - started) < timedelta(seconds=10)
    assert first == {
        "level": "WARNING",
        "logger": logger.name,
        "message": "rejected message on t/1\nsecond line",
        "topic": "t/1",
        "reason": "invalid_payload",
        "device_id": None,
        "at": str(T0),
    }
    assert second["level"] == "ERROR"
    assert second["message"] == "it failed"
    assert second["exc_info"].startswith("Traceback")
    assert "ValueError: boom" in second["exc_info"]


def test_ingest_rejections_carry_topic_reason_and_device(
    service: CloudService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cloud.ingest.batch")

    service.ingestor.process([(topics.events("fridge-3"), b"{}"), ("nowhere", b"{}")])

    records = [r for r in caplog.records if r.name == "cloud.ingest.batch"]
    documents = [json.loads(JsonFormatter().format(r)) for r in records]
    assert [(d["topic"], d["reason"], d["device_id"]) for d in documents] == [
        (topics.events("fridge-3"), "invalid_payload", "fridge-3"),
        ("nowhere", "invalid_topic", None),
    ]
    assert all(d["level"] == "WARNING" and d["logger"] == "cloud.ingest.batch" for d in documents)


@pytest.mark.parametrize("as_json", [True, False])
def test_configure_logging(capsys: pytest.CaptureFixture[str], as_json: bool) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info", json=as_json)
        logging.getLogger("cloud.test").info("hello %s", "there", extra={"device_id": "fridge-1"})
        logging.getLogger("cloud.test").debug("not shown")
        err = capsys.readouterr().err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    (line,) = err.splitlines()
    if as_json:
        document = json.loads(line)
        assert (document["level"], document["logger"], document["message"], document["device_id"]) == (
            "INFO",
            "cloud.test",
            "hello there",
            "fridge-1",
        )
    else:
        assert line.endswith(" INFO cloud.test: hello there")
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
