"""Worker metrics: names, bounded labels, zero-initialised series, the HTTP endpoint, lag."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from promptrec.broker.embedded import free_port
from promptrec.observability.lag import LagPoller, compute_lag
from promptrec.observability.metrics import (
    INPUT_TOPICS,
    OUTCOMES,
    RETRY_STAGES,
    STAGES,
    Metrics,
    RunningAUC,
)
from promptrec.streams.clients import make_admin
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames, ensure_topics

# Every label name a promptrec metric may carry; all of them take values from bounded sets.
BOUNDED_LABELS = {
    "topic", "outcome", "reason", "source", "strategy", "stage", "agent", "partition", "result",
    "le", "device", "dtype", "index_kind", "index_device", "model",
}  # fmt: skip


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_metric_is_prefixed_and_labels_are_bounded() -> None:
    m = Metrics()
    m.set_info({"device": "cpu", "dtype": "float32", "model": "x"})
    m.consumer_lag.labels("interactions", "3").set(5)
    families = list(m.registry.collect())
    assert len(families) > 20
    for family in families:
        assert family.name.startswith("promptrec_"), family.name
        for s in family.samples:
            assert set(s.labels) <= BOUNDED_LABELS, (s.name, s.labels)


def test_known_label_values_exist_at_zero_before_the_first_event() -> None:
    # rate() only sees an increment of a series that existed before it.
    got = samples(Metrics())
    for topic in INPUT_TOPICS:
        for outcome in OUTCOMES:
            key = ("promptrec_events_total", (("outcome", outcome), ("topic", topic)))
            assert got[key] == 0.0
    for stage in STAGES:
        assert got[("promptrec_stage_seconds_count", (("stage", stage),))] == 0.0
    for stage in RETRY_STAGES:
        assert got[("promptrec_stage_retries_total", (("stage", stage),))] == 0.0
    assert got[("promptrec_rebalances_total", ())] == 0.0


def test_every_label_the_code_uses_is_pre_initialised() -> None:
    # Independent of metrics.py's own lists: the stages the settings can fault-inject (each is a
    # retried stage), every literal `retries.labels("...")` in the source, and the logical input
    # topics of TopicNames. A label used by the code but missing from the lists fails here.
    import re
    from pathlib import Path

    from promptrec.streams.settings import _FAULT_STAGES

    source = "\n".join(p.read_text() for p in Path("promptrec").rglob("*.py"))
    used = set(_FAULT_STAGES) | set(re.findall(r"retries\.labels\(\"(\w+)\"\)", source))
    assert "publish" in used
    got = samples(Metrics())
    for stage in sorted(used):
        assert got.get(("promptrec_stage_retries_total", (("stage", stage),))) == 0.0, stage
    names = TopicNames.from_settings(StreamSettings(topic_prefix="p."))
    logical = {
        names.items: "items",
        names.users: "users",
        names.interactions: "interactions",
        names.requests: "recommendation-requests",
        names.feedback: "feedback",
    }
    for topic in logical.values():
        key = ("promptrec_events_total", (("outcome", "ok"), ("topic", topic)))
        assert got.get(key) == 0.0, topic


def test_process_memory_is_the_current_rss() -> None:
    m = Metrics()
    m.refresh_process()
    got = samples(m)
    rss = got[("promptrec_process_resident_memory_bytes", ())]
    peak = got[("promptrec_process_max_rss_bytes", ())]
    assert 1e6 < rss <= peak * 1.01


def test_assignment_sets_partition_counts_and_drops_lag_of_revoked_partitions() -> None:
    m = Metrics()
    m.consumer_lag.labels("interactions", "0").set(3)
    m.consumer_lag.labels("interactions", "1").set(4)
    m.set_assignment({"interactions": 1, "feedback": 2}, [("interactions", 1)])
    got = samples(m)
    assert got[("promptrec_assigned_partitions", (("topic", "interactions"),))] == 1
    assert got[("promptrec_assigned_partitions", (("topic", "feedback"),))] == 2
    assert got[("promptrec_assigned_partitions", (("topic", "recommendation-requests"),))] == 0
    lag = {k: v for k, v in got.items() if k[0] == "promptrec_consumer_lag"}
    assert lag == {("promptrec_consumer_lag", (("partition", "0"), ("topic", "interactions"))): 3}


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),
        ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),
    ],
)
def test_running_auc(scores: list[float], labels: list[int], expected: float) -> None:
    auc = RunningAUC()
    auc.update_many(np.array(scores), np.array(labels))
    assert auc.value() == pytest.approx(expected)


def test_online_auc_is_nan_until_both_labels_are_seen() -> None:
    m = Metrics()
    assert math.isnan(samples(m)[("promptrec_online_auc", ())])
    m.observe_auc(np.array([0.9, 0.8]), np.array([1.0, 1.0]))
    assert math.isnan(samples(m)[("promptrec_online_auc", ())])
    m.observe_auc(np.array([0.95]), np.array([0.0]))  # the negative outranks both positives
    assert samples(m)[("promptrec_online_auc", ())] == 0.0


def test_running_auc_needs_both_labels_and_forgets_old_pairs() -> None:
    auc = RunningAUC(window=4)
    auc.update_many(np.array([0.9, 0.8]), np.array([1, 1]))
    assert auc.value() is None
    # Evicts the first two: every positive left scores below every negative (with them: 0.5).
    auc.update_many(np.array([0.1, 0.2, 0.7, 0.3]), np.array([1, 1, 0, 0]))
    assert auc.value() == pytest.approx(0.0)


def test_http_endpoint_serves_metrics_and_extra_routes() -> None:
    m = Metrics()
    m.events.labels("interactions", "ok").inc(7)
    port = m.serve(
        "127.0.0.1",
        free_port(),
        routes={"/down": lambda: (503, "application/json", json.dumps({"x": 1}).encode())},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        values = {
            (s.name, s.labels.get("topic"), s.labels.get("outcome")): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }
        assert values[("promptrec_events_total", "interactions", "ok")] == 7
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/down", timeout=5)
        assert err.value.code == 503 and json.loads(err.value.read()) == {"x": 1}
    finally:
        m.close()
    assert Metrics().serve("127.0.0.1", 0) == 0  # port 0 disables the endpoint


def test_compute_lag() -> None:
    a, b, c = (TopicPartition("t", p) for p in range(3))
    lag = compute_lag({a: 10, b: 10, c: 5}, {a: 4, b: -1, c: 7}, {b: 2})
    # committed; no commit yet -> from the earliest offset; a commit ahead of the read -> 0.
    assert lag == {a: 6, b: 8, c: 0}


@pytest.mark.integration
def test_lag_poller_reads_committed_and_end_offsets(
    make_settings: Callable[..., StreamSettings],
) -> None:
    settings = make_settings(partitions=2)
    ensure_topics(settings)
    topic = TopicNames.from_settings(settings).interactions
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for _ in range(10):
        producer.send(topic, key=b"k", value=b"v", partition=0).get(timeout=10)
    producer.close()
    m = Metrics()
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    poller = LagPoller(
        settings.effective_app_id,
        m,
        {topic: "interactions"},
        lambda: tps,
        admin_factory=lambda: make_admin(settings),
    )
    try:
        assert poller.poll_once() == {tps[0]: 10, tps[1]: 0}
        consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.effective_app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        consumer.assign([tps[0]])
        read = 0
        while read < 4:
            for batch in consumer.poll(timeout_ms=500, max_records=4 - read).values():
                read += len(batch)
        consumer.commit()
        consumer.close()
        assert poller.poll_once()[tps[0]] == 6
    finally:
        poller.close()
    got = samples(m)
    assert got[("promptrec_consumer_lag", (("partition", "0"), ("topic", "interactions")))] == 6


@pytest.mark.integration
def test_lag_of_batched_records_comes_from_fetch_high_watermarks(
    make_settings: Callable[..., StreamSettings],
) -> None:
    # 20 records in one producer batch: the embedded broker's ListOffsets "latest" says 1, the
    # Fetch high watermark (what the worker's poller reads) says 20.
    from promptrec.streams.offsets import high_watermarks

    settings = make_settings(partitions=1)
    ensure_topics(settings)
    topic = TopicNames.from_settings(settings).interactions
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=200
    )
    futures = [producer.send(topic, key=b"k", value=b"v", partition=0) for _ in range(20)]
    producer.flush()
    assert all(f.get(timeout=10) for f in futures)
    producer.close()
    tps = [TopicPartition(topic, 0)]
    poller = LagPoller(
        settings.effective_app_id,
        Metrics(),
        {topic: "interactions"},
        lambda: tps,
        admin_factory=lambda: make_admin(settings),
        end_offsets=lambda parts: high_watermarks(settings, parts),
    )
    try:
        assert poller.poll_once() == {tps[0]: 20}
    finally:
        poller.close()
