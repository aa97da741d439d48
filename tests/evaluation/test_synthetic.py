"""The generated catalog used for the per-epoch timing of full vs sampled softmax."""

from __future__ import annotations

import json

import numpy as np
import pytest

from promptrec.evaluation.synthetic import main, synthetic_split, time_epochs


def test_synthetic_split_shape_and_popularity() -> None:
    split = synthetic_split(200, 50, min_len=5, max_len=10, seed=1)
    assert split.n_items == 200 and len(split.train) == 50
    for seq, v, t in zip(split.train, split.valid, split.test, strict=True):
        assert 3 <= len(seq) <= 8 and len({*seq, int(v), int(t)}) == len(seq) + 2  # no repeats
    counts = split.train_counts()
    assert counts[:20].sum() > counts[100:].sum()  # Zipf: the head is popular
    again = synthetic_split(200, 50, min_len=5, max_len=10, seed=1)
    assert again.train == split.train
    with pytest.raises(ValueError, match="min_len"):
        synthetic_split(10, 5, min_len=2)
    with pytest.raises(ValueError, match="n_items"):
        synthetic_split(10, 5, min_len=5, max_len=11)


def test_time_epochs_reports_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    split = synthetic_split(100, 20, min_len=5, max_len=8)
    out = time_epochs(split, [0, 16], epochs=1, text_dim=8)
    assert set(out) == {"negatives=0", "negatives=16"}
    assert all(len(v["seconds_per_epoch"]) == 1 for v in out.values())
    assert main(["--items", "5", "--users", "2"]) == 2  # 20-80 items per user > 5 items
    assert "n_items" in capsys.readouterr().err
    assert main(["--negatives", "x"]) == 2
    assert np.isfinite(out["negatives=16"]["valid_ndcg10_curve"][0])
    assert main(["--items", "100", "--users", "5", "--negatives", "8", "--epochs", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 100
