"""Batch planners without Faust: planning changes nothing, commits apply a batch's changes once."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from promptrec.events.exceptions import ReasonCode
from promptrec.serving.batches import FeedbackPlanner, Inbound, RecommendPlanner
from promptrec.serving.history import UserHistory
from promptrec.serving.settings import ServingSettings
from promptrec.streams.settings import StreamSettings

SETTINGS = ServingSettings(history_len=5, recent_items=3, top_k=4)
LIMITS = StreamSettings().limits()
CATALOG = {"i1", "i2", "i3"}


def now() -> int:
    return int(time.time() * 1000)


def click(event_id: str, user: str, item: str) -> bytes:
    body = {"event_id": event_id, "user_id": user, "item_id": item, "type": "click", "ts": now()}
    return json.dumps(body).encode()


def inbound(topic: str, offset: int, value: bytes | None, key: bytes | None = b"u") -> Inbound[int]:
    return Inbound(topic, 0, offset, key, value, offset)


def req(request_id: str, user: str, k: int) -> bytes:
    return json.dumps({"request_id": request_id, "user_id": user, "k": k, "ts": now()}).encode()


def feedback(event_id: str, user: str, item: str, label: int = 1) -> bytes:
    body = {"event_id": event_id, "user_id": user, "item_id": item, "label": label, "ts": now()}
    return json.dumps(body).encode()


def test_planning_changes_no_state_and_commit_applies_the_clicks() -> None:
    table: dict[str, Any] = {}
    planner = RecommendPlanner(SETTINGS, LIMITS, CATALOG)
    batch = [
        inbound("interactions", 1, click("e1", "u", "i1")),
        inbound("interactions", 2, click("e2", "u", "i2")),
        inbound("recommendation-requests", 3, req("r1", "u", 2)),
    ]
    plan = planner.plan(batch, table.get, now())
    assert table == {}  # nothing written while planning
    assert [a.source for a in plan.asks] == ["interaction", "interaction", "request"]
    # Each query sees the history up to and including its own event.
    assert [list(a.query.recent) for a in plan.asks] == [["i1"], ["i1", "i2"], ["i1", "i2"]]
    assert plan.asks[2].query.k == 2 and plan.asks[0].query.k == 4
    assert plan.clicks == ["i1", "i2"]
    writes = plan.commit(table.get)
    assert [(w.user_id, w.inbound.offset) for w in writes] == [("u", 2)]
    table.update({w.user_id: w.value for w in writes})
    hist = UserHistory.from_value(table["u"])
    assert hist.items == ["i1", "i2"] and hist.count == 2


def test_a_batch_that_is_not_committed_can_be_replayed_as_new() -> None:
    table: dict[str, Any] = {}
    planner = RecommendPlanner(SETTINGS, LIMITS, CATALOG)
    failed = planner.plan([inbound("interactions", 1, click("e1", "u", "i1"))], table.get, now())
    assert failed.asks  # ... its stage fails: no commit, the event is dead-lettered
    # The replay is the same bytes at a new offset: a new event, not a duplicate.
    replay = planner.plan([inbound("interactions", 9, click("e1", "u", "i1"))], table.get, now())
    assert not replay.rejected and replay.clicks == ["i1"] and replay.redeliveries == 0


def test_redelivery_is_answered_and_a_duplicate_is_rejected() -> None:
    table: dict[str, Any] = {}
    planner = RecommendPlanner(SETTINGS, LIMITS, CATALOG)
    first = planner.plan([inbound("interactions", 1, click("e1", "u", "i1"))], table.get, now())
    table.update({w.user_id: w.value for w in first.commit(table.get)})
    again = planner.plan(
        [
            inbound("interactions", 1, click("e1", "u", "i1")),  # same position: redelivery
            inbound("interactions", 2, click("e1", "u", "i1")),  # another position: duplicate
        ],
        table.get,
        now(),
    )
    assert again.redeliveries == 1 and len(again.asks) == 1 and again.clicks == []
    assert [(r.inbound.offset, r.reason) for r in again.rejected] == [
        (2, ReasonCode.duplicate_event)
    ]
    assert again.commit(table.get) == []


def test_garbage_is_rejected_with_a_reason_and_the_rest_of_the_batch_goes_on() -> None:
    planner = RecommendPlanner(SETTINGS, LIMITS, CATALOG)
    batch = [
        inbound("interactions", 1, b"{not json"),
        inbound("interactions", 2, None),
        inbound("interactions", 3, b"[1, 2]"),
        inbound("interactions", 4, click("e4", "u", "nope")),
        inbound("recommendation-requests", 5, req("r", "u", 999)),
        inbound("interactions", 6, click("e6", "u", "i3")),
    ]
    plan = planner.plan(batch, {}.get, now())
    reasons = {r.inbound.offset: r.reason for r in plan.rejected}
    assert reasons == {
        1: ReasonCode.invalid_json,
        2: ReasonCode.empty_value,
        3: ReasonCode.not_an_object,
        4: ReasonCode.unknown_item,
        5: ReasonCode.schema,
    }
    assert [a.inbound.offset for a in plan.asks] == [6]
    assert all(r.detail for r in plan.rejected)


def test_commit_keeps_what_the_other_agent_wrote_meanwhile() -> None:
    table: dict[str, Any] = {}
    planner = RecommendPlanner(SETTINGS, LIMITS, CATALOG)
    plan = planner.plan([inbound("interactions", 1, click("e1", "u", "i1"))], table.get, now())
    # While the recommend stage runs, the feedback agent records a learned event of the user.
    other = UserHistory()
    other.add_feedback("f1", "0:3", SETTINGS.history_len)
    table["u"] = other.to_value()
    table.update({w.user_id: w.value for w in plan.commit(table.get)})
    hist = UserHistory.from_value(table["u"])
    assert hist.items == ["i1"] and hist.feedback_position("f1") == "0:3"


def test_feedback_commit_remembers_only_learned_events() -> None:
    start = UserHistory()
    start.append("e1", "i1", 1, SETTINGS.history_len, "0:1")
    table: dict[str, Any] = {"u": start.to_value()}
    before = copy.deepcopy(table)
    planner = FeedbackPlanner(SETTINGS, LIMITS)
    batch = [
        inbound("feedback", 1, feedback("f1", "u", "i1")),
        inbound("feedback", 2, feedback("f2", "u", "i2")),
        inbound("feedback", 3, feedback("f1", "u", "i1")),  # the same id twice in one batch
        inbound("feedback", 4, b"\xff\xfe"),
    ]
    plan = planner.plan(batch, table.get, now())
    assert table == before
    assert [item.event.event_id for item in plan.learn] == ["f1", "f2"]
    assert plan.learn[0].recent == ["i1"]
    assert [(r.inbound.offset, r.reason) for r in plan.rejected] == [
        (3, ReasonCode.duplicate_event),
        (4, ReasonCode.bad_encoding),
    ]
    # The learner rejected f2 (position 1): it stays unlearned, so a replay is not a duplicate.
    table.update({w.user_id: w.value for w in plan.commit(table.get, skipped={1})})
    hist = UserHistory.from_value(table["u"])
    assert hist.feedback_position("f1") == "0:1" and hist.feedback_position("f2") is None
    assert hist.items == ["i1"]  # the interactions are kept
    again = planner.plan(
        [
            inbound("feedback", 1, feedback("f1", "u", "i1")),
            inbound("feedback", 7, feedback("f2", "u", "i2")),
        ],
        table.get,
        now(),
    )
    assert again.redeliveries == 1 and [i.event.event_id for i in again.learn] == ["f2"]
