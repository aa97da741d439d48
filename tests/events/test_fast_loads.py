"""The msgspec JSON parse of inbound events is a drop-in for ``json.loads``, errors included."""

from __future__ import annotations

import json
import math
import random

import pytest

from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.events.schemas import _loads, decode_interaction
from promptrec.streams.settings import StreamSettings

GOOD = '{"event_id":"e1","user_id":"u1","item_id":"i1","type":"click","ts":1767225600000}'

DOCUMENTS = [
    GOOD,
    '{"a":1,"a":2}',  # duplicate key: the last one wins in both
    '{"a":-0.0,"b":5e-324,"c":1E5,"d":0.30000000000000004}',
    '{"a":123456789012345678901234567890,"b":-9223372036854775809}',  # big ints stay ints
    '{"a":"\\ud83d\\ude00","\\u00e9":"\\u0000","b":"\\u007f"}',
    "true",
    "[1, 2]",
    '{"a":' + "1" * 4000 + "}",
    # Rejected by msgspec, accepted by the stdlib (then classified by _check_values):
    '{"a":NaN}',
    '{"a":Infinity,"b":-Infinity}',
    '{"a":1e400}',
    '{"a":"\\ud800"}',
    '{"a":"\\udc00\\ud800"}',
    # Rejected by both:
    "",
    "  ",
    "\ufeff{}",
    '{"a":"x\x01"}',
    "[1,]",
    '{"a":1}{',
    '{"a":01}',
    '{"a":.5}',
    '{"a":tru}',
    "{'a':1}",
    '{"a":' + "1" * 5000 + "}",  # over the int digit limit
    "[" * 100_000 + "]" * 100_000,  # deeper than either parser recurses
]


def _outcome(parse: object, text: str) -> tuple[str, object]:
    try:
        value = parse(text)  # type: ignore[operator]
    except (ValueError, RecursionError) as exc:
        return "error", (type(exc), str(exc))
    # NaN != NaN: compare its JSON text instead.
    return "ok", json.dumps(value)


@pytest.mark.parametrize("text", DOCUMENTS, ids=lambda t: repr(t)[:30])
def test_same_result_or_same_error_as_json_loads(text: str) -> None:
    assert _outcome(_loads, text) == _outcome(json.loads, text)


def test_floats_parse_alike() -> None:
    rng = random.Random(0)
    for _ in range(20_000):
        x = rng.uniform(-1.0, 1.0) * 10 ** rng.randint(-300, 300)
        for text in (repr(x), f"{x:.17g}", f"{x:.3e}"):
            assert _loads(text) == json.loads(text), text


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (GOOD.replace("1767225600000", "NaN"), ReasonCode.non_finite),
        (GOOD.replace("1767225600000", "1e999"), ReasonCode.non_finite),
        (GOOD.replace('"i1"', '"\\ud800"'), ReasonCode.bad_encoding),
        (GOOD[:-1], ReasonCode.invalid_json),
        ("[1]", ReasonCode.not_an_object),
        (GOOD.replace("1767225600000", "9" * 30), ReasonCode.bad_timestamp),
    ],
)
def test_bad_events_keep_their_reasons(raw: str, reason: ReasonCode) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_interaction(raw.encode(), StreamSettings().limits())
    assert caught.value.reason == reason


def test_good_event_decodes() -> None:
    event = decode_interaction(GOOD.encode(), StreamSettings().limits())
    assert (event.user_id, event.ts) == ("u1", 1767225600000)
    assert not math.isnan(event.ts)
