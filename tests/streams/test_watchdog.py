"""The stall watchdog heals a worker whose committed offset lies inside a multi-record batch.

The embedded broker already has Tansu's mid-batch fetch fix, so the worker emulates the v0.6.0
behaviour on its input fetches (``PROMPTREC_EMULATE_MIDBATCH_FETCH_BUG``, see
``promptrec/streams/fetch_faults.py``); broker, records, offsets and group are real. A worker is
stopped in the middle of a 3,000-record producer batch; a successor without the watchdog hears
nothing; one with it counts the stall, seeks back, and answers the rest, each event once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from pydantic import ValidationError

from promptrec.broker.embedded import EmbeddedBroker
from promptrec.streams.settings import StreamSettings
from tests.pipeline_fixtures import Producer, Recorder, WorkerProcess
from tests.streams.reliability import (
    check_histories,
    committed,
    interactions,
    publish_catalog,
    settings_for,
    stalls,
    start_worker,
)

STALL_TIMEOUT_S = "5"  # short, so the test does not wait the 30 s default
# How long the successor without the watchdog must stay silent after it owns the partition.
# The emulated bug never lets it fetch, so any window shows it; this one is long enough for
# many fetch waits (20 ms) and about three commit intervals (2.8 s).
SILENT_WINDOW_S = 8.0
N_ITEMS = 40
FIRST, SECOND = 200, 3000  # records of the two producer batches


def test_stall_timeout_setting_rejects_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("-1", "soon", "nan-ish"):
        monkeypatch.setenv("PROMPTREC_STALL_TIMEOUT_S", bad)
        with pytest.raises(ValidationError, match="stall_timeout_s"):
            StreamSettings()
    monkeypatch.setenv("PROMPTREC_STALL_TIMEOUT_S", "0")
    assert StreamSettings().stall_timeout_s == 0
    monkeypatch.setenv("PROMPTREC_EMULATE_MIDBATCH_FETCH_BUG", "maybe")
    with pytest.raises(ValidationError, match="emulate_midbatch_fetch_bug"):
        StreamSettings()


def produce_one_batch(settings: StreamSettings, events: list[dict[str, Any]]) -> list[int]:
    """Send ``events`` in one produce request (one record batch); returns their offsets."""
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5000,  # flush() sends at once; the linger only keeps the batch whole
        batch_size=4 << 20,
        max_request_size=8 << 20,
    )
    try:
        topic = f"{settings.topic_prefix}interactions"
        futures = [
            producer.send(topic, key=e["user_id"].encode(), value=json.dumps(e).encode())
            for e in events
        ]
        producer.flush()
        return [f.get(timeout=30).offset for f in futures]
    finally:
        producer.close()


def wait_owned(worker: WorkerProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while worker.metric("promptrec_assigned_partitions", topic="interactions") < 1:
        assert worker.alive, worker.log_tail()
        assert time.monotonic() < deadline, f"no partition assigned:\n{worker.log_tail()}"
        time.sleep(0.5)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_watchdog_heals_a_worker_stuck_inside_a_batch(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(own_broker.url, tmp_path / "state", partitions=1)
    producer = Producer(settings)
    publish_catalog(producer, N_ITEMS)
    producer.close()
    recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
    env = {
        "PROMPTREC_STALL_TIMEOUT_S": STALL_TIMEOUT_S,
        "PROMPTREC_EMULATE_MIDBATCH_FETCH_BUG": "1",
    }
    events = interactions(FIRST + SECOND, 100, N_ITEMS, seed=13)
    by_id = {e["event_id"]: i for i, e in enumerate(events)}
    first = start_worker(settings, tmp_path / "w1.log", **env)
    try:
        first.wait_ready()
        offsets = produce_one_batch(settings, events[:FIRST])
        offsets += produce_one_batch(settings, events[FIRST:])
        assert offsets == list(range(FIRST + SECOND))
        # Stop the worker gracefully a fifth into the second batch: it commits what it answered.
        recs.wait_for(lambda rs: len(rs) >= FIRST + SECOND // 5, timeout=300)
        # It consumed from batch bases only (the bug never bit) and went through a backlog with
        # the watchdog at 5 s: nothing counts as a stall.
        assert stalls(first) == 0
        assert first.stop() == 0
    finally:
        first.stop()
    resume_at = committed(settings)
    answered_before = len(recs.records)
    print(f"first worker: {answered_before} answered, committed offset {resume_at}")
    assert FIRST < resume_at < FIRST + SECOND, "the committed offset is not inside the batch"

    # Without the watchdog, the successor positioned inside the last batch hears nothing.
    silent = start_worker(settings, tmp_path / "w-off.log", PROMPTREC_STALL_TIMEOUT_S="0", **{
        "PROMPTREC_EMULATE_MIDBATCH_FETCH_BUG": "1"
    })  # fmt: skip
    try:
        silent.wait_ready()
        wait_owned(silent)
        time.sleep(SILENT_WINDOW_S)
        recs.poll()
        heard = [
            r for r in recs.records[answered_before:] if r["worker"].endswith(f":{silent.proc.pid}")
        ]  # type: ignore[union-attr]
        assert not heard, f"the worker without watchdog answered {len(heard)} events"
    finally:
        silent.stop()
    assert committed(settings) == resume_at

    healed = start_worker(settings, tmp_path / "w2.log", **env)
    try:
        healed.wait_ready()
        wanted = {e["event_id"] for e in events}
        recs.wait_for(lambda rs: wanted <= {r["source_event_id"] for r in rs}, timeout=300)
        # The one series of this partition, scraped from the worker's /metrics.
        counted = healed.metric(
            "promptrec_partition_stalls_total", topic="interactions", partition="0"
        )
        name = f":{healed.proc.pid}"  # type: ignore[union-attr]
        # The watchdog logs "moves again" on its next sampling tick after the partition moved,
        # which can come after the last answer: wait for the line (a bound on a hang, not a
        # speed check).
        log_deadline = time.monotonic() + 60
        log = (tmp_path / "w2.log").read_text(errors="replace")
        while "moves again" not in log and time.monotonic() < log_deadline:
            time.sleep(0.5)
            log = (tmp_path / "w2.log").read_text(errors="replace")
    finally:
        healed.stop()
    recs.close()

    sources = Counter(r["source_event_id"] for r in recs.records)
    lost = wanted - set(sources)
    duplicates = sum(n - 1 for n in sources.values() if n > 1)
    mine = Counter(r["source_event_id"] for r in recs.records if r["worker"].endswith(name))
    print(json.dumps({
        "failure": "committed offset inside the last batch (emulated Tansu v0.6.0 fetch)",
        "events_sent": len(events), "committed_offset": resume_at, "events_lost": len(lost),
        "duplicate_recommendations": duplicates, "stalls_counted": counted,
    }))  # fmt: skip
    print("\n".join(line for line in log.splitlines() if "stall" in line or "moves again" in line))
    assert counted >= 1, log[-3000:]
    assert "stalled at offset" in log and "moves again" in log
    assert not lost
    # The seek went back before the committed offset; Faust dropped what it had read, so the
    # healed worker answered nothing twice and nothing below where the group had got to.
    assert max(mine.values()) == 1
    assert min(by_id[e] for e in mine) == resume_at
    assert set(mine) == {e["event_id"] for e in events[resume_at:]}
    check_histories(settings, events)
