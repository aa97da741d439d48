"""Explanations of an answer: which recent history items an item is "because" of, and why.

For the default model a user vector is a recency-weighted mean of the recent item vectors, so an
answered item's score rises with its inner product with each history item: ``because`` lists the
(up to) 3 distinct recent items with the highest positive inner product with it. With a trained
sequence model the same inner products are a proxy (the model mixes the history non-linearly).
The cost is one ``(k, h)`` matmul per explained request, nothing for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MODEL_REASON",
    "POPULAR_REASON",
    "SIMILAR_REASON",
    "Explanation",
    "explain_model",
    "item_entries",
]

MODEL_REASON = "similar to items you interacted with"
POPULAR_REASON = "popular now"
SIMILAR_REASON = "similar to the requested item"
MAX_BECAUSE = 3


@dataclass(frozen=True)
class Explanation:
    """``because`` (None: not applicable, e.g. popularity) and ``reason`` of one answered item."""

    reason: str
    because: tuple[str, ...] | None = None


def explain_model(
    history_ids: Sequence[str],
    history_vectors: np.ndarray,
    item_vectors: np.ndarray,
    top: int = MAX_BECAUSE,
) -> list[Explanation]:
    """One explanation per answered item of a model answer.

    Args:
        history_ids: Recent item ids, oldest first (repeats allowed).
        history_vectors: ``(h, dim)`` their index vectors, aligned with ``history_ids``.
        item_vectors: ``(k, dim)`` the answered items' index vectors.
        top: Most history items per answered item.

    Returns:
        ``k`` explanations; ``because`` holds the history items with the highest positive inner
        product, best first (equal ones: the more recent first); it may be empty.
    """
    k = item_vectors.shape[0]
    if k == 0:
        return []
    # Distinct history items, newest first, so a stable sort prefers recent ones on ties.
    newest: dict[str, int] = {}
    for j in range(len(history_ids) - 1, -1, -1):
        newest.setdefault(history_ids[j], j)
    ids = list(newest)
    if not ids:
        return [Explanation(MODEL_REASON, ())] * k
    hist = history_vectors[list(newest.values())]  # (h', dim)
    scores = item_vectors @ hist.T  # (k, h'): the one matmul of the request
    width = min(top, len(ids))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :width]  # (k, width)
    best = np.take_along_axis(scores, order, axis=1) > 0
    return [
        Explanation(MODEL_REASON, tuple(ids[j] for j, ok in zip(row, keep, strict=True) if ok))
        for row, keep in zip(order.tolist(), best.tolist(), strict=True)
    ]


def item_entries(
    items: Sequence[tuple[str, float]], explanations: Sequence[Explanation] | None
) -> list[dict[str, Any]]:
    """The ``items`` of a ``recommendations`` record; explanation keys only when explained."""
    if explanations is None:
        return [{"item_id": item, "score": score} for item, score in items]
    out = []
    for (item, score), why in zip(items, explanations, strict=True):
        entry: dict[str, Any] = {"item_id": item, "score": score}
        if why.because is not None:
            entry["because"] = list(why.because)
        entry["reason"] = why.reason
        out.append(entry)
    return out
