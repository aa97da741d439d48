"""/readyz is 200 only once the agents serve: the catalog *and* the model-updates replay are done.

The model replay is slowed down with the fault-injection hook (the head rebase before the replay
fails three times and is retried with backoff, ~2 s), while the empty catalog is replayed at
once: during that window the worker must answer 503 with ``model: false``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

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


def readyz(port: int) -> tuple[int, dict[str, Any]] | None:
    """(status, body) of ``/readyz``, None while the endpoint is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


def test_readyz_waits_for_the_model_replay(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = settings_for(broker.url, tmp_path / "state", partitions=1)
    producer = Producer(settings)
    # One record on model-updates: the worker rebases its head before replaying it (and
    # dead-letters it, it is junk). The catalog topics stay empty until the worker is ready.
    producer.send("model-updates", "junk", b"not a head update")
    producer.flush()
    worker = start_worker(settings, tmp_path / "worker.log", PROMPTREC_FAULT_INJECTION="sync=3")
    answers: list[tuple[int, dict[str, Any]]] = []
    try:
        deadline = time.monotonic() + 120
        while not answers or answers[-1][0] != 200:
            assert worker.alive, worker.log_tail()
            assert time.monotonic() < deadline, f"never ready: {answers[-3:]}"
            got = readyz(settings.metrics_port)
            if got is not None:
                answers.append(got)
            time.sleep(0.05)
        waiting = [
            checks
            for status, body in answers
            if (checks := body["checks"])["catalog"] and not checks["model"]
        ]
        assert waiting, "the catalog was never ready before the model (the test lost its window)"
        for status, body in answers:
            assert (status == 200) == (body["status"] == "ok")
            if status == 200:
                assert body["checks"]["model"] and body["checks"]["catalog"], body
            if not body["checks"]["model"]:
                assert status == 503, body
        assert worker.metric("promptrec_stage_retries_total", stage="sync") == 3
        # Ready means serving: a click right now is answered.
        publish_catalog(producer, 4)
        recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
        try:
            answer_once_indexed(worker, producer, recs, 4)
        finally:
            recs.close()
    finally:
        worker.stop()
        producer.close()
