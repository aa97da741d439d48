"""Failure atomicity: a batch whose stage fails changes no state, so its replay is processed once.

A real worker on the real broker, with the fault-injection hook failing the first recommend
batch and the first learn batch through all their retries. Their events are dead-lettered as
``processing_error``; re-publishing the dead-letter records' original bytes with their original
keys must then be answered (interactions) or learned (feedback) exactly once, and the recent
popularity fallback must count every click exactly once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promptrec.broker.embedded import EmbeddedBroker
from tests.pipeline_fixtures import Producer, Recorder, WorkerProcess, dead_letter_bytes
from tests.streams.reliability import (
    check_histories,
    feedback_for,
    interactions,
    publish_catalog,
    settings_for,
    start_worker,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def replay(producer: Producer, letters: list[dict[str, Any]]) -> None:
    """Re-publish dead-lettered records as they were first sent: same topic, key and bytes."""
    for letter in letters:
        key = letter["key_text"]
        producer.producer.send(
            letter["original_topic"], key=key.encode(), value=dead_letter_bytes(letter)
        )
    producer.flush()


def wait_metric(worker: WorkerProcess, name: str, done: Callable[[float], bool]) -> float:
    """Poll a worker metric until ``done(value)``; the value."""
    deadline = time.monotonic() + 60
    while True:
        value = worker.metric(name)
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{name} stuck at {value}\n{worker.log_tail()}"
        time.sleep(0.2)


def failed_of(dead: Recorder, stage: str) -> list[dict[str, Any]]:
    return [r for r in dead.records if f"{stage} failed" in r["detail"]]


def test_failed_batches_replayed_from_the_dead_letter_topic_are_processed_once(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(broker.url, tmp_path / "state", partitions=1)
    producer = Producer(settings)
    publish_catalog(producer, 20)
    dead = Recorder(settings, f"{settings.topic_prefix}dead-letter")
    recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
    # 4 runs = the first try and its 3 retries: the first recommend batch and the first learn
    # batch fail for good.
    worker = start_worker(
        settings, tmp_path / "worker.log", PROMPTREC_FAULT_INJECTION="recommend=4,learn=4"
    )
    try:
        worker.wait_ready()
        wait_metric(worker, "promptrec_index_items", lambda v: v >= 20)

        # -- interactions ------------------------------------------------------------------
        events = interactions(40, users=6, items=20, seed=5)
        for e in events:
            producer.send("interactions", e["user_id"], e)
        producer.flush()
        ids = {e["event_id"] for e in events}

        def settled(rs: list[dict[str, Any]]) -> bool:
            answered = {r["source_event_id"] for r in rs} & ids
            dead.poll()
            return len(answered) + len(failed_of(dead, "recommend")) >= len(events)

        recs.wait_for(settled)
        failed = failed_of(dead, "recommend")
        assert failed, "the injected recommend fault dead-lettered nothing"
        assert {r["reason"] for r in dead.records} == {"processing_error"}
        replay(producer, failed)
        # A sentinel behind the replay (one partition: read in order).
        sentinel = interactions(1, users=1, items=20, seed=6)[0]
        producer.send("interactions", sentinel["user_id"], sentinel)
        producer.flush()
        recs.wait_for(lambda rs: any(r["source_event_id"] == sentinel["event_id"] for r in rs))
        answers = Counter(r["source_event_id"] for r in recs.records)
        lost = [i for i in ids if answers[i] == 0]
        duplicated = {i: n for i, n in answers.items() if n > 1}
        print(
            f"\ninteractions: sent {len(events)}, failed batch {len(failed)} (replayed), "
            f"lost {len(lost)}, duplicates {len(duplicated)}"
        )
        assert not lost and not duplicated
        # Every click counted once by the popularity fallback, the failed attempts not at all.
        clicks = wait_metric(worker, "promptrec_popularity_clicks", lambda v: v >= 41)
        assert clicks == len(events) + 1
        # Histories hold every event once: the failed batch's events where they were replayed.
        failed_ids = {json.loads(dead_letter_bytes(letter))["event_id"] for letter in failed}
        order = [e for e in events if e["event_id"] not in failed_ids]
        order += [e for e in events if e["event_id"] in failed_ids] + [sentinel]
        deadline = time.monotonic() + 30
        while True:  # the changelog is written asynchronously by the worker's producer
            try:
                check_histories(settings, order)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

        # -- feedback ----------------------------------------------------------------------
        fb = feedback_for(events, every=2)
        for f in fb:
            producer.send("feedback", f["user_id"], f)
        producer.flush()
        seen = len(dead.records)

        def fb_settled(learned: float) -> bool:
            dead.poll()
            return learned + len(failed_of(dead, "learn")) >= len(fb)

        learned = wait_metric(worker, "promptrec_feedback_learned_total", fb_settled)
        failed_fb = failed_of(dead, "learn")
        assert failed_fb, "the injected learn fault dead-lettered nothing"
        assert learned == len(fb) - len(failed_fb)
        assert {r["reason"] for r in dead.records[seen:]} == {"processing_error"}
        replay(producer, failed_fb)
        learned = wait_metric(worker, "promptrec_feedback_learned_total", lambda v: v >= len(fb))
        # Replayed once more, they are duplicates now: the first replay was remembered.
        seen = len(dead.records)
        replay(producer, failed_fb)
        again = dead.wait_for(lambda rs: len(rs) >= seen + len(failed_fb))[seen:]
        assert {r["reason"] for r in again} == {"duplicate_event"}
        assert worker.metric("promptrec_feedback_learned_total") == len(fb)
        print(
            f"feedback: sent {len(fb)}, failed batch {len(failed_fb)} (replayed), "
            f"lost {len(fb) - int(learned)}, learned twice 0 (second replay: "
            f"{len(again)} duplicate_event)"
        )
        assert worker.alive
    finally:
        worker.stop()
        dead.close()
        recs.close()
        producer.close()
