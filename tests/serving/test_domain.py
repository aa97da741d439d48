"""Domain logic without Faust: history, popularity, catalog updates, recommendation, learning.

Real FAISS and a real (tiny, randomly initialised) transformer; the worker's wiring around these
classes is covered end to end in test_pipeline_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from promptrec.encoder import TextEncoder
from promptrec.encoder.settings import EncoderSettings
from promptrec.events.exceptions import ReasonCode
from promptrec.events.schemas import FeedbackEvent, Limits
from promptrec.index import IndexSettings
from promptrec.observability.metrics import RunningAUC
from promptrec.serving.catalog import CatalogRecord, CatalogUpdater
from promptrec.serving.engine import Engine
from promptrec.serving.history import UserHistory
from promptrec.serving.learner import OnlineLearner
from promptrec.serving.popularity import RecentPopularity
from promptrec.serving.recommender import Query, Recommender
from promptrec.streams.settings import StreamSettings


@pytest.fixture
def engine(tmp_path: Path, tiny_encoder: TextEncoder) -> Engine:
    stream = StreamSettings(state_dir=tmp_path, candidates=20)
    return Engine.load(stream, EncoderSettings(), IndexSettings(), encoder=tiny_encoder)


def item_record(item_id: str, title: str, offset: int = 0, **extra: object) -> CatalogRecord:
    value = json.dumps({"item_id": item_id, "title": title, **extra}).encode()
    return CatalogRecord("items", 0, offset, item_id.encode(), value)


def limits() -> Limits:
    return StreamSettings().limits()


def test_history_is_bounded_and_deduplicated() -> None:
    h = UserHistory()
    for n in range(7):
        assert h.append(f"e{n}", f"i{n % 5}", 1000 + n, max_len=4)
    assert not h.append("e6", "i9", 2000, max_len=4)
    assert h.items == ["i3", "i4", "i0", "i1"] and h.count == 7
    assert h.recent(3) == ["i4", "i0", "i1"]
    assert UserHistory.from_value(json.loads(json.dumps(h.to_value()))) == h
    assert UserHistory.from_value(None) == UserHistory()


def test_recent_popularity_decays_and_filters() -> None:
    pop = RecentPopularity(half_life=2)
    pop.add_many(["old"] * 3 + ["new"] * 3)
    top = pop.top(5, exclude=set(), known=lambda i: True)
    assert [i for i, _ in top] == ["new", "old"] and top[0][1] == 1.0
    assert pop.top(5, exclude={"new"}, known=lambda i: True) == [top[1]]
    assert pop.top(5, exclude=set(), known=lambda i: i != "new")[0][0] == "old"


def test_running_auc_known_answers() -> None:
    auc = RunningAUC(window=10)
    assert auc.value() is None
    auc.update_many(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0]))
    assert auc.value() == pytest.approx(1.0)
    auc.update_many(np.array([0.5, 0.5]), np.array([1, 0]))  # a tie counts one half
    # positives 0.9, 0.8, 0.5 vs negatives 0.1, 0.2, 0.5: 3 + 3 + (2 + 0.5) of 9 pairs
    assert auc.value() == pytest.approx(8.5 / 9)


def test_catalog_encodes_once_per_version_and_handles_deletes(engine: Engine) -> None:
    updater = CatalogUpdater(engine, limits())
    out = updater.apply_many(
        [item_record("a", "alpha"), item_record("b", "beta"), item_record("a", "alpha")]
    )
    assert out.upserted == 2 and not out.dead and len(engine.index) == 2
    tag = engine.index.tag_of("a")
    again = updater.apply_many([item_record("a", "alpha")])
    assert again.upserted == 0 and again.unchanged == 1 and engine.index.tag_of("a") == tag
    changed = updater.apply_many([item_record("a", "alpha v2")])
    assert changed.upserted == 1 and engine.index.tag_of("a") != tag
    gone = updater.apply_many(
        [item_record("b", "beta", deleted=True), CatalogRecord("items", 0, 9, b"a", None)]
    )
    assert gone.removed == 2 and len(engine.index) == 0


def test_catalog_dead_letters_bad_records_and_keeps_the_rest(engine: Engine) -> None:
    updater = CatalogUpdater(engine, limits())
    records = [
        CatalogRecord("items", 0, 1, b"x", b"{oops"),
        item_record("empty", ""),
        CatalogRecord("items", 0, 3, None, None),
        item_record("ok", "fine item"),
        CatalogRecord(
            "users", 0, 4, b"u1", json.dumps({"user_id": "u1", "attributes": {"age": 3}}).encode()
        ),
    ]
    out = updater.apply_many(records)
    reasons = sorted(str(err.reason) for _, err in out.dead)
    assert reasons == ["empty_text", "empty_value", "invalid_json"]
    assert "ok" in engine.index and "u1" in engine.profiles and out.profiles == 1


def test_replay_end_drops_items_deleted_while_down(engine: Engine, tmp_path: Path) -> None:
    CatalogUpdater(engine, limits()).apply_many(
        [item_record("a", "alpha"), item_record("b", "beta")]
    )
    engine.checkpoint()
    restored = Engine.load(
        engine.serving, EncoderSettings(), IndexSettings(), encoder=engine.encoder
    )
    assert len(restored.index) == 2
    updater = CatalogUpdater(restored, limits())
    out = updater.apply_many([item_record("a", "alpha")])  # the topic now only holds "a"
    assert out.upserted == 0  # the snapshot served as an encoding cache
    assert updater.finish_replay() == 1 and restored.index.ids() == ["a"]


def test_recommend_excludes_seen_and_falls_back_to_popularity(engine: Engine) -> None:
    CatalogUpdater(engine, limits()).apply_many(
        [item_record(f"i{n}", f"item number {n} about topic {n % 3}") for n in range(12)]
    )
    engine.popularity.add_many(["i5", "i5", "i6"])
    rec = Recommender(engine)
    seen = frozenset({"i0", "i1"})
    batch = rec.recommend_many(
        [
            Query("u1", ["i0", "i1"], seen, 5),
            Query("new-user", [], frozenset({"i5"}), 3),
            Query("u2", ["unknown-item"], frozenset({"unknown-item"}), 3),
        ]
    )
    assert batch.strategies == ["model", "popular", "popular"]
    ids = [i for i, _ in batch.items[0]]
    assert len(ids) == 5 and not set(ids) & seen
    scores = [s for _, s in batch.items[0]]
    assert scores == sorted(scores, reverse=True)
    assert [i for i, _ in batch.items[1]] == ["i6"]
    assert [i for i, _ in batch.items[2]] == ["i5", "i6"]


def test_learner_steps_the_head_and_rejects_unknowns(engine: Engine) -> None:
    CatalogUpdater(engine, limits()).apply_many(
        [item_record("a", "alpha"), item_record("b", "beta")]
    )
    learner = OnlineLearner(engine, Recommender(engine))

    def fb(item: str, user: str, label: int) -> FeedbackEvent:
        return FeedbackEvent(
            event_id=f"{item}{user}", user_id=user, item_id=item, label=label, ts=1
        )

    out = learner.learn_many(
        [fb("a", "u", 1), fb("b", "u", 0), fb("zzz", "u", 1), fb("a", "stranger", 1)],
        [["a"], ["a"], ["a"], []],
    )
    assert out.learned == 2 and engine.head.version == 1 and out.loss is not None
    assert [(pos, err.reason) for pos, err in out.rejected] == [
        (2, ReasonCode.unknown_item),
        (3, ReasonCode.unknown_user),
    ]
