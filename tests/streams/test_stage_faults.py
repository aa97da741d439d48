"""Failing stages: an encoder or recommend error is retried with backoff, then dead-lettered."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from promptrec.broker.embedded import EmbeddedBroker
from tests.pipeline_fixtures import Producer, Recorder
from tests.streams.reliability import catalog, interactions, settings_for, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_failing_batches_are_retried_then_dead_lettered(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(broker.url, tmp_path / "state", partitions=1)
    producer = Producer(settings)
    # One item: the embedded broker may hand a multi-record batch to the catalog agent in two
    # micro-batches, and then only the first would meet the injected faults.
    doomed = catalog(1, seed=9)
    for item in doomed:
        item["item_id"] = "doomed-" + item["item_id"]
        producer.send("items", item["item_id"], item)
    producer.flush()
    dead = Recorder(settings, f"{settings.topic_prefix}dead-letter")
    recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
    # 4 runs of a stage = the first try and its 3 retries. The catalog replay batch fails all 4;
    # the first recommend batch fails 4 (dead-lettered), the next one fails twice, then passes.
    worker = start_worker(
        settings, tmp_path / "worker.log", PROMPTREC_FAULT_INJECTION="encode=4,recommend=6"
    )
    try:
        worker.wait_ready()
        got = dead.wait_for(lambda rs: len(rs) >= 1)
        assert {r["reason"] for r in got} == {"processing_error"}
        assert {r["key_text"] for r in got} == {i["item_id"] for i in doomed}
        assert all("encode failed" in r["detail"] for r in got)

        for item in catalog(20):  # the stage works again: these are indexed
            producer.send("items", item["item_id"], item)
        producer.flush()
        deadline = time.monotonic() + 60
        while worker.metric("promptrec_index_items") < 20:  # interactions need indexed items
            assert time.monotonic() < deadline, "catalog not indexed"
            time.sleep(0.2)
        first, second = interactions(2, 2, 20)
        producer.send("interactions", first["user_id"], first)
        producer.flush()
        got = dead.wait_for(lambda rs: len(rs) >= 2)
        assert got[1]["reason"] == "processing_error" and "recommend failed" in got[1]["detail"]
        producer.send("interactions", second["user_id"], second)
        producer.flush()
        recs.wait_for(lambda rs: any(r["source_event_id"] == second["event_id"] for r in rs))
        assert worker.metric("promptrec_stage_retries_total", stage="encode") == 3
        assert worker.metric("promptrec_stage_retries_total", stage="recommend") == 5
        assert worker.metric("promptrec_index_items") == 20
        assert worker.alive
    finally:
        worker.stop()
        dead.close()
        recs.close()
        producer.close()
