"""Bounded per-user interaction history, stored as JSON in a changelogged Faust table.

In memory a history is a few lists of small records; on the changelog it keeps the column format
it always had (``items``, ``ts``, ``event_ids``, ``positions``, ``count``, ``feedback``), so
values written by earlier versions load unchanged and older workers can still read new ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["Applied", "Click", "UserHistory"]


class Click(NamedTuple):
    """One interaction kept in the history."""

    item_id: str
    ts: int


class Applied(NamedTuple):
    """An event that changed the history, and where it was read (``"partition:offset"``).

    ``position`` is ``""`` for events stored before positions were kept.
    """

    event_id: str
    position: str


@dataclass
class UserHistory:
    """A user's most recent interactions, oldest first.

    ``clicks`` holds the last ``max_len`` interactions (with repeats, in event order) and
    ``applied`` the last ``2 * max_len`` accepted interaction events, so that an event seen again
    is recognised and not appended twice: the same id at the same position is a *redelivery*
    (at-least-once delivery after a crash or rebalance; answered again, not an error), the same
    id at another position is a *duplicate* sent twice by a producer (dead-lettered).
    ``feedback`` holds the last ``2 * max_len`` learned feedback events in the same way.
    """

    clicks: list[Click] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    count: int = 0
    feedback: list[Applied] = field(default_factory=list)

    @classmethod
    def from_value(cls, value: Mapping[str, Any] | None) -> UserHistory:
        """Rebuild from the table value (None for an unknown user)."""
        if not value:
            return cls()
        items = [str(i) for i in value.get("items", [])]
        ts = [int(t) for t in value.get("ts", [])]
        event_ids = [str(e) for e in value.get("event_ids", [])]
        positions = [str(p) for p in value.get("positions", [])]
        # Columns are aligned at their ends: histories written before positions were kept have
        # fewer positions than event ids, and their oldest events get "" (position unknown).
        positions = positions[max(0, len(positions) - len(event_ids)) :]
        positions = [""] * (len(event_ids) - len(positions)) + positions
        n = min(len(items), len(ts))
        items, ts = items[len(items) - n :], ts[len(ts) - n :]
        feedback = []
        for entry in value.get("feedback", []):
            event_id, _, position = str(entry).rpartition("@")
            feedback.append(Applied(event_id, position))
        return cls(
            clicks=[Click(i, t) for i, t in zip(items, ts, strict=True)],
            applied=[Applied(e, p) for e, p in zip(event_ids, positions, strict=True)],
            count=int(value.get("count", 0)),
            feedback=feedback,
        )

    def to_value(self) -> dict[str, Any]:
        """The JSON-serialisable table value (the column format of the changelog)."""
        return {
            "items": [c.item_id for c in self.clicks],
            "ts": [c.ts for c in self.clicks],
            "event_ids": [a.event_id for a in self.applied],
            "positions": [a.position for a in self.applied],
            "count": self.count,
            "feedback": [f"{a.event_id}@{a.position}" for a in self.feedback],
        }

    def copy(self) -> UserHistory:
        """An independent copy: a batch changes copies and commits them only when it succeeds."""
        # The records are immutable tuples, so copying the lists is enough.
        return UserHistory(
            clicks=list(self.clicks),
            applied=list(self.applied),
            count=self.count,
            feedback=list(self.feedback),
        )

    @property
    def items(self) -> list[str]:
        """The kept item ids, oldest first."""
        return [c.item_id for c in self.clicks]

    def seen(self, event_id: str) -> bool:
        """Whether this interaction event was already applied."""
        return self.position_of(event_id) is not None

    def position_of(self, event_id: str) -> str | None:
        """Where an applied event was read (``"partition:offset"``), "" if unknown, None if new."""
        for entry in reversed(self.applied):
            if entry.event_id == event_id:
                return entry.position
        return None

    def append(
        self, event_id: str, item_id: str, ts: int, max_len: int, position: str = ""
    ) -> bool:
        """Apply one interaction; False (and no change) when ``event_id`` was already applied."""
        if self.seen(event_id):
            return False
        self.clicks.append(Click(item_id, ts))
        self.applied.append(Applied(event_id, position))
        self.count += 1
        if len(self.clicks) > max_len:
            del self.clicks[:-max_len]
        if len(self.applied) > 2 * max_len:
            del self.applied[: -2 * max_len]
        return True

    def feedback_position(self, event_id: str) -> str | None:
        """Where a learned feedback event was read, or None if it is new."""
        for entry in reversed(self.feedback):
            if entry.event_id == event_id:
                return entry.position
        return None

    def add_feedback(self, event_id: str, position: str, max_len: int) -> None:
        """Remember a learned feedback event (the last ``2 * max_len`` are kept)."""
        self.feedback.append(Applied(event_id, position))
        if len(self.feedback) > 2 * max_len:
            del self.feedback[: -2 * max_len]

    def recent(self, n: int) -> list[str]:
        """The last ``n`` distinct item ids, oldest first."""
        out: list[str] = []
        seen: set[str] = set()
        for click in reversed(self.clicks):
            if click.item_id not in seen:
                seen.add(click.item_id)
                out.append(click.item_id)
                if len(out) == n:
                    break
        out.reverse()
        return out

    def item_set(self) -> frozenset[str]:
        """Every item in the (bounded) history: excluded from recommendations."""
        return frozenset(c.item_id for c in self.clicks)
