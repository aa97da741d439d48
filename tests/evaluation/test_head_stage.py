"""The head stage of ``promptrec train``: worker-style retrieval lists and the train command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.cli.main import main
from promptrec.encoder.head_checkpoint import load_checkpoint_head
from promptrec.encoder.model import ModelConfig, RecModel, load_model
from promptrec.encoder.training import ModelScorer
from promptrec.evaluation.head_stage import retrieval_lists
from promptrec.evaluation.protocol import Split, stage_ranks
from promptrec.index import IndexSettings
from tests.encoder.test_training import topic_dataset


def _model(split: Split, text_dim: int = 8) -> RecModel:
    torch.manual_seed(0)
    config = ModelConfig(text_dim=text_dim, dim=16, max_len=8, layers=1)
    warm = sorted({split.item_ids[i] for seq in split.train for i in seq})
    return RecModel(config, warm).eval()


def test_retrieval_lists_are_the_workers_candidates() -> None:
    split = Split.from_dataset(topic_dataset(n_users=12))
    text = np.random.default_rng(0).normal(size=(split.n_items, 8)).astype(np.float32)
    model = _model(split)
    k = 10
    valid = retrieval_lists(model, text, split, None, "valid", k, IndexSettings(use_gpu="never"))
    assert len(valid) == 12 and valid.k == k
    items = model.item_vectors(text, split.item_ids)
    for n, u in enumerate(valid.owner.tolist()):
        hist = split.train[u]
        assert not set(valid.rows[n].tolist()) & set(hist)  # the user's items are excluded
        user = model.user_vectors([items[np.asarray(hist)]])[0]
        np.testing.assert_allclose(valid.users[n], user, atol=1e-5)
        scores = items[valid.rows[n]] @ user
        assert (np.diff(scores) <= 1e-6).all()  # best first
        pos = int(valid.target[n])
        assert pos == -1 or valid.rows[n, pos] == split.valid[u]
    # Cosine over the retrieved candidates ranks like the full-ranking protocol inside top k.
    full = stage_ranks(ModelScorer(model, text, split.item_ids), split, "valid")
    in_lists = np.where(valid.target >= 0, valid.target, 10**6)
    np.testing.assert_array_equal(np.minimum(full, k), np.minimum(in_lists, k))
    train = retrieval_lists(
        model, text, split, None, "train", k, IndexSettings(use_gpu="never"), positions=2
    )
    assert len(train) == 24  # 4 training items per user: the newest 2 are targets
    first = [n for n, u in enumerate(train.owner.tolist()) if u == 0]
    targets = [int(train.rows[n, train.target[n]]) for n in first if train.target[n] >= 0]
    assert set(targets) <= set(split.train[0][2:])


@pytest.mark.slow
def test_train_command_writes_the_head_into_the_checkpoint(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptrec.evaluation.datasets import write_jsonl

    data = tmp_path / "data"
    write_jsonl(topic_dataset(), data)
    common = [
        "train", "--data", str(data), "--format", "jsonl", "--model-dir", str(tiny_model_dir),
        "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--quiet",
        "--epochs", "2", "--dim", "16", "--max-len", "8", "--layers", "1", "--head-epochs", "2",
    ]  # fmt: skip
    ckpt = tmp_path / "model.safetensors"
    assert main([*common, "--out", str(ckpt)]) == 0
    assert "scoring head over 100 candidates" in capsys.readouterr().out
    summary = json.loads(ckpt.with_suffix(".json").read_text())
    head = summary["head"]
    assert head["chosen"] in {"head", "cosine"} and head["candidates"] == 100
    for stage in ("valid", "test"):
        assert set(head[stage]) >= {"cosine", "head", "paired_head_minus_cosine", "retrieved"}
        assert 0 < head[stage]["paired_head_minus_cosine"]["NDCG@10"]["p_value"] <= 1
    # The checkpoint loads as a model either way; it carries the head only when it won.
    load_model(ckpt)
    shipped = load_checkpoint_head(ckpt)
    assert (shipped is not None) == (head["chosen"] == "head")
    assert head["valid"]["head"]["NDCG@10"] == head["valid_head"]["NDCG@10"]

    off = tmp_path / "off.safetensors"
    assert main([*common, "--out", str(off), "--no-train-head"]) == 0
    assert "head" not in json.loads(off.with_suffix(".json").read_text())
    assert load_checkpoint_head(off) is None
