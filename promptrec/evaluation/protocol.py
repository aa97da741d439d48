"""Offline evaluation: time-ordered leave-one-out split and full-ranking metrics.

Protocol (the same for every method, so numbers are comparable with RecBole's ``LS``/``TO``/
``full`` setting): per user, interactions in time order; the last one is the test target, the
second-to-last the validation target, the rest is training data. Users with fewer than three
interactions keep everything in training and are not evaluated. A method scores ALL catalog
items; the items of the user's history (training items for validation, training + validation
item for test) are excluded; the rank of the target is the number of items scored higher, ties
broken by catalog order (as a stable sort would). Metrics: HR@k (target in the top k),
NDCG@k (``1 / log2(rank + 2)`` inside the top k, one relevant item so IDCG = 1) and MRR@k
(``1 / (rank + 1)`` inside the top k), averaged over evaluated users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from promptrec.evaluation.datasets import Dataset

__all__ = [
    "DEFAULT_KS",
    "PROTOCOL",
    "MatrixScorer",
    "Scorer",
    "Split",
    "evaluate",
    "metrics_from_ranks",
    "rank_users",
    "stage_ranks",
    "target_ranks",
]

DEFAULT_KS = (5, 10, 20)
PROTOCOL = (
    "leave-one-out, time-ordered (last interaction test, second-to-last validation, rest train); "
    "full ranking over all items; items in the user's history excluded; ties by catalog order"
)
Stage = Literal["valid", "test"]


class Scorer(Protocol):
    """Anything that scores every catalog item for a batch of users."""

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)`` scores, higher is better; ``histories[i]`` oldest first."""
        ...


class MatrixScorer:
    """Scores computed elsewhere (e.g. by a peer library), one row per user of a split.

    Lets an external model's full-sort score matrix go through the same ranking code as every
    other method (:func:`stage_ranks`: same history exclusions, same tie rule, same metrics).
    """

    def __init__(self, scores: np.ndarray, n_users: int, n_items: int) -> None:
        """Wraps ``scores``: ``(n_users, n_items)``, row = user row, column = catalog row.

        Raises:
            ValueError: Not a 2-d float matrix of that shape, or a NaN in it (a diverged model
                must fail loudly rather than rank by the tie rule).
        """
        arr = np.asarray(scores)
        if arr.shape != (n_users, n_items):
            raise ValueError(f"score matrix is {arr.shape}, want {(n_users, n_items)}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"score matrix must be floating point, got {arr.dtype}")
        if np.isnan(arr).any():
            raise ValueError(f"score matrix holds {int(np.isnan(arr).sum())} NaN values")
        self.scores = arr

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)``: the stored rows of ``users`` (``histories`` are not needed)."""
        return self.scores[np.asarray(users, dtype=np.int64)]


@dataclass
class Split:
    """Leave-one-out split with items and users as row numbers."""

    item_ids: list[str]
    user_ids: list[str]
    train: list[list[int]]  # per user, item rows oldest first
    valid: np.ndarray  # (n_users,) int64 item row, -1 if the user is not evaluated
    test: np.ndarray  # (n_users,) int64

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> Split:
        """Splits ``dataset``'s per-user sequences (see the module docstring)."""
        item_ids = dataset.item_ids
        row = {item: i for i, item in enumerate(item_ids)}
        sequences = dataset.sequences()
        user_ids = list(sequences)
        train, valid, test = [], [], []
        for user in user_ids:
            seq = [row[item] for item in sequences[user]]
            if len(seq) >= 3:
                train.append(seq[:-2])
                valid.append(seq[-2])
                test.append(seq[-1])
            else:
                train.append(seq)
                valid.append(-1)
                test.append(-1)
        return cls(item_ids, user_ids, train, np.array(valid), np.array(test))

    @property
    def n_items(self) -> int:
        """Catalog size."""
        return len(self.item_ids)

    def evaluate(self, scorer: Scorer, stage: Stage = "test") -> dict[str, float]:
        """Full-ranking metrics of ``scorer`` on this split's ``stage`` targets."""
        return evaluate(scorer, self, stage)

    def histories(self, stage: Stage) -> list[list[int]]:
        """Per user, what the model may see when predicting the ``stage`` target."""
        if stage == "valid":
            return self.train
        pairs = zip(self.train, self.valid, strict=True)
        return [[*t, int(v)] if v >= 0 else t for t, v in pairs]

    def targets(self, stage: Stage) -> np.ndarray:
        """Per user, the ``stage`` target row (-1: not evaluated)."""
        return self.valid if stage == "valid" else self.test

    def train_counts(self) -> np.ndarray:
        """``(n_items,)`` interactions per item in the training part."""
        counts = np.zeros(self.n_items, dtype=np.float64)
        for seq in self.train:
            np.add.at(counts, seq, 1.0)
        return counts


