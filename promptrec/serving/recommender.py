"""Recommendation for a micro-batch: user vectors -> one FAISS search -> one head forward -> top-K.

Plain synchronous code, called on the engine thread; the Faust agent only decodes, keeps the
history table and publishes. A query may also name a seed item (similar items, one more search),
carry an attribute filter (applied inside the search) and ask for explanations (one matmul per
explained query, nothing for the others).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain

import numpy as np

from promptrec.events.exceptions import InvalidEvent
from promptrec.index import AttributeFilter
from promptrec.serving.engine import Engine
from promptrec.serving.explain import (
    POPULAR_REASON,
    SIMILAR_REASON,
    Explanation,
    explain_model,
)
from promptrec.serving.similar import similar_many

__all__ = ["Query", "RecommendBatch", "Recommender"]


@dataclass(frozen=True)
class Query:
    """One user (or, with ``item_id``, one seed item) to recommend for."""

    user_id: str  # "" for a similar-items query without a user
    recent: Sequence[str]  # item ids, oldest first
    exclude: frozenset[str]  # items the user already interacted with
    k: int
    item_id: str | None = None  # similar items to this one instead of the user's
    filter: AttributeFilter | None = None  # only items that pass it are returned
    explain: bool = False  # add an Explanation per returned item


@dataclass
class RecommendBatch:
    """Results of :meth:`Recommender.recommend_many`, aligned with the queries."""

    items: list[list[tuple[str, float]]]
    strategies: list[str]  # "model", "popular" (no user signal yet) or "similar" (item_id)
    users: np.ndarray  # (batch, dim) float32 user vectors; zero rows for no signal
    timings: dict[str, float] = field(default_factory=dict)
    # Per query: one Explanation per returned item when the query asked, else None.
    explanations: list[list[Explanation] | None] = field(default_factory=list)
    # Queries that cannot be answered (a similar-items seed not in the catalog): dead-letter them.
    rejected: dict[int, InvalidEvent] = field(default_factory=dict)


class Recommender:
    """Retrieval and ranking over the engine's index and head."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Clock of the stage timings (``RecommendBatch.timings``); ``bench recommend`` swaps in
        # ``time.thread_time`` to split CPU time by stage on a shared machine.
        self.clock = time.perf_counter

    def user_vectors(
        self, user_ids: Sequence[str], recents: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """User vectors from recent item vectors and encoded profiles.

        Returns ``(users, has_signal)``: (batch, dim) float32 L2-normalised, (batch,) bool.
        """
        engine = self.engine
        index = engine.index
        # One dict pass and one gather for the whole batch: storage rows of every recent item
        # (-1: not indexed), then (n_found, dim) float32 vectors split into per-user views.
        rows = index.rows_of(chain.from_iterable(recents))
        found = rows >= 0
        # Split points: found items before the end of each history but the last.
        ends = np.cumsum([len(recent) for recent in recents], dtype=np.int64)[:-1]
        before = np.concatenate([[0], np.cumsum(found)])[ends]
        histories = np.split(index.vectors_at(rows[found]), before) if len(recents) else []
        profiles: list[np.ndarray | None] = [None] * len(user_ids)
        if len(engine.profiles):  # most workers publish no profiles: nothing to look up
            profile_vecs, has_profile = engine.profiles.get_many(list(user_ids))
            for i in np.flatnonzero(has_profile).tolist():
                profiles[i] = profile_vecs[i]
        return engine.build_users(histories, profiles)

    def recommend_many(self, queries: Sequence[Query]) -> RecommendBatch:
        """Top-k items per query, seen items excluded."""
        engine = self.engine
        timings: dict[str, float] = {}
        t0 = self.clock()
        # Similar-item queries take no user signal: no profile, no history.
        users, has_signal = self.user_vectors(
            [q.user_id if q.item_id is None else "" for q in queries],
            [q.recent if q.item_id is None else () for q in queries],
        )
        results: list[list[tuple[str, float]]] = [[] for _ in queries]
        seeded = np.array([q.item_id is not None for q in queries], dtype=bool)
        strategies = [
            "similar" if seed else "model" if s else "popular"
            for s, seed in zip(has_signal.tolist(), seeded.tolist(), strict=True)
        ]
        t1 = self.clock()
        timings["user"] = t1 - t0

        model_rows = np.flatnonzero(has_signal)
        if model_rows.size and len(engine.index):
            # (b', n_cand) storage rows of the candidates (-1: none), excluded items removed.
            _, candidates = engine.index.search_rows(
                users[model_rows],
                engine.serving.candidates,
                exclude=[queries[int(i)].exclude for i in model_rows],
                filters=[queries[int(i)].filter for i in model_rows],
            )
            t2 = self.clock()
            timings["search"] = t2 - t1
            self._rank(queries, model_rows, users, candidates, results)
            timings["score"] = self.clock() - t2
        matches = engine.index.matches
        for i in map(int, np.flatnonzero(~has_signal & ~seeded)):
            q = queries[i]
            passes = partial(matches, condition=q.filter)
            results[i] = engine.popularity.top(q.k, q.exclude, passes)
        rejected: dict[int, InvalidEvent] = {}
        seeds = np.flatnonzero(seeded).tolist()
        if seeds:
            t3 = self.clock()
            found, missing = similar_many(
                engine.index,
                [queries[i].item_id or "" for i in seeds],
                [queries[i].k for i in seeds],
                [queries[i].filter for i in seeds],
                [queries[i].exclude for i in seeds],
            )
            for j, i in enumerate(seeds):
                results[i] = found[j]
            rejected = {seeds[j]: err for j, err in missing.items()}
            timings["similar"] = self.clock() - t3
        batch = RecommendBatch(results, strategies, users, timings, rejected=rejected)
        batch.explanations = self._explain(queries, batch)
        return batch

    def _explain(
        self, queries: Sequence[Query], batch: RecommendBatch
    ) -> list[list[Explanation] | None]:
        """Explanations of the queries that asked; one batched lookup, one matmul per query."""
        out: list[list[Explanation] | None] = [None] * len(queries)
        asked = [i for i, q in enumerate(queries) if q.explain]
        if not asked:
            return out  # the default path pays nothing
        t0 = self.clock()
        index = self.engine.index
        model = [i for i in asked if batch.strategies[i] == "model"]
        wanted = sorted(
            {item for i in model for item in queries[i].recent}
            | {item for i in model for item, _ in batch.items[i]}
        )
        vectors, found = index.get_many(wanted)  # (n, dim), (n,)
        row = {item: j for j, item in enumerate(wanted) if found[j]}
        for i in asked:
            q, items = queries[i], batch.items[i]
            if batch.strategies[i] == "similar":
                out[i] = [Explanation(SIMILAR_REASON, (q.item_id or "",))] * len(items)
            elif batch.strategies[i] == "popular":
                out[i] = [Explanation(POPULAR_REASON)] * len(items)
            else:
                recent = [item for item in q.recent if item in row]
                out[i] = explain_model(
                    recent,
                    vectors[[row[item] for item in recent]],
                    vectors[[row[item] for item, _ in items]],
                )
        batch.timings["explain"] = self.clock() - t0
        return out

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
        # (b, width) logits; the head gathers the candidates from the index storage itself.
        scores = self.engine.head.score_rows(users[rows], index.storage, np.maximum(candidates, 0))
        scores[~mask] = -np.inf
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
