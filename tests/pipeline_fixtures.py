"""Fixtures for end-to-end tests: a real worker process and recorders of output topics."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.cluster import Samples, scrape_metrics, stop_process, worker_command
from bench.common import now_ms
from promptrec.broker.embedded import EmbeddedBroker, free_port
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames, ensure_topics

# A catalog whose topics a text encoder can tell apart: a user who only touches one topic
# should get that topic's items.
TOPICS: dict[str, list[str]] = {
    "hiking": [
        "Alpine trail hiking boots",
        "Trekking backpack 45 litres for mountain hikes",
        "Waterproof hiking jacket for alpine trails",
        "Topographic hiking map of the Alps",
        "Headlamp for night hikes on mountain trails",
        "Hiking socks made of merino wool",
        "Lightweight tent for backpacking trips",
        "Guide book: the 50 best mountain hiking trails",
    ],
    "cooking": [
        "Cast iron skillet for searing steak",
        "Italian pasta cookbook with 100 recipes",
        "Chef's knife of Japanese steel",
        "Sourdough bread baking kit",
        "Spice rack with 24 cooking spices",
        "Non-stick frying pan for omelettes",
        "Slow cooker for stews and soups",
        "Recipe book: vegetarian dinners in 30 minutes",
    ],
    "jazz": [
        "Blue Note jazz classics on vinyl",
        "Miles Davis trumpet jazz album",
        "Saxophone solos of bebop jazz",
        "Live jazz piano trio recording",
        "Smooth jazz for late evenings",
        "Jazz guitar standards songbook",
        "John Coltrane saxophone jazz record",
        "Big band swing jazz collection",
    ],
    "space": [
        "Astronomy telescope for viewing planets",
        "Documentary about the Mars rover exploration",
        "Star atlas of the night sky constellations",
        "Book about black holes and galaxies",
        "Model rocket kit of the Apollo Saturn V",
        "Planetarium projector of stars for the ceiling",
        "Biography of astronauts on the space station",
        "Guide to the solar system planets and moons",
    ],
}


def catalog_items() -> list[dict[str, Any]]:
    """The test catalog: ``{topic}-{n}`` item ids with titles and a category attribute."""
    return [
        {
            "item_id": f"{topic}-{n}",
            "title": title,
            "text": f"A {topic} product.",
            "attributes": {"category": topic},
        }
        for topic, titles in TOPICS.items()
        for n, title in enumerate(titles)
    ]


def interaction(user: str, item: str, **extra: Any) -> dict[str, Any]:
    """A click of ``user`` on ``item`` now, with a fresh event id; ``extra`` fields override."""
    event = {
        "event_id": uuid.uuid4().hex,
        "user_id": user,
        "item_id": item,
        "type": "click",
        "ts": now_ms(),
    }
    event.update(extra)
    return event


def request(user: str, k: int | None = None) -> dict[str, Any]:
    """A recommendation request of ``user`` now, with a fresh request id."""
    req: dict[str, Any] = {"request_id": uuid.uuid4().hex, "user_id": user, "ts": now_ms()}
    if k is not None:
        req["k"] = k
    return req


def json_bytes(obj: dict[str, Any]) -> bytes:
    """A record value as the tests send it (``json.dumps`` spacing, which byte edits rely on)."""
    return json.dumps(obj).encode()


def dead_letter_bytes(record: dict[str, Any]) -> bytes:
    """The original value a dead-letter record carries (as text or base64)."""
    if record.get("value_text") is not None:
        return str(record["value_text"]).encode()
    return base64.b64decode(record.get("value_base64") or "")


def settings_for(
    broker_url: str, state_dir: Path, partitions: int = 4, **extra: Any
) -> StreamSettings:
    """Fresh topics (created) and a free metrics port, on ``broker_url``."""
    s = StreamSettings(
        broker=broker_url,
        topic_prefix=f"e{uuid.uuid4().hex[:10]}.",
        state_dir=state_dir,
        metrics_port=free_port(),
        partitions=partitions,
        **extra,
    )
    ensure_topics(s)
    return s


class WorkerProcess:
    """``python -m promptrec worker`` as a child process, with its metrics endpoint."""

    def __init__(self, settings: StreamSettings, log_path: Path, env: dict[str, str] | None = None):
        self.settings = settings
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        cmd = worker_command(self.settings, "info")
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> Samples:
        return scrape_metrics(self.settings.metrics_port)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the catalog replay is done (metrics say so)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"worker exited early:\n{self.log_tail()}")
            try:
                if self.metric("promptrec_catalog_ready") == 1.0:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"worker not ready after {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        return stop_process(self.proc, timeout)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Recorder:
    """Reads every partition of a topic from the beginning and keeps the decoded records."""

    def __init__(self, settings: StreamSettings, topic: str):
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )
        parts = self.consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        assert tps, f"topic {topic} missing"
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.records: list[dict[str, Any]] = []

    def poll(self) -> None:
        for batch in self.consumer.poll(timeout_ms=200).values():
            for record in batch:
                self.records.append(json.loads(record.value))

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll until ``predicate(records)`` holds; fail with what was seen otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if predicate(self.records):
                return self.records
        raise AssertionError(f"condition not met after {timeout} s; {len(self.records)} records")

    def close(self) -> None:
        self.consumer.close()


class Producer:
    """kafka-python producer of JSON (or raw bytes) keyed records."""

    def __init__(self, settings: StreamSettings):
        self.names = TopicNames.from_settings(settings)
        self.producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")

    def send(self, logical: str, key: str | None, value: dict[str, Any] | bytes | None) -> None:
        topic = self.names.resolve(logical)
        raw = value if isinstance(value, bytes | None) else json.dumps(value).encode()
        self.producer.send(topic, key=key.encode() if key is not None else None, value=raw)

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()


@pytest.fixture(scope="module")
def e2e_settings(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> StreamSettings:
    """Settings of one end-to-end scenario: its own topics, state folder and metrics port."""
    return settings_for(broker.url, tmp_path_factory.mktemp("state"), partitions=2)


@pytest.fixture(scope="module")
def worker(
    e2e_settings: StreamSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A real worker on the module's topics, with the default MiniLM encoder."""
    proc = WorkerProcess(
        e2e_settings,
        tmp_path_factory.mktemp("logs") / "worker.log",
        env={"PROMPTREC_PARTITIONS": "2", "PROMPTREC_CHECKPOINT_INTERVAL_S": "2"},
    )
    yield proc
    proc.stop()


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of one test alone, for tests that kill a worker and wait for its successor.

    On the session broker, after the rest of the suite has run, a successor once took over the
    dead worker's partitions (new generation, recovery done) and then answered nothing for
    minutes; in isolation it always worked. Not understood yet (see the README's broker notes),
    so these tests run on a fresh broker.
    """
    b = EmbeddedBroker()
    b.start()
    try:
        yield b
    finally:
        b.stop()
