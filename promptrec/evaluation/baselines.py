"""Reference methods computed by the harness on the same split: Pop, ItemKNN, text zero-shot.

* :class:`PopScorer`: training-interaction counts (the same list for every user).
* :class:`ItemKNNScorer`: item-item cosine similarity of training co-occurrence (binary user-item
  matrix), each item keeping its ``neighbours`` most similar items; a user's score for an item
  is the sum of its similarities to the items of the user's history.
* :class:`TextZeroShotScorer`: no training at all: the frozen encoder's vectors of the
  prompt-wrapped item texts, mean-centred over the catalog and re-normalised (sentence embeddings
  share a large common direction that makes every item look alike; removing the catalog mean is
  a statistic of the item texts only, no interaction is used); the user vector is the
  recency-weighted mean of the history's item vectors
  (:class:`~promptrec.encoder.towers.UserTower`), scored by cosine similarity.

Each ``select_*`` function picks its one hyper-parameter on the validation targets only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from promptrec.encoder.towers import UserTower
from promptrec.evaluation.protocol import Split, evaluate

__all__ = [
    "ItemKNNScorer",
    "PopScorer",
    "TextZeroShotScorer",
    "select_itemknn",
    "select_text_zero_shot",
]


class PopScorer:
    """Most popular items in the training part."""

    def __init__(self, split: Split) -> None:
        self.counts = split.train_counts()  # (n_items,)

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)``: the training counts, for every user."""
        return np.broadcast_to(self.counts, (len(users), self.counts.shape[0])).copy()


class ItemKNNScorer:
    """Item-based nearest neighbours on training co-occurrence.

    Args:
        split: Training sequences define the user-item matrix.
        neighbours: Similar items kept per item (0: all).
        shrink: Added to the cosine denominator; damps pairs of rarely seen items.
    """

    def __init__(self, split: Split, neighbours: int = 100, shrink: float = 10.0) -> None:
        n_users, n_items = len(split.train), split.n_items
        x = np.zeros((n_users, n_items), dtype=np.float32)  # binary user-item matrix
        for u, seq in enumerate(split.train):
            x[u, seq] = 1.0
        co = x.T @ x  # (n_items, n_items) co-occurrence counts
        counts = np.diag(co).astype(np.float64)
        sim = co / (np.sqrt(np.outer(counts, counts)) + shrink)
        np.fill_diagonal(sim, 0.0)
        if 0 < neighbours < n_items:
            # Keep each row's top neighbours: zero everything below the row's k-th largest.
            kth = np.partition(sim, n_items - neighbours, axis=1)[:, n_items - neighbours]
            sim = np.where(sim >= kth[:, None], sim, 0.0)
        self.sim = sim.astype(np.float32)  # (n_items, n_items), row i = neighbours of item i

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)``: summed similarity to the history's items."""
        out = np.zeros((len(users), self.sim.shape[0]), dtype=np.float32)
        for i, hist in enumerate(histories):
            if len(hist):
                out[i] = self.sim[np.asarray(hist, dtype=np.int64)].sum(axis=0)
        return out


class TextZeroShotScorer:
    """Frozen text vectors, recency-weighted user mean, cosine similarity; nothing trained.

    Args:
        text: ``(n_items, dim)`` unit vectors of the prompt-wrapped item texts.
        recency_decay: Weight factor per step into the past.
        recent: Newest history items used (0: all).
        center: Subtract the catalog mean vector and re-normalise.
    """

    def __init__(
        self, text: np.ndarray, recency_decay: float = 0.9, recent: int = 50, center: bool = True
    ) -> None:
        text = np.asarray(text, dtype=np.float32)  # (n_items, dim)
        if center:
            text = text - text.mean(axis=0, keepdims=True)
            norms = np.linalg.norm(text, axis=1, keepdims=True)
            text = text / np.maximum(norms, 1e-12)
        self.text = text
        self.tower = UserTower(recency_decay=recency_decay, profile_weight=0.0)
        self.recent = recent

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)`` cosine similarities."""
        hist = [
            self.text[np.asarray(h[-self.recent :] if self.recent else h, dtype=np.int64)]
            for h in histories
        ]
        vecs, _ = self.tower.build_many(hist, [None] * len(hist))  # (b, dim), zero if empty
        if vecs.shape[1] == 0:
            return np.zeros((len(users), self.text.shape[0]), dtype=np.float32)
        return vecs @ self.text.T


def select_itemknn(split: Split, grid: Sequence[int] = (20, 50, 100, 200)) -> ItemKNNScorer:
    """The ItemKNN with the best validation NDCG@10 over ``neighbours`` in ``grid``."""
    best: tuple[float, ItemKNNScorer] | None = None
    for k in grid:
        scorer = ItemKNNScorer(split, neighbours=k)
        ndcg = evaluate(scorer, split, "valid")["NDCG@10"]
        if best is None or ndcg > best[0]:
            best = (ndcg, scorer)
    assert best is not None
    return best[1]


def select_text_zero_shot(
    split: Split, text: np.ndarray, grid: Sequence[float] = (0.5, 0.8, 0.9, 1.0)
) -> TextZeroShotScorer:
    """The zero-shot scorer with the best validation NDCG@10 over ``recency_decay``."""
    best: tuple[float, TextZeroShotScorer] | None = None
    for decay in grid:
        scorer = TextZeroShotScorer(text, recency_decay=decay)
        ndcg = evaluate(scorer, split, "valid")["NDCG@10"]
        if best is None or ndcg > best[0]:
            best = (ndcg, scorer)
    assert best is not None
    return best[1]
