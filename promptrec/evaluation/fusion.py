"""Choosing the text fusion of a trained model on the validation targets.

:class:`~promptrec.encoder.fusion.TextFusion` scores ``(1 - alpha) * trained cosine + alpha *
zero-shot cosine``. :func:`select_fusion` evaluates every ``(alpha, decay)`` of a small grid on
the validation targets (``alpha`` from 0, the trained model alone, to 1, the zero-shot path
alone; ``decay`` the zero-shot user vector's recency decay, the same grid as the text zero-shot
baseline) and attaches the best to the model (none when ``alpha = 0`` wins, so the model and its
vectors are then exactly the unfused ones). Because both ends are in the grid, the fused model is
never worse on validation than the trained model or the zero-shot path it starts from.

Then, with the chosen ``(alpha, decay)`` and a model that has ID vectors, the cold-item
calibration (``cold_scale`` lambda, ``cold_bias`` c: an item without an ID vector scores
``lambda * alpha * cos_z + c``, its text path alone) is chosen on the same validation targets
from :data:`COLD_GRID`, whose first point is "no calibration". Cold items in validation are the
items without an ID vector, plus ``simulate_cold`` (the strict cold-start protocol passes the
items first seen late in its training period: their cold score uses only their frozen text, so
treating them as cold is exact for the item side; the user side was trained with them). The
objective is ``"all"`` (NDCG@10 over all validation targets) or ``"balanced"`` (the mean of the
NDCG@10 over users whose target is cold and over the others: new items count as much as old).

The trained and text score matrices are computed once per batch of users and combined for every
grid point, so the grid costs a few rankings, not a few models.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptrec.encoder.fusion import FUSION_ALPHAS, TextFusion, centred_text
from promptrec.encoder.model import RecModel
from promptrec.encoder.training import ModelScorer
from promptrec.evaluation.protocol import Split, metrics_from_ranks, target_ranks

__all__ = ["COLD_GRID", "COLD_OBJECTIVES", "FUSION_DECAYS", "select_fusion"]

FUSION_DECAYS = (0.5, 0.8, 0.9, 1.0)  # = the text zero-shot baseline's grid
FUSION_RECENT = 50  # newest items of the text user vector (the zero-shot baseline's)
# (lambda, c) of the cold-item score; (0, 0) = cold items scored like warm ones.
COLD_GRID = (
    (0.0, 0.0),
    *((lam, c) for lam in (1.0, 2.0, 3.0) for c in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)),
)
COLD_OBJECTIVES = ("all", "balanced")


def select_fusion(
    model: RecModel,
    split: Split,
    text: np.ndarray,
    profiles: np.ndarray | None = None,
    alphas: Sequence[float] = FUSION_ALPHAS,
    decays: Sequence[float] = FUSION_DECAYS,
    batch_size: int = 256,
    cold_grid: Sequence[tuple[float, float]] = COLD_GRID,
    simulate_cold: np.ndarray | None = None,
    cold_objective: str = "all",
    unreleased: np.ndarray | None = None,
) -> dict[str, Any]:
    """Sets ``model.fusion`` to the best validation grid point; returns the grid and choice.

    ``model`` must have a text path and no fusion yet. Ties go to the smaller ``alpha`` and to
    the earlier cold grid point. ``unreleased`` marks items that did not exist yet at the
    validation time (the strict cold-start protocol's cold items): never calibrated in
    validation, as a bias on them would only push the validation targets down.

    Raises:
        ValueError: The model has no text path, a grid is empty or out of range, or the
            objective is unknown.
    """
    if cold_objective not in COLD_OBJECTIVES:
        raise ValueError(f"cold objective must be one of {COLD_OBJECTIVES}, got {cold_objective!r}")
    if not cold_grid or any(lam < 0 or (c and not lam) for lam, c in cold_grid):
        raise ValueError(f"cold grid points need lambda >= 0 (and > 0 with a bias): {cold_grid}")
    if not model.config.text_dim:
        raise ValueError("fusion needs a model with a text path (text_dim > 0)")
    if not alphas or not decays or any(not 0.0 <= a <= 1.0 for a in alphas):
        raise ValueError(f"fusion grid must be non-empty with alphas in [0, 1], got {alphas}")
    model.fusion = None
    trained = ModelScorer(model, text, split.item_ids, profiles)
    mean = np.asarray(text, dtype=np.float32).mean(axis=0)  # a statistic of item texts only
    z = centred_text(text, mean)  # (n_items, text_dim)
    towers = {d: TextFusion(1.0, d, FUSION_RECENT, mean, model.config.dim) for d in decays}
    targets, histories = split.targets("valid"), split.histories("valid")
    users = np.flatnonzero(targets >= 0)
    ranks: dict[tuple[float, ...], list[np.ndarray]] = {(a, d): [] for a in alphas for d in decays}
    cold = np.zeros(split.n_items, dtype=bool)
    if model.config.use_ids:
        cold = (model.id_rows(split.item_ids) == 0).numpy()
    if simulate_cold is not None:
        cold = cold | np.asarray(simulate_cold, dtype=bool)
    if unreleased is not None:
        cold = cold & ~np.asarray(unreleased, dtype=bool)
    cold_grid = cold_grid if model.config.use_ids and cold.any() else cold_grid[:1]
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        hist = [histories[int(u)] for u in batch]
        s_t = trained.score(batch.tolist(), hist)  # (b, n_items) trained cosines
        tgt = targets[batch]
        for d, tower in towers.items():
            zu = tower.text_users([z[np.asarray(h, dtype=np.int64)] for h in hist])  # (b, t)
            s_z = zu @ z.T  # (b, n_items) zero-shot cosines
            for a in alphas:
                fused = (1.0 - a) * s_t + a * s_z
                ranks[(a, d)].append(target_ranks(fused, tgt, hist))
    grid = {
        key: metrics_from_ranks(np.concatenate(parts))["NDCG@10"] for key, parts in ranks.items()
    }
    # alpha = 0 ignores the decay: its grid points are one model; keep the first decay's.
    best_key = max(grid, key=lambda k: (grid[k], -k[0], -k[1]))
    alpha, decay = best_key
    cold_report: dict[str, Any] = {}
    if alpha > 0.0:
        cold_trained = trained
        if simulate_cold is not None:
            # The stand-ins lose their ID vectors here (an id the model does not know maps to
            # ID row 0), in the ranking and in the histories alike: scored as truly cold ones.
            ids = [
                f"\x00cold:{item}" if simulate_cold[i] else item
                for i, item in enumerate(split.item_ids)
            ]
            cold_trained = ModelScorer(model, text, ids, profiles)
        parts = _Parts(cold_trained, towers[decay], z, split, users, batch_size)
        lam, c, cold_report = _select_cold(parts, alpha, cold, cold_grid, cold_objective)
        model.fusion = TextFusion(alpha, decay, FUSION_RECENT, mean, model.config.dim, lam, c)
    trained_only = grid[(0.0, decays[0])] if 0.0 in alphas else None
    text_only = max((v for (a, _), v in grid.items() if a == 1.0), default=None)
    report = {
        "alpha": alpha,
        "w": None if alpha >= 1.0 else round(alpha / (1.0 - alpha), 6),
        "decay": decay if alpha > 0.0 else None,
        "recent": FUSION_RECENT,
        "cold_objective": cold_objective,
        "valid_ndcg10": round(grid[best_key], 5),  # after the cold calibration: see below
        "valid_ndcg10_trained_only": None if trained_only is None else round(trained_only, 5),
        "valid_ndcg10_text_only": None if text_only is None else round(text_only, 5),
        "valid_ndcg10_grid": {f"alpha={a}/decay={d}": round(v, 5) for (a, d), v in grid.items()},
        **cold_report,
    }
    if cold_report:
        chosen = f"lambda={cold_report['cold_scale']}/c={cold_report['cold_bias']}"
        report["valid_ndcg10_before_cold"] = report["valid_ndcg10"]
        report["valid_ndcg10"] = cold_report["valid_cold_grid"][chosen]["NDCG@10"]
    return report


@dataclass
class _Parts:
    """Recomputes, batch by batch, the trained and text validation scores of one decay."""

    trained: ModelScorer
    tower: TextFusion
    z: np.ndarray  # (n_items, text_dim) centred text vectors
    split: Split
    users: np.ndarray  # evaluated user rows
    batch_size: int

    def batches(self) -> Iterator[tuple[np.ndarray, list[list[int]], np.ndarray, np.ndarray]]:
        """``(users, histories, s_t, s_z)`` per batch; scores are ``(b, n_items)``."""
        histories = self.split.histories("valid")
        for start in range(0, len(self.users), self.batch_size):
            batch = self.users[start : start + self.batch_size]
            hist = [histories[int(u)] for u in batch]
            s_t = self.trained.score(batch.tolist(), hist)
            zu = self.tower.text_users([self.z[np.asarray(h, dtype=np.int64)] for h in hist])
            yield batch, hist, s_t, zu @ self.z.T


def _select_cold(
    parts: _Parts,
    alpha: float,
    cold: np.ndarray,
    grid: Sequence[tuple[float, float]],
    objective: str,
) -> tuple[float, float, dict[str, Any]]:
    """The cold calibration ``(lambda, c)`` of the module docstring, and its report."""
    targets = parts.split.targets("valid")
    ranks: dict[tuple[float, float], list[np.ndarray]] = {point: [] for point in grid}
    for batch, hist, s_t, s_z in parts.batches():
        base = (1.0 - alpha) * s_t + alpha * s_z  # (b, n_items)
        for lam, c in grid:
            fused = np.where(cold[None, :], lam * alpha * s_z + c, base) if lam else base
            ranks[(lam, c)].append(target_ranks(fused, targets[batch], hist))
    is_cold = cold[targets[parts.users]]  # (n_eval,) users whose validation target is cold

    def value(r: np.ndarray) -> float:
        if objective == "balanced" and is_cold.any() and (~is_cold).any():
            warm = metrics_from_ranks(r[~is_cold])["NDCG@10"]
            return 0.5 * (warm + metrics_from_ranks(r[is_cold])["NDCG@10"])
        return metrics_from_ranks(r)["NDCG@10"]

    table = {point: np.concatenate(parts) for point, parts in ranks.items()}
    values = {point: value(r) for point, r in table.items()}
    best = max(grid, key=lambda p: (values[p], -grid.index(p)))
    report = {
        "cold_scale": best[0],
        "cold_bias": best[1],
        "valid_cold_items": int(cold.sum()),
        "valid_cold_targets": int(is_cold.sum()),
        "valid_cold_grid": {
            f"lambda={lam}/c={c}": {
                "objective": round(values[(lam, c)], 5),
                "NDCG@10": round(metrics_from_ranks(table[(lam, c)])["NDCG@10"], 5),
            }
            for lam, c in grid
        },
    }
    return best[0], best[1], report
