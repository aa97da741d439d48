"""Event schemas: every rejection maps to its reason code; valid records decode and round-trip."""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from promptrec.events.exceptions import EventError, InvalidEvent, ReasonCode
from promptrec.events.schemas import (
    EXAMPLES,
    TOPIC_MODELS,
    DeadLetter,
    FeedbackEvent,
    InteractionEvent,
    ItemEvent,
    Limits,
    Recommendation,
    decode,
    decode_dead_letter,
    decode_feedback,
    decode_interaction,
    decode_item,
    decode_recommendation,
    decode_request,
    decode_user,
    json_schemas,
    now_ms,
    to_json_bytes,
)
from promptrec.streams.settings import StreamSettings

NOW = 1767225600000 + 3_600_000  # 2026-01-01T01:00Z
LIMITS = Limits(
    max_bytes=2048,
    min_ts=946684800000,
    max_future_ms=86_400_000,
    max_k=100,
    max_text_chars=100,
    max_item_bytes=8192,
)
MAX_TS = LIMITS.max_ts(NOW)
TOPICS = {
    "items",
    "users",
    "interactions",
    "feedback",
    "recommendation-requests",
    "recommendations",
    "dead-letter",
}
DECODERS: dict[str, Callable[..., BaseModel]] = {
    "items": decode_item,
    "users": decode_user,
    "interactions": decode_interaction,
    "feedback": decode_feedback,
    "recommendation-requests": decode_request,
    "recommendations": decode_recommendation,
    "dead-letter": decode_dead_letter,
}


def _raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _with(topic: str, **changes: Any) -> bytes:
    """The topic's example with fields changed; a value of ``...`` removes the field."""
    record = {**EXAMPLES[topic], **changes}
    return _raw({k: v for k, v in record.items() if v is not ...})


def _reason(topic: str, raw: bytes | None, limits: Limits = LIMITS) -> ReasonCode:
    with pytest.raises(InvalidEvent) as info:
        DECODERS[topic](raw, limits, max_ts=MAX_TS)
    return info.value.reason


def test_every_topic_has_model_example_and_schema() -> None:
    assert set(TOPIC_MODELS) == set(EXAMPLES) == set(json_schemas()) == TOPICS


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_examples_decode_and_round_trip(topic: str) -> None:
    event = DECODERS[topic](_raw(EXAMPLES[topic]), LIMITS, max_ts=MAX_TS)
    assert isinstance(event, TOPIC_MODELS[topic])
    again = decode(topic, to_json_bytes(event), LIMITS, max_ts=MAX_TS)
    assert again == event


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_json_schema_lists_required_fields(topic: str) -> None:
    schema = json_schemas()[topic]
    assert schema["type"] == "object"
    model = TOPIC_MODELS[topic]
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    assert set(schema.get("required", [])) == required
    assert set(EXAMPLES[topic]) <= set(schema["properties"])


