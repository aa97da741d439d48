"""Per-batch domain logic of the event agents, without Kafka: decode, deduplicate, stage history.

A planner turns a micro-batch of raw records into a *plan*: what to compute (queries, feedback to
learn from), what to dead-letter and which history changes the batch would make. Nothing is
changed while planning. The agent runs the plan's compute stage and only when that succeeds calls
:meth:`RecommendPlan.commit` / :meth:`FeedbackPlan.commit`, which returns the history values to
write. A batch whose stage fails therefore leaves every user's state as it was, so its events can
be replayed from the dead-letter topic and are processed like new ones.

Commits re-read each history: the other event agent may have written the same user while the
stage ran, and its changes must survive ours.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.events.schemas import (
    FeedbackEvent,
    Limits,
    decode_feedback,
    decode_interaction,
    decode_request,
)
from promptrec.serving.history import UserHistory
from promptrec.serving.recommender import Query
from promptrec.serving.requests import query_for_request
from promptrec.serving.settings import ServingSettings

__all__ = [
    "Ask",
    "FeedbackPlan",
    "FeedbackPlanner",
    "HistoryWrite",
    "Inbound",
    "Learn",
    "RecommendPlan",
    "RecommendPlanner",
    "Rejected",
]

R = TypeVar("R")
# Reads a user's current table value (None for an unknown user).
Load = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Inbound(Generic[R]):
    """One raw input record; ``ref`` is the transport's own record, carried back untouched."""

    topic: str  # logical name: "interactions", "recommendation-requests", "feedback"
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    ref: R

    @property
    def position(self) -> str:
        """Where the record was read, ``"partition:offset"`` (tells redeliveries apart)."""
        return f"{self.partition}:{self.offset}"


class Rejected(NamedTuple, Generic[R]):
    """A record to dead-letter, with the reason."""

    inbound: Inbound[R]
    reason: ReasonCode
    detail: str


class Ask(NamedTuple, Generic[R]):
    """One recommendation to compute and publish."""

    inbound: Inbound[R]
    query: Query
    source: str  # "interaction" or "request"
    source_id: str  # event_id or request_id
    ts: int


class Learn(NamedTuple, Generic[R]):
    """One feedback event to learn from, with the user's recent items."""

    inbound: Inbound[R]
    event: FeedbackEvent
    recent: list[str]


class HistoryWrite(NamedTuple, Generic[R]):
    """A history value to store; ``inbound`` is the batch's last record of that user."""

    user_id: str
    value: dict[str, Any]
    inbound: Inbound[R]


class _Staged(Generic[R]):
    """Histories of one batch: loaded once per user, changed only in memory."""

    def __init__(self, load: Load) -> None:
        self._load = load
        self.loaded: dict[str, Mapping[str, Any] | None] = {}
        self.histories: dict[str, UserHistory] = {}

    def get(self, user_id: str) -> UserHistory:
        hist = self.histories.get(user_id)
        if hist is None:
            value = self.loaded[user_id] = self._load(user_id)
            hist = self.histories[user_id] = UserHistory.from_value(value)
        return hist

    def fresh(self, user_id: str, load: Load) -> tuple[UserHistory, bool]:
        """The user's history as stored now; True when it is the staged one (nobody wrote)."""
        value = load(user_id)
        if user_id in self.loaded and value is self.loaded[user_id]:
            return self.histories[user_id], True
        return UserHistory.from_value(value), False


@dataclass
class RecommendPlan(Generic[R]):
    """A planned interactions/requests batch (see :class:`RecommendPlanner`)."""

    asks: list[Ask[R]] = field(default_factory=list)
    rejected: list[Rejected[R]] = field(default_factory=list)
    clicks: list[str] = field(default_factory=list)  # item ids of new interactions, in order
    redeliveries: int = 0
    _new: list[tuple[str, str, str, int, Inbound[R]]] = field(default_factory=list)
    _staged: _Staged[R] | None = None
    _history_len: int = 50

    def commit(self, load: Load) -> list[HistoryWrite[R]]:
        """The history values after this batch's new interactions (call once, on success)."""
        by_user: dict[str, list[tuple[str, str, int, Inbound[R]]]] = {}
        for user_id, event_id, item_id, ts, inbound in self._new:
            by_user.setdefault(user_id, []).append((event_id, item_id, ts, inbound))
        writes: list[HistoryWrite[R]] = []
        for user_id, events in by_user.items():
            assert self._staged is not None
            hist, staged = self._staged.fresh(user_id, load)
            if not staged:  # written meanwhile (feedback ids): apply our clicks on top
                for event_id, item_id, ts, inbound in events:
                    hist.append(event_id, item_id, ts, self._history_len, inbound.position)
            writes.append(HistoryWrite(user_id, hist.to_value(), events[-1][3]))
        return writes


