"""Candidate lists of the ranking stage and their target ranks under cosine or a scoring head.

One :class:`CandidateLists` row is one query as the worker answers it: a user vector, the
candidates retrieval returned (best first) and where the held-in target is among them (if at
all). Ranks follow the offline protocol's tie rule (an equal score ranks by position); a target
that retrieval missed gets :data:`MISS_RANK`, a miss for every scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from promptrec.encoder.head import ScoringHead

__all__ = ["MISS_RANK", "CandidateLists", "cosine_ranks", "head_ranks", "list_metrics"]

MISS_RANK = 1_000_000  # rank of a target that retrieval did not return (outside every top k)
_SCORE_BATCH = 512  # lists scored per head forward in evaluation


@dataclass
class CandidateLists:
    """Retrieved candidate lists with one target each.

    Args:
        users: ``(n, dim)`` float32 unit user vectors.
        rows: ``(n, k)`` int64 rows of ``items``, retrieval order (best first); -1 = no hit.
        target: ``(n,)`` int64 position of the target in its row of ``rows``; -1 = not retrieved.
        items: ``(n_items, dim)`` float32 unit item vectors the rows point into.
        owner: ``(n,)`` int64 user row of each list (for per-user reporting), or empty.

    Raises:
        ValueError: Shapes disagree or a row/position is out of range.
    """

    users: np.ndarray
    rows: np.ndarray
    target: np.ndarray
    items: np.ndarray
    owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.float32)
        self.rows = np.asarray(self.rows, dtype=np.int64)
        self.target = np.asarray(self.target, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.float32)
        self.owner = np.asarray(self.owner, dtype=np.int64)
        if (
            self.users.ndim != 2
            or self.items.ndim != 2
            or self.users.shape[1] != self.items.shape[1]
        ):
            raise ValueError(
                f"users {self.users.shape} and items {self.items.shape} must be (n, dim) and "
                "(n_items, dim) of one dim"
            )
        n = self.users.shape[0]
        if self.rows.ndim != 2 or self.rows.shape[0] != n or self.target.shape != (n,):
            raise ValueError(
                f"rows {self.rows.shape} and target {self.target.shape} do not fit {n} users"
            )
        if self.owner.size and self.owner.shape != (n,):
            raise ValueError(f"owner has shape {self.owner.shape}, want ({n},)")
        if self.rows.size and (self.rows.min() < -1 or self.rows.max() >= self.items.shape[0]):
            raise ValueError("rows must be -1 or rows of items")
        k = self.rows.shape[1]
        if n and (self.target.min() < -1 or self.target.max() >= k):
            raise ValueError(f"target positions must be -1 or in [0, {k})")
        hit = self.target >= 0
        if bool((self.rows[np.flatnonzero(hit), self.target[hit]] < 0).any()):
            raise ValueError("a target position points at a missing hit")

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def k(self) -> int:
        """Candidates per list."""
        return int(self.rows.shape[1])

    def retrieved(self) -> CandidateLists:
        """The lists whose target was retrieved (the ones the head can rank)."""
        keep = np.flatnonzero(self.target >= 0)
        owner = self.owner[keep] if self.owner.size else self.owner
        return CandidateLists(
            self.users[keep], self.rows[keep], self.target[keep], self.items, owner
        )

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users (b, dim), candidates (b, k, dim), mask (b, k))`` of lists ``idx``."""
        rows = self.rows[idx]
        return self.users[idx], self.items[np.maximum(rows, 0)], rows >= 0


def _ranks(scores: np.ndarray, mask: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of each target among the valid candidates (ties: earlier position first)."""
    b, k = scores.shape
    scores = np.where(mask, scores.astype(np.float64), -np.inf)
    hit = target >= 0
    t = scores[np.arange(b), np.maximum(target, 0)]  # (b,) the target's score
    higher = (scores > t[:, None]).sum(axis=1)
    earlier = ((scores == t[:, None]) & (np.arange(k)[None, :] < target[:, None])).sum(axis=1)
    return np.where(hit, higher + earlier, MISS_RANK).astype(np.int64)


def cosine_ranks(lists: CandidateLists) -> np.ndarray:
    """``(n,)`` target ranks under plain cosine (what a fresh head ranks by)."""
    out = []
    for start in range(0, len(lists), _SCORE_BATCH):
        idx = np.arange(start, min(start + _SCORE_BATCH, len(lists)))
        users, cands, mask = lists.batch(idx)
        cos = np.einsum("bd,bkd->bk", users, cands)  # (b, k)
        out.append(_ranks(cos, mask, lists.target[idx]))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def head_ranks(head: ScoringHead, lists: CandidateLists) -> np.ndarray:
    """``(n,)`` target ranks under ``head`` (the worker's ``score_many``)."""
    out = []
    for start in range(0, len(lists), _SCORE_BATCH):
        idx = np.arange(start, min(start + _SCORE_BATCH, len(lists)))
        users, cands, mask = lists.batch(idx)
        out.append(_ranks(head.score_many(users, cands), mask, lists.target[idx]))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def list_metrics(ranks: np.ndarray) -> dict[str, float]:
    """NDCG@10 and HR@10 of target ranks (a miss scores 0)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no ranks to average")
    hit = ranks < 10
    return {
        "NDCG@10": float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()),
        "HR@10": float(hit.mean()),
    }
