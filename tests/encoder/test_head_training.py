"""Offline head training over candidate lists: known answers, selection rule, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptrec.encoder.head import ScoringHead
from promptrec.encoder.head_lists import (
    MISS_RANK,
    CandidateLists,
    cosine_ranks,
    head_ranks,
    list_metrics,
)
from promptrec.encoder.head_training import HeadTrainConfig, calibrate_cosine, train_head

DIM, K = 8, 20
# A weighted inner product with half the weights negative: what cosine gets wrong.
SIGNS = np.array([1.0] * (DIM // 2) + [-1.0] * (DIM // 2), dtype=np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_lists(n: int, seed: int, rule: str) -> CandidateLists:
    """``n`` lists of K random candidates; the target is the argmax of the ``rule`` score.

    ``signed``: ``sum_j s_j u_j v_j`` (cosine is nearly uninformative); ``cosine``: plain
    cosine (cosine is exactly right).
    """
    rng = np.random.default_rng(seed)
    users = _unit(rng.normal(size=(n, DIM)))
    items = _unit(rng.normal(size=(n * K, DIM)))
    rows = np.arange(n * K, dtype=np.int64).reshape(n, K)
    cands = items[rows]  # (n, K, DIM)
    weights = SIGNS if rule == "signed" else np.ones(DIM, dtype=np.float32)
    truth = np.einsum("nd,nkd->nk", users * weights, cands)  # (n, K)
    # Retrieval order = cosine order, as the FAISS search returns them.
    order = np.argsort(-np.einsum("nd,nkd->nk", users, cands), axis=1, kind="stable")
    rows = np.take_along_axis(rows, order, axis=1)
    truth = np.take_along_axis(truth, order, axis=1)
    return CandidateLists(users, rows, truth.argmax(axis=1), items)


def test_head_training_fixes_a_ranking_cosine_gets_wrong() -> None:
    train = synthetic_lists(1500, seed=0, rule="signed")
    valid = synthetic_lists(300, seed=1, rule="signed")
    config = HeadTrainConfig(epochs=8, learning_rates=(1e-2,), lists_per_step=16)
    result = train_head(train, valid, hidden=32, online_learning_rate=0.05, config=config)
    cosine = result.valid_cosine["NDCG@10"]
    assert cosine < 0.45  # cosine is nearly blind to the signed rule
    assert result.head is not None and result.head is result.best
    assert result.valid_best["NDCG@10"] > 0.8 > cosine + 0.3
    # The shipped head learns online at the worker's rate, from a fresh optimiser.
    assert result.head.learning_rate == 0.05 and result.head.hidden == 32
    # Held-out lists it never saw: the trained head ranks the target first most of the time.
    test = synthetic_lists(300, seed=2, rule="signed")
    assert list_metrics(head_ranks(result.head, test))["HR@10"] > 0.95
    assert list_metrics(head_ranks(result.head, test))["NDCG@10"] > 0.8
    assert list_metrics(cosine_ranks(test))["NDCG@10"] < 0.45
    summary = result.summary()
    assert summary["chosen"] == "head" and summary["epoch"] == result.epoch >= 1
    assert len(summary["valid_ndcg10_curves"]["0.01"]) == 8


def test_cosine_is_kept_when_no_head_beats_it_on_validation() -> None:
    train = synthetic_lists(200, seed=0, rule="cosine")
    valid = synthetic_lists(100, seed=1, rule="cosine")
    assert list_metrics(cosine_ranks(valid))["NDCG@10"] == 1.0  # nothing can beat it
    config = HeadTrainConfig(epochs=2, learning_rates=(1e-3, 1e-2), lists_per_step=32)
    result = train_head(train, valid, hidden=16, online_learning_rate=0.01, config=config)
    assert result.head is None and result.summary()["chosen"] == "cosine"
    assert result.best.dim == DIM and set(result.curves) == {"0.001", "0.01"}


def test_a_fresh_head_ranks_like_cosine_and_misses_stay_misses() -> None:
    lists = synthetic_lists(50, seed=3, rule="signed")
    # Drop the target of the first 10 lists from retrieval.
    rows, target = lists.rows.copy(), lists.target.copy()
    rows[:10] = np.where(np.arange(K)[None, :] == target[:10, None], -1, rows[:10])
    target[:10] = -1
    lists = CandidateLists(lists.users, rows, target, lists.items)
    fresh = ScoringHead(DIM, hidden=8)
    np.testing.assert_array_equal(head_ranks(fresh, lists), cosine_ranks(lists))
    assert (cosine_ranks(lists)[:10] == MISS_RANK).all()
    # Retrieval order is cosine order, so the cosine rank is the target's position.
    np.testing.assert_array_equal(cosine_ranks(lists)[10:], target[10:])
    assert len(lists.retrieved()) == 40
    assert list_metrics(np.array([0, MISS_RANK])) == {"NDCG@10": 0.5, "HR@10": 0.5}


def test_bad_lists_and_settings_are_rejected() -> None:
    good = synthetic_lists(4, seed=0, rule="signed")
    u, r, t, v = good.users, good.rows, good.target, good.items
    with pytest.raises(ValueError, match="one dim"):
        CandidateLists(u[:, :4], r, t, v)
    with pytest.raises(ValueError, match="do not fit"):
        CandidateLists(u, r[:3], t, v)
    with pytest.raises(ValueError, match="rows of items"):
        CandidateLists(u, r + len(v), t, v)
    with pytest.raises(ValueError, match="target positions"):
        CandidateLists(u, r, t + K, v)
    missing = r.copy()
    missing[0, t[0]] = -1
    with pytest.raises(ValueError, match="missing hit"):
        CandidateLists(u, missing, t, v)
    with pytest.raises(ValueError, match="owner"):
        CandidateLists(u, r, t, v, np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="epochs"):
        HeadTrainConfig(epochs=0)
    with pytest.raises(ValueError, match="positive numbers"):
        HeadTrainConfig(learning_rates=(1e-3, float("nan")))
    with pytest.raises(ValueError, match="positions"):
        HeadTrainConfig(positions=0)
    unreachable = CandidateLists(u, r, np.full(4, -1), v)
    with pytest.raises(ValueError, match="no training list"):
        train_head(unreachable, good, 8, 0.01, HeadTrainConfig(epochs=1))
    with pytest.raises(ValueError, match="no ranks"):
        list_metrics(np.zeros(0))


def test_calibration_keeps_the_cosine_order_and_fits_the_base_rate() -> None:
    # Cosine is informative here: the fitted scale is positive, the mean probability the rate.
    lists = synthetic_lists(300, seed=4, rule="cosine")
    a, b = calibrate_cosine(lists)
    assert a > 0
    users, cands, mask = lists.batch(np.arange(len(lists)))
    cos = np.einsum("nd,nkd->nk", users, cands)[mask]
    p = 1.0 / (1.0 + np.exp(-(a * cos + b)))
    assert p.mean() == pytest.approx(1.0 / K, rel=1e-3)  # logistic regression's moment match
    # A head with that (a, b) ranks exactly like cosine.
    head = ScoringHead(DIM, hidden=8)
    tensors = head.to_tensors()
    tensors["a"], tensors["b"] = torch.tensor(a), torch.tensor(b)
    head.load_tensors(tensors)
    np.testing.assert_array_equal(head_ranks(head, lists), cosine_ranks(lists))
