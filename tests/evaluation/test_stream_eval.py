"""Worker with a trained checkpoint, and the prequential ``promptrec eval stream`` replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.cli.main import main
from promptrec.encoder import TextEncoder
from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.model import ModelConfig, RecModel, save_model
from promptrec.encoder.settings import EncoderSettings
from promptrec.evaluation.stream import StreamScore
from promptrec.events.schemas import Limits
from promptrec.index.settings import IndexSettings
from promptrec.serving.catalog import CatalogRecord, CatalogUpdater
from promptrec.serving.engine import Engine
from promptrec.serving.recommender import Query, Recommender
from promptrec.streams.settings import StreamSettings
from tests.encoder.test_training import topic_dataset


def _checkpoint(path: Path, text_dim: int, encoder: TextEncoder) -> RecModel:
    torch.manual_seed(0)
    config = ModelConfig(
        text_dim=text_dim, dim=16, max_len=8, layers=1, encoder_model=encoder.model_dir.name
    )
    model = RecModel(config, ["hiking-0", "jazz-0"])
    save_model(path, model)
    return model


def _items() -> list[CatalogRecord]:
    out = []
    for n, item in enumerate(topic_dataset().items[:16]):
        value = json.dumps(item.to_event()).encode()
        out.append(CatalogRecord("items", 0, n, item.item_id.encode(), value))
    return out


def test_worker_engine_uses_the_checkpoint(tmp_path: Path, tiny_encoder: TextEncoder) -> None:
    ckpt = tmp_path / "m.safetensors"
    model = _checkpoint(ckpt, tiny_encoder.dim, tiny_encoder)
    stream = StreamSettings(state_dir=tmp_path / "state", metrics_port=0)
    settings = EncoderSettings(checkpoint=ckpt)
    engine = Engine.load(stream, settings, IndexSettings(), encoder=tiny_encoder)
    try:
        assert engine.index.dim == 16 and engine.head.dim == 16
        assert engine.profiles.dim == tiny_encoder.dim  # profiles stay frozen text vectors
        updater = CatalogUpdater(engine, Limits(max_bytes=65536))
        outcome = updater.apply_many(_items())
        assert outcome.upserted == 16 and not outcome.dead
        ids = [r.key.decode() for r in _items() if r.key]
        vecs, found = engine.index.get_many(ids)
        assert found.all()
        # Index rows are the model's adapted vectors (ID vector for warm hiking-0 and jazz-0).
        text = tiny_encoder.encode_many([updater._render("item", *_fields(r)) for r in _items()])
        np.testing.assert_allclose(vecs, model.item_vectors(text, ids), atol=1e-5)
        rec = Recommender(engine)
        batch = rec.recommend_many(
            [
                Query("u1", ["hiking-1", "hiking-2"], frozenset({"hiking-1", "hiking-2"}), 5),
                Query("u2", [], frozenset(), 5),
            ]
        )
        assert batch.strategies == ["model", "popular"]
        assert len(batch.items[0]) == 5 and not {"hiking-1", "hiking-2"} & {
            i for i, _ in batch.items[0]
        }
        expected = model.user_vectors([engine.index.get_many(["hiking-1", "hiking-2"])[0]])
        np.testing.assert_allclose(batch.users[0], expected[0], atol=1e-5)
    finally:
        engine.close()


def _fields(record: CatalogRecord) -> tuple[dict[str, object], dict[str, object]]:
    event = json.loads(record.value or b"{}")
    fields = {"item_id": event["item_id"], "title": event["title"], "text": event["text"]}
    return fields, event["attributes"]


def test_checkpoint_for_another_encoder_width_fails_at_start(
    tmp_path: Path, tiny_encoder: TextEncoder
) -> None:
    ckpt = tmp_path / "m.safetensors"
    _checkpoint(ckpt, 384, tiny_encoder)
    stream = StreamSettings(state_dir=tmp_path / "state", metrics_port=0)
    with pytest.raises(CheckpointError, match="384-d"):
        Engine.load(stream, EncoderSettings(checkpoint=ckpt), IndexSettings(), tiny_encoder)


def test_stream_score_formulas() -> None:
    score = StreamScore()
    score.add("a", ["a", "b"])
    score.add("b", ["x", "y", "b"])
    score.add("c", ["x"])
    out = score.to_dict()
    assert out["events"] == 3
    assert out["HR@10"] == pytest.approx(2 / 3)
    assert out["NDCG@10"] == pytest.approx((1 + 1 / np.log2(4)) / 3)


@pytest.mark.integration
@pytest.mark.slow
def test_eval_stream_on_a_text_predictable_stream(tmp_path: Path) -> None:
    from promptrec.evaluation.datasets import write_jsonl

    data = tmp_path / "data"
    write_jsonl(topic_dataset(n_users=8), data)
    out = tmp_path / "stream.json"
    code = main(
        ["eval", "stream", "--data", str(data), "--format", "jsonl", "--out", str(out),
         "--device", "cpu", "--quiet", "--windows", "3", "--plot", str(tmp_path / "c.png")]
    )  # fmt: skip
    assert code == 0
    stream = json.loads(out.read_text())["stream"]
    assert stream["promptrec"]["events"] == stream["recent-pop"]["events"] == 48
    assert stream["events_per_s"] == pytest.approx(stream["events"] / stream["seconds"])
    assert stream["events"] == 48 and stream["seconds"] > 0
    assert len(stream["windows"]) == 3
    assert set(stream["cold"]) == {"promptrec", "recent-pop"}
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")  # --plot
    # Users stay in one topic and the frozen encoder sees the topic in the text: the worker's
    # recommendations hit far more often than recent popularity over all topics.
    assert stream["promptrec"]["HR@10"] > stream["recent-pop"]["HR@10"] + 0.2
