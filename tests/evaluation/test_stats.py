"""Bootstrap intervals and paired tests on inputs with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from promptrec.evaluation.protocol import metrics_from_ranks
from promptrec.evaluation.report import format_table, uncertainty_report
from promptrec.evaluation.stats import bootstrap_ci, paired_test, per_user_metric


def test_per_user_metrics_average_to_the_reported_metrics() -> None:
    ranks = np.array([0, 1, 3, 9, 10, 50, 2])
    summary = metrics_from_ranks(ranks)
    for metric in ("HR@10", "NDCG@10", "NDCG@5", "MRR@10", "HR@20"):
        assert per_user_metric(ranks, metric).mean() == pytest.approx(summary[metric])
    assert per_user_metric(np.array([0, 10]), "NDCG@10").tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="unknown metric"):
        per_user_metric(ranks, "MAP@10")
    with pytest.raises(ValueError, match="look like"):
        per_user_metric(ranks, "NDCG")


def test_bootstrap_interval_known_answers() -> None:
    # A constant has no sampling uncertainty: the interval is the point.
    assert bootstrap_ci(np.full(50, 0.25)) == (0.25, 0.25)
    # Mean 0.5 coin flips: the interval covers 0.5, is about +-1.96 * sqrt(.25/n) wide.
    values = np.tile([0.0, 1.0], 500)
    lo, hi = bootstrap_ci(values, resamples=2000, seed=3)
    assert lo < 0.5 < hi
    assert 0.05 < hi - lo < 0.08  # theory: 2 * 1.96 * 0.0158 = 0.062
    # Seeded: the same call gives the same interval; another seed another one.
    assert bootstrap_ci(values, seed=3, resamples=2000) == (lo, hi)
    assert bootstrap_ci(values, seed=4, resamples=2000) != (lo, hi)
    with pytest.raises(ValueError, match="no values"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([1.0], resamples=0)


def test_paired_identical_scores_give_zero_difference_and_p_one() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(300)
    result = paired_test(a, a.copy())
    assert result.mean_diff == 0.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)
    assert result.p_value == 1.0
    assert result.n_users == 300


def test_paired_constant_shift_excludes_zero_and_is_significant() -> None:
    rng = np.random.default_rng(1)
    b = rng.random(200)
    result = paired_test(b + 0.05, b)
    assert result.mean_diff == pytest.approx(0.05)
    assert result.ci_low == pytest.approx(0.05) and result.ci_high == pytest.approx(0.05)
    assert result.p_value == pytest.approx(1 / 1001)  # no flip is as extreme: (0 + 1) / (R + 1)
    # Noisy shift: still excludes 0, and the sign of the difference follows the argument order.
    noisy = paired_test(b, b + 0.05 + 0.02 * rng.normal(size=200))
    assert noisy.ci_high < 0 and noisy.p_value < 0.01


def test_paired_pure_noise_is_not_significant() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(400), rng.random(400)
    result = paired_test(a, b, seed=5)
    assert result.ci_low < 0 < result.ci_high or abs(result.mean_diff) < 0.03
    assert result.p_value > 0.05
    with pytest.raises(ValueError, match="one length"):
        paired_test(a, b[:-1])


def test_uncertainty_report_and_table() -> None:
    rng = np.random.default_rng(3)
    good = rng.integers(0, 5, size=100)
    report = uncertainty_report({"promptrec": good, "pop": good + 20, "same": good}, "promptrec")
    assert set(report) == {"methods", "intervals", "paired", "bootstrap"}
    assert report["methods"]["promptrec"] == metrics_from_ranks(good)
    lo, hi = report["intervals"]["promptrec"]["NDCG@10"]
    assert lo <= report["methods"]["promptrec"]["NDCG@10"] <= hi
    assert report["intervals"]["pop"]["HR@10"] == [0.0, 0.0]  # every pop rank is >= 20
    vs = report["paired"]["vs"]
    assert set(vs) == {"pop", "same"}
    assert vs["same"]["p_value"] == 1.0 and vs["same"]["mean_diff"] == 0.0
    assert vs["pop"]["ci95"][0] > 0 and vs["pop"]["p_value"] < 0.01
    table = format_table(report)
    assert "NDCG@10 95% CI" in table and "vs pop" in table and "p=1.0000" in table
    with pytest.raises(ValueError, match="different numbers"):
        uncertainty_report({"promptrec": good, "pop": good[:-1]}, "promptrec")
    with pytest.raises(ValueError, match="no ranks"):
        uncertainty_report({"pop": good}, "promptrec")
