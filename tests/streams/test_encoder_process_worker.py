"""A worker with ``PROMPTREC_ENCODER_PROCESS=true``: live catalog items go through the child.

Real broker, real MiniLM in the child process, FAISS; the child is gone when the worker stops.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from promptrec.broker.embedded import EmbeddedBroker
from tests.pipeline_fixtures import Producer, Recorder
from tests.streams.reliability import (
    answer_once_indexed,
    publish_catalog,
    settings_for,
    start_worker,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_live_catalog_is_encoded_in_the_child_and_served(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(broker.url, tmp_path / "state", partitions=1)
    producer = Producer(settings)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log, PROMPTREC_ENCODER_PROCESS="true")
    recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
    try:
        worker.wait_ready()
        publish_catalog(producer, 6)  # after ready: the live (lower-priority) path
        rec = answer_once_indexed(worker, producer, recs, 6, timeout=90)
        assert rec["items"], rec
        found = re.search(r"encoder process (\d+) ready", log.read_text(errors="replace"))
        assert found, worker.log_tail()
        child = int(found.group(1))
        os.kill(child, 0)  # running while the worker serves
    finally:
        recs.close()
        worker.stop()
        producer.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"encoder child {child} still running after the worker stopped")
