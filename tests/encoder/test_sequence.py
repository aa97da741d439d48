"""Sequence model, item adapter and model checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.encoder.adapter import ItemAdapter
from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.model import ModelConfig, RecModel, load_model, save_model
from promptrec.encoder.sequence import SequenceEncoder


def test_outputs_are_causal_and_match_truncated_histories() -> None:
    torch.manual_seed(0)
    model = SequenceEncoder(dim=16, max_len=8, layers=2, heads=2, dropout=0.3).eval()
    items = torch.nn.functional.normalize(torch.randn(1, 6, 16), dim=-1)
    full = model(items)  # (1, 6, 16)
    for t in range(1, 7):
        # Left-aligned positions: the output at t equals that of a user whose history ends at t.
        short = model(items[:, :t])
        torch.testing.assert_close(full[:, t - 1], short[:, -1], atol=1e-5, rtol=1e-5)
    padded = torch.cat([items[:, :3], torch.zeros(1, 3, 16)], dim=1)
    last = model.last(padded, torch.tensor([3]))
    torch.testing.assert_close(last, torch.nn.functional.normalize(full[:, 2], dim=-1))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 9, 16))


def test_adapter_cold_items_use_text_alone_and_id_only_needs_ids() -> None:
    torch.manual_seed(0)
    adapter = ItemAdapter(text_dim=8, dim=4, n_ids=3, id_dropout=0.5).eval()
    text = torch.randn(2, 8)
    cold = adapter(text, torch.tensor([0, 0]))
    warm = adapter(text, torch.tensor([1, 2]))
    expected = torch.nn.functional.normalize(adapter.text(text), dim=-1)  # type: ignore[misc]
    torch.testing.assert_close(cold, expected)
    assert not torch.allclose(cold, warm)
    torch.testing.assert_close(warm.norm(dim=-1), torch.ones(2))
    id_only = ItemAdapter(text_dim=0, dim=4, n_ids=3).eval()
    assert id_only(text, torch.tensor([0, 1]))[0].abs().sum() == 0  # cold and no text: zero
    with pytest.raises(ValueError, match="text path"):
        ItemAdapter(text_dim=0, dim=4, n_ids=0)


def test_model_checkpoint_round_trip(tmp_path: Path) -> None:
    config = ModelConfig(text_dim=8, dim=8, max_len=5, layers=1, heads=1, profile_dim=8)
    torch.manual_seed(1)
    model = RecModel(config, ["a", "b"])
    text = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    items = model.item_vectors(text, ["a", "b", "new"])
    users = model.user_vectors([items[:2], items[:0]], np.ones((2, 8), np.float32))
    assert users.shape == (2, 8)
    save_model(tmp_path / "m.safetensors", model, {"note": 1})
    again = load_model(tmp_path / "m.safetensors")
    assert again.warm_ids == ["a", "b"] and again.config == config
    np.testing.assert_allclose(again.item_vectors(text, ["a", "b", "new"]), items, atol=1e-6)
    assert (tmp_path / "m.json").read_text().count('"note": 1') == 1
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "bad.safetensors")
