"""The hand-over from table recovery to the streams loses nothing (promptrec.streams.recovery).

faust-streaming resumes the stream partitions and seeks them to the committed offsets while the
consumer's flow runs, then empties the agents' input queues: records fetched in between were
counted as read and emptied away. The kill -9 test lost 1,008 events per partition that way.
Here a real worker starts, as a restarted one does, at committed offsets below a topic that
already holds its whole input, with the testing aid ``PROMPTREC_EMULATE_SLOW_SEEK_S`` holding the
seek back for a few seconds, long enough for the fetch loop to hand records over if the flow let
it. Every event must be answered, and every partition's committed offset must reach its end (a
hole below the committed offset stops it). On faust-streaming without the fix it loses about
1,000 events.
"""

from __future__ import annotations

import asyncio
import json
import time
import types
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from promptrec.broker.embedded import EmbeddedBroker
from promptrec.streams import recovery
from promptrec.streams.clients import make_admin
from promptrec.streams.offsets import high_watermarks
from promptrec.streams.settings import StreamSettings
from tests.pipeline_fixtures import Producer, Recorder
from tests.streams.reliability import (
    delivery,
    interactions,
    publish_catalog,
    settings_for,
    start_worker,
    wait_all_answered,
)

N_EVENTS = 3_000
N_USERS = 300
N_ITEMS = 100
SLOW_SEEK_S = 3.0  # over the fetch loop's 1 s getmany wait: a fetch lands while it waits


class _Consumer:
    """The flow switch of a Faust consumer (what stop_flow_first reads and calls)."""

    def __init__(self) -> None:
        self.flow_active = True
        self.calls: list[str] = []

    def stop_flow(self) -> None:
        self.flow_active = False
        self.calls.append("stop_flow")


@pytest.mark.parametrize("step", ["_on_recovery_completed", "_resume_streams"])
def test_recovery_ends_with_the_flow_stopped(step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both of Faust's end-of-recovery steps run with the flow stopped, whatever they do."""
    consumer = _Consumer()
    seen: list[tuple[bool, int]] = []

    async def original(self: Any, generation_id: int = 0) -> None:
        seen.append((self.app.consumer.flow_active, generation_id))

    original_name = {"_on_recovery_completed": "_original_completed"}.get(
        step, "_original_resume_streams"
    )
    monkeypatch.setattr(recovery, original_name, original)
    fake_recovery = types.SimpleNamespace(app=types.SimpleNamespace(consumer=consumer))
    asyncio.run(getattr(recovery, step)(fake_recovery, 7))
    assert seen == [(False, 7)] and consumer.calls == ["stop_flow"]


def test_slow_seek_setting_rejects_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("-1", "61", "later"):
        monkeypatch.setenv("PROMPTREC_EMULATE_SLOW_SEEK_S", bad)
        with pytest.raises(ValidationError, match="emulate_slow_seek_s"):
            StreamSettings()
    monkeypatch.setenv("PROMPTREC_EMULATE_SLOW_SEEK_S", "0")
    assert StreamSettings().emulate_slow_seek_s == 0


def test_install_replaces_both_steps(tmp_path: Path) -> None:
    from faust.tables.recovery import Recovery

    recovery.install(StreamSettings(state_dir=tmp_path))
    assert Recovery.on_recovery_completed is recovery._on_recovery_completed
    assert Recovery._resume_streams is recovery._resume_streams


def look_restarted(settings: StreamSettings) -> None:
    """Make the worker's start a restart: committed offsets, and a changelog to recover.

    One record at offset 0 of each interactions partition, committed as done by the group (a
    new group has no committed offsets, and its first fetch waits for the positions to be
    reset), and one tombstone in the history changelog (without changelog data Faust starts
    the fetch loop only after the seek).
    """
    topic = f"{settings.topic_prefix}interactions"
    tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
    changelog = f"{settings.effective_app_id}-history-changelog"
    admin = make_admin(settings)
    try:
        admin.create_topics(
            [
                NewTopic(
                    changelog, settings.partitions, 1, topic_configs={"cleanup.policy": "compact"}
                )
            ]
        )
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    for tp in tps:
        producer.send(topic, value=b"processed before", partition=tp.partition)
    producer.send(changelog, key=json.dumps("nobody").encode(), value=None, partition=0)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.effective_app_id,
        enable_auto_commit=False,
    )
    try:
        consumer.assign(tps)
        consumer.commit({tp: OffsetAndMetadata(1, "", -1) for tp in tps})
    finally:
        consumer.close()


def committed_and_ends(settings: StreamSettings) -> dict[int, tuple[int | None, int]]:
    """Per interactions partition: the group's committed offset and the high watermark."""
    topic = f"{settings.topic_prefix}interactions"
    tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
    admin = make_admin(settings)
    try:
        offsets = admin.list_group_offsets({settings.effective_app_id: None})
    finally:
        admin.close()
    group = offsets.get(settings.effective_app_id, {})
    # Fetch high watermarks: the embedded broker's ListOffsets counts batches.
    ends = high_watermarks(settings, tps)
    return {tp.partition: (group[tp].offset if tp in group else None, ends[tp]) for tp in tps}


@pytest.mark.integration
@pytest.mark.slow
def test_records_fetched_while_the_recovery_seeks_are_answered(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(broker.url, tmp_path / "state")
    look_restarted(settings)
    producer = Producer(settings)
    publish_catalog(producer, N_ITEMS)
    events = interactions(N_EVENTS, N_USERS, N_ITEMS, seed=7)
    for event in events:
        producer.send("interactions", event["user_id"], event)
    producer.flush()
    recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
    log_path = tmp_path / "worker.log"
    worker = start_worker(settings, log_path, PROMPTREC_EMULATE_SLOW_SEEK_S=str(SLOW_SEEK_S))
    try:
        worker.wait_ready()
        wait_all_answered(recs, settings, events, timeout=120)
        deadline = time.monotonic() + 60
        while True:
            state = committed_and_ends(settings)
            if all(c == end for c, end in state.values()) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert worker.alive
    finally:
        worker.stop()
        recs.close()
        producer.close()
    log = log_path.read_text(errors="replace")
    assert "testing aid on: each seek to the committed offsets waits" in log
    assert delivery(events, recs.records)["events_lost"] == 0
    assert all(c == end for c, end in state.values()), f"committed vs end: {state}"
