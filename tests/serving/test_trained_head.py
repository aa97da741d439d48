"""A worker engine starts from the head ``promptrec train`` fine-tuned into the checkpoint.

Loaded exactly as the worker loads it (:meth:`Engine.load` with ``EncoderSettings.checkpoint``),
with a real (tiny) transformer and real FAISS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.encoder import TextEncoder
from promptrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.head import ScoringHead
from promptrec.encoder.head_checkpoint import HEAD_PREFIX, attach_head
from promptrec.encoder.model import ModelConfig, RecModel, save_model
from promptrec.encoder.settings import EncoderSettings
from promptrec.index.settings import IndexSettings
from promptrec.serving.engine import Engine, base_head
from promptrec.serving.model_sync import HeadSync
from promptrec.streams.settings import StreamSettings

DIM = 16


def _checkpoint(path: Path, encoder: TextEncoder, head: ScoringHead | None) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        text_dim=encoder.dim, dim=DIM, max_len=8, layers=1, encoder_model=encoder.model_dir.name
    )
    save_model(path, RecModel(config, ["a", "b"]))
    if head is not None:
        attach_head(path, head)


def _trained_head() -> ScoringHead:
    rng = np.random.default_rng(0)
    head = ScoringHead(DIM, hidden=64, learning_rate=0.05, seed=0)
    for _ in range(20):
        u = rng.normal(size=(64, DIM)).astype(np.float32)
        v = rng.normal(size=(64, DIM)).astype(np.float32)
        head.learn_many(u, v, (np.sum(u * v, axis=1) < 0).astype(np.float32))  # anti-cosine
    return head


def _load(tmp_path: Path, encoder: TextEncoder, ckpt: Path, state: str = "state") -> Engine:
    stream = StreamSettings(state_dir=tmp_path / state, metrics_port=0)
    settings = EncoderSettings(checkpoint=ckpt, learning_rate=0.02)
    return Engine.load(stream, settings, IndexSettings(), encoder=encoder)


def _scores(head: ScoringHead) -> np.ndarray:
    rng = np.random.default_rng(5)
    u = rng.normal(size=(4, DIM)).astype(np.float32)
    return head.score_many(u, rng.normal(size=(4, 9, DIM)).astype(np.float32))


def test_engine_starts_from_the_checkpoints_head_and_keeps_learning(
    tmp_path: Path, tiny_encoder: TextEncoder
) -> None:
    ckpt = tmp_path / "m.safetensors"
    trained = _trained_head()
    _checkpoint(ckpt, tiny_encoder, trained)
    engine = _load(tmp_path, tiny_encoder, ckpt)
    try:
        np.testing.assert_allclose(_scores(engine.head), _scores(trained), atol=1e-5)
        fresh = ScoringHead(DIM)
        assert not np.allclose(_scores(engine.head), _scores(fresh), atol=1e-2)
        # Online learning goes on from it, at the worker's learning rate.
        assert engine.head.learning_rate == 0.02 and engine.head.version == 0
        sync = HeadSync(engine.head, "w1")
        before = engine.head.to_tensors()
        rng = np.random.default_rng(1)
        sync.learn_many(
            rng.normal(size=(8, DIM)).astype(np.float32),
            rng.normal(size=(8, DIM)).astype(np.float32),
            np.ones(8, dtype=np.float32),
        )
        assert sync.unpublished_steps == 1  # the version counts published steps only
        assert not torch.equal(engine.head.to_tensors()["w2"], before["w2"])
        # Model sync rebases onto the same base every worker starts from: the trained head.
        sync.rebase(base_head(engine.encoder_settings, DIM))
        np.testing.assert_allclose(_scores(engine.head), _scores(trained), atol=1e-5)
        engine.checkpoint()  # the worker's periodic head checkpoint
    finally:
        engine.close()
    # A restart restores its own checkpointed head from state_dir first, as before.
    again = _load(tmp_path, tiny_encoder, ckpt)
    try:
        np.testing.assert_allclose(_scores(again.head), _scores(trained), atol=1e-5)
    finally:
        again.close()


def test_a_checkpoint_without_head_starts_from_plain_cosine(
    tmp_path: Path, tiny_encoder: TextEncoder
) -> None:
    ckpt = tmp_path / "m.safetensors"
    _checkpoint(ckpt, tiny_encoder, None)
    engine = _load(tmp_path, tiny_encoder, ckpt)
    try:
        np.testing.assert_allclose(_scores(engine.head), _scores(ScoringHead(DIM)), atol=1e-6)
    finally:
        engine.close()
    assert base_head(EncoderSettings(), DIM).dim == DIM  # no checkpoint at all: fresh


def test_a_corrupt_head_in_the_checkpoint_fails_at_start(
    tmp_path: Path, tiny_encoder: TextEncoder
) -> None:
    ckpt = tmp_path / "m.safetensors"
    _checkpoint(ckpt, tiny_encoder, _trained_head())
    tensors, meta = load_checkpoint(ckpt)
    tensors[HEAD_PREFIX + "a"] = torch.tensor(float("inf"))
    save_checkpoint(ckpt, tensors, meta)
    with pytest.raises(CheckpointError, match="head tensor 'a' holds non-finite"):
        _load(tmp_path, tiny_encoder, ckpt)
    # A head of another width than the model's is refused too.
    _checkpoint(ckpt, tiny_encoder, ScoringHead(DIM * 2))
    with pytest.raises(CheckpointError, match="head has dim 32, the model has 16"):
        _load(tmp_path, tiny_encoder, ckpt, state="other")
