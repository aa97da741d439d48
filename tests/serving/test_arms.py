"""Experiment arms in one process: shared and separate state, catalog once per index, routing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from promptrec.encoder import PromptTemplates, TextEncoder
from promptrec.encoder.settings import EncoderSettings
from promptrec.events.schemas import FeedbackEvent, Limits
from promptrec.index.settings import IndexSettings
from promptrec.serving.arms import Arms, ArmState, load_arm_engines
from promptrec.serving.catalog import CatalogRecord, CatalogUpdater
from promptrec.serving.experiments import Experiments
from promptrec.serving.learner import OnlineLearner
from promptrec.serving.recommender import Query, Recommender
from promptrec.serving.settings import ServingSettings
from promptrec.streams.agents.model_updates import arm_of_key, sync_key

EXPERIMENT = {
    "experiment": "t",
    "arms": [
        {"name": "a", "weight": 40},
        {"name": "b", "weight": 30, "item_prompt": "item_short"},
        {"name": "c", "weight": 30, "user_prompt": "user_history"},  # shares a's item index
    ],
}


def _experiments(tmp_path: Path, settings: EncoderSettings) -> Experiments:
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps(EXPERIMENT), encoding="utf-8")
    return Experiments.load(path, PromptTemplates.load(settings.prompts_file), "item", "user", None)


def _catalog() -> list[CatalogRecord]:
    out = []
    for n in range(6):
        topic = "jazz" if n < 3 else "space"
        item = {"item_id": f"{topic}-{n}", "title": f"{topic} thing {n}", "text": "A product.",
                "attributes": {"category": topic}}  # fmt: skip
        out.append(
            CatalogRecord("items", 0, n, item["item_id"].encode(), json.dumps(item).encode())
        )
    return out


@pytest.fixture
def arms(tmp_path: Path, tiny_encoder: TextEncoder) -> Arms:
    serving = ServingSettings(state_dir=tmp_path / "state")
    settings = EncoderSettings()
    experiments = _experiments(tmp_path, settings)
    engines = load_arm_engines(serving, settings, IndexSettings(), experiments, tiny_encoder)
    states = []
    for arm in experiments.arms:
        engine = engines[arm.name]
        rec = Recommender(engine)
        states.append(ArmState(arm, engine, rec, OnlineLearner(engine, rec)))
    return Arms(experiments, states)


def test_arms_share_encoder_and_indexes_by_key_but_not_heads(arms: Arms) -> None:
    a, b, c = (arms.states[n].engine for n in ("a", "b", "c"))
    assert a.encoder is b.encoder is c.encoder and a.executor is b.executor
    assert a.popularity is b.popularity is c.popularity
    assert a.index is c.index and a.index is not b.index  # one index per item template
    assert a.profiles is b.profiles and a.profiles is not c.profiles  # one per user template
    assert len({id(e.head) for e in (a, b, c)}) == 3
    assert b.encoder_settings.item_prompt == "item_short"
    assert len(arms.distinct_engines()) == 3  # (index, profiles) pairs: (A,U), (B,U), (A,H)


def test_catalog_fills_every_index_and_encodes_shared_ones_once(arms: Arms) -> None:
    updaters = [CatalogUpdater(e, Limits(max_bytes=65536)) for e in arms.distinct_engines()]
    outcomes = [u.apply_many(_catalog()) for u in updaters]
    # a's and b's indexes are new: encoded; c shares a's index: its texts are unchanged.
    assert [o.upserted for o in outcomes] == [6, 6, 0]
    assert outcomes[2].unchanged == 6
    a, b = arms.states["a"].engine, arms.states["b"].engine
    va, _ = a.index.get_many(["jazz-0"])
    vb, _ = b.index.get_many(["jazz-0"])
    assert not np.allclose(va, vb)  # different prompts, different vectors
    assert a.index.attributes_of("jazz-0") == {"category": ["jazz"]}


def test_feedback_goes_to_the_arm_that_recommended(arms: Arms) -> None:
    for u in [CatalogUpdater(e, Limits(max_bytes=65536)) for e in arms.distinct_engines()]:
        u.apply_many(_catalog())
    b = arms.states["b"]
    batch = b.recommender.recommend_many([Query("x", ["jazz-0"], frozenset({"jazz-0"}), 3)])
    b.learner.remember("rec-b", batch.users[0])
    # The user's own arm may be any: the recommendation id decides.
    event = FeedbackEvent.model_validate(
        {
            "event_id": "f1",
            "user_id": "x",
            "item_id": "jazz-1",
            "recommendation_id": "rec-b",
            "label": 1,
            "ts": 1767225600000,
        }
    )
    versions = {n: s.engine.head.version for n, s in arms.states.items()}
    merged, per_arm = arms.learn_many([event], [["jazz-0"]])
    assert merged.learned == 1 and set(per_arm) == {"b"}
    assert {n: s.engine.head.version - versions[n] for n, s in arms.states.items()} == {
        "a": 0, "b": 1, "c": 0
    }  # fmt: skip
    # Without a known recommendation: the user's assigned arm.
    other = event.model_copy(update={"recommendation_id": None, "event_id": "f2"})
    assert arms.arm_of_feedback(other).arm == arms.experiments.assign("x")


def test_checkpoint_writes_each_store_once_under_arms(arms: Arms, tmp_path: Path) -> None:
    arms.checkpoint()
    root = tmp_path / "state" / "arms"
    names = sorted(p.name for p in root.iterdir())
    assert names == ["head-a.safetensors", "head-b.safetensors", "head-c.safetensors",
                     "index-item-0", "index-item_short-1", "profiles-user-0",
                     "profiles-user_history-1"]  # fmt: skip
    assert not (tmp_path / "state" / "index").exists()  # single-arm paths stay unused


def test_model_update_keys_keep_arms_apart() -> None:
    single = Experiments.single("item", "user", None)
    assert sync_key(single, "default", "host:1:ab") == "host:1:ab"
    assert arm_of_key("host:1:ab") == "default"
    active = Experiments("t", (*Experiments.single("item", "user", None).arms,))
    assert not active.active  # one arm called default: no experiment
    assert arm_of_key("control/host:1:ab") == "control"
