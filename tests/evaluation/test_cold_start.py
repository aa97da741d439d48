"""The strict cold-start protocol on data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from promptrec.encoder.model import ModelConfig
from promptrec.encoder.training import TrainConfig
from promptrec.evaluation.cold_start import RandomScorer, cold_start_split, run_cold_start
from promptrec.evaluation.datasets import Dataset, DatasetError, Interaction, ItemRecord


def _dataset(events: list[tuple[str, str, int]], n_items: int) -> Dataset:
    items = [ItemRecord(f"i{n}", f"Item {n}") for n in range(n_items)]
    inter = sorted((Interaction(u, i, t) for u, i, t in events), key=lambda e: e.ts)
    return Dataset("cold", "jsonl", items, {}, inter)


def test_cut_cold_items_training_data_and_events() -> None:
    events = [
        ("a", "i0", 1), ("a", "i1", 2), ("a", "i2", 3), ("b", "i1", 4), ("b", "i0", 5),
        ("a", "i0", 6), ("b", "i3", 7), ("a", "i1", 8), ("a", "i4", 9), ("b", "i4", 10),
    ]  # fmt: skip
    # duplicates are the loader's business; this Dataset is built directly
    cs = cold_start_split(_dataset(events, 6), quantile=0.6)
    assert cs.cut_ts == 6  # 60 % quantile of 1..10
    # i3 and i4 first appear at or after ts 6; i5 is never seen (cold, never a target).
    assert cs.cold.tolist() == [False, False, False, True, True, True]
    assert cs.split.user_ids == ["a", "b"]
    assert cs.split.train == [[0, 1], [1]]  # pre-cut only, last pre-cut item = validation
    assert cs.split.valid.tolist() == [2, 0] and cs.split.test.tolist() == [-1, -1]
    assert not any(cs.cold[i] for seq in cs.split.train for i in seq)
    # a: first post-cut cold event is i4 (ts 9), history = all earlier items, post-cut too.
    # b: i3 at ts 7.
    assert cs.users == [0, 1]
    assert cs.targets.tolist() == [4, 3]
    assert cs.histories == [[0, 1, 2, 0, 1], [1, 0]]
    assert cs.summary()["cold_items"] == 3 and cs.summary()["events"] == 2
    # Validation stand-ins: first seen in the last 40 % of the pre-cut time (ts 3..5): i2.
    assert cs.inner_cold is not None
    assert cs.inner_cold.tolist() == [False, False, True, False, False, False]


def test_bad_cut_and_no_cold_event() -> None:
    ds = _dataset([("a", "i0", 1), ("b", "i1", 2), ("a", "i1", 10), ("b", "i0", 11)], 2)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        cold_start_split(ds, 1.0)
    with pytest.raises(DatasetError, match="no interaction after"):
        cold_start_split(ds, 0.5)


def test_random_scorer_is_seeded_and_uniform() -> None:
    a = RandomScorer(50, seed=3).score([0, 1], [[], []])
    assert a.shape == (2, 50) and np.array_equal(
        a, RandomScorer(50, seed=3).score([0, 1], [[], []])
    )
    assert not np.array_equal(a[0], a[1])


def test_text_carries_cold_items_that_pop_cannot_rank() -> None:
    # 4 topics x 6 items; items 4 and 5 of each topic only appear after the cut. The text
    # vector carries the topic, so the trained model can place a cold item by its text alone.
    rng = np.random.default_rng(0)
    n_users, events = 40, []
    for u in range(n_users):
        topic = u % 4
        warm = rng.permutation(4)
        for step, n in enumerate(warm):
            events.append((f"u{u}", f"i{6 * topic + int(n)}", 100 * step + u))
        events.append((f"u{u}", f"i{6 * topic + 4 + u % 2}", 1000 + u))
    ds = _dataset(events, 24)
    cs = cold_start_split(ds, quantile=0.75)
    assert cs.summary()["events"] == n_users and int(cs.cold.sum()) == 8
    text = 0.3 * rng.normal(size=(24, 8)).astype(np.float32)
    text[np.arange(24), np.arange(24) // 6] += 1.0
    config = ModelConfig(text_dim=8, dim=16, max_len=8, layers=1, dropout=0.1, id_dropout=0.5)
    train = TrainConfig(epochs=15, patience=15, batch_size=8, lr=1e-2, progress=False)
    report = run_cold_start(cs, text, None, config, train)
    methods = report["methods"]
    assert set(methods) == {
        "promptrec",
        "promptrec-unfused",
        "promptrec-fused-all",
        "pop",
        "random",
    }
    assert set(report["fusion"]) == {"all", "balanced"}
    assert report["fusion"]["balanced"]["cold_objective"] == "balanced"
    # The stand-in cold items of validation: first seen in the last quarter before the cut.
    assert cs.inner_cold is not None and not (cs.inner_cold & cs.cold).any()
    assert methods["pop"]["HR@10"] == 0.0  # cold items have no counts: ranked after the 16 warm
    # 20 unseen candidates, 2 of them cold items of the user's topic: chance HR@10 is about 0.5.
    assert methods["promptrec"]["HR@10"] >= methods["random"]["HR@10"] + 0.15
    assert methods["promptrec"]["NDCG@10"] > methods["random"]["NDCG@10"] + 0.1
    assert report["paired"]["vs"]["pop"]["ci95"][0] > 0
    assert set(report["intervals"]["random"]) == {"NDCG@10", "HR@10"}
    assert report["training"]["epochs_run"] >= 1
