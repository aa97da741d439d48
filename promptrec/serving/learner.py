"""Online learning of the scoring head from feedback, in mini-batches (test-then-learn)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.events.schemas import FeedbackEvent
from promptrec.serving.engine import Engine
from promptrec.serving.recommender import Recommender

__all__ = ["LearnOutcome", "OnlineLearner"]


@dataclass
class LearnOutcome:
    """What one :meth:`OnlineLearner.learn_many` call did."""

    learned: int = 0
    loss: float | None = None
    scores: np.ndarray | None = None  # (learned,) pre-update probabilities
    labels: np.ndarray | None = None  # (learned,) targets in [0, 1]
    rejected: list[tuple[int, InvalidEvent]] = field(default_factory=list)  # (position, reason)


class OnlineLearner:
    """Turns feedback into ``(user vector, item vector, label)`` triples and steps the head.

    The user vector of a feedback event is the one its recommendation was computed with, when the
    worker still remembers that recommendation (bounded LRU); otherwise it is rebuilt from the
    user's current history.
    """

    def __init__(
        self,
        engine: Engine,
        recommender: Recommender,
        memory: int = 20_000,
        learn: Callable[[np.ndarray, np.ndarray, np.ndarray], float] | None = None,
    ) -> None:
        self.engine = engine
        self.recommender = recommender
        # The head step; model sync wraps it to record this worker's own changes.
        self._learn = learn or (lambda u, v, y: engine.head.learn_many(u, v, y))
        self._contexts: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory = memory

    def remember(self, recommendation_id: str, user_vector: np.ndarray) -> None:
        """Keep the (dim,) user vector a recommendation was made with."""
        self._contexts[recommendation_id] = user_vector
        if len(self._contexts) > self._memory:
            self._contexts.popitem(last=False)

    def remembers(self, recommendation_id: str) -> bool:
        """Whether this learner made (and still remembers) that recommendation."""
        return recommendation_id in self._contexts

    def learn_many(
        self, events: Sequence[FeedbackEvent], recents: Sequence[Sequence[str]]
    ) -> LearnOutcome:
        """One head update from a mini-batch; events without usable vectors are rejected."""
        out = LearnOutcome()
        if not events:
            return out
        engine = self.engine
        items, found = engine.index.get_many([e.item_id for e in events])  # (n, dim)
        rebuilt, has_signal = self.recommender.user_vectors([e.user_id for e in events], recents)
        users = np.zeros_like(items)
        keep: list[int] = []
        for i, event in enumerate(events):
            if not found[i]:
                out.rejected.append(
                    (
                        i,
                        InvalidEvent(
                            ReasonCode.unknown_item, f"item {event.item_id!r} not in catalog"
                        ),
                    )
                )
                continue
            context = self._contexts.get(event.recommendation_id or "")
            if context is not None:
                users[i] = context
            elif has_signal[i]:
                users[i] = rebuilt[i]
            else:
                out.rejected.append(
                    (i, InvalidEvent(ReasonCode.unknown_user, f"no history for {event.user_id!r}"))
                )
                continue
            keep.append(i)
        if not keep:
            return out
        labels = np.array([events[i].target for i in keep], dtype=np.float32)
        u, v = users[keep], items[keep]
        # Test-then-learn: score with the current head before it sees these labels.
        out.scores = engine.head.predict_proba_many(u, v)
        out.labels = labels
        out.loss = self._learn(u, v, labels)
        out.learned = len(keep)
        return out