BAD_INPUTS = [
    # (id, topic, raw value, expected reason)
    ("truncated json", "interactions", b'{"event_id": "e1", ', ReasonCode.invalid_json),
    ("not json", "users", b"user-001", ReasonCode.invalid_json),
    ("json list", "interactions", b'[{"event_id": "e1"}]', ReasonCode.not_an_object),
    ("json string", "items", b'"item-1"', ReasonCode.not_an_object),
    ("json null", "feedback", b"null", ReasonCode.not_an_object),
    ("latin-1 bytes", "items", '{"item_id": "caf\xe9"}'.encode("latin-1"), ReasonCode.bad_encoding),
    ("binary", "interactions", b"\xff\xfe\x00\x01", ReasonCode.bad_encoding),
    ("lone surrogate", "users", b'{"user_id": "u\\ud800"}', ReasonCode.bad_encoding),
    ("tombstone", "items", None, ReasonCode.empty_value),
    ("empty bytes", "interactions", b"", ReasonCode.empty_value),
    ("missing item_id", "interactions", _with("interactions", item_id=...), ReasonCode.schema),
    ("missing ts", "interactions", _with("interactions", ts=...), ReasonCode.schema),
    ("user_id int", "interactions", _with("interactions", user_id=42), ReasonCode.schema),
    ("item_id int", "items", _with("items", item_id=7), ReasonCode.schema),
    ("ts string", "interactions", _with("interactions", ts=str(NOW)), ReasonCode.schema),
    ("ts bool", "feedback", _with("feedback", ts=True), ReasonCode.schema),
    ("blank id", "interactions", _with("interactions", event_id="   "), ReasonCode.schema),
    ("id too long", "users", _with("users", user_id="u" * 257), ReasonCode.schema),
    ("value string", "interactions", _with("interactions", value="5"), ReasonCode.schema),
    ("attribute null", "items", _with("items", attributes={"a": None}), ReasonCode.schema),
    ("unknown type", "interactions", _with("interactions", type="like"), ReasonCode.unknown_type),
    ("type int", "interactions", _with("interactions", type=3), ReasonCode.schema),
    ("too large", "interactions", _with("interactions", pad="x" * 2100), ReasonCode.too_large),
    ("item too large", "items", _with("items", text="x" * 9000), ReasonCode.too_large),
    ("empty text", "items", _with("items", title="", text="  "), ReasonCode.empty_text),
    ("no text at all", "items", _raw({"item_id": "i1"}), ReasonCode.empty_text),
    ("negative ts", "interactions", _with("interactions", ts=-1), ReasonCode.bad_timestamp),
    ("ts before min", "feedback", _with("feedback", ts=900_000_000_000), ReasonCode.bad_timestamp),
    (
        "seconds not ms",
        "interactions",
        _with("interactions", ts=1767225600),
        ReasonCode.bad_timestamp,
    ),
    (
        "far future ts",
        "interactions",
        _with("interactions", ts=MAX_TS + 1),
        ReasonCode.bad_timestamp,
    ),
    ("future item ts", "items", _with("items", ts=MAX_TS + 1), ReasonCode.bad_timestamp),
    ("k zero", "recommendation-requests", _with("recommendation-requests", k=0), ReasonCode.schema),
    (
        "k > max_k",
        "recommendation-requests",
        _with("recommendation-requests", k=101),
        ReasonCode.schema,
    ),
    (
        "k string",
        "recommendation-requests",
        _with("recommendation-requests", k="5"),
        ReasonCode.schema,
    ),
    (
        "k float",
        "recommendation-requests",
        _with("recommendation-requests", k=5.0),
        ReasonCode.schema,
    ),
    ("no label/reward", "feedback", _with("feedback", label=None, reward=None), ReasonCode.schema),
    ("label 2", "feedback", _with("feedback", label=2), ReasonCode.schema),
    ("label bool", "feedback", _with("feedback", label=True, reward=...), ReasonCode.schema),
    ("bad source", "recommendations", _with("recommendations", source="batch"), ReasonCode.schema),
    ("bad reason", "dead-letter", _with("dead-letter", reason="oops"), ReasonCode.schema),
]


