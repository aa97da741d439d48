"""The fine-tuned scoring head inside a model checkpoint: round trip and corrupt heads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.head import ScoringHead
from promptrec.encoder.head_checkpoint import (
    HEAD_META_KEY,
    HEAD_PREFIX,
    attach_head,
    load_checkpoint_head,
)
from promptrec.encoder.model import ModelConfig, RecModel, load_model, save_model

DIM = 16


def trained_head(steps: int = 5) -> ScoringHead:
    """A head moved away from plain cosine by a few learning steps."""
    rng = np.random.default_rng(0)
    head = ScoringHead(DIM, hidden=8, learning_rate=0.05, seed=3)
    for _ in range(steps):
        u = rng.normal(size=(32, DIM)).astype(np.float32)
        v = rng.normal(size=(32, DIM)).astype(np.float32)
        head.learn_many(u, v, (rng.random(32) < 0.5).astype(np.float32))
    return head


def model_checkpoint(path: Path) -> RecModel:
    torch.manual_seed(0)
    model = RecModel(ModelConfig(text_dim=8, dim=DIM, max_len=4, layers=1), ["a", "b"])
    save_model(path, model, {"note": 1})
    return model


def test_head_round_trips_inside_the_model_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    model = model_checkpoint(path)
    assert load_checkpoint_head(path) is None  # a plain model checkpoint has no head
    head = trained_head()
    attach_head(path, head, {"valid": {"NDCG@10": 0.5}})
    loaded = load_checkpoint_head(path)
    assert loaded is not None and (loaded.dim, loaded.hidden) == (DIM, 8)
    assert loaded.learning_rate == 0.05 and loaded.version == 0
    for name, value in head.to_tensors().items():
        torch.testing.assert_close(loaded.to_tensors()[name], value)
    rng = np.random.default_rng(1)
    u = rng.normal(size=(3, DIM)).astype(np.float32)
    v = rng.normal(size=(3, 7, DIM)).astype(np.float32)
    np.testing.assert_allclose(loaded.score_many(u, v), head.score_many(u, v), atol=1e-6)
    # The worker's learning rate overrides the stored one; the weights stay.
    assert load_checkpoint_head(path, learning_rate=0.2).learning_rate == 0.2  # type: ignore[union-attr]
    # The model still loads (the head tensors are not the model's) and is unchanged.
    again = load_model(path)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value)
    _, meta = load_checkpoint(path)
    assert json.loads(meta[HEAD_META_KEY])["info"] == {"valid": {"NDCG@10": 0.5}}
    # Attaching again replaces the head.
    attach_head(path, ScoringHead(DIM, hidden=4))
    assert load_checkpoint_head(path).hidden == 4  # type: ignore[union-attr]
    assert load_model(path).config.dim == DIM


def _corrupt(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    save_checkpoint(path, tensors, meta)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("nan", "non-finite"),
        ("shape", "has shape"),
        ("missing", "lack tensor 'w2'"),
        ("bad-json", "invalid head metadata"),
        ("format", "invalid head metadata"),
        ("no-dim", "invalid head metadata"),
        ("no-meta", "no head metadata"),
    ],
)
def test_a_corrupt_head_is_a_clear_checkpoint_error(
    tmp_path: Path, change: str, message: str
) -> None:
    path = tmp_path / "m.safetensors"
    model_checkpoint(path)
    attach_head(path, trained_head())
    tensors, meta = load_checkpoint(path)
    head_meta = json.loads(meta[HEAD_META_KEY])
    if change == "nan":
        tensors[HEAD_PREFIX + "w1"][0, 0] = float("nan")
    elif change == "shape":
        tensors[HEAD_PREFIX + "b1"] = torch.zeros(3)
    elif change == "missing":
        del tensors[HEAD_PREFIX + "w2"]
    elif change == "bad-json":
        meta[HEAD_META_KEY] = "{not json"
    elif change == "format":
        meta[HEAD_META_KEY] = json.dumps({**head_meta, "format": "other"})
    elif change == "no-dim":
        meta[HEAD_META_KEY] = json.dumps({k: v for k, v in head_meta.items() if k != "dim"})
    elif change == "no-meta":
        del meta[HEAD_META_KEY]
    _corrupt(path, tensors, meta)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint_head(path)


def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    model_checkpoint(path)
    attach_head(path, trained_head())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint_head(path)
    with pytest.raises(CheckpointError):
        attach_head(tmp_path / "absent.safetensors", trained_head())
