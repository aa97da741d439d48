"""End to end on the real embedded broker: kafka-python in, a real worker process, kafka-python out.

The worker runs the default MiniLM encoder and real FAISS. The tests of this module share one
worker and run in file order (catalog -> interactions -> fresh item -> feedback -> bad input ->
metrics -> restart).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any

import pytest

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

USERS = {"u-hiker": "hiking", "u-cook": "cooking", "u-jazz": "jazz", "u-space": "space"}


@pytest.fixture(scope="module")
def producer(e2e_settings: StreamSettings) -> Any:
    p = Producer(e2e_settings)
    yield p
    p.close()


@pytest.fixture(scope="module")
def recs(e2e_settings: StreamSettings) -> Any:
    r = Recorder(e2e_settings, f"{e2e_settings.topic_prefix}recommendations")
    yield r
    r.close()


@pytest.fixture(scope="module")
def dead(e2e_settings: StreamSettings) -> Any:
    r = Recorder(e2e_settings, f"{e2e_settings.topic_prefix}dead-letter")
    yield r
    r.close()


@pytest.fixture(scope="module")
def history() -> dict[str, list[str]]:
    """Items each user interacted with, in order (what the tests sent)."""
    return {user: [] for user in USERS}


@pytest.fixture(scope="module")
def started(worker: WorkerProcess, producer: Producer) -> WorkerProcess:
    for item in catalog_items():
        producer.send("items", item["item_id"], item)
    producer.send(
        "users", "u-hiker", {"user_id": "u-hiker", "attributes": {"interests": ["hiking"]}}
    )
    producer.flush()
    worker.start().wait_ready()
    return worker


def ask(producer: Producer, recs: Recorder, user: str, k: int | None = None) -> dict[str, Any]:
    """Send a recommendation request and return its answer."""
    req = request(user, k)
    producer.send("recommendation-requests", user, req)
    producer.flush()
    found = recs.wait_for(lambda rs: any(r["source_event_id"] == req["request_id"] for r in rs))
    return next(r for r in found if r["source_event_id"] == req["request_id"])


def test_every_interaction_yields_a_recommendation_without_seen_items(
    started: WorkerProcess, producer: Producer, recs: Recorder, history: dict[str, list[str]]
) -> None:
    sent: dict[str, tuple[str, set[str]]] = {}  # event_id -> (user, items seen up to then)
    for round_ in range(3):
        for user, topic in USERS.items():
            item = f"{topic}-{round_}"
            event = interaction(user, item)
            history[user].append(item)
            sent[event["event_id"]] = (user, set(history[user]))
            producer.send("interactions", user, event)
    producer.flush()
    found = recs.wait_for(lambda rs: sent.keys() <= {r["source_event_id"] for r in rs})
    for rec in found:
        if rec["source_event_id"] not in sent:
            continue
        user, seen = sent[rec["source_event_id"]]
        assert rec["user_id"] == user
        assert rec["source"] == "interaction"
        ids = [i["item_id"] for i in rec["items"]]
        assert len(ids) == 10
        assert not set(ids) & seen, f"seen items recommended to {user}: {set(ids) & seen}"
        scores = [i["score"] for i in rec["items"]]
        assert scores == sorted(scores, reverse=True)


def test_recommendations_follow_the_users_topic(
    started: WorkerProcess, producer: Producer, recs: Recorder
) -> None:
    # Real MiniLM embeddings: after three items of one topic the top 3 are that topic's items.
    for user, topic in USERS.items():
        rec = ask(producer, recs, user, k=3)
        assert [i["item_id"].split("-")[0] for i in rec["items"]] == [topic] * 3, rec


def test_new_item_is_recommendable_once_published(
    started: WorkerProcess, producer: Producer, recs: Recorder
) -> None:
    new = {
        "item_id": "hiking-new",
        "title": "Carbon trekking poles for mountain hiking trails",
        "text": "Light poles for alpine hikes.",
        "attributes": {"category": "hiking"},
    }
    assert all("hiking-new" not in {i["item_id"] for i in r["items"]} for r in recs.records)
    producer.send("items", new["item_id"], new)
    producer.flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rec = ask(producer, recs, "u-hiker", k=5)
        if "hiking-new" in {i["item_id"] for i in rec["items"]}:
            return
        time.sleep(0.3)
    raise AssertionError(f"new item never recommended; last: {rec}")


def test_feedback_moves_scores_in_the_direction_of_the_labels(
    started: WorkerProcess, producer: Producer, recs: Recorder
) -> None:
    before = ask(producer, recs, "u-jazz", k=100)
    scores = {i["item_id"]: i["score"] for i in before["items"]}
    liked, disliked = "space-5", "jazz-7"
    assert liked in scores and disliked in scores
    for n in range(96):
        item, label = (liked, 1) if n % 2 == 0 else (disliked, 0)
        producer.send(
            "feedback",
            "u-jazz",
            {
                "event_id": uuid.uuid4().hex,
                "user_id": "u-jazz",
                "item_id": item,
                "recommendation_id": before["recommendation_id"],
                "label": label,
                "ts": now_ms(),
            },
        )
    producer.flush()
    deadline = time.monotonic() + 60
    while started.metric("promptrec_feedback_learned_total") < 96 and time.monotonic() < deadline:
        time.sleep(0.3)
    # The version counts published head updates (at most PROMPTREC_MODEL_SYNC_INTERVAL_S later).
    while (
        started.metric("promptrec_model_version") <= before["model_version"]
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    after = ask(producer, recs, "u-jazz", k=100)
    new = {i["item_id"]: i["score"] for i in after["items"]}
    assert after["model_version"] > before["model_version"]
    # The liked item gains on the disliked one, and climbs in the user's ranking.
    assert (new[liked] - new[disliked]) - (scores[liked] - scores[disliked]) > 0.5
    rank_before = [i["item_id"] for i in before["items"]].index(liked)
    rank_after = [i["item_id"] for i in after["items"]].index(liked)
    assert rank_after < rank_before


def test_bad_input_is_dead_lettered_and_valid_events_flow(
    started: WorkerProcess, producer: Producer, recs: Recorder, dead: Recorder
) -> None:
    dup = interaction("u-cook", "cooking-5")
    long_item = {
        "item_id": "cooking-long",
        "title": "Giant recipe collection",
        "text": "slow braised stew recipe " * 3000,  # ~75 kB of text: cut, not rejected
    }
    bad: list[tuple[str, bytes, str]] = [
        ("interactions", b"{not json", "invalid_json"),
        ("interactions", b"\xff\xfe\x00binary", "bad_encoding"),
        ("interactions", b"[1, 2, 3]", "not_an_object"),
        ("interactions", json.dumps({"user_id": "u-cook", "ts": now_ms()}).encode(), "schema"),
        ("interactions", json_bytes(interaction("u-cook", "cooking-1", user_id=42)), "schema"),
        ("interactions", json_bytes(interaction("u-cook", "cooking-1", type="teleport")), "unknown_type"),
        ("interactions", json_bytes(interaction("u-cook", "cooking-1", ts=-5)), "bad_timestamp"),
        ("interactions", json_bytes(interaction("u-cook", "cooking-1", ts=4102444800000)), "bad_timestamp"),
        ("interactions", json_bytes(interaction("u-cook", "cooking-1", value=1)).replace(b"1}", b"NaN}"), "non_finite"),
        ("interactions", json_bytes(dup), "duplicate_event"),  # sent twice below; the 2nd is the dup
        ("interactions", b"x" * 70_000, "too_large"),
        ("items", json_bytes({"item_id": "empty-1", "title": "", "text": ""}), "empty_text"),
        ("feedback", b'{"event_id":"f1","user_id":"u-cook","item_id":"cooking-1","reward":NaN,"ts":1}', "non_finite"),
        ("feedback", json_bytes({"event_id": "f2", "user_id": "u-cook", "item_id": "nope", "label": 1, "ts": now_ms()}), "unknown_item"),
        ("recommendation-requests", json_bytes({"request_id": "r1", "user_id": "u-cook", "k": 100000, "ts": now_ms()}), "schema"),
    ]  # fmt: skip
    producer.send("interactions", "u-cook", dup)
    producer.send("items", long_item["item_id"], long_item)
    for topic, raw, _ in bad:
        producer.send(topic, "u-cook", raw)
    unknown = interaction("u-cook", "item-that-does-not-exist")
    after = interaction("u-cook", "cooking-6")
    producer.send("interactions", "u-cook", unknown)
    producer.send("interactions", "u-cook", after)
    producer.flush()

    expected = [(reason, raw) for _, raw, reason in bad]
    expected.append(("unknown_item", json_bytes(unknown)))
    records = dead.wait_for(lambda rs: len(rs) >= len(expected), timeout=60)
    got = {(r["reason"], dead_letter_bytes(r)) for r in records}
    for reason, raw in expected:
        assert (reason, raw[:262144]) in got or reason == "too_large", (reason, raw[:60])
    too_large = [r for r in records if r["reason"] == "too_large"]
    assert too_large and too_large[0]["value_size"] == 70_000
    for r in records:
        assert r["detail"] and r["original_topic"].startswith(started.settings.topic_prefix)
        assert r["offset"] >= 0
    # Valid events around the garbage still flow; the unknown item was dead-lettered above.
    ids = {after["event_id"]}
    found = recs.wait_for(lambda rs: ids <= {r["source_event_id"] for r in rs})
    rec_after = next(r for r in found if r["source_event_id"] == after["event_id"])
    assert "cooking-6" not in {i["item_id"] for i in rec_after["items"]}
    assert started.alive
    # The oversized item was truncated and indexed, not rejected.
    assert not any(
        r["reason"] != "empty_text" and b"cooking-long" in dead_letter_bytes(r) for r in records
    )
    rec = ask(producer, recs, "u-cook", k=100)
    assert "cooking-long" in {i["item_id"] for i in rec["items"]}


def test_metrics_describe_the_run(started: WorkerProcess) -> None:
    m = started.metrics()

    def val(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    assert val("promptrec_events_total", topic="interactions", outcome="ok") >= 14
    assert val("promptrec_events_total", topic="interactions", outcome="dead_letter") >= 10
    assert val("promptrec_dead_letters_total", topic="interactions", reason="invalid_json") == 1
    assert val("promptrec_dead_letters_total", topic="feedback", reason="unknown_item") == 1
    assert val("promptrec_event_to_recommendation_seconds_count") >= 14
    assert val("promptrec_index_items") == sum(len(t) for t in TOPICS.values()) + 2
    assert val("promptrec_model_version") >= 1
    # The feedback above contradicts the text prior, so the pre-update AUC may be low (even 0),
    # but it was computed: the gauge is NaN until both labels are seen.
    auc = val("promptrec_online_auc")
    assert ("promptrec_online_auc", ()) in m and not math.isnan(auc) and 0.0 <= auc <= 1.0
    loss = val("promptrec_online_loss")
    assert math.isfinite(loss) and loss > 0
    assert val("promptrec_stage_seconds_count", stage="search") >= 1


def test_restart_restores_history_index_and_head(
    started: WorkerProcess,
    producer: Producer,
    recs: Recorder,
    history: dict[str, list[str]],
) -> None:
    version = ask(producer, recs, "u-space")["model_version"]
    assert started.stop() == 0
    state = started.settings.state_dir
    assert (state / "head.safetensors").is_file()
    assert (state / "index" / "vectors.npy").is_file()
    started.start().wait_ready()
    rec = ask(producer, recs, "u-space", k=100)
    assert rec["model_version"] >= version
    # The history table came back from its changelog: seen items stay excluded.
    assert not set(history["u-space"]) & {i["item_id"] for i in rec["items"]}
    assert "hiking-new" in {i["item_id"] for i in rec["items"]}
