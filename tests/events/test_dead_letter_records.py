"""Reading dead-letter records back (Kafka-free): bytes recovery, replay policy, selection, tally."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from promptrec.events.dead_letter import (
    DATA_ERROR_REASONS,
    RETRYABLE_REASONS,
    BadDeadLetter,
    Selection,
    original_bytes,
    parse_dead_letter,
    parse_offset,
    parse_time,
    skip_reason,
)
from promptrec.events.dead_letter_stats import UNREADABLE, Tally, format_ts, preview
from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.events.schemas import EXAMPLES, DeadLetter, Limits, decode_interaction, to_json_bytes

VALUE = b'{"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": 1}'


def _dl(value: bytes | None = VALUE, key: bytes | None = b"u1", **kw: Any) -> DeadLetter:
    args: dict[str, Any] = {
        "topic": "p.interactions",
        "partition": 1,
        "offset": 7,
        "key": key,
        "value": value,
        "reason": ReasonCode.unknown_item,
        "detail": "item 'i1' not in the catalog",
        "worker": "w:1",
        "max_bytes": 1024,
        "ts": 1767225600000,
    }
    args.update(kw)
    return DeadLetter.build(**args)


def _edit(record: DeadLetter, **fields: Any) -> bytes:
    return json.dumps({**record.model_dump(), **fields}).encode()


def test_reason_sets_split_every_reason() -> None:
    assert {"processing_error", "unknown_item", "unknown_user"} == RETRYABLE_REASONS
    assert set(ReasonCode) == DATA_ERROR_REASONS | RETRYABLE_REASONS
    assert not DATA_ERROR_REASONS & RETRYABLE_REASONS


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"u1", VALUE),
        (None, VALUE),
        (b"\xff\x00key", b"\x80\x81binary"),  # both as base64
        (b"", b""),
        (b"u1", None),  # a tombstone
    ],
)
def test_original_bytes_round_trip(key: bytes | None, value: bytes | None) -> None:
    record = parse_dead_letter(to_json_bytes(_dl(value, key)))
    assert original_bytes(record) == (key, value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"original_topic": "t"}', "schema"),
        (b"\xff\xfe", "bad_encoding"),
        (None, "empty_value"),
        (_edit(_dl(), original_topic=""), "is not a topic name"),
        (_edit(_dl(), original_topic="no spaces allowed"), "is not a topic name"),
        (_edit(_dl(), reason="no_such_reason"), "schema"),
    ],
)
def test_garbage_is_not_a_dead_letter(raw: bytes | None, message: str) -> None:
    with pytest.raises(BadDeadLetter, match=message):
        parse_dead_letter(raw)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"value_text": None, "value_base64": "!!not base64!!"}, "not valid base64"),
        ({"key_text": None, "key_base64": "abc"}, "not valid base64"),  # bad padding
        ({"value_base64": base64.b64encode(VALUE).decode()}, "both value_text and value_base64"),
        ({"value_text": VALUE.decode() + " "}, "value_size"),
        ({"value_text": VALUE.decode().replace("e1", "e2")}, "value_sha256"),
        ({"value_text": None}, "a value is described"),
    ],
)
def test_malformed_raw_fields_are_refused(fields: dict[str, Any], message: str) -> None:
    record = parse_dead_letter(_edit(_dl(), **fields))
    with pytest.raises(BadDeadLetter, match=message):
        original_bytes(record)


def test_truncated_records_are_never_replayed() -> None:
    cut = _dl(VALUE, max_bytes=10)
    assert cut.truncated and cut.value_size == len(VALUE)
    why = skip_reason(cut, frozenset(ReasonCode))
    assert why is not None and why.startswith("truncated")
    assert hashlib.sha256(VALUE).hexdigest()[:16] in why
    with pytest.raises(BadDeadLetter, match="truncated"):
        original_bytes(cut)
    # A cut key makes the record truncated too: it could not be re-sent to the same key.
    assert _dl(VALUE, b"k" * 100, max_bytes=len(VALUE)).truncated


def test_data_errors_need_their_name() -> None:
    for reason in ReasonCode:
        record = _dl(reason=reason)
        if reason in RETRYABLE_REASONS:
            assert skip_reason(record, frozenset()) is None
        else:
            assert (
                skip_reason(record, frozenset())
                == f"data error: re-sent only with --reason {reason}"
            )
            assert skip_reason(record, frozenset({reason})) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12", (None, 12)), ("0:5", (0, 5)), (" 3:0 ", (3, 0))],
)
def test_parse_offset(text: str, expected: tuple[int | None, int]) -> None:
    assert parse_offset(text) == expected


@pytest.mark.parametrize("text", ["", "x", "1:", ":1", "-1", "0:-2", "-1:3", "1.5", "a:1"])
def test_parse_offset_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected OFFSET|must be >= 0"):
        parse_offset(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1767225600000", 1767225600000),
        ("0", 0),
        ("2026-01-01T00:00:00Z", 1767225600000),
        ("2026-01-01T00:00:00", 1767225600000),  # no zone: UTC
        ("2026-01-01T01:00:00+01:00", 1767225600000),
        ("2026-01-01", 1767225600000),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1767225600", "looks like epoch seconds; give epoch milliseconds \\(1767225600000\\)"),
        ("yesterday", "expected epoch milliseconds or an ISO time"),
        ("-5", "must not be negative"),
        ("2026-13-01", "expected epoch milliseconds"),
    ],
)
def test_parse_time_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time(text)


def test_selection() -> None:
    record = _dl()
    assert Selection().matches(record)
    assert Selection(reasons=frozenset({ReasonCode.unknown_item})).matches(record)
    assert not Selection(reasons=frozenset({ReasonCode.schema})).matches(record)
    assert Selection(topics=frozenset({"p.interactions"})).matches(record)
    assert not Selection(topics=frozenset({"p.items"})).matches(record)
    assert Selection(since_ms=record.ts, until_ms=record.ts).matches(record)
    assert not Selection(since_ms=record.ts + 1).matches(record)
    assert not Selection(until_ms=record.ts - 1).matches(record)
    # A partition's own bound wins over the bound of every partition, in any order.
    sel = Selection(from_offsets=((1, 4), (None, 2)), to_offsets=((None, 9),))
    assert [sel.first_offset(p) for p in (0, 1)] == [2, 4]
    assert [sel.last_offset(p) for p in (0, 1)] == [9, 9]
    assert Selection().first_offset(0) == 0 and Selection().last_offset(0) is None


def _bad_ts(ts: int) -> DeadLetter:
    """A dead letter made the way the worker makes one: from the real decoding error."""
    raw = json.dumps({**EXAMPLES["interactions"], "ts": ts}).encode()
    with pytest.raises(InvalidEvent) as info:
        decode_interaction(raw, Limits(max_bytes=4096, min_ts=946684800000))
    return _dl(raw, reason=info.value.reason, detail=info.value.detail)


def test_tally_hint_names_a_flood_of_seconds() -> None:
    tally = Tally(max_examples=2)
    for i in range(200):
        r = _bad_ts(1767225600 + i)
        tally.add(r.reason, r.original_topic, r.ts + i, {"n": i}, None, r.detail)
    tally.add(UNREADABLE, "-", None, {"error": "x"})
    top = tally.sorted()[0]
    assert (top.reason, top.count, top.seconds, len(top.examples)) == ("bad_timestamp", 200, 200, 2)
    assert (top.first_ts, top.last_ts) == (1767225600000, 1767225600199)
    assert tally.hint() == (
        "200 of 201 records (100 %) are bad_timestamp on p.interactions: ts looks like epoch "
        "seconds; ts must be epoch milliseconds (ts * 1000)"
    )
    assert top.to_json(tally.total)["percent"] == 99.5


def test_tally_hint_of_other_reasons() -> None:
    tally = Tally()
    assert tally.hint() is None
    tally.add("unknown_item", "p.interactions", 1, {}, "sent")
    assert tally.hint() is not None and tally.hint().startswith(  # type: ignore[union-attr]
        "1 of 1 records are unknown_item on p.interactions: items arrive before"
    )
    group = tally.add("unknown_item", "p.interactions", 2, {}, "truncated")
    assert (group.skipped, group.why) == (1, "truncated")


def test_preview_and_format_ts() -> None:
    assert preview(_dl(b"a\nb")) == "a\\nb"
    assert preview(_dl(b"\xff" * 3)) == "base64:" + base64.b64encode(b"\xff" * 3).decode()
    assert preview(_dl(None)) == "null"
    assert preview(_dl(b"x" * 500)).endswith("...") and len(preview(_dl(b"x" * 500))) == 80
    assert format_ts(1767225600000) == "2026-01-01T00:00:00.000Z"
    assert format_ts(None) == "-"
