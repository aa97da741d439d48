"""Broker stall: SIGSTOP the broker for 15 s mid-stream; the worker carries on by itself.

The test has its own broker (pausing the session's would stall other tests' fixtures).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptrec.broker.embedded import EmbeddedBroker
from tests.pipeline_fixtures import Producer, Recorder
from tests.streams.reliability import interactions, publish_catalog, settings_for, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STALL_S = 15.0


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker()
    b.start()
    try:
        yield b
    finally:
        b.resume()
        b.stop()


def test_worker_survives_a_15s_broker_stall(own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = settings_for(own_broker.url, tmp_path / "state", partitions=2)
    producer = Producer(settings)
    publish_catalog(producer, 40)
    recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        pid = worker.proc.pid if worker.proc else None
        events = interactions(600, 30, 40)

        def feed() -> None:  # 20 events/s for 30 s; sends buffer while the broker is stopped
            for e in events:
                e["ts"] = int(time.time() * 1000)
                producer.send("interactions", e["user_id"], e)
                time.sleep(0.05)
            producer.flush()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        time.sleep(6)
        own_broker.pause()
        time.sleep(STALL_S)
        own_broker.resume()
        feeder.join(timeout=120)
        assert not feeder.is_alive()
        wanted = {e["event_id"] for e in events}
        recs.wait_for(lambda rs: wanted <= {r["source_event_id"] for r in rs}, timeout=180)
        # The stall is visible in the end-to-end latency histogram: events of the stall
        # waited for seconds, against milliseconds before and after.
        m = worker.metrics()
        key = "promptrec_event_to_recommendation_seconds_bucket"
        under_5s = m[(key, (("le", "5.0"),))]
        total = m[("promptrec_event_to_recommendation_seconds_count", ())]
        assert worker.alive and worker.proc and worker.proc.pid == pid
        print(f"recommendations: {total:.0f}, slower than 5 s: {total - under_5s:.0f}")
        assert total - under_5s > 0
    finally:
        worker.stop()
        recs.close()
        producer.close()
