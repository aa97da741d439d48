"""Counting dead-letter records by reason and original topic, with examples and a hint.

Kafka-free: ``promptrec dead-letter list`` and ``replay`` feed every record they read into a
:class:`Tally` and print its groups. The hint names the largest group, so that a flood of one
mistake (every event rejected as ``bad_timestamp`` because ``ts`` is in seconds) is the first
thing a reader sees.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from promptrec.events.schemas import DeadLetter

__all__ = ["UNREADABLE", "Group", "Tally", "format_ts", "preview"]

UNREADABLE = "unreadable"
"""Group reason of records in the dead-letter topic that are not dead-letter records."""

_PREVIEW_CHARS = 80
_SECONDS_MARK = "looks like epoch seconds"
_MICROS_MARK = "looks like epoch microseconds"
# What to do about each reason, for the hint line (reasons not listed get the generic one).
_ADVICE = {
    "invalid_json": "the producer sends values that are not JSON",
    "not_an_object": "the producer sends JSON that is not an object",
    "schema": "records do not match the schema; compare with `promptrec schema TOPIC`",
    "unknown_type": "interaction type must be click, view, purchase or rating",
    "too_large": "values exceed PROMPTREC_MAX_EVENT_BYTES (catalog: PROMPTREC_MAX_ITEM_BYTES)",
    "bad_timestamp": "ts must be epoch milliseconds within the accepted window",
    "non_finite": "NaN or Infinity in a number field",
    "empty_text": "items need a title or a text",
    "empty_value": "null or empty values on an event topic",
    "duplicate_event": "producers re-send event ids that were already applied",
    "bad_encoding": "values are not UTF-8",
    "processing_error": "the worker failed; see its log, then `promptrec dead-letter replay`",
    "unknown_item": "items arrive before their catalog record; publish the items, then "
    "`promptrec dead-letter replay --reason unknown_item`",
    "unknown_user": "users unknown to the worker; publish their profiles, then replay",
    "bad_model_update": "model-updates records this worker cannot apply",
    UNREADABLE: "the dead-letter topic holds records not written by a promptrec worker",
}


def format_ts(ms: int | None) -> str:
    """Epoch milliseconds as an ISO UTC time (``-`` for None)."""
    if ms is None:
        return "-"
    try:
        when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return str(ms)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def preview(record: DeadLetter) -> str:
    """The start of the original value, on one line (``base64:`` for binary, ``null``)."""
    if record.value_text is not None:
        text = record.value_text.replace("\n", "\\n").replace("\r", "\\r")
    elif record.value_base64 is not None:
        text = "base64:" + record.value_base64
    else:
        return "null"
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."


@dataclass
class Group:
    """Records of one reason and original topic.

    Attributes:
        reason: A reason code, or :data:`UNREADABLE`.
        topic: The original topic (``-`` for unreadable records).
        count: Records in the group.
        first_ts: Earliest dead-letter time (epoch ms).
        last_ts: Latest dead-letter time (epoch ms).
        examples: Up to the tally's limit, in reading order.
        outcomes: Replay outcome -> count (``sent`` or why it was skipped or failed).
        seconds: Records whose detail says ts looks like epoch seconds.
        micros: Records whose detail says ts looks like epoch microseconds.
    """

    reason: str
    topic: str
    count: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: int = 0
    micros: int = 0

    @property
    def skipped(self) -> int:
        """Records not sent (skipped or failed)."""
        return self.count - self.outcomes["sent"]

    @property
    def why(self) -> str:
        """The most common reason a record of this group was not sent (empty if all were)."""
        rest = [(n, why) for why, n in self.outcomes.items() if why != "sent"]
        return max(rest)[1] if rest else ""

    def to_json(self, total: int) -> dict[str, Any]:
        """JSON of the group; ``percent`` is of ``total``."""
        return {
            "reason": self.reason,
            "original_topic": self.topic,
            "count": self.count,
            "percent": round(100.0 * self.count / total, 1) if total else 0.0,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "outcomes": dict(self.outcomes),
            "examples": self.examples,
        }


@dataclass
class Tally:
    """Groups of dead-letter records, filled one record at a time.

    Attributes:
        max_examples: Examples kept per group.
        groups: ``(reason, topic)`` -> group.
    """

    max_examples: int = 3
    groups: dict[tuple[str, str], Group] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Records counted."""
        return sum(g.count for g in self.groups.values())

    def add(
        self,
        reason: str,
        topic: str,
        ts: int | None,
        example: dict[str, Any],
        outcome: str | None = None,
        detail: str = "",
    ) -> Group:
        """Count one record (``outcome``: what a replay did with it, None for listing)."""
        group = self.groups.get((reason, topic))
        if group is None:
            group = self.groups[(reason, topic)] = Group(reason, topic)
        group.count += 1
        if ts is not None:
            group.first_ts = ts if group.first_ts is None else min(group.first_ts, ts)
            group.last_ts = ts if group.last_ts is None else max(group.last_ts, ts)
        if len(group.examples) < self.max_examples:
            group.examples.append(example)
        if outcome is not None:
            group.outcomes[outcome] += 1
        group.seconds += _SECONDS_MARK in detail
        group.micros += _MICROS_MARK in detail
        return group

    def sorted(self) -> list[Group]:
        """Groups, largest first (ties: by reason, then topic)."""
        return sorted(self.groups.values(), key=lambda g: (-g.count, g.reason, g.topic))

    def hint(self) -> str | None:
        """One line on the largest group: its share and what usually causes it."""
        groups = self.sorted()
        if not groups:
            return None
        top, total = groups[0], self.total
        advice = _ADVICE.get(top.reason, "see the examples")
        if top.seconds * 2 > top.count:
            advice = "ts looks like epoch seconds; ts must be epoch milliseconds (ts * 1000)"
        elif top.micros * 2 > top.count:
            advice = "ts looks like epoch microseconds; ts must be epoch milliseconds"
        where = f" on {top.topic}" if top.topic != "-" else ""
        share = f" ({100.0 * top.count / total:.0f} %)" if top.count < total else ""
        return f"{top.count} of {total} records{share} are {top.reason}{where}: {advice}"
