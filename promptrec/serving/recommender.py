"""Recommendation for a micro-batch: user vectors -> one FAISS search -> one head forward -> top-K.

Plain synchronous code, called on the engine thread; the Faust agent only decodes, keeps the
history table and publishes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from promptrec.serving.engine import Engine

__all__ = ["Query", "RecommendBatch", "Recommender"]


@dataclass(frozen=True)
class Query:
    """One user to recommend for."""

    user_id: str
    recent: Sequence[str]  # item ids, oldest first
    exclude: frozenset[str]  # items the user already interacted with
    k: int


@dataclass
class RecommendBatch:
    """Results of :meth:`Recommender.recommend_many`, aligned with the queries."""

    items: list[list[tuple[str, float]]]
    strategies: list[str]  # "model" or "popular" (no user signal yet)
    users: np.ndarray  # (batch, dim) float32 user vectors; zero rows for no signal
    timings: dict[str, float] = field(default_factory=dict)


class Recommender:
    """Retrieval and ranking over the engine's index and head."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def user_vectors(
        self, user_ids: Sequence[str], recents: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """User vectors from recent item vectors and encoded profiles.

        Returns ``(users, has_signal)``: (batch, dim) float32 L2-normalised, (batch,) bool.
        """
        engine = self.engine
        unique = sorted({item for recent in recents for item in recent})
        # One lookup for the whole batch: (n_unique, dim) float32 + found mask.
        vectors, found = engine.index.get_many(unique)
        row = {item: i for i, item in enumerate(unique) if found[i]}
        histories = []
        for recent in recents:
            rows = [row[item] for item in recent if item in row]
            histories.append(vectors[rows] if rows else vectors[:0])
        profile_vecs, has_profile = engine.profiles.get_many(list(user_ids))
        profiles = [profile_vecs[i] if has_profile[i] else None for i in range(len(user_ids))]
        return engine.build_users(histories, profiles)

    def recommend_many(self, queries: Sequence[Query]) -> RecommendBatch:
        """Top-k items per query, seen items excluded."""
        engine = self.engine
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        users, has_signal = self.user_vectors(
            [q.user_id for q in queries], [q.recent for q in queries]
        )
        results: list[list[tuple[str, float]]] = [[] for _ in queries]
        strategies = ["model" if s else "popular" for s in has_signal]
        t1 = time.perf_counter()
        timings["user"] = t1 - t0

        model_rows = np.flatnonzero(has_signal)
        if model_rows.size and len(engine.index):
            # (b', n_cand) storage rows of the candidates (-1: none), excluded items removed.
            _, candidates = engine.index.search_rows(
                users[model_rows],
                engine.serving.candidates,
                exclude=[queries[int(i)].exclude for i in model_rows],
            )
            t2 = time.perf_counter()
            timings["search"] = t2 - t1
            self._rank(queries, model_rows, users, candidates, results)
            timings["score"] = time.perf_counter() - t2
        known = engine.index.__contains__
        for i in map(int, np.flatnonzero(~has_signal)):
            results[i] = engine.popularity.top(queries[i].k, queries[i].exclude, known)
        return RecommendBatch(results, strategies, users, timings)

    def _rank(
        self,
        queries: Sequence[Query],
        rows: np.ndarray,
        users: np.ndarray,
        candidates: np.ndarray,
        results: list[list[tuple[str, float]]],
    ) -> None:
        """Score every query's candidates with one head forward and keep the top k."""
        width = candidates.shape[1]
        if width == 0:
            return
        index = self.engine.index
        mask = candidates >= 0  # (b, width); missing slots are scored -inf
        counts = mask.sum(axis=1)
        batch = index.vectors_at(candidates)  # (b, width, dim), one gather from the index
        scores = self.engine.head.score_many(users[rows], batch, check=False)  # (b, width)
        scores = np.where(mask, scores, -np.inf)
        # One partial sort for the whole batch: the best kmax per row, then exact order.
        kmax = min(max(queries[int(i)].k for i in rows), width)
        if kmax < width:
            top = np.argpartition(-scores, kmax - 1, axis=1)[:, :kmax]
        else:
            top = np.broadcast_to(np.arange(width), (len(rows), width))
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_rows = np.take_along_axis(candidates, top, axis=1).tolist()
        top_scores = np.take_along_axis(scores, top, axis=1).tolist()
        for j, i in enumerate(rows.tolist()):
            k = min(queries[i].k, int(counts[j]))
            results[i] = list(zip(index.ids_at(top_rows[j][:k]), top_scores[j][:k], strict=True))
