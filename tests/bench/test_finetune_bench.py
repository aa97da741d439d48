"""``promptrec bench finetune`` on a tiny data set and a tiny random BERT: it runs and reports."""

from __future__ import annotations

import json
from pathlib import Path

from promptrec.cli.main import main
from promptrec.evaluation.datasets import write_jsonl
from tests.encoder.test_training import topic_dataset


def test_finetune_bench_reports_every_mode(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "data"
    write_jsonl(topic_dataset(n_users=8), data)
    out = tmp_path / "finetune.json"
    argv = [
        "bench", "finetune", "--data", str(data), "--format", "jsonl", "--model-dir",
        str(tiny_model_dir), "--device", "cpu", "--no-cache", "--epochs", "1", "--no-cold",
        "--modes", "none,last-layers", "--negatives", "0", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    runs = json.loads(out.read_text())["runs"]
    assert list(runs) == ["none", "last-layers"]
    assert "finetune" not in runs["none"]["warm"]
    assert runs["last-layers"]["warm"]["finetune"]["tensors"] > 0
    for run in runs.values():
        assert run["warm"]["seconds_per_epoch"] > 0
        assert set(run["warm"]["test_intervals"]) == {"NDCG@10", "HR@10"}
