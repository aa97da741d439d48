"""Bounded per-user interaction history, stored as JSON in a changelogged Faust table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["UserHistory"]


@dataclass
class UserHistory:
    """A user's most recent interactions, oldest first.

    ``items`` holds the last ``max_len`` item ids (with repeats, in event order) and ``event_ids``
    the ids of the last ``2 * max_len`` accepted events, so that an event seen again is recognised
    and not appended twice. ``positions`` holds where each of those events was read
    (``"partition:offset"``): the same id at the same position is a *redelivery* (at-least-once
    delivery after a crash or rebalance; answered again, not an error), the same id at another
    position is a *duplicate* sent twice by a producer (dead-lettered).
    """

    items: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)
    count: int = 0
    feedback: list[str] = field(default_factory=list)  # "event_id@partition:offset", bounded

    @classmethod
    def from_value(cls, value: Mapping[str, Any] | None) -> UserHistory:
        """Rebuild from the table value (None for an unknown user)."""
        if not value:
            return cls()
        return cls(
            items=[str(i) for i in value.get("items", [])],
            ts=[int(t) for t in value.get("ts", [])],
            event_ids=[str(e) for e in value.get("event_ids", [])],
            positions=[str(p) for p in value.get("positions", [])],
            count=int(value.get("count", 0)),
            feedback=[str(f) for f in value.get("feedback", [])],
        )

    def to_value(self) -> dict[str, Any]:
        """The JSON-serialisable table value."""
        return {
            "items": self.items,
            "ts": self.ts,
            "event_ids": self.event_ids,
            "positions": self.positions,
            "count": self.count,
            "feedback": self.feedback,
        }

    def seen(self, event_id: str) -> bool:
        """Whether this event was already applied."""
        return event_id in self.event_ids

    def position_of(self, event_id: str) -> str | None:
        """Where an applied event was read (``"partition:offset"``), "" if unknown, None if new."""
        try:
            i = self.event_ids.index(event_id)
        except ValueError:
            return None
        # Histories written before positions were kept have none: align from the end.
        j = i - (len(self.event_ids) - len(self.positions))
        return self.positions[j] if j >= 0 else ""

    def append(
        self, event_id: str, item_id: str, ts: int, max_len: int, position: str = ""
    ) -> bool:
        """Apply one interaction; False (and no change) when ``event_id`` was already applied."""
        if self.seen(event_id):
            return False
        self.items.append(item_id)
        self.ts.append(ts)
        self.event_ids.append(event_id)
        self.positions.append(position)
        self.count += 1
        if len(self.items) > max_len:
            del self.items[:-max_len]
            del self.ts[:-max_len]
        if len(self.event_ids) > 2 * max_len:
            del self.event_ids[: -2 * max_len]
        if len(self.positions) > len(self.event_ids):
            del self.positions[: len(self.positions) - len(self.event_ids)]
        return True

    def feedback_position(self, event_id: str) -> str | None:
        """Where a learned feedback event was read, or None if it is new."""
        prefix = f"{event_id}@"
        for entry in reversed(self.feedback):
            if entry.startswith(prefix):
                return entry[len(prefix) :]
        return None

    def add_feedback(self, event_id: str, position: str, max_len: int) -> None:
        """Remember a learned feedback event (the last ``2 * max_len`` are kept)."""
        self.feedback.append(f"{event_id}@{position}")
        if len(self.feedback) > 2 * max_len:
            del self.feedback[: -2 * max_len]

    def recent(self, n: int) -> list[str]:
        """The last ``n`` distinct item ids, oldest first."""
        out: list[str] = []
        seen: set[str] = set()
        for item in reversed(self.items):
            if item not in seen:
                seen.add(item)
                out.append(item)
                if len(out) == n:
                    break
        out.reverse()
        return out

    def item_set(self) -> frozenset[str]:
        """Every item in the (bounded) history: excluded from recommendations."""
        return frozenset(self.items)
