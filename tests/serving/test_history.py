"""UserHistory: bounded records, redelivery vs duplicate, copies, and the changelog format."""

from __future__ import annotations

import json

from promptrec.serving.history import Applied, Click, UserHistory


def test_history_tells_redelivery_from_duplicate() -> None:
    h = UserHistory()
    assert h.position_of("e1") is None
    assert h.append("e1", "i1", 1, max_len=5, position="0:10")
    assert h.position_of("e1") == "0:10"  # same id at the same position: a redelivery
    assert not h.append("e1", "i1", 1, max_len=5, position="0:11")
    for n in range(2, 20):
        h.append(f"e{n}", "i", n, max_len=5, position=f"0:{n + 10}")
    assert len(h.applied) == 10 and len(h.clicks) == 5
    assert h.position_of("e19") == "0:29" and h.position_of("e1") is None
    assert h.clicks[-1] == Click("i", 19) and h.count == 19
    back = UserHistory.from_value(h.to_value())
    assert back == h


def test_history_remembers_learned_feedback() -> None:
    h = UserHistory()
    assert h.feedback_position("f1") is None
    h.add_feedback("f1", "1:5", max_len=2)
    assert h.feedback_position("f1") == "1:5"
    for n in range(2, 10):
        h.add_feedback(f"f{n}", f"1:{n}", max_len=2)
    assert len(h.feedback) == 4 and h.feedback_position("f1") is None
    h.add_feedback("f@odd", "0:3", max_len=2)  # an id holding the separator
    assert UserHistory.from_value(h.to_value()).feedback_position("f@odd") == "0:3"


def test_changelog_format_is_unchanged() -> None:
    h = UserHistory()
    h.append("e1", "i1", 10, max_len=1, position="0:1")
    h.append("e2", "i2", 20, max_len=1, position="0:2")
    h.add_feedback("f1", "1:7", max_len=1)
    assert h.to_value() == {
        "items": ["i2"],
        "ts": [20],
        "event_ids": ["e1", "e2"],
        "positions": ["0:1", "0:2"],
        "count": 2,
        "feedback": ["f1@1:7"],
    }


def test_values_of_earlier_versions_still_load() -> None:
    # Written before positions and feedback were kept: positions align at the end, the older
    # events get "" (position unknown: a redelivery cannot be told from a duplicate).
    old = json.loads(
        '{"items": ["a", "b"], "ts": [1, 2], "event_ids": ["e0", "e1", "e2"], "count": 3}'
    )
    h = UserHistory.from_value(old)
    assert h.clicks == [Click("a", 1), Click("b", 2)]
    assert h.applied == [Applied("e0", ""), Applied("e1", ""), Applied("e2", "")]
    assert h.position_of("e1") == "" and h.position_of("e9") is None
    assert h.feedback == [] and h.count == 3
    # Some positions, but fewer than event ids.
    h = UserHistory.from_value({"event_ids": ["e0", "e1"], "positions": ["0:5"]})
    assert h.position_of("e0") == "" and h.position_of("e1") == "0:5"
    assert UserHistory.from_value({}) == UserHistory() == UserHistory.from_value(None)


def test_copy_is_independent() -> None:
    h = UserHistory()
    h.append("e1", "i1", 1, max_len=3, position="0:1")
    c = h.copy()
    c.append("e2", "i2", 2, max_len=3, position="0:2")
    c.add_feedback("f1", "0:3", max_len=3)
    assert h.items == ["i1"] and h.count == 1 and h.feedback == []
    assert c.items == ["i1", "i2"] and c.count == 2