def target_ranks(
    scores: np.ndarray, targets: np.ndarray, exclude: Sequence[Sequence[int]]
) -> np.ndarray:
    """0-based rank of each target among non-excluded items (ties: lower catalog row first).

    Args:
        scores: ``(b, n_items)`` scores.
        targets: ``(b,)`` target rows.
        exclude: Per row, item rows removed from the ranking (the target never is).
    """
    scores = np.array(scores, dtype=np.float64)  # copy: excluded entries are overwritten
    scores[~np.isfinite(scores)] = -np.inf
    b, n = scores.shape
    for i, rows in enumerate(exclude):
        if len(rows):
            scores[i, np.asarray(rows, dtype=np.int64)] = -np.inf
    target_scores = scores[np.arange(b), targets]  # (b,)
    higher = (scores > target_scores[:, None]).sum(axis=1)
    earlier_tie = (
        (scores == target_scores[:, None]) & (np.arange(n)[None, :] < targets[:, None])
    ).sum(axis=1)
    return (higher + earlier_tie).astype(np.int64)


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@k, NDCG@k for every k, and MRR@10, from 0-based target ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no ranks to average: no user could be evaluated")
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    out["MRR@10"] = float(np.where(ranks < 10, 1.0 / (ranks + 1.0), 0.0).mean())
    return out


def rank_users(
    scorer: Scorer,
    users: Sequence[int],
    histories: Sequence[Sequence[int]],
    targets: np.ndarray,
    n_items: int,
    batch_size: int = 256,
) -> np.ndarray:
    """0-based target ranks of ``scorer`` for explicit (user, history, target) triples.

    ``histories[i]`` is what user ``users[i]`` has seen (oldest first, excluded from the
    ranking) and ``targets[i]`` its target row. Used by :func:`evaluate` and by protocols
    whose targets are not a :class:`Split` stage (the cold-start protocol).
    """
    targets = np.asarray(targets, dtype=np.int64)
    ranks = []
    for start in range(0, len(users), batch_size):
        batch = [int(u) for u in users[start : start + batch_size]]
        hist = list(histories[start : start + batch_size])
        scores = scorer.score(batch, hist)
        if scores.shape != (len(batch), n_items):
            raise ValueError(f"scorer returned {scores.shape}, want {(len(batch), n_items)}")
        ranks.append(target_ranks(scores, targets[start : start + batch_size], hist))
    return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)


def stage_ranks(
    scorer: Scorer, split: Split, stage: Stage = "test", batch_size: int = 256
) -> np.ndarray:
    """Per evaluated user (in user order), the 0-based rank of its ``stage`` target."""
    targets = split.targets(stage)
    histories = split.histories(stage)
    users = np.flatnonzero(targets >= 0)
    hist = [histories[int(u)] for u in users]
    return rank_users(scorer, users.tolist(), hist, targets[users], split.n_items, batch_size)


def evaluate(
    scorer: Scorer,
    split: Split,
    stage: Stage = "test",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 256,
) -> dict[str, float]:
    """Full-ranking metrics of ``scorer`` on the ``stage`` targets of ``split``."""
    return metrics_from_ranks(stage_ranks(scorer, split, stage, batch_size), ks)
