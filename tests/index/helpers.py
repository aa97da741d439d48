"""Shared checks of the index tests."""

from __future__ import annotations

import numpy as np

from promptrec.index import CandidateIndex

__all__ = ["churn_against_brute_force"]


def churn_against_brute_force(
    ix: CandidateIndex,
    *,
    seed: int,
    steps: int,
    ids: int,
    batch: int,
    every: int,
    drop: int,
    queries: int,
    dim: int = 16,
) -> dict[str, np.ndarray]:
    """Upsert and remove random items step by step; after each step, top-5 must be exact.

    Each step upserts ``batch`` random vectors under ids drawn from ``x0 .. x{ids-1}`` (repeats
    replace); every ``every``-th step also removes ``drop`` drawn ids (absent ones too); then
    ``queries`` random queries must get the brute-force top 5 of the live items.

    Returns:
        The live items the index should hold: id -> (dim,) float32 vector.
    """
    rng = np.random.default_rng(seed)
    ref: dict[str, np.ndarray] = {}
    for step in range(steps):
        new = [f"x{int(i)}" for i in rng.integers(0, ids, size=batch)]
        vecs = rng.standard_normal((batch, dim)).astype(np.float32)  # (batch, dim)
        ix.upsert_many(new, vecs)
        for i, v in zip(new, vecs, strict=True):
            ref[i] = v
        if step % every == 0:
            gone = [f"x{int(i)}" for i in rng.integers(0, ids, size=drop)]
            ix.remove_many(gone)
            for g in gone:
                ref.pop(g, None)
        q = rng.standard_normal((queries, dim)).astype(np.float32)  # (queries, dim)
        keys = sorted(ref)
        mat = np.stack([ref[k] for k in keys])  # (live, dim)
        for row, hits in zip(q, ix.search_many(q, 5), strict=True):
            best = [keys[j] for j in np.argsort(-(mat @ row))[:5]]
            assert [i for i, _ in hits] == best
    return ref
