"""End to end on the real embedded broker: explanations, similar items, filters, experiments.

One real worker (MiniLM, real FAISS) answers explained, similar-items and filtered requests and
dead-letters malformed ones; a second worker serves a two-arm experiment; a third is started
with a bad experiments file and must refuse to start. The tests run in file order.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.cluster import worker_command
from promptrec.broker.embedded import EmbeddedBroker
from promptrec.serving.experiments import bucket_of
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
    settings_for,
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


# --- experiments: a second worker serving two arms with different item templates ---

EXPERIMENT = {
    "experiment": "e2e-prompts",
    "arms": [
        {"name": "control", "weight": 50},
        {"name": "short", "weight": 50, "item_prompt": "item_short"},
    ],
}


def users_per_arm(n: int) -> dict[str, list[str]]:
    """``n`` user ids of each arm (the assignment is a pure function of experiment and user)."""
    out: dict[str, list[str]] = {"control": [], "short": []}
    i = 0
    while min(len(v) for v in out.values()) < n:
        user = f"ab-user-{i}"
        arm = "control" if bucket_of(EXPERIMENT["experiment"], user) < 5000 else "short"
        if len(out[arm]) < n:
            out[arm].append(user)
        i += 1
    return out


@pytest.fixture(scope="module")
def ab_settings(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> StreamSettings:
    return settings_for(broker.url, tmp_path_factory.mktemp("ab-state"), partitions=2)


@pytest.fixture(scope="module")
def ab_worker(
    ab_settings: StreamSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    folder = tmp_path_factory.mktemp("ab")
    path = folder / "experiments.json"
    path.write_text(json.dumps(EXPERIMENT), encoding="utf-8")
    env = {
        "PROMPTREC_PARTITIONS": "2",
        "PROMPTREC_EXPERIMENTS_FILE": str(path),
        "PROMPTREC_MODEL_SYNC_INTERVAL_S": "0.5",
    }
    proc = WorkerProcess(ab_settings, folder / "worker.log", env=env)
    p = Producer(ab_settings)
    for item in catalog_items():
        p.send("items", item["item_id"], item)
    p.flush()
    p.close()
    proc.start().wait_ready()
    yield proc
    proc.stop()


def test_two_arm_worker_names_arms_and_keeps_them_stable(
    ab_worker: WorkerProcess, ab_settings: StreamSettings
) -> None:
    users = users_per_arm(3)
    producer = Producer(ab_settings)
    recs = Recorder(ab_settings, f"{ab_settings.topic_prefix}recommendations")
    try:
        # Every user clicks the same items: answers differ only by the arm's item vectors.
        sent = []
        for arm_users in users.values():
            for user in arm_users:
                for item in HIKER_ITEMS:
                    event = interaction(user, item)
                    sent.append(event["event_id"])
                    producer.send("interactions", user, event)
        producer.flush()
        recs.wait_for(lambda rs: set(sent) <= {r["source_event_id"] for r in rs})
        first, second = {}, {}
        for user in users["control"] + users["short"]:
            first[user] = answer(producer, recs, request(user, k=5), user)
            second[user] = answer(producer, recs, request(user, k=5), user)
        for arm, arm_users in users.items():
            for user in arm_users:
                assert first[user]["arm"] == second[user]["arm"] == arm, first[user]
                assert first[user]["experiment"] == "e2e-prompts"
        assert all(r["arm"] in {"control", "short"} for r in recs.records)
        assert all(r["experiment"] == "e2e-prompts" for r in recs.records)

        def scores(rec: dict[str, Any]) -> list[tuple[str, float]]:
            return [(i["item_id"], round(i["score"], 5)) for i in rec["items"]]

        # Same history, same arm: the same answer; same history, other arm: another one.
        control, short = users["control"], users["short"]
        assert scores(first[control[0]]) == scores(first[control[1]])
        assert scores(first[short[0]]) == scores(first[short[1]])
        assert scores(first[control[0]]) != scores(first[short[0]])

        # Feedback is learned by the head of the arm that made the recommendation.
        rec = first[short[0]]
        for n in range(8):
            producer.send(
                "feedback",
                short[0],
                {
                    "event_id": uuid.uuid4().hex,
                    "user_id": short[0],
                    "item_id": rec["items"][0]["item_id"],
                    "recommendation_id": rec["recommendation_id"],
                    "label": n % 2,
                    "ts": now_ms(),
                },
            )
        producer.flush()
        recs.wait_for(lambda _: ab_worker.metric("promptrec_arm_feedback_total", arm="short") >= 8)
        assert ab_worker.metric("promptrec_arm_feedback_total", arm="control") == 0
        assert ab_worker.metric("promptrec_arm_clicks_total", arm="short") == 4
        assert ab_worker.metric("promptrec_arm_recommendations_total", arm="control") >= 9
        assert ab_worker.metric("promptrec_arm_recommendations_total", arm="short") >= 9
        # The short arm's head moved, the control arm's did not.
        after = {u: answer(producer, recs, request(u, k=5), u) for u in (control[2], short[2])}
        assert after[control[2]]["model_version"] == first[control[0]]["model_version"]
        assert scores(after[control[2]]) == scores(first[control[0]])
    finally:
        producer.close()
        recs.close()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"experiment": "x", "arms": [{"name": "a", "weight": 60}]}', "weights must sum to 100"),
        ('{"experiment": "x", "arms": [{"name": "a", "weight": 100, "item_prompt": "nope"}]}',
         "unknown item_prompt template 'nope'"),
        ("{not json", "cannot read JSON"),
    ],
)  # fmt: skip
def test_bad_experiments_file_stops_the_worker_with_one_line(
    broker: EmbeddedBroker, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "experiments.json"
    path.write_text(content, encoding="utf-8")
    settings = settings_for(broker.url, tmp_path / "state", partitions=1)
    env = {**os.environ, "PROMPTREC_EXPERIMENTS_FILE": str(path)}
    done = subprocess.run(
        worker_command(settings), env=env, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("promptrec worker: error: experiments file ")
    assert message in lines[0] and str(path) in lines[0]
