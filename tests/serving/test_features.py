"""Explanations, similar items and filtered requests through the Recommender (real FAISS, head)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from promptrec.encoder import TextEncoder
from promptrec.encoder.settings import EncoderSettings
from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.events.schemas import ScoredItem
from promptrec.index import AttributeFilter, IndexSettings
from promptrec.serving.engine import Engine
from promptrec.serving.explain import (
    MODEL_REASON,
    POPULAR_REASON,
    SIMILAR_REASON,
    Explanation,
    explain_model,
    item_entries,
)
from promptrec.serving.recommender import Query, Recommender
from promptrec.serving.settings import ServingSettings

DIM = 32  # the tiny encoder's width
CATEGORY = ["books", "music", "books", "films", "music", "books", "toys", "toys"]


def unit(*weights: tuple[int, float]) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    for axis, w in weights:
        v[axis] = w
    return v / np.linalg.norm(v)


@pytest.fixture
def engine(tmp_path: Path, tiny_encoder: TextEncoder) -> Engine:
    """Eight items: i<n> mostly along axis n, a little along axis n+1 (neighbours are similar)."""
    eng = Engine.load(
        ServingSettings(state_dir=tmp_path, candidates=20),
        EncoderSettings(),
        IndexSettings(use_gpu="never"),
        encoder=tiny_encoder,
    )
    vecs = np.stack([unit((n, 1.0), (n + 1, 0.5)) for n in range(8)])
    eng.index.upsert_many(
        [f"i{n}" for n in range(8)], vecs, attributes=[{"category": c} for c in CATEGORY]
    )
    return eng


def test_explain_model_known_answer() -> None:
    hist = np.stack([unit((0, 1.0)), unit((1, 1.0)), unit((2, 1.0)), unit((0, 1.0))])
    items = np.stack([unit((0, 1.0), (1, 0.5)), unit((5, 1.0)), unit((1, 1.0), (2, 1.0))])
    out = explain_model(["a", "b", "c", "a"], hist, items)
    assert out[0] == Explanation(MODEL_REASON, ("a", "b"))  # c contributes nothing (0)
    assert out[1] == Explanation(MODEL_REASON, ())  # orthogonal to the whole history
    assert out[2] == Explanation(MODEL_REASON, ("c", "b"))  # tie: the more recent first
    assert explain_model(["a"], hist[:1], items[:0]) == []
    assert explain_model([], hist[:0], items[:1]) == [Explanation(MODEL_REASON, ())]
    many = explain_model(list("abcde"), np.ones((5, DIM), np.float32), items[:1])
    assert many[0].because == ("e", "d", "c")  # at most 3, newest first on ties


def test_explained_answers_name_the_closest_history_items(engine: Engine) -> None:
    rec = Recommender(engine)
    recent = ["i0", "i3", "i5"]
    batch = rec.recommend_many(
        [
            Query("u1", recent, frozenset(recent), 4, explain=True),
            Query("u1", recent, frozenset(recent), 4),
        ]
    )
    assert batch.strategies == ["model", "model"] and batch.explanations[1] is None
    assert [i for i, _ in batch.items[0]] == [i for i, _ in batch.items[1]]  # same answer
    explained = batch.explanations[0]
    assert explained is not None and len(explained) == 4
    hist, _ = engine.index.get_many(recent)
    for (item, _), why in zip(batch.items[0], explained, strict=True):
        vec, _ = engine.index.get_many([item])
        ips = (hist @ vec[0]).tolist()
        want = [recent[j] for j in np.argsort(ips)[::-1] if ips[j] > 0][:3]
        assert why.reason == MODEL_REASON and list(why.because or ()) == want
    assert "explain" in batch.timings


def test_popular_and_similar_explanations(engine: Engine) -> None:
    engine.popularity.add_many(["i6", "i6", "i2"])
    batch = Recommender(engine).recommend_many(
        [
            Query("new", [], frozenset(), 2, explain=True),
            Query("", [], frozenset(), 2, "i1", explain=True),
        ]
    )
    assert batch.strategies == ["popular", "similar"]
    assert batch.explanations[0] == [Explanation(POPULAR_REASON)] * 2
    assert batch.explanations[1] == [Explanation(SIMILAR_REASON, ("i1",))] * 2
    entries = item_entries(batch.items[0], batch.explanations[0])
    assert entries == [
        {"item_id": "i6", "score": 1.0, "reason": "popular now"},
        {"item_id": "i2", "score": pytest.approx(0.5, abs=1e-3), "reason": "popular now"},
    ]
    for entry in item_entries(batch.items[1], batch.explanations[1]):
        ScoredItem.model_validate(entry)  # the schema accepts what the worker will publish
    assert item_entries([("a", 0.5)], None) == [{"item_id": "a", "score": 0.5}]


def test_similar_items_known_answer(engine: Engine) -> None:
    rec = Recommender(engine)
    engine.index.remove_many(["i4"])
    batch = rec.recommend_many(
        [
            Query("", [], frozenset(), 2, item_id="i3"),
            Query("u9", ["i0"], frozenset({"i0"}), 3, item_id="i1", filter=AttributeFilter.build({"category": "books"})),
            Query("", [], frozenset(), 2, item_id="ghost"),
            Query("", [], frozenset(), 10, item_id="i6", filter=AttributeFilter.build({"category": "toys"})),
        ]
    )  # fmt: skip
    assert batch.strategies == ["similar"] * 4
    # i3 = (axis 3, axis 4 / 2): i2 shares axis 3, i4 (axis 4) is deleted, the rest tie at 0
    # and are ordered by id.
    assert [i for i, _ in batch.items[0]] == ["i2", "i0"]
    assert batch.items[0][0][1] == pytest.approx(
        float(unit((2, 1), (3, 0.5)) @ unit((3, 1), (4, 0.5)))
    )
    assert all(i != "i3" and i != "i4" for i, _ in batch.items[0])
    assert [i for i, _ in batch.items[1]] == ["i2", "i5"]  # books, not i1 itself, not seen i0
    assert batch.items[2] == [] and batch.rejected[2].reason is ReasonCode.unknown_item
    assert [i for i, _ in batch.items[3]] == ["i7"]  # the other toy; fewer than k
    assert set(batch.rejected) == {2}


def test_filters_hold_for_model_and_popular_answers(engine: Engine) -> None:
    engine.popularity.add_many(["i6", "i0", "i2", "i2"])
    books = AttributeFilter.build({"category": ["books"]}, exclude_ids=["i5"])
    batch = Recommender(engine).recommend_many(
        [
            Query("u", ["i1"], frozenset({"i1"}), 10, filter=books),
            Query("new", [], frozenset(), 10, filter=books),
            Query("u", ["i1"], frozenset({"i1"}), 10, filter=AttributeFilter.build({"category": "none"})),
        ]
    )  # fmt: skip
    assert batch.strategies == ["model", "popular", "model"]
    assert sorted(i for i, _ in batch.items[0]) == ["i0", "i2"]  # fewer than k, never others
    assert [i for i, _ in batch.items[1]] == ["i2", "i0"]  # i6 is popular but a toy
    assert batch.items[2] == []


def test_query_for_request_and_its_rejections(engine: Engine) -> None:
    from promptrec.events.schemas import RecommendationRequest
    from promptrec.serving.requests import query_for_request

    def request(**fields: object) -> RecommendationRequest:
        return RecommendationRequest.model_validate({"request_id": "r", "ts": 1, **fields})

    q = query_for_request(
        request(user_id="u", explain=True, filter={"category": "toys"}),
        ["i0"], frozenset({"i0"}), 10, engine.index,
    )  # fmt: skip
    assert (q.user_id, q.k, q.item_id, q.explain) == ("u", 10, None, True)
    assert q.filter == AttributeFilter.build({"category": ["toys"]}) and q.exclude == {"i0"}
    q = query_for_request(
        request(item_id="i3", user_id="u", k=2), ["i0"], frozenset({"i0"}), 10, engine.index
    )
    assert (q.item_id, q.recent, q.exclude, q.k) == ("i3", (), frozenset(), 2)
    with pytest.raises(InvalidEvent) as info:
        query_for_request(request(item_id="ghost"), [], frozenset(), 10, engine.index)
    assert info.value.reason is ReasonCode.unknown_item and "ghost" in info.value.detail
    with pytest.raises(InvalidEvent) as info:
        query_for_request(
            request(user_id="u", filter={"colour": "red", "category": "toys"}),
            [], frozenset(), 10, engine.index, filterable=frozenset({"category"}),
        )  # fmt: skip
    assert info.value.reason is ReasonCode.schema and "'colour' not filterable" in info.value.detail
