"""recommend_many against a brute-force answer: user tower, exact search, exclusions, head, top-k.

Real FAISS and a head that has learned (its hidden layer is active), on random unit vectors;
the reference recomputes each query on its own in plain numpy and ``ScoringHead.score_many``.
"""

from __future__ import annotations

import numpy as np
import pytest

from promptrec.encoder import PromptTemplates, ScoringHead, UserTower
from promptrec.encoder.settings import EncoderSettings
from promptrec.index import IndexSettings, create_index
from promptrec.serving.engine import Engine
from promptrec.serving.recommender import Query, Recommender
from promptrec.serving.settings import ServingSettings

DIM, ITEMS, CANDIDATES = 24, 300, 30


@pytest.fixture
def engine() -> Engine:
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(ITEMS, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = create_index(DIM, IndexSettings(kind="flat", use_gpu="never"))
    index.upsert_many([f"i{j}" for j in range(ITEMS)], vecs)
    head = ScoringHead(DIM, hidden=16)
    for _ in range(30):
        pick = rng.integers(0, ITEMS, (2, 16))
        head.learn_many(vecs[pick[0]], vecs[pick[1]], rng.integers(0, 2, 16).astype(np.float32))
    return Engine(
        serving=ServingSettings(candidates=CANDIDATES),
        encoder_settings=EncoderSettings(),
        index_settings=IndexSettings(),
        encoder=None,  # type: ignore[arg-type]  # recommending encodes nothing
        prompts=PromptTemplates.default(),
        index=index,
        profiles=create_index(DIM, IndexSettings(kind="flat", use_gpu="never")),
        head=head,
    )


def _reference(engine: Engine, q: Query) -> list[str]:
    """One query alone: tower over its known items, exact scan without seen, head, top k."""
    vecs, found = engine.index.get_many(list(q.recent))
    users, ok = UserTower().build_many([vecs[found]], [None])
    assert ok[0]
    ids = engine.index.ids()
    allowed = np.array([i not in q.exclude for i in ids])
    cos = engine.index.get_many(ids)[0] @ users[0]
    cand = [j for j in np.argsort(-cos, kind="stable") if allowed[j]][:CANDIDATES]
    table = engine.index.get_many(ids)[0]
    logits = engine.head.score_many(users, table[cand][None])[0]
    return [ids[cand[j]] for j in np.argsort(-logits, kind="stable")[: q.k]]


def test_batched_answers_equal_one_query_at_a_time(engine: Engine) -> None:
    rng = np.random.default_rng(5)
    queries = []
    for u in range(40):
        history = [f"i{j}" for j in rng.integers(0, ITEMS, int(rng.integers(1, 25)))]
        if u % 5 == 0:
            history.insert(0, "not-indexed")  # unknown items are skipped, not fatal
        queries.append(Query(f"u{u}", history[-20:], frozenset(history), int(rng.integers(1, 12))))
    queries.append(Query("new", [], frozenset(), 5))  # no signal: popularity
    queries.append(Query("gone", ["not-indexed"], frozenset({"not-indexed"}), 5))
    engine.popularity.add_many(["i1", "i2", "i2"])
    batch = Recommender(engine).recommend_many(queries)
    assert batch.strategies == ["model"] * 40 + ["popular", "popular"]
    for i, q in enumerate(queries[:40]):
        got = [item for item, _ in batch.items[i]]
        assert got == _reference(engine, q), i
        assert not set(got) & q.exclude
        scores = [s for _, s in batch.items[i]]
        assert scores == sorted(scores, reverse=True)
    assert [item for item, _ in batch.items[40]] == ["i2", "i1"]


def test_an_empty_batch_and_a_batch_of_unknown_users(engine: Engine) -> None:
    rec = Recommender(engine)
    empty = rec.recommend_many([])
    assert empty.items == [] and empty.strategies == []
    batch = rec.recommend_many([Query("x", ["nope"], frozenset({"nope"}), 3)])
    assert batch.strategies == ["popular"] and batch.items == [[]]
