"""Text fusion: the fused score is the sum of its parts, alpha = 0 changes nothing, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.fusion import TextFusion, centred_text
from promptrec.encoder.model import ModelConfig, RecModel, load_model, save_model
from promptrec.encoder.training import ModelScorer
from promptrec.evaluation.baselines import TextZeroShotScorer
from promptrec.evaluation.fusion import select_fusion
from promptrec.evaluation.protocol import Split, evaluate
from tests.encoder.test_training import small_config, topic_dataset


def _model(seed: int = 0, warm: int = 20) -> tuple[RecModel, np.ndarray, Split]:
    split = Split.from_dataset(topic_dataset())
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(split.n_items, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    torch.manual_seed(seed)
    model = RecModel(small_config(), split.item_ids[:warm]).eval()
    return model, text, split


def test_fused_vectors_known_answer() -> None:
    # 2-d trained part, 2-d text part with mean 0: every cosine is known by hand.
    fusion = TextFusion(alpha=0.25, decay=1.0, recent=0, mean=np.zeros(2), dim=2)
    items = fusion.items(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 2.0], [3.0, 0.0]]))
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-6)  # unit rows
    trained, text = fusion.split(items)
    np.testing.assert_allclose(trained, [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(text, [[0.0, 1.0], [1.0, 0.0]], atol=1e-6)
    # History = item 0 alone: cos_t = (1, 0), cos_z = (1, 0) -> fused (1, 0) up to the norm.
    zu = fusion.text_users([text[:1]])
    user = fusion.users(trained[:1], zu)
    np.testing.assert_allclose(np.linalg.norm(user), 1.0, rtol=1e-6)
    np.testing.assert_allclose(user @ items.T, [[1.0, 0.0]], atol=1e-6)
    # A user whose trained vector points at item 1 and text at item 0: 0.75 vs 0.25.
    user = fusion.users(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]]))
    scores = (user @ items.T)[0] * np.linalg.norm([math.sqrt(0.75), math.sqrt(0.25)])
    np.testing.assert_allclose(scores, [0.25, 0.75], atol=1e-6)
    assert fusion.weight == pytest.approx(1 / 3) and fusion.width == 4


def test_fused_model_score_is_the_sum_of_its_parts() -> None:
    model, text, split = _model()
    hist = split.histories("test")
    users = list(range(len(hist)))
    trained = ModelScorer(model, text, split.item_ids).score(users, hist)  # (b, n)
    zero_shot = TextZeroShotScorer(text, recency_decay=0.8, recent=50).score(users, hist)
    model.fusion = TextFusion(0.3, 0.8, 50, text.mean(axis=0), model.config.dim)
    fused = ModelScorer(model, text, split.item_ids).score(users, hist)
    expected = 0.7 * trained + 0.3 * zero_shot
    # The served score is the fused score divided by the (positive) norm of the user vector.
    scale = (expected * fused).sum(axis=1) / (fused * fused).sum(axis=1)
    assert (scale > 0).all()
    np.testing.assert_allclose(fused * scale[:, None], expected, atol=1e-5)
    np.testing.assert_array_equal(
        np.argsort(-fused, axis=1)[:, :5], np.argsort(-expected, 1)[:, :5]
    )
    assert ModelScorer(model, text, split.item_ids).items.shape == (split.n_items, 16 + 8)


def test_alpha_zero_reproduces_the_unfused_model_exactly() -> None:
    model, text, split = _model()
    hist = split.histories("valid")
    users = list(range(len(hist)))
    items = model.item_vectors(text, split.item_ids)  # today's formula, written out
    expected = model.user_vectors([items[np.asarray(h)] for h in hist]) @ items.T
    report = select_fusion(model, split, text, alphas=(0.0,))
    assert model.fusion is None and report["alpha"] == 0.0 and report["w"] == 0.0
    np.testing.assert_array_equal(
        ModelScorer(model, text, split.item_ids).score(users, hist), expected
    )
    assert model.index_dim == 16


def test_select_fusion_is_never_worse_than_either_end_on_validation() -> None:
    # An untrained model (random) and text that carries the topic: fusion must find the text.
    model, _, split = _model()
    rng = np.random.default_rng(1)
    text = 0.3 * rng.normal(size=(split.n_items, 8)).astype(np.float32)
    text[np.arange(split.n_items), np.arange(split.n_items) // 8] += 1.0
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    report = select_fusion(model, split, text)
    grid = report["valid_ndcg10_grid"]
    assert report["valid_ndcg10_before_cold"] == max(grid.values())
    # 12 of the 32 items have no ID vector here: the cold calibration can only add.
    assert report["valid_cold_items"] == 12
    assert report["valid_ndcg10"] >= report["valid_ndcg10_before_cold"]
    assert report["valid_ndcg10"] >= report["valid_ndcg10_trained_only"]
    assert report["valid_ndcg10"] >= report["valid_ndcg10_text_only"]
    assert report["valid_ndcg10_text_only"] > report["valid_ndcg10_trained_only"]
    assert model.fusion is not None and model.fusion.alpha == report["alpha"] > 0
    fused = evaluate(ModelScorer(model, text, split.item_ids), split, "valid")["NDCG@10"]
    assert fused == pytest.approx(report["valid_ndcg10"], abs=1e-5)


def test_select_fusion_rejects_bad_inputs() -> None:
    model, text, split = _model()
    with pytest.raises(ValueError, match="alphas in"):
        select_fusion(model, split, text, alphas=(1.5,))
    with pytest.raises(ValueError, match="alphas in"):
        select_fusion(model, split, text, alphas=())
    id_only = RecModel(small_config(text_dim=0), split.item_ids)
    with pytest.raises(ValueError, match="text path"):
        select_fusion(id_only, split, text)
    for bad in ({"alpha": 0.0}, {"decay": 0.0}, {"mean": np.array([np.nan, 0.0])}):
        values = {"alpha": 0.5, "decay": 0.9, "recent": 5, "mean": np.zeros(2), "dim": 2}
        with pytest.raises(ValueError):
            TextFusion(**{**values, **bad})  # type: ignore[arg-type]
    fusion = TextFusion(0.5, 0.9, 5, np.zeros(2), 2)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        fusion.split(np.zeros((3, 3)))


def test_fused_checkpoint_round_trip_and_old_checkpoints(tmp_path: Path) -> None:
    model, text, split = _model()
    plain = tmp_path / "plain.safetensors"
    save_model(plain, model)
    tensors, metadata = load_checkpoint(plain)
    assert "fusion" not in metadata and "fusion.text_mean" not in tensors  # format unchanged
    assert load_model(plain).fusion is None

    model.fusion = TextFusion(0.2, 0.8, 50, text.mean(axis=0), model.config.dim)
    fused = tmp_path / "fused.safetensors"
    save_model(fused, model)
    back = load_model(fused)
    assert back.fusion is not None
    assert (back.fusion.alpha, back.fusion.decay, back.fusion.recent) == (0.2, 0.8, 50)
    np.testing.assert_array_equal(back.fusion.mean, model.fusion.mean)
    hist = split.histories("test")
    users = list(range(len(hist)))
    np.testing.assert_allclose(
        ModelScorer(back, text, split.item_ids).score(users, hist),
        ModelScorer(model, text, split.item_ids).score(users, hist),
        atol=1e-6,
    )

    # Bad fusion records are clear checkpoint errors, not crashes.
    tensors, metadata = load_checkpoint(fused)
    cases = {
        "garbage": ({**metadata, "fusion": "{not json"}, tensors),
        "alpha": (
            {**metadata, "fusion": json.dumps({"alpha": 7, "decay": 1, "recent": 1})},
            tensors,
        ),
        "no mean": (metadata, {k: v for k, v in tensors.items() if k != "fusion.text_mean"}),
    }
    for name, (meta, tens) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_checkpoint(path, tens, meta)
        with pytest.raises(CheckpointError):
            load_model(path)


def test_centred_text_keeps_a_row_equal_to_the_mean_at_zero() -> None:
    text = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    z = centred_text(text, np.array([1.0, 0.0]))
    np.testing.assert_allclose(z, [[0.0, 0.0], [-math.sqrt(0.5), math.sqrt(0.5)]], atol=1e-6)
    assert ModelConfig().text_dim == 384  # fusion adds no ModelConfig key (old configs load)
