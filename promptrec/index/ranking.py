"""The last step of every search: drop missing and excluded hits, cut, and settle ties by id."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["cut_hits"]


def cut_hits(
    ids: Sequence[str], scores: np.ndarray, rows: np.ndarray, excluded: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop missing and excluded hits, cut to ``width``, order equal scores by id.

    Args:
        ids: Storage row -> item id.
        scores: ``(b, kk)`` backend scores, best first.
        rows: ``(b, kk)`` storage rows, -1 where missing.
        excluded: ``(b, m)`` rows to drop per query, padded with -2.
        width: Hits to keep per query.

    Returns:
        ``(scores, rows)`` of shape ``(b, width)``; -inf / -1 where fewer hits remain.
    """
    valid = rows >= 0
    if excluded.shape[1]:
        valid &= ~_is_excluded(rows, excluded)
    # Valid hits first, in FAISS order (a stable sort of the invalid flags), then the cut.
    order = np.argsort(~valid, axis=1, kind="stable")[:, :width]
    keep = np.take_along_axis(valid, order, axis=1)
    out_rows = np.where(keep, np.take_along_axis(rows, order, axis=1), -1)
    out_scores = np.where(keep, np.take_along_axis(scores, order, axis=1), -np.inf)
    with np.errstate(invalid="ignore"):  # -inf - -inf in the padding of short answers
        tied = ((np.diff(scores, axis=1) == 0) & (rows[:, 1:] >= 0)).any(axis=1)
    for q in np.flatnonzero(tied).tolist():
        # Rare: collect every valid hit, order by (score desc, id), then cut.
        hits = sorted(
            zip(scores[q][valid[q]].tolist(), rows[q][valid[q]].tolist(), strict=True),
            key=lambda h: (-h[0], ids[h[1]]),
        )[:width]
        out_rows[q] = -1
        out_scores[q] = -np.inf
        if hits:
            out_scores[q, : len(hits)], out_rows[q, : len(hits)] = zip(*hits, strict=True)
    return out_scores.astype(np.float32, copy=False), out_rows


def _is_excluded(rows: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """``(b, kk)`` bool: whether ``rows[q, j]`` is among ``excluded[q]``.

    One sorted search for the whole batch instead of a ``(b, kk, m)`` comparison (about 2x
    faster at 64 x 158 x 50): each query's rows are shifted into a range of their own, so one
    sorted array of every query's exclusions answers all of them. Rows lie in ``[-2, n)``
    (-1 a missing hit, -2 padding), so ``row + 2`` lies in ``[0, stride)``.
    """
    b = rows.shape[0]
    stride = int(max(rows.max(initial=0), excluded.max(initial=0))) + 3
    shift = (np.arange(b, dtype=np.int64) * stride)[:, None] + 2  # (b, 1)
    keys = np.sort((excluded + shift).ravel())  # (b * m,)
    hits = rows + shift  # (b, kk)
    at = np.minimum(np.searchsorted(keys, hits), keys.size - 1)
    found: np.ndarray = keys[at] == hits
    return found
