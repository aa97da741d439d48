"""The offline quality table: metrics, bootstrap intervals and paired tests, as JSON and text.

:func:`uncertainty_report` turns per-user target ranks of several methods (all on the same
users, in the same order) into the ``methods`` / ``intervals`` / ``paired`` parts of
``results.json``; :func:`format_table` prints them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from promptrec.evaluation.protocol import metrics_from_ranks
from promptrec.evaluation.stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_ci,
    paired_test,
    per_user_metric,
)

__all__ = ["CI_METRICS", "PAIRED_METRIC", "format_table", "intervals", "uncertainty_report"]

CI_METRICS = ("NDCG@10", "HR@10")
PAIRED_METRIC = "NDCG@10"


def intervals(
    ranks: np.ndarray,
    metrics: Sequence[str] = CI_METRICS,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, list[float]]:
    """``{metric: [low, high]}``: 95 % bootstrap intervals over users, rounded to 5 decimals."""
    out = {}
    for metric in metrics:
        lo, hi = bootstrap_ci(per_user_metric(ranks, metric), resamples, seed)
        out[metric] = [round(lo, 5), round(hi, 5)]
    return out


def uncertainty_report(
    ranks: Mapping[str, np.ndarray],
    baseline: str,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Metrics, intervals and paired tests of ``baseline`` against every other method.

    Args:
        ranks: Per method, the 0-based target ranks of the same users in the same order.
        baseline: The method compared with all others (``promptrec``).
        resamples: Bootstrap resamples and sign flips.
        seed: Seed of both (the same for every method, so intervals are comparable).

    Raises:
        ValueError: ``baseline`` is missing or the methods ranked different numbers of users.
    """
    if baseline not in ranks:
        raise ValueError(f"baseline method {baseline!r} has no ranks")
    sizes = {name: len(r) for name, r in ranks.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"methods ranked different numbers of users: {sizes}")
    base = per_user_metric(ranks[baseline], PAIRED_METRIC)
    paired = {
        name: paired_test(base, per_user_metric(r, PAIRED_METRIC), resamples, seed).to_dict()
        for name, r in ranks.items()
        if name != baseline
    }
    return {
        "methods": {name: metrics_from_ranks(r) for name, r in ranks.items()},
        "intervals": {name: intervals(r, CI_METRICS, resamples, seed) for name, r in ranks.items()},
        "paired": {
            "metric": PAIRED_METRIC,
            "method": baseline,
            "test": f"mean per-user difference ({baseline} - other), {resamples} bootstrap "
            f"resamples for the 95 % interval, {resamples} sign flips for the two-sided p-value",
            "vs": paired,
        },
        "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95, "unit": "user"},
    }


def format_table(results: Mapping[str, Any]) -> str:
    """A plain-text table of ``results["methods"]`` with intervals and paired tests."""
    methods = results["methods"]
    names = list(next(iter(methods.values())))
    ci = results.get("intervals", {})
    ci_names = [m for m in CI_METRICS if all(m in ci.get(x, {}) for x in methods)] if ci else []
    header = f"{'method':<30}" + "".join(f"{n:>9}" for n in names)
    header += "".join(f"{n + ' 95% CI':>20}" for n in ci_names)
    lines = [header]
    for method, metrics in methods.items():
        row = f"{method:<30}" + "".join(f"{metrics[n]:>9.4f}" for n in names)
        for n in ci_names:
            lo, hi = ci[method][n]
            row += f"{f'[{lo:.4f}, {hi:.4f}]':>20}"
        lines.append(row)
    paired = results.get("paired")
    if paired and paired.get("vs"):
        lines.append("")
        lines.append(
            f"paired {paired['metric']}: {paired['method']} - other "
            "(mean, 95% bootstrap CI, sign-flip p)"
        )
        for other, test in paired["vs"].items():
            lo, hi = test["ci95"]
            lines.append(
                f"  vs {other:<26}{test['mean_diff']:>+9.4f}  [{lo:+.4f}, {hi:+.4f}]"
                f"  p={test['p_value']:.4f}"
            )
    return "\n".join(lines)
