"""Leave-one-out split, rank and metric formulas, and the Pop/ItemKNN baselines."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from promptrec.evaluation.baselines import ItemKNNScorer, PopScorer, TextZeroShotScorer
from promptrec.evaluation.datasets import Dataset, Interaction, ItemRecord
from promptrec.evaluation.protocol import (
    MatrixScorer,
    Split,
    evaluate,
    metrics_from_ranks,
    stage_ranks,
    target_ranks,
)


def make_dataset(sequences: dict[str, list[str]], n_items: int) -> Dataset:
    items = [ItemRecord(f"i{n}", f"Item {n}") for n in range(n_items)]
    events = []
    for user, seq in sequences.items():
        events += [Interaction(user, item, 1000 * t) for t, item in enumerate(seq)]
    events.sort(key=lambda e: e.ts)
    return Dataset("tiny", "jsonl", items, {}, events)


def test_split_is_time_ordered_leave_one_out() -> None:
    ds = make_dataset({"a": ["i0", "i1", "i2", "i3"], "b": ["i4", "i0"]}, 5)
    split = Split.from_dataset(ds)
    assert split.user_ids == ["a", "b"]
    assert split.train == [[0, 1], [4, 0]]  # b has < 3 interactions: all train
    assert split.valid.tolist() == [2, -1] and split.test.tolist() == [3, -1]
    assert split.histories("test") == [[0, 1, 2], [4, 0]]
    assert split.train_counts().tolist() == [2, 1, 0, 0, 1]


def test_ranks_exclude_history_and_break_ties_by_catalog_order() -> None:
    scores = np.array([[5.0, 9.0, 5.0, 1.0, 5.0]])
    # Item 1 (score 9) is in the history, so it does not count; item 0 ties and comes first.
    assert target_ranks(scores, np.array([2]), [[1]]).tolist() == [1]
    assert target_ranks(scores, np.array([0]), [[1]]).tolist() == [0]
    assert target_ranks(scores, np.array([3]), [[]]).tolist() == [4]
    nan = np.array([[np.nan, 1.0, 0.0]])
    assert target_ranks(nan, np.array([2]), [[]]).tolist() == [1]


def test_metric_formulas_on_hand_computed_ranks() -> None:
    m = metrics_from_ranks(np.array([0, 2, 7, 15, 40]))
    assert m["HR@5"] == pytest.approx(2 / 5)
    assert m["HR@10"] == pytest.approx(3 / 5)
    assert m["HR@20"] == pytest.approx(4 / 5)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(4)) / 5)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(9)) / 5)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 3 + 1 / 8) / 5)
    with pytest.raises(ValueError, match="no user"):
        metrics_from_ranks(np.zeros(0))


class Oracle:
    """Knows every target: a perfect scorer, and its reverse."""

    def __init__(self, split: Split, stage: str, sign: float = 1.0) -> None:
        self.targets = split.targets(stage)  # type: ignore[arg-type]
        self.n, self.sign = split.n_items, sign

    def score(self, users: list[int], histories: list[list[int]]) -> np.ndarray:
        out = np.zeros((len(users), self.n))
        out[np.arange(len(users)), self.targets[users]] = self.sign
        return out


def test_evaluate_perfect_and_worst_scorers() -> None:
    rng = random.Random(0)
    seqs = {f"u{u}": rng.sample([f"i{n}" for n in range(30)], 8) for u in range(20)}
    split = Split.from_dataset(make_dataset(seqs, 30))
    best = evaluate(Oracle(split, "test"), split, "test")
    assert best["HR@5"] == best["NDCG@10"] == best["MRR@10"] == 1.0
    worst = evaluate(Oracle(split, "valid", -1.0), split, "valid", batch_size=7)
    assert worst["HR@20"] == 0.0  # 30 items - 6 seen: the target ranks 23rd


def test_pop_wins_on_a_popularity_skewed_set() -> None:
    rng = random.Random(1)
    items = [f"i{n}" for n in range(50)]
    weights = [1.0 / (n + 1) ** 1.5 for n in range(50)]
    seqs = {}
    for u in range(200):
        seq: list[str] = []
        while len(seq) < 10:
            item = rng.choices(items, weights)[0]
            if item not in seq:
                seq.append(item)
        seqs[f"u{u}"] = seq
    split = Split.from_dataset(make_dataset(seqs, 50))
    pop = evaluate(PopScorer(split), split, "test")
    text = TextZeroShotScorer(np.random.default_rng(0).normal(size=(50, 8)))
    assert pop["HR@10"] > 0.5
    assert pop["NDCG@10"] > evaluate(text, split, "test")["NDCG@10"] + 0.2


def test_itemknn_wins_on_a_co_occurrence_set() -> None:
    # 10 disjoint clusters of 5 items; every user stays inside one cluster, and cluster 0 is
    # the most popular overall, so Pop is wrong for everyone outside it.
    rng = random.Random(2)
    seqs = {}
    for u in range(300):
        c = 0 if u < 60 else rng.randrange(1, 10)
        seqs[f"u{u}"] = rng.sample([f"i{5 * c + k}" for k in range(5)], 5)
    split = Split.from_dataset(make_dataset(seqs, 50))
    knn = evaluate(ItemKNNScorer(split, neighbours=10), split, "test")
    pop = evaluate(PopScorer(split), split, "test")
    assert knn["HR@5"] == 1.0  # the two unseen cluster items always rank first
    assert knn["NDCG@10"] > pop["NDCG@10"] + 0.3


def test_matrix_scorer_ranks_an_external_matrix_like_any_scorer() -> None:
    ds = make_dataset({"a": ["i0", "i1", "i2", "i3"], "b": ["i4", "i0", "i1"]}, 5)
    split = Split.from_dataset(ds)
    # a: history (test) [0, 1, 2], target 3; b: history [4, 0], target 1.
    scores = np.array([[9.0, 9.0, 9.0, 1.0, 2.0], [5.0, 3.0, 3.0, 0.0, 7.0]], dtype=np.float32)
    ranks = stage_ranks(MatrixScorer(scores, 2, 5), split, "test")
    # a: only item 4 (2.0) is above the target once the history is excluded; b: item 2 ties
    # with the target but comes later in the catalog, so the target is first.
    assert ranks.tolist() == [1, 0]
    assert evaluate(MatrixScorer(scores, 2, 5), split, "test", ks=(1,))["HR@1"] == 0.5


def test_matrix_scorer_rejects_bad_matrices() -> None:
    good = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="want"):
        MatrixScorer(good[:, :4], 2, 5)
    with pytest.raises(ValueError, match="floating"):
        MatrixScorer(good.astype(np.int64), 2, 5)
    bad = good.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN"):
        MatrixScorer(bad, 2, 5)
