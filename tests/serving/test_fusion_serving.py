"""The worker's engine with a fused checkpoint: one index of fused vectors, cold items by text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from promptrec.encoder import TextEncoder
from promptrec.encoder.fusion import TextFusion
from promptrec.encoder.model import ModelConfig, RecModel, load_model, save_model
from promptrec.encoder.settings import EncoderSettings
from promptrec.events.schemas import Limits
from promptrec.index.settings import IndexSettings
from promptrec.serving.catalog import CatalogRecord, CatalogUpdater
from promptrec.serving.engine import Engine
from promptrec.serving.recommender import Query, Recommender
from promptrec.streams.settings import StreamSettings
from tests.encoder.test_training import topic_dataset

COLD = "jazz-7"  # in the catalog, not in the model's warm vocabulary: no ID vector


def _records() -> list[CatalogRecord]:
    items = topic_dataset().items  # 4 topics x 8 items; the topic is in the text
    return [
        CatalogRecord("items", 0, n, item.item_id.encode(), json.dumps(item.to_event()).encode())
        for n, item in enumerate(items)
    ]


def _texts(updater: CatalogUpdater, encoder: TextEncoder) -> tuple[list[str], np.ndarray]:
    ids, prompts = [], []
    for rec in _records():
        event = json.loads(rec.value or b"{}")
        fields = {k: event[k] for k in ("item_id", "title", "text")}
        ids.append(event["item_id"])
        prompts.append(updater._render("item", fields, event["attributes"]))
    return ids, encoder.encode_many(prompts)


def test_worker_serves_the_fused_score_and_ranks_a_cold_item_by_text(
    tmp_path: Path, tiny_encoder: TextEncoder
) -> None:
    ids = [item.item_id for item in topic_dataset().items]
    config = ModelConfig(
        text_dim=tiny_encoder.dim, dim=16, max_len=8, layers=1,
        encoder_model=tiny_encoder.model_dir.name,
    )  # fmt: skip
    torch.manual_seed(0)
    model = RecModel(config, [i for i in ids if i != COLD])  # untrained: its own score is noise
    stream = StreamSettings(state_dir=tmp_path / "plain-state", metrics_port=0)
    updater = CatalogUpdater(
        Engine.load(stream, EncoderSettings(), IndexSettings(), tiny_encoder),
        Limits(max_bytes=65536),
    )
    _, text = _texts(updater, tiny_encoder)  # (32, text_dim) as the worker encodes them
    updater.engine.close()
    # Text dominates (alpha 0.9): the model is untrained, text carries the topic.
    model.fusion = TextFusion(0.9, 0.9, 50, text.mean(axis=0), config.dim)
    ckpt = tmp_path / "fused.safetensors"
    save_model(ckpt, model)
    served = load_model(ckpt)
    assert served.fusion is not None and served.index_dim == 16 + tiny_encoder.dim

    state = StreamSettings(state_dir=tmp_path / "state", metrics_port=0)
    engine = Engine.load(state, EncoderSettings(checkpoint=ckpt), IndexSettings(), tiny_encoder)
    try:
        assert engine.index.dim == engine.head.dim == 16 + tiny_encoder.dim  # ONE index
        outcome = CatalogUpdater(engine, Limits(max_bytes=65536)).apply_many(_records())
        assert outcome.upserted == 32 and not outcome.dead
        vecs, found = engine.index.get_many(ids)
        assert found.all()
        # Index rows = [sqrt(1 - a) * adapted | sqrt(a) * centred text]; the cold item's adapted
        # part is its text alone (no ID vector).
        np.testing.assert_allclose(vecs, served.fusion.items(served.item_vectors(text, ids), text),
                                   atol=1e-5)  # fmt: skip
        history = ["jazz-0", "jazz-1", "jazz-2", "jazz-3", "jazz-4", "jazz-5"]
        batch = Recommender(engine).recommend_many([Query("u1", history, frozenset(history), 3)])
        assert batch.strategies == ["model"]
        top = [item for item, _ in batch.items[0]]
        # The two unseen jazz items lead, the cold one among them, found by its text.
        assert set(top[:2]) == {"jazz-6", COLD}, top
        # Known answer: the served user vector ranks by (1 - a) cos_t + a cos_z.
        rows = [ids.index(i) for i in history]
        t_items = served.item_vectors(text, ids)
        t_user = served.user_vectors([t_items[rows]])
        z = served.fusion.split(vecs)[1]
        z_user = served.fusion.text_users([z[rows]])
        expected = 0.1 * (t_user @ t_items.T) + 0.9 * (z_user @ z.T)  # (1, 32)
        got = batch.users[:1] @ vecs.T
        scale = float((expected * got).sum() / (got * got).sum())
        np.testing.assert_allclose(got * scale, expected, atol=1e-5)
    finally:
        engine.close()