@pytest.mark.parametrize(
    ("topic", "raw", "reason"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_reason(topic: str, raw: bytes | None, reason: ReasonCode) -> None:
    assert _reason(topic, raw) is reason


def _example_text(topic: str) -> str:
    return json.dumps(EXAMPLES[topic])


NON_FINITE = [
    ("NaN value", "interactions", _example_text("interactions").replace("5.0", "NaN")),
    ("Infinity value", "interactions", _example_text("interactions").replace("5.0", "Infinity")),
    ("-Infinity reward", "feedback", _example_text("feedback").replace("1.0", "-Infinity")),
    ("overflowing reward", "feedback", _example_text("feedback").replace("1.0", "1e999")),
    ("NaN score", "recommendations", _example_text("recommendations").replace("0.91", "NaN")),
    ("NaN ts", "interactions", _example_text("interactions").replace("1767225604000", "NaN")),
    ("NaN attribute", "items", _example_text("items").replace("14.99", "NaN")),
    ("NaN ignored field", "users", '{"user_id": "u1", "extra": [1, NaN]}'),
]


@pytest.mark.parametrize(
    ("topic", "text"), [case[1:] for case in NON_FINITE], ids=[c[0] for c in NON_FINITE]
)
def test_non_finite_numbers(topic: str, text: str) -> None:
    assert "NaN" in text or "Infinity" in text or "1e999" in text  # the replace hit
    assert _reason(topic, text.encode()) is ReasonCode.non_finite


def test_non_finite_python_floats_rejected_by_models() -> None:
    with pytest.raises(ValueError, match="finite"):
        InteractionEvent(
            event_id="e", user_id="u", item_id="i", type="rating", value=float("inf"), ts=NOW
        )


def test_deeply_nested_json_is_invalid_not_a_crash() -> None:
    raw = b'{"user_id": "u", "a": ' + b"[" * 1500 + b"]" * 1500 + b"}"
    assert _reason("users", raw, Limits(max_bytes=10_000)) is ReasonCode.invalid_json


def test_long_text_is_truncated_not_rejected() -> None:
    raw = _with("items", title="T" * 500, text="  " + "x" * 5000 + "  ")
    item = decode_item(raw, LIMITS, max_ts=MAX_TS)
    assert item.title == "T" * LIMITS.max_text_chars
    assert item.text == "x" * LIMITS.max_text_chars


def test_item_field_rules() -> None:
    item = decode_item(
        _raw(
            {"item_id": "  i9 ", "description": "From the description alias.", "ts": 1.7e12 + 0.6}
        ),
        LIMITS,
        max_ts=MAX_TS,
    )
    assert (item.item_id, item.title, item.text) == ("i9", "", "From the description alias.")
    assert item.ts == 1_700_000_000_001  # float ms rounded
    assert item.attributes == {} and item.deleted is False
    deleted = decode_item(_raw({"item_id": "i9", "deleted": True}), LIMITS, max_ts=MAX_TS)
    assert deleted.deleted and deleted.text == ""
    typed = decode_item(
        _with("items", attributes={"n": 3, "f": 1.5, "b": True, "l": ["x"]}), LIMITS
    )
    assert typed.attributes == {"n": 3, "f": 1.5, "b": True, "l": ["x"]}
    assert type(typed.attributes["b"]) is bool and type(typed.attributes["n"]) is int


def test_extra_fields_are_ignored() -> None:
    event = decode_interaction(_with("interactions", session="s1"), LIMITS, max_ts=MAX_TS)
    assert "session" not in event.model_dump()


def test_ts_window_edges_are_inclusive() -> None:
    for ts in (LIMITS.min_ts, MAX_TS):
        assert decode_interaction(_with("interactions", ts=ts), LIMITS, max_ts=MAX_TS).ts == ts


SECONDS = 1767225600  # 2026-01-01T00:00Z in epoch seconds: the common producer mistake


@pytest.mark.parametrize(
    ("ts", "detail"),
    [
        (SECONDS, f"ts {SECONDS} looks like epoch seconds; ts must be epoch milliseconds "
         f"({SECONDS}000)"),
        (SECONDS + 0.4, f"ts {SECONDS} looks like epoch seconds"),  # floats are rounded first
        (SECONDS * 1_000_000, f"ts {SECONDS}000000 looks like epoch microseconds; ts must be "
         f"epoch milliseconds ({SECONDS}000)"),
        # Seconds whose milliseconds would still be out of range are not called seconds.
        (MAX_TS // 1000 + 10, f"ts {MAX_TS // 1000 + 10} older than 946684800000"),
        (1000, "ts 1000 older than 946684800000 (ts is epoch milliseconds)"),
        (MAX_TS + 1, f"ts {MAX_TS + 1} later than {MAX_TS} (ts is epoch milliseconds)"),
    ],
)  # fmt: skip
def test_bad_timestamp_detail_names_the_unit_mistake(ts: float, detail: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_interaction(_with("interactions", ts=ts), LIMITS, max_ts=MAX_TS)
    assert info.value.reason is ReasonCode.bad_timestamp
    assert info.value.detail.startswith(detail), info.value.detail


def test_max_ts_defaults_to_wall_clock() -> None:
    # The example's ts (2026-01-01) is in the past, so it passes with the real clock.
    assert decode_interaction(_with("interactions"), LIMITS).ts == EXAMPLES["interactions"]["ts"]
    far = 10 * 365 * 86_400_000 + NOW
    with pytest.raises(InvalidEvent) as info:
        decode_interaction(_with("interactions", ts=far), LIMITS)
    assert info.value.reason is ReasonCode.bad_timestamp


def test_k_bound_follows_limits() -> None:
    raw = _with("recommendation-requests", k=50)
    assert decode_request(raw, LIMITS, max_ts=MAX_TS).k == 50
    small = Limits(max_bytes=2048, min_ts=LIMITS.min_ts, max_k=10)
    assert _reason("recommendation-requests", raw, small) is ReasonCode.schema
    assert decode_request(_with("recommendation-requests", k=None), small, max_ts=MAX_TS).k is None


@pytest.mark.parametrize(
    ("label", "reward", "target"),
    [(1, None, 1.0), (0, 5.0, 0.0), (None, 2.5, 1.0), (None, 0.0, 0.0), (None, -1.0, 0.0)],
)
def test_feedback_target(label: int | None, reward: float | None, target: float) -> None:
    raw = _with("feedback", label=label, reward=reward)
    event = decode_feedback(raw, LIMITS, max_ts=MAX_TS)
    assert isinstance(event, FeedbackEvent) and event.target == target


def test_invalid_event_message_and_pickling() -> None:
    err = InvalidEvent(ReasonCode.schema, "user_id: Field required")
    assert str(err) == "schema: user_id: Field required"
    assert isinstance(err, EventError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.reason, copy.detail) == (ReasonCode.schema, "user_id: Field required")


def test_reason_detail_names_field_without_raw_value() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_interaction(_with("interactions", user_id=4242424242), LIMITS, max_ts=MAX_TS)
    assert "user_id" in info.value.detail and "4242424242" not in info.value.detail


def test_reason_codes_are_label_safe() -> None:
    for code in ReasonCode:
        assert code.value == code.name and code.value.isidentifier()


def test_dead_letter_keeps_utf8_as_text() -> None:
    value = '{"event_id": "é"}'.encode()
    dl = DeadLetter.build(
        "promptrec.interactions",
        1,
        7,
        b"user-1",
        value,
        ReasonCode.schema,
        "d",
        "w:1",
        1024,
        ts=NOW,
    )
    assert dl.value_text == value.decode() and dl.value_base64 is None
    assert dl.key_text == "user-1" and dl.key_base64 is None
    assert (dl.value_size, dl.truncated, dl.ts) == (len(value), False, NOW)
    assert decode_dead_letter(to_json_bytes(dl), LIMITS, max_ts=MAX_TS) == dl


def test_dead_letter_base64_for_binary() -> None:
    value = b"\xff\x00\xfe" * 10
    dl = DeadLetter.build("t", 0, 0, b"\x80", value, ReasonCode.bad_encoding, "d", "w", 1024)
    assert dl.value_text is None and base64.b64decode(dl.value_base64 or "") == value
    assert dl.key_text is None and base64.b64decode(dl.key_base64 or "") == b"\x80"
    assert abs(dl.ts - now_ms()) < 60_000  # defaults to now


def test_dead_letter_truncates_to_max_bytes() -> None:
    text = "é" * 1000  # 2 bytes per character; a cut at an odd byte splits one
    dl = DeadLetter.build("t", 0, 0, None, text.encode(), ReasonCode.too_large, "d", "w", 1025)
    assert dl.truncated and dl.value_size == 2000
    assert dl.value_text == "é" * 512
    binary = bytes(range(256)) * 10
    dl = DeadLetter.build("t", 0, 0, None, binary, ReasonCode.too_large, "d", "w", 1024)
    assert dl.truncated and base64.b64decode(dl.value_base64 or "") == binary[:1024]


def test_dead_letter_of_tombstone() -> None:
    dl = DeadLetter.build("t", 0, 0, b"k", None, ReasonCode.empty_value, "d", "w", 1024)
    assert (dl.value_text, dl.value_base64, dl.value_size, dl.truncated) == (None, None, 0, False)


def test_to_json_bytes_is_compact_and_uses_field_names() -> None:
    item = ItemEvent.model_validate({"item_id": "i", "description": "d"})
    raw = to_json_bytes(item)
    assert b'"text":"d"' in raw and b"description" not in raw and b": " not in raw


def test_recommendation_example_fields() -> None:
    rec = Recommendation.model_validate(EXAMPLES["recommendations"])
    assert [s.item_id for s in rec.items] == ["item-0002", "item-0017"]


def test_limits_from_settings() -> None:
    settings = StreamSettings(
        max_event_bytes=1000, max_item_bytes=5000, max_future_skew_s=1.5, max_k=7, min_event_ts=3
    )
    limits = settings.limits(max_text_chars=64)
    assert limits == Limits(
        max_bytes=1000,
        min_ts=3,
        max_future_ms=1500,
        max_k=7,
        max_text_chars=64,
        max_item_bytes=5000,
    )
    assert limits.max_ts(10) == 1510
    assert limits.bytes_for(ItemEvent) == 5000 and limits.bytes_for(FeedbackEvent) == 1000


def test_fast_recommendation_json_matches_the_schema() -> None:
    import json as _json

    from promptrec.events.schemas import Recommendation
    from promptrec.streams.publisher import recommendation_json

    raw = recommendation_json(
        "rec-1", "user-é", [("i1", 0.5), ("i2", -1.25)], 3, "interaction", "e1", 1767225600000,
        1767225600012, "host:1",
    )  # fmt: skip
    rec = Recommendation.model_validate_json(raw)
    assert rec.user_id == "user-é" and [i.item_id for i in rec.items] == ["i1", "i2"]
    assert _json.loads(raw) == _json.loads(rec.model_dump_json())


def test_encoder_text_budget_above_the_default_reaches_decoding() -> None:
    # PROMPTREC_ENCODER_MAX_TEXT_CHARS=6000 must not be cut back to the 4000-char default.
    from promptrec.encoder.settings import EncoderSettings

    budget = EncoderSettings(max_text_chars=6000).max_text_chars
    limits = StreamSettings(max_item_bytes=65536).limits(budget)
    raw = json.dumps({"item_id": "i1", "title": "t", "text": "x" * 5000, "ts": 1767225600000})
    assert len(decode_item(raw.encode(), limits).text) == 5000
    assert len(decode_item(raw.encode(), StreamSettings().limits()).text) == 4000
