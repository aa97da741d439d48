"""Uncertainty of offline metrics: bootstrap intervals over users and paired method comparisons.

Every evaluated user contributes one value per metric (e.g. its NDCG@10 for its one target), so
a reported metric is a mean over users and its uncertainty comes from which users happened to be
in the data set. :func:`bootstrap_ci` resamples users with replacement (percentile interval);
:func:`paired_test` compares two methods on the SAME users: the per-user difference is
bootstrapped for its interval and a sign-flip permutation test gives the two-sided p-value
(under the null hypothesis that the two methods are exchangeable, each user's difference is
equally likely to have either sign). Everything is vectorised numpy and seeded, so a report is
reproducible bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "PairedResult",
    "bootstrap_ci",
    "paired_test",
    "per_user_metric",
]

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
_CHUNK = 250  # resamples drawn per numpy call: bounds memory at chunk x n_users indices


def per_user_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user values of ``HR@k``, ``NDCG@k`` or ``MRR@k`` from 0-based target ranks.

    Raises:
        ValueError: An unknown metric name.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    name, _, k_text = metric.partition("@")
    if not k_text.isdigit():
        raise ValueError(f"metric {metric!r} must look like NDCG@10")
    hit = ranks < int(k_text)
    if name == "HR":
        return hit.astype(np.float64)
    if name == "NDCG":
        return np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    if name == "MRR":
        return np.where(hit, 1.0 / (ranks + 1.0), 0.0)
    raise ValueError(f"unknown metric {metric!r} (HR, NDCG or MRR)")


def _resampled_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(resamples,)`` means of ``values`` resampled with replacement."""
    n = values.shape[0]
    out = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, _CHUNK):
        m = min(_CHUNK, resamples - start)
        idx = rng.integers(0, n, size=(m, n))  # (m, n) user indices per resample
        out[start : start + m] = values[idx].mean(axis=1)
    return out


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one value per user).

    Raises:
        ValueError: No values, or ``resamples < 1``.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no values to bootstrap")
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    means = _resampled_means(arr, resamples, np.random.default_rng(seed))
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedResult:
    """``a - b`` over the same users: mean, bootstrap interval and permutation p-value."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_users: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly, rounded to 5 decimals."""
        return {
            "mean_diff": round(self.mean_diff, 5),
            "ci95": [round(self.ci_low, 5), round(self.ci_high, 5)],
            "p_value": round(self.p_value, 5),
            "n_users": self.n_users,
        }


def paired_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> PairedResult:
    """Paired comparison of per-user values ``a`` and ``b`` (same users, same order).

    The p-value is the two-sided sign-flip permutation test of the mean difference with the
    ``(count + 1) / (resamples + 1)`` correction, so it is never 0. A pair whose differences
    are all zero gets exactly p = 1 (every flip gives the same, zero, statistic).

    Raises:
        ValueError: Different lengths, no users, or ``resamples < 1``.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values must be 1-d of one length, got {x.shape} and {y.shape}")
    diff = x - y
    lo, hi = bootstrap_ci(diff, resamples, seed, level)
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed + 1)  # another stream than the bootstrap's
    n = diff.shape[0]
    extreme = 0
    for start in range(0, resamples, _CHUNK):
        m = min(_CHUNK, resamples - start)
        signs = rng.integers(0, 2, size=(m, n)) * 2.0 - 1.0  # (m, n) random +-1
        flipped = np.abs((signs * diff).mean(axis=1))
        # A tolerance, so floating-point noise in the flipped sums of equal values still counts
        # as "at least as extreme" (all-zero differences must give p = 1 exactly).
        extreme += int((flipped >= observed - 1e-12).sum())
    p = (extreme + 1) / (resamples + 1)
    return PairedResult(float(diff.mean()), lo, hi, float(p), n)
