"""Batched history changelogs: recovery reads to the Fetch high watermark and loses nothing.

The worker's Faust producer batches (``PROMPTREC_PRODUCER_BATCH_BYTES`` 16384), so a changelog
partition ends in a multi-record batch, where the embedded broker's ListOffsets answer stops
short (BROKER_NOTES (e)). Table recovery reads to the Fetch high watermark instead
(:mod:`promptrec.streams.recovery`); a worker killed with SIGKILL and restarted must continue
every user's history from its exact last value.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from faust.types import TP
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from promptrec.broker.embedded import EmbeddedBroker
from promptrec.streams.offsets import high_watermarks
from promptrec.streams.recovery import true_highwaters
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import ensure_topics
from tests.pipeline_fixtures import Producer, Recorder
from tests.streams.reliability import (
    check_histories,
    interactions,
    publish_catalog,
    settings_for,
    start_worker,
)

pytestmark = pytest.mark.integration


def test_true_highwaters_reach_past_the_last_batch(
    make_settings: Callable[..., StreamSettings],
) -> None:
    settings = make_settings(partitions=2)
    ensure_topics(settings)
    topic = f"{settings.topic_prefix}interactions"
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=500, batch_size=1 << 20
    )
    try:
        for i in range(7):  # one produce request: one batch of 7 records in partition 0
            producer.send(topic, f"r{i}".encode(), partition=0)
        producer.flush()
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        listed = consumer.end_offsets(tps)
    finally:
        consumer.close()
    assert listed[tps[0]] <= 7  # 1 on the embedded broker, 7 on Kafka
    faust_tps = {TP(topic, 0): listed[tps[0]], TP(topic, 1): listed[tps[1]], TP(topic, 9): None}
    with pytest.raises(TimeoutError):  # partition 9 does not exist: no Fetch answer
        asyncio.run(true_highwaters(settings, faust_tps, timeout_s=2.0))
    del faust_tps[TP(topic, 9)]
    marks = asyncio.run(true_highwaters(settings, faust_tps))
    assert marks == {TP(topic, 0): 7, TP(topic, 1): 0}
    assert all(isinstance(tp, TP) for tp in marks)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_batched_changelog_recovers_exact_histories_after_kill_9(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(own_broker.url, tmp_path / "state")
    batched = {"PROMPTREC_PRODUCER_BATCH_BYTES": "16384"}  # the default, spelled out
    producer = Producer(settings)
    publish_catalog(producer, 60)
    recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
    users = 50
    before = interactions(3000, users, 60, seed=11)
    # After the restart every user gets more events: their history values are then written by
    # the second worker, from what it recovered.
    after = [
        {**e, "user_id": f"u{i % users}", "event_id": f"late-{i}"}
        for i, e in enumerate(interactions(2 * users, users, 60, seed=12))
    ]
    first = start_worker(settings, tmp_path / "worker-1.log", **batched)
    try:
        first.wait_ready()
        for event in before:
            producer.send("interactions", event["user_id"], event)
        producer.flush()
        wanted = {e["event_id"] for e in before}
        recs.wait_for(lambda rs: wanted <= {r["source_event_id"] for r in rs}, timeout=400)
        # Every answer is out, so its batch's changelog writes were flushed before the commit
        # that followed; kill -9 leaves no clean shutdown flush.
        changelog = f"{settings.effective_app_id}-history-changelog"
        tps = [TopicPartition(changelog, p) for p in range(settings.partitions)]
        marks = high_watermarks(settings, tps)
        consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
        try:
            listed = consumer.end_offsets(tps)
        finally:
            consumer.close()
        # The case under test: some changelog partition ends in a multi-record batch. (On
        # Kafka both are equal and this test checks plain recovery.)
        print({"listed": list(listed.values()), "high_watermarks": list(marks.values())})
        assert any(listed[tp] < marks[tp] for tp in tps), "no multi-record changelog batch"
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()

        second = start_worker(settings, tmp_path / "worker-2.log", **batched)
        try:
            for event in after:
                producer.send("interactions", event["user_id"], event)
            producer.flush()
            late = {e["event_id"] for e in after}
            recs.wait_for(lambda rs: late <= {r["source_event_id"] for r in rs}, timeout=400)
        finally:
            second.stop()
    finally:
        first.stop()
        recs.close()
        producer.close()
    # Counts, event ids and items of every user: the second worker appended to the exact
    # values the first one wrote last.
    check_histories(settings, before + after)
