"""The failure explainer of the reliability tests, on a real broker: it must name the gap right."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from kafka import KafkaProducer

from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import ensure_topics
from tests.streams.reliability import explain_missing, interactions

pytestmark = pytest.mark.integration


def test_explain_missing_names_the_unanswered_range(
    make_settings: Callable[..., StreamSettings],
) -> None:
    settings = make_settings(partitions=1)
    ensure_topics(settings)
    events = interactions(10, 3, 5)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    for event in events:
        producer.send(f"{settings.topic_prefix}interactions", value=json.dumps(event).encode())
    producer.send(f"{settings.topic_prefix}interactions", value=b"not json")
    producer.flush()
    producer.close()
    # Events 3..5 unanswered; the rest answered by worker "w1", event 6 also by "w2".
    recs = [
        {"source_event_id": e["event_id"], "worker": "w1"}
        for i, e in enumerate(events)
        if i not in (3, 4, 5)
    ]
    recs.append({"source_event_id": events[6]["event_id"], "worker": "w2"})
    text = explain_missing(settings, {e["event_id"] for e in events}, recs)
    assert text == (
        "partition 0: offsets 0..9, committed None, unanswered 3..5 (3 events; answered before "
        "by ['w1'], after by ['w1', 'w2'])"
    ), text
