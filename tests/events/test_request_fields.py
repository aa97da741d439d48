"""Issue 15 request/answer fields: explain, item_id (similar items), filter; explained answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.events.schemas import (
    EXAMPLES,
    REQUEST_EXAMPLES,
    Limits,
    Recommendation,
    RecommendationRequest,
    ScoredItem,
    decode_recommendation,
    decode_request,
    json_schemas,
    to_json_bytes,
)

LIMITS = Limits(max_bytes=100_000, max_filter_keys=2, max_filter_values=3, max_filter_excludes=4)
TS = 1767225600000


def req(**fields: Any) -> bytes:
    return json.dumps({"request_id": "r1", "ts": TS, **fields}).encode()


def rejected(raw: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_request(raw, LIMITS, max_ts=TS + 1)
    return info.value


@pytest.mark.parametrize("name", sorted(REQUEST_EXAMPLES))
def test_variants_decode_and_round_trip(name: str) -> None:
    example = REQUEST_EXAMPLES[name]
    decode = decode_recommendation if "recommendation_id" in example else decode_request
    event = decode(json.dumps(example).encode(), LIMITS, max_ts=TS + 10**6)
    dumped = json.loads(to_json_bytes(event))
    # The new fields stay absent when unset; "k": null is the (older) request encoding.
    assert {key: v for key, v in dumped.items() if key != "k" or v is not None} == example


def test_default_output_bytes_do_not_change() -> None:
    rec = Recommendation.model_validate(EXAMPLES["recommendations"])
    compact = json.dumps(EXAMPLES["recommendations"], separators=(",", ":")).encode()
    assert to_json_bytes(rec) == compact
    assert to_json_bytes(ScoredItem(item_id="a", score=1.0)) == b'{"item_id":"a","score":1.0}'
    plain = decode_request(req(user_id="u1"), LIMITS, max_ts=TS)
    assert to_json_bytes(plain) == b'{"request_id":"r1","user_id":"u1","k":null,"ts":%d}' % TS


def test_request_fields_decode() -> None:
    r = decode_request(req(user_id="u1", explain=True, k=3), LIMITS, max_ts=TS)
    assert r.explain and r.item_id is None and r.filter is None
    r = decode_request(req(item_id="i9"), LIMITS, max_ts=TS)
    assert r.user_id == "" and r.item_id == "i9" and not r.explain
    r = decode_request(
        req(user_id="u", filter={"category": ["b", "m"], "year": 2020, "exclude_item_ids": ["x"]}),
        LIMITS,
        max_ts=TS,
    )
    assert r.filter is not None
    assert r.filter.conditions == {"category": ["b", "m"], "year": [2020]}
    assert r.filter.exclude_item_ids == ["x"]
    r = decode_request(req(user_id="u", filter={"exclude_item_ids": ["x"]}), LIMITS, max_ts=TS)
    assert r.filter is not None and r.filter.conditions == {}


BAD = [
    ("no user and no item", req(), "needs a user_id or an item_id"),
    ("null user", req(user_id=None, item_id="i"), "user_id"),
    ("empty user, no item", req(user_id=" "), "user_id"),
    ("item_id int", req(item_id=5), "item_id"),
    ("explain string", req(user_id="u", explain="yes"), "explain"),
    ("explain int", req(user_id="u", explain=1), "explain"),
    ("filter list", req(user_id="u", filter=["category"]), "filter"),
    ("filter string", req(user_id="u", filter="category=books"), "filter"),
    ("filter value object", req(user_id="u", filter={"c": {"x": 1}}), "filter.c"),
    ("filter value null", req(user_id="u", filter={"c": None}), "filter.c"),
    ("filter nested list", req(user_id="u", filter={"c": [["a"]]}), "filter.c"),
    ("filter empty list", req(user_id="u", filter={"c": []}), "needs 1 to 3 values, got 0"),
    ("filter blank key", req(user_id="u", filter={" ": "a"}), "attribute keys"),
    (
        "too many keys",
        req(user_id="u", filter={"a": 1, "b": 2, "c": 3}),
        "at most 2 attribute keys",
    ),
    ("too many values", req(user_id="u", filter={"a": [1, 2, 3, 4]}), "1 to 3 values, got 4"),
    (
        "too many excludes",
        req(user_id="u", filter={"exclude_item_ids": list("abcde")}),
        "at most 4 exclude",
    ),
    ("exclude not a list", req(user_id="u", filter={"exclude_item_ids": "a"}), "exclude_item_ids"),
    ("exclude int ids", req(user_id="u", filter={"exclude_item_ids": [1]}), "exclude_item_ids"),
    ("value too long", req(user_id="u", filter={"a": "x" * 300}), "filter.a"),
]


@pytest.mark.parametrize(("raw", "detail"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_are_schema_errors_with_a_detail(raw: bytes, detail: str) -> None:
    err = rejected(raw)
    assert err.reason is ReasonCode.schema and detail in err.detail


def test_non_finite_filter_value_is_non_finite() -> None:
    assert rejected(b'{"request_id":"r","user_id":"u","filter":{"p":NaN},"ts":1}').reason == (
        ReasonCode.non_finite
    )


def test_answer_fields_are_bounded() -> None:
    with pytest.raises(ValueError):
        ScoredItem(item_id="a", score=1.0, because=["a", "b", "c", "d"])
    with pytest.raises(ValueError):
        ScoredItem.model_validate({"item_id": "a", "score": 1.0, "reason": "because I said so"})
    no_subject = dict(EXAMPLES["recommendations"])
    del no_subject["user_id"]
    with pytest.raises(ValueError, match="needs a user or item"):
        Recommendation.model_validate(no_subject)
    similar = {**no_subject, "item_id": "i1"}
    rec = Recommendation.model_validate(similar)
    assert rec.user_id == "" and json.loads(to_json_bytes(rec)) == similar


def test_json_schemas_list_the_new_fields() -> None:
    schemas = json_schemas()
    request = schemas["recommendation-requests"]
    assert {"item_id", "explain", "filter"} <= set(request["properties"])
    assert request["required"] == ["request_id", "ts"]
    flt = request["$defs"]["RequestFilter"]
    assert "exclude_item_ids" in flt["properties"] and "additionalProperties" in flt
    answer = schemas["recommendations"]
    assert {"item_id", "experiment", "arm"} <= set(answer["properties"])
    assert {"because", "reason"} <= set(answer["$defs"]["ScoredItem"]["properties"])
    assert "user_id" not in answer["required"]


def test_request_model_is_usable_from_code() -> None:
    r = RecommendationRequest(request_id="r", item_id="i", ts=1)
    assert r.filter is None and r.k is None


def test_filter_values_error_names_the_key() -> None:
    from promptrec.events.exceptions import InvalidEvent
    from promptrec.events.schemas import decode_request
    from promptrec.streams.settings import StreamSettings

    raw = b'{"request_id": "r", "user_id": "u", "filter": {"genre": []}, "ts": 1767225600000}'
    with pytest.raises(InvalidEvent) as err:
        decode_request(raw, StreamSettings().limits())
    assert "key 'genre' needs 1 to" in err.value.detail
