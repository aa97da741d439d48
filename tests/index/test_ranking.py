"""cut_hits: exclusion, the cut and id tie-breaks, against brute-force answers."""

from __future__ import annotations

import numpy as np

from promptrec.index.ranking import _is_excluded, cut_hits


def test_exclusion_lookup_matches_a_brute_force_comparison() -> None:
    rng = np.random.default_rng(11)
    for b, kk, m, n in [(1, 5, 1, 3), (7, 30, 12, 40), (64, 158, 50, 10_000)]:
        rows = rng.integers(-1, n, (b, kk))  # -1: a missing hit
        excluded = rng.integers(-2, n, (b, m))  # -2: padding
        want = (rows[:, :, None] == excluded[:, None, :]).any(axis=2)
        np.testing.assert_array_equal(_is_excluded(rows, excluded), want)
    # Padding never matches a missing hit, and one query's exclusions never leak into another's.
    rows = np.array([[-1, 3, 4], [3, 4, -1]])
    excluded = np.array([[-2, 3], [-2, -2]])
    assert _is_excluded(rows, excluded).tolist() == [[False, True, False], [False, False, False]]


def test_cut_drops_excluded_and_missing_and_orders_ties_by_id() -> None:
    ids = ["d", "c", "b", "a", "e"]
    scores = np.array(
        [[0.9, 0.5, 0.5, 0.5, 0.1], [0.8, 0.7, -np.inf, -np.inf, -np.inf]], np.float32
    )
    rows = np.array([[4, 0, 1, 2, 3], [1, 0, -1, -1, -1]])
    excluded = np.array([[1, -2], [-2, -2]])
    out_s, out_r = cut_hits(ids, scores, rows, excluded, 3)
    # Query 0: e (0.9), then the tie at 0.5 among d, b (c excluded) by id: b, d.
    assert [ids[r] for r in out_r[0]] == ["e", "b", "d"]
    np.testing.assert_array_equal(out_s[0], np.array([0.9, 0.5, 0.5], np.float32))
    # Query 1: two hits, then padding.
    assert out_r[1].tolist() == [1, 0, -1] and out_s[1, 2] == -np.inf
