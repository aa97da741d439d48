"""End to end on the real embedded broker: explanations, similar items, filters, experiments.

One real worker (MiniLM, real FAISS) answers explained, similar-items and filtered requests and
dead-letters malformed ones; a second worker serves a two-arm experiment; a third is started
with a bad experiments file and must refuse to start. The tests run in file order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from promptrec.serving.explain import MODEL_REASON, SIMILAR_REASON
from promptrec.streams.settings import StreamSettings
from tests.pipeline_fixtures import (
    TOPICS,
    Producer,
    Recorder,
    WorkerProcess,
    catalog_items,
    dead_letter_bytes,
    interaction,
    json_bytes,
    now_ms,
    request,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HIKER_ITEMS = ["hiking-0", "hiking-1", "hiking-2"]
DELETED = "jazz-1"  # published, then deleted before the worker starts


@pytest.fixture(scope="module")
def producer(e2e_settings: StreamSettings) -> Iterator[Producer]:
    p = Producer(e2e_settings)
    yield p
    p.close()


@pytest.fixture(scope="module")
def recs(e2e_settings: StreamSettings) -> Iterator[Recorder]:
    r = Recorder(e2e_settings, f"{e2e_settings.topic_prefix}recommendations")
    yield r
    r.close()


@pytest.fixture(scope="module")
def dead(e2e_settings: StreamSettings) -> Iterator[Recorder]:
    r = Recorder(e2e_settings, f"{e2e_settings.topic_prefix}dead-letter")
    yield r
    r.close()


@pytest.fixture(scope="module")
def started(worker: WorkerProcess, producer: Producer, recs: Recorder) -> WorkerProcess:
    for item in catalog_items():
        producer.send("items", item["item_id"], item)
    producer.send("items", DELETED, None)  # tombstone: deleted before the worker ever saw it
    producer.flush()
    worker.start().wait_ready()
    events = [interaction("u-hiker", item) for item in HIKER_ITEMS]
    for event in events:
        producer.send("interactions", "u-hiker", event)
    producer.flush()
    ids = {e["event_id"] for e in events}
    recs.wait_for(lambda rs: ids <= {r["source_event_id"] for r in rs})
    return worker


def answer(producer: Producer, recs: Recorder, req: dict[str, Any], key: str) -> dict[str, Any]:
    """Send one request and return its answer (the record whose source_event_id is its id)."""
    producer.send("recommendation-requests", key, req)
    producer.flush()
    rid = req["request_id"]
    found = recs.wait_for(lambda rs: any(r["source_event_id"] == rid for r in rs))
    return next(r for r in found if r["source_event_id"] == rid)


def test_explained_answer_names_history_items_and_a_reason(
    started: WorkerProcess, producer: Producer, recs: Recorder
) -> None:
    rec = answer(producer, recs, {**request("u-hiker", k=5), "explain": True}, "u-hiker")
    assert len(rec["items"]) == 5
    for item in rec["items"]:
        assert item["reason"] == MODEL_REASON
        assert set(item["because"]) <= set(HIKER_ITEMS), item
    # The hiker's top answers are hiking items: they are "because of" some history item.
    assert any(item["because"] for item in rec["items"])
    plain = answer(producer, recs, request("u-hiker", k=5), "u-hiker")
    assert all(set(item) == {"item_id", "score"} for item in plain["items"])
    assert "arm" not in plain and "experiment" not in plain and "item_id" not in plain


def test_similar_items_exclude_the_item_and_deleted_items(
    started: WorkerProcess, producer: Producer, recs: Recorder
) -> None:
    req = {"request_id": uuid.uuid4().hex, "item_id": "jazz-0", "k": 10, "ts": now_ms()}
    rec = answer(producer, recs, req, "jazz-0")
    ids = [i["item_id"] for i in rec["items"]]
    assert rec["item_id"] == "jazz-0" and "user_id" not in rec
    assert rec["source"] == "request" and rec["source_event_id"] == req["request_id"]
    assert len(ids) == 10 and "jazz-0" not in ids and DELETED not in ids
    # Item vectors of one topic are nearest each other: the 6 other jazz items come first.
    assert {i.split("-")[0] for i in ids[:6]} == {"jazz"}, ids
    # With a user: keyed and named by the user, still "more like this", explained as such.
    req2 = {**req, "request_id": uuid.uuid4().hex, "user_id": "u-hiker", "explain": True}
    rec2 = answer(producer, recs, req2, "u-hiker")
    assert rec2["user_id"] == "u-hiker" and rec2["item_id"] == "jazz-0"
    assert [i["item_id"] for i in rec2["items"]] == ids
    assert all(i["reason"] == SIMILAR_REASON and i["because"] == ["jazz-0"] for i in rec2["items"])


def test_filtered_request_returns_only_matching_items(
    started: WorkerProcess, producer: Producer, recs: Recorder
) -> None:
    flt = {"category": "jazz", "exclude_item_ids": ["jazz-2"]}
    rec = answer(producer, recs, {**request("u-hiker", k=10), "filter": flt}, "u-hiker")
    ids = [i["item_id"] for i in rec["items"]]
    # 8 jazz items, one deleted, one excluded: 6 left, fewer than k, none outside the filter.
    assert sorted(ids) == sorted(f"jazz-{n}" for n in (0, 3, 4, 5, 6, 7)), ids
    both = {"category": ["space", "cooking"]}
    rec = answer(producer, recs, {**request("u-hiker", k=20), "filter": both}, "u-hiker")
    assert len(rec["items"]) == 16
    assert {i["item_id"].split("-")[0] for i in rec["items"]} == {"space", "cooking"}
    # A user without history gets the popularity fallback, filtered too.
    rec = answer(producer, recs, {**request("u-new", k=10), "filter": both}, "u-new")
    assert all(i["item_id"].split("-")[0] in {"space", "cooking"} for i in rec["items"])
    # Similar items with a filter: only matching ones.
    req = {"request_id": uuid.uuid4().hex, "item_id": "jazz-0", "filter": both, "ts": now_ms()}
    rec = answer(producer, recs, req, "jazz-0")
    assert rec["items"] and all(
        i["item_id"].split("-")[0] in {"space", "cooking"} for i in rec["items"]
    )


def test_malformed_requests_are_dead_lettered_and_the_worker_goes_on(
    started: WorkerProcess, producer: Producer, recs: Recorder, dead: Recorder
) -> None:
    def req(**fields: Any) -> bytes:
        return json_bytes({"request_id": uuid.uuid4().hex, "ts": now_ms(), **fields})

    bad: list[tuple[bytes, str, str]] = [
        (req(user_id="u-hiker", filter="jazz"), "schema", "filter"),
        (req(user_id="u-hiker", filter={"category": {"nested": 1}}), "schema", "filter"),
        (req(user_id="u-hiker", filter={f"k{i}": 1 for i in range(9)}), "schema", "at most 8"),
        (req(user_id="u-hiker", filter={"category": list(range(65))}), "schema", "values"),
        (
            req(user_id="u-hiker", filter={"exclude_item_ids": [f"x{i}" for i in range(1001)]}),
            "schema",
            "exclude_item_ids",
        ),
        (req(user_id="u-hiker", filter={"category": []}), "schema", "values"),
        (req(item_id="no-such-item"), "unknown_item", "no-such-item"),
        (req(item_id=DELETED, user_id="u-hiker"), "unknown_item", DELETED),
        (req(k=3), "schema", ""),  # neither user_id nor item_id
        (req(user_id="u-hiker", explain="yes"), "schema", "explain"),
    ]
    for raw, _, _ in bad:
        producer.send("recommendation-requests", "u-hiker", raw)
    after = request("u-hiker", k=3)
    producer.send("recommendation-requests", "u-hiker", after)
    producer.flush()
    raws = {raw for raw, _, _ in bad}
    records = dead.wait_for(lambda rs: raws <= {dead_letter_bytes(r) for r in rs})
    by_raw = {dead_letter_bytes(r): r for r in records}
    for raw, reason, word in bad:
        record = by_raw[raw]
        assert record["reason"] == reason, (raw, record)
        assert word in record["detail"], (raw, record["detail"])
    rid = after["request_id"]
    recs.wait_for(lambda rs: any(r["source_event_id"] == rid for r in rs))
    assert started.alive
    answered = {r["source_event_id"] for r in recs.records}
    assert not {json.loads(raw)["request_id"] for raw in raws} & answered


def test_index_holds_the_catalog_minus_the_deleted_item(started: WorkerProcess) -> None:
    assert started.metric("promptrec_index_items") == sum(len(t) for t in TOPICS.values()) - 1