class RecommendPlanner:
    """Decodes interactions and requests, checks them against history and catalog, stages clicks.

    Args:
        settings: ``history_len``, ``recent_items`` and ``top_k``.
        limits: Decoding limits.
        catalog: The item ids that exist (an interaction with another item is dead-lettered).
        filterable: Attribute keys a request filter may name (None: every key).
    """

    def __init__(
        self,
        settings: ServingSettings,
        limits: Limits,
        catalog: Container[str],
        filterable: frozenset[str] | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.catalog = catalog
        self.filterable = filterable

    def plan(self, batch: Sequence[Inbound[R]], load: Load, now_ms: int) -> RecommendPlan[R]:
        """Plan one batch; ``load`` reads the history table. Changes nothing."""
        s = self.settings
        max_ts = self.limits.max_ts(now_ms)
        staged: _Staged[R] = _Staged(load)
        plan: RecommendPlan[R] = RecommendPlan(_staged=staged, _history_len=s.history_len)
        for inbound in batch:
            try:
                if inbound.topic == "interactions":
                    e = decode_interaction(inbound.value, self.limits, max_ts=max_ts)
                    if e.item_id not in self.catalog:
                        raise InvalidEvent(
                            ReasonCode.unknown_item, f"item {e.item_id!r} not in the catalog"
                        )
                    hist = staged.get(e.user_id)
                    position = inbound.position
                    seen_at = hist.position_of(e.event_id)
                    if seen_at is None:
                        hist.append(e.event_id, e.item_id, e.ts, s.history_len, position)
                        plan._new.append((e.user_id, e.event_id, e.item_id, e.ts, inbound))
                        plan.clicks.append(e.item_id)
                    elif seen_at != position:
                        raise InvalidEvent(
                            ReasonCode.duplicate_event,
                            f"event_id {e.event_id!r} already applied (at {seen_at or '?'})",
                        )
                    else:
                        # Redelivered after a crash or rebalance: already in the history, but
                        # its recommendation may not have been published, so answer again.
                        plan.redeliveries += 1
                    user_id, k, source, source_id, ts = (
                        e.user_id, s.top_k, "interaction", e.event_id, e.ts
                    )  # fmt: skip
                else:
                    r = decode_request(inbound.value, self.limits, max_ts=max_ts)
                    # A similar-items request may come without a user: no history to read.
                    hist = staged.get(r.user_id) if r.user_id else UserHistory()
                    query = query_for_request(
                        r,
                        hist.recent(s.recent_items),
                        hist.item_set(),
                        s.top_k,
                        self.catalog,
                        self.filterable,
                    )
                    plan.asks.append(Ask(inbound, query, "request", r.request_id, r.ts))
                    continue
            except InvalidEvent as exc:
                plan.rejected.append(Rejected(inbound, exc.reason, exc.detail))
                continue
            query = Query(user_id, hist.recent(s.recent_items), hist.item_set(), k)
            plan.asks.append(Ask(inbound, query, source, source_id, ts))
        return plan


@dataclass
class FeedbackPlan(Generic[R]):
    """A planned feedback batch (see :class:`FeedbackPlanner`)."""

    learn: list[Learn[R]] = field(default_factory=list)
    rejected: list[Rejected[R]] = field(default_factory=list)
    redeliveries: int = 0
    _staged: _Staged[R] | None = None
    _history_len: int = 50

    def commit(self, load: Load, skipped: Collection[int] = ()) -> list[HistoryWrite[R]]:
        """History values that remember the learned events (``skipped``: positions in
        :attr:`learn` the learner rejected, which stay unlearned). Call once, on success."""
        by_user: dict[str, list[Learn[R]]] = {}
        for i, item in enumerate(self.learn):
            if i not in skipped:
                by_user.setdefault(item.event.user_id, []).append(item)
        writes: list[HistoryWrite[R]] = []
        for user_id, items in by_user.items():
            assert self._staged is not None
            hist, _ = self._staged.fresh(user_id, load)  # planning changed none of them
            for item in items:
                hist.add_feedback(item.event.event_id, item.inbound.position, self._history_len)
            writes.append(HistoryWrite(user_id, hist.to_value(), items[-1].inbound))
        return writes


class FeedbackPlanner:
    """Decodes feedback and tells new events from redeliveries and duplicates."""

    def __init__(self, settings: ServingSettings, limits: Limits) -> None:
        self.settings = settings
        self.limits = limits

    def plan(self, batch: Sequence[Inbound[R]], load: Load, now_ms: int) -> FeedbackPlan[R]:
        """Plan one batch; ``load`` reads the history table. Changes nothing."""
        max_ts = self.limits.max_ts(now_ms)
        staged: _Staged[R] = _Staged(load)
        plan: FeedbackPlan[R] = FeedbackPlan(_staged=staged, _history_len=self.settings.history_len)
        batch_ids: set[str] = set()
        for inbound in batch:
            try:
                f = decode_feedback(inbound.value, self.limits, max_ts=max_ts)
                hist = staged.get(f.user_id)
                seen_at = hist.feedback_position(f.event_id)
                if seen_at == inbound.position:
                    # Redelivered after a crash or rebalance: already learned from.
                    plan.redeliveries += 1
                    continue
                if seen_at is not None or f.event_id in batch_ids:
                    raise InvalidEvent(
                        ReasonCode.duplicate_event,
                        f"feedback event_id {f.event_id!r} already learned (at {seen_at or '?'})",
                    )
            except InvalidEvent as exc:
                plan.rejected.append(Rejected(inbound, exc.reason, exc.detail))
                continue
            batch_ids.add(f.event_id)
            plan.learn.append(Learn(inbound, f, hist.recent(self.settings.recent_items)))
        return plan
